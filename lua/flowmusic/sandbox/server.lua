--- Launcher of the sandbox: writes an nginx configuration into a private prefix directory
-- and runs Debian's nginx with the lua module on it. Pure Lua (5.1-5.4) plus LuaSocket;
-- it does not run inside nginx.
--
-- Misuse (unknown option keys, wrong types) raises; failures of the world return `nil, err`.
-- @module flowmusic.sandbox.server

local socket = require "socket"
local host = require "flowmusic.sandbox.host"

local shell_quote, run, capture = host.shell_quote, host.run, host.capture
local read_file, write_file, free_port = host.read_file, host.write_file, host.free_port
local read_pid, lstat, is_sandbox_nginx = host.read_pid, host.lstat, host.is_sandbox_nginx

local M = { _VERSION = require("flowmusic.defaults").VERSION }

--- State and start time of a process (see flowmusic.sandbox.host).
M.proc_info = host.proc_info

--- The API token the sandbox accepts unless told otherwise.
M.DEFAULT_TOKEN = "user:1-sandbox"

--- nginx binary and module directory (Debian paths); override per call with
-- `nginx=` / `modules=` or with `FLOWMUSIC_SANDBOX_NGINX` / `FLOWMUSIC_SANDBOX_MODULES`.
-- A module directory of `builtin` (or an nginx whose `nginx -V` shows the lua module compiled
-- in, as OpenResty's does) means no `load_module` lines.
M.NGINX = os.getenv("FLOWMUSIC_SANDBOX_NGINX") or "/usr/sbin/nginx"
M.MODULES = os.getenv("FLOWMUSIC_SANDBOX_MODULES") or "/usr/lib/nginx/modules"

--- Files the launcher and nginx keep in the sandbox directory, and its directories.
M.FILES = { "nginx.conf", "nginx.pid", "worker.pid", "error.log", "access.log", "sandbox.info",
            "sandbox-config.lua" }
M.DIRS = { "tmp", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi" }

local START_TIMEOUT = 5 -- seconds to wait for the sandbox to answer
local STOP_TIMEOUT = 5  -- seconds to wait for it to exit after SIGTERM

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
  return tostring(host.uid())
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

-- Whether bit n (0 = lowest) of a mode is set (no bit operators in Lua 5.1).
local function bit(mode, n)
  return math.floor(mode / 2 ^ n) % 2 == 1
end

-- Whether a mode lets group or others write.
local function shared_writable(mode)
  return bit(mode, 4) or bit(mode, 1)
end

-- The directories above an absolute path ("/" first), the path itself excluded.
local function ancestors(path, into, seen)
  local acc, parts = "", {}
  for part in path:gmatch("[^/]+") do parts[#parts + 1] = part end
  local function add(p) if not seen[p] then seen[p] = true into[#into + 1] = p end end
  add("/")
  for i = 1, #parts - 1 do
    acc = acc .. "/" .. parts[i]
    add(acc)
  end
end

-- Refuse a directory whose ancestors another user could change: each existing ancestor (as
-- written and as resolved) must belong to root or to us, and a directory others may write to
-- must be sticky (like /tmp). Symbolic links on the way must belong to root or to us too.
local function check_ancestors(dir, me)
  local list, seen = {}, {}
  ancestors(dir, list, seen)
  local resolved = capture("readlink -m -- " .. shell_quote(dir)):gsub("%s+$", "")
  if resolved:sub(1, 1) == "/" then ancestors(resolved, list, seen) end
  local st = lstat(list)
  for _, p in ipairs(list) do
    local s = st[p]
    if s then
      if s.uid ~= 0 and s.uid ~= me then
        return nil, p .. " belongs to another user (uid " .. s.uid .. ")"
      elseif s.type == "directory" then
        if shared_writable(s.mode) and not bit(s.mode, 9) then
          return nil, p .. string.format(" is writable by other users (mode %04o) and not sticky", s.mode)
        end
      elseif s.type ~= "symlink" then
        return nil, p .. " is not a directory"
      end
    end
  end
  return true
end

-- Refuse a sandbox directory that is not a real directory of ours, private to us, or that
-- holds a symbolic link, a hard link or another user's file under a name the sandbox writes.
local function check_dir(dir, me)
  local paths = { dir }
  for _, f in ipairs(M.FILES) do paths[#paths + 1] = dir .. "/" .. f end
  for _, d in ipairs(M.DIRS) do paths[#paths + 1] = dir .. "/" .. d end
  local st = lstat(paths)
  local d = st[dir]
  if not d then return nil, "cannot create " .. dir end
  if d.type == "symlink" then return nil, dir .. " is a symbolic link" end
  if d.type ~= "directory" then return nil, dir .. " is not a directory" end
  if d.uid ~= me then return nil, dir .. " belongs to another user (uid " .. d.uid .. ")" end
  if shared_writable(d.mode) then
    return nil, dir .. string.format(" is writable by other users (mode %04o)", d.mode)
  end
  for i = 2, #paths do
    local p, s = paths[i], st[paths[i]]
    local want = i <= #M.FILES + 1 and "file" or "directory"
    if s then
      if s.type == "symlink" then return nil, p .. " is a symbolic link" end
      if s.type ~= want then return nil, p .. " is not a " .. (want == "file" and "regular file" or want) end
      if s.uid ~= me then return nil, p .. " belongs to another user (uid " .. s.uid .. ")" end
      if want == "file" and s.nlink > 1 then return nil, p .. " has other hard links" end
    end
  end
  return true
end

--- Check a sandbox directory, creating it (mode 0700) when missing.
-- Refused: a directory that is not ours or that group or others may write to; a symbolic link;
-- ancestors that another user controls; symbolic links, hard links or other users' files
-- under the names the sandbox writes (`M.FILES`, `M.DIRS`).
-- @tparam string dir absolute path
-- @treturn true, or `nil, err`
function M.check_dir(dir)
  local me = host.uid()
  local ok, err = check_ancestors(dir, me)
  if not ok then return nil, "refusing sandbox directory " .. dir .. ": " .. err end
  if not lstat({ dir })[dir] and not run("umask 077 && mkdir -p -- " .. shell_quote(dir)) then
    return nil, "cannot create " .. dir
  end
  ok, err = check_dir(dir, me)
  if not ok then return nil, "refusing sandbox directory " .. dir .. ": " .. err end
  return true
end

-- Write a file only we can read: removed first, then created exclusively (never through a
-- symbolic link) with mode 0600.
local function write_private(path, s)
  if not run("umask 077 && rm -f -- " .. shell_quote(path) .. " && set -C && : > " .. shell_quote(path)) then
    return nil, "cannot create " .. path
  end
  return write_file(path, s)
end

local builtin_cache = {}

-- Whether an nginx binary has the lua module compiled in (OpenResty's does).
local function lua_builtin(nginx)
  if builtin_cache[nginx] == nil then
    local v = capture(shell_quote(nginx) .. " -V 2>&1")
    builtin_cache[nginx] = (v:find("lua-nginx-module", 1, true) or v:find("ngx_lua", 1, true)
                            or v:find("openresty", 1, true)) ~= nil
  end
  return builtin_cache[nginx]
end

--- The `load_module` lines for an nginx binary and module directory: none when the module
-- directory is `builtin` or the binary has the lua module compiled in.
-- @tparam string nginx binary
-- @tparam string modules directory, or `builtin`
-- @treturn string
function M.load_modules(nginx, modules)
  if modules == "builtin" or modules == "" or lua_builtin(nginx) then return "" end
  return 'load_module "' .. modules .. '/ndk_http_module.so";\n'
      .. 'load_module "' .. modules .. '/ngx_http_lua_module.so";'
end

-- The generated nginx.conf.
local function nginx_conf(o)
  local d = o.dir
  local lua_path = table.concat({ o.lua_dir .. "/?.lua", o.lua_dir .. "/?/init.lua",
    "/usr/share/lua/5.1/?.lua", "/usr/share/lua/5.1/?/init.lua", ";" }, ";")
  return table.concat({
    "# generated by flowmusic.sandbox.server; rewritten on every start",
    o.load_modules,
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
    "  gzip on;", -- for clients that ask: usage documents compress well
    "  gzip_types application/json;",
    "  gzip_min_length 4096;",
    "  client_body_buffer_size 8m;",
    "  client_max_body_size 8m;",
    "  keepalive_timeout 60s;",
    "  keepalive_requests 1000000;",
    "  lua_shared_dict flowmusic_sandbox 32m;",
    "  lua_shared_dict flowmusic_sandbox_requests 16m;",
    "  lua_shared_dict flowmusic_sandbox_faults 4m;", -- its own: the fault queue never evicts accounts
    '  lua_package_path "' .. lua_path .. '";',
    "  lua_check_client_abort on;",
    "  lua_socket_log_errors off;",
    "  init_by_lua_block { require(\"flowmusic.sandbox.handler\").init(\"" .. d .. "/sandbox-config.lua\") }",
    "  init_worker_by_lua_block { require(\"flowmusic.sandbox.handler\").init_worker() }",
    "  server {",
    "    listen 127.0.0.1:" .. o.port .. " backlog=1024;",
    -- HTTP/2 over TLS as the real service speaks it (ALPN; HTTP/1.1 for clients without h2)
    o.tls_port and ("    listen 127.0.0.1:" .. o.tls_port .. (o.http2 and " ssl http2;" or " ssl;")) or "",
    o.tls_port and "    ssl_client_hello_by_lua_block { require(\"flowmusic.sandbox.handler\").tls_hello() }" or "",
    o.tls_port and ('    ssl_certificate "' .. o.tls_cert .. '";') or "",
    o.tls_port and ('    ssl_certificate_key "' .. o.tls_key .. '";') or "",
    "    location = /__sandbox_reset_connection { internal; reset_timedout_connection on; return 444; }",
    -- what nginx answers by itself (body too large, URI too long, a crash) is JSON too
    "    error_page 400 405 408 411 413 414 494 500 501 502 503 504 /__sandbox_error;",
    "    location = /__sandbox_error { internal;",
    "      content_by_lua_block { require(\"flowmusic.sandbox.handler\").nginx_error() } }",
    "    location / { content_by_lua_block { require(\"flowmusic.sandbox.handler\").handle() } }",
    "  }",
    "}",
    "",
  }, "\n")
end

--- Whether a sandbox runs in a directory.
-- @tparam[opt] table opts `{dir=}` (default `default_dir()`)
-- @treturn boolean running
-- @treturn table info `{dir=, pid=, port=, base_url=, root=, token=}` (only `dir` when not running;
-- `token` only when it is the default: the directory never holds another token)
function M.status(opts)
  opts = check_opts(opts, { dir = "string" }, "status")
  local dir = opts.dir or M.default_dir()
  local pid = read_pid(dir .. "/nginx.pid")
  local info = read_info(dir)
  if not (pid and info and is_sandbox_nginx(pid, dir)) then return false, { dir = dir } end
  info.pid, info.dir = pid, dir
  return true, info
end

--- Stop the sandbox of a directory: SIGTERM to the master, wait, then SIGKILL if needed.
-- Only a process that really is this sandbox's nginx (see `flowmusic.sandbox.host.is_sandbox_nginx`:
-- owned by this user, started with this directory's nginx.conf) is ever signalled; a pid file
-- naming anything else is reported, not obeyed.
-- @tparam[opt] table opts `{dir=, pid=, remove=bool}`; `pid` is the master's pid when known
-- (else read from `<dir>/nginx.pid`); `remove` deletes the directory afterwards
-- @treturn true, or `nil, err` (e.g. nothing was running)
function M.stop(opts)
  opts = check_opts(opts, { dir = "string", pid = "number", remove = "boolean" }, "stop")
  local dir = absolute(opts.dir or M.default_dir()):gsub("/+$", "")
  local pid = opts.pid or read_pid(dir .. "/nginx.pid")
  local worker = read_pid(dir .. "/worker.pid")
  local refused
  local was, why = is_sandbox_nginx(pid, dir)
  if was then
    run("kill -TERM " .. string.format("%d", pid) .. " 2>/dev/null")
    local deadline = socket.gettime() + STOP_TIMEOUT
    while is_sandbox_nginx(pid, dir) and socket.gettime() < deadline do socket.sleep(0.02) end
    if is_sandbox_nginx(pid, dir) then run("kill -KILL " .. string.format("%d", pid) .. " 2>/dev/null") end
  elseif pid and why ~= "not running" then
    refused = "pid " .. pid .. " is not this sandbox's nginx (" .. why .. "); not signalled"
  end
  if is_sandbox_nginx(worker, dir, "worker") then -- a worker orphaned by a killed master
    was = true
    run("kill -KILL " .. string.format("%d", worker) .. " 2>/dev/null")
  end
  -- clean up only in a directory of ours (never through a link another user planted)
  local d = lstat({ dir })[dir]
  if d and d.type == "directory" and d.uid == host.uid() then
    os.remove(dir .. "/sandbox.info")
    os.remove(dir .. "/worker.pid")
    if opts.remove then run("rm -rf -- " .. shell_quote(dir)) end
  end
  if not was then return nil, refused or ("no sandbox running in " .. dir) end
  return true
end

--- Start a sandbox.
-- @tparam[opt] table opts
--   `port` (0/nil: a free port), `token` (default `user:1-sandbox`), `dir` (prefix directory,
--   created if missing; default `default_dir()`), `watch_pid` (stop by itself once this
--   process is gone), `nginx`, `modules` (binary / module directory), `tls_cert` and `tls_key`
--   (PEM files: a second listener serves the API over TLS, HTTP/2 with HTTP/1.1 fallback),
--   `http2` (false: the TLS listener speaks HTTP/1.1 only)
-- @treturn string base URL `http://127.0.0.1:PORT/v1/flowmusic`, or `nil, err`
-- @treturn number the nginx master pid
-- @treturn table info `{dir=, pid=, port=, base_url=, root=, token=}`
function M.start(opts)
  opts = check_opts(opts, { port = "number", token = "string", dir = "string", watch_pid = "number",
                            nginx = "string", modules = "string", tls_cert = "string",
                            tls_key = "string", http2 = "boolean" }, "start")
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
  local ok
  ok, err = M.check_dir(dir)
  if not ok then return nil, err end
  M.stop({ dir = dir }) -- leftovers of a crashed run
  if not run("umask 077 && mkdir -p -- " .. shell_quote(dir .. "/tmp")) then
    return nil, "cannot create " .. dir .. "/tmp"
  end

  local watch_start
  if opts.watch_pid then
    local state
    state, watch_start = M.proc_info(opts.watch_pid)
    if not state then return nil, "no process " .. opts.watch_pid .. " to watch" end
  end
  ok, err = write_private(dir .. "/sandbox-config.lua", string.format(
    "return { token = %q, dir = %q, watch_pid = %s, watch_start = %s }\n", token, dir,
    opts.watch_pid and string.format("%d", opts.watch_pid) or "nil",
    watch_start and string.format("%q", watch_start) or "nil"))
  if not ok then return nil, err end

  -- nginx reads the configuration once, in init_by_lua (the master; workers are forked from
  -- it), so the file holding the token is removed whatever happens: it lives in the directory
  -- only while nginx starts.
  local function launch()
    local nginx, modules = opts.nginx or M.NGINX, opts.modules or M.MODULES
    local root = M.uid() == "0"
    local attempts = (port == 0) and 5 or 1
    for attempt = 1, attempts do
      local p = port ~= 0 and port or free_port()
      if not p then return nil, "no free port" end
      -- With a certificate, a second listener serves the same API over TLS.
      local tls_port = opts.tls_cert and free_port()
      ok, err = write_private(dir .. "/nginx.conf", nginx_conf({ dir = dir, lua_dir = lua_dir, port = p,
                                                    load_modules = M.load_modules(nginx, modules), root = root,
                                                    tls_port = tls_port, tls_cert = opts.tls_cert,
                                                    tls_key = opts.tls_key, http2 = opts.http2 ~= false }))
      if not ok then return nil, err end
      os.remove(dir .. "/nginx.pid")
      os.remove(dir .. "/worker.pid")
      ok, err = write_private(dir .. "/error.log", "")
      if not ok then return nil, err end
      -- nginx never inherits a preloaded library (the sanitizer run of the specs preloads
      -- ASan into the Lua process only), nor LUA_PATH/LUA_CPATH: LuaJIT would take them as
      -- its ";;" defaults, and those of Lua 5.4 (`luarocks path`) load 5.4's cjson.so.
      -- umask 077: what nginx creates before it daemonizes (logs, temp directories) is
      -- private; daemonizing may reset the umask to 0, so the workers set 077 again
      -- (watchdog.start) and nothing in the directory is writable by others.
      local started = run(table.concat({ "umask 077 && env -u LD_PRELOAD -u LUA_PATH -u LUA_CPATH",
        shell_quote(nginx), "-p", shell_quote(dir .. "/"), "-c",
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
            -- the token is written down only when it is the well-known default
            write_private(dir .. "/sandbox.info", string.format(
              "pid=%d\nport=%d\nroot=%s\nbase_url=%s\n%s", pid, p, out.root, out.base_url,
              token == M.DEFAULT_TOKEN and ("token=" .. token .. "\n") or ""))
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
  local base_url, pid, started = launch()
  os.remove(dir .. "/sandbox-config.lua")
  return base_url, pid, started
end

return M
