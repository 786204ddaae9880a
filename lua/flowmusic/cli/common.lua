--- Shared parts of the flowmusic commands: connection and output options, the client, secret
-- files, output-mode selection, running one call, and error reporting.
-- Exit codes everywhere: 0 success, 1 an operation failed, 2 usage or input error.
-- @module flowmusic.cli.common
local output = require "flowmusic.cli.output"
local validate = require "flowmusic.validate"
local files = require "flowmusic.files"
local defaults = require "flowmusic.defaults"

local M = {}

M.OK, M.FAILED, M.USAGE = 0, 1, 2
--- Exit codes of a run stopped by SIGINT / SIGTERM (128 + the signal number).
M.SIGINT, M.SIGTERM = 130, 143

--- Escape control characters (and bytes that aren't UTF-8) for a terminal: ESC -> `\27`.
M.clean = require("flowmusic.format").escape

--- Write "flowmusic <cmd>: msg" to stderr (control characters escaped).
function M.say(cmd, msg)
  io.stderr:write("flowmusic ", cmd, ": ", M.clean(tostring(msg)), "\n")
end

--- Report a usage error (with a hint to --help) and return exit code 2.
function M.usage_error(cmd, msg)
  io.stderr:write("flowmusic ", cmd, ": ", M.clean(tostring(msg)), "\n", "try 'flowmusic ", cmd, " --help'\n")
  return M.USAGE
end

-- Strip "file:line: " that error() puts in front of a message.
local function strip_where(msg)
  return (tostring(msg):gsub("^[^\n]-:%d+: ", ""))
end

-- A value from the command line, quoted for a message only when it is a short plain word.
local function quoted(s) return output.show(s, M.secrets()) end

--- A retry count from a string, judged by the library's rule (0 to defaults.max_retries).
function M.retries(s, what)
  local n = type(s) == "string" and s:match("^%s*[+]?%d+%s*$") and tonumber(s)
  local ok, msg = validate.retries(n or -1, what, defaults.max_retries)
  if not ok then return nil, ("%s, got %s"):format(msg, quoted(s)) end
  return ok
end

--- An integer in [lo, hi] from a string, or nil, message (naming `what`).
function M.integer(s, lo, hi, what)
  local n = type(s) == "number" and s or (type(s) == "string" and s:match("^%s*[+]?%d+%s*$") and tonumber(s))
  if not n or n ~= math.floor(n) or n < lo or n > hi then
    return nil, ("%s must be an integer %d-%d, got %s"):format(what, lo, hi, quoted(s))
  end
  return n
end

--- A positive, finite number of seconds from a decimal string (`30`, `.5`, `1e1`), or nil,
-- message.
function M.seconds(s, what)
  local mant = type(s) == "string" and s:match("^%s*%+?(%d*%.?%d*)[eE][+-]?%d+%s*$")
  if not mant then mant = type(s) == "string" and s:match("^%s*%+?(%d*%.?%d*)%s*$") end
  local n = mant and mant:find("%d") and tonumber(s)
  local ok, msg = validate.seconds(n or 0 / 0, what)
  if not ok then return nil, ("%s, got %s"):format(msg, quoted(s)) end
  return ok
end

--- A non-negative number from an option value, or nil, message.
function M.minimum(v, what)
  local n = type(v) == "number" and v or (type(v) == "string" and v:match("^%s*%d+%.?%d*%s*$") and tonumber(v))
  if not n or n < 0 then
    return nil, ("%s must be a non-negative number, got %s"):format(what, quoted(tostring(v)))
  end
  return n
end

local DURATION_UNITS = { s = 1, m = 60, h = 3600, d = 86400 }

--- A length of time from `90` (seconds), `10s`, `15m`, `2h`, `1d` or a sum such as `1h30m`,
-- in seconds (positive, at most a year), or nil, message naming `what`.
function M.duration(s, what)
  local total, rest = 0, type(s) == "string" and s:match("^%s*(.-)%s*$") or ""
  if rest:match("^%d+%.?%d*$") then total = tonumber(rest) rest = "" end
  while rest ~= "" do
    local n, unit, tail = rest:match("^(%d+%.?%d*)([smhd])(.*)$")
    if not n then total = nil break end
    total, rest = total + tonumber(n) * DURATION_UNITS[unit], tail
  end
  if not total or total <= 0 or total > 366 * 86400 then
    return nil, ("%s must be a duration such as 90, 30s, 15m, 2h or 1d, got %s"):format(what, quoted(s))
  end
  return total
end

--- maxJobs from a string or a number (flowmusic.validate.max_jobs_input), never quoting a
-- secret this process holds.
function M.max_jobs(v, what) return validate.max_jobs_input(v, what, M.secrets()) end

--- An account email, judged by the library's rule (flowmusic.validate).
function M.email(v)
  return validate.email(v)
end

-- An argparse convert function from a checker returning value or nil, message.
local function converter(check, ...)
  local extra = { ... }
  return function(s)
    local v, msg = check(s, (table.unpack or unpack)(extra))
    if v == nil then return nil, msg end
    return v
  end
end
M.converter = converter

--- Declare the connection options on an argparse command:
-- --profile NAME, --token-file FILE, --base-url URL, --timeout SECS, --retries N, --cacert,
-- --capath, --proxy, --allow-insecure-token-file, --verbose. With `own_timeout`, the
-- command's --timeout means something else (flowmusic wait) and attempts keep the default.
function M.connection_options(cmd, own_timeout)
  local opts = {
    cmd:option("--profile", "Use the settings of this profile of the config file (default: "
      .. "$FLOWMUSIC_PROFILE, else [default]).")
      :argname("NAME"):overwrite(false),
    cmd:option("--token-file", "Read the useapi.net API token from FILE (default: $USEAPI_TOKEN, then the profile's "
      .. "token_file).")
      :argname("FILE"):overwrite(false),
    cmd:option("--base-url", "API base URL (default: $FLOWMUSIC_BASE_URL, the profile's, else "
      .. defaults.base_url .. ").")
      :argname("URL"):overwrite(false),
  }
  if not own_timeout then
    opts[#opts + 1] = cmd:option("--timeout", ("Seconds per attempt (default %s)."):format(defaults.timeout))
      :argname("SECS"):overwrite(false):convert(converter(M.seconds, "--timeout"))
  end
  opts[#opts + 1] = cmd:option("--retries", ("Re-sends after a failed attempt, 0-%d (default %d).")
    :format(defaults.max_retries, defaults.retries))
    :argname("N"):overwrite(false):convert(converter(M.retries, "--retries"))
  opts[#opts + 1] = cmd:option("--cacert",
    "Trust the CAs of this PEM file (default: $CURL_CA_BUNDLE, then $SSL_CERT_FILE, then the profile's).")
    :argname("FILE"):overwrite(false)
  opts[#opts + 1] = cmd:option("--capath", "Trust the CAs of this hashed directory (default: $SSL_CERT_DIR, "
    .. "then the profile's).")
    :argname("DIR"):overwrite(false)
  opts[#opts + 1] = cmd:option("--proxy", "Go through this proxy (default: $HTTPS_PROXY, $ALL_PROXY; $NO_PROXY; "
    .. "then the profile's).")
    :argname("URL"):overwrite(false)
  opts[#opts + 1] = cmd:flag("--allow-insecure-token-file", "Read token and config files even when group or "
    .. "others may read or write them.")
  opts[#opts + 1] = cmd:flag("--verbose", "Per-request timing and attempts on stderr (never any secret).")
  cmd:group("Connection options", (table.unpack or unpack)(opts))
end

--- Declare the options of commands that send refresh tokens or change accounts: --state-dir
-- DIR (the used-token store and the apply lock) and, unless `no_force`, --force (send a token
-- the store says was used already).
function M.write_options(cmd, no_force)
  local opts = { cmd:option("--state-dir", "Keep the used-token store and the apply lock here (default: "
      .. "$FLOWMUSIC_STATE_DIR, the profile's, $XDG_STATE_HOME/flowmusic, ~/.local/state/flowmusic).")
      :argname("DIR"):overwrite(false) }
  if not no_force then
    opts[2] = cmd:flag("--force", "Send a refresh token even though it was sent before (the used-token store).")
  end
  cmd:group("Safety options", (table.unpack or unpack)(opts))
end

--- Declare --lock-timeout SECS (apply, and batch with writes): how long to wait for another
-- run's lock.
function M.lock_option(cmd)
  cmd:option("--lock-timeout", "Wait up to SECS for another apply (or writing batch) to finish "
    .. "(default 0: refuse at once).")
    :argname("SECS"):overwrite(false):convert(converter(function(v)
      if type(v) == "string" and v:match("^%s*0*%.?0*%s*$") and v:find("0") then return 0 end
      return M.seconds(v, "--lock-timeout")
    end))
end

local resolved = {} -- args -> the settings (flowmusic.cli.profile.resolve), once per run

--- Every setting for these arguments, with its source (flowmusic.cli.profile), or nil,
-- message (a usage error: unknown profile, bad config file).
function M.settings(args)
  local s = resolved[args]
  if s then return s end
  local err
  s, err = require("flowmusic.cli.profile").resolve(args)
  if not s then return nil, err end
  resolved[args] = s
  return s
end

--- The credit minimum for these arguments (--min-credits, $FLOWMUSIC_MIN_CREDITS, the
-- profile's min_credits): a number, or nil when none is set; or nil, message.
function M.min_credits(args)
  local s, err = M.settings(args)
  if not s then return nil, err end
  local v = s.min_credits
  if v.value == nil then return nil end
  if type(v.value) == "number" then return v.value end
  return M.minimum(v.value, "min_credits (from " .. v.source .. ")")
end

--- The state directory for these arguments (--state-dir, $FLOWMUSIC_STATE_DIR, the profile,
-- the default), or nil, message.
function M.state_dir(args)
  local s, err = M.settings(args)
  if not s then return nil, err end
  if not s.state_dir.value then return nil, s.state_dir.source end
  return s.state_dir.value
end

--- The used-token store (flowmusic.used_tokens) for these arguments (honouring --force), or
-- nil, message.
function M.used_tokens(args)
  local dir, err = M.state_dir(args)
  if not dir then return nil, err end
  return require("flowmusic.used_tokens").open { dir = dir, force = args.force }
end

--- Take the lock that lets one apply (or writing batch) run at a time, waiting up to
-- --lock-timeout. Returns the lock, or nil and the message saying who holds it.
function M.write_lock(args)
  local dir, err = M.state_dir(args)
  if not dir then return nil, err end
  local wait = args.lock_timeout or 0
  local lock, msg, pid = require("flowmusic.statedir").lock(dir, "apply", wait)
  if lock then return lock end
  if pid then
    return nil, ("another apply or batch is changing accounts: %s; %s"):format(msg, wait > 0
      and ("it still held it after --lock-timeout " .. tostring(wait) .. " s")
      or "wait for it to finish, or pass --lock-timeout SECS to wait for it")
  end
  return nil, msg
end

--- Declare the output options on an argparse command: --json and --csv (exclusive).
function M.output_options(cmd)
  local json = cmd:flag("--json", "JSON Lines on stdout, one object per result.")
  local csv = cmd:flag("--csv", "CSV with a header row on stdout.")
  cmd:mutex(json, csv)
  cmd:group("Output options", json, csv)
end

--- The output mode from --json / --csv: "json", "csv" or "table".
function M.mode(args)
  return args.json and "json" or args.csv and "csv" or "table"
end

-- API tokens read from --token-file: never quoted in a message.
local held = {}

--- The API tokens this process holds ($USEAPI_TOKEN, --token-file once read): strings never
-- to quote in a message or echo in a report.
function M.secrets()
  local list = {}
  for i, s in ipairs(held) do list[i] = s end
  local env = os.getenv("USEAPI_TOKEN")
  if env and env ~= "" then list[#list + 1] = env end
  return list
end

--- A value from the input for the report, unless it holds a secret (or is part of one):
-- then a description of its size.
function M.redact(v)
  if type(v) == "string" and output.holds_secret(v, M.secrets()) then return output.hidden(v) end
  return v
end

local api_tokens = {} -- token file -> its token (read once)

--- The API token from --token-file, else $USEAPI_TOKEN, else the profile's token_file (a
-- file's token is read once, then remembered as a secret never to quote); or nil, message.
function M.api_token(args)
  local s, serr = M.settings(args)
  if not s then return nil, serr end
  local file = s.token.file
  if file then
    local tok = api_tokens[file]
    if tok then return tok end
    local err
    tok, err = files.read_secret(file, "token file", { allow_insecure = args.allow_insecure_token_file })
    if not tok then
      if s.token.source ~= "--token-file" then err = err .. " (token_file of " .. s.token.source .. ")" end
      return nil, err
    end
    api_tokens[file] = tok
    held[#held + 1] = tok
    return tok
  end
  if s.token.env then return os.getenv(s.token.env) end
  return nil, "no API token: set USEAPI_TOKEN, pass --token-file FILE, or name a token_file in a profile "
    .. "(flowmusic config show)"
end

--- A refresh token from a file ("-": standard input), refused when group or others may read
-- or write the file (unless --allow-insecure-token-file); or nil, message.
function M.refresh_token(args, path)
  return files.read_secret(path, "refresh token file", { allow_insecure = args.allow_insecure_token_file })
end

--- Make a client from the options (--token-file, --base-url, --timeout, --retries, the CA and
-- proxy options, the profile) and the environment. `extra` adds client options (e.g.
-- `used_tokens`). Returns the client, or nil, message (a usage/input error: exit 2).
function M.client(args, extra)
  local flowmusic = require "flowmusic"
  local s, serr = M.settings(args)
  if not s then return nil, serr end
  local o = {}
  for k, v in pairs(extra or {}) do o[k] = v end
  local tok, err = M.api_token(args)
  if not tok then return nil, err end
  o.token = tok
  o.base_url = s.base_url.value
  -- The CA settings are checked here, before anything is sent, and named as they were given.
  local ca, cerr
  if s.ca_from_env then
    ca, cerr = require("flowmusic.trust").resolve(nil, nil)
  else
    ca, cerr = require("flowmusic.trust").resolve(s.cacert.value, s.capath.value)
    if not ca and s.cacert.source ~= "--cacert/--capath" then
      cerr = cerr:gsub("^cainfo:", "cacert of " .. tostring(s.cacert.source) .. ":")
        :gsub("^capath:", "capath of " .. tostring(s.capath.source) .. ":")
    end
  end
  if not ca then return nil, (cerr:gsub("^cainfo:", "--cacert:"):gsub("^capath:", "--capath:")) end
  o.cainfo, o.capath = ca.cainfo, ca.capath
  if not s.proxy.from_env then o.proxy = s.proxy.value end
  o.timeout, o.retries = args.timeout, args.retries
  if o.timeout then
    -- Long attempts get a deadline that leaves room for every retry.
    o.deadline = math.max(defaults.deadline, o.timeout * ((o.retries or defaults.retries) + 1) + 10)
  end
  local ok, client = pcall(flowmusic.new, o)
  if not ok then
    local msg = strip_where(client):gsub("^flowmusic%.new: ", "")
    if s.base_url.source ~= "--base-url" and msg:find("base_url", 1, true) then
      msg = msg .. " (base_url from " .. s.base_url.source .. ")"
    end
    return nil, msg
  end
  return client
end

--- One line about a result for --verbose (no secrets: method, path, status, attempts, time).
function M.verbose_line(label, r)
  local status = r.status and tostring(r.status) or (r.err and r.err.kind) or "?"
  return ("%s: %s, %d attempt%s, %.0f ms"):format(label, status, r.attempts or 0,
    (r.attempts or 0) == 1 and "" or "s", (r.elapsed or 0) * 1000)
end

-- The library's signal counter (flowmusic.signals) once a command asked to catch signals.
local signals

--- Count SIGINT and SIGTERM from now on instead of dying (the library's opt-in handler):
-- commands that talk to the API call this first, pass `M.cancel` as the batch option
-- `cancel`, and main turns a caught signal into exit status 130 (SIGINT) or 143 (SIGTERM).
-- Returns true when signals are caught (false when the library can't be loaded).
function M.catch_signals()
  if signals then return true end
  local ok, lib = pcall(require, "flowmusic")
  -- A Ctrl-C that came before the library's handler (the interpreter's own "interrupted!")
  -- must not be swallowed here: main turns it into exit status 130.
  if not ok and tostring(lib):find("interrupted!$") then error(lib, 0) end
  if not ok or type(lib.signals) ~= "table" or not lib.signals.catch then return false end
  lib.signals.catch()
  signals = lib.signals
  return true
end

--- The batch option `cancel`: nil while no signal came, "stop" after the first (nothing new
-- starts, transfers in flight get the grace period), "abort" after the second.
function M.cancel()
  if not signals then return nil end
  local n = signals.caught()
  if n >= 2 then return "abort" end
  if n == 1 then return "stop" end
  return nil
end

--- After a caught signal: the exit status (130 SIGINT, 143 SIGTERM) and the signal's name;
-- nil when none came.
function M.interrupted()
  if not signals then return nil end
  local n, last = signals.caught()
  if n == 0 then return nil end
  if last == signals.SIGTERM then return M.SIGTERM, "SIGTERM" end
  return M.SIGINT, "SIGINT"
end

--- The short label of an operation, from its record in the operation table.
function M.label(op_name)
  return require("flowmusic.ops").get(op_name).label
end

--- Run one client call through client:batch (to learn status, attempts and elapsed time).
-- @return the batch result { ok, value, err, status, attempts, elapsed, created, note }
function M.call(client, args, call)
  local r = client:batch({ call }, { concurrency = 1, cancel = M.cancel })[1]
  if args.verbose then io.stderr:write(M.clean(M.verbose_line(M.label(call[1]), r)), "\n") end
  return r
end

-- What to do about the vendor's own failures, by the error's reason (one line each).
local HINTS = {
  payment_required = "the useapi.net subscription has expired or has no credits left: renew it or add "
    .. "credits at useapi.net",
  insufficient_credits = "not enough credits for this request: add credits to the useapi.net subscription",
  account_error = "the account is in error state (its refresh token was rejected): re-add it with a fresh "
    .. "refresh token ('flowmusic accounts add' or a fleet file with apply)",
}

--- The one-line hint for an error value (what to do), or nil.
function M.hint(err)
  return type(err) == "table" and HINTS[err.reason] or nil
end

--- An error value's line (never a secret), with its hint when it has one.
function M.describe(err)
  local s = require("flowmusic.errors").text(err) -- (the library loads only once a command runs)
  local hint = M.hint(err)
  if hint then s = s .. "; hint: " .. hint end
  return s
end

--- A one-line message for a failed result (the error value's tostring, never a secret).
function M.error_message(r)
  if r.err == nil then return "failed" end
  local s = M.describe(r.err)
  -- The library already says so in err.message; add the note only where it didn't.
  if type(r.err) == "table" and r.err.outcome_unknown and not s:find("outcome unknown", 1, true) then
    s = s .. " (outcome unknown: the request may have been applied; check 'flowmusic accounts list')"
  end
  return s
end

--- Day part (YYYY-MM-DD HH:MM) of an ISO 8601 time, for tables.
function M.short_time(s)
  if type(s) ~= "string" then return s end
  local d, t = s:match("^(%d%d%d%d%-%d%d%-%d%d)T(%d%d:%d%d)")
  if d then return d .. " " .. t end
  return s
end

M.output = output
return M
