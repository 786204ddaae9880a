--- Fault injection for API requests.
--
-- A fault is `name` plus parameters, given either per request in the header
-- `X-Sandbox-Fault: <name> [key=value ...]` (values may be double-quoted) or scripted with
-- `POST /__sandbox/faults` (see docs/sandbox.md for the list). Scripted faults queue in order;
-- each applies to the next `count` matching requests (0 = until cleared).
-- @module flowmusic.sandbox.faults

local cjson = require "cjson.safe"
local json = require "flowmusic.sandbox.json"
local util = require "flowmusic.sandbox.util"

local M = {}

-- Parameter kinds: "num" (a number in [0, max]), "int" (an integer in [min, max]), "str" (text
-- of at most `max` bytes; `oneof` lists the allowed values; `plain` refuses control characters).
local function num(default, max) return { kind = "num", default = default, max = max } end
local function int(default, min, max) return { kind = "int", default = default, min = min, max = max } end
local function str(max, extra)
  local p = { kind = "str", max = max }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end
local APPLY = int(0, 0, 1)
local MS = 600000    -- longest delay: 10 minutes
local MB = 1024      -- largest streamed body: 1 GiB
local BIG_LENGTH = 99999999999

--- Longest `message` of the status fault, in bytes.
M.MAX_MESSAGE = 1024

--- Longest `body` of the body fault, in bytes.
M.MAX_BODY = 4096

--- Most scripted faults queued at once (`POST /__sandbox/faults` answers 507 beyond).
M.MAX_QUEUE = 100

--- Largest `count` of a scripted fault.
M.MAX_COUNT = 1000000

--- The terminal sequences the `escape` fault puts into strings: OSC 0 (set the window title,
-- ended by BEL), then CSI 31 m (red).
M.ESCAPE = "\27]0;pwned\7\27[31m"

--- Every fault name with its parameters and their defaults (and ranges).
M.specs = {
  latency             = { ms = num(1000, MS) },
  status              = { code = int(500, 100, 599), retry_after = str(256, { plain = true }),
                          retry_after_body = num(nil, MS / 1000), message = str(M.MAX_MESSAGE), apply = APPLY },
  html                = { code = int(502, 100, 599), apply = APPLY },
  reset               = { apply = APPLY },
  close_after_headers = { apply = APPLY },
  short_body          = { apply = APPLY },
  chunked_cut         = { apply = APPLY },
  stall               = { ms = num(30000, MS), apply = APPLY },
  drip                = { bytes = int(1, 1, 1048576), interval_ms = num(100, 60000) },
  endless             = { seconds = num(60, 3600), apply = APPLY },
  huge                = { mb = num(25, MB), apply = APPLY },
  huge_chunked        = { mb = num(25, MB), apply = APPLY },
  invalid_json        = { apply = APPLY },
  deep_json           = { depth = int(10000, 1, 10000000), apply = APPLY },
  wide_json           = { mb = num(60, MB), chunked = int(0, 0, 1), apply = APPLY },
  cl_trailer          = { length = int(BIG_LENGTH, 0, 2 ^ 53 - 1), apply = APPLY },
  early_hints_cl      = { length = int(BIG_LENGTH, 0, 2 ^ 53 - 1), apply = APPLY },
  echo_secret         = { offset = int(295, 0, 4096), secret = str(16, { oneof = { auth = true, refresh = true } }),
                          code = int(400, 400, 599), apply = APPLY },
  escape              = { code = int(200, 200, 599), raw = int(0, 0, 1), apply = APPLY },
  redirect            = { code = int(302, 300, 399), location = str(2048, { plain = true }), apply = APPLY },
  body                = { code = int(200, 100, 599), content_type = str(256, { plain = true }),
                          body = str(M.MAX_BODY), apply = APPLY },
  handler_error       = {},
}

local MESSAGES = {
  [400] = "Bad request", [401] = "Unauthorized", [402] = "Subscription expired or no credits left",
  [403] = "Forbidden", [404] = "Not found", [412] = "Not enough credits to run this request",
  [596] = "Account is in error state: the refresh token was rejected, re-add the account",
  [408] = "Request timeout", [409] = "Conflict", [429] = "Too many requests",
  [500] = "Internal server error", [502] = "Bad gateway", [503] = "Service unavailable",
  [504] = "Gateway timeout",
}

