--- Usage across accounts: the one reducer of usage documents (GET /accounts/usage) and the
-- fleet collection that feeds it.
--
--     local usage = require "flowmusic.fleet.usage"
--     local agg, err = usage.collect(client, { since = "2026-06-01", ["until"] = "2026-06-07" })
--     if not agg then print(err) return end
--     print(agg.total.charged_credits, #agg.accounts, agg.total.failed)
--
-- The vendor's rules (CONTRACT.md) live here and nowhere else: 12 tokens make a credit;
-- `producer-usage` + `riffusion` are charged; `grant` + `daily-free` are received. Every
-- number is recomputed from the events the reducer keeps (those whose `event_at` UTC day is
-- inside the range), so a range never mixes with the service's whole-history summary.
-- @module flowmusic.fleet.usage
local errors = require "flowmusic.errors"
local validate = require "flowmusic.validate"

local M = {}

--- Tokens per credit.
M.TOKENS_PER_CREDIT = 12

--- Types whose tokens are spent (charged), and types whose tokens are received.
M.CHARGED = { ["producer-usage"] = true, riffusion = true }
M.RECEIVED = { grant = true, ["daily-free"] = true }

--- Credits for a number of tokens.
function M.credits(tokens) return tokens / M.TOKENS_PER_CREDIT end

--- "charged", "received" or "other" for an event type.
function M.kind(t) return M.CHARGED[t] and "charged" or M.RECEIVED[t] and "received" or "other" end

local function num(v) return type(v) == "number" and v == v and v or 0 end
local function str(v) return type(v) == "string" and v or nil end

local DAYS_IN = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

--- Check a `YYYY-MM-DD` day (a real calendar day).
-- @return the day, or nil, message
function M.parse_day(s)
  -- (s may come from a flag: quoted only when validate.quote allows it)
  if type(s) ~= "string" then return nil, ("%s is not a day (YYYY-MM-DD)"):format(validate.quote(s)) end
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return nil, ("%s is not a day (YYYY-MM-DD)"):format(validate.quote(s)) end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
  local last = (m == 2 and leap) and 29 or DAYS_IN[m]
  if not last or d < 1 or d > last then return nil, ("'%s' is not a calendar day"):format(s) end
  return s
end

-- The checked range of an options table: since, until (either may be nil); raises on misuse.
local function range_of(opts, level)
  local since, till = opts.since, opts["until"]
  for name, v in pairs({ since = since, ["until"] = till }) do
    if v ~= nil then
      local ok, msg = M.parse_day(v)
      if not ok then error(("flowmusic.fleet.usage: %s: %s"):format(name, msg), level + 1) end
    end
  end
  if since and till and since > till then
    error(("flowmusic.fleet.usage: since (%s) is after until (%s)"):format(since, till), level + 1)
  end
  return since, till
end

local Reducer = {}
Reducer.__index = Reducer

--- A reducer: feed it documents one at a time (`add`), failures (`fail`), then read the
-- aggregates (`result`). It keeps only sums: per account, per UTC day (and per account within
-- a day), per type and per song; never a document.
-- @param opts optional `{ since = "YYYY-MM-DD", ["until"] = "YYYY-MM-DD" }` (inclusive UTC days)
-- @return reducer. Raises on a malformed day or since after until.
function M.reducer(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("flowmusic.fleet.usage: options must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "since" and k ~= "until" then
      error(("flowmusic.fleet.usage: unknown reducer option '%s'"):format(tostring(k)), 2)
    end
  end
  local since, till = range_of(opts, 2)
  return setmetatable({
    since = since, ["until"] = till,
    accounts = {}, order = {}, days = {}, types = {}, songs = {},
  }, Reducer)
end

-- The record of an account (created on first use, in arrival order).
local function account(self, email)
  local a = self.accounts[email]
  if not a then
    a = { email = email, tokens = 0, charged_tokens = 0, received_tokens = 0, songs = 0, events = 0 }
    self.accounts[email] = a
    self.order[#self.order + 1] = email
  end
  return a
end

--- Reduce one account's usage document. The document is only read; keep no reference to
-- it and it can be collected as soon as this returns.
-- @param email the account (default: the document's `email`)
-- @param doc the decoded usage document
-- @return the number of event rows kept (inside the range)
function Reducer:add(email, doc)
  doc = type(doc) == "table" and doc or {}
  email = email or str(doc.email) or "unknown"
  local a = account(self, email)
  local events = type(doc.events) == "table" and doc.events or {}
  local since, till = self.since, self["until"]
  local ranged = since or till
  local days, types, songs = self.days, self.types, self.songs
  local day_songs = {} -- day -> { conversation = true }: this account only, dropped on return
  local kept = 0
  for _, e in ipairs(events) do
    if type(e) == "table" then
      local at = str(e.event_at)
      local day = at and at:match("^%d%d%d%d%-%d%d%-%d%d") or nil
      if not ranged or (day and (not since or day >= since) and (not till or day <= till)) then
        day = day or "unknown"
        kept = kept + 1
        local t, amount = str(e.type) or "unknown", num(e.amount)
        local d = days[day]
        if not d then
          d = { key = day, tokens = 0, charged_tokens = 0, received_tokens = 0, songs = 0, by_account = {} }
          days[day] = d
        end
        d.tokens = d.tokens + amount
        a.tokens = a.tokens + amount
        types[t] = (types[t] or 0) + amount
        if M.CHARGED[t] then
          d.charged_tokens = d.charged_tokens + amount
          a.charged_tokens = a.charged_tokens + amount
          d.by_account[email] = (d.by_account[email] or 0) + amount
        elseif M.RECEIVED[t] then
          d.received_tokens = d.received_tokens + amount
          a.received_tokens = a.received_tokens + amount
        end
        local conv = str(e.conversation_id)
        if conv then
          local seen = day_songs[day]
          if not seen then seen = {} day_songs[day] = seen end
          if not seen[conv] then seen[conv] = true d.songs = d.songs + 1 end
          local key = email .. "\0" .. conv
          local s = songs[key]
          if not s then
            s = { email = email, key = conv, tokens = 0 }
            songs[key] = s
            a.songs = a.songs + 1
          end
          s.title = s.title or str(e.conversation_title)
          s.tokens = s.tokens + amount
        end
      end
    end
  end
  a.events = a.events + kept
  return kept
end

--- Record an account whose usage could not be read; it is left out of every sum.
-- @param email the account
-- @param err the error (a flowmusic error value or a message); kept as its one-line string
function Reducer:fail(email, err)
  local a = account(self, email)
  a.error = err == nil and "failed" or errors.text(err)
end

local function by_key(a, b) return a.key < b.key end

--- The aggregates so far (a fresh table each call; the reducer can go on).
-- @return table:
--   `since`, `until` (the range asked for, or nil), `first`, `last` (first and last day with
--   kept events), `generated_at` (UTC, ISO 8601);
--   `total`  = row { section="total", key="total", tokens, charged_tokens, charged_credits,
--              received_tokens, songs, events, accounts (read), failed (accounts) };
--   `days`   = rows by day { section="day", key=YYYY-MM-DD, tokens, charged_tokens,
--              charged_credits, received_tokens, songs, by_account = { email = charged credits } };
--   `accounts` = rows by email { section="account", email, key=email, tokens, charged_tokens,
--              charged_credits, received_tokens, songs, events, share (of the fleet's charged
--              credits, 0-1; nil when nothing was charged) } or { section="account", email,
--              key=email, error = message } for an account that failed;
--   `types`  = rows by type { section="type", key=type, kind, tokens, credits };
--   `songs`  = rows, most tokens first { section="song", email, key=conversation id, title,
--              tokens, credits }.
function Reducer:result()
  local credits = M.credits
  local r = { since = self.since, ["until"] = self["until"], days = {}, accounts = {}, types = {},
    songs = {}, generated_at = os.date("!%Y-%m-%dT%H:%M:%SZ") }
  local total = { section = "total", key = "total", tokens = 0, charged_tokens = 0, received_tokens = 0,
    songs = 0, events = 0, accounts = 0, failed = 0 }
  r.total = total

  local emails = {}
  for i, e in ipairs(self.order) do emails[i] = e end
  table.sort(emails)
  for _, email in ipairs(emails) do
    local a = self.accounts[email]
    if a.error then
      total.failed = total.failed + 1
      r.accounts[#r.accounts + 1] = { section = "account", email = email, key = email, error = a.error }
    else
      total.accounts = total.accounts + 1
      total.tokens = total.tokens + a.tokens
      total.charged_tokens = total.charged_tokens + a.charged_tokens
      total.received_tokens = total.received_tokens + a.received_tokens
      total.songs = total.songs + a.songs
      total.events = total.events + a.events
      r.accounts[#r.accounts + 1] = { section = "account", email = email, key = email, tokens = a.tokens,
        charged_tokens = a.charged_tokens, charged_credits = credits(a.charged_tokens),
        received_tokens = a.received_tokens, songs = a.songs, events = a.events }
    end
  end
  total.charged_credits = credits(total.charged_tokens)
  for _, row in ipairs(r.accounts) do
    if not row.error and total.charged_tokens > 0 then row.share = row.charged_tokens / total.charged_tokens end
  end

  for _, d in pairs(self.days) do
    local by = {}
    for email, tokens in pairs(d.by_account) do by[email] = credits(tokens) end
    r.days[#r.days + 1] = { section = "day", key = d.key, tokens = d.tokens, charged_tokens = d.charged_tokens,
      charged_credits = credits(d.charged_tokens), received_tokens = d.received_tokens, songs = d.songs,
      by_account = by }
  end
  table.sort(r.days, by_key)
  for _, d in ipairs(r.days) do
    if d.key ~= "unknown" then
      r.first = r.first or d.key
      r.last = d.key
    end
  end

  for t, tokens in pairs(self.types) do
    r.types[#r.types + 1] = { section = "type", key = t, kind = M.kind(t), tokens = tokens, credits = credits(tokens) }
  end
  table.sort(r.types, by_key)

  for _, s in pairs(self.songs) do
    r.songs[#r.songs + 1] = { section = "song", email = s.email, key = s.key, title = s.title, tokens = s.tokens,
      credits = credits(s.tokens) }
  end
  table.sort(r.songs, function(a, b)
    if a.tokens ~= b.tokens then return a.tokens > b.tokens end
    if a.email ~= b.email then return a.email < b.email end
    return a.key < b.key
  end)
  return r
end

local collect_options = { since = true, ["until"] = true, concurrency = true, emails = true,
  on_progress = true, cancel = true }

--- Usage of every account (or of `opts.emails`), fetched concurrently and reduced as each
-- document arrives; each document is dropped from its batch result right after and a full
-- garbage collection reclaims it, so peak memory is about one decoded document plus the
-- bodies in flight, not one document per account (50 accounts of 20 000 event rows: about
-- 30 MiB above the process before the call, against 420-530 MiB when all are kept; the
-- incremental collector alone let Lua 5.1 reach 70 MiB). Inside nginx the adapter hands
-- results over after the batch, so there all documents are held at once (and no collection
-- is forced).
-- @param client a flowmusic client
-- @param opts optional table: `since`, `until` (inclusive UTC days `YYYY-MM-DD`),
--   `concurrency` (1-50, default the batch default), `emails` (array: skip the account list),
--   `on_progress = function(done, total, email, result)` (the batch result with its value
--   already taken; return false to stop the batch), `cancel` (passed to client:batch)
-- @return aggregates (see Reducer:result; accounts that failed have rows with `error` and
--   `total.failed` counts them; an account the batch never ran is reported failed with its
--   `cancelled` error); or nil, err when the account list cannot be read.
--   Raises on misuse (unknown option, bad day, since after until).
function M.collect(client, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("flowmusic.fleet.usage: options must be a table", 2) end
  for k in pairs(opts) do
    if not collect_options[k] then
      error(("flowmusic.fleet.usage: unknown option '%s'"):format(tostring(k)), 2)
    end
  end
  if opts.on_progress ~= nil and type(opts.on_progress) ~= "function" then
    error("flowmusic.fleet.usage: on_progress must be a function", 2)
  end
  if opts.emails ~= nil and type(opts.emails) ~= "table" then
    error("flowmusic.fleet.usage: emails must be an array of strings", 2)
  end
  local since, till = range_of(opts, 2)
  local red = M.reducer { since = since, ["until"] = till }
  local emails = opts.emails
  if not emails then
    -- (through batch, so that `cancel` also stops the list)
    local listing = client:batch({ { "list_accounts" } }, { concurrency = 1, cancel = opts.cancel })[1]
    if not listing.ok then return nil, listing.err end
    emails = {}
    for email in pairs(listing.value) do emails[#emails + 1] = email end
    table.sort(emails)
  end
  local calls = {}
  for i, email in ipairs(emails) do calls[i] = { "get_usage", email } end
  local seen, user = {}, opts.on_progress
  -- Inside nginx the batch hands every result over after it ends: the documents are all held
  -- by then, and a full collection per document would only stall the worker.
  local ngx_api = rawget(_G, "ngx")
  local in_nginx = type(ngx_api) == "table" and ngx_api.get_phase ~= nil
  local results = client:batch(calls, { concurrency = opts.concurrency, cancel = opts.cancel,
    on_progress = function(done, total, i, r)
      seen[i] = true
      if r.ok then red:add(emails[i], r.value) else red:fail(emails[i], r.err) end
      r.value = nil -- the batch keeps no other reference: the document can go now
      if not in_nginx then collectgarbage() end -- reclaim it before the next one is decoded
      if user then return user(done, total, emails[i], r) end
    end })
  for i, email in ipairs(emails) do -- lossless: whatever on_progress never saw is reported
    if not seen[i] then
      local r = results[i]
      if r and r.ok then red:add(email, r.value) r.value = nil
      else red:fail(email, r and r.err or "not run") end
    end
  end
  return red:result()
end

return M
