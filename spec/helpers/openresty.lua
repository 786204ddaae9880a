--- Spec helper: run nginx (Debian nginx-core + libnginx-mod-http-lua) on a given
-- configuration in a private prefix directory, on a free loopback port, and drive it over
-- HTTP. Pure Lua (5.1-5.4) + LuaSocket + the curl CLI; the flowmusic client only runs
-- inside that nginx.
--
--     local openresty = require "spec.helpers.openresty"
--     local ngx_srv = openresty.start { conf = text, env = { USEAPI_TOKEN = "..." } }
--     local status, body, headers = ngx_srv:get("/accounts")
--     ngx_srv:stop()  -- SIGTERM to the master by pid, idempotent, removes the directory
--
-- In `conf`, `@PREFIX@` and `@PORT@` are replaced; the directory has logs/ and tmp/.
-- The workers run as the invoking user: a `user` directive in `conf` is replaced by
-- `M.user_directive()` (or that is added), so a repository nginx's default worker user can't
-- read (a clone under a 0700 /root) still works.
-- Instances also stop when the spec process ends (`stop_all` from a __gc sentinel) and,
-- when the configuration calls `@WATCHDOG@` in init_worker, when it is killed.
-- @module spec.helpers.openresty

local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local server = require "flowmusic.sandbox.server"
local host = require "flowmusic.sandbox.host"

local M = {}

M.NGINX = server.NGINX
M.MODULES = server.MODULES

local START_TIMEOUT, STOP_TIMEOUT = 5, 5
local live = require("spec.helpers.live").new() -- started, not yet stopped

local q, run, capture, free_port = host.shell_quote, host.run, host.capture, host.free_port
local function write_file(path, s) assert(host.write_file(path, s)) end

--- Whole file or nil.
M.read_file = host.read_file

--- Absolute path of the repository (the directory holding lua/flowmusic/init.lua).
function M.repo_dir()
  local cwd = capture("pwd"):gsub("%s+$", "")
  return cwd
end

