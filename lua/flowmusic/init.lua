--- flowmusic: the client for the useapi.net Flow Music accounts API.
--
--     local flowmusic = require "flowmusic"
--     local client = flowmusic.new { token = os.getenv "USEAPI_TOKEN" }
--     local acct, err = client:get_account "someone@example.com"
--     if not acct then print(err) end
--
-- Conventions: misuse (wrong types, out-of-range values, unknown options) raises an error
-- before anything is sent; failures of the world (HTTP errors, timeouts, resets, bad
-- answers) return `nil, err` with `err` an error value (see flowmusic.errors).
-- @module flowmusic
local core = require "flowmusic.core"
local ops = require "flowmusic.ops"
local engine = require "flowmusic.engine"
local retry = require "flowmusic.retry"
local validate = require "flowmusic.validate"
local errors = require "flowmusic.errors"

local M = { _VERSION = core._VERSION }

--- Sentinel for JSON null, for the `null` option: `flowmusic.new { null = flowmusic.null }`.
M.null = core.null

--- Error helpers: `flowmusic.errors.is(v)`.
M.errors = errors

local DEFAULT_BASE_URL = "https://api.useapi.net/v1/flowmusic"
local MAX_CONCURRENCY = 50
local DEFAULT_CONCURRENCY = 16

local Client = {}
Client.__index = Client
Client.__name = "flowmusic.client"

-- Option name -> checker(value) returning the value or nil, message.
local function positive(name)
  return function(v)
    if type(v) ~= "number" or not (v > 0) or v == math.huge then return nil, name .. " must be a positive number of seconds" end
    return v
  end
end
local function of_type(t)
  return function(v, name)
    if type(v) ~= t then return nil, name .. " must be a " .. t .. ", got " .. type(v) end
    return v
  end
end
local option_checks = {
  token = function(v) return validate.api_token(v) end,
  base_url = of_type("string"), -- fully checked once allow_http is known
  timeout = positive("timeout"),
  connect_timeout = positive("connect_timeout"),
  deadline = positive("deadline"),
  retries = function(v)
    if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v > 20 then return nil, "retries must be an integer 0-20" end
    return v
  end,
  max_response_bytes = function(v)
    if type(v) ~= "number" or v ~= math.floor(v) or v < 1 or v > 2 ^ 40 then
      return nil, "max_response_bytes must be a positive integer"
    end
    return v
  end,
  cainfo = of_type("string"),
  proxy = of_type("string"),
  user_agent = function(v, name)
    if type(v) ~= "string" or v:find("[%c]") then return nil, name .. " must be a string without control characters" end
    return v
  end,
  null = function(v) return v end,
  allow_http = of_type("boolean"),
  clock = of_type("function"),
  sleep = of_type("function"),
  random = of_type("function"),
  thread_pool = of_type("string"),
  allow_blocking = of_type("boolean"),
}

