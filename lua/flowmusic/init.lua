--- flowmusic: the client for the useapi.net Flow Music accounts API.
--
--     local flowmusic = require "flowmusic"
--     local client = flowmusic.new { token = os.getenv "USEAPI_TOKEN" }
--     local value, err = client:<operation>(args...)   -- see docs/api.md
--     if not value then print(err) end
--
-- Conventions: misuse (wrong types, out-of-range values, unknown options, extra arguments)
-- raises an error before anything is sent; failures of the world (HTTP errors, timeouts,
-- resets, bad answers) return `nil, err` with `err` an error value (see flowmusic.errors).
--
-- The client methods are made from the operation table (flowmusic.ops; see docs/api.md for
-- each one). Every one takes an optional trailing table of per-call options
-- `{ timeout = s, deadline = s, retries = n }`.
-- @module flowmusic
local core = require "flowmusic.core"
local ops = require "flowmusic.ops"
local engine = require "flowmusic.engine"
local validate = require "flowmusic.validate"
local errors = require "flowmusic.errors"
local defaults = require "flowmusic.defaults"
local settings = require "flowmusic.settings"

-- nginx's API table, when this runs inside OpenResty.
local in_nginx = rawget(_G, "ngx")

local M = { _VERSION = defaults.VERSION }

--- Sentinel for JSON null, for the `null` option: `flowmusic.new { null = flowmusic.null }`.
M.null = core.null

--- Error helpers: `flowmusic.errors.is(v)`.
M.errors = errors

