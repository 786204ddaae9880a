--- Host-side helpers shared by the sandbox launcher and the spec helpers that start nginx:
-- shell commands, files, free ports and process checks. Pure Lua (5.1-5.4) plus LuaSocket;
-- never loaded inside nginx.
-- @module flowmusic.sandbox.host
local socket = require "socket"

local M = {}

--- Quote a string for /bin/sh (flowmusic.files holds the rule).
M.shell_quote = require("flowmusic.files").shell_quote

--- Run a shell command; true when it exited with status 0 (Lua 5.1 and 5.2+ conventions).
function M.run(cmd)
  return require("flowmusic.files").execute(cmd) == 0
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

--- A fresh private directory under $TMPDIR (else /tmp) named after what uses it; raises
-- when mktemp fails.
-- @param name e.g. "flowmusic-sandbox-spec"
function M.temp_dir(name)
  local tmp = os.getenv("TMPDIR")
  if not tmp or tmp == "" then tmp = "/tmp" end
  local dir = M.capture("mktemp -d " .. M.shell_quote(tmp .. "/" .. name .. ".XXXXXX")):match("[^\n]+")
  assert(dir, "mktemp -d failed")
  return dir
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

--- The numeric user id of this process.
-- @treturn number
function M.uid()
  return tonumber(M.capture("id -u"):match("%d+")) or 0
end

--- lstat of several paths in one shell call (symbolic links are not followed).
-- @tparam {string,...} paths
-- @treturn table path → `{type=, uid=, mode=, nlink=}` for the paths that exist; `type` is
-- `"directory"`, `"file"`, `"symlink"` or `"other"`; `mode` holds the permission and sticky bits
function M.lstat(paths)
  if #paths == 0 then return {} end
  local quoted = {}
  for i, p in ipairs(paths) do quoted[i] = M.shell_quote(p) end
  local out = M.capture("for p in " .. table.concat(quoted, " ")
    .. "; do stat -c '%u %a %h %F' -- \"$p\" 2>/dev/null || echo missing; done")
  local result, i = {}, 0
  for line in out:gmatch("[^\n]+") do
    i = i + 1
    local uid, mode, nlink, kind = line:match("^(%d+) (%x+) (%d+) (.+)$")
    if uid and paths[i] then
      result[paths[i]] = {
        uid = tonumber(uid), mode = tonumber(mode, 8), nlink = tonumber(nlink),
        type = (kind == "directory" and "directory") or (kind == "symbolic link" and "symlink")
          or (kind:find("regular", 1, true) and "file") or "other",
      }
    end
  end
  return result
end

--- Facts about a process from /proc: `{state=, uid=, euid=, ppid=, cmdline=}`, or nil when
-- there is none. `cmdline` has its NUL separators turned into spaces.
-- @tparam number pid
-- @treturn table|nil
function M.process(pid)
  if type(pid) ~= "number" or pid < 1 or pid ~= math.floor(pid) then return nil end
  local status = M.read_file("/proc/" .. string.format("%d", pid) .. "/status")
  if not status then return nil end
  local ruid, euid = status:match("\nUid:%s+(%d+)%s+(%d+)")
  return {
    state = status:match("\nState:%s+(%a)"),
    uid = tonumber(ruid), euid = tonumber(euid),
    ppid = tonumber(status:match("\nPPid:%s+(%d+)")),
    cmdline = (M.read_file("/proc/" .. string.format("%d", pid) .. "/cmdline") or ""):gsub("%z", " "),
  }
end

-- Whether a process has `path` open (one of the links in /proc/<pid>/fd).
local function has_open(pid, path)
  local out = M.capture("readlink /proc/" .. string.format("%d", pid) .. "/fd/* 2>/dev/null")
  for line in out:gmatch("[^\n]+") do
    if line == path or line == path .. " (deleted)" then return true end
  end
  return false
end

--- Whether `pid` is the nginx of the sandbox in `dir`, owned by this user (real and effective
-- uid): the master started by the launcher (`-c <dir>/nginx.conf` on its command line) or,
-- with `role = "worker"`, a worker process; either way holding `<dir>/error.log` open.
-- Anything else (another user's process, a recycled pid, another nginx, a process that only
-- names itself like the master) is not, so `stop` never signals it.
-- @tparam number|nil pid
-- @tparam string dir absolute directory, no trailing slash
-- @tparam[opt] string role `"master"` (default) or `"worker"`
-- @treturn boolean
-- @treturn string|nil why not (for messages)
function M.is_sandbox_nginx(pid, dir, role)
  local p = pid and M.process(pid)
  if not p or p.state == "Z" or p.state == "X" then return false, "not running" end
  local me = M.uid()
  if p.uid ~= me or p.euid ~= me then return false, "owned by another user" end
  if not p.cmdline:find("nginx", 1, true) then return false, "not an nginx process" end
  if role == "worker" then
    if not p.cmdline:find("worker process", 1, true) then return false, "not an nginx worker" end
    if not has_open(pid, dir .. "/error.log") then return false, "not a worker of this sandbox" end
    return true
  end
  if not (p.cmdline .. " "):find(" -c " .. dir .. "/nginx.conf ", 1, true) then
    return false, "not the nginx started for " .. dir
  end
  if not has_open(pid, dir .. "/error.log") then return false, "does not log to " .. dir .. "/error.log" end
  return true
end

return M
