--- Change events of a fleet: what changed between the last known state of every account and
-- a fresh `flowmusic.fleet.status.collect`. For alerts that fire only when something changes
-- (`flowmusic status --state FILE --changes-only`, the nginx metrics timer's `notify`).
--
--     local events = require "flowmusic.fleet.events"
--     local list, known = events.detect(known, records, { now = os.time(), remind = 6 * 3600 })
--     for _, e in ipairs(list) do print(e.at, e.email, e.event, e.from, e.to, e.reason) end
--
-- Events (`event`), one per account and run at most:
--
-- * `appeared`: an account not known before (`to`: its state; on the first run every account
--   appears);
-- * `disappeared`: a known account is no longer listed (`from`: its last state);
-- * `recovered`: back to `ok` from any other state;
-- * `needs_reauth`, `unreachable`, `low_credits`, `stale_token`: it entered that state (`from`:
--   the one it left); crossing `--min-credits` / `--min-tokens` is entering or leaving
--   `low_credits`, a stalled refresh is entering `stale_token`;
-- * `reminder`: with `remind`, an account still in a state other than `ok`, whose last event
--   is at least `remind` seconds old.
--
-- Every event has the fields of `M.FIELDS`: `at` (ISO 8601 UTC), `email`, `event`, `from`,
-- `to` (states, nil where there is none), `reason` (the record's message: the account's
-- error, why the live call failed, the stale token's age, the credits under the minimum) and
-- `credits_remaining`. The known state is a plain table (`email -> { state, credits_remaining,
-- tokens_remaining, since, notified_at }`) that a caller stores between runs (a state file,
-- an nginx shared dict); it holds no token.
-- @module flowmusic.fleet.events
local format = require "flowmusic.format"

local M = {}

--- The fields of an event, in output order (the keys of `--json`, CSV and webhook bodies).
M.FIELDS = { "at", "email", "event", "from", "to", "reason", "credits_remaining" }

--- An ISO 8601 UTC time (`2026-12-07T04:50:00Z`) of seconds since the epoch (flowmusic.format.iso).
M.iso = require("flowmusic.format").iso

-- Why a record is in its state, for the event.
local function reason_of(rec, opts)
  if rec.state == "low_credits" then
    if opts.min_credits and rec.credits_remaining and rec.credits_remaining < opts.min_credits then
      return ("%s credits remaining, below the minimum of %s"):format(
        tostring(rec.credits_remaining), tostring(opts.min_credits))
    end
    return ("%s tokens remaining, below the minimum of %s"):format(
      tostring(rec.tokens_remaining), tostring(opts.min_tokens))
  end
  return rec.error
end

--- One event as a JSON object with the keys in `M.FIELDS` order (missing values are null):
-- the history file's lines, webhook bodies, `--notify-cmd`'s standard input.
-- @tparam table e
-- @treturn string
function M.json(e)
  local parts = {}
  for i, k in ipairs(M.FIELDS) do
    local v = e[k]
    parts[i] = format.json(k) .. ":" .. (v == nil and "null" or format.json(v))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function event(at, email, name, from, to, reason, credits)
  return { at = at, email = email, event = name, from = from, to = to, reason = reason,
    credits_remaining = credits }
end

--- Whether a known state table is well formed (as `detect` makes it): nil, or what is wrong.
-- @param known
-- @treturn nil|string
function M.check_known(known)
  if type(known) ~= "table" then return "the accounts must be an object" end
  for email, k in pairs(known) do
    if type(email) ~= "string" or type(k) ~= "table" or type(k.state) ~= "string" then
      return "account entries must be objects with a state"
    end
    for _, f in ipairs({ "since", "notified_at" }) do
      if k[f] ~= nil and type(k[f]) ~= "number" then return f .. " must be a number" end
    end
  end
  return nil
end

--- Compare records with the known state.
-- @tparam table|nil known `email -> entry` from the last run (nil or `{}` on the first)
-- @tparam {table,...} records from `status.collect`
-- @tparam[opt] table opts `now` (seconds since the epoch; default `os.time()`), `remind`
--   (seconds: repeat a state other than `ok` at most this often; default never),
--   `min_credits`, `min_tokens` (the ones `collect` judged with, for the reasons)
-- @treturn {table,...} the events, in email order (`disappeared` ones included)
-- @treturn table the new known state (a fresh table; `known` is not changed)
function M.detect(known, records, opts)
  opts = opts or {}
  known = known or {}
  local now = opts.now or os.time()
  local at = M.iso(now)
  local list, next_known, listed = {}, {}, {}
  for _, rec in ipairs(records) do
    local email, prev = rec.email, known[rec.email]
    listed[email] = true
    local entry = { state = rec.state, credits_remaining = rec.credits_remaining,
      tokens_remaining = rec.tokens_remaining, since = prev and prev.since or now,
      notified_at = prev and prev.notified_at }
    local name
    if not prev then
      name = "appeared"
    elseif prev.state ~= rec.state then
      name = rec.state == "ok" and "recovered" or rec.state
    elseif rec.state ~= "ok" and opts.remind and now - (prev.notified_at or prev.since or now) >= opts.remind then
      name = "reminder"
    end
    if name then
      if name ~= "reminder" then entry.since = now end
      entry.notified_at = now
      list[#list + 1] = event(at, email, name, prev and prev.state, rec.state, reason_of(rec, opts),
        rec.credits_remaining)
    end
    next_known[email] = entry
  end
  local gone = {}
  for email in pairs(known) do
    if not listed[email] then gone[#gone + 1] = email end
  end
  table.sort(gone)
  for _, email in ipairs(gone) do
    local prev = known[email]
    list[#list + 1] = event(at, email, "disappeared", prev.state, nil,
      "no longer listed by the API", prev.credits_remaining)
  end
  table.sort(list, function(a, b) return a.email < b.email end)
  return list, next_known
end

return M
