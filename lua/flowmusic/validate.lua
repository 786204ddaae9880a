--- Argument checks and URL encoding for flowmusic. Checks return the normalised value, or
-- nil and a message; callers raise with the right level. No message ever echoes a secret.
-- @module flowmusic.validate
local M = {}

--- Percent-encode s as one URL path segment or query component: everything but the RFC 3986
-- unreserved characters is encoded (`@` -> `%40`, `/ ? # %` and spaces included).
local percent = {} -- byte -> "%XX", built once (gsub with a table is the fast path)
for b = 0, 255 do percent[string.char(b)] = ("%%%02X"):format(b) end
-- Batches and loops name the same few accounts again and again: remember recent answers
-- (bounded; dropped wholesale when full).
local CACHE_MAX = 1024
local escaped, escaped_n = {}, 0
function M.escape(s)
  local e = escaped[s]
  if e then return e end
  e = s:gsub("[^%w%-%._~]", percent)
  if escaped_n >= CACHE_MAX then escaped, escaped_n = {}, 0 end
  escaped[s], escaped_n = e, escaped_n + 1
  return e
end

--- An account email, as used in a path, a query or a body: name@domain, no control
-- characters, at most 320 bytes.
local good_emails, good_n = {}, 0
function M.email(v)
  if good_emails[v] then return v end
  if type(v) ~= "string" then return nil, "email must be a string, got " .. type(v) end
  if v == "" then return nil, "email must not be empty" end
  if #v > 320 then return nil, "email is longer than 320 bytes" end
  if v:find("%c") then return nil, "email must not contain control characters" end
  if v == "." or v == ".." then return nil, "email must not be '.' or '..'" end
  -- (This also keeps 'usage' from addressing the /accounts/usage endpoint as a path.)
  if not v:find("^[^@]+@[^@]+$") then
    return nil, "email must look like name@domain (one '@' with text on both sides)"
  end
  if good_n >= CACHE_MAX then good_emails, good_n = {}, 0 end
  good_emails[v], good_n = true, good_n + 1
  return v
end

--- maxJobs: an integer 1-16 (an integral float such as 4.0 is accepted and made integral).
function M.max_jobs(v)
  if type(v) ~= "number" then return nil, "max_jobs must be an integer 1-16, got " .. type(v) end
  if v ~= v or v ~= math.floor(v) or v < 1 or v > 16 then
    return nil, "max_jobs must be an integer 1-16"
  end
  return math.tointeger and math.tointeger(v) or v
end

--- A Flow Music refresh token: at least 10 printable characters (its value never appears in
-- a message).
function M.refresh_token(v)
  if type(v) ~= "string" then return nil, "refresh_token must be a string, got " .. type(v) end
  if #v < 10 then return nil, "refresh_token must be at least 10 characters" end
  if #v > 8192 then return nil, "refresh_token is longer than 8192 bytes" end
  if v:find("[%z\1-\31\127]") then return nil, "refresh_token must not contain control characters" end
  return v
end

--- A useapi.net API token: printable ASCII without spaces (no CR, LF, NUL or non-ASCII
-- bytes that could split or corrupt the Authorization header).
function M.api_token(v)
  if type(v) ~= "string" then return nil, "token must be a string, got " .. type(v) end
  if v == "" then return nil, "token must not be empty" end
  if #v > 4096 then return nil, "token is longer than 4096 bytes" end
  if v:find("[^\33-\126]") then
    return nil, "token must be printable ASCII without spaces, CR, LF or NUL"
  end
  return v
end

local function is_loopback(host)
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

