--- Spec helper: a real forward proxy (Debian's tinyproxy) on a free loopback port, with its
-- own config, log and pid in a private directory; stopped by pid.
--
--     local tinyproxy = require "spec.helpers.tinyproxy"
--     local p = tinyproxy.start { connect_ports = { sb_tls_port }, user = "u", password = "pw" }
--     p.url            -- http://127.0.0.1:PORT (no credentials)
--     p:url_with("u", "pw")
--     p:log()          -- what tinyproxy logged so far
--     p:stop()
--
-- `connect_ports` lists the ports CONNECT may reach; any other CONNECT is refused with 403
-- (an empty list refuses every CONNECT). With `user`/`password` every request needs them
-- (407 otherwise).
-- @module spec.helpers.tinyproxy
local socket = require "socket"
local host = require "flowmusic.sandbox.host"
local live = require("spec.helpers.live").new()

local q = host.shell_quote

local M = {}

local Proxy = {}
Proxy.__index = Proxy

local BINARY = "/usr/bin/tinyproxy"

-- A listening socket on port (bounded wait: tinyproxy reads its config first).
local function wait_listening(port, pid, seconds)
  local deadline = socket.gettime() + seconds
  repeat
    local s = socket.tcp()
    s:settimeout(0.2)
    local ok = s:connect("127.0.0.1", port)
    s:close()
    if ok then return true end
    if not host.proc_info(pid) then return false end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return false
end

--- Start a proxy; raises when it can't.
-- @tparam[opt] table opts `connect_ports` (array of ports; default none), `user`, `password`
function M.start(opts)
  opts = opts or {}
  assert(io.open(BINARY, "r"), BINARY .. " is missing: install Debian's tinyproxy (scripts/setup.sh --test)")
  local dir = host.temp_dir("flowmusic-tinyproxy-spec")
  local port = assert(host.free_port(), "no free port")
  local conf = {
    "Port " .. port, "Listen 127.0.0.1", "Timeout 30", "MaxClients 64",
    'LogFile "' .. dir .. '/tinyproxy.log"', 'PidFile "' .. dir .. '/tinyproxy.pid"',
    "LogLevel Info", "Allow 127.0.0.1",
  }
  local ports = opts.connect_ports or {}
  -- tinyproxy allows CONNECT to every port unless one is listed; port 1 stands for "none"
  if #ports == 0 then conf[#conf + 1] = "ConnectPort 1" end
  for _, p in ipairs(ports) do conf[#conf + 1] = "ConnectPort " .. p end
  if opts.user then conf[#conf + 1] = "BasicAuth " .. opts.user .. " " .. opts.password end
  assert(host.write_file(dir .. "/tinyproxy.conf", table.concat(conf, "\n") .. "\n"))
  local pid = tonumber(host.capture(q(BINARY) .. " -d -c " .. q(dir .. "/tinyproxy.conf") .. " >"
    .. q(dir .. "/stderr.log") .. " 2>&1 </dev/null & echo $!"):match("%d+"))
  local p = setmetatable({ pid = pid, port = port, dir = dir, url = "http://127.0.0.1:" .. port }, Proxy)
  live.add(p)
  if not (pid and wait_listening(port, pid, 5)) then
    local why = (host.read_file(dir .. "/stderr.log") or "") .. (host.read_file(dir .. "/tinyproxy.log") or "")
    p:stop()
    error("tinyproxy did not start: " .. why, 2)
  end
  return p
end

--- The proxy's URL with credentials in it.
function Proxy:url_with(user, password)
  return "http://" .. user .. ":" .. password .. "@127.0.0.1:" .. self.port
end

--- What the proxy logged so far ("" before anything).
function Proxy:log()
  return host.read_file(self.dir .. "/tinyproxy.log") or ""
end

--- Stop the proxy by pid and remove its directory. Idempotent.
function Proxy:stop()
  live.remove(self)
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 5
    local state = host.proc_info(self.pid)
    while state and state ~= "Z" and socket.gettime() < deadline do
      socket.sleep(0.02)
      state = host.proc_info(self.pid)
    end
    self.pid = nil
  end
  if self.dir then os.execute("rm -rf " .. q(self.dir)) end
  self.dir = nil
end

M.stop_all = live.stop_all
M._sentinel = live.sentinel

return M
