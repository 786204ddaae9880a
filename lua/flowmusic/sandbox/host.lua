--- Host-side helpers shared by the sandbox launcher and the spec helpers that start nginx:
-- shell commands, files, free ports and process checks. Pure Lua (5.1-5.4) plus LuaSocket;
-- never loaded inside nginx.
-- @module flowmusic.sandbox.host
local socket = require "socket"

local M = {}

--- Quote a string for /bin/sh.
function M.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Run a shell command; true when it exited with status 0 (Lua 5.1 and 5.2+ conventions).
function M.run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

--- Output of a shell command ("" when it can't start).
function M.capture(cmd)
  local p = io.popen(cmd, "r")
  if not p then return "" end
  local s = p:read("*a") or ""
  p:close()
  return s
end

--- Whole content of a file, or nil.
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- Write a file; true or nil, err.
function M.write_file(path, s)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(s)
  f:close()
  return true
end

--- A free TCP port on the loopback interface (bound, then released), or nil.
function M.free_port()
  local server = socket.bind("127.0.0.1", 0)
  if not server then return nil end
  local _, port = server:getsockname()
  server:close()
  return tonumber(port)
end

--- State letter and start time of a process, from /proc/<pid>/stat.
-- @treturn string|nil state, start time (clock ticks)
function M.proc_info(pid)
  local s = M.read_file("/proc/" .. pid .. "/stat")
  local after = s and s:match("^.*%)%s+(.*)$")
  if not after then return nil end
  local fields = {}
  for w in after:gmatch("%S+") do fields[#fields + 1] = w end
  return fields[1], fields[20]
end

--- Whether pid is a live (non-zombie) nginx process.
function M.nginx_alive(pid)
  if not pid then return false end
  local state = M.proc_info(pid)
  if not state or state == "Z" or state == "X" then return false end
  local cmd = M.read_file("/proc/" .. pid .. "/cmdline") or ""
  return cmd:find("nginx", 1, true) ~= nil
end

--- The pid stored in a pid file, or nil.
function M.read_pid(path)
  local s = M.read_file(path)
  return s and tonumber(s:match("%d+"))
end

return M
