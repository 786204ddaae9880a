--- Fault injection for API requests.
--
-- A fault is `name` plus parameters, given either per request in the header
-- `X-Sandbox-Fault: <name> [key=value ...]` (values may be double-quoted) or scripted with
-- `POST /__sandbox/faults` (see the README for the list). Scripted faults queue in order;
-- each applies to the next `count` matching requests (0 = until cleared).
-- @module flowmusic.sandbox.faults

local cjson = require "cjson.safe"
local json = require "flowmusic.sandbox.json"
local util = require "flowmusic.sandbox.util"

local M = {}

-- Parameter kinds: "num" (>= 0), "int" (integer in [min, max]), "str" (verbatim text).
local function num(default) return { kind = "num", default = default } end
local function int(default, min, max) return { kind = "int", default = default, min = min, max = max } end
local function str() return { kind = "str" } end
local APPLY = int(0, 0, 1)

--- Every fault name with its parameters and their defaults.
M.specs = {
  latency             = { ms = num(1000) },
  status              = { code = int(500, 100, 599), retry_after = str(), message = str(), apply = APPLY },
  html                = { code = int(502, 100, 599), apply = APPLY },
  reset               = { apply = APPLY },
  close_after_headers = { apply = APPLY },
  short_body          = { apply = APPLY },
  chunked_cut         = { apply = APPLY },
  stall               = { ms = num(30000), apply = APPLY },
  drip                = { bytes = int(1, 1, 1048576), interval_ms = num(100) },
  endless             = { seconds = num(60), apply = APPLY },
  huge                = { mb = num(25), apply = APPLY },
  huge_chunked        = { mb = num(25), apply = APPLY },
  invalid_json        = { apply = APPLY },
  deep_json           = { depth = int(10000, 1, 10000000), apply = APPLY },
}

local MESSAGES = {
  [400] = "Bad request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not found",
  [408] = "Request timeout", [409] = "Conflict", [429] = "Too many requests",
  [500] = "Internal server error", [502] = "Bad gateway", [503] = "Service unavailable",
  [504] = "Gateway timeout",
}

