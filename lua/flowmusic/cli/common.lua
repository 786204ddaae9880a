--- Shared parts of the flowmusic commands: connection options, the client, secret files,
-- output-mode selection, running one call, and error reporting.
-- Exit codes everywhere: 0 success, 1 an operation failed, 2 usage or input error.
-- @module flowmusic.cli.common
local args = require "flowmusic.cli.args"
local output = require "flowmusic.cli.output"

local M = {}

M.OK, M.FAILED, M.USAGE = 0, 1, 2

--- Options every API command accepts (name -> takes a value).
M.CONNECTION = { ["token-file"] = true, ["base-url"] = true, timeout = true, retries = true,
  json = false, csv = false, verbose = false }

--- Help text for the options in M.CONNECTION.
M.CONNECTION_HELP = [[
connection and output options:
  --token-file FILE  read the useapi.net API token from FILE (default: $USEAPI_TOKEN)
  --base-url URL     API base URL (default: $FLOWMUSIC_BASE_URL, else
                     https://api.useapi.net/v1/flowmusic)
  --timeout SECS     seconds per attempt (default 30)
  --retries N        re-sends after a failed attempt, 0-20 (default 3)
  --json             JSON Lines on stdout, one object per result
  --csv              CSV with a header row on stdout
  --verbose          per-request timing and attempts on stderr (never any secret)
  -h, --help         this help
]]

--- Merge option specs into a new table.
function M.spec(...)
  local t = {}
  for i = 1, select("#", ...) do
    for k, v in pairs((select(i, ...))) do t[k] = v end
  end
  return t
end

--- Write "flowmusic <cmd>: msg" to stderr.
function M.say(cmd, msg)
  io.stderr:write("flowmusic ", cmd, ": ", msg, "\n")
end

--- Report a usage error (with a hint to --help) and return exit code 2.
function M.usage_error(cmd, msg)
  io.stderr:write("flowmusic ", cmd, ": ", msg, "\n", "try 'flowmusic ", cmd, " --help'\n")
  return M.USAGE
end

--- The output mode from --json / --csv: "json", "csv" or "table"; or nil, message.
function M.mode(opts)
  if opts.json and opts.csv then return nil, "--json and --csv are exclusive" end
  return opts.json and "json" or opts.csv and "csv" or "table"
end

-- Strip "file:line: " that error() puts in front of a message.
local function strip_where(msg)
  msg = tostring(msg)
  return (msg:gsub("^[^\n]-:%d+: ", ""))
end

--- Read a whole file ("-" = standard input), or nil, message. The content is never echoed.
function M.read_file(path, what)
  local f, err
  if path == "-" then f = io.stdin else f, err = io.open(path, "rb") end
  if not f then return nil, ("cannot read %s '%s': %s"):format(what, path, strip_where(err or "?")) end
  local data, rerr = f:read("*a")
  if path ~= "-" then f:close() end
  if not data then
    return nil, ("cannot read %s '%s': %s"):format(what, path, tostring(rerr or "read error"))
  end
  return data
end

--- Read a secret (API token or refresh token) from a file or "-": trailing whitespace and
-- newlines are trimmed; empty files are refused. Returns the secret or nil, message.
function M.read_secret(path, what)
  local data, err = M.read_file(path, what)
  if not data then return nil, err end
  data = data:gsub("^\239\187\191", ""):gsub("[%s]+$", "")
  if data == "" then
    return nil, ("%s '%s' is empty"):format(what, path == "-" and "(standard input)" or path)
  end
  if data:find("[\r\n]") then
    return nil, ("%s '%s' must hold a single line"):format(what, path == "-" and "(standard input)" or path)
  end
  return data
end

--- Make a client from the options (--token-file, --base-url, --timeout, --retries) and the
-- environment. Returns the client, or nil, message (a usage/input error: exit 2).
function M.client(opts)
  local flowmusic = require "flowmusic"
  local o = {}
  if opts["token-file"] then
    local tok, err = M.read_secret(opts["token-file"], "token file")
    if not tok then return nil, err end
    o.token = tok
  else
    local env = os.getenv("USEAPI_TOKEN")
    if env == nil or env == "" then
      return nil, "no API token: set USEAPI_TOKEN or pass --token-file FILE"
    end
  end
  if opts["base-url"] then o.base_url = opts["base-url"] end
  if opts.timeout then
    local t, err = args.seconds(opts.timeout, "--timeout")
    if not t then return nil, err end
    o.timeout = t
  end
  if opts.retries then
    local n, err = args.integer(opts.retries, 0, 20, "--retries")
    if not n then return nil, err end
    o.retries = n
  end
  if o.timeout then
    o.deadline = math.max(60, o.timeout * ((o.retries or 3) + 1) + 10)
  end
  local ok, client = pcall(flowmusic.new, o)
  if not ok then
    return nil, (strip_where(client):gsub("^flowmusic%.new: ", ""))
  end
  return client
end

--- One line about a result for --verbose (no secrets: method, path, status, attempts, time).
function M.verbose_line(label, r)
  local status = r.status and tostring(r.status) or (r.err and r.err.kind) or "?"
  return ("%s: %s, %d attempt%s, %.0f ms"):format(label, status, r.attempts or 0,
    (r.attempts or 0) == 1 and "" or "s", (r.elapsed or 0) * 1000)
end

--- Run one client call through client:batch (to learn status, attempts and elapsed time).
-- @return the batch result { ok, value, err, status, attempts, elapsed, created, note }
function M.call(client, opts, label, call)
  local r = client:batch({ call }, { concurrency = 1 })[1]
  if opts.verbose then io.stderr:write(M.verbose_line(label, r), "\n") end
  return r
end

--- A one-line message for a failed result (the error value's tostring, never a secret).
function M.error_message(r)
  if r.err == nil then return "failed" end
  local s = tostring(r.err):gsub("^flowmusic: ", "")
  if type(r.err) == "table" and r.err.outcome_unknown then
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

--- True when s looks like an email address (something@something, no spaces).
function M.is_email(s)
  return type(s) == "string" and #s <= 320 and s:find("^[^@%s%c]+@[^@%s%c]+$") ~= nil
end

M.output = output
return M
