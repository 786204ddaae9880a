--- The accounts operations: how each call is checked, turned into an HTTP request, and how
-- its answer becomes Lua values. The engine runs them; init.lua and batch expose them.
-- Each op: check(args) -> call | nil, message; result(call, status, doc, c) -> values.
-- @module flowmusic.ops
local validate = require "flowmusic.validate"

local M = {}

local JSON = "application/json"
local unpack = table.unpack or unpack

local function account_path(email) return "/accounts/" .. validate.escape(email) end

-- Build the call record every op returns from check(). o (optional) carries json (body
-- table), fresh (never reuse a pooled connection), secrets (strings to scrub from errors),
-- compressed (offer gzip), timeout (seconds). The constructor names the fields every call
-- gets (spec and policy are set by flowmusic's prepare), so the common GET never rehashes.
local function call(op, method, path, o)
  local c = { op = op, method = method, path = path, spec = false, policy = false }
  if o then
    for k, v in pairs(o) do c[k] = v end
  end
  return c
end

-- The answer must be a JSON object; the call returns it as its one value.
local function one_object(_, _, doc)
  if type(doc) ~= "table" then return nil, "expected a JSON object" end
  return { doc }
end

M.add_account = {
  check = function(a)
    local token, msg = validate.refresh_token(a[1])
    if not token then return nil, "bad argument #1 to 'add_account' (" .. msg .. ")" end
    local body = { refresh_token = token }
    if a[2] ~= nil then
      local n, m = validate.max_jobs(a[2])
      if not n then return nil, "bad argument #2 to 'add_account' (" .. m .. ")" end
      body.maxJobs = n
    end
    -- A fresh connection: libcurl silently re-sends on a stale pooled one, and this request
    -- carries a token the service may rotate, so it must go out at most once per attempt.
    return call("add_account", "POST", "/accounts", { json = body, fresh = true, secrets = { token } })
  end,
  expects_body = true,
  result = function(call, status, doc)
    local values, err = one_object(call, status, doc)
    if values then values[2] = status == 201 end
    return values, err
  end,
}

M.set_max_jobs = {
  check = function(a)
    local email, msg = validate.email(a[1])
    if not email then return nil, "bad argument #1 to 'set_max_jobs' (" .. msg .. ")" end
    local n, m = validate.max_jobs(a[2])
    if not n then return nil, "bad argument #2 to 'set_max_jobs' (" .. m .. ")" end
    return call("set_max_jobs", "POST", "/accounts", { json = { email = email, maxJobs = n } })
  end,
  expects_body = true,
  result = one_object,
}

M.list_accounts = {
  check = function(a)
    if a.n > 0 then return nil, "list_accounts takes no arguments" end
    return call("list_accounts", "GET", "/accounts")
  end,
  expects_body = true,
  result = one_object,
}

-- get_account, delete_account and get_usage take one email.
local function email_op(name, method, path_of)
  return function(a)
    local email, msg = validate.email(a[1], true)
    if not email then return nil, "bad argument #1 to '" .. name .. "' (" .. msg .. ")" end
    return call(name, method, path_of(email))
  end
end

M.get_account = {
  check = email_op("get_account", "GET", account_path),
  expects_body = true,
  result = one_object,
}

M.delete_account = {
  check = email_op("delete_account", "DELETE", account_path),
  expects_body = false,
  result = function() return { true } end,
}

M.get_usage = {
  check = function(a)
    local email, msg = validate.email(a[1])
    if not email then return nil, "bad argument #1 to 'get_usage' (" .. msg .. ")" end
    -- Usage documents run to megabytes: ask for compression.
    return call("get_usage", "GET", "/accounts/usage?email=" .. validate.escape(email), { compressed = true })
  end,
  expects_body = true,
  result = one_object,
}

local request_methods = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true, HEAD = true }
local request_options = { query = true, body = true, timeout = true }

M.request = {
  check = function(a)
    local method, path, opts = a[1], a[2], a[3]
    if type(method) ~= "string" or not request_methods[method:upper()] then
      return nil, "bad argument #1 to 'request' (method must be one of GET, POST, PUT, PATCH, DELETE, HEAD)"
    end
    method = method:upper()
    local p, msg = validate.request_path(path)
    if not p then return nil, "bad argument #2 to 'request' (" .. msg .. ")" end
    local fields = { compressed = true } -- any endpoint: its answer may be large
    if opts ~= nil then
      if type(opts) ~= "table" then return nil, "bad argument #3 to 'request' (options must be a table)" end
      local ok, m = validate.known_keys(opts, request_options, "request option")
      if not ok then return nil, "bad argument #3 to 'request' (" .. m .. ")" end
      if opts.query ~= nil then
        local q, qm = validate.query(opts.query)
        if not q then return nil, "bad argument #3 to 'request' (" .. qm .. ")" end
        if q ~= "" then p = p .. (p:find("?", 1, true) and "&" or "?") .. q end
      end
      if opts.body ~= nil then
        if type(opts.body) ~= "table" then return nil, "bad argument #3 to 'request' (body must be a table)" end
        if method == "GET" or method == "HEAD" then
          return nil, "bad argument #3 to 'request' (" .. method .. " takes no body)"
        end
        local okb, bmsg = validate.json_body(opts.body)
        if not okb then return nil, "bad argument #3 to 'request' (" .. bmsg .. ")" end
        fields.json = opts.body
      end
      if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout <= 0) then
        return nil, "bad argument #3 to 'request' (timeout must be a positive number)"
      end
      fields.timeout = opts.timeout
    end
    return call("request", method, p, fields)
  end,
  -- Any status is a result here; the body is decoded when it is JSON.
  raw = true,
}

--- Names of the operations a batch item may name.
M.names = { "add_account", "set_max_jobs", "list_accounts", "get_account", "delete_account", "get_usage", "request" }

--- Check the arguments of op name (packed with n) and return its call record; raises nothing.
function M.prepare(name, args)
  local op = M[name]
  if type(op) ~= "table" or not op.check then return nil, "unknown operation '" .. tostring(name) .. "'" end
  local c, msg = op.check(args)
  if not c then return nil, msg end
  c.spec = op
  return c
end

M.unpack = unpack

return M
