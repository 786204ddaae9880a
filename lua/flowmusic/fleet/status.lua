--- Fleet health: the state of every configured account in one call.
--
--     local status = require "flowmusic.fleet.status"
--     local records, summary = status.collect(client, { min_credits = 100 })
--     if not records then print("list failed: " .. tostring(summary)) end
--     for _, r in ipairs(records) do print(r.email, r.state, r.credits_remaining, r.error) end
--     print(status.summary_line(summary))  --> 3 accounts: 2 ok, 1 needs_reauth, 0 low_credits, 0 unreachable
--
-- `collect` lists the accounts (`list_accounts`), then runs one `get_account` per account
-- concurrently through `client:batch` (the client's connection pool; inside nginx the thread
-- pool), with `list_jobs` (jobs running per account) and `get_subscription` (useapi.net's
-- `GET /v2/account`) in the same batch. It only reads: nothing is ever written to the API.
--
-- States, in the order summaries show them:
--
-- * `needs_reauth`: the account record has `error` (its refresh token was rejected: re-add
--   it), or the live call answered 596;
-- * `unreachable`: the live call failed for another reason (network, timeout, 5xx, 404...);
-- * `stale_token`: the access token expired more than `max_token_age` seconds ago (default
--   15 minutes) on a record without `error`: useapi's own refresh of it has stalled, the
--   earliest sign of an account about to fail;
-- * `low_credits`: `credits_remaining` below `min_credits` or `tokens_remaining` below
--   `min_tokens` (an unknown value is never "low");
-- * `ok`.
-- @module flowmusic.fleet.status
local errors = require "flowmusic.errors"
local defaults = require "flowmusic.defaults"

local M = {}

--- The states, in summary order.
M.STATES = { "ok", "needs_reauth", "low_credits", "unreachable", "stale_token" }

