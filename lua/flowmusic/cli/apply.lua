--- `flowmusic apply FLEET|PLAN.json [--prune] [--yes] [--concurrency N] [--json|--csv]`:
-- compute the plan of a fleet file (or load one saved by `plan --out`), print it, ask for
-- confirmation on a terminal, run its writes through `client:batch`, print one result row per
-- action (as `batch` does), then read `GET /accounts` again and say whether the fleet
-- converged. A saved plan whose accounts changed since it was made is refused.
-- @module flowmusic.cli.apply
local common = require "flowmusic.cli.common"
local files = require "flowmusic.files"
local defaults = require "flowmusic.defaults"
local output = require "flowmusic.cli.output"
local rowfile = require "flowmusic.rowfile"
local fleet = require "flowmusic.fleet.plan"
local plancmd = require "flowmusic.cli.plan"
local selection = require "flowmusic.cli.selection"
local labels = require "flowmusic.fleet.labels"

local M = {
  name = "apply",
}

-- The result columns of `flowmusic batch`.
local COLUMNS = {
  { key = "line", title = "LINE", right = true }, { key = "op", title = "OP" },
  { key = "email", title = "EMAIL" }, { key = "status", title = "STATUS" },
  { key = "http_status", title = "HTTP", right = true }, { key = "max_jobs", title = "MAXJOBS", right = true },
  { key = "attempts", title = "TRIES", right = true }, { key = "elapsed_ms", title = "MS", right = true },
  { key = "message", title = "MESSAGE" }, selection.COLUMN,
}
-- Tables: LABELS before MESSAGE, and only when some account has labels.
local PLAIN_COLUMNS, LABELLED_COLUMNS = {}, {}
for i = 1, #COLUMNS - 1 do PLAIN_COLUMNS[i], LABELLED_COLUMNS[i] = COLUMNS[i], COLUMNS[i] end
table.insert(LABELLED_COLUMNS, #LABELLED_COLUMNS, selection.COLUMN)

local function clock()
  local ok, core = pcall(require, "flowmusic.core")
  if ok and core.now then return core.now() end
  return os.time()
end


-- One output row for an apply result.
local function result_row(res)
  local r, b = res.row, res.batch
  local out = { line = r.line, op = r.action, email = r.email, status = res.status,
                max_jobs = r.to_max_jobs, labels = selection.value(r.labels) }
  if b then
    out.http_status, out.attempts = b.status, b.attempts
    out.elapsed_ms = b.elapsed and math.floor(b.elapsed * 1000 + 0.5) or nil
    local v = type(b.value) == "table" and b.value or nil
    if v and type(v.maxJobs) == "number" then out.max_jobs = v.maxJobs end
  end
  if res.ok then
    if r.action == "add" then out.message = res.created and "added" or "refreshed (it already existed)"
    elseif r.action == "reauth" then out.message = "re-authenticated"
    elseif r.action == "set-max-jobs" then out.message = "maxJobs set to " .. tostring(out.max_jobs)
    else out.message = "deleted" .. (b.note and (" (" .. tostring(b.note) .. ")") or "") end
  elseif res.message then
    out.message = res.message
  else
    out.message = common.error_message(b)
  end
  return out
end

-- Ask on the terminal; true when the answer is "yes".
local function confirm(n, base_url)
  io.stderr:write(("\nApply %d action%s to the accounts at %s?\n  Only 'yes' will be accepted: "):format(
    n, n == 1 and "" or "s", tostring(base_url)))
  io.stderr:flush()
  local answer = io.stdin:read("*l")
  return answer ~= nil and answer:match("^%s*(.-)%s*$") == "yes"
end

-- Stale-plan check: true, or prints why and returns false.
local function still_fresh(client, p)
  local ok, err = fleet.check(client, p, { cancel = common.cancel })
  if ok then return true end
  if type(err) == "table" then
    common.say(M.name, "cannot check the plan against the live accounts: " .. plancmd.api_error(err))
  else
    common.say(M.name, tostring(err) .. "; nothing was sent. Make a new plan.")
  end
  return false
end

local DESCRIPTION = [[
Computes the plan of the fleet file FLEET (as 'flowmusic plan' shows it), or loads
a plan saved by 'flowmusic plan --out PLAN.json', prints it and, after confirmation,
runs its actions through one concurrent batch. A refresh-token POST whose outcome is
unknown is never re-sent. Then it reads GET /accounts again and prints 'converged',
or what still differs.

A saved plan is refused (exit 1, nothing sent) when an account it touches changed
since it was made (existence, maxJobs, error state). Its refresh tokens are read
again from the token files it names.

--label KEY=VALUE applies only to the accounts of the fleet file with those labels;
the others are left alone, and --prune deletes nothing.

Output: one row per action, as 'flowmusic batch' prints them (line, op, email,
status, http_status, max_jobs, attempts, elapsed_ms, message), then the account's
labels; status is ok, failed, or after Ctrl-C interrupted / not_run. With --json /
--csv the plan and the summary go to stderr. See docs/fleet-files.md.]]

local EPILOG = [[
exit status: 0 every action succeeded and the fleet converged, 1 an action failed,
the fleet did not converge, the plan is stale or the API failed, 2 usage or input
error (or no terminal to confirm on and no --yes), 130/143 interrupted.]]

function M.configure(cmd)
  cmd:description(DESCRIPTION)
  cmd:epilog(EPILOG)
  cmd:argument("FLEET|PLAN.json", "A fleet file, or a plan saved by 'flowmusic plan --out'."):target("source")
  cmd:flag("--prune", "Also delete live accounts that are not in the fleet file (the plan shows "
    .. "them before confirmation; none with --label).")
  selection.label_option(cmd, "of the fleet file (a saved plan keeps the selection it was made with)")
  cmd:flag("--yes", "Apply without asking. Without --yes apply asks on a terminal, and refuses "
    .. "when standard input is not a terminal.")
  cmd:option("--concurrency", "Requests in flight at once, 1-" .. defaults.max_concurrency .. ".")
    :argname("N"):default(tostring(defaults.cli_concurrency)):overwrite(false)
    :convert(common.converter(common.integer, 1, defaults.max_concurrency, "--concurrency"))
  common.connection_options(cmd)
  common.write_options(cmd)
  common.lock_option(cmd)
  common.output_options(cmd)
end

function M.run(args)
  common.catch_signals()
  local mode = common.mode(args)
  if args.token_file then common.api_token(args) end -- known before anything is quoted
  local path = args.source
  local text, rerr = files.read_file(path, "fleet file or plan", rowfile.MAX_BYTES)
  if not text then return common.usage_error(M.name, rerr) end
  local saved = fleet.is_saved(text)
  local p, wanted, sel
  -- Token files: refused when others may read them, and tokens sent before (--force sends).
  local reader, serr = plancmd.token_reader(args)
  if not reader then return common.usage_error(M.name, serr) end
  if saved then
    if args.prune then
      return common.usage_error(M.name, "--prune is for fleet files; a saved plan keeps the choice it was made with")
    end
    if args.label and #args.label > 0 then
      return common.usage_error(M.name, "--label is for fleet files; a saved plan keeps the selection it was made with")
    end
    local perr
    p, perr = fleet.decode(text, { read_token = reader.read })
    if not p then common.say(M.name, path .. ": " .. perr) return common.USAGE end
  else
    wanted, sel = plancmd.selected(M.name, args, path, text)
    if not wanted then return sel end -- (the exit status)
  end
  text = nil -- luacheck: ignore (let the collector have it)
  local client, cerr = common.client(args, { used_tokens = reader.store })
  if not client then return common.usage_error(M.name, cerr) end
  -- One apply at a time: the plan is made and run under the lock (held until the process ends).
  local lock, lerr = common.write_lock(args)
  if not lock then
    client:close()
    common.say(M.name, lerr .. "; nothing was sent")
    return common.FAILED
  end

  -- The plan: checked against the live state when saved, else computed from it.
  if saved then
    if not still_fresh(client, p) then client:close() return common.FAILED end
    -- Read its token files now, so that a refused one stops the run before anything is sent.
    for _, row in ipairs(p.rows) do
      local sends = row.action == "add" or row.action == "reauth"
      if sends and row.refresh_token_file then reader.read(row.refresh_token_file) end
    end
  else
    local err
    p, err = fleet.make(client, wanted, { prune = args.prune, labels = sel, cancel = common.cancel,
      read_token = reader.read })
    if not p then
      client:close()
      common.say(M.name, plancmd.api_error(err))
      return common.FAILED
    end
  end
  local refused = plancmd.insecure_files(M.name, reader)
  if refused then client:close() return refused end
  local info = mode == "table" and io.stdout or io.stderr
  if saved and p.labels then
    common.say(M.name, "the saved plan covers only the accounts with the labels " .. labels.describe(p.labels,
      common.secrets()))
  end
  local counts = plancmd.show(p, "table", info)
  for _, w in ipairs(p.warnings or {}) do common.say(M.name, "warning: " .. w.message) end

  if counts.writes > 0 and not args.yes then
    if not output.isatty(io.stdin) then
      client:close()
      common.say(M.name, "standard input is not a terminal: pass --yes to apply without confirmation; nothing was sent")
      return common.USAGE
    end
    if not confirm(counts.writes, client.base_url) then
      client:close()
      io.stderr:write("Apply cancelled; nothing was sent.\n")
      return common.FAILED
    end
    -- Time passed while asking: make sure nothing changed meanwhile.
    if not still_fresh(client, p) then client:close() return common.FAILED end
  end

  local started = clock()
  local tally = { ok = 0, failed = 0, interrupted = 0, not_run = 0 }
  local n, failed = 0, 0
  if counts.writes > 0 then
    if mode == "table" then info:write("\n") end
    local columns = COLUMNS
    if mode == "table" then columns = selection.any(p.rows) and LABELLED_COLUMNS or PLAIN_COLUMNS end
    local w = output.writer(mode, columns)
    -- SIGINT/SIGTERM (caught since the start) stop the batch: nothing new starts, transfers
    -- in flight get a short grace, every action is still reported; a second signal aborts.
    fleet.apply(client, p, {
      concurrency = args.concurrency,
      cancel = common.cancel,
      on_result = function(res)
        n = n + 1
        tally[res.status] = (tally[res.status] or 0) + 1
        if not res.ok then failed = failed + 1 end
        if args.verbose and res.batch then
          io.stderr:write(common.clean(common.verbose_line(("%s %s"):format(res.row.action, res.row.email),
            res.batch)), "\n")
        end
        w:add(result_row(res))
      end,
    })
    w:finish()
    local summary = ("%d action%s: %d ok, %d failed"):format(n, n == 1 and "" or "s", tally.ok, tally.failed)
    local stopped, signame = common.interrupted()
    if stopped then
      summary = summary .. (", %d interrupted, %d not run; interrupted by %s"):format(tally.interrupted,
        tally.not_run, signame)
      common.reported_interruption = true
    end
    info:write(("%s in %.2f s\n"):format(summary, clock() - started))
  end
  local stopped = common.interrupted()
  if stopped then
    client:close()
    return stopped
  end

  local r = common.call(client, args, { "list_accounts" })
  client:close()
  if not r.ok then
    if common.interrupted() then return common.interrupted() end
    common.say(M.name, "cannot check the result: " .. common.error_message(r))
    return common.FAILED
  end
  local live = r.value
  local diffs = fleet.converge(live, p)
  if #diffs == 0 then
    info:write("converged\n")
  else
    info:write(("not converged: %d account%s differ%s from the plan\n"):format(#diffs,
      #diffs == 1 and "" or "s", #diffs == 1 and "s" or ""))
    for _, d in ipairs(diffs) do info:write("  ", common.clean(d.email .. ": " .. d.message), "\n") end
  end
  if failed > 0 or #diffs > 0 then return common.FAILED end
  return common.OK
end

return M
