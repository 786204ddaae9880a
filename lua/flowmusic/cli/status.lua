--- `flowmusic status`: the health of every account, an exit status for cron, and a
-- Prometheus textfile.
--
--     flowmusic status [--min-credits N] [--min-tokens N] [--max-token-age DURATION]
--                      [--fail-on STATES] [--concurrency N] [--prometheus FILE]
--                      [--fleet FILE [--label KEY=VALUE]...]
--                      [--state FILE [--changes-only] [--history FILE] [--notify URL]
--                       [--notify-cmd CMD] [--remind DURATION]] [--json|--csv]
--
-- A command module of flowmusic.cli. Exit status: 0 no account is in a state named by
-- --fail-on (default needs_reauth,unreachable); 1 some account is, or the list call failed,
-- or a file could not be written, or a notification was not delivered (it is kept for the
-- next run); 2 usage error, or a state file that is not one; 130/143 interrupted by
-- SIGINT/SIGTERM.
-- @module flowmusic.cli.status
local common = require "flowmusic.cli.common"
local output = require "flowmusic.cli.output"
local defaults = require "flowmusic.defaults"
local status = require "flowmusic.fleet.status"
local prometheus = require "flowmusic.fleet.prometheus"
local events = require "flowmusic.fleet.events"
local files = require "flowmusic.files"
local selection = require "flowmusic.cli.selection"

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
  stale_token   the access token expired more than --max-token-age ago (default 15m):
                useapi's refresh of it has stalled
  ok
Nothing is written to the API.

--fleet FILE reports only the live accounts of that fleet file (one not live is
named on stderr) and adds their labels: a labels column in --json / --csv, a
LABELS column in the table when any has labels, label_<key> labels on
flowmusic_account_info. --label KEY=VALUE (repeatable, every one must match) keeps
the fleet file's accounts with those labels; one that matches none is an input
error (exit 2).

Output: a table (email, tier, state, credits, tokens, maxJobs, jobs running,
refreshed, message), a summary line and the subscription's headroom ("48 of 50
accounts"); --json / --csv give the keys
email,tier,state,credits_remaining,tokens_remaining,max_jobs,refreshed_at,error,
access_token_expires_at,jobs_running with the summary on stderr. The jobs
(GET /jobs) and the subscription (GET /v2/account) never fail the status: when
they can't be had, stderr says so and the rest is shown.

Alerts: --state FILE keeps each account's last state; with --changes-only only the
events since the last run are printed (nothing when nothing changed), with the keys
at,email,event,from,to,reason,credits_remaining. Events: appeared, disappeared,
recovered (back to ok), needs_reauth, unreachable, low_credits, stale_token (entered
that state), reminder (--remind). Each is appended to the history (--history FILE,
default beside FILE: status.json -> status.history.jsonl) and sent once to --notify
URL (a JSON POST) and --notify-cmd CMD (the JSON on its standard input); one that
fails is kept in FILE and sent on the next run.]]

local EPILOG = [[
examples:
  flowmusic status
  flowmusic status --min-credits 100 --fail-on needs_reauth,unreachable,low_credits
  flowmusic status --prometheus /var/lib/prometheus/node-exporter/flowmusic.prom
  flowmusic status --state /var/lib/flowmusic/status.json --changes-only \
      --min-credits 100 --notify https://hooks.example/flowmusic --remind 6h

exit status: 0 no account is in a --fail-on state, 1 some account is (or the list call
failed, or a file could not be written, or a notification was not delivered), 2 usage
error or a file given as --state that is not a state file, 130/143 interrupted by
SIGINT/SIGTERM.]]

local TABLE_COLUMNS = {
  { key = "email", title = "EMAIL" }, { key = "tier", title = "TIER" },
  { key = "state", title = "STATE" },
  { key = "credits_remaining", title = "CREDITS", right = true },
  { key = "tokens_remaining", title = "TOKENS", right = true },
  { key = "max_jobs", title = "MAXJOBS", right = true },
  { key = "jobs_running", title = "JOBS", right = true },
  { key = "refreshed", title = "REFRESHED" }, { key = "error", title = "MESSAGE" },
}

