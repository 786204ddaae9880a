--- The scheduler: runs call records (flowmusic.ops) over the C session (one libcurl multi
-- handle) with bounded concurrency, applies the retry policy, and turns completions into
-- results. A single call is a run of one: both go through the same steps.
--
-- The steps, over one run state: `start_ready` starts what may start (fresh calls, retries
-- whose time came, unless a 429 pause or a stop holds them back), `wait` polls the session
-- until something completes or the next start, deadline or stop time comes, `complete` judges
-- an attempt (result, retry or failure), `expire` fails calls whose deadline passed while in
-- flight, `check_stop` applies a stop (from `cancel` or `on_progress` returning false).
-- @module flowmusic.engine
local core = require "flowmusic.core"
local errors = require "flowmusic.errors"
local retry = require "flowmusic.retry"
local defaults = require "flowmusic.defaults"
local ops = require "flowmusic.ops"

local M = {}

local parse_headers = core.parse_headers
local now_of = core.now
local huge = math.huge

-- Longest time poll() may block before the loop looks at the clock again.
local MAX_WAIT = 0.5
-- A transfer still in flight this long after its call's deadline is dropped by the scheduler
-- (libcurl's own timeout, cut to the deadline, normally ends it first).
local DEADLINE_SLACK = 0.25

local outcome_of_kind = { http = "http_error" }

--------------------------------------------------------------------------------- reporting

-- Tell on_event about an attempt (outcome) or a scheduled retry (retry_in). A hook that raises
-- stops the run (see run_error).
local function event(run, r, call, outcome, status, retry_in)
  local hook = run.on_event
  if not hook or run.hook_error then return end
  local ok, e = pcall(hook, {
    op = call.name, label = call.op.label, method = call.method, path = call.path,
    status = status, attempt = r.attempts, elapsed = run.clock() - r.attempt_started,
    outcome = outcome, retry_in = retry_in,
  })
  if not ok and not run.hook_error then run.hook_error = e end
end

-- Record the final result of call i and tell on_progress.
local function finish(run, i, r)
  r.elapsed = run.clock() - r.started
  r.deadline, r.next_at, r.last_err, r.maybe_applied, r.attempt_started, r.in_flight =
    nil, nil, nil, nil, nil, nil
  run.done = run.done + 1
  local hook = run.on_progress
  if hook and not run.hook_error then
    local ok, keep_going = pcall(hook, run.done, run.n, i, r)
    if not ok then
      if not run.hook_error then run.hook_error = keep_going end
    elseif keep_going == false then
      run.stop_requested = true
    end
  end
end

-- The used-token store (flowmusic.used_tokens) learns how a call that spends a refresh token
-- ended: sent and answered (recorded), maybe arrived (recorded as unknown), or surely not
-- used (its claim given back). A failure to record is kept in the result's note.
local function settle_token(run, call, r, outcome)
  local store = run.cfg.used_tokens
  if not (store and call.spends and r.claimed) then return end
  r.claimed = nil
  if outcome == "unused" then return store:release(call.spends) end
  local email = r.ok and type(r.value) == "table" and r.value.email or nil
  local ok, err = store:record(call.spends, email, outcome)
  if not ok then r.note = "the token was sent but could not be marked as used: " .. err end
end

local function fail(run, i, r, err)
  settle_token(run, run.calls[i], r, err.outcome_unknown and "unknown" or "unused")
  err.attempts = r.attempts
  r.ok, r.err, r.status = false, err, err.status
  finish(run, i, r)
end

--------------------------------------------------------------------------- judging answers

local function bad_response(call, status, message, reason)
  return errors.new {
    kind = "bad_response", reason = reason or "invalid_body", status = status, reached = true,
    message = message, method = call.method, path = call.path,
  }
end

-- The error for a body json_decode refused (kind: "too_large", "shape" or "syntax"). A decoder
-- that gave no message still yields a typed error, never a raise.
local function decode_error(call, status, message, kind)
  message = message or "the answer has no JSON document"
  if kind == "too_large" then
    return errors.new { kind = "too_large", reason = "too_many_values", status = status, reached = true,
      message = message, method = call.method, path = call.path }
  end
  return bad_response(call, status, kind == "shape" and message or "response is not valid JSON: " .. message,
    kind == "shape" and "shape" or "invalid_body")
end

local function secrets_of(run, call)
  local list = { run.cfg.token }
  for _, s in ipairs(run.cfg.proxy_secrets or {}) do list[#list + 1] = s end
  if call.secrets then
    for _, s in ipairs(call.secrets) do list[#list + 1] = s end
  end
  return list
end

-- An HTTP status the operation does not accept as success: the error, and for raw requests
-- the values they return all the same (body, status, headers). The session decoded the body
-- when it is JSON (c.doc); one that does not decode is shown as text.
local function status_error(run, call, c)
  c.headers = parse_headers(c.head or "")
  local body, doc = c.body, c.doc
  local json_text = doc ~= nil and (type(doc) ~= "table" or (doc.error == nil and doc.message == nil))
    and body or nil
  local err = errors.from_status(c, doc, call, secrets_of(run, call), json_text)
  if call.op.answer == "raw" then return err, doc == nil and body or doc end
  return err
end

-- Turn a completed attempt into values (true, v1, v2, v3) or (false, err, fallback): the
-- fallback is the raw request's body when its final status is an error. Which bodies are
-- decoded, and how, is the session's rule (session:poll); this judges what it handed over.
local function interpret(run, call, c)
  c.headers = nil -- (c is reused: no earlier completion's headers)
  if c.code ~= 0 then
    return false, errors.from_transport(c, call, run.cfg.via_proxy, run.cfg.proxy_secrets)
  end
  local status, op = c.status, call.op
  local answer = op.answer
  if status < 200 or status >= 300 then
    local err, fallback = status_error(run, call, c)
    return false, err, fallback
  end
  if c.decode_error then return false, decode_error(call, status, c.decode_error, c.decode_kind) end
  if answer == "raw" then
    c.headers = parse_headers(c.head or "")
    local body = c.doc
    if body == nil then body = c.body end
    return true, body, status, c.headers
  end
  local doc
  if answer == "object" then
    doc = c.doc
    if doc == nil then return false, decode_error(call, status) end
    local shape = op.shape
    if shape then
      local msg = shape(doc, run.cfg.null)
      if msg then return false, bad_response(call, status, msg, "shape") end
    end
  end
  if op.result then return true, op.result(doc, status) end
  return true, doc
end

--------------------------------------------------------------------------------- the steps

-- Start attempt of call i now; a call whose deadline passed fails instead.
local function start(run, i, now)
  local call, r = run.calls[i], run.results[i]
  local left = r.deadline - now
  if left <= 0 then
    local late = r.attempts == 0 and run.late_reason or nil
    local err = r.last_err or errors.new { kind = "timeout", reason = late or "deadline",
      reached = false, method = call.method, path = call.path,
      message = late and "the call could not start before its deadline" or nil }
    err.deadline_exceeded = true
    return fail(run, i, r, err)
  end
  local store = run.cfg.used_tokens
  if store and call.spends and not r.claimed then
    local why = store:claim(call.spends)
    if why then
      return fail(run, i, r, errors.new { kind = "refused", reason = "token_used", reached = false,
        method = call.method, path = call.path, message = why })
    end
    r.claimed = true
  end
  local timeout = call.timeout or run.cfg.timeout
  if timeout > left then timeout = left end
  r.attempt_started = now
  local ok, serr = run.session:start(i, call, timeout)
  if not ok then
    return fail(run, i, r, errors.new { kind = "network", reason = "local_error", reached = false,
      message = serr, method = call.method, path = call.path })
  end
  r.in_flight = true
  run.active = run.active + 1
end

-- Start every call that may start now.
local function start_ready(run, now)
  if now < run.pause_until or run.stopping then return end
  local waiting = run.waiting
  local j = 1
  while waiting[j] and run.active < run.concurrency do
    local i = waiting[j]
    if run.results[i].next_at <= now then
      table.remove(waiting, j)
      start(run, i, now)
    else
      j = j + 1
    end
  end
  while run.active < run.concurrency and run.next_fresh <= run.n do
    local i = run.next_fresh
    run.next_fresh = i + 1
    start(run, i, now)
  end
end

-- Judge one completed attempt.
local function complete(run, c, now)
  local i = c.id
  local call, r = run.calls[i], run.results[i]
  if not r.in_flight then return end -- dropped meanwhile (deadline or stop)
  r.in_flight = false
  run.active = run.active - 1
  local sends = c.sends
  r.attempts = r.attempts + (sends > 1 and sends or 1) -- libcurl's own re-sends count too
  local ok, v1, v2, v3 = interpret(run, call, c)
  if ok then
    r.ok, r.value, r.status = true, v1, c.status
    settle_token(run, call, r, "ok")
    local extras = call.op.extras
    if extras[1] then r[extras[1]] = v2 end
    if extras[2] then r[extras[2]] = v3 end
    if run.on_event then event(run, r, call, "ok", c.status) end
    return finish(run, i, r)
  end
  local err, fallback = v1, v2
  local gone = call.op.gone_ok
  if gone and err.status == 404 and (r.maybe_applied or sends > 1) then
    r.ok, r.value, r.status, r.note = true, gone[1], 404, gone[2]
    local extra = call.op.extras[1]
    if extra then r[extra] = gone[2] end
    event(run, r, call, "ok", 404)
    return finish(run, i, r)
  end
  if err.reached ~= false and (err.kind ~= "http" or err.status >= 500) then r.maybe_applied = true end
  local class = retry.class_of(err)
  local policy = run.cfg
  if call.retries then policy = setmetatable({ retries = call.retries }, { __index = policy }) end
  local again, delay, why = retry.decide(call, class, err.reached, err.status, c.headers, r.attempts, policy,
    err.retry_after)
  if again and now + delay >= r.deadline then again, err.deadline_exceeded = false, true end
  if again then
    event(run, r, call, outcome_of_kind[err.kind] or err.kind, err.status, delay)
    r.next_at, r.last_err = now + delay, err
    run.waiting[#run.waiting + 1] = i
    if err.status == 429 and now + delay > run.pause_until then run.pause_until = now + delay end
    return
  end
  if why == "outcome_unknown" then
    err.outcome_unknown = true
    err.message = (err.message and err.message ~= "" and err.message .. " " or "")
      .. (call.op.unknown_note or ops.OUTCOME_UNKNOWN_NOTE)
  end
  event(run, r, call, outcome_of_kind[err.kind] or err.kind, err.status)
  if fallback ~= nil then
    r.ok, r.value, r.status, r.headers = true, fallback, c.status, c.headers
    return finish(run, i, r)
  end
  fail(run, i, r, err)
end

-- The error of a call stopped by a stop request or an expired deadline while in flight.
local function dropped_error(call, kind, reason, message)
  return errors.new { kind = kind, reason = reason, method = call.method, path = call.path,
    reached = nil, outcome_unknown = call.write or nil, message = message
      .. (call.write and " " .. (call.op.unknown_note or ops.OUTCOME_UNKNOWN_NOTE) or "") }
end

-- Drop the transfer of call i (in flight) and fail it with err.
local function drop(run, i, err)
  local r = run.results[i]
  run.session:cancel(i)
  r.in_flight = false
  r.attempts = r.attempts + 1 -- the dropped attempt was sent (or being sent) all the same
  run.active = run.active - 1
  event(run, r, run.calls[i], err.kind == "timeout" and "timeout" or "cancelled")
  fail(run, i, r, err)
end

-- Fail the calls whose deadline passed while their transfer is still in flight.
local function expire(run, now)
  for i = 1, run.next_fresh - 1 do
    local r = run.results[i]
    if r.in_flight and now > r.deadline + DEADLINE_SLACK then
      local err = dropped_error(run.calls[i], "timeout", "deadline", "deadline passed while in flight")
      err.deadline_exceeded = true
      drop(run, i, err)
    end
  end
end

-- Apply a stop: nothing new starts; calls never started or waiting for a retry end as
-- cancelled at once; calls in flight get until stop_at, then are dropped too.
local function check_stop(run, now)
  local want = run.stop_requested and "stop" or nil
  if run.cancel then
    local asked = run.cancel()
    if asked == "abort" or (asked and want == nil) then want = asked end
  end
  if run.hook_error then want = "abort" end
  if not want and not run.stopping then return end
  if not run.stopping then
    run.stopping, run.stop_at = true, now + run.grace
    for _, i in ipairs(run.waiting) do
      local call, r = run.calls[i], run.results[i]
      local err = dropped_error(call, "cancelled", "interrupted", "stopped before its retry")
      if not r.maybe_applied then err.outcome_unknown, err.message = nil, "stopped before its retry" end
      fail(run, i, r, err)
    end
    run.waiting = {}
    for i = run.next_fresh, run.n do
      local call, r = run.calls[i], run.results[i]
      r.started = run.clock() -- never started: it took no time
      fail(run, i, r, errors.new { kind = "cancelled", reason = "not_run", reached = false,
        method = call.method, path = call.path, message = "not started: the run was stopped" })
    end
    run.next_fresh = run.n + 1
  end
  if want == "abort" or now >= run.stop_at then
    for i = 1, run.n do
      if run.results[i].in_flight then
        drop(run, i, dropped_error(run.calls[i], "cancelled", "interrupted",
          "stopped while in flight"))
      end
    end
  end
end

-- Wait for completions, at most until the next moment something else has to happen.
local function wait(run, now)
  local wake = huge
  if run.stopping then
    wake = run.stop_at
  else
    if run.next_fresh <= run.n and run.active < run.concurrency then
      wake = now > run.pause_until and now or run.pause_until
    end
    local waiting = run.waiting
    for j = 1, #waiting do
      local t = run.results[waiting[j]].next_at
      if t < run.pause_until then t = run.pause_until end
      if t < wake then wake = t end
    end
  end
  local timeout = wake - now
  if timeout > run.max_wait then timeout = run.max_wait end
  if timeout < 0 then timeout = 0 end
  if run.active > 0 then
    local session = run.session
    local completion, null, max_values = run.completion, run.cfg.null, run.max_values
    local c, more = session:poll(timeout, completion, null, max_values)
    now = run.clock()
    while c do
      complete(run, c, now)
      if not more then break end
      c, more = session:poll(0, completion, null, max_values)
    end
  elseif run.cfg.sleep then
    run.cfg.sleep(timeout)
  else
    run.session:poll(timeout) -- nothing in flight: this just sleeps
  end
end

-- A run state for session and cfg, not yet holding calls.
local function new_run(session, cfg)
  return {
    session = session, cfg = cfg, clock = cfg.clock or now_of, on_event = cfg.on_event,
    max_values = math.floor(cfg.max_response_bytes / defaults.bytes_per_json_value),
    calls = false, results = false, n = 0, concurrency = 1, on_progress = false, cancel = false,
    grace = defaults.cancel_grace, max_wait = MAX_WAIT, late_reason = false,
    next_fresh = 1, active = 0, done = 0, waiting = {}, pause_until = -huge, completion = {},
    stopping = false, stop_at = 0, stop_requested = false, hook_error = false,
  }
end

-- The result table of a call (also its scheduling state until it finishes).
local function new_result(run, call, now, deadline_at)
  local deadline = now + (call.deadline or run.cfg.deadline)
  if deadline_at and deadline_at < deadline then deadline = deadline_at end
  return { ok = false, attempts = 0, started = now, deadline = deadline, in_flight = false,
    attempt_started = now, value = nil, status = nil, elapsed = nil }
end

-- The loop every run goes through, single calls included.
local function drive(run, now)
  local n = run.n
  while run.done < n do
    if run.stop_requested or run.cancel or run.hook_error or run.stopping then check_stop(run, now) end
    start_ready(run, now)
    if run.done >= n then break end
    wait(run, now)
    now = run.clock()
    if run.active > 0 then expire(run, now) end
  end
end

--- The C session (one libcurl multi handle and its connection pool) for a client's settings.
-- @param cfg the client's settings: token, user_agent, cainfo, capath, proxy, connect_timeout,
--   max_response_bytes
function M.session(cfg)
  return core.session {
    token = cfg.token, user_agent = cfg.user_agent, cainfo = cfg.cainfo, capath = cfg.capath,
    proxy = cfg.proxy, connect_timeout_ms = math.ceil(cfg.connect_timeout * 1000),
    max_response_bytes = cfg.max_response_bytes,
  }
end

--- Run call records and return one result per call, in input order:
-- `{ ok, value, err, status, attempts, elapsed }` plus the operation's extras (`created`,
-- `headers`, `note`...).
-- @param session the C session
-- @param cfg client settings: token, timeout, deadline, retries, base_delay, max_delay,
--   retry_after_max, random, clock, sleep, null, max_response_bytes, on_event
-- @param calls array of call records (flowmusic.ops.prepare), each with its `url`
-- @param opts optional: `concurrency`, `on_progress(done, total, index, result)` (returning
--   false stops the run), `cancel()` (returning "stop" or "abort"), `grace` (seconds calls in
--   flight get after a stop), `deadline_at` (a clock time no call may outlive; `late_reason`
--   names why, e.g. the wait for an nginx worker thread)
-- @return results, and the first error a hook (on_progress, on_event) raised, if any: the
--   run stopped then, every transfer released
function M.run(session, cfg, calls, opts)
  opts = opts or {}
  local run = new_run(session, cfg)
  run.calls, run.n, run.results = calls, #calls, {}
  run.concurrency = opts.concurrency or 1
  run.on_progress, run.cancel = opts.on_progress or false, opts.cancel or false
  run.grace = opts.grace or run.grace
  run.max_wait = opts.cancel and 0.1 or MAX_WAIT
  run.late_reason = opts.late_reason or false
  local now = run.clock()
  for i = 1, run.n do run.results[i] = new_result(run, calls[i], now, opts.deadline_at) end
  drive(run, now)
  return run.results, run.hook_error or nil
end

--- A reusable state for running one call at a time on session (what client methods use:
-- nothing but the call's own result is allocated per call).
function M.single(session, cfg)
  local run = new_run(session, cfg)
  run.calls, run.results, run.n = {}, {}, 1
  return run
end

--- Run one call on a state from M.single.
-- @return the call's result (as in M.run), and a hook's error if one raised
function M.run_one(run, call)
  run.next_fresh, run.active, run.done, run.pause_until = 1, 0, 0, -huge
  run.stopping, run.stop_requested, run.hook_error = false, false, false
  local now = run.clock()
  local r = new_result(run, call, now)
  run.calls[1], run.results[1] = call, r
  drive(run, now)
  run.calls[1], run.results[1] = false, false
  return r, run.hook_error or nil
end

return M
