--- Spec helper: start and drive private sandbox instances (LuaSocket only; no flowmusic client).
--
--     local sandbox = require "spec.helpers.sandbox"
--     local sb = sandbox.start{ token = "user:7-abc" }   -- own temp dir, free port
--     sb.base_url, sb.root, sb.token, sb.pid, sb.dir, sb.port
--     sb:reset(); sb:seed(3); sb:fault{ fault = "status", code = 503, count = 2 }
--     sb:clear_faults(); sb:requests(); sb:control("GET", "/__sandbox/health")
--     sb:raw("GET / HTTP/1.0\r\n\r\n"); sb:raw_api("GET", "/accounts", "X-Sandbox-Fault: reset\r\n")
--     sandbox.parse_raw(data) → status, headers, body
--     sb:stop()                                          -- by pid, idempotent, removes the dir
--     sandbox.start{ tls = true }  -- also serves HTTPS at sb.tls_base_url (self-signed: sb.tls_cert)
--     sandbox.start{ tls = ca }    -- the same with spec.helpers.ca's server certificate
--
-- Instances also stop when this process ends: the nginx side watches this process's pid,
-- `sandbox.stop_all()` stops whatever is left, and a `__gc` sentinel calls it at exit.
-- @module spec.helpers.sandbox

local cjson = require "cjson"
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local server = require "flowmusic.sandbox.server"
local host = require "flowmusic.sandbox.host"

local M = {}

local live = require("spec.helpers.live").new() -- started, not yet stopped

-- Pid of this process (the one running the specs).
local function self_pid()
  local f = assert(io.open("/proc/self/stat", "r"))
  local s = f:read("*l")
  f:close()
  return tonumber(s:match("^(%d+)"))
end

local Sandbox = {}
Sandbox.__index = Sandbox

--- Start a private sandbox.
-- @tparam[opt] table opts `{token=}`
-- @treturn table the instance (raises when it cannot start)
function M.start(opts)
  opts = opts or {}
  local dir = host.temp_dir("flowmusic-sandbox-spec")
  local tls_cert, tls_key
  if type(opts.tls) == "table" then -- a certificate made elsewhere (spec.helpers.ca)
    tls_cert, tls_key = opts.tls.server_cert, opts.tls.server_key
  elseif opts.tls then -- a self-signed certificate for 127.0.0.1, made for this instance
    tls_cert, tls_key = dir .. "/cert.pem", dir .. "/key.pem"
    assert(os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
      .. "-addext subjectAltName=IP:127.0.0.1 -keyout '" .. tls_key .. "' -out '" .. tls_cert
      .. "' >/dev/null 2>&1"), "openssl could not make a certificate")
  end
  local base, pid, info = server.start({ dir = dir, port = 0, token = opts.token, watch_pid = self_pid(),
                                         tls_cert = tls_cert, tls_key = tls_key, http2 = opts.http2 })
  if not base then
    os.execute("rm -rf '" .. dir .. "'")
    error("sandbox failed to start: " .. tostring(pid), 2)
  end
  local sb = setmetatable({ base_url = base, root = info.root, token = info.token, pid = pid,
                            dir = dir, port = info.port, tls_base_url = info.tls_base_url,
                            tls_cert = tls_cert }, Sandbox)
  live.add(sb)
  return sb
end

--- Stop every instance still running.
M.stop_all = live.stop_all
M._sentinel = live.sentinel

--- Stop this instance (SIGTERM to its master, by pid) and remove its directory. Idempotent.
-- @treturn true
function Sandbox:stop()
  if self.stopped then return true end
  self.stopped = true
  live.remove(self)
  server.stop({ dir = self.dir, pid = self.pid, remove = true })
  return true
end

