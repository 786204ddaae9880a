--- The flowmusic command line: the list of commands and the argparse parser built from them.
--
--     os.exit(require("flowmusic.cli").main(arg))
--
-- Every command is a module `flowmusic.cli.<name>` (listed with its summary in COMMANDS)
-- returning `{ name =, configure = function(cmd) end, run = function(args) return code end }`:
-- `configure` declares its options, arguments and sub-commands on an argparse command object,
-- `run` gets argparse's result table (option names with `_` for `-`) and returns the exit
-- code. Usage errors (unknown options or commands, missing or malformed values) are reported
-- here, from argparse, with exit status 2; `--help` exits 0.
-- @module flowmusic.cli
local argparse = require "argparse"
local common = require "flowmusic.cli.common"
local defaults = require "flowmusic.defaults"
local validate = require "flowmusic.validate"

local M = {}

--- The commands, in the order `flowmusic --help` lists them, with their one-line summaries.
-- Only the module of the command being run (`flowmusic.cli.<name>`) is loaded.
M.COMMANDS = {
  { "accounts", "List, show, add, change or delete accounts (list|get|add|set-max-jobs|delete)." },
  { "usage", "Usage report of one account or of all (--all): totals, per day, account, type, song." },
  { "batch", "Run many account operations from a CSV or JSON Lines file, concurrently." },
  { "status", "Health of every account (ok, needs_reauth, low_credits, unreachable, stale_token);"
    .. " exit status for cron; Prometheus textfile; change alerts (--state)." },
  { "history", "The change events 'status --state' recorded: when accounts broke and recovered." },
  { "wait", "Wait until an account is ok, exists or is gone (exit 124 on timeout)." },
  { "plan", "Compare a fleet file with the live accounts and show what apply would do." },
  { "apply", "Make the live accounts match a fleet file or a saved plan." },
  { "config", "Show the settings in effect (flags, environment, profile, defaults) and where each came from." },
  { "sandbox", "Run the local sandbox of the accounts API (start|stop|status)." },
}

local DESCRIPTION = [[
The command line client of the useapi.net Flow Music accounts API.]]

