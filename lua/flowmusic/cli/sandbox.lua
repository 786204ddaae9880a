--- `flowmusic sandbox start|stop|status`: run the local sandbox of the accounts API.
-- A command module of flowmusic.cli (exit code 0 success, 1 failure, 2 usage error).
-- @module flowmusic.cli.sandbox
local common = require "flowmusic.cli.common"

-- Name the accepted token only when it is the well-known default: one given with --token
-- may be a real secret and is never printed.
local function token_note(server, token)
  if token == server.DEFAULT_TOKEN then return "token " .. token .. " (default)" end
  return "token as given with --token (not shown)"
end

local DESCRIPTION = [==[
Runs a local, stateful implementation of the Flow Music accounts API on nginx.

  flowmusic sandbox start [--port N] [--token T] [--dir D]
  flowmusic sandbox stop [--dir D]
  flowmusic sandbox status [--dir D]]==]

local EPILOG = [[
--dir defaults to ${TMPDIR:-/tmp}/flowmusic-sandbox-<uid>.

exit status: 0 success (status: running), 1 failure (status: not running), 2 usage error.]]

local function port(s)
  local n = s:match("^%d+$") and tonumber(s)
  if not n or n > 65535 then
    return nil, "bad --port " .. common.output.show(s, common.secrets()) .. " (an integer 0-65535)"
  end
  return n
end

local function dir_option(cmd)
  cmd:option("--dir", "The sandbox's directory."):argname("D"):overwrite(false)
  cmd:epilog(EPILOG)
end

local function run(args)
  local server = require "flowmusic.sandbox.server"
  local sub = args.subcommand
  local opts = { dir = args.dir }
  if sub == "start" then
    opts.port, opts.token = args.port, args.token
    local base, pid, info = server.start(opts)
    if not base then
      common.say("sandbox", pid)
      return common.FAILED
    end
    io.stderr:write(string.format("sandbox running: pid %d, dir %s, %s\n", pid, common.clean(info.dir),
      token_note(server, info.token)))
    io.stdout:write(base, "\n")
    return common.OK
  elseif sub == "stop" then
    local ok, serr = server.stop(opts)
    if not ok then
      common.say("sandbox", serr)
      return common.FAILED
    end
    io.stderr:write("sandbox stopped\n")
    return common.OK
  else
    local running, info = server.status(opts)
    if not running then
      io.stdout:write("not running (dir ", common.clean(info.dir), ")\n")
      return common.FAILED
    end
    io.stdout:write(string.format("running: pid %d, dir %s, %s\n%s\n", info.pid, common.clean(info.dir),
      token_note(server, info.token), info.base_url))
    return common.OK
  end
end

return {
  name = "sandbox",
  configure = function(cmd)
    cmd:description(DESCRIPTION)
    cmd:epilog(EPILOG)
    cmd:command_target("subcommand")
    local start = cmd:command("start"):summary("Start it in the background; prints the base URL as the last line.")
    start:description([[
Start the sandbox in the background; prints the base URL as the last line on stdout
(pid, directory and token go to stderr).]])
    start:option("--port", "Port to listen on (0 or none: a free port)."):argname("N")
      :overwrite(false):convert(port)
    start:option("--token", "The API token it accepts (default user:1-sandbox).")
      :argname("T"):overwrite(false)
    dir_option(start)
    dir_option(cmd:command("stop"):summary("Stop it (SIGTERM, then SIGKILL after 5 s)."))
    dir_option(cmd:command("status"):summary("Tell whether it runs (exit 0) or not (exit 1)."))
  end,
  run = run,
}