--- Create a client.
-- @param opts table (all optional): `token` (default `$USEAPI_TOKEN`), `base_url` (default
--   `$FLOWMUSIC_BASE_URL` or https://api.useapi.net/v1/flowmusic), `timeout` (seconds per
--   attempt, 30), `connect_timeout` (10), `deadline` (seconds per call across retries, 60),
--   `retries` (re-sends after the first attempt, 3), `cainfo`, `proxy`, `user_agent`,
--   `max_response_bytes` (64 MiB), `null` (value standing for JSON null; default: nil),
--   `allow_http` (plain http to non-loopback hosts), `clock`/`sleep`/`random` (injectable
--   time and randomness for the retry schedule), `thread_pool` / `allow_blocking` (nginx).
-- @return client. Raises on a bad option or when no token is given.
function M.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error("flowmusic.new: options must be a table", 2) end
  local o = {}
  for k, v in pairs(opts) do
    local check = option_checks[k]
    if not check then error(("flowmusic.new: unknown option '%s'"):format(tostring(k)), 2) end
    local value, msg = check(v, k)
    if value == nil and v ~= nil then error("flowmusic.new: " .. msg, 2) end
    o[k] = value
  end
  local token = o.token
  if token == nil then
    local env = os.getenv("USEAPI_TOKEN")
    if env == nil or env == "" then
      error("flowmusic.new: no API token (pass token = ... or set USEAPI_TOKEN)", 2)
    end
    local t, msg = validate.api_token(env)
    if not t then error("flowmusic.new: USEAPI_TOKEN: " .. msg, 2) end
    token = t
  end
  local raw_url = o.base_url or os.getenv("FLOWMUSIC_BASE_URL")
  if raw_url == "" then raw_url = nil end
  local base_url, msg = validate.base_url(raw_url or DEFAULT_BASE_URL, o.allow_http)
  if not base_url then error("flowmusic.new: " .. msg, 2) end

  local cfg = {
    base_url = base_url, token = token, null = o.null,
    timeout = o.timeout or 30, connect_timeout = o.connect_timeout or 10,
    deadline = o.deadline or 60, retries = o.retries or retry.defaults.retries,
    clock = o.clock or core.now, sleep = o.sleep, random = o.random or math.random,
    thread_pool = o.thread_pool or "flowmusic", allow_blocking = o.allow_blocking or false,
    max_response_bytes = o.max_response_bytes or 64 * 1024 * 1024,
    cainfo = o.cainfo, proxy = o.proxy,
    user_agent = o.user_agent or ("flowmusic/" .. core._VERSION .. " libcurl/" .. core.curl_version()),
  }
  local session = core.session {
    token = token, user_agent = cfg.user_agent, cainfo = cfg.cainfo, proxy = cfg.proxy,
    connect_timeout_ms = math.ceil(cfg.connect_timeout * 1000),
    max_response_bytes = cfg.max_response_bytes,
  }
  -- The token lives in cfg, kept in the module's private _state table and in the C session:
  -- it is never a field of the client, so it can't show up in pairs or tostring.
  local client = setmetatable({ base_url = base_url }, Client)
  M._state[client] = { session = session, cfg = cfg }
  return client
end

-- Private state per client, weakly keyed: cfg (including the token) and the C session.
M._state = setmetatable({}, { __mode = "k" })

local function state_of(self, name)
  local st = M._state[self]
  if not st then error(("flowmusic: bad self for '%s' (call it as client:%s(...))"):format(name, name), 3) end
  if st.closed then error("flowmusic: attempt to use a closed client", 3) end
  return st
end

local function pack(...) return { n = select("#", ...), ... } end

-- Run prepared calls in this process (the default, and inside nginx worker threads).
local function run_local(st, calls, concurrency, on_progress)
  return engine.run(st.session, st.cfg, calls, concurrency, on_progress)
end

--- How calls are run: replaced by the nginx adapter (flowmusic.ngx) inside OpenResty.
M._runner = run_local

local function prepare(name, args)
  local call, msg = ops.prepare(name, args)
  if not call then return nil, msg end
  call.policy = retry.op_kind(name, call.method)
  if call.json then
    local body, jerr = core.json_encode(call.json)
    if not body then return nil, "cannot encode request body: " .. jerr end
    call.body, call.json = body, nil
  end
  return call
end

