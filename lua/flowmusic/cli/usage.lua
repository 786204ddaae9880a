--- `flowmusic usage EMAIL | --all [--since DAY] [--until DAY] [--by ...] [--html FILE]`: a
-- usage report of one account or of every account (the work is in flowmusic.cli.usage_all).
-- A function taking the argument list and returning the exit code.
-- @module flowmusic.cli.usage
local args = require "flowmusic.cli.args"
local common = require "flowmusic.cli.common"
local usage_all = require "flowmusic.cli.usage_all"

local USAGE = [[
usage: flowmusic usage EMAIL [--since DAY] [--until DAY] [--by day|type|song] [--html FILE] [options]
       flowmusic usage --all [--since DAY] [--until DAY] [--by day|account|type|song]
                       [--concurrency N] [--html FILE] [options]

Usage report (GET /accounts/usage) of one account, or with --all of every account (their
usage fetched concurrently, each document reduced as it arrives and then dropped): totals
(credits charged by producer-usage + riffusion, tokens received from grant + daily-free;
12 tokens = 1 credit), then a table per day, per account (--all), per event type and per
song (conversation).
  --all               every account of the API token
  --since DAY         keep only events on or after this UTC day (YYYY-MM-DD)
  --until DAY         keep only events on or before this UTC day (YYYY-MM-DD)
                      (with a range every total is recomputed from the kept events)
  --by SECTION        show only that table after the totals
  --concurrency N     with --all: usage calls in flight at once, 1-50 (default 8)
  --html FILE         also write the report as one self-contained HTML file (chart of
                      charged credits per day by account, tables; no script, no assets)
  --chart             draw the per-day bars even when stdout is not a terminal (tables only)

With --json / --csv every row is one record with the columns
section,email,key,title,kind,tokens,credits,charged_tokens,charged_credits,received_tokens,songs
(with --all also share,error) where section is total, day (key = YYYY-MM-DD), account
(--all; email, share of the fleet's charged credits, error when its usage call failed),
type (key = event type, kind = charged|received|other) or song (key = conversation id,
title = song title, email = its account); --by keeps only the rows of that section.

]] .. common.CONNECTION_HELP .. [[

examples:
  flowmusic usage someone@example.com
  flowmusic usage someone@example.com --by song
  flowmusic usage someone@example.com --by day --csv > days.csv
  flowmusic usage --all --since 2026-06-01 --until 2026-06-07 --html week.html
  flowmusic usage --all --by account --json

exit status: 0 success, 1 an API call failed (e.g. 404 no such account; with --all, an
account's usage or the account list), 2 usage error, 130/143 --all stopped by
SIGINT/SIGTERM (the report then covers the accounts read and names the others).
]]

local SPEC = common.spec(common.CONNECTION, { by = true, all = false, since = true, ["until"] = true,
  concurrency = true, html = true, chart = false })

return function(argv)
  local opts, pos = args.parse(argv or {}, SPEC)
  if not opts then return common.usage_error("usage", pos) end
  if opts.help then io.stdout:write(USAGE) return common.OK end
  local mode, merr = common.mode(opts)
  if not mode then return common.usage_error("usage", merr) end
  if #pos > 1 then return common.usage_error("usage", "unexpected argument '" .. pos[2] .. "'") end
  local o, oerr = usage_all.options(opts, pos[1], mode)
  if not o then return common.usage_error("usage", oerr) end
  local client, cerr = common.client(opts)
  if not client then return common.usage_error("usage", cerr) end
  local code = usage_all.run(client, o)
  client:close()
  return code
end