--- The fields of a record, in output order (the CLI's JSON/CSV keys).
M.FIELDS = { "email", "tier", "state", "credits_remaining", "tokens_remaining", "max_jobs",
  "refreshed_at", "error", "access_token_expires_at", "jobs_running" }

--- HTTP status the API uses for an account in error state on its non-account endpoints.
M.NEEDS_REAUTH_STATUS = 596

local is_state = {}
for _, s in ipairs(M.STATES) do is_state[s] = true end

--- Whether s is one of M.STATES.
-- @tparam any s
-- @treturn boolean
function M.is_state(s) return is_state[s] == true end

local option_names = { min_credits = true, min_tokens = true, max_token_age = true, now = true,
  concurrency = true, cancel = true, on_result = true, jobs = true, subscription = true, emails = true }

-- v when it has Lua type t, else nil (JSON null, whatever sentinel the client uses, maps to nil).
local function typed(v, t)
  if type(v) == t then return v end
  return nil
end

-- Days since 1970-01-01 of a civil (proleptic Gregorian) date.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Seconds since the epoch of an ISO 8601 time (`2026-11-22T04:45:26.123Z`; a `+hh:mm`
-- offset or none (UTC) also works).
-- @tparam string s
-- @treturn number|nil seconds (with the fraction), or nil when s is not such a time
function M.timestamp(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local frac, zone = rest:match("^(%.%d+)(.*)$")
  if not frac then frac, zone = "", rest end
  local offset = 0
  if zone ~= "" and zone ~= "Z" and zone ~= "z" then
    local sign, oh, om = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec) - offset
  if frac ~= "" then t = t + tonumber("0" .. frac) end
  return t
end

--- A length of time for people: `45s`, `12m`, `3h 5m`, `2d 4h`.
-- @tparam number seconds
-- @treturn string
function M.duration_text(seconds)
  local s = math.max(0, math.floor(seconds))
  if s < 60 then return s .. "s" end
  if s < 3600 then return math.floor(s / 60) .. "m" end
  if s < 86400 then
    local h, m = math.floor(s / 3600), math.floor(s % 3600 / 60)
    return m > 0 and ("%dh %dm"):format(h, m) or h .. "h"
  end
  local d, h = math.floor(s / 86400), math.floor(s % 86400 / 3600)
  return h > 0 and ("%dd %dh"):format(d, h) or d .. "d"
end

-- Whether an access token that expires at iso is more than opts.max_token_age seconds past.
local function stale(iso, opts)
  local t = M.timestamp(iso)
  return t ~= nil and opts.now - t > opts.max_token_age
end

-- The record of one account from its list entry, updated by the live call's result.
local function record_of(email, listed, r, opts)
  local a = (r and r.ok and type(r.value) == "table") and r.value or listed
  local rec = {
    email = email,
    tier = typed(a.tier, "string") or typed(listed.tier, "string"),
    subscription_plan = typed(a.subscription_plan, "string") or typed(listed.subscription_plan, "string"),
    max_jobs = typed(a.maxJobs, "number") or typed(listed.maxJobs, "number"),
    refreshed_at = typed(a.refreshed_at, "string") or typed(listed.refreshed_at, "string"),
    error = typed(a.error, "string"),
    access_token_expires_at = typed(a.access_token_expires_at, "string")
      or typed(listed.access_token_expires_at, "string"),
  }
  if r and r.ok then
    rec.credits_remaining = typed(a.credits_remaining, "number")
    rec.tokens_remaining = typed(a.tokens_remaining, "number")
  end
  if rec.error then
    rec.state = "needs_reauth"
  elseif not (r and r.ok) then
    local err = r and r.err
    rec.error = err and errors.text(err) or "no result"
    rec.status = r and r.status
    rec.state = (type(err) == "table" and err.status == M.NEEDS_REAUTH_STATUS) and "needs_reauth"
      or "unreachable"
  elseif stale(rec.access_token_expires_at, opts) then
    rec.state = "stale_token"
    rec.error = ("access token expired %s ago and was not refreshed"):format(
      M.duration_text(opts.now - M.timestamp(rec.access_token_expires_at)))
  elseif (opts.min_credits and rec.credits_remaining and rec.credits_remaining < opts.min_credits)
    or (opts.min_tokens and rec.tokens_remaining and rec.tokens_remaining < opts.min_tokens) then
    rec.state = "low_credits"
  else
    rec.state = "ok"
  end
  return rec
end

--- A summary of records: `{ total = n, ok = n, needs_reauth = n, low_credits = n,
-- unreachable = n }` (every state present, 0 when none).
-- @tparam {table,...} records
-- @treturn table
function M.summarize(records)
  local s = { total = #records }
  for _, st in ipairs(M.STATES) do s[st] = 0 end
  for _, r in ipairs(records) do s[r.state] = (s[r.state] or 0) + 1 end
  return s
end

--- The one-line summary: `12 accounts: 8 ok, 2 needs_reauth, 1 low_credits, 1 unreachable`
-- (every state, in M.STATES order).
-- @tparam table summary from `collect` or `summarize`
-- @treturn string
function M.summary_line(summary)
  local parts = {}
  for i, st in ipairs(M.STATES) do parts[i] = ("%d %s"):format(summary[st] or 0, st) end
  return ("%d account%s: %s"):format(summary.total, summary.total == 1 and "" or "s",
    table.concat(parts, ", "))
end

--- Check the options of `collect` (without the concurrency range, which the batch checks).
-- @tparam any opts
-- @treturn true, or nil, why (e.g. "min_credits must be a non-negative number")
function M.check_options(opts)
  if type(opts) ~= "table" then return nil, "options must be a table" end
  for k in pairs(opts) do
    if not option_names[k] then return nil, ("unknown option '%s'"):format(tostring(k)) end
  end
  for _, k in ipairs({ "cancel", "on_result" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then return nil, k .. " must be a function" end
  end
  for _, k in ipairs({ "jobs", "subscription" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then return nil, k .. " must be a boolean" end
  end
  if opts.emails ~= nil then
    if type(opts.emails) ~= "table" then return nil, "emails must be an array of strings" end
    for _, e in ipairs(opts.emails) do
      if type(e) ~= "string" then return nil, "emails must be an array of strings" end
    end
  end
  for _, k in ipairs({ "min_credits", "min_tokens", "max_token_age", "now" }) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0) then
      return nil, k .. " must be a non-negative number"
    end
  end
  return true
end

--- The options with the defaults of the judging ones filled in (`max_token_age`, `now`), as
-- `collect` uses them; for callers that judge records themselves (`judge`).
-- @tparam[opt] table opts checked options
-- @treturn table a copy
function M.judging(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.max_token_age = o.max_token_age or defaults.max_token_age
  o.now = o.now or require("flowmusic.core").wall_time() -- (with its fraction: --remind 0.5s works)
  return o
end

--- The record of one account (as `collect` makes it) from its list entry and the result of
-- its live `get_account` call.
-- @tparam string email
-- @tparam table listed the account's entry of `list_accounts` (`{}` when unknown)
-- @param result a batch result of `get_account` (`ok`, `value`, `err`), or nil when none
-- @tparam table opts from `judging`
-- @treturn table the record
function M.judge(email, listed, result, opts)
  return record_of(email, listed, result, opts)
end

--- Collect the health of every account.
--
-- Lists the accounts, then calls `get_account` for each, concurrently over the client's pool
-- (`client:batch`). Writes nothing.
-- @param client a flowmusic client
-- @tparam[opt] table opts
--   `min_credits` (number: below it an account is `low_credits`),
--   `min_tokens` (number: the same for `tokens_remaining`),
--   `max_token_age` (seconds an access token may be past its expiry before the account is
--   `stale_token`; default 900), `now` (seconds since the epoch to judge that by; default
--   the current time),
--   `concurrency` (1-50; default: the batch default),
--   `cancel` (the batch option: a function polled while the live calls run; returning
--   "stop" or "abort" ends them early, and the calls it ended give `unreachable` records
--   whose `error` says they were cancelled),
--   `on_result` (function(record, result) called as each live call finishes, with the batch
--   result (`status`, `attempts`, `elapsed`, `err`; its `value` already dropped); e.g. for
--   verbose output),
--   `jobs` (false: skip `list_jobs`), `subscription` (false: skip `get_subscription`),
--   `emails` (array: only these of the listed accounts; the others get no live call and no
--   record, e.g. the accounts of a fleet file)
-- @treturn {table,...} records sorted by email, each `{ email, tier, subscription_plan,
--   state, credits_remaining, tokens_remaining, max_jobs, refreshed_at, error,
--   access_token_expires_at, jobs_running }` (`error`: the account's own error text, why
--   the live call failed, or for `stale_token` how long ago the token expired;
--   `credits_remaining` and `tokens_remaining` are nil when unknown; `jobs_running` nil when
--   `list_jobs` failed) and, when the live call failed, `status` (its HTTP status, if any)
-- @treturn table the summary (see `summarize`), plus `subscription` (`{ active,
--   accounts_max }` from `get_subscription`) or `subscription_error`, and `jobs_error` when
--   `list_jobs` failed (messages: those calls never fail the status); with `emails`, also
--   `listed` (how many accounts the list call gave) and `unlisted` (the emails asked for that
--   it did not list, sorted)
-- @return or nil, err when the list call itself failed (a flowmusic error value)
-- @raise on misuse: opts not a table, unknown option, a minimum that is not a
--   non-negative number, a bad concurrency
function M.collect(client, opts)
  if type(client) ~= "table" and type(client) ~= "userdata" then
    error("flowmusic.fleet.status: bad argument #1 to 'collect' (a flowmusic client expected)", 2)
  end
  local ok, why = M.check_options(opts or {})
  if not ok then error("flowmusic.fleet.status: bad argument #2 to 'collect' (" .. why .. ")", 2) end
  opts = M.judging(opts)

  -- (through batch, so that `cancel` also stops the list: a Ctrl-C must not wait for it)
  local listing = client:batch({ { "list_accounts" } }, { concurrency = 1, cancel = opts.cancel })[1]
  if not listing.ok then return nil, listing.err end
  local list = listing.value

  local only
  if opts.emails then
    only = {}
    for _, e in ipairs(opts.emails) do only[e] = true end
  end
  local emails, listed, count = {}, {}, 0
  for email, a in pairs(list) do
    if type(email) == "string" then
      count = count + 1
      if not only or only[email] then
        emails[#emails + 1] = email
        listed[email] = type(a) == "table" and a or {}
      end
    end
  end
  table.sort(emails)

  local n = #emails
  local calls = {}
  for i, email in ipairs(emails) do calls[i] = { "get_account", email } end
  -- Saturation and headroom, in the same batch; their failure never fails the status.
  local extra = {}
  if opts.jobs ~= false then calls[#calls + 1] = { "list_jobs" } extra[#calls] = "jobs" end
  if opts.subscription ~= false then calls[#calls + 1] = { "get_subscription" } extra[#calls] = "subscription" end
  local records, side = {}, {}
  -- Each record is built as its result arrives; the decoded account is then dropped.
  local results = client:batch(calls, { concurrency = opts.concurrency, cancel = opts.cancel,
    on_progress = function(_, _, i, r)
      if i > n then side[extra[i]] = r return end
      records[i] = record_of(emails[i], listed[emails[i]], r, opts)
      r.value = nil
      if opts.on_result then opts.on_result(records[i], r) end
    end })
  for i, email in ipairs(emails) do -- a result on_progress did not see is not lost
    if not records[i] then records[i] = record_of(email, listed[email], results[i], opts) end
  end
  for i = n + 1, #calls do side[extra[i]] = side[extra[i]] or results[i] end
  local summary = M.summarize(records)
  if only then
    summary.listed, summary.unlisted = count, {}
    for e in pairs(only) do
      if not listed[e] then summary.unlisted[#summary.unlisted + 1] = e end
    end
    table.sort(summary.unlisted)
  end
  local jobs = side.jobs
  if jobs then
    if jobs.ok then
      local running = M.running_jobs(jobs.value)
      for _, rec in ipairs(records) do rec.jobs_running = running[rec.email] or 0 end
    else
      summary.jobs_error = errors.text(jobs.err or "no result")
    end
  end
  local sub = side.subscription
  if sub then
    if sub.ok then
      summary.subscription = M.subscription_of(sub.value)
    else
      summary.subscription_error = errors.text(sub.err or "no result")
    end
  end
  return records, summary
end

--- Jobs running now per account, from a `list_jobs` document: its `accounts[email].executing`
-- where given, else its `jobs` counted by email (those not finished).
-- @tparam table doc
-- @treturn table `email -> n`
function M.running_jobs(doc)
  local running = {}
  if type(doc) ~= "table" then return running end
  if type(doc.accounts) == "table" then
    for email, a in pairs(doc.accounts) do
      if type(a) == "table" and type(a.executing) == "number" then running[email] = a.executing end
    end
  end
  if type(doc.jobs) == "table" then
    local counted = {}
    for _, j in ipairs(doc.jobs) do
      if type(j) == "table" and type(j.email) == "string" and j.status ~= "completed" and j.status ~= "failed" then
        counted[j.email] = (counted[j.email] or 0) + 1
      end
    end
    for email, c in pairs(counted) do
      if running[email] == nil then running[email] = c end
    end
  end
  return running
end

--- The subscription facts of a `get_subscription` document (useapi.net's `GET /v2/account`):
-- `{ active = bool|nil, accounts_max = n|nil }`.
-- @tparam table doc
-- @treturn table
function M.subscription_of(doc)
  local active = doc.subscriptionIsActive
  if type(active) ~= "boolean" then active = nil end -- (false must stay false)
  return { active = active, accounts_max = typed(doc.maxAccountsPerAPI, "number") }
end

return M