local REASONS = { [103] = "Early Hints", [200] = "OK", [201] = "Created", [204] = "No Content",
  [400] = "Bad Request", [401] = "Unauthorized", [404] = "Not Found", [429] = "Too Many Requests",
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
    local bad = 'fault "' .. name .. '": bad value for "' .. k .. '": '
    if p.kind == "str" then
      v = tostring(v)
      if #v > p.max then return nil, bad .. "longer than " .. p.max .. " bytes" end
      if p.plain and v:find("%c") then return nil, bad .. "control characters" end
      if p.oneof and not p.oneof[v] then return nil, bad .. v end
      params[k] = v
    else
      local n = tonumber(v)
      local max = p.max
      if not n or n ~= n or n < 0 or n > max
        or (p.kind == "int" and (n ~= math.floor(n) or n < p.min)) then
        local range = p.kind == "int" and (" (an integer " .. p.min .. "-") or " (a number 0-"
        return nil, bad .. tostring(v):sub(1, 40) .. range .. string.format("%d", max) .. ")"
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

-- The shared dict of the queue (its own: a full queue can never evict accounts).
local function dict()
  return ngx.shared.flowmusic_sandbox_faults
end

--- The scripted queue.
-- @treturn {table,...}
function M.queue()
  local s = dict():get("faults")
  return s and cjson.decode(s) or {}
end

-- Store the scripted queue (never evicting anything): true, or `nil, message`.
local function save(q)
  if #q == 0 then
    dict():delete("faults")
    return true
  end
  local ok, err = dict():safe_set("faults", cjson.encode(q))
  if not ok then return nil, "the fault queue's shared dict is full (" .. tostring(err) .. ")" end
  return true
end

--- Script a fault from a control request body.
-- `{"fault": name, <params>..., "method"?, "path"?, "email"?, "count"?}`; `fault` may also be
-- the whole header form (`"status code=503"`). `path` ending in `*` matches by prefix; `email`
-- matches the account a request is about.
-- @tparam table body decoded JSON object
-- @treturn table the queued entry, or `nil, message, status` (400 bad request, 507 queue full)
function M.script(body)
  if type(body.fault) ~= "string" then return nil, "fault (a fault name) is required", 400 end
  if #body.fault > 4096 then return nil, "fault is longer than 4096 bytes", 400 end
  local raw = {}
  for k, v in pairs(body) do
    if k ~= "fault" and k ~= "method" and k ~= "path" and k ~= "count" and k ~= "email" and v ~= cjson.null then
      if type(v) ~= "string" and type(v) ~= "number" then
        return nil, 'fault parameter "' .. tostring(k) .. '" must be a string or a number', 400
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
  if not f then return nil, err, 400 end
  local count = body.count
  if count == nil or count == cjson.null then count = 1 end
  if not util.is_integer(count) or count < 0 or count > M.MAX_COUNT then
    return nil, "count must be an integer 0-" .. M.MAX_COUNT, 400
  end
  for k, max in pairs({ method = 16, path = 4096, email = 320 }) do
    if body[k] ~= nil and body[k] ~= cjson.null and (type(body[k]) ~= "string" or #body[k] > max) then
      return nil, k .. " must be a string of at most " .. max .. " bytes", 400
    end
  end
  local method = body.method ~= cjson.null and body.method or nil
  if method == "*" then method = nil end
  f.method = method and method:upper() or nil
  f.path = body.path ~= cjson.null and body.path or nil
  f.email = body.email ~= cjson.null and body.email or nil
  f.count = count
  local q = M.queue()
  if #q >= M.MAX_QUEUE then
    return nil, "the fault queue is full (" .. M.MAX_QUEUE .. " entries); DELETE /__sandbox/faults to clear it", 507
  end
  q[#q + 1] = f
  local ok
  ok, err = save(q)
  if not ok then return nil, err, 507 end
  return f
end

--- Clear the scripted queue.
function M.clear()
  dict():delete("faults")
end

-- Whether a scripted path matches a request path: exactly, or by prefix when it ends in `*`.
local function path_matches(want, path)
  if want == nil then return true end
  if want:sub(-1) == "*" then return path:sub(1, #want - 1) == want:sub(1, -2) end
  return want == path
end

--- Take the first scripted fault matching a request (consuming one use of it).
-- @tparam string method
-- @tparam string path raw path without query
-- @tparam[opt] string email the account the request is about (decoded path segment of
-- `/accounts/{email}`, or the `email` query argument of `/accounts/usage`)
-- @treturn table|nil fault
function M.take(method, path, email)
  local q = M.queue()
  for i, f in ipairs(q) do
    if (f.method == nil or f.method == method) and path_matches(f.path, path)
       and (f.email == nil or f.email == email) then
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

-- The body of the well-formed hostile deliveries: the real response with apply=1, else a
-- small JSON object.
local function small_or_real(resp)
  if resp and resp.body and #resp.body > 0 then return resp.status, resp.body end
  return 200, '{"email":"hostile@flowmusic.sandbox","tier":"plus"}'
end

-- Stream `n` copies of `item` joined by commas between `head` and `tail`, about 64 KiB per
-- write (the worker never holds the whole body); with `length`, a Content-Length is sent first.
local function stream(head, item, n, tail, length)
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json"
  if length then ngx.header["Content-Length"] = #head + n * #item + (n - 1) + #tail end
  local per = math.max(1, math.floor(65536 / (#item + 1)))
  local chunk = string.rep(item .. ",", per)
  if not emit(head) then return end
  local left = n
  while left > per do
    if not emit(chunk) then return end
    left = left - per
  end
  emit(string.rep(item .. ",", left - 1) .. item .. tail)
end

-- A JSON array of about `mb` MiB of empty arrays: `[[],[],...]` (millions of values in few bytes).
local function wide(mb, length)
  local target = math.max(8, math.floor(mb * 1048576))
  return stream("[", "[]", math.max(1, math.floor((target - 1) / 3)), "]", length)
end

-- Put the terminal escapes into the strings of a decoded document: every string value
-- of the keys that a client shows, and the email keys of the account map.
local SHOWN = { email = true, tier = true, subscription_plan = true, error = true,
                conversation_title = true, title = true, _account_email = true }
local function poison(v, depth)
  if type(v) ~= "table" or depth > 4 then return v end
  local out = {}
  for k, x in pairs(v) do
    if type(x) == "string" and SHOWN[k] then
      x = x .. M.ESCAPE
    elseif type(x) == "table" then
      x = poison(x, depth + 1)
    end
    if type(k) == "string" and k:find("@", 1, true) then k = k .. M.ESCAPE end
    out[k] = x
  end
  return setmetatable(out, getmetatable(v))
end

-- The 2xx body of the escape fault: the real answer (read-only requests, or apply=1) with
-- escapes in its shown strings; else a made-up record for the email of the path.
local function escape_body(resp, ctx)
  if not resp and ctx.method == "GET" then resp = ctx.process() end
  local doc = resp and resp.status < 300 and resp.body and cjson.decode(resp.body)
  if type(doc) ~= "table" then
    local email = ctx.path:match("/accounts/([^/]+)$")
    email = email and email ~= "usage" and util.percent_decode(email) or "escape@flowmusic.sandbox"
    doc = json.object({ email = email, tier = "plus", maxJobs = 12, credits_remaining = 5000,
                        tokens_remaining = 60000 }, { "email", "tier", "maxJobs", "credits_remaining",
                                                      "tokens_remaining" })
  end
  return json.encode(poison(doc, 1))
end

-- Stream a valid JSON document of about `mb` MiB; with `length`, send a Content-Length first.
local function huge(mb, length)
  local target = math.max(64, math.floor(mb * 1048576))
  local item = '"' .. string.rep("x", 1022) .. '"' -- 1024 bytes
  local head, tail = '{"huge":true,"padding":[', "]}"
  return stream(head, item, math.max(1, math.floor((target - #head - #tail + 1) / (#item + 1))), tail, length)
end

--- Deliver a fault.
-- @tparam table f fault (`name`, `params`)
-- @tparam function process runs the real request, returns a response table
-- @tparam function send sends a response table
-- @tparam table ctx the request: `method`, `path`, `token` (the bearer token sent, or nil),
-- `refresh_token()` (the refresh token of a POST body, or nil)
function M.apply(f, process, send, ctx)
  local p, name = f.params, f.name
  ctx.process = process
  if name == "handler_error" then
    error("handler_error fault: a deliberate Lua error in the sandbox handler")
  end
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
    local message = p.message or MESSAGES[p.code] or ("Sandbox fault: status " .. p.code)
    if p.retry_after_body then -- useapi's way on a 429: when to try again, in the body
      local at = util.iso_ms(util.now_ms() + math.floor(p.retry_after_body * 1000 + 0.5))
      return send(util.json_response(p.code, json.object({ error = message, code = p.code, retryAfter = at },
        { "error", "code", "retryAfter" }), headers))
    end
    return send(util.error_response(p.code, message, headers))
  elseif name == "html" then
    return send({ status = p.code, headers = { ["Content-Type"] = "text/html" }, body =
      "<html>\r\n<head><title>" .. p.code .. " Bad Gateway</title></head>\r\n<body>\r\n<center><h1>"
      .. p.code .. " Bad Gateway</h1></center>\r\n<hr><center>flowmusic-sandbox proxy</center>\r\n"
      .. "</body>\r\n</html>\r\n" })
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
  elseif name == "wide_json" then
    return wide(p.mb, p.chunked == 0)
  elseif name == "cl_trailer" then
    local status, body = small_or_real(resp)
    return raw_send(raw_head(status, { "Content-Type: application/json", "Transfer-Encoding: chunked",
                                       "Trailer: Content-Length", "Connection: close" }),
                    string.format("%x\r\n%s\r\n0\r\nContent-Length: %d\r\n\r\n", #body, body, p.length))
  elseif name == "early_hints_cl" then
    local status, body = small_or_real(resp)
    return raw_send(raw_head(103, { "Link: </style.css>; rel=preload; as=style",
                                    string.format("Content-Length: %d", p.length) })
                    .. raw_head(status, { "Content-Type: application/json", "Content-Length: " .. #body,
                                          "Connection: close" }), body)
  elseif name == "echo_secret" then
    local auth, refresh = ctx.token, ctx.refresh_token()
    local first, second = auth, refresh
    if p.secret == "refresh" and refresh then first, second = refresh, auth end
    local filler = string.rep("Request rejected by the upstream service; ", math.ceil(p.offset / 42) + 1)
    local msg = filler:sub(1, p.offset) .. (first or "(no token sent)")
    if second then msg = msg .. " (refresh: " .. second .. ")" end
    return send(util.error_response(p.code, msg))
  elseif name == "escape" then
    if p.code >= 300 then
      local body = json.encode(json.object({ error = "Upstream said " .. M.ESCAPE .. "something\27[0m", code = p.code },
                                           { "error", "code" }))
      if p.raw == 1 then body = body:gsub("\\u001b", "\27"):gsub("\\u0007", "\7") end
      return send({ status = p.code, headers = { ["Content-Type"] = "application/json" }, body = body })
    end
    local body = escape_body(resp, ctx)
    if p.raw == 1 then body = body:gsub("\\u001b", "\27"):gsub("\\u0007", "\7") end
    return send({ status = p.code, headers = { ["Content-Type"] = "application/json" }, body = body })
  elseif name == "body" then
    -- Exactly what was asked: the length is sent even for an empty body.
    ngx.status = p.code
    ngx.header["Content-Type"] = p.content_type or "application/json"
    ngx.header["Content-Length"] = #(p.body or "")
    if p.body and #p.body > 0 then ngx.print(p.body) end
    return ngx.exit(ngx.OK)
  elseif name == "redirect" then
    local location = p.location or ("http://127.0.0.2:" .. ngx.var.server_port .. ngx.var.request_uri)
    return send(util.json_response(p.code, json.object({ error = "Moved to " .. location, code = p.code },
                                                       { "error", "code" }), { Location = location }))
  end
  error("fault not implemented: " .. name)
end

return M