--- Opt-in SIGINT/SIGTERM catching, for programs that must stop cleanly (the CLI uses it with
-- batch's `cancel`). `catch()` makes the two signals only count; `caught()` returns the count
-- and the last signal number; `release()` restores the previous handlers. The library installs
-- no handler unless a program calls `catch()`.
M.signals = { catch = core.signals_catch, caught = core.signals_caught, release = core.signals_release,
  SIGINT = core.SIGINT, SIGTERM = core.SIGTERM }

local Client = { __name = "flowmusic.client" }
Client.__index = Client

-- Private state per client, weakly keyed (never reachable from the module or the client):
-- cfg (the token included), the C session, cached call records, busy.
local states = setmetatable({}, { __mode = "k" })

local function of_type(t)
  return function(v, name)
    if type(v) ~= t then return nil, name .. " must be a " .. t .. ", got " .. type(v) end
    return v
  end
end

-- Option name -> checker(value, name) returning the value or nil, message.
local option_checks = {
  token = function(v) return validate.api_token(v) end,
  base_url = of_type("string"), -- fully checked once allow_http is known
  timeout = validate.seconds, connect_timeout = validate.seconds, deadline = validate.seconds,
  base_delay = validate.seconds, max_delay = validate.seconds, retry_after_max = validate.seconds,
  retries = function(v, name) return validate.retries(v, name, defaults.max_retries) end,
  max_response_bytes = function(v)
    if type(v) ~= "number" or v ~= math.floor(v) or v < 1 or v > 2 ^ 40 then
      return nil, "max_response_bytes must be a positive integer"
    end
    return v
  end,
  cainfo = of_type("string"),
  capath = of_type("string"),
  proxy = of_type("string"),
  user_agent = function(v, name)
    if type(v) ~= "string" or v:find("%c") then return nil, name .. " must be a string without control characters" end
    return v
  end,
  null = function(v) return v end,
  allow_http = of_type("boolean"),
  on_event = of_type("function"),
  clock = of_type("function"),
  sleep = of_type("function"),
  random = of_type("function"),
  thread_pool = of_type("string"),
  allow_blocking = of_type("boolean"),
  used_tokens = function(v, name)
    if not require("flowmusic.used_tokens").is_store(v) then
      return nil, name .. " must be a store from flowmusic.used_tokens.open()"
    end
    return v
  end,
}

--- Create a client.
-- @param opts table (all optional; unknown keys raise): `token` (default `$USEAPI_TOKEN`),
--   `base_url` (default `$FLOWMUSIC_BASE_URL` or https://api.useapi.net/v1/flowmusic),
--   `timeout` (seconds per attempt, 30), `connect_timeout` (10), `deadline` (seconds per call
--   across retries, 60), `retries` (re-sends after the first attempt, 3), `base_delay` (0.25),
--   `max_delay` (8) and `retry_after_max` (30) for the retry schedule, `cainfo` (a CA
--   bundle file) and `capath` (a CA directory; without either: `$CURL_CA_BUNDLE`, then
--   `$SSL_CERT_FILE`/`$SSL_CERT_DIR`, then the system store; see flowmusic.trust), `proxy`,
--   `user_agent`, `max_response_bytes` (64 MiB), `null` (value standing for JSON null;
--   default: nil), `allow_http` (plain http to non-loopback hosts), `on_event` (function(ev)
--   called after every attempt and every scheduled retry), `clock`/`sleep`/`random`
--   (injectable time and randomness for the retry schedule), `thread_pool` /
--   `allow_blocking` (nginx), `used_tokens` (a store from flowmusic.used_tokens.open(): a call
--   that sends a refresh token then refuses one sent before, and records the ones it sends;
--   not inside nginx). Defaults live in flowmusic.defaults.
-- @return client. Raises on a bad option, an unreadable CA file or directory, or when no
--   token is given.
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
  local base_url, msg = validate.base_url(raw_url or defaults.base_url, o.allow_http)
  if not base_url then error("flowmusic.new: " .. msg, 2) end
  local cfg, smsg = settings.transport(o, base_url)
  if not cfg then error("flowmusic.new: " .. smsg, 2) end
  cfg.base_url, cfg.token = base_url, token
  if o.used_tokens then
    -- (the store lives in this Lua state: nginx's worker threads can't reach it)
    if in_nginx and in_nginx.get_phase then error("flowmusic.new: used_tokens is not available inside nginx", 2) end
    cfg.used_tokens = o.used_tokens
  end
  -- useapi.net's other endpoints (/v2/account) sit beside the API's /v1/flowmusic
  cfg.service_root = base_url:gsub("/v1/flowmusic$", "")
  local session = engine.session(cfg)
  local client = setmetatable({ base_url = base_url }, Client)
  states[client] = { session = session, cfg = cfg, records = {}, busy = false,
    single = engine.single(session, cfg) }
  return client
end

local function state_of(self, name)
  local st = states[self]
  if not st then error(("flowmusic: bad self for '%s' (call it as client:%s(...))"):format(name, name), 3) end
  if st.closed then error("flowmusic: attempt to use a closed client", 3) end
  return st
end

local function pack(...) return { n = select("#", ...), ... } end

-- The call record of operation name with args, for this client (with its URL), or nil and
-- a message. Records of one-argument calls are cached: a loop over accounts rebuilds nothing.
local function record(st, name, args)
  local simple = args.n == 1 and type(args[1]) == "string"
  local cache = st.records[name]
  if simple and cache then
    local c = cache[args[1]]
    if c then return c end
  end
  local call, msg = ops.prepare(name, args)
  if not call then return nil, msg end
  call.url = (call.root and st.cfg.service_root or st.cfg.base_url) .. call.path
  if simple and not call.secrets then
    if not cache or cache.n >= 256 then cache = { n = 0 } st.records[name] = cache end
    cache[args[1]], cache.n = call, cache.n + 1
  end
  return call
end

-- Run call records in this process, on the client's own session (the default; inside nginx
-- the adapter hands calls to worker threads instead).
-- Run calls in this process on the client's own session: `many(st, calls, opts)` -> results,
-- hook_error; `one(st, call)` -> result, hook_error (on a reusable single-call state). Inside
-- nginx the adapter hands calls to worker threads instead.
local run_local = {}

-- Run f(a, b, c, d) with the client marked busy; an error raised inside (by a hook) aborts
-- every transfer in flight and propagates.
local function guarded(st, f, a, b, c, d)
  if st.busy then
    error("flowmusic: client is busy running another call (called from on_progress, on_event or"
      .. " another coroutine while a call runs); use another client", 4)
  end
  st.busy = true
  local ok, results, hook_error = pcall(f, a, b, c, d)
  st.busy = false
  if not ok then
    st.session:abort()
    error(results, 0)
  end
  return results, hook_error
end

function run_local.many(st, calls, opts) return guarded(st, engine.run, st.session, st.cfg, calls, opts) end
function run_local.one(st, call) return guarded(st, engine.run_one, st.single, call) end

local runner = run_local

-- The client method of an operation record.
local function method_of(rec)
  local name, extra1, extra2 = rec.name, rec.extras[1], rec.extras[2]
  return function(self, ...)
    local st = states[self]
    if not st or st.closed then state_of(self, name) end -- raises the right error
    -- The common call, one string argument seen before, takes its cached record directly.
    local call = select("#", ...) == 1 and st.records[name]
    if call then call = call[...] end
    if not call then
      local msg
      call, msg = record(st, name, pack(...))
      if not call then error("flowmusic: " .. msg, 2) end
    end
    local r, hook_error = runner.one(st, call)
    if hook_error then error(hook_error, 0) end
    if not r.ok then return nil, r.err end
    if extra1 then return r.value, r[extra1], extra2 and r[extra2] end
    return r.value
  end
end

-- Client methods: the ones below, and one per operation record, made on first use (so an
-- operation defined later, e.g. by a plugin or a spec, is a method too).
setmetatable(Client, { __index = function(_, key)
  local rec = type(key) == "string" and ops.get(key)
  if not rec then return nil end
  local m = method_of(rec)
  rawset(Client, key, m)
  return m
end })

local batch_options = { concurrency = true, on_progress = true, cancel = true, grace = true }

-- Check batch options; returns the engine's opts or raises (level 3: batch's caller).
local function batch_opts(opts)
  if opts == nil then return { concurrency = defaults.concurrency } end
  if type(opts) ~= "table" then error("flowmusic: bad argument #2 to 'batch' (options must be a table)", 3) end
  local ok, kmsg = validate.known_keys(opts, batch_options, "batch option")
  if not ok then error("flowmusic: bad argument #2 to 'batch' (" .. kmsg .. ")", 3) end
  local concurrency = opts.concurrency or defaults.concurrency
  if type(concurrency) ~= "number" or concurrency ~= math.floor(concurrency) or concurrency < 1
    or concurrency > defaults.max_concurrency then
    error(("flowmusic: bad argument #2 to 'batch' (concurrency must be an integer 1-%d)"):format(
      defaults.max_concurrency), 3)
  end
  for _, k in ipairs { "on_progress", "cancel" } do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      error("flowmusic: bad argument #2 to 'batch' (" .. k .. " must be a function)", 3)
    end
  end
  if opts.grace ~= nil then
    local g, gmsg = validate.seconds(opts.grace, "grace")
    if not g then error("flowmusic: bad argument #2 to 'batch' (" .. gmsg .. ")", 3) end
  end
  return { concurrency = concurrency, on_progress = opts.on_progress, cancel = opts.cancel, grace = opts.grace }
