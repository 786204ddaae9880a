--- `flowmusic plan FLEET [--prune] [--label KEY=VALUE]... [--out PLAN.json] [--json] [--detailed-exitcode]`:
-- compare a fleet file with the live accounts (`GET /accounts` only; nothing is written) and
-- show what `flowmusic apply` would do, in the style of terraform.
-- Also holds what `plan` and `apply` share: reading a fleet file, printing a plan.
-- @module flowmusic.cli.plan
local common = require "flowmusic.cli.common"
local output = require "flowmusic.cli.output"
local fleet = require "flowmusic.fleet.plan"
local fleetfile = require "flowmusic.fleet.fleetfile"
local selection = require "flowmusic.cli.selection"

local M = {
  name = "plan",
}

--- Exit status of `plan --detailed-exitcode` when actions are pending.
M.PENDING = 3

--- Columns of `--json` / `--csv` plan rows.
M.COLUMNS = { { key = "action" }, { key = "email" }, { key = "from_max_jobs" },
  { key = "to_max_jobs" }, { key = "message" }, selection.COLUMN }

local SIGN = { add = "+", reauth = "~", ["set-max-jobs"] = "~", delete = "-", missing = "!",
  ["needs-reauth"] = "!" }

--- One human line for a plan row, or nil for `ok` rows.
function M.line(r)
  local sign = SIGN[r.action]
  if not sign then return nil end
  local s = sign .. " " .. r.action .. " " .. r.email
  local from, to = r.from_max_jobs, r.to_max_jobs
  if r.action == "set-max-jobs" then
    s = s .. " " .. tostring(from or "?") .. " -> " .. tostring(to)
  elseif (r.action == "add" or r.action == "reauth") and to then
    s = s .. ((from and from ~= to) and (" (maxJobs %s -> %d)"):format(tostring(from), to)
      or (" (maxJobs %d)"):format(to))
  end
  if r.message then s = s .. ": " .. r.message end
  return common.clean(s)
end

