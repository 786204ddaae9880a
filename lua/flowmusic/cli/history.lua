--- `flowmusic history`: the change events `flowmusic status --state FILE` recorded: when
-- each account broke, when it recovered, how long it was down.
--
--     flowmusic history [EMAIL] (--state FILE | --history FILE) [--since DAY] [--json|--csv]
--
-- A command module of flowmusic.cli. Reads only the history file (no API call, no token).
-- Exit status: 0, 1 the file can't be read or holds a line that is not an event, 2 usage.
-- @module flowmusic.cli.history
local common = require "flowmusic.cli.common"
local output = require "flowmusic.cli.output"
local events = require "flowmusic.fleet.events"
local history = require "flowmusic.fleet.history"

local M = {
  name = "history",
}

local DESCRIPTION = [[
The change events recorded by 'flowmusic status --state FILE' (see its --help), oldest
first: appeared, disappeared, recovered, needs_reauth, unreachable, low_credits,
stale_token, reminder. A recovered event says how long the account was down. The
history file is FILE's (status.json -> status.history.jsonl) or the one --history names.
--json / --csv give the keys at,email,event,from,to,reason,credits_remaining,down_seconds.]]

local EPILOG = [[
examples:
  flowmusic history --state /var/lib/flowmusic/status.json
  flowmusic history someone@example.com --state /var/lib/flowmusic/status.json --since 2026-12-01

exit status: 0, 1 the history can't be read, 2 usage error.]]

local TABLE_COLUMNS = {
  { key = "at", title = "AT" }, { key = "email", title = "EMAIL" }, { key = "event", title = "EVENT" },
  { key = "from", title = "FROM" }, { key = "to", title = "TO" }, { key = "down", title = "DOWN FOR" },
  { key = "reason", title = "REASON" },
}

local MACHINE_COLUMNS = {}
for i, k in ipairs(events.FIELDS) do MACHINE_COLUMNS[i] = { key = k } end
MACHINE_COLUMNS[#MACHINE_COLUMNS + 1] = { key = "down_seconds" }

-- A UTC day YYYY-MM-DD, or nil, message.
local function day(s)
  if type(s) == "string" and s:match("^%d%d%d%d%-%d%d%-%d%d$") then return s end
  return nil, "--since must be a day YYYY-MM-DD"
end

--- Declare the arguments and options.
function M.configure(cmd)
  cmd:description(DESCRIPTION)
  cmd:epilog(EPILOG)
  cmd:argument("email", "Only this account's events."):argname("EMAIL"):args("?")
  cmd:option("--state", "The state file of 'flowmusic status --state FILE' (its history is beside it).")
    :argname("FILE"):overwrite(false)
  cmd:option("--history", "The history file itself.")
    :argname("FILE"):overwrite(false)
  cmd:option("--since", "Only events from this UTC day on.")
    :argname("DAY"):overwrite(false):convert(common.converter(day))
  common.output_options(cmd)
end

--- Run the command.
-- @tparam table args argparse's result (email, state, history, since, json, csv)
-- @treturn number exit status
function M.run(args)
  local path = args.history or (args.state and history.beside(args.state))
  if not path then return common.usage_error("history", "give --state FILE or --history FILE") end
  local list, err = history.read(path, { email = args.email, since = args.since })
  if not list then
    common.say("history", err)
    return common.FAILED
  end
  local mode = common.mode(args)
  if mode == "table" then
    local rows = {}
    for i, e in ipairs(list) do
      rows[i] = { at = e.at, email = e.email, event = e.event, from = e.from, to = e.to, reason = e.reason,
        down = e.down_seconds and require("flowmusic.fleet.status").duration_text(e.down_seconds) }
    end
    io.stdout:write(output.render(TABLE_COLUMNS, rows))
  else
    local w = output.writer(mode, MACHINE_COLUMNS)
    for _, e in ipairs(list) do w:add(e) end
    w:finish()
  end
  return common.OK
end

return M