--- The API base URL: http(s)://host[:port][/path], no user info, query or fragment.
-- Plain http is refused for anything but loopback hosts unless allow_http is true.
-- @return the URL without a trailing slash
function M.base_url(v, allow_http)
  if type(v) ~= "string" then return nil, "base_url must be a string, got " .. type(v) end
  if v:find("[%s%c]") then return nil, "base_url must not contain spaces or control characters" end
  local scheme, rest = v:match("^(%a+)://(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, "base_url must start with https:// or http://" end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  if authority:find("@") then return nil, "base_url must not carry user info" end
  if path:find("[?#]") then return nil, "base_url must not have a query or fragment" end
  local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([%w%.%-]+):?(%d*)$") end
  if not host or host == "" then return nil, "base_url has no valid host" end
  if port ~= "" and (tonumber(port) < 1 or tonumber(port) > 65535) then
    return nil, "base_url has an invalid port"
  end
  if scheme == "http" and not allow_http and not is_loopback(host:lower()) then
    return nil, "plain http:// is only allowed for loopback hosts (set allow_http = true to override)"
  end
  return scheme .. "://" .. authority .. path:gsub("/+$", "")
end

--- A path below the base URL for client:request: "/..." without spaces, control characters,
-- fragments or dot segments.
function M.request_path(v)
  if type(v) ~= "string" then return nil, "path must be a string, got " .. type(v) end
  if v:sub(1, 1) ~= "/" or v:sub(1, 2) == "//" then return nil, "path must start with a single '/'" end
  if #v > 4096 then return nil, "path is longer than 4096 bytes" end
  if v:find("[%s%c#]") then return nil, "path must not contain spaces, control characters or '#'" end
  local p = v:match("^[^?]*")
  for segment in p:gmatch("[^/]+") do
    if segment == "." or segment == ".." then return nil, "path must not contain '.' or '..' segments" end
  end
  return v
end

--- Encode a query table { key = value } (keys sorted, so URLs are reproducible).
function M.query(t)
  if type(t) ~= "table" then return nil, "query must be a table, got " .. type(t) end
  local keys = {}
  for k, val in pairs(t) do
    if type(k) ~= "string" then return nil, "query keys must be strings" end
    local tv = type(val)
    if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
      return nil, "query value for '" .. k .. "' must be a string, number or boolean"
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = M.escape(k) .. "=" .. M.escape(tostring(t[k])) end
  return table.concat(keys, "&")
end

--- maxJobs from a string (a file's field, a flag) or a number, by `max_jobs`'s rule.
-- @param v the value
-- @param what its name in the message (default "max_jobs")
-- @param secrets optional array of strings never to quote
-- @return the integer; or nil, message (quoting the value only as `quote` allows)
function M.max_jobs_input(v, what, secrets)
  local n = v
  if type(v) == "string" then
    n = v:match("^%s*[+-]?%d*%.?%d*%s*$") and tonumber(v) or 0 / 0
  end
  local ok, msg = M.max_jobs(n)
  if ok == nil then
    msg = msg:gsub("^max_jobs", what or "max_jobs")
    if type(v) == "string" then msg = msg .. ", got " .. M.quote(v, secrets) end
    return nil, msg
  end
  return ok
end

--- A request body for JSON (flowmusic.format.json writes it, numbers exactly): values are
-- strings, finite numbers, booleans, tables or flowmusic.null; keys strings or positive
-- integers; at most 128 levels deep. Anything else is refused rather than changed on the way.
function M.json_body(t, depth)
  depth = depth or 0
  if depth > 128 then return nil, "body is nested too deeply" end
  for k, v in pairs(t) do
    local tk, tv = type(k), type(v)
    if tk ~= "string" and not (tk == "number" and k >= 1 and k == math.floor(k)) then
      return nil, "cannot encode a body key of type " .. tk
    end
    local where = tk == "string" and ("key '" .. k .. "'") or ("index " .. k)
    if tv == "number" and (v ~= v or v == math.huge or v == -math.huge) then
      return nil, "cannot encode the body number at " .. where .. ": not finite"
    elseif tv == "table" then
      local ok, msg = M.json_body(v, depth + 1)
      if not ok then return nil, msg end
    elseif tv ~= "string" and tv ~= "number" and tv ~= "boolean" and v ~= require("flowmusic.core").null then
      return nil, "cannot encode the body value at " .. where .. " (a " .. tv .. ")"
    end
  end
  return t
end

--- A positive, finite number of seconds (NaN, infinities, zero and negatives are refused).
function M.seconds(v, name)
  if type(v) ~= "number" or not (v > 0) or v == math.huge then -- luacheck: ignore 581 (NaN fails v > 0)
    return nil, name .. " must be a positive number of seconds"
  end
  return v
end

--- A retry count: an integer 0..max.
function M.retries(v, name, max)
  if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v > max then
    return nil, ("%s must be an integer 0-%d"):format(name, max)
  end
  return v
end

--- Check that t only has keys listed in allowed (a set); returns t or nil, message.
function M.known_keys(t, allowed, what)
  for k in pairs(t) do
    if not allowed[k] then return nil, ("unknown %s '%s'"):format(what, tostring(k)) end
  end
  return t
end

-- Quoting values in messages. A message about a value from a file or a flag may have been
-- handed a secret by mistake (a refresh token file given as a batch file); a refresh token has
-- no known shape, so a value is quoted only when it could be a column name: letters, digits,
-- `_` and `-`, at most 32 bytes, no run of more than 4 digits (`2026-11-01` and `max_jobz`
-- are quoted; long random words are not). The one home of this rule for the command line.

--- True when s may be quoted in a message: it could be a column name, and it holds no secret
-- of `secrets` (nor is a piece of one).
-- @param s the value
-- @param secrets optional array of strings never to quote
function M.quotable(s, secrets)
  return type(s) == "string" and #s <= 32 and s:find("^[A-Za-z0-9_%-]*$") ~= nil
    and not s:find("%d%d%d%d%d") and not M.holds_secret(s, secrets)
end

--- True when s holds one of secrets (8 bytes or longer), or is a piece (8+ bytes) of one.
function M.holds_secret(s, secrets)
  for _, secret in ipairs(secrets or {}) do
    if #secret >= 8 and (s:find(secret, 1, true) or (#s >= 8 and secret:find(s, 1, true))) then return true end
  end
  return false
end

--- A path that names no file, for a message: a token passed where its file was meant (a
-- `--refresh-token-file` given the token itself) must not be echoed. It is named when every
-- part between slashes could be a file name (at most 32 bytes of letters, digits and
-- `._-+~@,=`), else its size. Paths of files that exist are not secrets: name them as they are.
-- @param path the path
-- @param secrets optional array of strings never to quote
function M.quote_missing_path(path, secrets)
  path = tostring(path)
  local fine = path ~= "" and not M.holds_secret(path, secrets)
  for part in path:gmatch("[^/]+") do
    if #part > 32 or part:find("[^%w%._%-%+~@,=]") then fine = false end
  end
  if fine then return "'" .. path .. "'" end
  return M.hidden(path)
end

--- What is said instead of a value that isn't shown: its size only.
function M.hidden(s) return ("(a %d-byte value, not shown)"):format(#tostring(s)) end

--- A value for a message: `'s'` when it is quotable and holds no secret of `secrets` (nor is
-- a piece of one), else its size (`(a 60-byte value, not shown)`).
-- @param s the value (made a string)
-- @param secrets optional array of strings never to quote
function M.quote(s, secrets)
  s = tostring(s)
  if M.quotable(s, secrets) then return "'" .. s .. "'" end
  return M.hidden(s)
end

return M