local function single(name)
  return function(self, ...)
    local st = state_of(self, name)
    local call, msg = prepare(name, pack(...))
    if not call then error("flowmusic: " .. msg, 2) end
    local values, err
    if M._runner == run_local then
      values, err = engine.call_one(st.session, st.cfg, call)
    else
      local r = M._runner(st, { call }, 1, nil, self)[1]
      values, err = r.values, r.err
    end
    if values then return ops.unpack(values, 1, #values) end
    return nil, err
  end
end

--- Add an account, or refresh it when it exists (POST /accounts with refresh_token).
-- @param refresh_token the Flow Music refresh token (at least 10 characters)
-- @param max_jobs optional integer 1-16 (the service picks a default from the plan tier)
-- @return account, created (true on 201, false on 200); or nil, err. If the request reached
--   the server but no answer came back, err.outcome_unknown is true: check list_accounts.
Client.add_account = single("add_account")

--- Change maxJobs of an existing account (POST /accounts with email + maxJobs).
-- @return account; or nil, err (404: no such account)
Client.set_max_jobs = single("set_max_jobs")

--- List the configured accounts (GET /accounts).
-- @return table keyed by email (empty when there are none); or nil, err
Client.list_accounts = single("list_accounts")

--- Get one account, with `credits_remaining`/`tokens_remaining` when the service sends them
-- (GET /accounts/{email}).
-- @return account; or nil, err (404: not configured)
Client.get_account = single("get_account")

--- Delete an account (DELETE /accounts/{email}).
-- @return true (and a note as a second value when a retry found it already gone); or nil, err
Client.delete_account = single("delete_account")

--- Usage of an account: events and summary (GET /accounts/usage?email=).
-- @return usage document; or nil, err
Client.get_usage = single("get_usage")

--- Any other Flow Music endpoint.
-- @param method "GET", "POST", "PUT", "PATCH", "DELETE" or "HEAD"
-- @param path below the base URL, e.g. "/jobs"
-- @param opts optional { query = table, body = table (sent as JSON), timeout = seconds }
-- @return body (decoded when JSON, else a string; "" when empty), status, headers; HTTP
--   errors are results here. Transport failures give nil, err.
Client.request = single("request")

local batch_options = { concurrency = true, on_progress = true }

--- Run many calls concurrently over one connection pool.
-- @param calls array of operations, each `{ "method_name", arg1, arg2, ... }` naming a
--   client method (e.g. `{ "set_max_jobs", "a@x.com", 4 }`)
-- @param opts optional { concurrency = 1-50 (default 16), on_progress = function(done,
--   total, index, result) }
-- @return array of results in input order, each `{ ok, value, err, status, attempts,
--   elapsed }` plus `created` (add_account), `headers` (request), `note`. Raises before
--   sending anything if any item is malformed.
function Client:batch(calls, opts)
  local st = state_of(self, "batch")
  if type(calls) ~= "table" then error("flowmusic: bad argument #1 to 'batch' (calls must be an array)", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("flowmusic: bad argument #2 to 'batch' (options must be a table)", 2) end
  local ok, kmsg = validate.known_keys(opts, batch_options, "batch option")
  if not ok then error("flowmusic: bad argument #2 to 'batch' (" .. kmsg .. ")", 2) end
  local concurrency = opts.concurrency or DEFAULT_CONCURRENCY
  if type(concurrency) ~= "number" or concurrency ~= math.floor(concurrency) or concurrency < 1
    or concurrency > MAX_CONCURRENCY then
    error(("flowmusic: bad argument #2 to 'batch' (concurrency must be an integer 1-%d)"):format(MAX_CONCURRENCY), 2)
  end
  if opts.on_progress ~= nil and type(opts.on_progress) ~= "function" then
    error("flowmusic: bad argument #2 to 'batch' (on_progress must be a function)", 2)
  end
  local n = 0
  for k in pairs(calls) do
    if type(k) ~= "number" or k < 1 or k ~= math.floor(k) then
      error("flowmusic: bad argument #1 to 'batch' (calls must be an array)", 2)
    end
    if k > n then n = k end
  end
  local prepared = {}
  for i = 1, n do
    local item = calls[i]
    if type(item) ~= "table" or type(item[1]) ~= "string" then
      error(("flowmusic: batch item %d must be a table { 'method', args... }"):format(i), 2)
    end
    local argc = 0
    for k in pairs(item) do
      if type(k) == "number" and k > argc then argc = k end
    end
    local args = { n = argc - 1 }
    for j = 2, argc do args[j - 1] = item[j] end
    local call, msg = prepare(item[1], args)
    if not call then error(("flowmusic: batch item %d: %s"):format(i, msg), 2) end
    prepared[i] = call
  end
  local results = M._runner(st, prepared, concurrency, opts.on_progress, self)
  for i = 1, n do
    local r, call = results[i], prepared[i]
    if r.ok and r.values then
      if call.op == "add_account" then r.created = r.values[2] end
      if call.op == "request" then r.headers = r.values[3] end
    end
    r.values = nil
  end
  return results
end

--- Release the connection pool and handles; the client can't be used afterwards.
-- Idempotent. Also runs when the client is garbage-collected or goes out of a `<close>` scope.
function Client:close()
  local st = M._state[self]
  if st and not st.closed then
    st.closed = true
    st.session:close()
  end
end
Client.__close = Client.close

function Client:__tostring()
  local st = M._state[self]
  return ("flowmusic.client (%s%s)"):format(self.base_url, (not st or st.closed) and ", closed" or "")
end

if ngx and ngx.get_phase then require("flowmusic.ngx").install(M) end -- inside nginx: thread pool

return M
