--- GET /accounts/usage: a deterministic usage history per account, aggregated per UTC day.
--
-- The raw billing events are generated from the account's email and the UTC day the account
-- was added (the history covers the 4 UTC days before that day), then aggregated exactly as
-- the vendor documents: one row per (UTC day, type, conversation) with the SUM of the raw
-- amounts and the latest raw event time; the summary is computed from those rows.
-- `/__sandbox/usage {"email", "events": N}` replaces the history by N synthetic rows (one raw
-- event each, 25 rows per day going back from the same anchor day); only N is stored.
-- @module flowmusic.sandbox.usage

local json = require "flowmusic.sandbox.json"
local util = require "flowmusic.sandbox.util"

local M = {}

local DAY = 86400
local CHARGED = { ["producer-usage"] = true, riffusion = true }
local RECEIVED = { grant = true, ["daily-free"] = true }
local ROW_MT = { __jsonorder = { "type", "amount", "conversation_id", "conversation_title",
                                 "event_at", "max_created_at", "_account_email" } }
local CONV_MT = { __jsonorder = { "conversation_id", "title", "email", "tokens", "credits" } }
local TITLES = { "Night Drive", "Paper Boats", "Neon Rain", "Low Tide", "Glass Garden" }

--- Most synthetic rows of one account's usage document (`POST /__sandbox/usage` refuses more).
M.MAX_EVENTS = 200000

--- Store the number of synthetic rows for an account (nil or 0: the default history).
-- @tparam string email
-- @tparam[opt] number n at most `MAX_EVENTS`
-- @treturn true, or `nil, message` when the storage is full
function M.set_size(email, n)
  if n and n > 0 then
    local ok, err = ngx.shared.flowmusic_sandbox:safe_set("usage:" .. email, n)
    if not ok then return nil, "the sandbox's storage is full (" .. tostring(err) .. ")" end
  else
    ngx.shared.flowmusic_sandbox:delete("usage:" .. email)
  end
  return true
end

-- The anchor: start (epoch seconds) of the UTC day the account was added.
local function anchor_day(rec)
  local s = math.floor(rec.added / 1000)
  return s - s % DAY
end