end

-- Run many calls concurrently over one connection pool (documented in docs/client.luadoc).
-- @param calls array of operations, each `{ "method_name", arg1, arg2, ... [, opts] }` naming
--   a client method (e.g. `{ "<operation>", "a@x.com" }`), with the same optional trailing
--   per-call options table as the method
-- @param opts optional `{ concurrency = 1-50 (default 16), on_progress = function(done, total,
--   index, result), cancel = function(), grace = seconds }`. `on_progress` runs as each call
--   completes; it may take `result.value` (set it to nil: the batch then keeps no reference to
--   it); returning `false` stops the batch early. `cancel` is polled while the batch runs;
--   returning `"stop"` stops it early, `"abort"` at once. After a stop nothing new starts,
--   calls never started come back with an error of kind `cancelled` (reason `not_run`), calls
--   in flight get `grace` seconds (default 2) and are then dropped (`cancelled`, reason
--   `interrupted`, `outcome_unknown` for writes). An error raised by on_progress or on_event
--   stops the batch the same way and then propagates.
-- @return array of results in input order, each `{ ok, value, err, status, attempts,
--   elapsed }` plus the operation's extra values by name (`created`, `headers`, `note`: see
--   flowmusic.ops). Raises before
--   sending anything if any item is malformed.
function Client:batch(calls, opts)
  local st = state_of(self, "batch")
  if type(calls) ~= "table" then error("flowmusic: bad argument #1 to 'batch' (calls must be an array)", 2) end
  local eopts = batch_opts(opts)
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
    local call, msg = record(st, item[1], args)
    if not call then error(("flowmusic: batch item %d: %s"):format(i, msg), 2) end
    prepared[i] = call
  end
  local results, hook_error = runner.many(st, prepared, eopts)
  if hook_error then error(hook_error, 0) end
  return results
end

-- Release the connection pool and handles; the client can't be used afterwards.
-- Idempotent; also runs on leaving a `<close>` scope. (An unreachable client's connections are
-- released by its C session's own `__gc`.)
function Client:close()
  local st = states[self]
  if st and not st.closed then
    st.closed = true
    st.session:close()
  end
end
Client.__close = Client.close

function Client:__tostring()
  local st = states[self]
  return ("flowmusic.client (%s%s)"):format(self.base_url, (not st or st.closed) and ", closed" or "")
end

-- Inside nginx every call goes to a worker thread (flowmusic.ngx); elsewhere nothing changes.
if in_nginx and in_nginx.get_phase then runner = require("flowmusic.ngx").runner(run_local) end

return M