local MACHINE_COLUMNS = {}
for i, k in ipairs(status.FIELDS) do MACHINE_COLUMNS[i] = { key = k } end
-- With --fleet: the labels too.
local FLEET_MACHINE_COLUMNS = { selection.COLUMN }
for i, c in ipairs(MACHINE_COLUMNS) do table.insert(FLEET_MACHINE_COLUMNS, i, c) end
local FLEET_TABLE_COLUMNS = {}
for i, c in ipairs(TABLE_COLUMNS) do FLEET_TABLE_COLUMNS[i] = c end
table.insert(FLEET_TABLE_COLUMNS, #FLEET_TABLE_COLUMNS, selection.COLUMN) -- (before MESSAGE)

local EVENT_TABLE_COLUMNS = {
  { key = "at", title = "AT" }, { key = "email", title = "EMAIL" }, { key = "event", title = "EVENT" },
  { key = "from", title = "FROM" }, { key = "to", title = "TO" },
  { key = "credits_remaining", title = "CREDITS", right = true }, { key = "reason", title = "REASON" },
}
local EVENT_COLUMNS = {}
for i, k in ipairs(events.FIELDS) do EVENT_COLUMNS[i] = { key = k } end

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
    :argname("N"):overwrite(false):convert(common.converter(common.minimum, "--min-credits"))
  cmd:option("--min-tokens", "An account with fewer tokens remaining is low_credits.")
    :argname("N"):overwrite(false):convert(common.converter(common.minimum, "--min-tokens"))
  cmd:option("--max-token-age", "An access token expired longer ago than this makes the account"
    .. " stale_token (its refresh stalled). Default 15m.")
    :argname("DURATION"):overwrite(false):convert(common.converter(common.duration, "--max-token-age"))
  cmd:option("--fail-on", "Comma list of states that make the exit status 1 (states: "
    .. STATE_NAMES .. ").")
    :argname("STATES"):default(DEFAULT_FAIL_ON):overwrite(false):convert(parse_fail_on)
  cmd:option("--concurrency", ("Live calls in flight at once, 1-%d."):format(defaults.max_concurrency))
    :argname("N"):default(tostring(defaults.cli_concurrency)):overwrite(false)
    :convert(common.converter(common.integer, 1, defaults.max_concurrency, "--concurrency"))
  cmd:option("--prometheus", "Also write the Prometheus text exposition to FILE, atomically"
    .. " (temporary file + rename in the same directory), for node_exporter's textfile collector.")
    :argname("FILE"):overwrite(false)
  selection.fleet_option(cmd, "Report only the accounts of this fleet file (flowmusic plan's), with their labels.")
  selection.label_option(cmd, "of the --fleet file")
  cmd:group("Alert options",
    cmd:option("--state", "Keep each account's last state in FILE (JSON, 0600, locked while"
      .. " a run uses it) to find what changed since the last run.")
      :argname("FILE"):overwrite(false),
    cmd:flag("--changes-only", "Print only the change events since the last run (needs --state)."),
    cmd:option("--history", "Append every event to FILE (JSON Lines; default beside the --state"
      .. " file).")
      :argname("FILE"):overwrite(false),
    cmd:option("--notify", "POST each event as JSON to URL (needs --state; the --timeout,"
      .. " --retries, --cacert, --capath and --proxy of the API apply).")
      :argname("URL"):overwrite(false),
    cmd:option("--notify-cmd", "Run CMD (with sh) for each event, the event's JSON on its standard"
      .. " input; exit status 0 means delivered (needs --state).")
      :argname("CMD"):overwrite(false),
    cmd:option("--remind", "Repeat an event for an account still not ok at most once per"
      .. " DURATION (e.g. 6h).")
      :argname("DURATION"):overwrite(false):convert(common.converter(common.duration, "--remind"))
  )
  common.connection_options(cmd)
  common.output_options(cmd)
end

-- The --notify-cmd target: sh -c CMD with the event on standard input (a private temporary
-- file, so no shell ever sees the event as text) and its output on our stderr.
local function command_target(cmd, state_path)
  local input = state_path .. ".event.tmp"
  return { name = "notify-cmd", send = function(json)
    local core = require "flowmusic.core"
    local ok, err = core.write_private(input, json .. "\n")
    if not ok then return nil, "cannot write the event for --notify-cmd: " .. err end
    local code = files.execute("sh -c " .. files.shell_quote(cmd) .. " < " .. files.shell_quote(input) .. " >&2")
    os.remove(input)
    if code == 0 then return true end
    return nil, "--notify-cmd exited with status " .. tostring(code)
  end }
end

-- The --notify target, or nil, message (a bad URL: a usage error).
local function url_target(args, verbose)
  local webhook = require "flowmusic.webhook"
  local hook, err = webhook.new(args.notify, { timeout = args.timeout, retries = args.retries,
    cainfo = args.cacert, capath = args.capath, proxy = args.proxy })
  if not hook then return nil, "--notify: " .. err end
  return { name = "notify-url", hook = hook, send = function(json, e)
    local ok, status_or_err = hook:post(json)
    if verbose then
      io.stderr:write(common.clean(("notify %s %s %s: %s"):format(hook.url, e.event, e.email,
        ok and tostring(status_or_err) or common.describe(status_or_err))), "\n")
    end
    if ok then return true end
    return nil, common.describe(status_or_err)
  end }
end

-- Write the textfile when asked; returns true, or false after saying why not.
local function write_textfile(path, records, summary, duration)
  if not path then return true end
  local ok, err = prometheus.write_file(path,
    prometheus.exposition(records, summary, { timestamp = os.time(), duration = duration }))
  if not ok then common.say("status", err) end
  return ok and true or false
end

-- One table row of a record.
local function table_row(r, now)
  return { email = r.email, tier = r.tier, state = r.state,
    credits_remaining = r.credits_remaining, tokens_remaining = r.tokens_remaining,
    max_jobs = r.max_jobs, jobs_running = r.jobs_running,
    refreshed = M.age(status.timestamp(r.refreshed_at), now),
    error = r.error, labels = r.labels }
end

-- The options that need --state, given without it: the first one's name, or nil.
local function needs_state(args)
  for _, k in ipairs({ "changes_only", "history", "notify", "notify_cmd", "remind" }) do
    if args[k] and not args.state then return "--" .. k:gsub("_", "-") end
  end
  return nil
end

-- Print the change events (--changes-only): nothing at all when there are none.
local function print_events(mode, list)
  if #list == 0 then return end
  if mode == "table" then
    io.stdout:write(output.render(EVENT_TABLE_COLUMNS, list))
  else
    local w = output.writer(mode, EVENT_COLUMNS)
    for _, e in ipairs(list) do w:add(e) end
    w:finish()
  end
end

-- The footer: the subscription's headroom ("48 of 50 accounts"), and what could not be
-- learnt about jobs and the subscription (never a failure of the status).
local function footer(records, summary)
  local lines, notes = {}, {}
  local sub = summary.subscription
  if sub and sub.accounts_max then
    lines[#lines + 1] = ("%d of %d accounts"):format(summary.listed or #records, sub.accounts_max)
      .. (sub.active == false and " (the useapi.net subscription is not active)" or "")
  elseif sub and sub.active == false then
    lines[#lines + 1] = "the useapi.net subscription is not active"
  end
  if summary.subscription_error then
    notes[#notes + 1] = "cannot get the useapi.net subscription: " .. summary.subscription_error
  end
  if summary.jobs_error then notes[#notes + 1] = "cannot list the running jobs: " .. summary.jobs_error end
  return lines, notes
end

-- Print the status records (the default output); `fleet` from flowmusic.cli.selection.fleet.
local function print_records(mode, records, summary, fleet)
  local lines, notes = footer(records, summary)
  local out = mode == "table" and io.stdout or io.stderr -- machine output keeps stdout to itself
  if mode == "table" then
    local now, rows = os.time(), {}
    for i, r in ipairs(records) do rows[i] = table_row(r, now) end
    io.stdout:write(output.render((fleet and fleet.any) and FLEET_TABLE_COLUMNS or TABLE_COLUMNS, rows))
  else
    local w = output.writer(mode, fleet and FLEET_MACHINE_COLUMNS or MACHINE_COLUMNS)
    for _, r in ipairs(records) do
      w:add(fleet and setmetatable({ labels = selection.value(r.labels) }, { __index = r }) or r)
    end
    w:finish()
  end
  out:write(status.summary_line(summary), "\n")
  for _, l in ipairs(lines) do out:write(common.clean(l), "\n") end
  for _, n in ipairs(notes) do common.say("status", n) end
end

-- Collect with --state: events, history, notifications. Returns records, summary (or nil,
-- err), the exit status so far, and the events.
local function watched(client, args, collect_opts)
  local alerts = require "flowmusic.fleet.alerts"
  local targets = {}
  if args.notify then
    local t, err = url_target(args, args.verbose)
    if not t then return nil, nil, common.usage_error("status", err) end
    targets[#targets + 1] = t
  end
  if args.notify_cmd then targets[#targets + 1] = command_target(args.notify_cmd, args.state) end
  local opts = { state = args.state, history = args.history, targets = targets, remind = args.remind }
  for k, v in pairs(collect_opts) do opts[k] = v end
  local report, err, kind = alerts.run(client, opts)
  for _, t in ipairs(targets) do if t.hook then t.hook:close() end end
  if not report then
    common.say("status", err)
    return nil, nil, kind == "state" and common.USAGE or common.FAILED
  end
  local code = common.OK
  if report.history_error then common.say("status", report.history_error) code = common.FAILED end
  for _, f in ipairs(report.failures) do
    common.say("status", ("%s: event %s of %s not delivered (kept for the next run): %s"):format(
      f.target, f.event.event, f.event.email, f.message))
    code = common.FAILED
  end
  if report.list_error then return nil, report.list_error, code, report.events end
  return report.records, report.summary, code, report.events
end

--- Run the command.
-- @tparam table args argparse's result (min_credits, min_tokens, max_token_age, fail_on (a
--   set), concurrency, prometheus, state, changes_only, history, notify, notify_cmd, remind,
--   json, csv, and the connection options)
-- @treturn number exit status
function M.run(args)
  common.catch_signals()
  local mode = common.mode(args)
  local fail_on = args.fail_on
  if type(fail_on) ~= "table" then fail_on = assert(parse_fail_on(fail_on or DEFAULT_FAIL_ON)) end
  local orphan = needs_state(args)
  if orphan then return common.usage_error("status", orphan .. " needs --state FILE") end
  local fleet, fcode = selection.fleet("status", args)
  if fleet == false then return fcode end
  local min_credits, merr = common.min_credits(args)
  if merr then return common.usage_error("status", merr) end
  local client, cerr = common.client(args)
  if not client then return common.usage_error("status", cerr) end

  local on_result
  if args.verbose then
    on_result = function(rec, r)
      io.stderr:write(common.clean(common.verbose_line(common.label("get_account") .. " " .. rec.email, r)), "\n")
    end
  end
  local collect_opts = { min_credits = min_credits, min_tokens = args.min_tokens,
    max_token_age = args.max_token_age, concurrency = tonumber(args.concurrency),
    cancel = common.cancel, on_result = on_result, emails = fleet and fleet.emails }
  local records, summary, code, list
  local started = require("flowmusic.core").now()
  if args.state then
    records, summary, code, list = watched(client, args, collect_opts)
    if not records and not summary then client:close() return code end
  else
    records, summary = status.collect(client, collect_opts)
    code = common.OK
  end
  client:close()
  local duration = require("flowmusic.core").now() - started
  if not records then
    common.say("status", "cannot list the accounts: " .. common.describe(summary))
    write_textfile(args.prometheus, nil, nil, duration)
    return common.FAILED
  end

  if fleet then
    for _, r in ipairs(records) do r.labels = fleet.labels[r.email] end
    selection.note_missing("status", fleet, summary.unlisted or {})
  end
  if args.changes_only then print_events(mode, list) else print_records(mode, records, summary, fleet) end
  local written = write_textfile(args.prometheus, records, summary, duration)
  for _, r in ipairs(records) do
    if fail_on[r.state] then return common.FAILED end
  end
  if not written then return common.FAILED end
  return code
end

return M