-- The default raw events: {day=epoch, t=seconds in day, us=microseconds, type, amount, conv}.
local function default_raw(email, anchor)
  local h = util.hash(email)
  local songs = {
    { id = util.uuid_of("conv:1:" .. email), title = "Sample Song" },
    { id = util.uuid_of("conv:2:" .. email), title = TITLES[h % #TITLES + 1] },
    { id = util.uuid_of("conv:3:" .. email), title = json.null },
  }
  local k = 1 + h % 3 -- a per-account multiplier for the song amounts
  local plan = {
    -- day offset (1 = 4 days before the anchor), type, amount, song index
    { 1, "grant", 7200 },
    { 1, "daily-free", 360 }, { 2, "daily-free", 360 }, { 3, "daily-free", 360 }, { 4, "daily-free", 360 },
    { 1, "producer-usage", 24, 1 }, { 1, "producer-usage", 36, 1 },          -- one row of 60
    { 2, "producer-usage", 120 * k, 2 }, { 2, "producer-usage", 120, 2 },
    { 2, "producer-usage", 50, 3 },                                           -- not a multiple of 12
    { 2, "riffusion", 60, 1 },
    { 3, "producer-usage", 600, 1 },
    { 4, "producer-usage", 180, 2 }, { 4, "producer-usage", 12 * k, 2 },
    { 4, "riffusion", 25, 3 }, { 4, "riffusion", 35, 3 },
  }
  local raw = {}
  for i, p in ipairs(plan) do
    local song = p[4] and songs[p[4]]
    raw[i] = {
      day = anchor - (5 - p[1]) * DAY,
      t = (h + i * 7919) % 86000 + 60,
      us = (h * 31 + i * 104729) % 1000000,
      type = p[2], amount = p[3],
      conv = song and song.id or json.null, title = song and song.title or json.null,
    }
  end
  return raw
end

-- N synthetic raw events, each its own row.
local function big_raw(email, anchor, n)
  local h = util.hash(email)
  local convs, raw = {}, {}
  for i = 0, n - 1 do
    local j = i % 25
    local e = {
      day = anchor - (math.floor(i / 25) + 1) * DAY,
      t = (h + i * 7919) % 86000 + 60, us = (h * 31 + i * 104729) % 1000000,
      conv = json.null, title = json.null,
    }
    if j == 0 then
      e.type, e.amount = "daily-free", 360
    elseif j == 1 then
      e.type, e.amount = "grant", 120
    else
      e.type = (j % 2 == 0) and "producer-usage" or "riffusion"
      e.amount = 12 * ((h + i) % 10 + 1) + ((i % 7 == 0) and 5 or 0)
      local c = convs[j]
      if not c then
        c = { id = util.uuid_of("conv:big:" .. j .. ":" .. email), title = "Song " .. j }
        convs[j] = c
      end
      e.conv, e.title = c.id, c.title
    end
    raw[#raw + 1] = e
  end
  return raw
end

-- Aggregate raw events into rows per (UTC day, type, conversation).
local function aggregate(raw, email)
  local rows, by_key = {}, {}
  for _, e in ipairs(raw) do
    local conv = e.conv ~= json.null and e.conv or ""
    local key = e.day .. "|" .. e.type .. "|" .. conv
    local row = by_key[key]
    local at = e.t * 1000000 + e.us
    if not row then
      row = setmetatable({
        type = e.type, amount = 0, conversation_id = e.conv, conversation_title = e.title,
        event_at = os.date("!%Y-%m-%dT00:00:00", e.day), _account_email = email,
        _day = e.day, _at = -1,
      }, ROW_MT)
      by_key[key] = row
      rows[#rows + 1] = row
    end
    row.amount = row.amount + e.amount
    if at > row._at then
      row._at = at
      row.max_created_at = os.date("!%Y-%m-%dT%H:%M:%S", e.day + e.t) .. string.format(".%06dZ", e.us)
    end
  end
  table.sort(rows, function(a, b)
    if a._day ~= b._day then return a._day < b._day end
    if a.type ~= b.type then return a.type < b.type end
    local ca = a.conversation_id ~= json.null and a.conversation_id or ""
    local cb = b.conversation_id ~= json.null and b.conversation_id or ""
    return ca < cb
  end)
  for _, row in ipairs(rows) do row._day, row._at = nil, nil end
  return rows
end

-- An accumulator of the summary: `add(row)` for each row in document order, then `result()`.
local function summary_acc(email)
  local tokens, per, convs = {}, {}, {}
  local acc = {}
  function acc.add(r)
    tokens[r.type] = (tokens[r.type] or 0) + r.amount
    if r.conversation_id ~= json.null then
      local c = per[r.conversation_id]
      if not c then
        c = setmetatable({ conversation_id = r.conversation_id, title = r.conversation_title,
                           email = email, tokens = 0 }, CONV_MT)
        per[r.conversation_id] = c
        convs[#convs + 1] = c
      end
      c.tokens = c.tokens + r.amount
    end
  end
  function acc.result()
    local credits, charged, received = {}, 0, 0
    for t, n in pairs(tokens) do
      credits[t] = n / 12
      if CHARGED[t] then charged = charged + n / 12 end
      if RECEIVED[t] then received = received + n end
    end
    for _, c in ipairs(convs) do c.credits = c.tokens / 12 end
    return json.object({
      by_type_tokens = tokens, by_type_credits = credits,
      total_charged_credits = charged, total_received_tokens = received,
      per_conversation = json.array(convs),
    }, { "by_type_tokens", "by_type_credits", "total_charged_credits", "total_received_tokens",
         "per_conversation" })
  end
  return acc
end

--- The summary of a list of rows, as the vendor defines it.
-- @tparam {table,...} rows
-- @tparam string email
-- @treturn table
function M.summarize(rows, email)
  local acc = summary_acc(email)
  for _, r in ipairs(rows) do acc.add(r) end
  return acc.result()
end

--- The usage document of an account.
-- @tparam table rec internal account record
-- @treturn table ordered JSON object
function M.document(rec)
  local anchor = anchor_day(rec)
  local n = ngx.shared.flowmusic_sandbox:get("usage:" .. rec.email)
  local raw = n and big_raw(rec.email, anchor, n) or default_raw(rec.email, anchor)
  local rows = aggregate(raw, rec.email)
  return json.object({ email = rec.email, events = json.array(rows), summary = M.summarize(rows, rec.email) },
                     { "email", "events", "summary" })
end

-- Order of rows within a day: type, then conversation id (none first).
local function row_before(a, b)
  if a.type ~= b.type then return a.type < b.type end
  local ca = a.conversation_id ~= json.null and a.conversation_id or ""
  local cb = b.conversation_id ~= json.null and b.conversation_id or ""
  return ca < cb
end

-- When the large document being built last made progress (nil: none is). A request whose
-- client hangs up is ended at a yield and never clears it, so waiters take a mark older than
-- STALE seconds as free.
local building, STALE = nil, 2

-- The JSON text of a synthetic document of n rows, built a day at a time (yielding to other
-- requests every 200 days, 5000 rows): each synthetic
-- event is its own row, so no day needs aggregating, and only the encoded pieces are kept
-- (the same text `json.encode(M.document(rec))` gives, at half the memory).
local function big_text(rec, n)
  local email, anchor = rec.email, anchor_day(rec)
  local h = util.hash(email)
  local acc, convs = summary_acc(email), {}
  local out = { '{"email":', json.quote(email), ',"events":[' } -- pieces, never one string per row
  local days = math.ceil(n / 25)
  for k = days - 1, 0, -1 do -- oldest day first
    if k % 200 == 0 then -- let the worker answer other requests meanwhile
      ngx.sleep(0.001)
      building = ngx.now()
    end
    local day = anchor - (k + 1) * DAY
    local event_at = os.date("!%Y-%m-%dT00:00:00", day)
    local rows = {}
    for i = k * 25, math.min(k * 25 + 24, n - 1) do
      local j = i % 25
      local t, us = (h + i * 7919) % 86000 + 60, (h * 31 + i * 104729) % 1000000
      local row = setmetatable({ conversation_id = json.null, conversation_title = json.null,
        event_at = event_at, _account_email = email,
        max_created_at = os.date("!%Y-%m-%dT%H:%M:%S", day + t) .. string.format(".%06dZ", us) }, ROW_MT)
      if j == 0 then
        row.type, row.amount = "daily-free", 360
      elseif j == 1 then
        row.type, row.amount = "grant", 120
      else
        row.type = (j % 2 == 0) and "producer-usage" or "riffusion"
        row.amount = 12 * ((h + i) % 10 + 1) + ((i % 7 == 0) and 5 or 0)
        local c = convs[j]
        if not c then
          c = { id = util.uuid_of("conv:big:" .. j .. ":" .. email), title = "Song " .. j }
          convs[j] = c
        end
        row.conversation_id, row.conversation_title = c.id, c.title
      end
      rows[#rows + 1] = row
    end
    table.sort(rows, row_before)
    for _, row in ipairs(rows) do
      acc.add(row)
      if #out > 3 then out[#out + 1] = "," end
      json.append(row, out)
    end
  end
  out[#out + 1] = '],"summary":'
  json.append(acc.result(), out)
  out[#out + 1] = "}"
  return table.concat(out)
end

-- Encoded large documents of this worker, keyed by email|rows|anchor (deterministic, so
-- they never go stale); the oldest go first once they hold more than CACHE_BYTES.
local cache, cache_keys, cache_bytes, CACHE_BYTES = {}, {}, 0, 64 * 1048576

--- The usage document as JSON text; large documents are kept for repeated requests.
-- @tparam table rec internal account record
-- @treturn string
function M.render(rec)
  local n = ngx.shared.flowmusic_sandbox:get("usage:" .. rec.email)
  if not n then return json.encode(M.document(rec)) end
  local key = rec.email .. "|" .. n .. "|" .. anchor_day(rec)
  -- one large document at a time: the others wait (other requests are still answered), so
  -- concurrent requests never hold several half-built documents
  while building and ngx.now() - building < STALE and not cache[key] do ngx.sleep(0.005) end
  local text = cache[key]
  if not text then
    building = ngx.now()
    local ok, built = pcall(big_text, rec, n)
    building = nil
    if not ok then error(built, 0) end
    text = built
    cache[key] = text
    cache_keys[#cache_keys + 1] = key
    cache_bytes = cache_bytes + #text
    while cache_bytes > CACHE_BYTES and #cache_keys > 1 do
      local old = table.remove(cache_keys, 1)
      cache_bytes = cache_bytes - #cache[old]
      cache[old] = nil
    end
  end
  return text
end

return M
