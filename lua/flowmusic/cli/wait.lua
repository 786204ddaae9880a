--- `flowmusic wait`: wait until one account is healthy, exists, or is gone.
--
--     flowmusic wait EMAIL [--for ok|exists|gone] [--timeout DURATION] [--interval DURATION] [--json]
--
-- A command module of flowmusic.cli (the library side: flowmusic.fleet.wait). Exit status:
-- 0 reached, 1 a failure that waiting can't change (the API refused the token or the email),
-- 124 timed out (as timeout(1) does), 2 usage error, 130/143 interrupted.
-- @module flowmusic.cli.wait
local common = require "flowmusic.cli.common"
local output = require "flowmusic.cli.output"

local M = {
  name = "wait",
}

--- Exit status of a wait that timed out (timeout(1)'s).
M.TIMED_OUT = 124

local DESCRIPTION = [[
Wait until an account reaches a condition, calling GET /accounts/{email} once per
--interval:
  ok      the account exists and its status is ok (see 'flowmusic status')
  exists  the API knows the account, in any state
  gone    the API answers 404 for it
Failures that waiting can't change (401: the API token is refused; 400) end the wait
at once; any other failure (network, 5xx, 404 while waiting for the account) is waited
out. --json prints one final object:
{"email","for","reached","state","calls","elapsed_seconds","error"}.]]

local EPILOG = [[
examples:
  flowmusic wait new@example.com --timeout 10m --interval 10s
  flowmusic wait old@example.com --for gone --timeout 1m

exit status: 0 reached, 1 a failure that won't pass, 124 timed out, 2 usage error,
130/143 interrupted by SIGINT/SIGTERM.]]

--- Declare the arguments and options.
function M.configure(cmd)
  cmd:description(DESCRIPTION)
  cmd:epilog(EPILOG)
  cmd:argument("email", "The account's email."):argname("EMAIL")
  cmd:option("--for", "The condition: ok, exists or gone.")
    :argname("CONDITION"):choices({ "ok", "exists", "gone" }):default("ok"):overwrite(false)
  cmd:option("--timeout", "Give up after DURATION (e.g. 90, 30s, 10m; default 10m).")
    :argname("DURATION"):default("10m"):overwrite(false):convert(common.converter(common.duration, "--timeout"))
  cmd:option("--interval", "Time between calls (default 10s).")
    :argname("DURATION"):default("10s"):overwrite(false):convert(common.converter(common.duration, "--interval"))
  cmd:option("--min-credits", "With --for ok: fewer credits remaining is not ok (low_credits).")
    :argname("N"):overwrite(false):convert(common.converter(common.minimum, "--min-credits"))
  common.connection_options(cmd, true)
  cmd:flag("--json", "Print one final JSON object on stdout.")
end

-- The durations may come as text when argparse's defaults skip the converter.
local function seconds(v, what)
  if type(v) == "number" then return v end
  return assert(common.duration(v, what))
end

--- Run the command.
-- @tparam table args argparse's result (email, for, timeout, interval, min_credits, json,
--   and the connection options)
-- @treturn number exit status
function M.run(args)
  common.catch_signals()
  local email, emsg = common.email(args.email)
  if not email then return common.usage_error("wait", emsg) end
  local client, cerr = common.client(args)
  if not client then return common.usage_error("wait", cerr) end
  local min_credits, merr = common.min_credits(args)
  if merr then client:close() return common.usage_error("wait", merr) end
  local wait = require "flowmusic.fleet.wait"
  local core = require "flowmusic.core"
  local started = core.now()
  local on_poll
  if args.verbose then
    on_poll = function(rec, r)
      io.stderr:write(common.clean(common.verbose_line(common.label("get_account") .. " " .. email, r)
        .. (rec and (", " .. rec.state) or "")), "\n")
    end
  end
  local rec, failure = wait.wait(client, email, { ["for"] = args["for"],
    timeout = seconds(args.timeout, "--timeout"), interval = seconds(args.interval, "--interval"),
    min_credits = min_credits, cancel = common.cancel, on_poll = on_poll })
  client:close()
  local last = rec or failure.record
  local result = {
    email = email, ["for"] = args["for"], reached = rec ~= nil, state = last and last.state,
    calls = rec and failure or failure.calls, elapsed_seconds = math.floor((core.now() - started) * 1000) / 1000,
    error = not rec and failure.message or nil,
  }
  if args.json then
    local w = output.writer("json", { { key = "email" }, { key = "for" }, { key = "reached" },
      { key = "state" }, { key = "calls" }, { key = "elapsed_seconds" }, { key = "error" } })
    w:add(result)
    w:finish()
  elseif rec then
    io.stdout:write(common.clean(("%s is %s (after %d call%s, %.1f s)"):format(email, args["for"] == "ok" and "ok"
      or args["for"] == "exists" and "there" or "gone", result.calls, result.calls == 1 and "" or "s",
      result.elapsed_seconds)), "\n")
  end
  if rec then return common.OK end
  if failure.reason == "cancelled" then return common.interrupted() or common.SIGINT end
  common.say("wait", failure.message)
  if failure.reason == "timeout" then return M.TIMED_OUT end
  return common.FAILED
end

return M
