--- `flowmusic usage EMAIL | --all [--since DAY] [--until DAY] [--by ...] [--html FILE]`: a
-- usage report of one account or of every account. A command module of flowmusic.cli; the
-- work is in flowmusic.cli.usage_all.
-- @module flowmusic.cli.usage
local common = require "flowmusic.cli.common"
local defaults = require "flowmusic.defaults"
local fleet_usage = require "flowmusic.fleet.usage"
local usage_all = require "flowmusic.cli.usage_all"
local selection = require "flowmusic.cli.selection"

local DESCRIPTION = [[
Usage report (GET /accounts/usage) of one account, or with --all of every account
(fetched concurrently; each document is reduced as it arrives, then dropped): totals
(credits charged by producer-usage + riffusion, tokens received from grant + daily-free;
12 tokens = 1 credit), then a table per day, per account (--all), per event type and
per song (conversation). On a terminal (or with --chart) bars follow the per-day table.
With --since/--until every total is recomputed from the events kept.

With --json / --csv every row is one record with the columns
section,email,key,title,kind,tokens,credits,charged_tokens,charged_credits,
received_tokens,songs (with --all also share,error), where section is total, day
(key = YYYY-MM-DD), account (--all; share of the fleet's charged credits, error when
its usage call failed), type (key = event type, kind = charged|received|other) or song
(key = conversation id, title = song title); with --all, email is set on account and
song rows only. --by keeps only the rows of that section.

With --all, --fleet FILE reports only the live accounts of that fleet file (one not
live is named on stderr) and adds a labels column (on account rows: an object in
JSON, k=v;k2=v2 in CSV); --label KEY=VALUE (repeatable, every one must match) keeps
its accounts with those labels, and one that matches none is an input error.]]

local EPILOG = [[
examples:
  flowmusic usage someone@example.com
  flowmusic usage someone@example.com --by song
  flowmusic usage someone@example.com --by day --csv > days.csv
  flowmusic usage --all --since 2026-06-01 --until 2026-06-07 --html week.html
  flowmusic usage --all --by account --json
  flowmusic usage --all --fleet fleet.csv --label team=a --by account --csv

exit status: 0 success, 1 an API call failed (e.g. 404 no such account; with --all an
account's usage or the account list: the report still covers the others), 2 usage
error, 130/143 interrupted by SIGINT/SIGTERM (with --all the report then covers the
accounts read and names the others).]]

local function run(args)
  common.catch_signals()
  local o, err = usage_all.options(args, args.email, common.mode(args))
  if not o then return common.usage_error("usage", err) end
  if o.all then
    local fleet, code = selection.fleet("usage", args)
    if fleet == false then return code end
    o.fleet = fleet
  end
  local client, cerr = common.client(args)
  if not client then return common.usage_error("usage", cerr) end
  local code = usage_all.run(client, o)
  client:close()
  return code
end

local function day(v)
  local d, msg = fleet_usage.parse_day(v)
  if not d then return nil, msg end
  return d
end

return {
  name = "usage",
  configure = function(cmd)
    cmd:description(DESCRIPTION)
    cmd:epilog(EPILOG)
    cmd:argument("EMAIL", "The account's email address (none with --all)."):target("email"):args("?")
      :convert(function(v) return common.email(v) end)
    cmd:group("Report options",
      cmd:flag("--all", "Every account of the API token."),
      cmd:option("--since", "Keep only events on or after this UTC day.")
        :argname("YYYY-MM-DD"):overwrite(false):convert(day),
      cmd:option("--until", "Keep only events on or before this UTC day.")
        :argname("YYYY-MM-DD"):overwrite(false):convert(day),
      cmd:option("--by", "Show only that table after the totals (account: with --all).")
        :choices({ "day", "account", "type", "song" }):argname("day|account|type|song"):overwrite(false),
      cmd:option("--concurrency", ("With --all: usage calls in flight at once, 1-%d (default %d).")
        :format(defaults.max_concurrency, defaults.cli_concurrency))
        :argname("N"):overwrite(false)
        :convert(common.converter(common.integer, 1, defaults.max_concurrency, "--concurrency")),
      cmd:option("--html", "Also write the report as one self-contained HTML file (chart of charged "
        .. "credits per day by account, tables; no script, no external assets).")
        :argname("FILE"):overwrite(false),
      cmd:option("--prometheus", "With --all: also write the spend per account (charged credits today and"
        .. " in the range) as a Prometheus textfile, atomically.")
        :argname("FILE"):overwrite(false),
      selection.fleet_option(cmd, "With --all: only the accounts of this fleet file (flowmusic plan's), with "
        .. "their labels."),
      selection.label_option(cmd, "of the --fleet file (with --all)"),
      cmd:flag("--chart", "Draw the per-day bars even when stdout is not a terminal (tables only)."))
    common.connection_options(cmd)
    common.output_options(cmd)
  end,
  run = run,
}
