--- Launcher of the sandbox: writes an nginx configuration into a private prefix directory
-- and runs Debian's nginx with the lua module on it. Pure Lua (5.1-5.4) plus LuaSocket;
-- it does not run inside nginx.
--
-- Misuse (unknown option keys, wrong types) raises; failures of the world return `nil, err`.
-- @module flowmusic.sandbox.server

local socket = require "socket"

local M = { _VERSION = "0.1.0" }

--- The API token the sandbox accepts unless told otherwise.
M.DEFAULT_TOKEN = "user:1-sandbox"

--- nginx binary and module directory (Debian paths); override per call with
-- `nginx=` / `modules=` or with `FLOWMUSIC_SANDBOX_NGINX` / `FLOWMUSIC_SANDBOX_MODULES`.
M.NGINX = os.getenv("FLOWMUSIC_SANDBOX_NGINX") or "/usr/sbin/nginx"
M.MODULES = os.getenv("FLOWMUSIC_SANDBOX_MODULES") or "/usr/lib/nginx/modules"

local START_TIMEOUT = 5 -- seconds to wait for the sandbox to answer
local STOP_TIMEOUT = 5  -- seconds to wait for it to exit after SIGTERM

-- Quote a string for /bin/sh.
local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run a shell command; true when it exited with status 0 (Lua 5.1 and 5.2+ conventions).
local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

-- Output of a shell command.
local function capture(cmd)
  local p = io.popen(cmd, "r")
  if not p then return "" end
  local s = p:read("*a") or ""
  p:close()
  return s
end

-- Whole content of a file, or nil.
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Write a file; true or nil, err.
local function write_file(path, s)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(s)
  f:close()
  return true
end

