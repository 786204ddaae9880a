--- `flowmusic usage EMAIL [--by day|type|song]`: a readable usage report of one account.
-- A command module of flowmusic.cli.
-- @module flowmusic.cli.usage
local common = require "flowmusic.cli.common"
local output = require "flowmusic.cli.output"
local report = require "flowmusic.cli.usagereport"

local DESCRIPTION = [[
Usage report of one account (GET /accounts/usage): totals (credits charged by
producer-usage + riffusion, tokens received from grant + daily-free; 12 tokens = 1
credit), then a table per day, per event type and per song (conversation).

With --json / --csv every row is one record with the columns
section,email,key,title,kind,tokens,credits,charged_tokens,charged_credits,received_tokens,songs
where section is total, day (key = YYYY-MM-DD), type (key = event type, kind =
charged|received|other) or song (key = conversation id, title = song title);
--by keeps only the rows of that section.]]

local EPILOG = [[
examples:
  flowmusic usage someone@example.com
  flowmusic usage someone@example.com --by song
  flowmusic usage someone@example.com --by day --csv > days.csv

exit status: 0 success, 1 the API call failed (e.g. 404 no such account), 2 usage error,
130/143 interrupted by SIGINT/SIGTERM.]]

local DAY_COLUMNS = {
  { key = "key", title = "DAY" },
  { key = "charged_credits", title = "CHARGED CREDITS", right = true },
  { key = "charged_tokens", title = "CHARGED TOKENS", right = true },
  { key = "received_tokens", title = "RECEIVED TOKENS", right = true },
  { key = "songs", title = "SONGS", right = true },
}
local TYPE_COLUMNS = {
  { key = "key", title = "TYPE" }, { key = "kind", title = "KIND" },
  { key = "tokens", title = "TOKENS", right = true }, { key = "credits", title = "CREDITS", right = true },
}
local SONG_COLUMNS = {
  { key = "title", title = "SONG" }, { key = "key", title = "CONVERSATION" },
  { key = "tokens", title = "TOKENS", right = true }, { key = "credits", title = "CREDITS", right = true },
}

local function human(r, email, by)
  local out = io.stdout
  local t = r.total
  out:write(("Usage of %s"):format(common.clean(email)))
  if r.first then out:write((", %s to %s"):format(common.clean(r.first), common.clean(r.last))) end
  out:write((" (%d event row%s)\n"):format(r.events, r.events == 1 and "" or "s"))
  out:write(("  charged:  %s credits (%s tokens)\n"):format(output.number(t.charged_credits),
    output.number(t.charged_tokens)))
  out:write(("  received: %s tokens\n"):format(output.number(t.received_tokens)))
  out:write(("  songs:    %d\n"):format(#r.songs))
  if by == nil or by == "day" then
    out:write("\nPer day:\n")
    out:write(#r.days > 0 and output.render(DAY_COLUMNS, r.days) or "  (no events)\n")
  end
  if by == nil or by == "type" then
    out:write("\nPer type:\n")
    out:write(#r.types > 0 and output.render(TYPE_COLUMNS, r.types) or "  (no events)\n")
  end
  if by == nil or by == "song" then
    out:write("\nPer song:\n")
    local rows = {}
    for i, s in ipairs(r.songs) do
      rows[i] = { title = s.title or "(untitled)", key = s.key, tokens = s.tokens, credits = s.credits }
    end
    out:write(#rows > 0 and output.render(SONG_COLUMNS, rows) or "  (no songs)\n")
  end
end

local function run(args)
  common.catch_signals()
  local mode = common.mode(args)
  local email = args.email
  local client, cerr = common.client(args)
  if not client then return common.usage_error("usage", cerr) end
  local r = common.call(client, args, "GET /accounts/usage", { "get_usage", email })
  client:close()
  if not r.ok then
    common.say("usage", common.error_message(r))
    return common.FAILED
  end
  local rep = report.summarize(r.value, email)
  if mode == "table" then
    human(rep, email, args.by)
  else
    local w = output.writer(mode, report.COLUMNS)
    if not args.by then w:add(rep.total) end
    local sections = { day = rep.days, type = rep.types, song = rep.songs }
    for _, name in ipairs({ "day", "type", "song" }) do
      if not args.by or args.by == name then
        for _, row in ipairs(sections[name]) do w:add(row) end
      end
    end
    w:finish()
  end
  return common.OK
end

return {
  name = "usage",
  summary = "Usage report of one account: totals, per day, per type, per song.",
  configure = function(cmd)
    cmd:description(DESCRIPTION)
    cmd:epilog(EPILOG)
    cmd:argument("EMAIL", "The account's email address."):target("email")
      :convert(function(v) return common.email(v) end)
    cmd:option("--by", "Show only that table after the totals.")
      :choices({ "day", "type", "song" }):argname("day|type|song"):overwrite(false)
    common.connection_options(cmd)
    common.output_options(cmd)
  end,
  run = run,
}
