--- Webhook deliveries: POST one JSON document to a URL through flowmusic's own libcurl
-- session (the same timeouts, retry schedule, TLS trust and proxy rules as the API client;
-- no API token is ever sent). For alerts (`flowmusic status --notify URL`).
--
--     local webhook = require "flowmusic.webhook"
--     local hook = assert(webhook.new("https://user:pw@hooks.example/flowmusic?key=abc"))
--     local ok, err = hook:post { event = "needs_reauth", email = "a@x.com" }
--     if not ok then print("not delivered: " .. tostring(err)) end   -- never the password or key
--     print(webhook.show(hook.url))   --> https://***@hooks.example/flowmusic?***
--
-- A delivery is a POST, so it is never re-sent once it may have reached the receiver (a reset
-- after the body went out, a timeout): such a failure says `outcome_unknown`. A receiver
-- that is down (connection refused) is retried like the API. Credentials in the URL
-- (`user:password@`) go out as HTTP basic authentication (libcurl's rule); they, the query
-- and its values appear in no error and in no `tostring`.
-- @module flowmusic.webhook
local engine = require "flowmusic.engine"
local settings = require "flowmusic.settings"
local validate = require "flowmusic.validate"
local proxy = require "flowmusic.proxy"

local M = {}

local Hook = { __name = "flowmusic.webhook" }
Hook.__index = Hook

local option_checks = {
  timeout = validate.seconds, connect_timeout = validate.seconds, deadline = validate.seconds,
  retries = function(v, name) return validate.retries(v, name, require("flowmusic.defaults").max_retries) end,
  cainfo = function(v) return type(v) == "string" and v or nil, "cainfo must be a string" end,
  capath = function(v) return type(v) == "string" and v or nil, "capath must be a string" end,
  proxy = function(v) return type(v) == "string" and v or nil, "proxy must be a string" end,
  allow_http = function(v) if type(v) == "boolean" then return v end return nil, "allow_http must be a boolean" end,
}

-- What the scheduler and the retry policy read of a delivery: a write whose answer body is
-- ignored, never re-sent once it may have arrived. (Not an API operation: it is not in
-- flowmusic.ops, so no client method sends it to the API.)
local DELIVERY = { name = "webhook_post", label = "notify", answer = "none", extras = {},
  unknown_note = "(outcome unknown: the receiver may have it all the same)" }

local states = setmetatable({}, { __mode = "k" }) -- hook -> { run, session, call, url }

--- A URL for people: user info and query hidden (`https://***@host/path?***`).
-- @tparam string url
-- @treturn string
function M.show(url)
  local scheme, rest = tostring(url):match("^(%a[%w+.-]*://)(.*)$")
  if not scheme then return "(not a URL)" end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  authority = authority:gsub("^.*@", "***@")
  path = path:gsub("#.*$", ""):gsub("%?.*$", "?***")
  return scheme .. authority .. path
end

-- The secrets of a webhook URL: the URL itself and its user info (proxy.secrets), the query
-- and each of its values.
local function secrets_of(url)
  local list = proxy.secrets(url)
  local query = url:match("%?([^#]*)")
  if query and query ~= "" then
    list[#list + 1] = url
    list[#list + 1] = query
    for value in query:gmatch("=([^&]+)") do
      if #value >= 4 then list[#list + 1] = value end
    end
  end
  return list
end

-- Check a webhook URL: http(s), a host, no spaces or control characters; plain http only to
-- loopback unless allow_http.
local function check_url(url, allow_http)
  if type(url) ~= "string" then return nil, "webhook URL must be a string, got " .. type(url) end
  if url:find("[%s%c]") then return nil, "webhook URL must not contain spaces or control characters" end
  local scheme, rest = url:match("^(%a+)://(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, "webhook URL must start with https:// or http://" end
  local authority = rest:match("^([^/?#]*)"):gsub("^.*@", "")
  local host = authority:match("^%[([%x:.]+)%]") or authority:match("^([%w%.%-]+)")
  if not host then return nil, "webhook URL has no valid host" end
  if scheme == "http" and not allow_http then
    local ok = validate.base_url("http://" .. authority, false)
    if not ok then
      return nil, "plain http:// webhooks are only allowed to loopback hosts (allow_http = true overrides)"
    end
  end
  return url
end

--- Make a webhook sender.
-- @tparam string url http(s) URL; may carry `user:password@` and a query
-- @tparam[opt] table opts `timeout`, `connect_timeout`, `deadline`, `retries`, `cainfo`,
--   `capath`, `proxy`, `allow_http` (as for flowmusic.new)
-- @return the sender, or nil and a message (a bad URL, an unreadable CA file). Raises on
--   misuse (unknown option, wrong type).
function M.new(url, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("flowmusic.webhook: options must be a table", 2) end
  local o = {}
  for k, v in pairs(opts) do
    local check = option_checks[k]
    if not check then error(("flowmusic.webhook: unknown option '%s'"):format(tostring(k)), 2) end
    local value, msg = check(v, k)
    if value == nil then error("flowmusic.webhook: " .. msg, 2) end
    o[k] = value
  end
  local ok, msg = check_url(url, o.allow_http)
  if not ok then return nil, msg end
  local cfg
  cfg, msg = settings.transport(o, url)
  if not cfg then return nil, msg end
  local secrets = secrets_of(url)
  for _, s in ipairs(cfg.proxy_secrets) do secrets[#secrets + 1] = s end
  cfg.proxy_secrets = secrets -- (the engine keeps these out of every error)
  -- (the path as messages show it: without the query, which may hold a key)
  local path = url:match("^%a+://[^/?#]*(/[^?#]*)") or "/"
  local call = { op = DELIVERY, name = DELIVERY.name, method = "POST", url = url, path = path,
    answer = DELIVERY.answer, compressed = false, fresh = true, resend = false, write = true }
  local session = engine.session(cfg)
  local hook = setmetatable({ url = M.show(url) }, Hook)
  states[hook] = { session = session, cfg = cfg, run = engine.single(session, cfg), call = call }
  return hook
end

--- POST a JSON document to the webhook.
-- @tparam table|string doc a table (encoded here) or JSON text
-- @return true and the HTTP status (2xx), or nil and a flowmusic error value (non-2xx,
--   network, timeout; `outcome_unknown` when it may have arrived all the same)
function Hook:post(doc)
  local st = states[self]
  if not st or st.closed then error("flowmusic.webhook: attempt to use a closed sender", 2) end
  if type(doc) ~= "table" and type(doc) ~= "string" then
    error("flowmusic.webhook: bad argument #1 to 'post' (a table or JSON text expected)", 2)
  end
  local call = {}
  for k, v in pairs(st.call) do call[k] = v end
  call.body = type(doc) == "string" and doc or require("flowmusic.format").json(doc)
  local r = engine.run_one(st.run, call)
  if not r.ok then return nil, r.err end
  return true, r.status
end

--- Release the connection; the sender can't be used afterwards (idempotent).
function Hook:close()
  local st = states[self]
  if st and not st.closed then
    st.closed = true
    st.session:close()
  end
end
Hook.__close = Hook.close

function Hook:__tostring()
  return ("flowmusic.webhook (%s)"):format(self.url)
end

return M
