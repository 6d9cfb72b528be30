// Runs scenarios through the real postgrest-js and supabase-js against a Tiddly server
// and prints what the clients returned, as JSON, for tests/test_js_clients.py to judge.
//
//   node run.mjs --url http://127.0.0.1:5000 --key write=tdk_... [--key read=tdk_...] < scenarios.json
//
// (TIDDLY_URL and TIDDLY_KEY, the key named "default", work instead of the options.)
// stdin holds [{"name": ..., "steps": [{"client", "key", "auth", "calls": [[method, ...args], ...]}]}]:
// each step starts at createClient(url, key) (client "supabase") or at
// new PostgrestClient(url + "/rest/v1", {headers}) (client "postgrest", the key sent as the
// headers "auth" names: "apikey" and/or "bearer"; key null sends none), calls each method in
// turn on what the previous one returned, and awaits the builder. The answer is one line of JSON:
// {"<name>": [{"status", "data", "error", "count", "requests"}, ...] or {"crash": "<stack>"}}.
import { parseArgs } from 'node:util'
import { PostgrestClient } from '@supabase/postgrest-js'
import { createClient } from '@supabase/supabase-js'

const { values } = parseArgs({ options: { url: { type: 'string' }, key: { type: 'string', multiple: true } } })
const url = values.url ?? process.env.TIDDLY_URL
const keys = Object.fromEntries((values.key ?? []).map((pair) => pair.split(/=(.*)/s).slice(0, 2)))
if (process.env.TIDDLY_KEY) keys.default ??= process.env.TIDDLY_KEY
if (!url) throw new Error('give the server as --url or TIDDLY_URL')

// Every request a client sends, with the answer's status and body, to explain a failure.
let requests = []
async function recordingFetch(input, init = {}) {
  const response = await fetch(input, init)
  requests.push({
    method: init.method ?? 'GET', url: String(input), headers: Object.fromEntries(new Headers(init.headers)),
    body: init.body ?? null, status: response.status, answer: await response.clone().text(),
  })
  return response
}

const clients = new Map()
function client(kind, keyName, auth) {
  const id = JSON.stringify([kind, keyName, auth])
  if (!clients.has(id)) {
    if (keyName !== null && !(keyName in keys)) throw new Error(`no key named ${keyName}`)
    clients.set(id, makeClient(kind, keys[keyName] ?? null, auth))
  }
  return clients.get(id)
}

function makeClient(kind, key, auth) {
  if (kind === 'supabase') {  // exactly as an app builds it; only the fetch is watched
    return createClient(url, key, { global: { fetch: recordingFetch } })
  }
  const headers = {}
  if (key !== null && auth.includes('apikey')) headers.apikey = key
  if (key !== null && auth.includes('bearer')) headers.Authorization = `Bearer ${key}`
  return new PostgrestClient(new URL('rest/v1', url).href, { headers, fetch: recordingFetch })
}

async function runStep({ client: kind = 'supabase', key = 'default', auth = ['apikey', 'bearer'], calls }) {
  requests = []
  let builder = client(kind, key, auth)
  for (const [method, ...args] of calls) builder = builder[method](...args)
  const { status, data, error, count } = await builder
  return { status, data, error, count, requests }
}

const scenarios = JSON.parse(await new Response(process.stdin).text())
const results = {}
for (const { name, steps } of scenarios) {
  try {
    results[name] = []
    for (const step of steps) results[name].push(await runStep(step))
  } catch (error) {
    results[name] = { crash: error?.stack ?? String(error), requests }
  }
}
process.stdout.write(JSON.stringify(results) + '\n')
