--- Helpers shared by the sandbox handlers (LuaJIT inside nginx).
-- @module flowmusic.sandbox.util

local json = require "flowmusic.sandbox.json"

local M = {}

--- The current time in milliseconds since the epoch (fresh, not nginx's cached time).
-- @treturn number
function M.now_ms()
  ngx.update_time()
  return math.floor(ngx.now() * 1000 + 0.5)
end

--- Format milliseconds since the epoch as ISO 8601 with milliseconds and `Z`.
-- @tparam number ms
-- @treturn string e.g. `2026-06-01T12:00:00.000Z`
function M.iso_ms(ms)
  local s = math.floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", ms - s * 1000)
end

--- Format a UUID (version 4 layout) from 32 hex digits.
-- @tparam string hex at least 32 hex digits (e.g. an md5)
-- @treturn string
function M.uuid_from_hex(hex)
  local n = tonumber(hex:sub(17, 17), 16) % 4 + 1
  local variant = ("89ab"):sub(n, n)
  return hex:sub(1, 8) .. "-" .. hex:sub(9, 12) .. "-4" .. hex:sub(14, 16) .. "-"
      .. variant .. hex:sub(18, 20) .. "-" .. hex:sub(21, 32)
end

--- A UUID derived deterministically from a string.
-- @tparam string s
-- @treturn string
function M.uuid_of(s)
  return M.uuid_from_hex(ngx.md5(s))
end

--- Decode `%XX` escapes only (`+` stays `+`, unlike `ngx.unescape_uri`).
-- @tparam string s
-- @treturn string
function M.percent_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local ELLIPSIS = "\226\128\166" -- U+2026

--- Redact a secret the way the vendor does: first 3 chars, `…redacted…`, last 3 chars.
-- @tparam string s
-- @treturn string
function M.redact(s)
  return s:sub(1, 3) .. ELLIPSIS .. "redacted" .. ELLIPSIS .. s:sub(-3)
end

--- A stable 32-bit unsigned hash of a string.
-- @tparam string s
-- @treturn number
function M.hash(s)
  return ngx.crc32_long(s)
end

--- Whether a decoded JSON value is an integer number.
-- @param v
-- @treturn boolean
function M.is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -2^53 and v < 2^53
end

--- Trim ASCII whitespace.
-- @tparam string s
-- @treturn string
function M.trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

--- A response with a JSON body.
-- @tparam number status
-- @param body a table to encode, or an already encoded string
-- @tparam[opt] table headers extra headers
-- @treturn table `{status=, body=, headers=}`
function M.json_response(status, body, headers)
  headers = headers or {}
  headers["Content-Type"] = "application/json"
  if type(body) ~= "string" then body = json.encode(body) end
  return { status = status, body = body, headers = headers }
end

--- An error response: `{"error": message, "code": status}`.
-- @tparam number status
-- @tparam string message
-- @tparam[opt] table headers extra headers
-- @treturn table
function M.error_response(status, message, headers)
  return M.json_response(status, json.object({ error = message, code = status }, { "error", "code" }), headers)
end

return M
