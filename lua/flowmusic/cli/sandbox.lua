--- `flowmusic sandbox start|stop|status`: run the local sandbox of the accounts API.
-- Returns a function taking the argument list and returning the exit code
-- (0 success, 1 failure, 2 usage error).
-- @module flowmusic.cli.sandbox

local server = require "flowmusic.sandbox.server"

-- Name the accepted token only when it is the well-known default: one given with --token
-- may be a real secret and is never printed.
local function token_note(token)
  if token == server.DEFAULT_TOKEN then return "token " .. token .. " (default)" end
  return "token as given with --token (not shown)"
end

local USAGE = [[
usage: flowmusic sandbox start [--port N] [--token T] [--dir D]
       flowmusic sandbox stop [--dir D]
       flowmusic sandbox status [--dir D]

Runs a local, stateful implementation of the Flow Music accounts API on nginx.
  start   start it in the background; prints the base URL as the last line
          (--port 0 or no --port: a free port; --token default user:1-sandbox)
  stop    stop it (SIGTERM, then SIGKILL after 5 s)
  status  tell whether it runs (exit 0) or not (exit 1)
--dir defaults to ]] .. "${TMPDIR:-/tmp}/flowmusic-sandbox-<uid>" .. [[.
]]

local OPTIONS = {
  start = { port = true, token = true, dir = true },
  stop = { dir = true },
  status = { dir = true },
}

-- Parse `--name value` / `--name=value` options allowed for a command.
local function parse(command, args, from)
  local opts, i = {}, from
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    if not name then
      name = a:match("^%-%-([%w-]+)$")
      if name and OPTIONS[command][name] then
        i = i + 1
        value = args[i]
        if value == nil then return nil, "option --" .. name .. " needs a value" end
      end
    end
    if not name or not OPTIONS[command][name] then return nil, "unexpected argument " .. a end
    opts[name] = value
    i = i + 1
  end
  if opts.port then
    local n = tonumber(opts.port)
    if not n or n ~= math.floor(n) or n < 0 or n > 65535 then return nil, "bad --port " .. opts.port end
    opts.port = n
  end
  return opts
end

return function(args)
  args = args or {}
  local command = args[1]
  if command == nil or command == "--help" or command == "-h" or command == "help" then
    io.stdout:write(USAGE)
    return command == nil and 2 or 0
  end
  if not OPTIONS[command] then
    io.stderr:write("flowmusic sandbox: unknown command '", command, "'\n", USAGE)
    return 2
  end
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then io.stdout:write(USAGE) return 0 end
  end
  local opts, err = parse(command, args, 2)
  if not opts then
    io.stderr:write("flowmusic sandbox: ", err, "\n", USAGE)
    return 2
  end

  if command == "start" then
    local base, pid, info = server.start(opts)
    if not base then
      io.stderr:write("flowmusic sandbox: ", pid, "\n")
      return 1
    end
    io.stderr:write(string.format("sandbox running: pid %d, dir %s, %s\n", pid, info.dir, token_note(info.token)))
    io.stdout:write(base, "\n")
    return 0
  elseif command == "stop" then
    local ok, serr = server.stop(opts)
    if not ok then
      io.stderr:write("flowmusic sandbox: ", serr, "\n")
      return 1
    end
    io.stderr:write("sandbox stopped\n")
    return 0
  else
    local running, info = server.status(opts)
    if not running then
      io.stdout:write("not running (dir ", info.dir, ")\n")
      return 1
    end
    io.stdout:write(string.format("running: pid %d, dir %s, %s\n%s\n", info.pid, info.dir,
                                  token_note(info.token), info.base_url))
    return 0
  end
end
