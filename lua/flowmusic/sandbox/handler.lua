--- Entry points of the sandbox inside nginx: `init`, `init_worker` and `handle` (routing of
-- `/v1/flowmusic/...` and `/__sandbox/...`).
-- @module flowmusic.sandbox.handler

local cjson = require "cjson.safe"
local accounts = require "flowmusic.sandbox.accounts"
local faults = require "flowmusic.sandbox.faults"
local json = require "flowmusic.sandbox.json"
local multipart = require "flowmusic.sandbox.multipart"
local saturation = require "flowmusic.sandbox.saturation"
local tokens = require "flowmusic.sandbox.tokens"
local usage = require "flowmusic.sandbox.usage"
local util = require "flowmusic.sandbox.util"
local watchdog = require "flowmusic.sandbox.watchdog"

local M = { _VERSION = require("flowmusic.defaults").VERSION }

local BASE = "/v1/flowmusic"
local config = { token = "user:1-sandbox" }

--- Load the launcher-written configuration (`init_by_lua`).
-- @tparam string path a Lua file returning `{token=, dir=, watch_pid=?, watch_start=?}`
function M.init(path)
  config = dofile(path)
  ngx.shared.flowmusic_sandbox:flush_all()
  ngx.shared.flowmusic_sandbox_requests:flush_all()
  ngx.shared.flowmusic_sandbox_faults:flush_all()
end

--- Every TLS ClientHello (`ssl_client_hello_by_lua`), resumed sessions included: counts the
-- handshakes, so specs can see how many TLS connections a client opened.
function M.tls_hello()
  ngx.shared.flowmusic_sandbox_requests:incr("#tls handshakes", 1, 0)
end

--- Per-worker start-up (`init_worker_by_lua`): record the worker pid, start the watchdog.
function M.init_worker()
  watchdog.start(config)
end

-- Send a response table.
local function send(resp)
  ngx.status = resp.status
  for k, v in pairs(resp.headers or {}) do ngx.header[k] = v end
  if resp.body and #resp.body > 0 then
    ngx.header["Content-Length"] = #resp.body
    ngx.print(resp.body)
  end
  return ngx.exit(ngx.OK)
end

-- The request body as a string ("" when none).
local function body_text()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local f = io.open(file, "rb")
  if not f then return "" end
  data = f:read("*a")
  f:close()
  return data
end

local NOT_BODY = "Request body must be a JSON object or multipart/form-data"

-- Decode a POST body into fields (JSON nulls dropped); multipart flag as second value.
local function body_fields()
  local text = body_text()
  local ctype = ngx.var.content_type
  if ctype and ctype:lower():match("^%s*multipart/form%-data") then
    local boundary = multipart.boundary(ctype)
    if not boundary then return nil, "multipart/form-data without a boundary" end
    local fields, err = multipart.parse(text, boundary)
    if not fields then return nil, "Malformed multipart/form-data body: " .. err end
    return fields, true
  end
  if not text:match("^%s*{") then return nil, NOT_BODY end
  local v = cjson.decode(text)
  if type(v) ~= "table" then return nil, NOT_BODY end
  for k, x in pairs(v) do
    if x == cjson.null then v[k] = nil end
  end
  return v, false
end

-- 405 with an Allow header.
local function not_allowed(allow)
  return util.error_response(405, "Method not allowed", { Allow = allow })
end

-- GET /accounts/usage?email=
local function get_usage()
  local email = ngx.req.get_uri_args().email
  if type(email) == "table" then email = email[1] end
  if type(email) ~= "string" or email == "" then
    return util.error_response(400, "email query parameter is required")
  end
  if #email > accounts.MAX_EMAIL then return util.error_response(400, accounts.EMAIL_MESSAGE) end
  local rec = accounts.get(email)
  if not rec then return util.error_response(404, "Account " .. email .. " not found") end
  return util.json_response(200, usage.render(rec))
end