local EPILOG = [[
Connection and output options (every command that talks to the API; see COMMAND --help):
  --profile NAME     settings from a profile of ~/.config/flowmusic/config (default:
                     $FLOWMUSIC_PROFILE, else [default]; see 'flowmusic config show')
  --token-file FILE  the useapi.net API token (default: $USEAPI_TOKEN, the profile's)
  --base-url URL     API base URL (default: $FLOWMUSIC_BASE_URL, else
                     %s)
  --timeout SECS     seconds per attempt (default %s); --retries N (0-%d, default %d)
  --cacert FILE, --capath DIR
                     CAs to trust (default: $CURL_CA_BUNDLE, $SSL_CERT_FILE/DIR)
  --proxy URL        a proxy (default: $HTTPS_PROXY, $ALL_PROXY; $NO_PROXY bypasses it)
  --json | --csv     machine output on stdout: JSON Lines or CSV (default: a table)
  --verbose          per-request timing and attempts on stderr
Secrets (the API token, refresh tokens) are never printed, not even with --verbose.
Token files others may read are refused; so is a refresh token sent before (--force).

examples:
  export USEAPI_TOKEN=user:123-abc...
  flowmusic accounts list
  flowmusic accounts add --refresh-token-file token.txt --max-jobs 4
  flowmusic accounts set-max-jobs someone@example.com 8
  flowmusic usage someone@example.com --by day
  flowmusic usage --all --since 2026-06-01 --html report.html
  flowmusic batch examples/batch.csv --concurrency 8
  flowmusic batch examples/batch.jsonl --dry-run
  flowmusic sandbox start          # a local fake of the API; prints its base URL

exit status: 0 all succeeded, 1 some operation failed, 2 usage or input error,
130/143 interrupted by SIGINT/SIGTERM.
flowmusic COMMAND --help for details.]]

-- Control flow out of argparse: help, version and usage errors end parsing at once.
local Stop = {}
Stop.__index = Stop
local function stop(fields) error(setmetatable(fields, Stop), 0) end

-- The command words of a parser: "flowmusic accounts add" (argparse keeps the chain).
local function fullname(p)
  if p._get_fullname then return p:_get_fullname() end
  return p._name or "flowmusic"
end

-- Give p (and every command below it) a -h/--help that prints its help and exits 0 without
-- calling os.exit inside argparse.
local function add_help(p)
  p:add_help(false)
  p:flag("-h --help", "Show this help message and exit."):action(function() stop { help = p } end)
  for _, sub in ipairs(p._commands or {}) do add_help(sub) end
end

-- Load the flowmusic core and print its version (and libcurl's), or the real load error.
local function version()
  local ok, lib = pcall(require, "flowmusic")
  if not ok then
    io.stderr:write("flowmusic: cannot load the flowmusic library: ",
      (tostring(lib):gsub("[^\n]+", common.clean)), "\n")
    return common.FAILED
  end
  io.stdout:write("flowmusic ", tostring(lib._VERSION), " (libcurl ", require("flowmusic.core").curl_version(), ")\n")
  return common.OK
end

--- Build the parser: every command is listed, only `wanted` (a command name, or nil) is
-- configured, from its module.
-- @return parser, and a table command name -> command module (the wanted one's)
function M.parser(wanted)
  local parser = argparse("flowmusic"):description(DESCRIPTION)
    :epilog(EPILOG:format(defaults.base_url, defaults.timeout, defaults.max_retries, defaults.retries))
  parser:command_target("command")
  parser:usage_max_width(88):help_max_width(88)
  parser:flag("--version", "Print the version of the flowmusic library and exit.")
    :action(function() stop { version = true } end)
  local modules = {}
  for _, c in ipairs(M.COMMANDS) do
    local cmd = parser:command(c[1]):summary(c[2])
    cmd:usage_max_width(88):help_max_width(88)
    if c[1] == wanted then
      local mod = require("flowmusic.cli." .. c[1])
      modules[c[1]] = mod
      mod.configure(cmd)
    end
  end
  local help = parser:command("help"):summary("Show the help of flowmusic or of one command.")
  help:argument("topic", "A command."):args("?"):argname("COMMAND")
  add_help(parser)
  parser.error = function(p, msg) stop { usage = p, message = msg } end
  return parser, modules
end

-- Help text of a parser (for `--help` and `help COMMAND`).
local function help_of(p) return p:get_help() .. "\n" end

-- argparse quotes the word it refuses ('unknown command X', 'unknown option --X'); a word of
-- the command line that may not be quoted (validate.quote) is said by its size instead.
local function hide_words(msg, words)
  local secrets = common.secrets()
  for _, word in ipairs(words or {}) do
    for _, w in ipairs({ word, word:match("^(%-%-[^=]*)=") }) do
      local quoted, i = "'" .. w .. "'", 1
      while true do
        local at = msg:find(quoted, i, true)
        if not at then break end
        local said = validate.quote(w, secrets)
        msg = msg:sub(1, at - 1) .. said .. msg:sub(at + #quoted)
        i = at + #said
      end
    end
  end
  return msg
end

-- Report a usage error from argparse: usage line, message, hint; exit status 2.
local function usage_error(p, msg, words)
  local name = fullname(p)
  msg = hide_words(tostring(msg), words):gsub("[^\n]+", common.clean)
  local head, hint = msg:match("^(.-)\nDid you mean (.*)$")
  if head then msg = head .. " (did you mean " .. hint .. ")" end
  io.stderr:write(p:get_usage(), "\n\n", name, ": ", msg, "\n",
    "try '", name, " --help'\n")
  return common.USAGE
end

-- Strip "file:line: " from an error that escaped a command: no source paths in the output.
local function internal_message(e)
  if type(e) == "table" and e.message then e = e.message end
  local s = tostring(e):gsub("\n.*$", "")
  s = s:gsub("^[^\n]-:%d+: ", ""):gsub("[^%s:'\"]*%.lua:%d+:%s*", "")
  return s
end

--- Parse argv and run the command.
-- @param argv array of strings (the script's `arg`)
-- @return exit status
function M.main(argv)
  local ok, code = xpcall(function() return M.run(argv) end, function(e)
    if type(e) == "string" and e:find("interrupted!$") then return false end
    return internal_message(e)
  end)
  if ok then return code end
  if code == false then -- Ctrl-C before any command caught signals (the interpreter's handler)
    io.stderr:write("flowmusic: interrupted\n")
    return common.SIGINT
  end
  io.stderr:write("flowmusic: internal error: ", code, "\n")
  return common.FAILED
end

-- The command a command line runs or asks help for: its first word that is not an option
-- (the only options before it are --help and --version), or the topic of `help`.
local function wanted_command(list)
  for i, word in ipairs(list) do
    if word:sub(1, 1) ~= "-" then
      if word == "help" then return list[i + 1] end
      return word
    end
  end
end

--- Parse argv and run the command (errors a command raises are reported as internal errors
-- by main).
function M.run(argv)
  local list = {}
  for i = 1, #(argv or {}) do list[i] = argv[i] end
  local parser, modules = M.parser(wanted_command(list))
  local ok, args = pcall(parser.parse, parser, list)
  if not ok then
    local s = args
    if getmetatable(s) ~= Stop then error(s, 0) end
    if s.help then io.stdout:write(help_of(s.help)) return common.OK end
    if s.version then return version() end
    return usage_error(s.usage, s.message, list)
  end
  if args.command == "help" then
    if args.topic == nil then io.stdout:write(help_of(parser)) return common.OK end
    for _, sub in ipairs(parser._commands or {}) do
      if sub._name == args.topic and args.topic ~= "help" then
        io.stdout:write(help_of(sub))
        return common.OK
      end
    end
    return usage_error(parser, "unknown command " .. validate.quote(args.topic, common.secrets()))
  end
  local mod = modules[args.command]
  local code
  ok, code = xpcall(function() return mod.run(args) end, function(e)
    if type(e) == "table" and getmetatable(e) == Stop then return e end
    -- The standalone interpreter's own SIGINT handler raises "interrupted!" in Lua code.
    if type(e) == "string" and e:find("interrupted!$") then return setmetatable({ code = common.SIGINT }, Stop) end
    return internal_message(e)
  end)
  if ok then
    -- A command stopped by SIGINT/SIGTERM (caught by the library) ends with 130/143.
    local stopped, signame = common.interrupted()
    if stopped then
      if not common.reported_interruption then common.say(mod.name, "interrupted by " .. signame) end
      return stopped
    end
    return code or common.OK
  end
  if getmetatable(code) == Stop then
    if code.code == common.SIGINT then common.say(mod.name, "interrupted") end
    return code.code
  end
  common.say(mod.name, "internal error: " .. code)
  return common.FAILED
end

return M
