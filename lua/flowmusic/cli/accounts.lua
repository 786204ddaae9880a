--- `flowmusic accounts list | get EMAIL | add | set-max-jobs EMAIL N | delete EMAIL`.
-- A command module of flowmusic.cli (exit code 0 ok, 1 the API call failed, 2 usage or
-- input error).
-- @module flowmusic.cli.accounts
local common = require "flowmusic.cli.common"
local validate = require "flowmusic.validate"
local output = require "flowmusic.cli.output"
local format = require "flowmusic.format"

-- Fields written in --json / --csv (tokens, even redacted, are left out).
local FIELDS = { "email", "tier", "subscription_plan", "provider", "maxJobs", "added", "refreshed_at",
  "refreshed_count", "access_token_expires_at", "user_id", "session_id", "error",
  "credits_remaining", "tokens_remaining" }

local function machine_columns(extra)
  local cols = {}
  if extra then cols[1] = { key = extra } end
  for _, k in ipairs(FIELDS) do cols[#cols + 1] = { key = k } end
  return cols
end

local LIST_COLUMNS = {
  { key = "email", title = "EMAIL" }, { key = "tier", title = "TIER" },
  { key = "maxJobs", title = "MAXJOBS", right = true }, { key = "added", title = "ADDED" },
  { key = "refreshed_at", title = "REFRESHED" }, { key = "state", title = "STATE" },
}

-- Copy of an account record without tokens and with JSON null turned into nil.
local function clean(acct)
  local t = {}
  if type(acct) ~= "table" then return t end
  for _, k in ipairs(FIELDS) do
    local v = acct[k]
    if type(v) ~= "userdata" then t[k] = v end
  end
  return t
end

local function state_of(acct)
  if acct.error then return "error: " .. tostring(acct.error) end
  return "ok"
end

-- Human view of one account: "key  value" lines.
local function show(acct, result)
  local lines = {}
  local function add(k, v) if v ~= nil then lines[#lines + 1] = { k, v } end end
  if result then add("result", result) end
  for _, k in ipairs(FIELDS) do add(k, acct[k]) end
  if acct.email and not acct.error then add("state", "ok") end
  local w = 0
  for _, l in ipairs(lines) do if #l[1] > w then w = #l[1] end end
  for _, l in ipairs(lines) do
    local v = l[2]
    if type(v) == "number" then v = format.number(v) end
    io.stdout:write(l[1], ":", (" "):rep(w - #l[1] + 1), common.clean(tostring(v)), "\n")
  end
end

-- Write one account in the chosen mode.
local function emit(mode, acct, result)
  if mode == "table" then
    show(acct, result)
  else
    local row = clean(acct)
    row.result = result
    local w = output.writer(mode, machine_columns(result and "result" or nil))
    w:add(row)
    w:finish()
  end
end

local function failed(r)
  common.say("accounts", common.error_message(r))
  return common.FAILED
end

local DESCRIPTION = [[
Manage the Flow Music accounts configured for your useapi.net API token.

  flowmusic accounts list [options]
  flowmusic accounts get EMAIL [options]
  flowmusic accounts add (--refresh-token-file FILE | -) [--max-jobs N] [options]
  flowmusic accounts set-max-jobs EMAIL N [options]
  flowmusic accounts delete EMAIL [options]

flowmusic accounts COMMAND --help shows the options of each command.]]

local EPILOG = [[
examples:
  export USEAPI_TOKEN=user:123-abc...
  flowmusic accounts list
  flowmusic accounts add --refresh-token-file ~/flow-token.txt --max-jobs 4
  pass show flow/refresh | flowmusic accounts add -
  flowmusic accounts set-max-jobs someone@example.com 8
  flowmusic accounts get someone@example.com --json
  flowmusic accounts delete someone@example.com

exit status: 0 success, 1 the API call failed (e.g. 404 no such account), 2 usage or
input error (unknown option, bad N, unreadable or empty token file, no API token),
130/143 interrupted by SIGINT/SIGTERM.]]

-- The EMAIL argument, checked by the library's rule.
local function email_arg(cmd)
  cmd:argument("EMAIL", "The account's email address."):target("email")
    :convert(common.email)
end

local function options(cmd)
  common.connection_options(cmd)
  common.output_options(cmd)
  cmd:epilog(EPILOG)
end

-- Sub-commands: words, one-line summaries and their own arguments.
local SUBS = {
  { "list", "All accounts: email, tier, maxJobs, added, last refresh, state.", function() end },
  { "get", "One account, with its remaining credits and tokens.", email_arg },
  { "add", "Add an account, or refresh it when it exists, from its Flow Music refresh token.",
    function(cmd)
      cmd:description([[
Add an account, or refresh it when it exists, from its Flow Music refresh token.
The token is read from --refresh-token-file FILE or from standard input ('-' or
'--refresh-token-file -'), never from the command line, and it is never printed.]])
      cmd:option("--refresh-token-file", "Read the refresh token from FILE ('-': standard input).")
        :argname("FILE"):overwrite(false)
      cmd:option("--max-jobs", "Set maxJobs, 1-16 (default: chosen by the service from the plan tier).")
        :argname("N"):overwrite(false):convert(function(v) return common.max_jobs(v, "--max-jobs") end)
      cmd:argument("-", "Read the refresh token from standard input."):args("?"):target("stdin")
      common.write_options(cmd)
    end },
  { "set-max-jobs", "Change maxJobs (N is an integer 1-16) of an existing account.", function(cmd)
      email_arg(cmd)
      cmd:argument("N", "The new maxJobs, an integer 1-16."):target("n")
        :convert(function(v) return common.max_jobs(v, "N (maxJobs)") end)
    end },
  { "delete", "Remove an account.", email_arg },
}

local function run(args)
  common.catch_signals()
  local sub = args.subcommand
  local name = "accounts " .. sub
  local mode = common.mode(args)

  -- Check the arguments before anything else (and before reading secrets).
  local call, result_word, used_tokens
  if sub == "list" then
    call = { "list_accounts" }
  elseif sub == "get" then
    call = { "get_account", args.email }
  elseif sub == "delete" then
    call, result_word = { "delete_account", args.email }, "deleted"
  elseif sub == "set-max-jobs" then
    call, result_word = { "set_max_jobs", args.email, args.n }, "updated"
  else -- add
    local file = args.refresh_token_file
    if args.stdin ~= nil and args.stdin ~= "-" then
      return common.usage_error(name,
        "refresh tokens are never taken from the command line: use --refresh-token-file FILE, "
          .. "or - to read standard input")
    end
    if args.stdin then
      if file then return common.usage_error(name, "give either --refresh-token-file or -, not both") end
      file = "-"
    end
    if not file or file == "" then
      return common.usage_error(name, "missing the refresh token: use --refresh-token-file FILE or - (standard input)")
    end
    local token, terr = common.refresh_token(args, file)
    if not token then return common.usage_error(name, terr) end
    local tok, verr = validate.refresh_token(token)
    if not tok then return common.usage_error(name, verr) end
    -- A token sent before is refused here, before anything is sent (--force sends it).
    local store, serr = common.used_tokens(args)
    if not store then return common.usage_error(name, serr) end
    local used = store:refusal(token)
    if used then
      common.say(name, used .. " (nothing was sent)")
      return common.USAGE
    end
    used_tokens = store
    call = { "add_account", token, args.max_jobs }
  end

  local client, cerr = common.client(args, { used_tokens = used_tokens })
  if not client then return common.usage_error(name, cerr) end
  local r = common.call(client, args, call)
  client:close()
  if not r.ok then return failed(r) end
  if r.note and sub == "add" then common.say(name, "warning: " .. r.note) end

  if sub == "list" then
    local emails = {}
    for email in pairs(r.value) do emails[#emails + 1] = email end
    table.sort(emails)
    if mode == "table" then
      local rows = {}
      for _, email in ipairs(emails) do
        local a = clean(r.value[email])
        a.email = a.email or email
        rows[#rows + 1] = { email = a.email, tier = a.tier, maxJobs = a.maxJobs,
          added = common.short_time(a.added), refreshed_at = common.short_time(a.refreshed_at),
          state = state_of(a) }
      end
      io.stdout:write(output.render(LIST_COLUMNS, rows))
      io.stderr:write(("%d account%s\n"):format(#emails, #emails == 1 and "" or "s"))
    else
      local w = output.writer(mode, machine_columns())
      for _, email in ipairs(emails) do
        local a = clean(r.value[email])
        a.email = a.email or email
        w:add(a)
      end
      w:finish()
    end
  elseif sub == "delete" then
    if mode == "table" then
      local note = r.note and (" (" .. common.clean(r.note) .. ")") or ""
      io.stdout:write("deleted ", common.clean(args.email), note, "\n")
    else
      local w = output.writer(mode, { { key = "result" }, { key = "email" }, { key = "note" } })
      w:add({ result = "deleted", email = args.email, note = r.note })
      w:finish()
    end
  else
    if sub == "add" then result_word = r.created and "added" or "refreshed" end
    emit(mode, r.value, result_word)
  end
  return common.OK
end

return {
  name = "accounts",
  configure = function(cmd)
    cmd:description(DESCRIPTION)
    cmd:epilog(EPILOG)
    cmd:command_target("subcommand")
    for _, s in ipairs(SUBS) do
      local sub = cmd:command(s[1]):summary(s[2]):description(s[2])
      s[3](sub)
      options(sub)
    end
  end,
  run = run,
}
