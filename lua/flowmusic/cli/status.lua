--- `flowmusic status`: the health of every account, an exit status for cron, and a
-- Prometheus textfile.
--
--     flowmusic status [--min-credits N] [--min-tokens N] [--fail-on STATES]
--                      [--concurrency N] [--prometheus FILE] [--json|--csv]
--
-- A command module in the CLI's command protocol (`name`, `summary`, `configure(cmd)`,
-- `run(args)`); calling the module with an argument list also works (the hand-written
-- parser of `flowmusic.cli.args`).
-- Exit status: 0 no account is in a state named by --fail-on (default
-- needs_reauth,unreachable); 1 some account is, or the list call failed (or the textfile
-- could not be written); 2 usage error.
-- @module flowmusic.cli.status
local args = require "flowmusic.cli.args"
local common = require "flowmusic.cli.common"
local output = require "flowmusic.cli.output"
local defaults = require "flowmusic.defaults"
local status = require "flowmusic.fleet.status"
local prometheus = require "flowmusic.fleet.prometheus"

local M = {
  name = "status",
  summary = "health of every account (ok, needs_reauth, low_credits, unreachable);"
    .. " exit status for cron; Prometheus textfile",
}

--- States that make the exit status 1 unless --fail-on says otherwise.
M.DEFAULT_FAIL_ON = "needs_reauth,unreachable"

local STATE_NAMES = table.concat(status.STATES, ", ")

local OPTION_HELP = {
  min_credits = "an account with fewer credits remaining is low_credits",
  min_tokens = "an account with fewer tokens remaining is low_credits",
  fail_on = "comma list of states that make the exit status 1 (default "
    .. M.DEFAULT_FAIL_ON .. "; states: " .. STATE_NAMES .. ")",
  concurrency = ("live calls in flight at once, 1-%d (default %d)"):format(defaults.max_concurrency,
    defaults.cli_concurrency),
  prometheus = "also write the Prometheus text exposition to FILE, atomically (temporary"
    .. " file + rename in the same directory), for node_exporter's textfile collector",
}

--- Declare the options (argparse command object).
function M.configure(cmd)
  common.connection_options(cmd)
  common.output_options(cmd)
  cmd:option("--min-credits", OPTION_HELP.min_credits):argname("N")
  cmd:option("--min-tokens", OPTION_HELP.min_tokens):argname("N")
  cmd:option("--fail-on", OPTION_HELP.fail_on):argname("STATES")
  cmd:option("--concurrency", OPTION_HELP.concurrency):argname("N")
  cmd:option("--prometheus", OPTION_HELP.prometheus):argname("FILE")
end

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

-- A non-negative number from an option value, or nil, message.
local function minimum(v, what)
  local n = type(v) == "number" and v or (type(v) == "string" and v:match("^%s*%d+%.?%d*%s*$") and tonumber(v))
  if not n or n < 0 then return nil, ("%s must be a non-negative number, got '%s'"):format(what, tostring(v)) end
  return n
end

-- The set of states named by a --fail-on value, or nil, message.
local function fail_on_set(v)
  local set = {}
  for name in (v .. ","):gmatch("([^,]*),") do
    name = name:match("^%s*(.-)%s*$")
    if not status.is_state(name) then
      return nil, ("--fail-on: unknown state '%s' (states: %s)"):format(name, STATE_NAMES)
    end
    set[name] = true
  end
  return set
end

-- Option values, checked: { min_credits, min_tokens, concurrency, fail_on = set }, or nil, message.
local function checked(a)
  local o = {}
  local err
  if a.min_credits ~= nil then
    o.min_credits, err = minimum(a.min_credits, "--min-credits")
    if not o.min_credits then return nil, err end
  end
  if a.min_tokens ~= nil then
    o.min_tokens, err = minimum(a.min_tokens, "--min-tokens")
    if not o.min_tokens then return nil, err end
  end
  if a.concurrency ~= nil then
    o.concurrency, err = args.integer(a.concurrency, 1, defaults.max_concurrency, "--concurrency")
    if not o.concurrency then return nil, err end
  else
    o.concurrency = defaults.cli_concurrency
  end
  o.fail_on, err = fail_on_set(a.fail_on or M.DEFAULT_FAIL_ON)
  if not o.fail_on then return nil, err end
  if a.prometheus ~= nil and (type(a.prometheus) ~= "string" or a.prometheus == "") then
    return nil, "--prometheus needs a file name"
  end
  return o
end

