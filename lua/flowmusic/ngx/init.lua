--- The nginx (OpenResty / lua-nginx-module) adapter. `require "flowmusic"` installs it by
-- itself when it runs inside nginx; nothing changes outside nginx.
--
-- libcurl blocks, and a blocked nginx worker serves nobody else. So in the phases that can
-- yield (rewrite, access, content, ngx.timer callbacks) every call (a single call or a whole
-- batch) is handed to an nginx thread pool with `ngx.run_worker_thread`: the request's
-- coroutine yields, the event loop keeps serving other requests, and the results come back
-- as the same values as outside nginx.
--
-- * Pool: client option `thread_pool` (default "flowmusic"); declare it at the main level of
--   nginx.conf: `thread_pool flowmusic threads=4;`.
-- * Phases that cannot yield (init, init_worker, set, header_filter, body_filter, log,
--   balancer, ssl_*, exit_worker) and a missing pool raise a clear error, unless the client
--   was made with `allow_blocking = true`: then the call runs right in the nginx worker
--   (blocking it for the call's duration; meant for init_worker timers, `resty` scripts,
--   start-up checks). With allow_blocking the pool is still used wherever it can be.
-- * `on_progress` of a batch and the client's `on_event` can't run in the thread: they are
--   called here, in the request's VM, after the whole batch returned (events in the order
--   they happened, results in input order); on_progress returning false stops nothing then.
-- * The call's deadline covers the wait for a Lua VM and for a thread of the pool: a call that
--   can't start in time fails as a `timeout` (reason `no_vm` or `queued`).
-- * Injected `clock` / `sleep` / `random` functions can't cross into the thread either: the
--   thread uses its monotonic clock, real waiting and math.random.
-- * The `null` option: lightuserdata (flowmusic.null, which is cjson.null and ngx.null),
--   strings, numbers and booleans cross as they are; any other sentinel (e.g. a table) is
--   replaced by flowmusic.null in the thread and swapped back here, so callers see their own.
-- @module flowmusic.ngx
local core = require "flowmusic.core"
local errors = require "flowmusic.errors"

local M = {}

--- Module `ngx.run_worker_thread` runs in the worker thread's VM.
M.THREAD_MODULE = "flowmusic.ngx.thread"
--- Function of THREAD_MODULE it calls.
M.THREAD_FUNCTION = "run"

--- Phases (`ngx.get_phase()`) where a call goes to the thread pool.
M.YIELDABLE = { rewrite = true, server_rewrite = true, access = true, content = true, timer = true }

-- Longest pause between retries while the pool has no free Lua VM.
local VM_WAIT_MAX = 0.05

-- Types ngx.run_worker_thread copies as they are (tables too, but only of these).
local plain = { string = true, number = true, boolean = true }

-- The client settings as plain values, and whether results need the null swapped back.
local function thread_cfg(cfg)
  local t = {}
  for k, v in pairs(cfg) do
    if plain[type(v)] then t[k] = v end
  end
  local null = cfg.null
  if null == nil then return t, false end
  if plain[type(null)] or null == core.null then -- core.null == cjson.null == ngx.null
    t.null = null
    return t, false
  end
  t.null = core.null
  return t, true
end

-- The call records without their operation record (functions can't cross; the thread takes
-- it again from flowmusic.ops by name).
local function thread_calls(calls)
  local out = {}
  for i = 1, #calls do
    local c = {}
    for k, v in pairs(calls[i]) do
      if k ~= "op" then c[k] = v end
    end
    out[i] = c
  end
  return out
end

-- Replace every flowmusic.null inside v by repl (tables in place); returns the new v.
local function swap_null(v, repl, depth)
  if v == core.null then return repl end
  if type(v) == "table" and depth < 200 then
    for k, x in pairs(v) do
      if x == core.null or type(x) == "table" then v[k] = swap_null(x, repl, depth + 1) end
    end
  end
  return v
end

-- A timeout result for every call (no Lua VM of the pool became free before the deadline).
local function fail_all(calls, message)
  local out = {}
  for i = 1, #calls do
    out[i] = { ok = false, attempts = 0, elapsed = 0, err = errors.new {
      kind = "timeout", reason = "no_vm", reached = false, attempts = 0, deadline_exceeded = true,
      message = message, method = calls[i].method, path = calls[i].path } }
  end
  return out
end

-- What the call is, for messages.
local function what(calls)
  if #calls == 1 then return "'" .. tostring(calls[1].name) .. "'" end
  return "a batch of " .. #calls .. " calls"
end