--- The `user` directive that runs nginx's workers as the invoking user and group: when the
-- master starts as root, workers otherwise switch to `nobody` (or the conf's user), who may not
-- be able to read lua_package_path. "" when not root (nginx then ignores `user`, with a warning).
-- @treturn string
function M.user_directive()
  if server.uid() ~= "0" then return "" end
  local user = capture("id -un"):gsub("%s+$", "")
  local group = capture("id -gn"):gsub("%s+$", "")
  assert(user ~= "" and group ~= "", "id -un / id -gn failed")
  return "user " .. user .. " " .. group .. ";"
end

-- conf with its main-context `user` directive replaced by (or else preceded by) ours.
local function with_user(conf)
  local directive = M.user_directive()
  local n
  conf, n = ("\n" .. conf):gsub("\nuser[ \t][^;\n]*;", "\n" .. directive)
  conf = conf:sub(2)
  if n == 0 and directive ~= "" then conf = directive .. "\n" .. conf end
  return conf
end

--- Pid of this process (the spec runner) and its start time, for the nginx-side watchdog.
function M.self_pid()
  local s = assert(M.read_file("/proc/self/stat"))
  local pid = tonumber(s:match("^(%d+)"))
  local _, start = server.proc_info(pid)
  return pid, start
end

-- Whether pid is a live (non-zombie) nginx process.
local alive = host.nginx_alive
M.alive = alive

local Instance = {}
Instance.__index = Instance

--- Start nginx on a configuration.
-- @tparam table opts `conf` (text with @PREFIX@ / @PORT@), `env` (table of variables for
--   nginx; only those named by `env` directives reach the workers)
-- @return instance `{pid=, port=, dir=, root=}`; raises when it cannot start
function M.start(opts)
  local dir = capture("mktemp -d /tmp/flowmusic-openresty-spec.XXXXXX"):gsub("%s+$", "")
  assert(dir ~= "", "mktemp failed")
  assert(run("mkdir -p " .. q(dir .. "/logs") .. " " .. q(dir .. "/tmp")))
  local envs = {}
  for k, v in pairs(opts.env or {}) do envs[#envs + 1] = k .. "=" .. q(v) end
  local last_log
  for _ = 1, 5 do
    local port = free_port()
    local conf = with_user(opts.conf):gsub("@PREFIX@", dir):gsub("@PORT@", tostring(port))
    write_file(dir .. "/nginx.conf", conf)
    write_file(dir .. "/logs/error.log", "")
    -- never LD_PRELOAD: the sanitizer run preloads ASan into the spec process only; nor the
    -- spec's LUA_PATH/LUA_CPATH (for another Lua): LuaJIT would take them as ";;"
    local cmd = table.concat({ "env -u LD_PRELOAD -u LUA_PATH -u LUA_CPATH", table.concat(envs, " "),
      q(M.NGINX), "-p", q(dir .. "/"), "-c", q(dir .. "/nginx.conf"), "-e", q(dir .. "/logs/error.log"),
      ">>", q(dir .. "/logs/error.log"), "2>&1" }, " ")
    if run(cmd) then
      local deadline = socket.gettime() + START_TIMEOUT
      repeat
        local pid = tonumber((M.read_file(dir .. "/logs/nginx.pid") or ""):match("%d+"))
        local c = socket.tcp()
        c:settimeout(0.2)
        local ok = pid and c:connect("127.0.0.1", port)
        c:close()
        if ok then
          local inst = setmetatable({ pid = pid, port = port, dir = dir,
            root = "http://127.0.0.1:" .. port }, Instance)
          live.add(inst)
          return inst
        end
        socket.sleep(0.02)
      until socket.gettime() > deadline
      last_log = M.read_file(dir .. "/logs/error.log")
      local pid = tonumber((M.read_file(dir .. "/logs/nginx.pid") or ""):match("%d+"))
      if alive(pid) then run("kill -KILL " .. pid) end
      break
    end
    last_log = M.read_file(dir .. "/logs/error.log") or ""
    if not last_log:find("in use", 1, true) then break end
  end
  run("rm -rf " .. q(dir))
  error("nginx did not start; error log:\n" .. tostring(last_log), 2)
end

--- Stop every instance still running.
M.stop_all = live.stop_all
M._sentinel = live.sentinel

--- The error log so far.
function Instance:error_log()
  return M.read_file(self.dir .. "/logs/error.log") or ""
end

--- Stop (SIGTERM to the master by pid, then SIGKILL; also an orphaned worker) and remove
-- the directory unless `keep`. Idempotent.
-- @return true when nothing of it is left running
function Instance:stop(keep)
  if self.stopped then return true end
  self.stopped = true
  live.remove(self)
  local worker = tonumber((M.read_file(self.dir .. "/worker.pid") or ""):match("%d+"))
  if alive(self.pid) then
    run("kill -TERM " .. self.pid)
    local deadline = socket.gettime() + STOP_TIMEOUT
    while alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    if alive(self.pid) then run("kill -KILL " .. self.pid) end
  end
  if alive(worker) then run("kill -KILL " .. worker) end
  if not keep then run("rm -rf " .. q(self.dir)) end
  return not alive(self.pid) and not alive(worker)
end

--- GET (or another method) with LuaSocket.
-- @return status, body, headers (or nil, err)
function Instance:request(method, path, timeout)
  local chunks = {}
  local old = http.TIMEOUT
  http.TIMEOUT = timeout or 10
  local ok, code, headers = http.request { url = self.root .. path, method = method,
    sink = ltn12.sink.table(chunks) }
  http.TIMEOUT = old
  if not ok then return nil, code end
  return code, table.concat(chunks), headers
end

function Instance:get(path, timeout) return self:request("GET", path, timeout) end

--- One slow request (in the background) and `n` fast ones at once (curl --parallel),
-- all against this instance.
-- @tparam string slow_path
-- @tparam string fast_path
-- @tparam number n
-- @tparam number head_start seconds between starting the slow one and the fast ones
-- @return table `{slow_start, slow_end, slow_code, fast_start, fast_end, fast_codes={...}}`
--   (times in seconds since the epoch, from `date +%s.%N`)
function Instance:slow_and_fast(slow_path, fast_path, n, head_start)
  local d = self.dir
  local fast = {}
  for _ = 1, n do fast[#fast + 1] = "-o /dev/null " .. q(self.root .. fast_path) end
  local script = table.concat({
    "cd " .. q(d),
    "date +%s.%N > slow.start",
    "( curl -s -o slow.body -w '%{http_code}' --max-time 20 " .. q(self.root .. slow_path)
      .. " > slow.code; date +%s.%N > slow.end ) &",
    "sleep " .. string.format("%.3f", head_start),
    "date +%s.%N > fast.start",
    "curl -s -S --no-progress-meter --parallel --parallel-max " .. n .. " --max-time 20 -w '%{http_code}\\n' "
      .. table.concat(fast, " ") .. " > fast.codes",
    "date +%s.%N > fast.end",
    "wait",
  }, "\n")
  write_file(d .. "/race.sh", script .. "\n")
  run("sh " .. q(d .. "/race.sh"))
  local function num(name) return tonumber((M.read_file(d .. "/" .. name) or ""):match("[%d.]+")) end
  local codes = {}
  for c in (M.read_file(d .. "/fast.codes") or ""):gmatch("%d+") do codes[#codes + 1] = tonumber(c) end
  return { slow_start = num("slow.start"), slow_end = num("slow.end"), slow_code = num("slow.code"),
           slow_body = M.read_file(d .. "/slow.body"),
           fast_start = num("fast.start"), fast_end = num("fast.end"), fast_codes = codes }
end

return M
