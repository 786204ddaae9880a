--- Fleet status and request counters as a Prometheus `/metrics` endpoint inside nginx
-- (OpenResty / lua-nginx-module).
--
--     lua_shared_dict flowmusic_metrics 1m;
--     init_worker_by_lua_block {
--         require("flowmusic.ngx.metrics").start { interval = 60, min_credits = 100 }
--     }
--     location = /metrics {
--         content_by_lua_block { require("flowmusic.ngx.metrics").serve() }
--     }
--
-- * **One refresh per nginx instance.** `start` runs in every worker, but only worker 0
--   (`ngx.worker.id()`) arms the timer: one refresh right away, then one every `interval`
--   seconds. A lock in the shared dict keeps two refreshes from overlapping (a refresh
--   slower than the interval, or an old worker still finishing one after a reload); the
--   tick that finds it taken is skipped, unless the worker holding it is gone (killed
--   mid-refresh): then its lock is taken over. A refresh is `flowmusic.fleet.status.collect`
--   through the nginx thread pool (the timer phase can yield).
-- * **Scrapes make no API call.** The refresh stores the rendered account metrics in the
--   `lua_shared_dict`; `serve` reads it and adds the collection's own metrics.
-- * **Stale data is never served as fresh.** `flowmusic_status_success` is 1 only when the
--   last refresh listed the accounts and the data is at most 3 × `interval` old;
--   `flowmusic_status_timestamp_seconds` says when it was collected and
--   `flowmusic_status_age_seconds` how old it is. Until the first refresh succeeds both are
--   absent and success is 0.
-- * **Request counters.** `on_event` (a client `on_event` hook) counts every event a
--   flowmusic client reports as `flowmusic_requests_total{op,outcome}`, a counter across all
--   workers (the shared dict). The status client counts itself; give your own clients
--   `on_event = require("flowmusic.ngx.metrics").on_event`.
-- * **Change events.** With `notify` (a function), each refresh compares the fleet with the
--   last one (flowmusic.fleet.events: appeared, disappeared, recovered, needs_reauth,
--   unreachable, low_credits, stale_token, reminder) and calls `notify(event, json)` once
--   per event, in order. The known states and the events `notify` did not take (it returned
--   false or nil, or raised) stay in the shared dict and go first on the next refresh, so one
--   is never lost or repeated while nginx runs.
-- * The API token is never stored, logged or exposed: the dict holds metrics text, times,
--   counters keyed by operation and outcome, and the account states and events (emails,
--   states, credits, messages) only.
-- @module flowmusic.ngx.metrics
local prometheus = require "flowmusic.fleet.prometheus"
local status = require "flowmusic.fleet.status"
local events = require "flowmusic.fleet.events"
local core = require "flowmusic.core"

local M = {}

--- Name of the `lua_shared_dict` used when `start` is given none.
M.DEFAULT_DICT = "flowmusic_metrics"

--- Seconds between refreshes when `start` is given no `interval`.
M.DEFAULT_INTERVAL = 60

--- Data older than this many intervals is stale.
M.STALE_INTERVALS = 3

-- Shared dict keys (no secret ever goes into one).
local KEY_DATA = "status:data"          -- "<collected at> <seconds it took>\n<account metrics text>"
local KEY_OK = "status:ok"              -- whether the last refresh listed the accounts
local KEY_LOCK = "status:lock"          -- held while a refresh runs
local KEY_REFRESHES = "status:refreshes" -- refreshes done (for tests and logs)
local KEY_KNOWN = "events:known"        -- JSON: email -> last state (flowmusic.fleet.events)
local KEY_PENDING = "events:pending"    -- JSON array: events notify has not taken yet
local REQ_PREFIX = "req\t"              -- "req\t<op>\t<outcome>" -> count

local option_names = { dict = true, interval = true, client = true, min_credits = true,
  min_tokens = true, max_token_age = true, concurrency = true, notify = true, remind = true }