-- Check an option table strictly.
local function check_opts(opts, allowed, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(fname .. ": options must be a table", 3) end
  for k, v in pairs(opts) do
    local want = allowed[k]
    if not want then error(fname .. ": unknown option '" .. tostring(k) .. "'", 3) end
    if type(v) ~= want then
      error(fname .. ": option '" .. k .. "' must be a " .. want .. ", got " .. type(v), 3)
    end
  end
  return opts
end

--- The numeric user id of this process.
-- @treturn string
function M.uid()
  return capture("id -u"):match("%d+") or "0"
end

--- The default prefix directory: `${TMPDIR:-/tmp}/flowmusic-sandbox-<uid>`.
-- @treturn string
function M.default_dir()
  local tmp = os.getenv("TMPDIR")
  if not tmp or tmp == "" then tmp = "/tmp" end
  return (tmp:gsub("/+$", "")) .. "/flowmusic-sandbox-" .. M.uid()
end

-- Make a path absolute against the current directory.
local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local cwd = capture("pwd"):gsub("%s+$", "")
  return ((cwd .. "/" .. path):gsub("/%./", "/"))
end

-- Find a module file on package.path (package.searchpath is missing in Lua 5.1).
local function search(name)
  if package.searchpath then return package.searchpath(name, package.path) end
  local file = name:gsub("%.", "/")
  for template in package.path:gmatch("[^;]+") do
    local path = template:gsub("%?", file)
    local f = io.open(path, "r")
    if f then f:close() return path end
  end
  return nil
end

--- The directory that holds `flowmusic/sandbox/*.lua` (absolute).
-- @treturn string|nil dir, or `nil, err`
function M.lua_dir()
  local path = search("flowmusic.sandbox.handler")
  if not path then return nil, "flowmusic.sandbox.handler not found on package.path" end
  local dir = path:match("^(.*)/flowmusic/sandbox/handler%.lua$")
  if not dir then return nil, "unexpected location of the sandbox handler: " .. path end
  return absolute(dir)
end

--- State letter and start time of a process, from /proc/<pid>/stat.
-- @tparam number pid
-- @treturn string|nil state, start time (clock ticks)
function M.proc_info(pid)
  local s = read_file("/proc/" .. pid .. "/stat")
  local after = s and s:match("^.*%)%s+(.*)$")
  if not after then return nil end
  local fields = {}
  for w in after:gmatch("%S+") do fields[#fields + 1] = w end
  return fields[1], fields[20]
end

-- Whether pid is a live (non-zombie) nginx process.
local function nginx_alive(pid)
  if not pid then return false end
  local state = M.proc_info(pid)
  if not state or state == "Z" or state == "X" then return false end
  local cmd = read_file("/proc/" .. pid .. "/cmdline") or ""
  return cmd:find("nginx", 1, true) ~= nil
end

-- The pid stored in a pid file.
local function read_pid(path)
  local s = read_file(path)
  return s and tonumber(s:match("%d+"))
end

-- key=value lines of <dir>/sandbox.info.
local function read_info(dir)
  local s = read_file(dir .. "/sandbox.info")
  if not s then return nil end
  local info = {}
  for k, v in s:gmatch("([%w_]+)=([^\n]*)") do info[k] = v end
  info.port = tonumber(info.port)
  return info
end

-- Last lines of the error log.
local function log_tail(dir)
  local s = read_file(dir .. "/error.log") or ""
  local lines = {}
  for line in s:gmatch("[^\n]+") do lines[#lines + 1] = line end
  local from = math.max(1, #lines - 15)
  local out = {}
  for i = from, #lines do out[#out + 1] = lines[i] end
  return table.concat(out, "\n")
end

-- A free TCP port on the loopback interface.
local function free_port()
  local server = socket.bind("127.0.0.1", 0)
  if not server then return nil end
  local _, port = server:getsockname()
  server:close()
  return tonumber(port)
end

-- Whether the sandbox answers GET /__sandbox/health with 200.
local function healthy(port, timeout)
  local c = socket.tcp()
  c:settimeout(timeout or 0.5)
  local ok = c:connect("127.0.0.1", port)
  if not ok then c:close() return false end
  c:send("GET /__sandbox/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
  local line = c:receive("*l")
  c:close()
  return line ~= nil and line:match("^HTTP/1%.%d 200") ~= nil
end

-- Characters that cannot go into the generated nginx.conf / Lua config safely.
local function bad_path(p)
  return p:find('[%c"\\%$;{}\']') ~= nil
end

-- The generated nginx.conf.
local function nginx_conf(o)
  local d = o.dir
  local lua_path = table.concat({ o.lua_dir .. "/?.lua", o.lua_dir .. "/?/init.lua",
    "/usr/share/lua/5.1/?.lua", "/usr/share/lua/5.1/?/init.lua", ";" }, ";")
  return table.concat({
    "# generated by flowmusic.sandbox.server; rewritten on every start",
    'load_module "' .. o.modules .. '/ndk_http_module.so";',
    'load_module "' .. o.modules .. '/ngx_http_lua_module.so";',
    o.root and "user root root;" or "",
    "daemon on;",
    "master_process on;",
    "worker_processes 1;",
    'pid "' .. d .. '/nginx.pid";',
    'error_log "' .. d .. '/error.log" notice;',
    "events { worker_connections 4096; }",
    "http {",
    '  access_log "' .. d .. '/access.log";',
    "  default_type application/json;",
    "  server_tokens off;",
    '  client_body_temp_path "' .. d .. '/tmp/body";',
    '  proxy_temp_path "' .. d .. '/tmp/proxy";',
    '  fastcgi_temp_path "' .. d .. '/tmp/fastcgi";',
    '  uwsgi_temp_path "' .. d .. '/tmp/uwsgi";',
    '  scgi_temp_path "' .. d .. '/tmp/scgi";',
    "  client_body_buffer_size 8m;",
    "  client_max_body_size 8m;",
    "  keepalive_timeout 60s;",
    "  keepalive_requests 1000000;",
    "  lua_shared_dict flowmusic_sandbox 32m;",
    "  lua_shared_dict flowmusic_sandbox_requests 16m;",
    '  lua_package_path "' .. lua_path .. '";',
    "  lua_check_client_abort on;",
    "  lua_socket_log_errors off;",
    "  init_by_lua_block { require(\"flowmusic.sandbox.handler\").init(\"" .. d .. "/sandbox-config.lua\") }",
    "  init_worker_by_lua_block { require(\"flowmusic.sandbox.handler\").init_worker() }",
    "  server {",
    "    listen 127.0.0.1:" .. o.port .. " backlog=1024;",
    o.tls_port and ("    listen 127.0.0.1:" .. o.tls_port .. " ssl;") or "",
    o.tls_port and ('    ssl_certificate "' .. o.tls_cert .. '";') or "",
    o.tls_port and ('    ssl_certificate_key "' .. o.tls_key .. '";') or "",
    "    location = /__sandbox_reset_connection { internal; reset_timedout_connection on; return 444; }",
    "    location / { content_by_lua_block { require(\"flowmusic.sandbox.handler\").handle() } }",
    "  }",
    "}",
    "",
  }, "\n")
end

--- Whether a sandbox runs in a directory.
-- @tparam[opt] table opts `{dir=}` (default `default_dir()`)
-- @treturn boolean running
-- @treturn table info `{dir=, pid=, port=, base_url=, root=, token=}` (only `dir` when not running)
function M.status(opts)
  opts = check_opts(opts, { dir = "string" }, "status")
  local dir = opts.dir or M.default_dir()
  local pid = read_pid(dir .. "/nginx.pid")
  local info = read_info(dir)
  if not (pid and info and nginx_alive(pid)) then return false, { dir = dir } end
  info.pid, info.dir = pid, dir
  return true, info
end

--- Stop the sandbox of a directory: SIGTERM to the master, wait, then SIGKILL if needed.
-- @tparam[opt] table opts `{dir=, pid=, remove=bool}`; `pid` is the master's pid when known
-- (else read from `<dir>/nginx.pid`); `remove` deletes the directory afterwards
-- @treturn true, or `nil, err` (e.g. nothing was running)
function M.stop(opts)
  opts = check_opts(opts, { dir = "string", pid = "number", remove = "boolean" }, "stop")
  local dir = opts.dir or M.default_dir()
  local pid = opts.pid or read_pid(dir .. "/nginx.pid")
  local worker = read_pid(dir .. "/worker.pid")
  local was = nginx_alive(pid)
  if was then
    run("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = socket.gettime() + STOP_TIMEOUT
    while nginx_alive(pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    if nginx_alive(pid) then run("kill -KILL " .. pid .. " 2>/dev/null") end
  end
  if nginx_alive(worker) then -- a worker orphaned by a killed master
    was = true
    run("kill -KILL " .. worker .. " 2>/dev/null")
  end
  os.remove(dir .. "/sandbox.info")
  os.remove(dir .. "/worker.pid")
  if opts.remove then run("rm -rf " .. shell_quote(dir)) end
  if not was then return nil, "no sandbox running in " .. dir end
  return true
end

--- Start a sandbox.
-- @tparam[opt] table opts
--   `port` (0/nil: a free port), `token` (default `user:1-sandbox`), `dir` (prefix directory,
--   created if missing; default `default_dir()`), `watch_pid` (stop by itself once this
--   process is gone), `nginx`, `modules` (binary / module directory)
-- @treturn string base URL `http://127.0.0.1:PORT/v1/flowmusic`, or `nil, err`
-- @treturn number the nginx master pid
-- @treturn table info `{dir=, pid=, port=, base_url=, root=, token=}`
function M.start(opts)
  opts = check_opts(opts, { port = "number", token = "string", dir = "string", watch_pid = "number",
                            nginx = "string", modules = "string", tls_cert = "string",
                            tls_key = "string" }, "start")
  if (opts.tls_cert == nil) ~= (opts.tls_key == nil) then error("start: tls_cert and tls_key go together", 2) end
  if opts.tls_cert and (bad_path(opts.tls_cert) or bad_path(opts.tls_key)) then
    return nil, "unsupported characters in the TLS file paths"
  end
  local port = opts.port or 0
  if port ~= math.floor(port) or port < 0 or port > 65535 then error("start: bad port " .. port, 2) end
  local token = opts.token or M.DEFAULT_TOKEN
  if token == "" then error("start: token must not be empty", 2) end
  local dir = absolute(opts.dir or M.default_dir()):gsub("/+$", "")
  if bad_path(dir) then return nil, "unsupported characters in sandbox directory " .. dir end
  local running, info = M.status({ dir = dir })
  if running then
    return nil, "a sandbox is already running in " .. dir .. " (pid " .. info.pid .. ") at " .. info.base_url
  end
  local lua_dir, err = M.lua_dir()
  if not lua_dir then return nil, err end
  if bad_path(lua_dir) then return nil, "unsupported characters in module directory " .. lua_dir end
  if not run("mkdir -p " .. shell_quote(dir .. "/tmp")) then return nil, "cannot create " .. dir end
  M.stop({ dir = dir }) -- leftovers of a crashed run

  local watch_start
  if opts.watch_pid then
    local state
    state, watch_start = M.proc_info(opts.watch_pid)
    if not state then return nil, "no process " .. opts.watch_pid .. " to watch" end
  end
  local ok
  ok, err = write_file(dir .. "/sandbox-config.lua", string.format(
    "return { token = %q, dir = %q, watch_pid = %s, watch_start = %s }\n", token, dir,
    opts.watch_pid and string.format("%d", opts.watch_pid) or "nil",
    watch_start and string.format("%q", watch_start) or "nil"))
  if not ok then return nil, err end

  local nginx, modules = opts.nginx or M.NGINX, opts.modules or M.MODULES
  local root = M.uid() == "0"
  local attempts = (port == 0) and 5 or 1
  for attempt = 1, attempts do
    local p = port ~= 0 and port or free_port()
    if not p then return nil, "no free port" end
    -- With a certificate, a second listener serves the same API over TLS.
    local tls_port = opts.tls_cert and free_port()
    write_file(dir .. "/nginx.conf", nginx_conf({ dir = dir, lua_dir = lua_dir, port = p,
                                                  modules = modules, root = root, tls_port = tls_port,
                                                  tls_cert = opts.tls_cert, tls_key = opts.tls_key }))
    os.remove(dir .. "/nginx.pid")
    write_file(dir .. "/error.log", "")
    -- nginx never inherits a preloaded library (the sanitizer run of the specs preloads
    -- ASan into the Lua process only).
    local started = run(table.concat({ "env -u LD_PRELOAD", shell_quote(nginx), "-p", shell_quote(dir .. "/"), "-c",
      shell_quote(dir .. "/nginx.conf"), "-e", shell_quote(dir .. "/error.log"),
      ">>", shell_quote(dir .. "/error.log"), "2>&1" }, " "))
    if started then
      local deadline = socket.gettime() + START_TIMEOUT
      local pid
      repeat
        pid = pid or read_pid(dir .. "/nginx.pid")
        if pid and healthy(p) then
          local base = "http://127.0.0.1:" .. p
          local out = { dir = dir, pid = pid, port = p, root = base, base_url = base .. "/v1/flowmusic",
                        token = token,
                        tls_base_url = tls_port and ("https://127.0.0.1:" .. tls_port .. "/v1/flowmusic") }
          write_file(dir .. "/sandbox.info", string.format(
            "pid=%d\nport=%d\nroot=%s\nbase_url=%s\ntoken=%s\n", pid, p, out.root, out.base_url,
            (token:gsub("\n", " "))))
          return out.base_url, pid, out
        end
        socket.sleep(0.02)
      until socket.gettime() > deadline
      local tail = log_tail(dir)
      M.stop({ dir = dir })
      return nil, "sandbox did not answer within " .. START_TIMEOUT .. " s; error log:\n" .. tail
    end
    local tail = log_tail(dir)
    if not (port == 0 and tail:find("in use", 1, true) and attempt < attempts) then
      return nil, "nginx failed to start; error log:\n" .. tail
    end
  end
  return nil, "nginx failed to start"
end

return M
