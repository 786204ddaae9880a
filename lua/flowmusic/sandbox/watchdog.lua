--- Stops the sandbox when the process that started it (e.g. a test run) is gone.
-- The launcher passes `watch_pid` and its start time (field 22 of /proc/<pid>/stat); a
-- timer in the worker checks every second and sends SIGTERM to the nginx master when the
-- process no longer exists, is a zombie, or is a different process with a reused pid.
-- @module flowmusic.sandbox.watchdog

local ffi = require "ffi"

local M = {}

pcall(ffi.cdef, "int kill(int pid, int sig);")
pcall(ffi.cdef, "unsigned int umask(unsigned int mask);")

local SIGTERM = 15

--- Read state and start time of a process from /proc.
-- @tparam number pid
-- @treturn string|nil state letter
-- @treturn string|nil start time in clock ticks
function M.proc_info(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local after = s and s:match("^.*%)%s+(.*)$") -- skip "pid (comm)", comm may hold spaces
  if not after then return nil end
  local fields = {}
  for w in after:gmatch("%S+") do fields[#fields + 1] = w end
  return fields[1], fields[20]
end

--- Whether the watched process is still the one we were started for.
-- @tparam number pid
-- @tparam[opt] string start
-- @treturn boolean
function M.alive(pid, start)
  local state, started = M.proc_info(pid)
  if not state or state == "Z" or state == "X" then return false end
  return start == nil or start == started
end

-- The nginx master's pid.
local function master_pid(dir)
  local ok, process = pcall(require, "ngx.process")
  local pid = ok and process.get_master_pid and process.get_master_pid()
  if pid then return pid end
  local f = io.open(dir .. "/nginx.pid", "r")
  pid = f and tonumber(f:read("*l"))
  if f then f:close() end
  return pid
end

--- Start the watchdog for this worker (no-op without `config.watch_pid`); also sets the
-- worker's umask to 077 and writes `<dir>/worker.pid` (mode 0600) so the launcher can clean
-- up a worker whose master was killed.
-- @tparam table config `{dir=, watch_pid=?, watch_start=?}`
function M.start(config)
  -- nginx resets the umask to 0 when it daemonizes: what this worker creates is private again.
  ffi.C.umask(63) -- 0077
  if config.dir then
    local f = io.open(config.dir .. "/worker.pid", "w")
    if f then
      f:write(ngx.worker.pid(), "\n")
      f:close()
    end
  end
  if not config.watch_pid then return end
  local fired = false
  local function check(premature)
    if premature or fired then return end
    if not M.alive(config.watch_pid, config.watch_start) then
      fired = true
      local pid = master_pid(config.dir)
      ngx.log(ngx.NOTICE, "flowmusic sandbox: watched process ", config.watch_pid,
              " is gone; stopping nginx master ", pid)
      if pid then ffi.C.kill(pid, SIGTERM) end
    end
  end
  local ok, err = ngx.timer.every(1, check)
  if not ok then ngx.log(ngx.ERR, "flowmusic sandbox: watchdog timer: ", err) end
end

return M
