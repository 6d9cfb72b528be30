-- One wrk script for every workload and server; bench/run.py sets it up through the environment:
-- BENCH_WORKLOAD, BENCH_STYLE ("tiddly", "plain" for the reference and the floors, "sandman2" or
-- "restless" for Flask-Restless-NG's JSON:API; bench/grammar.py says the same in Python), BENCH_TAG (makes
-- inserted emails unique per run), BENCH_DELETE_BASE (first id of the rows the delete workload removes),
-- BENCH_THREADS (wrk -t), BENCH_NAMES (how many distinct names the table has).
-- Every response is checked: its status, for pages the number of rows in the body, for a 204 an empty
-- body, for any other answer a body that names an id.

local workload = os.getenv("BENCH_WORKLOAD")
local style = os.getenv("BENCH_STYLE")
local tag = os.getenv("BENCH_TAG") or "x"
local delete_base = tonumber(os.getenv("BENCH_DELETE_BASE") or "0")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local nnames = tonumber(os.getenv("BENCH_NAMES") or "500")
local READ_LO, READ_HI = 50001, 100000
local JSON = {["Content-Type"] = "application/json"}
local JSONAPI = {["Content-Type"] = "application/vnd.api+json", ["Accept"] = "application/vnd.api+json"}
local HEADERS = style == "restless" and JSONAPI or JSON
local READ_HEADERS = style == "restless" and {["Accept"] = JSONAPI["Accept"]} or nil  -- GET, DELETE: no body
local USERS = ({restless = "/api/users", sandman2 = "/user"})[style] or "/users"

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local counter = 0
errors, first_error = 0, nil  -- globals: done() reads them with thread:get

function init(args)
  math.randomseed(os.time() * 1000 + tid)
end

local function enc(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local function restless_page(filters, sort, size, number)
  return "/api/users?" .. enc("filter[objects]") .. "=" .. enc(filters) .. "&sort=" .. sort ..
         "&" .. enc("page[size]") .. "=" .. size .. "&" .. enc("page[number]") .. "=" .. number
end

local function page_name_path()
  local name = "name" .. math.random(0, nnames - 1)
  if style == "tiddly" then
    return "/users?where=%7B%22name%22%3A%22" .. name .. "%22%7D&orderby=email%20desc&limit=20&offset=40"
  elseif style == "sandman2" then
    return "/user/?name=" .. name .. "&sort=-email&limit=20&page=3"
  elseif style == "restless" then
    return restless_page('[{"name":"name","op":"eq","val":"' .. name .. '"}]', "-email", 20, 3)
  end
  return "/users/by-name/" .. name .. "?limit=20&offset=40"
end

local AGE_PATH = {
  tiddly = "/users?where=%7B%22age%22%3A%7B%22gt%22%3A30%2C%22lt%22%3A40%7D%7D&orderby=id&limit=50",
  plain = "/users/by-age?gt=30&lt=40&limit=50",
  restless = restless_page('[{"name":"age","op":"gt","val":30},{"name":"age","op":"lt","val":40}]', "id", 50, 1),
}

local function new_user(i)
  return string.format('{"email":"%s-%d-%d-%d@bench.test","name":"ins%d","age":%d}',
                       tag, tid, counter, i, i % 50, 18 + (counter + i) % 63)
end

local function insert_request()
  local user = new_user(0)
  if style == "sandman2" then  -- its collection's POST route ends in a slash
    return wrk.format("POST", "/user/", JSON, user)
  elseif style == "restless" then
    return wrk.format("POST", USERS, JSONAPI, '{"data":{"type":"users","attributes":' .. user .. '}}')
  end
  return wrk.format("POST", "/users", JSON, user)
end

local function update_request()
  local id, age = math.random(READ_LO, READ_HI), math.random(18, 80)
  local body = string.format('{"age":%d}', age)
  if style == "restless" then
    body = string.format('{"data":{"type":"users","id":"%d","attributes":%s}}', id, body)
  end
  return wrk.format("PATCH", USERS .. "/" .. id, HEADERS, body)
end

local function bulk_body()
  local items = {}
  for i = 1, 1000 do items[i] = new_user(i) end
  return "[" .. table.concat(items, ",") .. "]"
end

local BULK_PATH = {tiddly = "/users", plain = "/users/bulk"}

local builders = {
  get_pk = function() return wrk.format("GET", USERS .. "/" .. math.random(READ_LO, READ_HI), READ_HEADERS) end,
  page_name = function() return wrk.format("GET", page_name_path(), READ_HEADERS) end,
  page_age = function() return wrk.format("GET", AGE_PATH[style], READ_HEADERS) end,
  insert = insert_request,
  update = update_request,
  delete = function()
    return wrk.format("DELETE", USERS .. "/" .. (delete_base + 1 + tid + nthreads * counter), READ_HEADERS)
  end,
  bulk = function() return wrk.format("POST", BULK_PATH[style], JSON, bulk_body()) end,
}
local build = builders[workload]

function request()
  local r = build()
  counter = counter + 1
  return r
end

local EXPECT = {get_pk = 200, page_name = 200, page_age = 200, insert = 201, update = 200, delete = 200, bulk = 201}
local NO_CONTENT = {sandman2 = {delete = true}, restless = {update = true, delete = true}}
local ROWS = {page_name = 20, page_age = 50}
local no_content = (NO_CONTENT[style] or {})[workload]
local expected_status = no_content and 204 or EXPECT[workload]
local expected_rows = ROWS[workload]

function response(status, headers, body)
  local bad = status ~= expected_status
  if not bad and no_content then
    bad = #body > 0
  elseif not bad and expected_rows then
    local _, rows = body:gsub('"email":', "")
    bad = rows ~= expected_rows
  elseif not bad then
    bad = not body:find('"id', 1, true)
  end
  if bad then
    errors = errors + 1
    if not first_error then first_error = status .. " " .. body:sub(1, 200) end
  end
end

function done(summary, latency, requests)
  local bad, sample = 0, ""
  for _, t in ipairs(threads) do
    bad = bad + (t:get("errors") or 0)
    local f = t:get("first_error")
    if f and sample == "" then sample = f end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"bad_responses":%d,' ..
    '"socket_errors":%d,"non_2xx":%d,"first_bad":"%s"}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), bad,
    e.connect + e.read + e.write + e.timeout, e.status,
    (sample:gsub('[%c"\\]', "?"))))
end
