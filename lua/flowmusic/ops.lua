--- The operation table: one declarative record per Flow Music accounts operation. The client
-- methods, batch items, the retry policy, the scheduler, the nginx adapter and the CLI all
-- read these records; no other library file names an operation.
--
-- A record:
--
-- * `name`: the client method (`client:get_account(...)`, batch item `{ "get_account", ... }`)
-- * `label`: short words for CLI and verbose output
-- * `min_args`, `max_args`: positional arguments; one more trailing table holds per-call
--   options (`timeout`, `deadline`, `retries`, plus the record's own `options`)
-- * `build(args, opts)`: checks the arguments, returns the request: `{ method, path, json,
--   secrets, compressed, root }` (`root`: the path is below the service's root, the base URL
--   without its `/v1/flowmusic`, as for useapi.net's `/v2/account`), or nil and a message
-- * `answer`: `"object"` (a JSON object is decoded), `"none"` (the body is ignored) or `"raw"`
--   (any status is a result: body, status, headers)
-- * `shape(doc, null)`: optional; nil, or a message saying which field has the wrong type
-- * `result(doc, status)`: the values the call returns (default: the document)
-- * `extras`: names, in a batch result, of the values after the first
-- * `resend(method)`: may the request be sent again after it may have reached the server
-- * `write(method)`: does it change state on the server (an unreadable answer then leaves the
--   outcome unknown)
-- * `fresh(method)` (optional): must it go out on a new connection; by default every request
--   but GET and HEAD does, so libcurl can never silently re-send a write on a pooled one
-- * `gone_ok`: a 404 after an attempt that may have applied counts as done: the value and the
--   note to return
-- * `unknown_note` (optional): what the message of a write whose outcome is unknown ends with
--   (default `M.OUTCOME_UNKNOWN_NOTE`)
-- @module flowmusic.ops
local validate = require "flowmusic.validate"
local defaults = require "flowmusic.defaults"
local format = require "flowmusic.format"

local M = {}

local by_name = {}

--- Appended to the message of a write whose outcome is unknown.
M.OUTCOME_UNKNOWN_NOTE = "(outcome unknown: the request may have been applied; check with list_accounts)"

local function always() return true end
local function never() return false end
local function bodyless(method) return method == "GET" or method == "HEAD" end
local function not_bodyless(method) return not bodyless(method) end

-- nil, or what is wrong with an account record (null: the value JSON null became; where:
-- optional prefix naming its place). Checked: the fields callers compute with.
local function account_shape(doc, null, where)
  local jobs, credits, tokens, email = doc.maxJobs, doc.credits_remaining, doc.tokens_remaining, doc.email
  local field, v
  if jobs ~= nil and jobs ~= null and type(jobs) ~= "number" then field, v = "maxJobs", jobs
  elseif credits ~= nil and credits ~= null and type(credits) ~= "number" then field, v = "credits_remaining", credits
  elseif tokens ~= nil and tokens ~= null and type(tokens) ~= "number" then field, v = "tokens_remaining", tokens
  elseif email ~= nil and email ~= null and type(email) ~= "string" then field, v = "email", email
  else return nil end
  return ("%s'%s' must be a %s, got %s"):format(where or "", field, field == "email" and "string" or "number", type(v))
end

-- Argument #i of name failed its check.
local function bad(name, i, msg) return nil, ("bad argument #%d to '%s' (%s)"):format(i, name, msg) end

-- The one email argument of get_account, delete_account, get_usage.
local function email_arg(name, a)
  local email, msg = validate.email(a[1])
  if not email then return bad(name, 1, msg) end
  return email
end

--- Register an operation record (see the module description) and return it. Raises on a
-- malformed record.
function M.define(rec)
  assert(type(rec.name) == "string" and rec.name:match("^[%a_][%w_]*$"), "operation needs a name")
  assert(type(rec.build) == "function", "operation " .. rec.name .. " needs build")
  assert(rec.answer == "object" or rec.answer == "none" or rec.answer == "raw",
    "operation " .. rec.name .. ": answer must be object, none or raw")
  rec.label = rec.label or rec.name:gsub("_", " ")
  rec.min_args, rec.max_args = rec.min_args or 0, rec.max_args or rec.min_args or 0
  rec.resend = rec.resend or never
  rec.write = rec.write or never
  rec.fresh = rec.fresh or not_bodyless
  rec.extras = rec.extras or {}
  by_name[rec.name] = rec
  return rec
end

--- The record of an operation name, or nil.
function M.get(name) return by_name[name] end

--- Every operation name, sorted (for messages and docs).
function M.names()
  local t = {}
  for name in pairs(by_name) do t[#t + 1] = name end
  table.sort(t)
  return t
end

M.define {
  name = "add_account", label = "add account", min_args = 1, max_args = 2,
  build = function(a)
    local token, msg = validate.refresh_token(a[1])
    if not token then return bad("add_account", 1, msg) end
    local body = { refresh_token = token }
    if a[2] ~= nil then
      local n, m = validate.max_jobs(a[2])
      if not n then return bad("add_account", 2, m) end
      body.maxJobs = n
    end
    return { method = "POST", path = "/accounts", json = body, secrets = { token }, spends = token }
  end,
  answer = "object", shape = account_shape,
  result = function(doc, status) return doc, status == 201 end,
  extras = { "created" },
  write = always, -- and never re-sent once it may have arrived: the token may rotate
}

M.define {
  name = "set_max_jobs", label = "set maxJobs", min_args = 2, max_args = 2,
  build = function(a)
    local email, msg = validate.email(a[1])
    if not email then return bad("set_max_jobs", 1, msg) end
    local n, m = validate.max_jobs(a[2])
    if not n then return bad("set_max_jobs", 2, m) end
    return { method = "POST", path = "/accounts", json = { email = email, maxJobs = n } }
  end,
  answer = "object", shape = account_shape,
  resend = always, -- setting the same value twice changes nothing
  write = always,
}

M.define {
  name = "list_accounts", label = "list accounts",
  build = function() return { method = "GET", path = "/accounts" } end,
  answer = "object",
  shape = function(doc, null)
    for email, rec in pairs(doc) do
      if type(rec) ~= "table" then return ("account '%s' must be an object"):format(tostring(email)) end
      local msg = account_shape(rec, null, "account '" .. tostring(email) .. "': ")
      if msg then return msg end
    end
  end,
  resend = always,
}

M.define {
  name = "get_account", label = "get account", min_args = 1,
  build = function(a)
    local email, msg = email_arg("get_account", a)
    if not email then return nil, msg end
    return { method = "GET", path = "/accounts/" .. validate.escape(email) }
  end,
  answer = "object", shape = account_shape,
  resend = always,
}

M.define {
  name = "delete_account", label = "delete account", min_args = 1,
  build = function(a)
    local email, msg = email_arg("delete_account", a)
    if not email then return nil, msg end
    return { method = "DELETE", path = "/accounts/" .. validate.escape(email) }
  end,
  answer = "none",
  result = function() return true end,
  extras = { "note" },
  gone_ok = { true, "already deleted: 404 after an earlier attempt that may have deleted it" },
  resend = always,
  write = always,
}

M.define {
  name = "get_usage", label = "get usage", min_args = 1,
  build = function(a)
    local email, msg = email_arg("get_usage", a)
    if not email then return nil, msg end
    -- Usage documents run to megabytes: ask for compression.
    return { method = "GET", path = "/accounts/usage?email=" .. validate.escape(email), compressed = true }
  end,
  answer = "object",
  shape = function(doc)
    if doc.events ~= nil and type(doc.events) ~= "table" then return "'events' must be an array" end
    if doc.summary ~= nil and type(doc.summary) ~= "table" then return "'summary' must be an object" end
  end,
  resend = always,
}

M.define {
  name = "list_jobs", label = "list jobs",
  build = function() return { method = "GET", path = "/jobs" } end,
  answer = "object",
  shape = function(doc)
    if doc.jobs ~= nil and type(doc.jobs) ~= "table" then return "'jobs' must be an array" end
    if doc.accounts ~= nil and type(doc.accounts) ~= "table" then return "'accounts' must be an object" end
  end,
  resend = always,
}

M.define {
  name = "get_subscription", label = "get subscription",
  -- useapi.net's own account endpoint: beside the API, not below its base URL
  build = function() return { method = "GET", path = "/v2/account", root = true } end,
  answer = "object",
  shape = function(doc)
    if doc.maxAccountsPerAPI ~= nil and type(doc.maxAccountsPerAPI) ~= "number" then
      return "'maxAccountsPerAPI' must be a number"
    end
    if doc.accounts ~= nil and type(doc.accounts) ~= "table" then return "'accounts' must be an object" end
  end,
  resend = always,
}

local request_methods = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true, HEAD = true }

M.define {
  name = "request", label = "request", min_args = 2,
  options = { query = true, body = true },
  build = function(a, opts)
    local method = a[1]
    if type(method) ~= "string" or not request_methods[method:upper()] then
      return bad("request", 1, "method must be one of GET, POST, PUT, PATCH, DELETE, HEAD")
    end
    method = method:upper()
    local p, msg = validate.request_path(a[2])
    if not p then return bad("request", 2, msg) end
    local req = { method = method, path = p, compressed = true } -- any endpoint: answers may be large
    if opts and opts.query ~= nil then
      local q, qm = validate.query(opts.query)
      if not q then return bad("request", 3, qm) end
      if q ~= "" then req.path = p .. (p:find("?", 1, true) and "&" or "?") .. q end
    end
    if opts and opts.body ~= nil then
      if type(opts.body) ~= "table" then return bad("request", 3, "body must be a table") end
      if bodyless(method) then return bad("request", 3, method .. " takes no body") end
      local okb, bmsg = validate.json_body(opts.body)
      if not okb then return bad("request", 3, bmsg) end
      req.json = opts.body
    end
    return req
  end,
  answer = "raw",
  extras = { "status", "headers" },
  resend = function(method) return method ~= "POST" and method ~= "PATCH" end,
  write = not_bodyless,
}

local call_options = { timeout = true, deadline = true, retries = true }

-- Check the per-call options table of rec; returns it or nil, message.
local function check_options(rec, opts)
  for k, v in pairs(opts) do
    if not call_options[k] and not (rec.options and rec.options[k]) then
      return nil, ("unknown %s option '%s'"):format(rec.name, tostring(k))
    end
    local ok, msg = true, nil
    if k == "timeout" or k == "deadline" then ok, msg = validate.seconds(v, k)
    elseif k == "retries" then ok, msg = validate.retries(v, k, defaults.max_retries) end
    if not ok then return nil, msg end
  end
  return opts
end

--- Check the arguments of an operation and make its call record: what the scheduler sends
-- (method, path, body as JSON text, fresh, compressed), the per-call options (timeout,
-- deadline, retries), the policy facts (resend, write) and the record itself (`op`). Call
-- records are never changed afterwards, so they may be cached and reused.
-- @param name operation name
-- @param args the arguments, packed (`n` = count)
-- @return the call, or nil and a message (misuse: the caller raises)
function M.prepare(name, args)
  local rec = by_name[name]
  if not rec then
    return nil, ("unknown operation '%s'"):format(tostring(name))
  end
  local n, opts = args.n, nil
  if n > rec.min_args and type(args[n]) == "table" then
    opts, args[n], n = args[n], nil, n - 1 -- (args is the caller's own packed copy)
    args.n = n
    local ok, msg = check_options(rec, opts)
    if not ok then return bad(name, n + 1, msg) end
  end
  if n > rec.max_args then
    if rec.max_args == 0 then return nil, ("'%s' takes no arguments (only an options table)"):format(name) end
    return nil, ("'%s' takes at most %d argument%s and an options table, got %d arguments"):format(
      name, rec.max_args, rec.max_args == 1 and "" or "s", args.n)
  end
  local req, msg = rec.build(args, opts)
  if not req then return nil, msg end
  -- (bytes kept: a refresh token goes out exactly as it was read)
  local body = req.json and format.json(req.json, true)
  local method = req.method
  return {
    op = rec, name = name, method = method, path = req.path, root = req.root or false, body = body,
    secrets = req.secrets, spends = req.spends, -- (spends: the refresh token the call uses up)
    compressed = req.compressed or false, fresh = rec.fresh(method), answer = rec.answer,
    resend = rec.resend(method), write = rec.write(method),
    timeout = opts and opts.timeout, deadline = opts and opts.deadline, retries = opts and opts.retries,
  }
end

return M
