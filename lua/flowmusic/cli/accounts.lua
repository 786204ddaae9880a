--- `flowmusic accounts list | get EMAIL | add | set-max-jobs EMAIL N | delete EMAIL`.
-- A function taking the argument list and returning the exit code (0 ok, 1 the API call
-- failed, 2 usage or input error).
-- @module flowmusic.cli.accounts
local args = require "flowmusic.cli.args"
local common = require "flowmusic.cli.common"
local output = require "flowmusic.cli.output"

local USAGE = [[
usage: flowmusic accounts list [options]
       flowmusic accounts get EMAIL [options]
       flowmusic accounts add (--refresh-token-file FILE | -) [--max-jobs N] [options]
       flowmusic accounts set-max-jobs EMAIL N [options]
       flowmusic accounts delete EMAIL [options]

Manage the Flow Music accounts configured for your useapi.net API token.
  list          all accounts: email, tier, maxJobs, added, last refresh, state
  get           one account, with its remaining credits and tokens
  add           add an account, or refresh it when it exists, from its Flow Music
                refresh token; the token is read from --refresh-token-file FILE or from
                standard input ('-' or '--refresh-token-file -'), never from the command
                line, and it is never printed. --max-jobs N (1-16) sets maxJobs (default:
                chosen by the service from the plan tier)
  set-max-jobs  change maxJobs (N is an integer 1-16) of an existing account
  delete        remove an account

]] .. common.CONNECTION_HELP .. [[

examples:
  export USEAPI_TOKEN=user:123-abc...
  flowmusic accounts list
  flowmusic accounts add --refresh-token-file ~/flow-token.txt --max-jobs 4
  pass show flow/refresh | flowmusic accounts add -
  flowmusic accounts set-max-jobs someone@example.com 8
  flowmusic accounts get someone@example.com --json
  flowmusic accounts delete someone@example.com

exit status: 0 success, 1 the API call failed (e.g. 404 no such account), 2 usage or
input error (unknown option, bad N, unreadable or empty token file, no API token).
]]

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
    if type(v) == "number" then v = output.number(v) end
    io.stdout:write(l[1], ":", (" "):rep(w - #l[1] + 1), tostring(v), "\n")
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

local function need(pos, n, what)
  if #pos < n then return nil, "missing " .. what end
  if #pos > n then return nil, "unexpected argument '" .. pos[n + 1] .. "'" end
  return true
end

local SPECS = {
  list = common.CONNECTION,
  get = common.CONNECTION,
  delete = common.CONNECTION,
  ["set-max-jobs"] = common.CONNECTION,
  add = common.spec(common.CONNECTION, { ["refresh-token-file"] = true, ["max-jobs"] = true }),
}

return function(argv)
  argv = argv or {}
  local sub = argv[1]
  if sub == nil or sub == "--help" or sub == "-h" or sub == "help" then
    io.stdout:write(USAGE)
    return sub == nil and common.USAGE or common.OK
  end
  if not SPECS[sub] then return common.usage_error("accounts", "unknown subcommand '" .. sub .. "'") end
  local rest = {}
  for i = 2, #argv do rest[#rest + 1] = argv[i] end
  local opts, pos = args.parse(rest, SPECS[sub])
  if not opts then return common.usage_error("accounts " .. sub, pos) end
  if opts.help then io.stdout:write(USAGE) return common.OK end
  local mode, merr = common.mode(opts)
  if not mode then return common.usage_error("accounts " .. sub, merr) end

  -- Check the arguments before anything else (and before reading secrets).
  local call, label, result_word
  if sub == "list" then
    local ok, e = need(pos, 0, "")
    if not ok then return common.usage_error("accounts list", e) end
    call, label = { "list_accounts" }, "GET /accounts"
  elseif sub == "get" or sub == "delete" then
    local ok, e = need(pos, 1, "EMAIL")
    if not ok then return common.usage_error("accounts " .. sub, e) end
    if not common.is_email(pos[1]) then
      return common.usage_error("accounts " .. sub, "'" .. pos[1] .. "' is not an email address")
    end
    if sub == "get" then
      call, label = { "get_account", pos[1] }, "GET /accounts/" .. pos[1]
    else
      call, label, result_word = { "delete_account", pos[1] }, "DELETE /accounts/" .. pos[1], "deleted"
    end
  elseif sub == "set-max-jobs" then
    local ok, e = need(pos, 2, #pos == 0 and "EMAIL and N" or "N")
    if not ok then return common.usage_error("accounts set-max-jobs", e) end
    if not common.is_email(pos[1]) then
      return common.usage_error("accounts set-max-jobs", "'" .. pos[1] .. "' is not an email address")
    end
    local n, nerr = args.integer(pos[2], 1, 16, "N (maxJobs)")
    if not n then return common.usage_error("accounts set-max-jobs", nerr) end
    call, label, result_word = { "set_max_jobs", pos[1], n }, "POST /accounts (maxJobs)", "updated"
  else -- add
    local file = opts["refresh-token-file"]
    if #pos > 1 or (#pos == 1 and pos[1] ~= "-") then
      return common.usage_error("accounts add",
        "refresh tokens are never taken from the command line: use --refresh-token-file FILE, or - to read standard input")
    end
    if #pos == 1 then
      if file then return common.usage_error("accounts add", "give either --refresh-token-file or -, not both") end
      file = "-"
    end
    if not file then
      return common.usage_error("accounts add", "missing the refresh token: use --refresh-token-file FILE or - (standard input)")
    end
    local max_jobs
    if opts["max-jobs"] then
      local n, nerr = args.integer(opts["max-jobs"], 1, 16, "--max-jobs")
      if not n then return common.usage_error("accounts add", nerr) end
      max_jobs = n
    end
    local token, terr = common.read_secret(file, "refresh token file")
    if not token then return common.usage_error("accounts add", terr) end
    if #token < 10 then
      return common.usage_error("accounts add", "the refresh token must be at least 10 characters")
    end
    call, label = { "add_account", token, max_jobs }, "POST /accounts (refresh_token)"
  end

  local client, cerr = common.client(opts)
  if not client then return common.usage_error("accounts " .. sub, cerr) end
  local r = common.call(client, opts, label, call)
  client:close()
  if not r.ok then return failed(r) end

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
      io.stdout:write("deleted ", pos[1], r.note and (" (" .. tostring(r.note) .. ")") or "", "\n")
    else
      local w = output.writer(mode, { { key = "result" }, { key = "email" }, { key = "note" } })
      w:add({ result = "deleted", email = pos[1], note = r.note })
      w:finish()
    end
  else
    if sub == "add" then result_word = r.created and "added" or "refreshed" end
    emit(mode, r.value, result_word)
  end
  return common.OK
end
