// Drives supabase-js's Realtime against a Tiddly server, one command at a time, for
// tests/test_realtime.py: each line on stdin is a JSON command, each line on stdout a JSON
// report of what the client saw. Commands:
//
//   {"op": "client", "name", "key", "lib": "2.119" | "2.109", "vsn": "2.0.0" | "1.0.0"}
//       createClient(url, key, {realtime: {vsn}}) from that supabase-js
//   {"op": "subscribe", "client", "channel", "topic", "bindings": [{event, schema, table, filter}],
//    "config": {...}}  supabase.channel(topic, {config}).on('postgres_changes', binding, ...)
//       for each binding, .on('system', ...), .subscribe(status => ...)
//   {"op": "unsubscribe", "channel"}            supabase.removeChannel(channel)
//   {"op": "send", "channel", "payload"}        channel.send(payload)
//   {"op": "setAuth", "client", "token"}        supabase.realtime.setAuth(token)
//
// Reports: {"kind": "status", "channel", "status", "error"}, {"kind": "change", "channel",
// "binding", "payload"}, {"kind": "system", "channel", "payload"}, {"kind": "done", "op", "channel",
// "result"}, {"kind": "crash", "error"}.
//
//   node [--experimental-websocket] realtime.mjs --url http://127.0.0.1:5000
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { createClient as createClient2119 } from '@supabase/supabase-js'
import { createClient as createClient2109 } from 'supabase-js-2.109'

const LIBS = { '2.119': createClient2119, '2.109': createClient2109 }
const { values } = parseArgs({ options: { url: { type: 'string' } } })
const url = values.url ?? process.env.TIDDLY_URL
if (!url) throw new Error('give the server as --url or TIDDLY_URL')

// Node 20's WebSocket (behind --experimental-websocket) never fires "close" after a connection
// that failed, and Phoenix schedules its next reconnect from "close": so there, a server that is
// down for longer than one reconnect interval is never reconnected to. This fires the "close"
// Node 22's WebSocket would; on Node 22 the global WebSocket is used as it is.
class ClosingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args)
    let closed = false
    this.addEventListener('close', () => { closed = true })
    this.addEventListener('error', () => setTimeout(() => {
      if (closed) return
      const event = new Event('close')
      Object.assign(event, { code: 1006, reason: '', wasClean: false })
      this.dispatchEvent(event)
    }, 50))
  }
}
const transport = Number(process.versions.node.split('.')[0]) < 22 ? ClosingWebSocket : undefined

const clients = new Map()
const channels = new Map()
const report = (message) => process.stdout.write(JSON.stringify(message) + '\n')

const commands = {
  client({ name, key, lib = '2.119', vsn = '2.0.0' }) {
    const create = LIBS[lib]
    if (!create) throw new Error(`no supabase-js ${lib}`)
    clients.set(name, create(url, key, { realtime: { vsn, ...(transport ? { transport } : {}) } }))
  },

  subscribe({ client, channel: name, topic, bindings = [], config }) {
    const supabase = clients.get(client)
    let channel = supabase.channel(topic, config ? { config } : undefined)
    bindings.forEach((binding, index) => {
      channel = channel.on('postgres_changes', binding, (payload) =>
        report({ kind: 'change', channel: name, binding: index, payload }))
    })
    channel = channel.on('system', {}, (payload) => report({ kind: 'system', channel: name, payload }))
    channels.set(name, { supabase, channel })
    channel.subscribe((status, error) =>
      report({ kind: 'status', channel: name, status, error: error ? error.message : null }))
  },

  async unsubscribe({ channel: name }) {
    const { supabase, channel } = channels.get(name)
    const result = await supabase.removeChannel(channel)
    report({ kind: 'done', op: 'unsubscribe', channel: name, result })
  },

  async send({ channel: name, payload }) {
    const { channel } = channels.get(name)
    const result = await channel.send(payload)
    report({ kind: 'done', op: 'send', channel: name, result })
  },

  async setAuth({ client, token }) {
    await clients.get(client).realtime.setAuth(token)
    report({ kind: 'done', op: 'setAuth', channel: null, result: 'ok' })
  },
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue
  try {
    const command = JSON.parse(line)
    await commands[command.op](command)
  } catch (error) {
    report({ kind: 'crash', error: error?.stack ?? String(error) })
  }
}
process.exit(0)
