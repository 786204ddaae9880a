--- Which accounts a fleet command is about: reading a fleet file, `--label KEY=VALUE`
-- (plan, apply, status, usage --all; repeatable, every one must match) and `--fleet FILE`
-- (status, usage --all), and the `labels` output column. The label rule is
-- `flowmusic.fleet.labels`'.
--
-- A selector that matches no account of the fleet file is an input error (exit 2) before
-- anything is sent: it is almost always a typo, and a cron job must not pass silently.
-- @module flowmusic.cli.selection
local common = require "flowmusic.cli.common"
local labels = require "flowmusic.fleet.labels"
local fleetfile = require "flowmusic.fleet.fleetfile"

local M = {}

--- The `labels` output column: an object in JSON, `k=v;k2=v2` (sorted keys) in CSV and tables.
M.COLUMN = { key = "labels", title = "LABELS", text = function(v)
  local t = labels.text(v)
  return t ~= "" and t or nil
end }

--- The labels of a row for output: `{}` (an empty JSON object) when it has none.
-- @tparam table|nil l
-- @treturn table
function M.value(l) return l or {} end

--- Whether any entry has labels (tables then show a LABELS column).
-- @tparam {table,...} entries tables with `labels`
-- @treturn boolean
function M.any(entries)
  for _, e in ipairs(entries) do
    if e.labels then return true end
  end
  return false
end

--- Declare `--label KEY=VALUE` (repeatable).
-- @param cmd an argparse command
-- @tparam string what whose accounts it picks (for the help)
-- @return the option (for a group)
function M.label_option(cmd, what)
  return cmd:option("--label", "Only the accounts " .. what .. " with this label (KEY=VALUE); repeat it: "
    .. "every one must match.")
    :argname("KEY=VALUE"):count("*")
end

--- Declare `--fleet FILE`.
-- @param cmd an argparse command
-- @tparam string help
-- @return the option (for a group)
function M.fleet_option(cmd, help)
  return cmd:option("--fleet", help):argname("FILE"):overwrite(false)
end

--- The selector of the `--label` options: a table, or nil when none was given; or false and
-- the exit status after printing the usage error.
-- @tparam string cmd the command's name (for messages)
-- @tparam table args argparse's result
function M.selector(cmd, args)
  local sel, err = labels.selector(args.label or {}, common.secrets())
  if err then return false, common.usage_error(cmd, err) end
  return sel
end

--- Parse a fleet file for a command; prints each input error.
-- @tparam string cmd the command's name
-- @tparam string path the file ("-": standard input)
-- @tparam[opt] string text its content, when already read
-- @return wanted entries (flowmusic.fleet.fleetfile); or nil (errors printed)
function M.wanted(cmd, path, text)
  local wanted, err = fleetfile.read(path, { text = text, secrets = common.secrets() })
  if not wanted then
    for l in tostring(err):gmatch("[^\n]+") do common.say(cmd, l) end
    return nil
  end
  return wanted
end

--- The entries of `wanted` that `sel` matches; when none does, says so and returns nil.
-- @tparam string cmd the command's name
-- @tparam {table,...} wanted fleet file entries
-- @tparam table|nil sel selector (nil: all of them)
-- @tparam string path the fleet file (for the message)
-- @return the matching entries; or nil (message printed: an input error)
function M.pick(cmd, wanted, sel, path)
  if not sel then return wanted end
  local picked = labels.select(wanted, sel)
  if #picked == 0 then
    common.say(cmd, ("no account of %s has the labels %s (every --label must match); nothing was done"):format(
      path == "-" and "(stdin)" or path, labels.describe(sel, common.secrets())))
    return nil
  end
  return picked
end

--- For status and usage --all: the accounts `--fleet FILE` and `--label` pick.
-- @tparam string cmd the command's name
-- @tparam table args argparse's result (`fleet`, `label`)
-- @return nil when there is no `--fleet` (every account); or `{ path =, entries = picked
--   entries, emails = their emails in file order, labels = email -> labels|nil, selector =,
--   any = whether any has labels }`; or false and the exit status (usage or input error,
--   printed)
function M.fleet(cmd, args)
  if args.token_file then common.api_token(args) end -- known before anything is quoted
  local sel, code = M.selector(cmd, args)
  if sel == false then return false, code end
  if not args.fleet then
    if sel then return false, common.usage_error(cmd, "--label needs --fleet FILE (the fleet file whose accounts "
      .. "have the labels)") end
    return nil
  end
  local wanted = M.wanted(cmd, args.fleet)
  if not wanted then return false, common.USAGE end
  local picked = M.pick(cmd, wanted, sel, args.fleet)
  if not picked then return false, common.USAGE end
  local f = { path = args.fleet, entries = picked, emails = {}, labels = {}, selector = sel, any = M.any(picked) }
  for i, e in ipairs(picked) do
    f.emails[i] = e.email
    f.labels[e.email] = e.labels
  end
  return f
end

--- Say which accounts of the fleet file are not live (a note: `plan` is the tool for them).
-- @tparam string cmd the command's name
-- @tparam table f from `fleet`
-- @tparam {string,...} missing emails
function M.note_missing(cmd, f, missing)
  if #missing == 0 then return end
  common.say(cmd, ("%d account%s of %s %s not live (flowmusic plan shows what to do): %s"):format(#missing,
    #missing == 1 and "" or "s", f.path == "-" and "(stdin)" or f.path, #missing == 1 and "is" or "are",
    table.concat(missing, ", ")))
end

return M
