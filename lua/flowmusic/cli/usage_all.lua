--- The work of `flowmusic usage`: one account (`usage EMAIL`) or the whole fleet
-- (`usage --all`), optionally limited to a range of UTC days, printed as tables (with bars
-- per day on a terminal or with --chart), JSON Lines or CSV, and optionally written as an HTML
-- report. The command module parses the arguments and calls M.run with plain options.
-- @module flowmusic.cli.usage_all
local common = require "flowmusic.cli.common"
local output = require "flowmusic.cli.output"
local format = require "flowmusic.format"
local report = require "flowmusic.cli.usagereport"
local fleet_usage = require "flowmusic.fleet.usage"
local chart = require "flowmusic.report.chart"
local html = require "flowmusic.report.html"
local defaults = require "flowmusic.defaults"
local selection = require "flowmusic.cli.selection"

local M = {}

--- Sections `--by` accepts: for one account, and for --all.
M.BY_ONE = { day = true, type = true, song = true }
M.BY_ALL = { day = true, account = true, type = true, song = true }

--- Columns of the --all rows: those of `usage EMAIL`, then share and error (account rows).
M.COLUMNS = {}
for i, c in ipairs(report.COLUMNS) do M.COLUMNS[i] = c end
M.COLUMNS[#M.COLUMNS + 1] = { key = "share" }
M.COLUMNS[#M.COLUMNS + 1] = { key = "error" }
--- With --fleet: those, then labels (account rows).
M.FLEET_COLUMNS = {}
for i, c in ipairs(M.COLUMNS) do M.FLEET_COLUMNS[i] = c end
M.FLEET_COLUMNS[#M.FLEET_COLUMNS + 1] = selection.COLUMN

local DAY_COLUMNS = {
  { key = "key", title = "DAY" },
  { key = "charged_credits", title = "CHARGED CREDITS", right = true },
  { key = "charged_tokens", title = "CHARGED TOKENS", right = true },
  { key = "received_tokens", title = "RECEIVED TOKENS", right = true },
  { key = "songs", title = "SONGS", right = true },
}
local ACCOUNT_COLUMNS = {
  { key = "email", title = "ACCOUNT" },
  { key = "charged_credits", title = "CHARGED CREDITS", right = true },
  { key = "received_tokens", title = "RECEIVED TOKENS", right = true },
  { key = "songs", title = "SONGS", right = true },
  { key = "share_text", title = "SHARE", right = true },
  { key = "error", title = "ERROR" },
}
local FLEET_ACCOUNT_COLUMNS = {}
for i, c in ipairs(ACCOUNT_COLUMNS) do FLEET_ACCOUNT_COLUMNS[i] = c end
table.insert(FLEET_ACCOUNT_COLUMNS, #FLEET_ACCOUNT_COLUMNS, selection.COLUMN) -- (before ERROR)
local TYPE_COLUMNS = {
  { key = "key", title = "TYPE" }, { key = "kind", title = "KIND" },
  { key = "tokens", title = "TOKENS", right = true }, { key = "credits", title = "CREDITS", right = true },
}
local SONG_COLUMNS = {
  { key = "title", title = "SONG" }, { key = "key", title = "CONVERSATION" },
  { key = "tokens", title = "TOKENS", right = true }, { key = "credits", title = "CREDITS", right = true },
}
local FLEET_SONG_COLUMNS = {
  { key = "title", title = "SONG" }, { key = "key", title = "CONVERSATION" }, { key = "email", title = "ACCOUNT" },
  { key = "tokens", title = "TOKENS", right = true }, { key = "credits", title = "CREDITS", right = true },
}

--- Check the options of `usage` (those argparse can't judge alone: how they combine) and
-- put them in one shape. Returns the options { all, email, since, until, by, concurrency,
-- html, prometheus, chart, verbose, mode }, or nil, message (a usage error). The command
-- adds `fleet` (flowmusic.cli.selection.fleet) for --fleet / --label.
-- @param raw parsed options (argparse's result: all, since, until, by, concurrency, html,
--   prometheus, chart, verbose, fleet, label)
-- @param email the EMAIL argument or nil
-- @param mode "table", "json" or "csv"
function M.options(raw, email, mode)
  local o = { all = raw.all and true or false, email = email, by = raw.by, html = raw.html,
    prometheus = raw.prometheus,
    chart = raw.chart and true or false, verbose = raw.verbose and true or false, mode = mode }
  if o.all and email then return nil, "--all takes no EMAIL" end
  if not o.all then
    if not email then return nil, "missing EMAIL (or --all)" end
    local ok, msg = common.email(email)
    if not ok then return nil, msg end
    if raw.concurrency then return nil, "--concurrency goes with --all" end
    if raw.prometheus then return nil, "--prometheus goes with --all" end
    if raw.fleet then return nil, "--fleet goes with --all" end
    if raw.label and #raw.label > 0 then return nil, "--label goes with --all (and --fleet)" end
  end
  for _, name in ipairs({ "since", "until" }) do
    local v = raw[name]
    if v ~= nil then
      local day, err = fleet_usage.parse_day(v)
      if not day then return nil, "--" .. name .. ": " .. err end
      o[name] = day
    end
  end
  if o.since and o["until"] and o.since > o["until"] then
    return nil, ("--since %s is after --until %s"):format(o.since, o["until"])
  end
  local by = o.all and M.BY_ALL or M.BY_ONE
  if o.by and not by[o.by] then
    return nil, ("--by must be %s, got %s"):format(
      o.all and "day, account, type or song" or "day, type or song", output.show(o.by, common.secrets()))
  end
  o.concurrency = defaults.cli_concurrency
  if raw.concurrency then
    local n, err = common.integer(raw.concurrency, 1, defaults.max_concurrency, "--concurrency")
    if not n then return nil, err end
    o.concurrency = n
  end
  if o.html then -- refuse an unwritable path before anything is fetched
    local f, err = io.open(o.html .. ".tmp", "wb")
    if not f then return nil, "--html: cannot write '" .. o.html .. "': " .. tostring(err):gsub("^[^:]*: ", "") end
    f:close()
    os.remove(o.html .. ".tmp")
  end
  return o
end

-- Write the HTML report next to its final name, then rename (no half-written report).
local function write_html(path, agg, title)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(html.render(agg, { title = title }))
  f:close()
  if not ok then os.remove(tmp) return nil, werr end
  local rok, rerr = os.rename(tmp, path)
  if not rok then os.remove(tmp) return nil, rerr end
  return true
end

local function plural(k, word) return ("%d %s%s"):format(k, word, k == 1 and "" or "s") end

local function range_text(o, agg)
  local parts = {}
  if o.since or o["until"] then
    parts[#parts + 1] = ("range %s to %s"):format(o.since or "the beginning", o["until"] or "today")
  end
  if agg.first then parts[#parts + 1] = ("%s to %s"):format(agg.first, agg.last) end
  return parts
end

-- The table output (the human one).
local function human(agg, o)
  local out, t = io.stdout, agg.total
  local head = {}
  if o.all then
    head[1] = "Fleet usage: " .. plural(t.accounts + t.failed, "account")
      .. (t.failed > 0 and (" (" .. t.failed .. " failed)") or "")
  else
    head[1] = "Usage of " .. o.email
  end
  for _, p in ipairs(range_text(o, agg)) do head[#head + 1] = p end
  out:write(common.clean(table.concat(head, ", ")), (" (%s)\n"):format(plural(t.events, "event row")))
  out:write(("  charged:  %s credits (%s tokens)\n"):format(format.number(t.charged_credits),
    format.number(t.charged_tokens)))
  out:write(("  received: %s tokens\n"):format(format.number(t.received_tokens)))
  out:write(("  songs:    %d\n"):format(t.songs))
  local by = o.by
  if by == nil or by == "day" then
    out:write("\nPer day:\n")
    out:write(#agg.days > 0 and output.render(DAY_COLUMNS, agg.days) or "  (no events)\n")
    if #agg.days > 0 and (o.chart or output.isatty(io.stdout)) then
      out:write("\nCharged credits per day:\n")
      out:write(chart.render(agg.days, { value = "charged_credits", format = format.number }))
    end
  end
  if o.all and (by == nil or by == "account") then
    out:write("\nPer account:\n")
    local rows = {}
    for i, a in ipairs(agg.accounts) do
      rows[i] = setmetatable({ share_text = a.share and ("%.1f%%"):format(a.share * 100) or nil }, { __index = a })
    end
    local columns = (o.fleet and o.fleet.any) and FLEET_ACCOUNT_COLUMNS or ACCOUNT_COLUMNS
    out:write(#rows > 0 and output.render(columns, rows) or "  (no accounts)\n")
  end
  if by == nil or by == "type" then
    out:write("\nPer type:\n")
    out:write(#agg.types > 0 and output.render(TYPE_COLUMNS, agg.types) or "  (no events)\n")
  end
  if by == nil or by == "song" then
    out:write("\nPer song:\n")
    local rows = {}
    for i, s in ipairs(agg.songs) do
      rows[i] = { title = s.title or "(untitled)", key = s.key, email = s.email, tokens = s.tokens,
        credits = s.credits }
    end
    out:write(#rows > 0 and output.render(o.all and FLEET_SONG_COLUMNS or SONG_COLUMNS, rows) or "  (no songs)\n")
  end
end

-- JSON Lines or CSV rows.
local function machine(agg, o)
  local w = output.writer(o.mode, o.all and (o.fleet and M.FLEET_COLUMNS or M.COLUMNS) or report.COLUMNS)
  if not o.by then w:add(agg.total) end
  local sections = { day = agg.days, account = agg.accounts, type = agg.types, song = agg.songs }
  for _, name in ipairs({ "day", "account", "type", "song" }) do
    if sections[name] and (o.all or name ~= "account") and (not o.by or o.by == name) then
      for _, row in ipairs(sections[name]) do w:add(row) end
    end
  end
  w:finish()
end

-- Fetch and reduce: the fleet, or one account. Returns aggregates, or nil, exit code.
local function collect(client, o)
  if not o.all then
    local r = common.call(client, o, { "get_usage", o.email })
    if not r.ok then
      common.say("usage", common.error_message(r))
      return nil, common.FAILED
    end
    return report.summarize(r.value, o.email, { since = o.since, ["until"] = o["until"] })
  end
  local emails -- with --fleet: its live accounts
  if o.fleet then
    local r = common.call(client, o, { "list_accounts" })
    if not r.ok then
      common.say("usage", "cannot list the accounts: " .. common.error_message(r))
      return nil, common.FAILED
    end
    local missing = {}
    emails = {}
    for _, e in ipairs(o.fleet.emails) do
      if r.value[e] ~= nil then emails[#emails + 1] = e else missing[#missing + 1] = e end
    end
    table.sort(missing)
    selection.note_missing("usage", o.fleet, missing)
  end
  local show = not o.verbose and output.isatty(io.stderr)
  local bar = output.progress(show, io.stderr)
  -- Ctrl-C (or SIGTERM) once: start nothing new, report what is done and name the rest;
  -- twice: drop the calls in flight too. Every account still gets its row; the command line
  -- then ends with 130/143.
  local agg, err = fleet_usage.collect(client, {
    since = o.since, ["until"] = o["until"], concurrency = o.concurrency, cancel = common.cancel, emails = emails,
    on_progress = function(done, total, email, r)
      if o.verbose then
        io.stderr:write(common.clean(common.verbose_line(common.label("get_usage") .. " " .. email, r)), "\n")
      end
      bar:update(done, total)
    end,
  })
  bar:finish()
  if not agg then
    common.say("usage", "cannot list the accounts: " .. common.describe(err))
    return nil, common.FAILED
  end
  for _, a in ipairs(agg.accounts) do
    if a.error then common.say("usage", a.email .. ": " .. a.error) end
    if o.fleet then a.labels = selection.value(o.fleet.labels[a.email]) end
  end
  return agg
end

--- Run `usage` with checked options (M.options). Returns the exit code: 0, or 1 when the
-- usage of an account (or the account list) could not be read or the HTML could not be
-- written; the report still covers every account that answered and names the others. (After
-- SIGINT/SIGTERM flowmusic.cli ends with 130/143 instead.)
function M.run(client, o)
  local agg, code = collect(client, o)
  if o.prometheus then
    local prometheus = require "flowmusic.fleet.prometheus"
    local ok, err = prometheus.write_file(o.prometheus, prometheus.render(prometheus.usage_families(agg,
      { timestamp = os.time() })))
    if not ok then
      common.say("usage", err)
      code = common.FAILED
    end
  end
  if not agg then return code end
  if o.mode == "table" then human(agg, o) else machine(agg, o) end
  if code ~= common.FAILED then code = agg.total.failed > 0 and common.FAILED or common.OK end
  if o.html then
    local title = o.all and "Flow Music usage: all accounts" or ("Flow Music usage: " .. o.email)
    local ok, err = write_html(o.html, agg, title)
    if not ok then
      common.say("usage", "cannot write '" .. o.html .. "': " .. tostring(err))
      code = common.FAILED
    end
  end
  return code
end

return M