local REASONS = { [200] = "OK", [201] = "Created", [204] = "No Content", [400] = "Bad Request",
  [401] = "Unauthorized", [404] = "Not Found", [429] = "Too Many Requests",
  [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable" }

--- Build a checked fault from a name and raw parameters (strings or numbers).
-- @tparam string name
-- @tparam table raw parameters
-- @treturn table `{name=, params=}`, or `nil, message`
function M.build(name, raw)
  local spec = M.specs[name]
  if not spec then return nil, 'unknown sandbox fault "' .. tostring(name) .. '"' end
  local params = {}
  for k, v in pairs(raw) do
    local p = spec[k]
    if not p then return nil, 'fault "' .. name .. '" has no parameter "' .. tostring(k) .. '"' end
    if p.kind == "str" then
      params[k] = tostring(v)
    else
      local n = tonumber(v)
      if not n or n < 0 or (p.kind == "int" and (n ~= math.floor(n) or n < p.min or n > p.max)) then
        return nil, 'fault "' .. name .. '": bad value for "' .. k .. '": ' .. tostring(v)
      end
      params[k] = n
    end
  end
  for k, p in pairs(spec) do
    if params[k] == nil then params[k] = p.default end
  end
  return { name = name, params = params }
end

--- Parse the header form `name key=value key="quoted value" ...`.
-- @tparam string s
-- @treturn table fault, or `nil, message`
function M.parse(s)
  local name, rest = util.trim(s):match("^([%w_]+)%s*(.*)$")
  if not name then return nil, "empty sandbox fault" end
  local raw, pos = {}, 1
  while pos <= #rest do
    local k, q, e = rest:match('^([%w_]+)="([^"]*)"()', pos)
    if not k then
      k, q, e = rest:match("^([%w_]+)=(%S*)()", pos)
    end
    if not k then return nil, "cannot parse sandbox fault parameters: " .. rest:sub(pos) end
    raw[k] = q
    pos = (rest:match("^%s*()", e))
  end
  return M.build(name, raw)
end

-- The shared dict.
local function dict()
  return ngx.shared.flowmusic_sandbox
end

--- The scripted queue.
-- @treturn {table,...}
function M.queue()
  local s = dict():get("faults")
  return s and cjson.decode(s) or {}
end

-- Store the scripted queue.
local function save(q)
  if #q == 0 then
    dict():delete("faults")
  else
    dict():set("faults", cjson.encode(q))
  end
end

--- Script a fault from a control request body.
-- `{"fault": name, <params>..., "method"?, "path"?, "count"?}`; `fault` may also be the
-- whole header form (`"status code=503"`).
-- @tparam table body decoded JSON object
-- @treturn table the queued entry, or `nil, message`
function M.script(body)
  if type(body.fault) ~= "string" then return nil, "fault (a fault name) is required" end
  local raw = {}
  for k, v in pairs(body) do
    if k ~= "fault" and k ~= "method" and k ~= "path" and k ~= "count" and v ~= cjson.null then
      if type(v) ~= "string" and type(v) ~= "number" then
        return nil, 'fault parameter "' .. k .. '" must be a string or a number'
      end
      raw[k] = v
    end
  end
  local f, err
  if body.fault:find("%s") then
    f, err = M.parse(body.fault)
    if f then
      for k, v in pairs(raw) do f.params[k] = v end
      f, err = M.build(f.name, f.params)
    end
  else
    f, err = M.build(body.fault, raw)
  end
  if not f then return nil, err end
  local count = body.count
  if count == nil or count == cjson.null then count = 1 end
  if not util.is_integer(count) or count < 0 then return nil, "count must be an integer >= 0" end
  for _, k in ipairs({ "method", "path" }) do
    if body[k] ~= nil and body[k] ~= cjson.null and type(body[k]) ~= "string" then
      return nil, k .. " must be a string"
    end
  end
  local method = body.method ~= cjson.null and body.method or nil
  if method == "*" then method = nil end
  f.method = method and method:upper() or nil
  f.path = body.path ~= cjson.null and body.path or nil
  f.count = count
  local q = M.queue()
  q[#q + 1] = f
  save(q)
  return f
end

--- Clear the scripted queue.
function M.clear()
  dict():delete("faults")
end

--- Take the first scripted fault matching a request (consuming one use of it).
-- @tparam string method
-- @tparam string path raw path without query
-- @treturn table|nil fault
function M.take(method, path)
  local q = M.queue()
  for i, f in ipairs(q) do
    if (f.method == nil or f.method == method) and (f.path == nil or f.path == path) then
      if f.count > 0 then
        f.count = f.count - 1
        if f.count == 0 then table.remove(q, i) end
        save(q)
      end
      return f
    end
  end
  return nil
end

-- Send raw bytes on the downstream connection, bypassing nginx's HTTP output; then the
-- request ends and nginx closes the connection.
local function raw_send(head, body)
  ngx.req.read_body()
  local sock, err = ngx.req.socket(true)
  if not sock then
    ngx.log(ngx.ERR, "sandbox fault: raw socket: ", err)
    return ngx.exit(444)
  end
  sock:send(head)
  if body and #body > 0 then sock:send(body) end
  return ngx.exit(ngx.OK)
end

-- A raw status line plus headers.
local function raw_head(status, headers)
  local h = { "HTTP/1.1 " .. status .. " " .. (REASONS[status] or "Unknown") .. "\r\n",
              "Server: flowmusic-sandbox\r\n", "Date: " .. ngx.http_time(ngx.time()) .. "\r\n" }
  for _, line in ipairs(headers) do h[#h + 1] = line .. "\r\n" end
  h[#h + 1] = "\r\n"
  return table.concat(h)
end

-- The body used by the truncating faults: the real response when applied, else a record-like one.
local function some_body(resp)
  if resp and resp.body and #resp.body > 1 then return resp.status, resp.body end
  return 200, json.encode(json.object({ email = "truncated@flowmusic.sandbox", tier = "plus",
    padding = string.rep("x", 400) }, { "email", "tier", "padding" }))
end

-- Print and flush, reporting whether the client is still there.
local function emit(s)
  local ok = ngx.print(s)
  if not ok then return false end
  return ngx.flush(true) ~= nil
end

-- Stream a valid JSON document of about `mb` MiB; with `length`, send a Content-Length first.
local function huge(mb, length)
  local target = math.max(64, math.floor(mb * 1048576))
  local item = '"' .. string.rep("x", 1022) .. '"' -- 1024 bytes
  local head, tail = '{"huge":true,"padding":[', "]}"
  local n = math.max(1, math.floor((target - #head - #tail + 1) / (#item + 1)))
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json"
  if length then ngx.header["Content-Length"] = #head + n * #item + (n - 1) + #tail end
  local chunk = string.rep(item .. ",", 64) -- 64 items per write
  if not emit(head) then return end
  local left = n
  while left > 64 do
    if not emit(chunk) then return end
    left = left - 64
  end
  emit(string.rep(item .. ",", left - 1) .. item .. tail)
end

--- Deliver a fault.
-- @tparam table f fault (`name`, `params`)
-- @tparam function process runs the real request, returns a response table
-- @tparam function send sends a response table
function M.apply(f, process, send)
  local p, name = f.params, f.name
  if name == "latency" then
    ngx.sleep(p.ms / 1000)
    return send(process())
  elseif name == "drip" then
    local resp = process()
    ngx.status = resp.status
    for k, v in pairs(resp.headers) do ngx.header[k] = v end
    ngx.header["Content-Length"] = #resp.body
    local body, pos = resp.body, 1
    ngx.send_headers()
    ngx.flush(true)
    while pos <= #body do
      ngx.sleep(p.interval_ms / 1000)
      if not emit(body:sub(pos, pos + p.bytes - 1)) then return end
      pos = pos + p.bytes
    end
    return
  end

  local resp = (p.apply == 1) and process() or nil

  if name == "status" then
    local headers = {}
    if p.retry_after then headers["Retry-After"] = p.retry_after end
    return send(util.error_response(p.code, p.message or MESSAGES[p.code] or ("Sandbox fault: status " .. p.code), headers))
  elseif name == "html" then
    return send({ status = p.code, headers = { ["Content-Type"] = "text/html" }, body =
      "<html>\r\n<head><title>" .. p.code .. " Bad Gateway</title></head>\r\n<body>\r\n<center><h1>"
      .. p.code .. " Bad Gateway</h1></center>\r\n<hr><center>flowmusic-sandbox proxy</center>\r\n</body>\r\n</html>\r\n" })
  elseif name == "invalid_json" then
    return send({ status = 200, headers = { ["Content-Type"] = "application/json" },
                  body = '{"email": "sandbox@flowmusic.sandbox", "tier": plus,' })
  elseif name == "deep_json" then
    return send({ status = 200, headers = { ["Content-Type"] = "application/json" },
                  body = string.rep("[", p.depth) .. string.rep("]", p.depth) })
  elseif name == "reset" then
    ngx.req.read_body()
    return ngx.exec("/__sandbox_reset_connection") -- 444 with reset_timedout_connection: RST
  elseif name == "stall" then
    ngx.sleep(p.ms / 1000)
    return ngx.exit(444)
  elseif name == "close_after_headers" then
    return raw_send(raw_head(200, { "Content-Type: application/json", "Content-Length: 1000" }))
  elseif name == "short_body" then
    local status, body = some_body(resp)
    return raw_send(raw_head(status, { "Content-Type: application/json", "Content-Length: " .. #body }),
                    body:sub(1, math.floor(#body / 2)))
  elseif name == "chunked_cut" then
    local status, body = some_body(resp)
    local half = body:sub(1, math.floor(#body / 2))
    return raw_send(raw_head(status, { "Content-Type: application/json", "Transfer-Encoding: chunked" }),
                    string.format("%x\r\n%s\r\n", #half, half))
  elseif name == "endless" then
    ngx.status = 200
    ngx.header["Content-Type"] = "application/json"
    local chunk = string.rep('"endless",', 1600) -- 16000 bytes
    local deadline = ngx.now() + p.seconds
    if not emit('{"endless":[') then return end
    while ngx.now() < deadline do
      if not emit(chunk) then return end
      ngx.sleep(0.001)
      ngx.update_time()
    end
    return ngx.exit(444)
  elseif name == "huge" or name == "huge_chunked" then
    return huge(p.mb, name == "huge")
  end
  error("fault not implemented: " .. name)
end

return M
