--- One watched status run: collect the fleet, compare it with the state file, record the
-- change events in the history and deliver them to every notification target, exactly once
-- each. What `flowmusic status --state FILE [--notify URL] [--notify-cmd CMD]` runs.
--
--     local alerts = require "flowmusic.fleet.alerts"
--     local hook = assert(require("flowmusic.webhook").new(url))
--     local run, err = alerts.run(client, { state = "/var/lib/flowmusic/status.json",
--       targets = { { name = "notify-url", send = function(json) return hook:post(json) end } } })
--
-- The order makes it lossless: under the state file's lock, the new events are appended to
-- the history and stored as pending (one entry per event, naming the targets still owed it)
-- before anything is sent; each delivery that succeeds is then struck off and the file saved
-- again. A target that fails keeps its events, in order, for the next run (which sends them
-- first); nothing already delivered is ever sent again. When the list call fails, no event
-- is made (nothing is known), but the backlog is still delivered.
-- @module flowmusic.fleet.alerts
local status = require "flowmusic.fleet.status"
local events = require "flowmusic.fleet.events"
local statefile = require "flowmusic.fleet.statefile"
local history = require "flowmusic.fleet.history"
local defaults = require "flowmusic.defaults"

local M = {}

local function names_of(targets)
  local list = {}
  for i, t in ipairs(targets) do list[i] = t.name end
  return list
end

-- Send the pending events to their targets, in order; a target that fails gets nothing more
-- this run. Saves the state after each success. Returns delivered count, failures.
local function deliver(state, targets, save)
  local by_name, failed_target, failures, delivered = {}, {}, {}, 0
  for _, t in ipairs(targets) do by_name[t.name] = t end
  for _, p in ipairs(state.pending) do
    local still = {}
    for _, name in ipairs(p.targets) do
      local t = by_name[name]
      local sent = false
      if t and not failed_target[name] then
        local ok, err = t.send(events.json(p.event), p.event)
        if ok then
          sent = true
        else
          failed_target[name] = true
          failures[#failures + 1] = { target = name, event = p.event, message = tostring(err) }
        end
      end
      if not sent then still[#still + 1] = name end
    end
    if #still < #p.targets then
      p.targets = still
      delivered = delivered + 1
      save()
    end
  end
  local kept = {}
  for _, p in ipairs(state.pending) do
    if #p.targets > 0 then kept[#kept + 1] = p end
  end
  state.pending = kept
  return delivered, failures
end

--- Run once.
-- @param client a flowmusic client (only reads)
-- @tparam table opts `state` (path, required), `history` (path; default `history.beside`),
--   `targets` (array of `{ name = string, send = function(json, event) -> true | nil, err }`),
--   `remind` (seconds; see flowmusic.fleet.events), `lock_wait` (seconds to wait for another
--   run's lock; default 60), `now` (seconds since the epoch), and the options of
--   `status.collect` (`min_credits`, `min_tokens`, `max_token_age`, `concurrency`, `cancel`,
--   `on_result`, `emails`). With `emails` the known states of the other accounts are left as
--   they are: no `disappeared` event for an account outside the selection
-- @return a report `{ records, summary, events, delivered, failures, pending, list_error,
--   history_error }` (`records`/`summary` nil and `list_error` set when the list call failed;
--   `failures`: `{ target, event, message }`; `pending`: events still owed to a target), or
--   nil, message, kind: `"locked"` (another run held the lock too long), `"state"` (the state
--   file is unreadable, corrupt or foreign: left as it is), `"write"` (it could not be saved)
function M.run(client, opts)
  local path = opts.state
  local targets = opts.targets or {}
  local lock, lerr = statefile.lock(path, opts.lock_wait or defaults.state_lock_wait)
  if not lock then return nil, lerr, "locked" end
  local state, serr = statefile.load(path)
  if not state then lock:unlock() return nil, serr, "state" end

  local judging = status.judging({ min_credits = opts.min_credits, min_tokens = opts.min_tokens,
    max_token_age = opts.max_token_age, now = opts.now })
  local records, summary = status.collect(client, { min_credits = opts.min_credits,
    min_tokens = opts.min_tokens, max_token_age = judging.max_token_age, now = judging.now,
    concurrency = opts.concurrency, cancel = opts.cancel, on_result = opts.on_result, emails = opts.emails })
  local report = { events = {}, delivered = 0, failures = {} }
  -- A run stopped by a signal knows nothing new (its unfinished calls read as unreachable):
  -- it makes no events, sends nothing and leaves the known states as they were.
  report.cancelled = opts.cancel ~= nil and opts.cancel() ~= nil
  if records and report.cancelled then
    report.records, report.summary = records, summary
  elseif records then
    report.records, report.summary = records, summary
    local before, others = state.accounts, {}
    if opts.emails then -- accounts outside the selection keep their known state untouched
      local picked = {}
      for _, e in ipairs(opts.emails) do picked[e] = true end
      before = {}
      for email, k in pairs(state.accounts) do
        if picked[email] then before[email] = k else others[email] = k end
      end
    end
    local new, known = events.detect(before, records, { now = judging.now,
      remind = opts.remind, min_credits = opts.min_credits, min_tokens = opts.min_tokens })
    for email, k in pairs(others) do known[email] = k end
    report.events = new
    local ok, herr = history.append(opts.history or history.beside(path), new)
    if not ok then report.history_error = herr end
    state.accounts = known
    local owed = names_of(targets)
    if #owed > 0 then
      for _, e in ipairs(new) do state.pending[#state.pending + 1] = { event = e, targets = owed } end
    end
  else
    report.list_error = summary
  end

  local save_error
  local function save()
    local ok, err = statefile.save(path, state, judging.now)
    if not ok then save_error = save_error or err end
  end
  if report.cancelled then -- nothing new is known: the file stays byte for byte as it was
    lock:unlock()
    report.pending = #state.pending
    return report
  end
  save() -- the events are stored before any is sent
  if save_error then lock:unlock() return nil, save_error, "write" end
  report.delivered, report.failures = deliver(state, targets, save)
  save()
  lock:unlock()
  if save_error then return nil, save_error, "write" end
  report.pending = #state.pending
  return report
end

return M