-- This worker's settings (set by start).
local cfg = nil
-- This worker's status client (made on first refresh).
local client = nil
-- Whether this worker armed the refresh timer (a second start() only changes the settings).
local armed = false

-- The shared dict, or raise naming it.
local function shared(name, level)
  local d = ngx.shared[name]
  if not d then
    error(("flowmusic.ngx.metrics: no lua_shared_dict '%s' (declare it in the http block:"
      .. " `lua_shared_dict %s 1m;`)"):format(name, name), level + 1)
  end
  return d
end

-- Whether a process exists (Linux: /proc/<pid>; nginx thread pools are Linux-only anyway).
local function process_exists(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  f:close()
  return true
end

--- Count one client event (a flowmusic client's `on_event` hook): adds 1 to
-- `flowmusic_requests_total{op=ev.op,outcome=ev.outcome}` in the shared dict.
-- Usable before `start` (it then counts into M.DEFAULT_DICT); does nothing when that dict
-- does not exist.
-- @tparam table ev the event (`op`, `outcome`, ...)
function M.on_event(ev)
  local d = ngx.shared[cfg and cfg.dict or M.DEFAULT_DICT]
  if not d or type(ev) ~= "table" then return end
  local ok, err = d:incr(REQ_PREFIX .. tostring(ev.op) .. "\t" .. tostring(ev.outcome), 1, 0)
  if not ok then ngx.log(ngx.WARN, "flowmusic.ngx.metrics: cannot count a request: ", err) end
end

-- The status client of this worker: from the `client` option (a function returning a
-- client, or a table of flowmusic.new options that get this module's on_event).
local function status_client()
  if client then return client end
  local c = cfg.client
  if type(c) == "function" then
    client = c()
  else
    local o = {}
    for k, v in pairs(c or {}) do o[k] = v end
    local own = o.on_event
    if own then
      o.on_event = function(ev) M.on_event(ev) return own(ev) end
    else
      o.on_event = M.on_event
    end
    client = require("flowmusic").new(o)
  end
  return client
end

-- A JSON value from the dict, or the fallback when absent or unreadable.
local function stored(d, key, fallback)
  local text = d:get(key)
  local v = text and core.json_decode(text)
  if type(v) ~= "table" then return fallback end
  return v
end

-- Compare records with the stored states and hand the events (the backlog first) to
-- notify; stores what is left. Runs under the refresh lock.
local function notify_changes(d, records)
  local now = ngx.now()
  local known = stored(d, KEY_KNOWN, {})
  if events.check_known(known) then known = {} end
  local new, next_known = events.detect(known, records, { now = now, remind = cfg.remind,
    min_credits = cfg.status_opts.min_credits, min_tokens = cfg.status_opts.min_tokens })
  local queue = stored(d, KEY_PENDING, {})
  for _, e in ipairs(new) do queue[#queue + 1] = e end
  local ok, err = d:set(KEY_KNOWN, require("flowmusic.format").json(next_known))
  if not ok then ngx.log(ngx.WARN, "flowmusic.ngx.metrics: cannot store the account states: ", err) end
  local left = {}
  for _, e in ipairs(queue) do
    local taken = false
    if #left == 0 then -- in order: after one that failed, the rest waits too
      local pok, res = pcall(cfg.notify, e, events.json(e))
      taken = pok and res and true or false
      if not pok then ngx.log(ngx.WARN, "flowmusic.ngx.metrics: notify raised: ", tostring(res)) end
    end
    if not taken then left[#left + 1] = e end
  end
  ok, err = d:set(KEY_PENDING, #left > 0 and require("flowmusic.format").json(left) or nil)
  if not ok then ngx.log(ngx.WARN, "flowmusic.ngx.metrics: cannot keep the events not delivered: ", err) end
end

--- Refresh the stored status once (what the timer does). Skipped when another refresh
-- holds the lock.
-- @treturn boolean|nil true refreshed, false the list call failed, nil skipped
-- @treturn string|nil why it failed or was skipped
function M.refresh()
  if not cfg then error("flowmusic.ngx.metrics: call start() first (in init_worker_by_lua)", 2) end
  local d = shared(cfg.dict, 2)
  local me = ngx.worker.pid()
  local locked, lerr = d:add(KEY_LOCK, me, cfg.lock_ttl)
  if not locked and lerr == "exists" then
    -- a lock left by a worker that died mid-refresh (its pid is gone) is taken over
    local holder = d:get(KEY_LOCK)
    if type(holder) == "number" and holder ~= me and not process_exists(holder) then
      locked, lerr = d:set(KEY_LOCK, me, cfg.lock_ttl)
    else
      return nil, "a refresh is already running"
    end
  end
  if not locked then return nil, lerr end
  ngx.update_time()
  local started = ngx.now()
  local ok, records, summary = pcall(function()
    return status.collect(status_client(), cfg.status_opts)
  end)
  ngx.update_time()
  local now, result, why = ngx.now(), false, nil
  if ok and records then
    local data = ("%.3f %.3f\n"):format(now, now - started)
      .. prometheus.render(prometheus.account_families(records, summary))
    local sok, serr = d:set(KEY_DATA, data)
    if cfg.notify then notify_changes(d, records) end
    if sok then
      result = true
    else
      why = "cannot store the status in lua_shared_dict '" .. cfg.dict .. "': " .. tostring(serr)
    end
  else
    why = ok and tostring(summary) or tostring(records)
  end
  d:set(KEY_OK, result)
  d:incr(KEY_REFRESHES, 1, 0)
  d:delete(KEY_LOCK)
  if result then
    ngx.log(ngx.INFO, "flowmusic.ngx.metrics: status refreshed by worker ", ngx.worker.pid(),
      ": ", status.summary_line(summary))
  else
    ngx.log(ngx.WARN, "flowmusic.ngx.metrics: status refresh failed: ", why)
  end
  return result, why
end

-- Timer callback: one refresh (never raises into the timer).
local function tick(premature)
  if premature then return end
  local ok, err = pcall(M.refresh)
  if not ok then ngx.log(ngx.ERR, "flowmusic.ngx.metrics: refresh raised: ", tostring(err)) end
end

--- Set up this worker; call it from `init_worker_by_lua` in every worker.
-- Worker 0 arms the refresh timer (a refresh at once, then every `interval` seconds);
-- the others only serve and count. Calling it again in a worker replaces the settings (the
-- timer keeps its first interval).
-- @tparam[opt] table opts
--   `dict` (the `lua_shared_dict` name, default "flowmusic_metrics"),
--   `interval` (seconds, default 60),
--   `client` (a table of `flowmusic.new` options, default `{}`: token and base URL from the
--   environment; or a function returning a client),
--   `min_credits`, `min_tokens`, `max_token_age`, `concurrency` (passed to
--   `flowmusic.fleet.status.collect`),
--   `notify` (function(event, json) -> true when delivered: called once per change event),
--   `remind` (seconds: repeat a state other than ok at most this often)
-- @treturn true
-- @raise on misuse (unknown option, bad interval, missing dict, a timer that can't be made)
function M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("flowmusic.ngx.metrics: bad argument #1 to 'start' (options must be a table)", 2)
  end
  for k in pairs(opts) do
    if not option_names[k] then
      error(("flowmusic.ngx.metrics: bad argument #1 to 'start' (unknown option '%s')"):format(tostring(k)), 2)
    end
  end
  local interval = opts.interval or M.DEFAULT_INTERVAL
  if type(interval) ~= "number" or interval ~= interval or interval <= 0 or interval == math.huge then
    error("flowmusic.ngx.metrics: bad argument #1 to 'start' (interval must be a positive number of seconds)", 2)
  end
  if opts.client ~= nil and type(opts.client) ~= "table" and type(opts.client) ~= "function" then
    error("flowmusic.ngx.metrics: bad argument #1 to 'start' (client must be a table of options or a function)", 2)
  end
  if opts.notify ~= nil and type(opts.notify) ~= "function" then
    error("flowmusic.ngx.metrics: bad argument #1 to 'start' (notify must be a function)", 2)
  end
  if opts.remind ~= nil and (type(opts.remind) ~= "number" or opts.remind ~= opts.remind or opts.remind <= 0) then
    error("flowmusic.ngx.metrics: bad argument #1 to 'start' (remind must be a positive number of seconds)", 2)
  end
  local status_opts = { min_credits = opts.min_credits, min_tokens = opts.min_tokens,
    max_token_age = opts.max_token_age, concurrency = opts.concurrency }
  local sok, why = status.check_options(status_opts)
  if not sok then error("flowmusic.ngx.metrics: bad argument #1 to 'start' (" .. why .. ")", 2) end
  local name = opts.dict or M.DEFAULT_DICT
  shared(name, 2)
  cfg = {
    dict = name, interval = interval, client = opts.client, status_opts = status_opts,
    notify = opts.notify, remind = opts.remind,
    -- a refresh that never releases the lock (its worker died) stops blocking after this
    lock_ttl = math.max(10 * interval, 600),
  }
  client = nil
  if not armed and (ngx.worker.id() or 0) == 0 then
    local ok, err = ngx.timer.at(0, tick)
    if ok then ok, err = ngx.timer.every(interval, tick) end
    if not ok then error("flowmusic.ngx.metrics: cannot start the refresh timer: " .. tostring(err), 2) end
    armed = true
  end
  return true
end

-- flowmusic_requests_total from the shared dict's counters.
local function requests_family(d)
  local fam = prometheus.family("flowmusic_requests_total", "counter",
    "Requests this nginx made through flowmusic, by operation and outcome")
  local rows = {}
  for _, k in ipairs(d:get_keys(0)) do
    local op, outcome = k:match("^req\t([^\t]*)\t(.*)$")
    if op then rows[#rows + 1] = { op, outcome, d:get(k) or 0 } end
  end
  table.sort(rows, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  for _, r in ipairs(rows) do prometheus.add(fam, { { "op", r[1] }, { "outcome", r[2] } }, r[3]) end
  return fam
end

--- The exposition text: collection metrics (success, timestamp, age), the stored account
-- metrics and the request counters. Makes no API call.
-- @treturn string
function M.exposition()
  if not cfg then error("flowmusic.ngx.metrics: call start() first (in init_worker_by_lua)", 2) end
  local d = shared(cfg.dict, 2)
  local data = d:get(KEY_DATA)
  local ts, duration, body
  if data then
    local t, took, rest = data:match("^(%S+) (%S+)\n(.*)$")
    ts, duration, body = tonumber(t), tonumber(took), rest
  end
  local now = ngx.now()
  local age = ts and math.floor(math.max(0, now - ts) * 1000 + 0.5) / 1000
  local fresh = ts ~= nil and d:get(KEY_OK) == true and age <= M.STALE_INTERVALS * cfg.interval
  return prometheus.render(prometheus.status_families({ success = fresh, timestamp = ts, age = age,
    duration = duration }))
    .. (body or "") .. prometheus.render({ requests_family(d) })
end

--- Number of refreshes done so far by this nginx (all workers).
-- @treturn number
function M.refreshes()
  if not cfg then return 0 end
  return shared(cfg.dict, 2):get(KEY_REFRESHES) or 0
end

--- Content handler: answer the exposition (`content_by_lua_block`). Makes no API call.
function M.serve()
  local text = M.exposition()
  ngx.header["Content-Type"] = prometheus.CONTENT_TYPE
  ngx.print(text)
  return ngx.exit(ngx.HTTP_OK)
end

return M
