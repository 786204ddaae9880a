--- Spec helper: a tiny hostile HTTP server on a free loopback port that answers each request
-- with the next of a list of raw response byte strings (the last one repeats), then closes the
-- connection. For answers the sandbox can't give (odd JSON error bodies, a BOM...).
--
--     local raw = require("spec.helpers.rawserver").start { "HTTP/1.1 200 OK\r\n..." }
--     raw.base_url, raw:requests() --> number of requests seen; raw:stop() (by pid)
--
-- It runs as a separate lua5.4 process (LuaSocket), exits by itself after 120 s, and is
-- stopped by pid.
-- @module spec.helpers.rawserver
local socket = require "socket"

local M = {}

local SERVER = [==[
local socket = require "socket"
local responses, log_path = dofile(arg[1]), arg[2]
local srv = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname()
local stat = io.open("/proc/self/stat"):read("*l")
io.stdout:write(stat:match("^(%d+)"), " ", port, "\n") io.stdout:flush()
srv:settimeout(0.5)
local served, started = 0, os.time()
while os.time() - started < 120 do
  local c = srv:accept()
  if c then
    c:settimeout(5)
    local length, first = 0, c:receive("*l")
    local line = first
    while line and line ~= "" do
      local n = line:lower():match("^content%-length:%s*(%d+)")
      if n then length = tonumber(n) end
      line = c:receive("*l")
    end
    if first then -- (a readiness probe connects and sends nothing)
      if length > 0 then c:receive(length) end
      served = served + 1
      local f = io.open(log_path, "a") f:write("x\n") f:close()
      c:send(responses[math.min(served, #responses)])
    end
    c:close()
  end
end
]==]

local Raw = {}
Raw.__index = Raw

--- Start a server answering with the given raw responses in order.
function M.start(responses)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 '" .. dir .. "'"))
  local data = assert(io.open(dir .. "/responses.lua", "w"))
  data:write("return {")
  for _, r in ipairs(responses) do data:write(("%q,"):format(r)) end
  data:write("}")
  data:close()
  local script = assert(io.open(dir .. "/server.lua", "w"))
  script:write(SERVER)
  script:close()
  local p = assert(io.popen(("exec lua5.4 '%s/server.lua' '%s/responses.lua' '%s/log'"):format(dir, dir, dir)))
  local line = p:read("*l") or ""
  local pid, port = line:match("^(%d+) (%d+)$")
  pid, port = tonumber(pid), tonumber(port)
  assert(pid and port, "raw server did not start")
  for _ = 1, 100 do -- ready when it accepts a connection
    local probe = socket.tcp()
    probe:settimeout(1)
    local ok = probe:connect("127.0.0.1", port)
    probe:close()
    if ok then break end
    socket.sleep(0.05)
  end
  return setmetatable({ pid = pid, port = port, dir = dir, pipe = p,
    base_url = ("http://127.0.0.1:%d/v1/flowmusic"):format(port) }, Raw)
end

--- Number of requests the server has answered.
function Raw:requests()
  local f = io.open(self.dir .. "/log")
  if not f then return 0 end
  local n = 0
  for _ in f:lines() do n = n + 1 end
  f:close()
  return n
end

--- Stop the server (by pid) and remove its files; idempotent.
function Raw:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  self.pipe:close()
  os.execute("rm -rf '" .. self.dir .. "'")
end

--- A raw HTTP/1.1 response with a body and headers (Content-Length added).
function M.response(status, headers, body)
  local lines = { ("HTTP/1.1 %d X"):format(status) }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  lines[#lines + 1] = "Content-Length: " .. #body
  lines[#lines + 1] = "Connection: close"
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

M.socket = socket
return M
