--- `flowmusic status`: the health of every account, an exit status for cron, and a
-- Prometheus textfile.
--
--     flowmusic status [--min-credits N] [--min-tokens N] [--fail-on STATES]
--                      [--concurrency N] [--prometheus FILE] [--json|--csv]
--
-- A command module of flowmusic.cli. Exit status: 0 no account is in a state named by
-- --fail-on (default needs_reauth,unreachable); 1 some account is, or the list call failed,
-- or FILE could not be written; 2 usage error; 130/143 interrupted by SIGINT/SIGTERM.
-- @module flowmusic.cli.status
local common = require "flowmusic.cli.common"
local output = require "flowmusic.cli.output"
local defaults = require "flowmusic.defaults"
local status = require "flowmusic.fleet.status"
local prometheus = require "flowmusic.fleet.prometheus"

local M = {
  name = "status",
}

--- States that make the exit status 1 unless --fail-on says otherwise.
local DEFAULT_FAIL_ON = "needs_reauth,unreachable"

local STATE_NAMES = table.concat(status.STATES, ", ")

local DESCRIPTION = [[
The health of every account: lists the accounts, then gets each one live
(concurrently) and shows its state:
  needs_reauth  the account has an error (its refresh token was rejected: re-add it),
                or the live call answered 596
  unreachable   the live call failed for another reason (network, timeout, 5xx)
  low_credits   credits or tokens remaining below --min-credits / --min-tokens
  ok
Nothing is written to the API.

Output: a table (email, tier, state, credits, tokens, maxJobs, refreshed, message) and
a summary line; --json / --csv give the keys
email,tier,state,credits_remaining,tokens_remaining,max_jobs,refreshed_at,error
with the summary on stderr.]]

local EPILOG = [[
examples:
  flowmusic status
  flowmusic status --min-credits 100 --fail-on needs_reauth,unreachable,low_credits
  flowmusic status --prometheus /var/lib/prometheus/node-exporter/flowmusic.prom

exit status: 0 no account is in a --fail-on state, 1 some account is (or the list call
failed, or FILE could not be written), 2 usage error, 130/143 interrupted by
SIGINT/SIGTERM.]]

local TABLE_COLUMNS = {
  { key = "email", title = "EMAIL" }, { key = "tier", title = "TIER" },
  { key = "state", title = "STATE" },
  { key = "credits_remaining", title = "CREDITS", right = true },
  { key = "tokens_remaining", title = "TOKENS", right = true },
  { key = "max_jobs", title = "MAXJOBS", right = true },
  { key = "refreshed", title = "REFRESHED" }, { key = "error", title = "MESSAGE" },
}

local MACHINE_COLUMNS = {}
for i, k in ipairs(status.FIELDS) do MACHINE_COLUMNS[i] = { key = k } end

--- How long ago a time was: `45s ago`, `12m ago`, `3h ago`, `5d ago` (nil when unknown).
-- @tparam number|nil ts seconds since the epoch
-- @tparam number now
-- @treturn string|nil
function M.age(ts, now)
  if not ts then return nil end
  local s = math.max(0, math.floor(now - ts))
  if s < 60 then return s .. "s ago" end
  if s < 3600 then return math.floor(s / 60) .. "m ago" end
  if s < 48 * 3600 then return math.floor(s / 3600) .. "h ago" end
  return math.floor(s / 86400) .. "d ago"
end

--- A non-negative number from an option value, or nil, message.
function M.minimum(v, what)
  local n = type(v) == "number" and v or (type(v) == "string" and v:match("^%s*%d+%.?%d*%s*$") and tonumber(v))
  if not n or n < 0 then
    return nil, ("%s must be a non-negative number, got %s"):format(what, output.show(tostring(v), common.secrets()))
  end
  return n
end

--- The set of states named by a --fail-on value (`{ state = true }`), or nil, message.
local function parse_fail_on(v)
  local set = {}
  for name in (tostring(v) .. ","):gmatch("([^,]*),") do
    name = name:match("^%s*(.-)%s*$")
    if not status.is_state(name) then
      return nil, ("--fail-on: unknown state %s (states: %s)"):format(output.show(name, common.secrets()), STATE_NAMES)
    end
    set[name] = true
  end
  return set