-- Write the textfile when asked; returns true, or false after saying why not.
local function write_textfile(path, records, summary)
  if not path then return true end
  local ok, err = prometheus.write_file(path,
    prometheus.exposition(records, summary, { timestamp = os.time() }))
  if not ok then common.say("status", err) end
  return ok and true or false
end

--- Run the command.
-- @tparam table a parsed arguments (keys with `_`: min_credits, fail_on, token_file...)
-- @treturn number exit status
function M.run(a)
  local mode, merr = common.mode(a)
  if not mode then common.say("status", merr) return common.USAGE end
  local o, oerr = checked(a)
  if not o then common.say("status", oerr) return common.USAGE end
  local client, cerr = common.client(a)
  if not client then common.say("status", cerr) return common.USAGE end

  local records, summary = status.collect(client, { min_credits = o.min_credits,
    min_tokens = o.min_tokens, concurrency = o.concurrency })
  client:close()
  if not records then
    common.say("status", "cannot list the accounts: " .. tostring(summary):gsub("^flowmusic: ", ""))
    write_textfile(a.prometheus, nil)
    return common.FAILED
  end

  local now = os.time()
  if mode == "table" then
    local rows = {}
    for i, r in ipairs(records) do
      rows[i] = { email = r.email, tier = r.tier, state = r.state,
        credits_remaining = r.credits_remaining, tokens_remaining = r.tokens_remaining,
        max_jobs = r.max_jobs, refreshed = M.age(status.timestamp(r.refreshed_at), now),
        error = r.error }
    end
    io.stdout:write(output.render(TABLE_COLUMNS, rows))
    io.stdout:write(status.summary_line(summary), "\n")
  else
    local w = output.writer(mode, MACHINE_COLUMNS)
    for _, r in ipairs(records) do w:add(r) end
    w:finish()
    io.stderr:write(status.summary_line(summary), "\n")
  end

  local written = write_textfile(a.prometheus, records, summary)
  for _, r in ipairs(records) do
    if o.fail_on[r.state] then return common.FAILED end
  end
  return written and common.OK or common.FAILED
end

-- The command line before the argparse CLI: `flowmusic status ...` with flowmusic.cli.args.
local USAGE = [[
usage: flowmusic status [--min-credits N] [--min-tokens N] [--fail-on STATES]
                        [--concurrency N] [--prometheus FILE] [--json|--csv] [options]

The health of every account: lists the accounts, then gets each one live (concurrently)
and shows its state:
  needs_reauth  the account has an error (its refresh token was rejected; re-add it),
                or the live call answered 596
  unreachable   the live call failed for another reason (network, timeout, 5xx)
  low_credits   credits or tokens remaining below --min-credits / --min-tokens
  ok
Nothing is written to the API.

options:
  --min-credits N   ]] .. OPTION_HELP.min_credits .. [[

  --min-tokens N    ]] .. OPTION_HELP.min_tokens .. [[

  --fail-on STATES  comma list of states that make the exit status 1
                    (default ]] .. M.DEFAULT_FAIL_ON .. [[)
  --concurrency N   ]] .. OPTION_HELP.concurrency .. [[

  --prometheus FILE also write the Prometheus text exposition to FILE, atomically
                    (temporary file + rename), for node_exporter's textfile collector

]] .. common.CONNECTION_HELP .. [[

output: a table (email, tier, state, credits, tokens, maxJobs, refreshed, message) and a
summary line; --json / --csv give the keys
email,tier,state,credits_remaining,tokens_remaining,max_jobs,refreshed_at,error with the
summary on stderr.

examples:
  flowmusic status
  flowmusic status --min-credits 100 --fail-on needs_reauth,unreachable,low_credits
  flowmusic status --prometheus /var/lib/prometheus/node-exporter/flowmusic.prom

exit status: 0 no account is in a --fail-on state, 1 some account is (or the list call
failed, or FILE could not be written), 2 usage error.
]]

setmetatable(M, { __call = function(_, argv)
  local spec = common.spec(common.CONNECTION, { ["min-credits"] = true, ["min-tokens"] = true,
    ["fail-on"] = true, concurrency = true, prometheus = true })
  local opts, pos = args.parse(argv or {}, spec)
  if not opts then return common.usage_error("status", pos) end
  if opts.help then io.stdout:write(USAGE) return common.OK end
  if #pos > 0 then return common.usage_error("status", "unexpected argument '" .. pos[1] .. "'") end
  local a = {}
  for k, v in pairs(opts) do
    a[k] = v                      -- the current common.client reads "token-file"
    a[(k:gsub("%-", "_"))] = v    -- argparse style: token_file, min_credits
  end
  return M.run(a)
end })

return M
