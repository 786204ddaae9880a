--- The engine: runs prepared calls over the C session (one libcurl multi handle) with
-- bounded concurrency, applies the retry policy, and turns completions into results.
-- Single calls are a batch of one, so both share every rule.
-- @module flowmusic.engine
local core = require "flowmusic.core"
local errors = require "flowmusic.errors"
local retry = require "flowmusic.retry"

local M = {}

local json_decode = core.json_decode
local parse_headers = core.parse_headers
local huge = math.huge

-- Longest time poll() may block before the loop looks at the clock again.
local MAX_WAIT = 0.5

local function bad_response(call, status, message)
  return errors.new {
    kind = "bad_response", reason = "invalid_body", status = status, reached = true,
    message = message, method = call.method, path = call.path,
  }
end

local function secrets_of(cfg, call)
  local list = { cfg.token }
  for _, s in ipairs(call.secrets or {}) do list[#list + 1] = s end
  return list
end

-- Turn a completion into values, or nil + error (+ the values a raw request still returns).
local function interpret(cfg, call, c)
  if c.code ~= 0 or c.too_large then return nil, errors.from_transport(c, call.method, call.path) end
  local status = c.status
  local ok_status = status >= 200 and status < 300
  if ok_status and not call.spec.raw then
    -- The common path: no header table is built at all.
    local doc
    if call.spec.expects_body then
      local derr
      doc, derr = json_decode(c.body, cfg.null)
      if derr then return nil, bad_response(call, status, "response is not valid JSON: " .. derr) end
    end
    local values, rerr = call.spec.result(call, status, doc, c)
    if not values then return nil, bad_response(call, status, rerr) end
    return values
  end
  c.headers = parse_headers(c.head)
  local is_json = (c.headers["content-type"] or ""):find("json", 1, true) ~= nil
  if call.spec.raw then
    local body = c.body
    if is_json and body ~= "" then
      local doc, derr = json_decode(body, cfg.null)
      if derr then
        if ok_status then return nil, bad_response(call, status, "response is not valid JSON: " .. derr) end
      else
        body = doc
      end
    end
    local values = { body, status, c.headers }
    if ok_status then return values end
    local doc = type(body) == "table" and body or nil
    return nil, errors.from_status(c, doc, call.method, call.path, secrets_of(cfg, call), cfg.now), values
  end
  local doc = (is_json or c.body:find("^%s*{")) and json_decode(c.body) or nil
  return nil, errors.from_status(c, doc, call.method, call.path, secrets_of(cfg, call), cfg.now)
end

-- The request was sent and the server may have acted on it.
local function may_have_applied(err)
  return err.reached ~= false and (err.kind ~= "http" or err.status >= 500)
end

--- Run calls (prepared by flowmusic.ops) and return one result per call, in input order:
-- { ok, value, values, err, status, attempts, elapsed, note }.
-- @param session the C session
-- @param cfg client settings: base_url, timeout, deadline, retries, clock, sleep, random,
--   null, token, now
-- @param concurrency how many requests may be in flight at once
-- @param on_progress optional function(done, total, index, result); an error it raises
--   aborts every transfer and propagates
-- @param first optional { completion = c, started = t }: the first attempt of calls[1],
--   already made by call_one (the scheduler takes over from there)
function M.run(session, cfg, calls, concurrency, on_progress, first)
  local n = #calls
  local results, state = {}, {}
  local clock = cfg.clock
  local policy = {
    retries = cfg.retries, random = cfg.random, now = cfg.now,
    base_delay = cfg.base_delay, max_delay = cfg.max_delay, retry_after_max = cfg.retry_after_max,
  }
  local next_fresh, active, done = 1, 0, 0
  local waiting = {}          -- indices waiting for their retry time
  local pause_until = -huge   -- a 429 holds back every start until then (shared backoff)

  if not first then session:abort() end -- leftovers of an interrupted run must not mix in

  local function finish(i, r)
    r.elapsed = clock() - state[i].started
    r.attempts = state[i].attempts
    results[i] = r
    done = done + 1
    if on_progress then
      local ok, e = pcall(on_progress, done, n, i, r)
      if not ok then
        session:abort()
        error(e, 0)
      end
    end
  end

  local function fail(i, err, status)
    err.attempts = state[i].attempts
    finish(i, { ok = false, err = err, status = status })
  end

  local function start(i, now)
    local call, st = calls[i], state[i]
    local left = st.deadline - now
    if left <= 0 then
      local err = st.last_err or errors.new { kind = "timeout", reason = "deadline", reached = false,
        method = call.method, path = call.path }
      err.deadline_exceeded = true
      return fail(i, err, err.status)
    end
    local timeout = math.min(call.timeout or cfg.timeout, left)
    local ok, serr = session:start(i, call.method, cfg.base_url .. call.path, call.body,
      call.fresh, math.ceil(timeout * 1000), call.compressed)
    if not ok then
      return fail(i, errors.new { kind = "network", reason = "local_error", reached = false,
        message = serr, method = call.method, path = call.path })
    end
    active = active + 1
  end

  local function complete(c, now)
    local i = c.id
    local call, st = calls[i], state[i]
    active = active - 1
    st.attempts = st.attempts + 1
    local values, err, fallback = interpret(cfg, call, c)
    if values then
      return finish(i, { ok = true, value = values[1], values = values, status = c.status })
    end
    if call.op == "delete_account" and err.status == 404 and st.maybe_applied then
      return finish(i, { ok = true, value = true, values = { true, "already deleted" }, status = 404,
        note = "404 after an earlier attempt that may have deleted it: counted as deleted" })
    end
    if may_have_applied(err) then st.maybe_applied = true end
    local again, delay, why = retry.decide(call.policy, retry.class_of(err), err.reached,
      err.status, c.headers, st.attempts, policy)
    if again and now + delay >= st.deadline then
      again, err.deadline_exceeded = false, true
    end
    if again then
      st.next_at, st.last_err = now + delay, err
      waiting[#waiting + 1] = i
      if err.status == 429 and now + delay > pause_until then pause_until = now + delay end
      return
    end
    if why == "outcome_unknown" then
      err.outcome_unknown = true
      err.message = (err.message or "") .. " (outcome unknown: the request may have been applied; check with list_accounts)"
    end
    if fallback then
      return finish(i, { ok = true, value = fallback[1], values = fallback, status = c.status, err = nil })
    end
    fail(i, err, err.status)
  end

  local now = clock()
  for i = 1, n do
    state[i] = { attempts = 0, started = now, deadline = now + cfg.deadline }
  end
  if first then
    state[1].started, state[1].deadline = first.started, first.started + cfg.deadline
    next_fresh, active = 2, 1
    complete(first.completion, now)
  end

  while done < n do
    now = clock()
    if now >= pause_until then
      local j = 1
      while active < concurrency and j <= #waiting do
        local i = waiting[j]
        if state[i].next_at <= now then
          table.remove(waiting, j)
          start(i, now)
        else
          j = j + 1
        end
      end
      while active < concurrency and next_fresh <= n do
        next_fresh = next_fresh + 1
        start(next_fresh - 1, now)
      end
    end
    if done >= n then break end
    -- Earliest moment another start is possible: a free slot for a fresh call, or a retry
    -- time, never before a shared 429 pause ends.
    local wake = huge
    if next_fresh <= n and active < concurrency then wake = now > pause_until and now or pause_until end
    for _, i in ipairs(waiting) do
      local t = state[i].next_at > pause_until and state[i].next_at or pause_until
      if t < wake then wake = t end
    end
    assert(active > 0 or wake < huge, "flowmusic: engine has nothing to wait for")
    local wait = wake - now
    if wait < 0 then wait = 0 end
    if active > 0 then
      local completions = session:poll(wait < MAX_WAIT and wait or MAX_WAIT)
      now = clock()
      for k = 1, #completions do complete(completions[k], now) end
    elseif cfg.sleep then
      cfg.sleep(wait)
    else
      session:poll(wait) -- nothing in flight: this just sleeps
    end
  end
  return results
end

--- Run one call and return its values, or nil and the error: the common case (a single
-- attempt that succeeds) skips the scheduler's bookkeeping; any failure hands the completed
-- attempt to M.run, which applies the retry policy from there.
function M.call_one(session, cfg, call)
  session:abort()
  local started = cfg.clock()
  local timeout = call.timeout or cfg.timeout
  if timeout > cfg.deadline then timeout = cfg.deadline end
  local r
  if session:start(1, call.method, cfg.base_url .. call.path, call.body, call.fresh,
      math.ceil(timeout * 1000), call.compressed) then
    local c
    repeat c = session:poll(MAX_WAIT)[1] until c
    local values = c.code == 0 and not c.too_large and c.status >= 200 and c.status < 300
      and interpret(cfg, call, c)
    if values then return values end
    r = M.run(session, cfg, { call }, 1, nil, { completion = c, started = started })[1]
  else
    r = M.run(session, cfg, { call }, 1)[1] -- reports the failure to start
  end
  if r.ok then return r.values end
  return nil, r.err
end

return M
