--- The worker-thread side of the nginx adapter: `ngx.run_worker_thread` calls `run` in one of
-- the thread pool's own Lua VMs (plain LuaJIT, no ngx API), so the blocking libcurl loop runs
-- off the nginx event loop.
--
-- Everything arrives by value (ngx_lua copies strings, numbers, booleans, lightuserdata and
-- tables; functions and full userdata can't cross): the client settings without functions,
-- and the prepared calls without their `spec` (re-attached from flowmusic.ops here).
-- One C session per distinct connection setting is cached in this VM, so keep-alive
-- connections survive from one call to the next. A VM runs one task at a time, so the cache
-- needs no locking; ngx_lua keeps a pool of such VMs (`lua_worker_thread_vm_pool_size`),
-- each with its own cache.
-- @module flowmusic.ngx.thread
local core = require "flowmusic.core"
local engine = require "flowmusic.engine"
local ops = require "flowmusic.ops"

local M = {}

-- Session-shaping settings -> C session. Keys hold the token: never log them.
local sessions = {}
local session_count = 0
local MAX_SESSIONS = 32 -- more distinct configs than this in one VM: start the cache afresh

math.randomseed(os.time() + math.floor((core.now() % 1) * 1e6))

-- The cache key of the settings that shape a session.
local function session_key(cfg)
  return table.concat({ cfg.token, cfg.user_agent or "", cfg.cainfo or "", cfg.capath or "", cfg.proxy or "",
    tostring(cfg.connect_timeout), tostring(cfg.max_response_bytes) }, "\0")
end

-- The cached session for cfg, created on first use.
local function session_for(cfg)
  local key = session_key(cfg)
  local s = sessions[key]
  if s then return s end
  if session_count >= MAX_SESSIONS then
    for _, old in pairs(sessions) do old:close() end
    sessions, session_count = {}, 0
  end
  s = engine.session(cfg)
  sessions[key], session_count = s, session_count + 1
  return s
end

--- Run call records (entry point for `ngx.run_worker_thread`).
-- @param cfg client settings by value (no functions; `null` already replaced by a value
--   that can cross, see flowmusic.ngx)
-- @param calls call records without `op`
-- @param opts `{ concurrency, deadline_at, events }`: deadline_at is a core.now() time no call
--   may outlive (it includes the wait for this thread); events: collect on_event events
-- @return the scheduler's results (plain tables; error values lose their metatable on the
--   way back and are adopted again by flowmusic.ngx), and the events when asked for. Raises on
--   an unknown operation or a scheduler failure.
function M.run(cfg, calls, opts)
  for i = 1, #calls do
    local rec = ops.get(calls[i].name)
    if not rec then error("flowmusic.ngx.thread: unknown operation '" .. tostring(calls[i].name) .. "'") end
    calls[i].op = rec
  end
  local events
  if opts.events then
    events = {}
    cfg.on_event = function(ev) events[#events + 1] = ev end
  end
  cfg.clock, cfg.random, cfg.sleep = core.now, math.random, nil
  local results = engine.run(session_for(cfg), cfg, calls, { concurrency = opts.concurrency,
    deadline_at = opts.deadline_at, late_reason = "queued" })
  for i = 1, #results do
    local err = results[i].err
    if err and err.reason == "queued" then
      err.message = "waited for an nginx worker thread past the call's deadline (raise threads= of the thread_pool)"
    end
  end
  return results, events
end

return M