--- The token reader of plan and apply: `reader.read` is the `read_token` option of
-- flowmusic.fleet.plan. It reads a token file, refusing one group or others may read or
-- write (unless --allow-insecure-token-file) and a token the used-token store
-- (`reader.store`) says was sent already (unless --force). The files refused for their mode
-- are kept in `reader.insecure` (path -> message): they stop the run before anything is sent.
-- @return reader, or nil, message (the store can't be opened)
function M.token_reader(args)
  local store, err = common.used_tokens(args)
  if not store then return nil, err end
  local reader = { store = store, insecure = {} }
  function reader.read(path)
    local token, rerr, why = fleetfile.read_token(path, { allow_insecure = args.allow_insecure_token_file })
    if not token then
      if why == "insecure" then reader.insecure[path] = rerr end
      return nil, rerr
    end
    local used = store:refusal(token)
    if used then return nil, ("refresh token file '%s': %s"):format(common.clean(path), used) end
    return token
  end
  return reader
end

--- After a plan was computed with reader: nil, or prints every token file refused for its
-- mode and returns the exit status (2).
function M.insecure_files(cmd, reader)
  local paths = {}
  for path in pairs(reader.insecure) do paths[#paths + 1] = path end
  if #paths == 0 then return nil end
  table.sort(paths)
  for _, path in ipairs(paths) do common.say(cmd, reader.insecure[path]) end
  common.say(cmd, "nothing was sent")
  return common.USAGE
end

--- The summary line: `Plan: 1 to add, 1 to re-authenticate, 2 to change, 0 to delete; 1 problem.`
local function plan_line(c)
  return ("Plan: %d to add, %d to re-authenticate, %d to change, %d to delete; %d problem%s."):format(
    c.add, c.reauth, c["set-max-jobs"], c.delete, c.problems, c.problems == 1 and "" or "s")
end

--- Print a plan: machine rows on stdout for json/csv (summary on stderr), else the lines and
-- the summary on `out` (default stdout).
function M.show(p, mode, out)
  local c = fleet.counts(p)
  if mode == "json" or mode == "csv" then
    local w = output.writer(mode, M.COLUMNS, out)
    for _, r in ipairs(p.rows) do
      w:add(setmetatable({ labels = selection.value(r.labels) }, { __index = r }))
    end
    w:finish()
    io.stderr:write(plan_line(c), "\n")
  else
    out = out or io.stdout
    for _, r in ipairs(p.rows) do
      local l = M.line(r)
      if l then out:write(l, "\n") end
    end
    out:write(plan_line(c), "\n")
  end
  return c
end

--- Parse a fleet file's text for a command; prints each input error (flowmusic.cli.selection).
-- @return wanted entries; or nil (errors printed)
M.wanted = selection.wanted

--- The wanted entries of a fleet file that `args.label` picks, and the selector; or nil and the
-- exit status (usage or input error, printed). With --prune and a selector, says that nothing
-- will be deleted.
function M.selected(cmd, args, path, text)
  local sel, code = selection.selector(cmd, args)
  if sel == false then return nil, code end
  local wanted = M.wanted(cmd, path, text)
  if not wanted then return nil, common.USAGE end
  wanted = selection.pick(cmd, wanted, sel, path)
  if not wanted then return nil, common.USAGE end
  if sel and args.prune then
    common.say(cmd, "note: --prune deletes nothing with --label: live accounts that are not in the fleet file "
      .. "have no labels, and the accounts --label leaves out are left alone")
  end
  return wanted, sel
end

--- The API error of a failed call, in one line.
function M.api_error(err)
  return common.error_message({ err = err })
end

local DESCRIPTION = [[
Compares the fleet file FLEET with the live accounts (GET /accounts, and GET /jobs
for warnings: nothing is written) and shows what 'flowmusic apply' would do:
  + add carol@x.com (maxJobs 2)       missing, refresh_token_file given
  ~ reauth bob@x.com                   error state, refresh_token_file given
  ~ set-max-jobs alice@x.com 4 -> 8    maxJobs differs
  - delete old@x.com                   live, not in the file (only with --prune)
  ! missing dave@x.com: ...            not live, no refresh_token_file (a problem)
  ! needs-reauth erin@x.com: ...       error state, no refresh_token_file (a problem)
  Plan: 1 to add, 1 to re-authenticate, 1 to change, 1 to delete; 2 problems.
Warnings on stderr: maxJobs set below the jobs an account runs now, an account
deleted while it runs jobs (or the jobs could not be listed). They change nothing.

FLEET is CSV with the header email,max_jobs,refresh_token_file or JSON Lines with
the same keys (read like batch files), and optionally labels (team=a;plan=pro). An
empty max_jobs leaves maxJobs alone; refresh_token_file is relative to FLEET's
directory. --label KEY=VALUE plans only the accounts with those labels and leaves
every other account alone: with --label, --prune deletes nothing. A --label that
matches no account is an input error. See docs/fleet-files.md.]]

local EPILOG = [[
exit status: 0 (with --detailed-exitcode: 0 nothing to do, 3 actions pending),
1 the API failed or there are problems, 2 usage or input error, 130/143 interrupted.]]

--- Declare the argument and options shared by plan and apply's fleet file.
function M.configure(cmd)
  cmd:description(DESCRIPTION)
  cmd:epilog(EPILOG)
  cmd:argument("FLEET", "The fleet file: CSV with the header email,max_jobs,refresh_token_file, "
    .. "or JSON Lines with the same keys ('-': standard input)."):target("fleet")
  cmd:flag("--prune", "Also delete live accounts that are not in the fleet file (none with --label).")
  selection.label_option(cmd, "of the fleet file")
  cmd:option("--out", "Save the plan (with a fingerprint of the accounts it touches, without "
    .. "refresh tokens) for 'flowmusic apply PLAN.json'."):argname("PLAN.json"):overwrite(false)
  cmd:flag("--detailed-exitcode", "Exit 3 when actions are pending, 0 when there is nothing to do.")
  common.connection_options(cmd)
  common.write_options(cmd)
  common.output_options(cmd)
end

--- Run `flowmusic plan`.
function M.run(args)
  common.catch_signals()
  local mode = common.mode(args)
  if args.token_file then common.api_token(args) end -- known before anything is quoted
  local wanted, sel = M.selected(M.name, args, args.fleet)
  if not wanted then return sel end
  local client, cerr = common.client(args)
  if not client then return common.usage_error(M.name, cerr) end
  local reader, rerr = M.token_reader(args)
  if not reader then client:close() return common.usage_error(M.name, rerr) end
  local p, err = fleet.make(client, wanted, { prune = args.prune, labels = sel, cancel = common.cancel,
    read_token = reader.read })
  client:close()
  local refused = p and M.insecure_files(M.name, reader)
  if refused then return refused end
  if not p then
    if common.interrupted() then return common.interrupted() end
    common.say(M.name, M.api_error(err))
    return common.FAILED
  end
  local c = M.show(p, mode)
  for _, w in ipairs(p.warnings or {}) do common.say(M.name, "warning: " .. w.message) end
  if args.out then
    local text, eerr = fleet.encode(p)
    if not text then common.say(M.name, eerr) return common.USAGE end
    local f, oerr = io.open(args.out, "wb")
    if not f then
      local reason = tostring(oerr)
      if reason:sub(1, #args.out + 2) == args.out .. ": " then reason = reason:sub(#args.out + 3) end
      common.say(M.name, ("cannot write the plan to '%s': %s"):format(args.out, reason))
      return common.USAGE
    end
    f:write(text)
    f:close()
    local sink = mode == "table" and io.stdout or io.stderr
    sink:write(("Saved the plan to %s; run 'flowmusic apply %s' to apply it.\n"):format(args.out, args.out))
  end
  if c.problems > 0 then return common.FAILED end
  if args.detailed_exitcode and c.writes > 0 then return M.PENDING end
  return common.OK
end

return M