--- One HTTP request to this instance.
-- @tparam string method
-- @tparam string path absolute path (`/v1/...`, `/__sandbox/...`) or a full URL
-- @tparam[opt] table opts `{body=string, headers=table, timeout=seconds}`
-- @treturn number|nil status (or nil, err)
-- @treturn string body
-- @treturn table headers (lower-case names)
function Sandbox:http(method, path, opts)
  opts = opts or {}
  local chunks, headers = {}, {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.body then headers["Content-Length"] = tostring(#opts.body) end
  local url = path:match("^https?://") and path or (self.root .. path)
  local old = http.TIMEOUT
  http.TIMEOUT = opts.timeout or 10
  local ok, code, resp_headers = http.request({
    url = url, method = method, headers = headers, sink = ltn12.sink.table(chunks),
    source = opts.body and ltn12.source.string(opts.body) or nil,
  })
  http.TIMEOUT = old
  if not ok then return nil, code end
  return code, table.concat(chunks), resp_headers
end

--- Send a raw HTTP request to this instance and read until the server closes (or the timeout).
-- @tparam string request the bytes to send
-- @tparam[opt] number timeout seconds (default 5)
-- @treturn string everything received
-- @treturn string how it ended ("closed", "timeout", ...)
function Sandbox:raw(request, timeout)
  local c = socket.tcp()
  c:settimeout(timeout or 5)
  assert(c:connect("127.0.0.1", self.port))
  assert(c:send(request))
  local chunks = {}
  while true do
    local data, err, partial = c:receive(8192)
    if data then
      chunks[#chunks + 1] = data
    else
      if partial and #partial > 0 then chunks[#chunks + 1] = partial end
      c:close()
      return table.concat(chunks), err
    end
  end
end

--- A raw request of an API path (`/accounts...`) with the token and `Connection: close`.
-- @tparam string method
-- @tparam string path relative to `/v1/flowmusic`
-- @tparam[opt] string extra more header lines, each ending in CRLF
-- @tparam[opt] string body
-- @tparam[opt] number timeout
-- @treturn string, string as `raw`
function Sandbox:raw_api(method, path, extra, body, timeout)
  return self:raw(method .. " /v1/flowmusic" .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
    .. self.token .. "\r\nConnection: close\r\n" .. (extra or "")
    .. (body and ("Content-Length: " .. #body .. "\r\n") or "") .. "\r\n" .. (body or ""), timeout)
end

--- Split a raw response into status, lower-cased headers and the rest (the body as sent).
-- @tparam string data
-- @treturn number|nil status
-- @treturn table headers
-- @treturn string rest
function M.parse_raw(data)
  local head, body = data:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil end
  local status = tonumber(head:match("^HTTP/1%.%d (%d+)"))
  local headers = {}
  for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  return status, headers, body
end

--- An authenticated API call: path relative to `base_url`, JSON body from a table.
-- @tparam string method
-- @tparam string path e.g. `/accounts`
-- @tparam[opt] table opts `{json=table, body=string, headers=table, token=string|false}`
-- @treturn number status, decoded JSON body (or raw text), headers
function Sandbox:api(method, path, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local token = opts.token
  if token == nil then token = self.token end
  if token then headers["Authorization"] = "Bearer " .. token end
  local body = opts.body
  if opts.json then
    body = cjson.encode(opts.json)
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
  end
  local code, text, h = self:http(method, self.base_url .. path, { body = body, headers = headers,
                                                                   timeout = opts.timeout })
  if not code then return nil, text end
  local ok, decoded = pcall(cjson.decode, text)
  return code, (ok and decoded or text), h
end

--- A control request: JSON in, JSON out. Every request that may carry a body (POST, even
-- without one) is sent as `Content-Type: application/json`: the sandbox refuses anything else.
-- @tparam string method
-- @tparam string path `/__sandbox/...` (a bare name like `reset` is prefixed)
-- @tparam[opt] table body_table
-- @treturn number status
-- @treturn table|nil decoded body
function Sandbox:control(method, path, body_table)
  if path:sub(1, 1) ~= "/" then path = "/__sandbox/" .. path end
  local body = body_table and cjson.encode(body_table) or nil
  local json_type = body or (method ~= "GET" and method ~= "HEAD" and method ~= "DELETE")
  local code, text = self:http(method, path, { body = body,
    headers = json_type and { ["Content-Type"] = "application/json" } or nil })
  if not code then error("sandbox control " .. method .. " " .. path .. ": " .. tostring(text), 2) end
  local ok, decoded = pcall(cjson.decode, text)
  return code, ok and decoded or nil
end

-- A control request that must succeed.
local function must(sb, status, method, path, body)
  local code, decoded = sb:control(method, path, body)
  if code ~= status then
    error(string.format("sandbox control %s %s: %s %s", method, path, tostring(code),
                        decoded and cjson.encode(decoded) or ""), 3)
  end
  return decoded
end

--- Clear accounts, faults and request counters.
function Sandbox:reset()
  must(self, 200, "POST", "/__sandbox/reset")
end

--- Create n accounts `seed-01@sandbox.test`...
-- @tparam number n
-- @tparam[opt] string tier default plus
-- @treturn {string,...} emails
function Sandbox:seed(n, tier)
  return must(self, 200, "POST", "/__sandbox/seed", { count = n, tier = tier }).emails
end

--- Script a fault (`{fault=, <params>, method=?, path=?, count=?}`).
-- @tparam table spec
-- @treturn table the queued entry
function Sandbox:fault(spec)
  return must(self, 201, "POST", "/__sandbox/faults", spec)
end

--- Drop all scripted faults.
function Sandbox:clear_faults()
  must(self, 200, "DELETE", "/__sandbox/faults")
end

--- Request counts `{total=N, by={["METHOD /raw/path"]=n}}`.
-- @treturn table
function Sandbox:requests()
  return must(self, 200, "GET", "/__sandbox/requests")
end

--- The requests received while f ran, `{ ["METHOD /raw/path"] = n }`, then f's results.
function Sandbox:requests_during(f)
  local before = self:requests().by
  local a, b, c = f()
  local after, d = self:requests().by, {}
  for k, v in pairs(after) do
    local n = v - (before[k] or 0)
    if n > 0 then d[k] = n end
  end
  return d, a, b, c
end

--- How many of the requests counted in d (from requests_during) were not GETs.
function M.writes(d)
  local n = 0
  for k, v in pairs(d) do
    if not k:match("^GET ") then n = n + v end
  end
  return n
end

--- The email the sandbox derives from a token that is not a `sandbox:` one.
function M.derived_email(token)
  local p = io.popen("printf %s '" .. token:gsub("'", "'\\''") .. "' | md5sum")
  local hex = p:read("*l"):sub(1, 8)
  p:close()
  return "user-" .. hex .. "@flowmusic.sandbox"
end

--- Make an account's usage history `n` rows long (0: back to the default history).
-- @tparam string email
-- @tparam number n
function Sandbox:usage(email, n)
  return must(self, 200, "POST", "/__sandbox/usage", { email = email, events = n })
end

return M