local function blocked_phase_message(phase, calls)
  return ("flowmusic: cannot run %s in nginx's '%s' phase: it cannot yield, and the blocking"
    .. " HTTP call would stall every request of this nginx worker. Call it from a rewrite,"
    .. " access or content handler or an ngx.timer callback (e.g. ngx.timer.at(0, fn) from"
    .. " init_worker), or create the client with allow_blocking = true to run it in the"
    .. " worker anyway"):format(what(calls), tostring(phase))
end

local function no_pool_message(pool, calls, why)
  return ("flowmusic: cannot run %s: nginx thread pool '%s' is not available (%s). Declare it"
    .. " at the main level of nginx.conf (`thread_pool %s threads=4;`), name an existing pool"
    .. " with flowmusic.new { thread_pool = \"...\" }, or create the client with"
    .. " allow_blocking = true to run calls in the nginx worker (blocking it)"):format(
    what(calls), pool, why, pool)
end

-- The shortest deadline among the calls, as a time on core.now's clock (shared by every
-- thread of the process).
local function deadline_at(cfg, calls)
  local shortest = cfg.deadline
  for i = 1, #calls do
    if calls[i].deadline and calls[i].deadline < shortest then shortest = calls[i].deadline end
  end
  return core.now() + shortest
end

--- Build the runner flowmusic uses inside nginx.
-- @param run_local the default runner (`one`, `many`: runs in this VM, blocking)
-- @return a runner: `many(st, calls, opts)` -> results, hook_error; `one(st, call)` ->
--   result, hook_error. Raises (level 4: the caller of the client method) in a phase that
--   can't yield or without a pool, unless allow_blocking; raises when the worker thread itself
--   fails.
function M.runner(run_local)
  local many
  many = function(st, calls, opts)
    local cfg = st.cfg
    if #calls == 0 then return {} end -- an empty batch sends nothing, whatever the phase
    local phase = ngx.get_phase()
    if not M.YIELDABLE[phase] then
      if cfg.allow_blocking then return run_local.many(st, calls, opts) end
      error(blocked_phase_message(phase, calls), 4)
    end
    if type(ngx.run_worker_thread) ~= "function" then
      if cfg.allow_blocking then return run_local.many(st, calls, opts) end
      error(no_pool_message(cfg.thread_pool, calls, "this nginx has no ngx.run_worker_thread"), 4)
    end
    opts = opts or {}
    local tcfg, swap = thread_cfg(cfg)
    local tcalls = thread_calls(calls)
    -- The deadline covers the whole call: the wait for a VM and for a thread of the pool too.
    local topts = { concurrency = opts.concurrency or 1, deadline_at = deadline_at(cfg, calls),
      events = cfg.on_event ~= nil }
    local ok, results, events
    local pause = 0.001
    while true do
      ok, results, events = ngx.run_worker_thread(cfg.thread_pool, M.THREAD_MODULE, M.THREAD_FUNCTION,
        tcfg, tcalls, topts)
      if ok or results ~= "no available Lua vm" then break end
      -- Every VM of the pool is busy (lua_worker_thread_vm_pool_size): wait for one.
      if core.now() + pause > topts.deadline_at then
        results, events, ok = fail_all(calls, "no free Lua VM for an nginx worker thread before the"
          .. " deadline (raise lua_worker_thread_vm_pool_size)"), nil, true
        break
      end
      ngx.sleep(pause)
      pause = math.min(pause * 2, VM_WAIT_MAX)
    end
    if not ok then
      local msg = tostring(results)
      if msg:find("thread_pool not found", 1, true) or msg:find("thread pool", 1, true) then
        if cfg.allow_blocking then return run_local.many(st, calls, opts) end
        error(no_pool_message(cfg.thread_pool, calls, msg), 4)
      end
      error("flowmusic: nginx worker thread failed running " .. what(calls) .. ": " .. msg, 4)
    end
    for i = 1, #calls do
      local r = results[i]
      errors.adopt(r.err)
      if swap then r.value = swap_null(r.value, cfg.null, 0) end
    end
    -- Hooks can't cross into the thread: they run here, afterwards, in order.
    local hook_error
    if cfg.on_event and events then
      for _, ev in ipairs(events) do
        local hok, e = pcall(cfg.on_event, ev)
        if not hok then hook_error = e break end
      end
    end
    if opts.on_progress and not hook_error then
      local n = #calls
      for i = 1, n do
        local hok, e = pcall(opts.on_progress, i, n, i, results[i])
        if not hok then hook_error = e break end
      end
    end
    return results, hook_error
  end
  return {
    many = many,
    one = function(st, call)
      local results, hook_error = many(st, { call }, nil)
      return results[1], hook_error
    end,
  }
end

return M