end

--- Declare the options (argparse command object).
function M.configure(cmd)
  cmd:description(DESCRIPTION)
  cmd:epilog(EPILOG)
  cmd:option("--min-credits", "An account with fewer credits remaining is low_credits.")
    :argname("N"):overwrite(false):convert(common.converter(M.minimum, "--min-credits"))
  cmd:option("--min-tokens", "An account with fewer tokens remaining is low_credits.")
    :argname("N"):overwrite(false):convert(common.converter(M.minimum, "--min-tokens"))
  cmd:option("--fail-on", "Comma list of states that make the exit status 1 (states: "
    .. STATE_NAMES .. ").")
    :argname("STATES"):default(DEFAULT_FAIL_ON):overwrite(false):convert(parse_fail_on)
  cmd:option("--concurrency", ("Live calls in flight at once, 1-%d."):format(defaults.max_concurrency))
    :argname("N"):default(tostring(defaults.cli_concurrency)):overwrite(false)
    :convert(common.converter(common.integer, 1, defaults.max_concurrency, "--concurrency"))
  cmd:option("--prometheus", "Also write the Prometheus text exposition to FILE, atomically"
    .. " (temporary file + rename in the same directory), for node_exporter's textfile collector.")
    :argname("FILE"):overwrite(false)
  common.connection_options(cmd)
  common.output_options(cmd)
end

-- Write the textfile when asked; returns true, or false after saying why not.
local function write_textfile(path, records, summary)
  if not path then return true end
  local ok, err = prometheus.write_file(path,
    prometheus.exposition(records, summary, { timestamp = os.time() }))
  if not ok then common.say("status", err) end
  return ok and true or false
end

-- One table row of a record.
local function table_row(r, now)
  return { email = r.email, tier = r.tier, state = r.state,
    credits_remaining = r.credits_remaining, tokens_remaining = r.tokens_remaining,
    max_jobs = r.max_jobs, refreshed = M.age(status.timestamp(r.refreshed_at), now),
    error = r.error }
end

--- Run the command.
-- @tparam table args argparse's result (min_credits, min_tokens, fail_on (a set),
--   concurrency, prometheus, json, csv, and the connection options)
-- @treturn number exit status
function M.run(args)
  common.catch_signals()
  local mode = common.mode(args)
  local fail_on = args.fail_on
  if type(fail_on) ~= "table" then fail_on = assert(parse_fail_on(fail_on or DEFAULT_FAIL_ON)) end
  local client, cerr = common.client(args)
  if not client then return common.usage_error("status", cerr) end

  local on_result
  if args.verbose then
    on_result = function(rec, r)
      io.stderr:write(common.clean(common.verbose_line(common.label("get_account") .. " " .. rec.email, r)), "\n")
    end
  end
  local records, summary = status.collect(client, { min_credits = args.min_credits,
    min_tokens = args.min_tokens, concurrency = tonumber(args.concurrency), cancel = common.cancel,
    on_result = on_result })
  client:close()
  if not records then
    common.say("status", "cannot list the accounts: " .. common.describe(summary))
    write_textfile(args.prometheus, nil)
    return common.FAILED
  end

  if mode == "table" then
    local now, rows = os.time(), {}
    for i, r in ipairs(records) do rows[i] = table_row(r, now) end
    io.stdout:write(output.render(TABLE_COLUMNS, rows))
    io.stdout:write(status.summary_line(summary), "\n")
  else
    local w = output.writer(mode, MACHINE_COLUMNS)
    for _, r in ipairs(records) do w:add(r) end
    w:finish()
    io.stderr:write(status.summary_line(summary), "\n")
  end

  local written = write_textfile(args.prometheus, records, summary)
  for _, r in ipairs(records) do
    if fail_on[r.state] then return common.FAILED end
  end
  return written and common.OK or common.FAILED
end

return M
