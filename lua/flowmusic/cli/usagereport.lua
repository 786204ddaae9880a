--- Turn a usage document (GET /accounts/usage) into report rows: totals, per day, per type
-- and per song. Used by `flowmusic usage` and by the `usage` op of `flowmusic batch`.
-- @module flowmusic.cli.usagereport
local M = {}

--- Types whose tokens are spent, and types whose tokens are received (CONTRACT.md).
M.CHARGED = { ["producer-usage"] = true, riffusion = true }
M.RECEIVED = { grant = true, ["daily-free"] = true }

local function num(v) return type(v) == "number" and v or 0 end
local function str(v) return type(v) == "string" and v or nil end

--- Summarise a usage document.
-- @return { total = row, days = {row...}, types = {row...}, songs = {row...}, first, last,
--   events = count }, rows in the shape of M.COLUMNS (section = total|day|type|song)
function M.summarize(doc, email)
  doc = type(doc) == "table" and doc or {}
  local events = type(doc.events) == "table" and doc.events or {}
  local summary = type(doc.summary) == "table" and doc.summary or {}
  email = email or str(doc.email)

  local days, day_list = {}, {}
  local type_tokens, song_tokens, song_titles = {}, {}, {}
  local total = { section = "total", email = email, key = "total", tokens = 0, charged_tokens = 0,
    received_tokens = 0 }
  for _, e in ipairs(events) do
    if type(e) == "table" then
      local day = (str(e.event_at) or "unknown"):sub(1, 10)
      local d = days[day]
      if not d then
        d = { section = "day", email = email, key = day, tokens = 0, charged_tokens = 0,
          received_tokens = 0, songs = 0, seen = {} }
        days[day] = d
        day_list[#day_list + 1] = day
      end
      local t, amount = str(e.type) or "unknown", num(e.amount)
      d.tokens = d.tokens + amount
      total.tokens = total.tokens + amount
      type_tokens[t] = (type_tokens[t] or 0) + amount
      if M.CHARGED[t] then
        d.charged_tokens = d.charged_tokens + amount
        total.charged_tokens = total.charged_tokens + amount
        local conv = str(e.conversation_id)
        if conv then
          if not d.seen[conv] then d.seen[conv] = true d.songs = d.songs + 1 end
          song_tokens[conv] = (song_tokens[conv] or 0) + amount
          song_titles[conv] = song_titles[conv] or str(e.conversation_title)
        end
      elseif M.RECEIVED[t] then
        d.received_tokens = d.received_tokens + amount
        total.received_tokens = total.received_tokens + amount
      end
    end
  end
  table.sort(day_list)
  local r = { total = total, days = {}, types = {}, songs = {}, events = #events,
    first = day_list[1], last = day_list[#day_list] }
  for _, day in ipairs(day_list) do
    local d = days[day]
    d.seen = nil
    d.charged_credits = d.charged_tokens / 12
    r.days[#r.days + 1] = d
  end

  -- Per type: the service's summary when present, else the sums of the events.
  local by_type = type(summary.by_type_tokens) == "table" and summary.by_type_tokens or type_tokens
  local by_credits = type(summary.by_type_credits) == "table" and summary.by_type_credits or {}
  local names = {}
  for t in pairs(by_type) do names[#names + 1] = t end
  table.sort(names)
  for _, t in ipairs(names) do
    local tokens = num(by_type[t])
    r.types[#r.types + 1] = { section = "type", email = email, key = t, tokens = tokens,
      credits = type(by_credits[t]) == "number" and by_credits[t] or tokens / 12,
      kind = M.CHARGED[t] and "charged" or M.RECEIVED[t] and "received" or "other" }
  end

  -- Per song: summary.per_conversation when present, else charged events by conversation.
  local per = type(summary.per_conversation) == "table" and summary.per_conversation or nil
  if per then
    for _, c in ipairs(per) do
      if type(c) == "table" then
        r.songs[#r.songs + 1] = { section = "song", email = email, key = str(c.conversation_id),
          title = str(c.title), tokens = num(c.tokens),
          credits = type(c.credits) == "number" and c.credits or num(c.tokens) / 12 }
      end
    end
  else
    for conv, tokens in pairs(song_tokens) do
      r.songs[#r.songs + 1] = { section = "song", email = email, key = conv, title = song_titles[conv],
        tokens = tokens, credits = tokens / 12 }
    end
  end
  table.sort(r.songs, function(a, b)
    if a.tokens ~= b.tokens then return a.tokens > b.tokens end
    return tostring(a.key) < tostring(b.key)
  end)

  total.charged_credits = type(summary.total_charged_credits) == "number" and summary.total_charged_credits
    or total.charged_tokens / 12
  if type(summary.total_received_tokens) == "number" then total.received_tokens = summary.total_received_tokens end
  total.songs = #r.songs
  return r
end

--- Columns of the machine-readable rows (--json / --csv).
M.COLUMNS = {
  { key = "section" }, { key = "email" }, { key = "key" }, { key = "title" }, { key = "kind" },
  { key = "tokens" }, { key = "credits" }, { key = "charged_tokens" }, { key = "charged_credits" },
  { key = "received_tokens" }, { key = "songs" },
}

return M
