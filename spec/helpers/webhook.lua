--- Spec helper: a real local webhook receiver: an HTTP server (a separate lua5.4 process with
-- LuaSocket) on a loopback port that records every request's method, path, headers and body,
-- and answers with a status the spec may change. Stopped by pid.
--
--     local webhook = require "spec.helpers.webhook"
--     local w = webhook.start()                  -- or webhook.start { status = 503 }
--     w.url                                      -- http://127.0.0.1:PORT/hook
--     w:answer(503)                              -- later requests get 503
--     w:down() ... w:up()                        -- refused connections, then back on its port
--     w:bodies()                                 -- the decoded JSON bodies received, in order
--     w:requests()                               -- { method, path, authorization, body }...
--     w:stop()
--
-- It exits by itself after 300 s.
-- @module spec.helpers.webhook
local socket = require "socket"
local cjson = require "cjson.safe"
local host = require "flowmusic.sandbox.host"
local live = require("spec.helpers.live").new()

local q = host.shell_quote

local M = {}

local Receiver = {}
Receiver.__index = Receiver

local SERVER = [==[
local socket = require "socket"
local cjson = require "cjson"
local dir, port = arg[1], tonumber(arg[2])
local srv = assert(socket.bind("127.0.0.1", port))
local _, bound = srv:getsockname()
local stat = io.open("/proc/self/stat"):read("*l")
local f = io.open(dir .. "/ready.tmp", "w") f:write(stat:match("^(%d+)"), " ", bound, "\n") f:close()
os.rename(dir .. "/ready.tmp", dir .. "/ready")
srv:settimeout(0.5)
local started = os.time()
while os.time() - started < 300 do
  local c = srv:accept()
  if c then
    c:settimeout(5)
    local first = c:receive("*l")
    local headers, line, length = {}, first, 0
    line = c:receive("*l")
    while line and line ~= "" do
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then headers[k:lower()] = v end
      line = c:receive("*l")
    end
    if first then
      length = tonumber(headers["content-length"] or "0") or 0
      local body = length > 0 and c:receive(length) or ""
      local sf = io.open(dir .. "/status")
      local status = sf and tonumber(sf:read("*l")) or 200
      if sf then sf:close() end
      local method, path = first:match("^(%S+) (%S+)")
      local log = io.open(dir .. "/requests.jsonl", "a")
      log:write(cjson.encode({ method = method, path = path, body = body,
        authorization = headers["authorization"] or false, content_type = headers["content-type"] or false }), "\n")
      log:close()
      c:send(("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        :format(status))
    end
    c:close()
  end
end
]==]

-- Run the server process in w.dir on w.port (0: a free one); raises when it doesn't start.
local function spawn(w)
  os.remove(w.dir .. "/ready")
  os.execute("lua5.4 " .. q(w.dir .. "/server.lua") .. " " .. q(w.dir) .. " " .. tostring(w.port or 0)
    .. " >" .. q(w.dir .. "/stderr.log") .. " 2>&1 </dev/null &")
  local deadline, ready = socket.gettime() + 10
  repeat
    ready = host.read_file(w.dir .. "/ready")
    if not ready then socket.sleep(0.02) end
  until ready or socket.gettime() > deadline
  local pid, port = (ready or ""):match("^(%d+) (%d+)")
  if not pid then
    local why = host.read_file(w.dir .. "/stderr.log") or ""
    w:stop()
    error("the webhook receiver did not start: " .. why, 3)
  end
  w.pid, w.port = tonumber(pid), tonumber(port)
end

--- Start a receiver; raises when it can't.
-- @tparam[opt] table opts `status` (the status of every answer until `answer` changes it;
--   default 200)
function M.start(opts)
  opts = opts or {}
  local dir = host.temp_dir("flowmusic-webhook-spec")
  assert(host.write_file(dir .. "/server.lua", SERVER))
  if opts.status then assert(host.write_file(dir .. "/status", tostring(opts.status) .. "\n")) end
  local w = setmetatable({ dir = dir }, Receiver)
  live.add(w)
  spawn(w)
  w.url = "http://127.0.0.1:" .. w.port .. "/hook"
  return w
end

--- Take the receiver down (connections are refused) and keep what it recorded.
function Receiver:down()
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
end

--- Bring it back on the same port, with the same records.
function Receiver:up()
  spawn(self)
end

--- Answer later requests with this status.
function Receiver:answer(status)
  assert(host.write_file(self.dir .. "/status", tostring(status) .. "\n"))
end

--- Every request received so far: `{ method, path, authorization (false when none),
-- content_type, body }`.
function Receiver:requests()
  local list = {}
  for line in (host.read_file(self.dir .. "/requests.jsonl") or ""):gmatch("[^\n]+") do
    list[#list + 1] = assert(cjson.decode(line))
  end
  return list
end

--- The JSON bodies received so far, decoded, in order.
function Receiver:bodies()
  local list = {}
  for i, r in ipairs(self:requests()) do list[i] = assert(cjson.decode(r.body), r.body) end
  return list
end

--- Stop the receiver by pid and remove its directory. Idempotent.
function Receiver:stop()
  live.remove(self)
  self:down()
  if self.dir then os.execute("rm -rf " .. q(self.dir)) end
  self.dir = nil
end

M.stop_all = live.stop_all
M._sentinel = live.sentinel

return M