-- Authenticate and route one API request; returns a response table (sends nothing).
local function api(method, path)
  local auth = ngx.req.get_headers()["authorization"]
  if auth ~= "Bearer " .. config.token then
    return util.error_response(401, "Unauthorized")
  end
  local rest = path:sub(#BASE + 1)
  -- HEAD answers as GET does (nginx sends the headers, Content-Length included, without the body)
  local get = method == "GET" or method == "HEAD"
  if path == "/v2/account" then -- useapi.net's own account endpoint, beside the API's base
    if not get then return not_allowed("GET, HEAD") end
    return saturation.account()
  elseif path:sub(1, #BASE) ~= BASE then
    return util.error_response(404, "Not found")
  elseif rest == "/accounts" then
    if get then return accounts.list() end
    if method ~= "POST" then return not_allowed("GET, HEAD, POST") end
    local fields, extra = body_fields() -- extra: multipart flag, or the error message
    if not fields then return util.error_response(400, extra) end
    return accounts.post(fields, extra)
  elseif rest == "/accounts/usage" then
    if not get then return not_allowed("GET, HEAD") end
    return get_usage()
  elseif rest == "/jobs" then
    if not get then return not_allowed("GET, HEAD") end
    return saturation.jobs()
  end
  local segment = rest:match("^/accounts/([^/]+)$")
  if not segment then return util.error_response(404, "Not found") end
  local email = util.percent_decode(segment)
  if #email > accounts.MAX_EMAIL then return util.error_response(400, accounts.EMAIL_MESSAGE) end
  if get then return accounts.show(email) end
  if method == "DELETE" then return accounts.delete(email) end
  return not_allowed("GET, HEAD, DELETE")
end

--- The account an API request is about: the decoded `{email}` of `/accounts/{email}`, or the
-- `email` query argument of `/accounts/usage`; nil for others.
-- @tparam string path raw path without query
-- @treturn string|nil
function M.request_email(path)
  local segment = path:match("^" .. BASE .. "/accounts/([^/]+)$")
  if segment and segment ~= "usage" then return util.percent_decode(segment) end
  if segment == "usage" then
    local email = ngx.req.get_uri_args().email
    if type(email) == "table" then email = email[1] end
    return type(email) == "string" and email or nil
  end
  return nil
end

-- Count, apply a fault if any, then answer an API request.
local function handle_api(method, path)
  local counts = ngx.shared.flowmusic_sandbox_requests
  counts:incr(method .. " " .. path, 1, 0)
  counts:incr("total", 1, 0) -- request keys always hold a space, so no clash
  counts:incr("#conn " .. ngx.var.connection, 1, 0) -- which TCP connection carried it
  counts:incr("#proto " .. ngx.var.server_protocol, 1, 0) -- HTTP/1.1, HTTP/2.0
  local fault, err
  local header = ngx.req.get_headers()["x-sandbox-fault"]
  if header then
    if type(header) == "table" then header = header[1] end
    fault, err = faults.parse(header)
    if not fault then return send(util.error_response(400, "X-Sandbox-Fault: " .. err)) end
  else
    fault = faults.take(method, path, M.request_email(path))
  end
  local function process() return api(method, path) end
  if not fault then return send(process()) end
  local auth = ngx.req.get_headers()["authorization"]
  if type(auth) == "table" then auth = auth[1] end
  return faults.apply(fault, process, send, {
    method = method, path = path, token = auth and auth:match("^Bearer (.+)$"),
    refresh_token = function()
      if method ~= "POST" then return nil end
      local fields = body_fields()
      local rt = fields and fields.refresh_token
      return type(rt) == "string" and rt or nil
    end,
  })
end

-- The decoded JSON object of a control request ({} when empty).
local function control_body()
  local text = body_text()
  if text:match("^%s*$") then return {} end
  local v = cjson.decode(text)
  if type(v) ~= "table" then return nil end
  return v
end

-- The Host names a control request may carry: the loopback address under any port (a page
-- whose own name resolves to 127.0.0.1, DNS rebinding, carries its own name).
local LOOPBACK_HOSTS = { ["127.0.0.1"] = true, localhost = true, ["[::1]"] = true }

-- Why a control request is refused (cross-site shapes), or nil: a request carrying `Origin`
-- (browsers send it on cross-site and on every POST), a non-loopback Host, a body that is not
-- declared `application/json` (HTML forms and no-cors fetches can only send form types and
-- text/plain).
local function control_refusal(method)
  local h = ngx.req.get_headers()
  if h["origin"] ~= nil then
    return util.error_response(403,
      "Control requests must not carry an Origin header (cross-site requests are refused)")
  end
  local fetch_site = h["sec-fetch-site"]
  if fetch_site ~= nil and fetch_site ~= "none" then
    return util.error_response(403, "Control requests from web pages are refused (Sec-Fetch-Site)")
  end
  local host = h["host"]
  if type(host) ~= "string" or not LOOPBACK_HOSTS[(host:lower():gsub(":%d*$", ""))] then
    return util.error_response(403, "Control requests must be addressed to 127.0.0.1, localhost or [::1]")
  end
  if method ~= "GET" and method ~= "HEAD" and method ~= "DELETE" then
    local ctype = ngx.var.content_type
    if not (ctype and ctype:lower():match("^%s*application/json%s*$")
            or ctype and ctype:lower():match("^%s*application/json%s*;")) then
      return util.error_response(415, "Control requests with a body must be Content-Type: application/json")
    end
  end
  return nil
end

-- Control endpoints under /__sandbox/.
local function control(method, name)
  local ok = util.json_response
  local fail = util.error_response
  local key = method .. " " .. name
  local refused = control_refusal(method)
  if refused then return refused end
  if key == "GET health" then
    return ok(200, json.object({ ok = true, version = M._VERSION }, { "ok", "version" }))
  elseif key == "GET requests" then
    local counts, by, connections, protocols = ngx.shared.flowmusic_sandbox_requests, {}, {}, {}
    for _, k in ipairs(counts:get_keys(0)) do
      local conn, proto = k:match("^#conn (%d+)$"), k:match("^#proto (.+)$")
      if conn then connections[conn] = counts:get(k)
      elseif proto then protocols[proto] = counts:get(k)
      elseif k ~= "total" and k:sub(1, 1) ~= "#" then by[k] = counts:get(k) end
    end
    return ok(200, json.object({ total = counts:get("total") or 0, by = by, connections = connections,
                                 protocols = protocols, tls_handshakes = counts:get("#tls handshakes") or 0 },
                               { "total", "by", "connections", "protocols", "tls_handshakes" }))
  elseif key == "GET faults" then
    return ok(200, { faults = json.array(faults.queue()) })
  elseif key == "DELETE faults" then
    faults.clear()
    return ok(200, { ok = true })
  end
  local body = control_body()
  if not body then return fail(400, "Control request body must be a JSON object") end
  if key == "POST reset" then
    ngx.shared.flowmusic_sandbox:flush_all()
    ngx.shared.flowmusic_sandbox_requests:flush_all()
    ngx.shared.flowmusic_sandbox_faults:flush_all()
    return ok(200, { ok = true })
  elseif key == "POST faults" then
    local f, err, status = faults.script(body)
    if not f then return fail(status, err) end
    return ok(201, f)
  elseif key == "POST seed" then
    local count, tier = body.count, body.tier
    if tier == nil or tier == cjson.null then tier = "plus" end
    if not util.is_integer(count) or count < 1 or count > accounts.MAX_ACCOUNTS then
      return fail(400, "count must be an integer 1-50")
    end
    if not tokens.tiers[tier] then return fail(400, "unknown tier " .. tostring(tier)) end
    local emails, new = {}, 0
    for i = 1, count do
      emails[i] = string.format("seed-%02d@sandbox.test", i)
      if not accounts.get(emails[i]) then new = new + 1 end
    end
    if accounts.count() + new > accounts.MAX_ACCOUNTS then return fail(400, accounts.LIMIT_MESSAGE) end
    for _, email in ipairs(emails) do
      if not accounts.get(email) then
        local _, err = accounts.create(email, tier, "sandbox:" .. tier .. ":" .. email)
        if err then return fail(507, err) end
      end
    end
    return ok(200, { emails = json.array(emails) })
  elseif key == "POST jobs" then
    return saturation.set_running(body)
  elseif key == "POST subscription" then
    return saturation.set_subscription(body)
  elseif key == "POST usage" then
    local email, n = body.email, body.events
    if type(email) ~= "string" then return fail(400, "email is required") end
    if #email > accounts.MAX_EMAIL then return fail(400, accounts.EMAIL_MESSAGE) end
    if n == nil or n == cjson.null then n = 0 end
    if not util.is_integer(n) or n < 0 or n > usage.MAX_EVENTS then
      return fail(400, "events must be an integer 0-" .. usage.MAX_EVENTS)
    end
    if not accounts.get(email) then return fail(404, "Account " .. email .. " not found") end
    local stored, err = usage.set_size(email, n)
    if not stored then return fail(507, err) end
    return ok(200, json.object({ email = email, events = n }, { "email", "events" }))
  end
  return fail(404, "Unknown sandbox control endpoint " .. key)
end

-- Route one request.
local function dispatch()
  local method = ngx.req.get_method()
  local path = ngx.var.request_uri:match("^[^?]*")
  local name = path:match("^/__sandbox/([%w_]+)$")
  if name then return send(control(method, name)) end
  return handle_api(method, path)
end

-- The first line of an error, without the traceback.
local function first_line(err)
  return (tostring(err):match("^[^\n]*"))
end

--- The content handler for every request. A Lua error in any handler becomes a JSON 500
-- naming it (and an error.log line with the traceback); after the headers went out, the
-- connection is closed instead.
function M.handle()
  local ok, err = xpcall(dispatch, debug.traceback)
  if ok then return end
  ngx.log(ngx.ERR, "flowmusic sandbox: handler error: ", err)
  if ngx.headers_sent then return ngx.exit(444) end
  ngx.header["Retry-After"] = nil
  ngx.header["Location"] = nil
  return send(util.error_response(500, "Sandbox handler error: " .. first_line(err)))
end

local NGINX_ERRORS = {
  [400] = "Bad request", [404] = "Not found", [405] = "Method not allowed",
  [408] = "Request timeout", [411] = "Length required",
  [413] = "Request body too large (the sandbox takes at most 8 MiB)",
  [414] = "Request URI too long", [431] = "Request header fields too large",
  [494] = "Request header fields too large",
  [500] = "Internal sandbox error (see the sandbox's error.log)",
  [501] = "Not implemented", [502] = "Bad gateway", [503] = "Service unavailable",
}

--- The `error_page` handler: errors nginx answers by itself (a body over the size limit, an
-- over-long URI or header, a crash outside `handle`) as JSON like every other error.
function M.nginx_error()
  local status = ngx.status
  if type(status) ~= "number" or status < 400 then status = 500 end
  return send(util.error_response(status, NGINX_ERRORS[status] or ("HTTP " .. status)))
end

return M
