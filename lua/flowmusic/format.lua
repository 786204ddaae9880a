--- How values are written out, for people and for machines: numbers (rounded for tables,
-- exact for JSON, CSV and Prometheus), text made safe for a terminal, and JSON. The one home
-- of these rules for the library, the fleet tools, the reports and the command line.
-- @module flowmusic.format
local M = {}

local floor = math.floor

--- The keys of a table, sorted: the order plans, plan files and labels list them in.
function M.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

--- An ISO 8601 UTC time (`2026-12-07T04:50:00Z`) of seconds since the epoch.
function M.iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end

--- Format a number for people: integers without a fraction, others with up to 2 decimals.
function M.number(v)
  if type(v) ~= "number" then return v end
  if v == floor(v) and v > -1e15 and v < 1e15 then return ("%d"):format(v) end
  return (("%.2f"):format(v):gsub("0+$", ""):gsub("%.$", ""))
end

--- Format a number for machines (--json, --csv): full precision, the shortest decimal that
-- reads back as the same double (integers without a fraction); nil for NaN and infinities.
function M.exact(v)
  if v ~= v or v == math.huge or v == -math.huge then return nil end
  if v == floor(v) and v > -2^53 and v < 2^53 then return ("%d"):format(v) end
  for digits = 15, 17 do
    local s = ("%." .. digits .. "g"):format(v)
    if tonumber(s) == v then return s end
  end
  return ("%.17g"):format(v)
end

-- s with every byte that isn't part of a well-formed UTF-8 sequence replaced by bad(byte).
local function fix_utf8(s, bad)
  local i = s:find("[\128-\255]")
  if not i then return s end
  local out, start, n = {}, 1, #s
  local byte = string.byte
  while i and i <= n do
    local c, len = byte(s, i), 0
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then len = 3
    elseif c >= 0xF0 and c <= 0xF4 then len = 4 end
    local ok = len > 0 and i + len - 1 <= n
    if ok and len > 1 then
      local lo, hi = 0x80, 0xBF
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F
      elseif c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
      local c2 = byte(s, i + 1)
      if c2 < lo or c2 > hi then ok = false end
      for k = 2, len - 1 do
        local ck = byte(s, i + k)
        if ck < 0x80 or ck > 0xBF then ok = false end
      end
    end
    if ok then
      i = s:find("[\128-\255]", i + len)
    else
      out[#out + 1] = s:sub(start, i - 1)
      out[#out + 1] = bad(c)
      start = i + 1
      i = s:find("[\128-\255]", start)
    end
  end
  out[#out + 1] = s:sub(start)
  return table.concat(out)
end

local function backslash_byte(c) return "\\" .. (type(c) == "number" and c or c:byte()) end

--- Make text safe for a terminal: control characters (C0, DEL, C1) and bytes that aren't
-- UTF-8 become `\NNN` (decimal, as in Lua strings: ESC -> `\27`).
function M.escape(s)
  s = tostring(s)
  if not s:find("[%z\1-\31\127-\255]") then return s end
  s = fix_utf8(s, backslash_byte):gsub("[%z\1-\31\127]", backslash_byte)
  return (s:gsub("\194([\128-\159])", backslash_byte))
end

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function u_escape(c) return escapes[c] or ("\\u%04x"):format(c:byte()) end
local function replacement() return "\239\191\189" end

-- A JSON string: control characters (C0, DEL, C1) escaped, and always valid UTF-8 (bytes that
-- aren't become U+FFFD) unless keep_bytes (the text is read back by flowmusic, byte for byte).
local function json_string(s, keep_bytes)
  if not s:find('[%z\1-\31"\\\127-\255]') then return '"' .. s .. '"' end
  if not keep_bytes then s = fix_utf8(s, replacement) end
  s = s:gsub('[%z\1-\31"\\\127]', u_escape)
  return '"' .. s:gsub("\194([\128-\159])", function(c) return ("\\u%04x"):format(c:byte()) end) .. '"'
end

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return false end
    n = n + 1
  end
  return n == #t and n > 0
end

--- Encode a value as JSON: tables with array keys become arrays, other tables objects with
-- sorted keys; numbers exactly (`exact`; NaN and infinities become null); `null`
-- (flowmusic.null, a userdata) and functions become null.
-- @param v the value
-- @param keep_bytes strings keep their bytes (for text flowmusic reads back, e.g. a path);
--   by default bytes that aren't UTF-8 become U+FFFD, so the output is always valid UTF-8
function M.json(v, keep_bytes)
  local t = type(v)
  if t == "string" then return json_string(v, keep_bytes) end
  if t == "number" then
    return M.exact(v) or "null"
  end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" then return "null" end
  local parts = {}
  if is_array(v) then
    for i = 1, #v do parts[i] = M.json(v[i], keep_bytes) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local val = v[k]
    if val == nil then val = v[tonumber(k)] end
    parts[#parts + 1] = json_string(k, keep_bytes) .. ":" .. M.json(val, keep_bytes)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

return M
