--- Error values of flowmusic: what a failed call returns as its second value.
-- Every error is a table with a metatable whose `__tostring` gives one readable line.
-- Fields: `kind` ("http", "timeout", "network", "bad_response", "too_large", "redirect",
-- "cancelled" (a batch stopped early: `reason` "not_run" or "interrupted"), "refused" (not
-- sent: `reason` "token_used", a refresh token flowmusic.used_tokens knows was sent before)),
-- `status` (HTTP status, when there was one), `message`, `retry_after` (seconds, when the
-- server said), `method`, `path`, `reason` (finer cause, e.g. "connect", "reset",
-- "truncated"), `reached` (the request may have reached the server), `attempts`,
-- `outcome_unknown` (a non-idempotent call that may or may not have been applied),
-- `proxy_status` (a proxy's answer that opened no way to the server, with reason "proxy").
-- Secrets never enter an error: server messages are scrubbed of the tokens sent.
-- @module flowmusic.errors
local core = require "flowmusic.core"

local M = {}

-- Longest server text kept in a message (after secrets are scrubbed from the whole text).
local MESSAGE_MAX = 300

local Error = {}
Error.__index = Error
Error.__name = "flowmusic.error"

Error.__tostring = function(e)
  local parts = { "flowmusic: ", e.kind or "error" }
  if e.status and e.status > 0 then parts[#parts + 1] = " " .. e.status end
  if e.method and e.path then parts[#parts + 1] = " on " .. e.method .. " " .. e.path end
  if e.message and e.message ~= "" then parts[#parts + 1] = ": " .. e.message end
  if e.retry_after then parts[#parts + 1] = (" (retry after %gs)"):format(e.retry_after) end
  if e.attempts and e.attempts > 1 then parts[#parts + 1] = (" [%d attempts]"):format(e.attempts) end
  return (table.concat(parts):gsub("[\r\n]+", " "))
end

--- Make an error value from a table of fields.
function M.new(fields) return setmetatable(fields, Error) end

--- An error's line without the `flowmusic: ` that tostring starts with, for reports and
-- messages that name the program already; any other value as tostring gives it.
function M.text(e) return (tostring(e):gsub("^flowmusic: ", "")) end

--- True when v is a flowmusic error value.
function M.is(v) return getmetatable(v) == Error end

--- Restore the metatable of an error that crossed a boundary as a plain table
-- (e.g. back from an nginx worker thread).
function M.adopt(t)
  if type(t) == "table" and t.kind and getmetatable(t) == nil then setmetatable(t, Error) end
  return t
end

-- libcurl result codes -> kind, reason, and whether the request may have reached the server
-- (false = provably not sent; nil = decided by whether request bytes went out).
local by_curl_code = {}
for name, row in pairs {
  UNSUPPORTED_PROTOCOL = { "network", "protocol", false },
  URL_MALFORMAT = { "network", "bad_url", false },
  COULDNT_RESOLVE_PROXY = { "network", "dns", false },
  COULDNT_RESOLVE_HOST = { "network", "dns", false },
  COULDNT_CONNECT = { "network", "connect", false },
  WEIRD_SERVER_REPLY = { "bad_response", "weird_reply", true },
  HTTP2 = { "network", "http2", nil },
  PARTIAL_FILE = { "network", "truncated", true },         -- body shorter than announced
  OPERATION_TIMEDOUT = { "timeout", "timeout", nil },
  SSL_CONNECT_ERROR = { "network", "tls", false },          -- handshake
  TOO_MANY_REDIRECTS = { "redirect", "redirect", true },
  GOT_NOTHING = { "network", "empty_reply", true },         -- closed without any answer
  SEND_ERROR = { "network", "send", nil },
  RECV_ERROR = { "network", "reset", nil },                 -- includes a chunked body cut short
  SSL_CERTPROBLEM = { "network", "tls_verify", false },
  PEER_FAILED_VERIFICATION = { "network", "tls_verify", false },
  BAD_CONTENT_ENCODING = { "bad_response", "bad_encoding", true },
  SSL_CACERT_BADFILE = { "network", "tls_verify", false },
  SSL_ISSUER_ERROR = { "network", "tls_verify", false },
  SSL_PINNEDPUBKEYNOTMATCH = { "network", "tls_verify", false },
  SSL_INVALIDCERTSTATUS = { "network", "tls_verify", false },
  HTTP2_STREAM = { "network", "http2", nil },
} do
  by_curl_code[core.CURLE[name]] = row
end

--- Replace every occurrence of each secret in s (strings shorter than 4 bytes are not
-- treated as secrets).
function M.scrub(s, secrets)
  if type(s) ~= "string" or not secrets then return s end
  for _, secret in ipairs(secrets) do
    if type(secret) == "string" and #secret >= 4 then
      local i = 1
      while true do
        local a, b = s:find(secret, i, true)
        if not a then break end
        s = s:sub(1, a - 1) .. "[redacted]" .. s:sub(b + 1)
        i = a + #"[redacted]"
      end
    end
  end
  return s
end

--- Scrub secrets from server text, then shorten it: in that order, so no piece of a secret
-- survives at the cut. Control characters become spaces.
local function clean_text(s, secrets)
  s = M.scrub(s, secrets):gsub("[%z\1-\31\127]+", " ")
  if #s > MESSAGE_MAX then
    s = s:sub(1, MESSAGE_MAX):gsub("[\128-\191]*$", ""):gsub("[\192-\255]$", "") .. "..."
  end
  return s
end

-- Why a proxy failed, for the message, or nil when the failure was not the proxy's: its
-- answer to CONNECT (403 refused, 407 authentication required), or it could not be resolved
-- or reached (a refused connection is the proxy's when one is in use).
local function proxy_failure(c, via_proxy)
  local s = c.proxy_status
  if s == 407 then return "the proxy requires authentication (CONNECT answered 407)" end
  if s then return ("the proxy refused the tunnel (CONNECT answered %d)"):format(s) end
  if c.code == core.CURLE.COULDNT_RESOLVE_PROXY then return "the proxy's host name could not be resolved" end
  if c.code == core.CURLE.PROXY then return "the proxy failed the handshake" end
  if via_proxy and c.code == core.CURLE.COULDNT_CONNECT then return "the proxy could not be reached" end
end

--- The error for a completion whose exchange did not complete (libcurl code ~= 0).
-- @param c completion table from the C session
-- @param call the call record (method, path)
-- @param via_proxy true when the client's requests go through a proxy (flowmusic.proxy)
-- @param secrets strings to scrub from libcurl's message (the proxy's credentials)
function M.from_transport(c, call, via_proxy, secrets)
  local kind, reason, reached
  local why_proxy = not c.too_large and not c.out_of_memory and proxy_failure(c, via_proxy)
  if why_proxy then
    -- The request never left for the server: as a failed connect, retried even for writes.
    return M.new {
      kind = "network", reason = "proxy", reached = false, proxy_status = c.proxy_status,
      message = why_proxy .. ": " .. clean_text(c.message or "", secrets), method = call.method,
      path = call.path, curl_code = c.code,
    }
  end
  if c.too_large then
    kind, reason, reached = "too_large", "too_large", true
  elseif c.out_of_memory then
    kind, reason, reached = "network", "out_of_memory", c.sent
  else
    local row = by_curl_code[c.code] or { "network", "transport", nil }
    kind, reason, reached = row[1], row[2], row[3]
    if reached == nil then reached = c.sent end
    if kind == "timeout" and not c.sent then reason = "connect_timeout" end
  end
  local message = kind == "too_large" and (c.too_large_reason or "response larger than max_response_bytes")
    or (secrets and c.message and M.scrub(c.message, secrets)) or c.message
  return M.new {
    kind = kind, reason = reason, reached = reached, status = c.status ~= 0 and c.status or nil,
    message = message, method = call.method, path = call.path, curl_code = c.code,
  }
end

local months = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
  Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- Days since 1970-01-01 of a proleptic Gregorian date (no dependence on the local zone).
local function days_from_civil(y, m, d)
  local floor = math.floor -- (no // operator: this file also runs on Lua 5.1)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Seconds to wait from a Retry-After value (delta-seconds or an IMF-fixdate), or nil.
-- @param value header value
-- @param now current Unix time in seconds (defaults to os.time())
function M.parse_retry_after(value, now)
  if type(value) ~= "string" then return nil end
  local secs = value:match("^%s*(%d+)%s*$")
  if secs then return tonumber(secs) end
  local d, mon, y, hh, mm, ss = value:match("^%s*%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  if not d or not months[mon] then return nil end
  local t = days_from_civil(tonumber(y), months[mon], tonumber(d)) * 86400
    + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
  local delta = t - (now or os.time())
  return delta > 0 and delta or 0
end

-- The server's text in an error document: `error` when it is a string, else `message`, else
-- `error.message`; nil when there is none.
local function server_text(doc)
  if type(doc) ~= "table" then return nil end
  if type(doc.error) == "string" then return doc.error end
  if type(doc.message) == "string" then return doc.message end
  if type(doc.error) == "table" and type(doc.error.message) == "string" then return doc.error.message end
end

--- Seconds from now until an ISO 8601 UTC time (`2026-12-06T19:30:05.123Z`, `...+00:00`,
-- with or without a fraction), 0 for a past one; nil for anything else. useapi puts the end
-- of a 429's wait in the body as `retryAfter`.
-- @param value the time
-- @param now current Unix time in seconds (defaults to core.wall_time(), to the millisecond)
function M.parse_iso_time(value, now)
  if type(value) ~= "string" then return nil end
  local y, mo, d, hh, mm, ss, frac, zone =
    value:match("^%s*(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(%.?%d*)(.-)%s*$")
  local utc = zone == "Z" or zone == "z" or zone == "+00:00" or zone == "-00:00" or zone == "+0000"
  if not y or not utc then return nil end
  if frac ~= "" and not frac:match("^%.%d+$") then return nil end
  mo, d, hh, mm, ss = tonumber(mo), tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  local t = days_from_civil(tonumber(y), mo, d) * 86400 + hh * 3600 + mm * 60 + ss + (tonumber("0" .. frac) or 0)
  local delta = t - (now or core.wall_time())
  return delta > 0 and delta or 0
end

-- The finer cause of the vendor's own statuses: 402 the subscription expired or has no
-- credits, 412 not enough credits (useapi's other APIs), 596 the account is in error state
-- (its refresh token was rejected). None of them is retried.
local reason_of_status = { [402] = "payment_required", [412] = "insufficient_credits", [596] = "account_error" }

--- The error for an HTTP answer the operation does not accept.
-- @param c completion (with parsed `headers`)
-- @param doc its decoded body (any JSON value) or nil when it was not JSON
-- @param call the call record (method, path)
-- @param secrets strings to scrub from any text
-- @param json_text the body text when it was JSON without a usable message (shown shortened)
function M.from_status(c, doc, call, secrets, json_text)
  local status = c.status
  local message = server_text(doc)
  if not message then
    if json_text then
      message = "HTTP " .. status .. " with a JSON body: " .. json_text
    else
      local ctype = (c.headers["content-type"] or ""):match("^[^;]*")
      message = ctype ~= "" and ("HTTP %d with %s %s body"):format(status,
        ctype:find("^[AaEeIiOoUu]") and "an" or "a", ctype)
        or ("HTTP %d without a content type"):format(status)
    end
  end
  if status == 407 then -- a forward proxy's own answer: the request went no further
    return M.new {
      kind = "network", reason = "proxy", reached = false, proxy_status = 407, status = status,
      message = "the proxy requires authentication (407)", method = call.method, path = call.path,
    }
  end
  local kind = (status >= 300 and status < 400) and "redirect" or "http"
  local retry_after = M.parse_retry_after(c.headers["retry-after"])
  if retry_after == nil and status == 429 and type(doc) == "table" then
    retry_after = M.parse_iso_time(doc.retryAfter) -- useapi's own way, when no header says it
  end
  return M.new {
    kind = kind, reason = reason_of_status[status] or kind, status = status, message = clean_text(message, secrets),
    retry_after = retry_after,
    reached = true, method = call.method, path = call.path,
  }
end

return M
