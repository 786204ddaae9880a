--- Small JSON encoder for the sandbox (runs under LuaJIT inside nginx).
-- Unlike cjson it keeps a declared key order for objects, tells arrays and objects
-- apart explicitly (an empty array stays `[]`), writes integral numbers as integers and
-- does not escape `/`. Decoding is left to `cjson.safe`.
-- @module flowmusic.sandbox.json

local cjson = require "cjson.safe"

local M = {}

--- The JSON null sentinel (the same value `cjson.safe.decode` produces).
M.null = cjson.null

local ARRAY = { __jsonarray = true }

--- Mark a table as a JSON array (so an empty one encodes as `[]`).
-- @tparam[opt] table t
-- @treturn table t
function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

--- Mark a table as a JSON object whose keys come out in the order of `keys`
-- (keys missing from `keys` follow, sorted).
-- @tparam table t
-- @tparam {string,...} keys
-- @treturn table t
function M.object(t, keys)
  return setmetatable(t, { __jsonorder = keys })
end

--- Decode a JSON text.
-- @tparam string s
-- @return value, or `nil, message` when `s` is not JSON
function M.decode(s)
  return cjson.decode(s)
end

local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}

-- Quote one string as a JSON string literal.
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end
M.quote = quote

-- Format a number: integers without a fraction, others with the shortest exact form.
local function number(n)
  if n ~= n or n == math.huge or n == -math.huge then
    return "null"
  end
  if n == math.floor(n) and n > -2^53 and n < 2^53 then
    return string.format("%d", n)
  end
  for digits = 14, 16 do -- the shortest form that reads back exactly
    local s = string.format("%." .. digits .. "g", n)
    if tonumber(s) == n then return s end
  end
  return string.format("%.17g", n)
end
M.number = number

local encode_value

-- Append the encoding of a table (array or object) to buffer `b`.
local function encode_table(t, b)
  local mt = getmetatable(t)
  if (mt and mt.__jsonarray) or (t[1] ~= nil and not (mt and mt.__jsonorder)) then
    b[#b + 1] = "["
    for i = 1, #t do
      if i > 1 then b[#b + 1] = "," end
      encode_value(t[i], b)
    end
    b[#b + 1] = "]"
    return
  end
  b[#b + 1] = "{"
  local first, seen = true, {}
  local function field(k, v)
    if not first then b[#b + 1] = "," end
    first = false
    b[#b + 1] = quote(tostring(k))
    b[#b + 1] = ":"
    encode_value(v, b)
  end
  if mt and mt.__jsonorder then
    for _, k in ipairs(mt.__jsonorder) do
      seen[k] = true
      if t[k] ~= nil then field(k, t[k]) end
    end
  end
  local rest = {}
  for k in pairs(t) do
    if not seen[k] then rest[#rest + 1] = tostring(k) end
  end
  table.sort(rest)
  for _, k in ipairs(rest) do field(k, t[k]) end
  b[#b + 1] = "}"
end

function encode_value(v, b)
  local tv = type(v)
  if tv == "string" then
    b[#b + 1] = quote(v)
  elseif tv == "number" then
    b[#b + 1] = number(v)
  elseif tv == "boolean" then
    b[#b + 1] = v and "true" or "false"
  elseif tv == "table" then
    encode_table(v, b)
  elseif v == nil or v == M.null then
    b[#b + 1] = "null"
  else
    error("cannot encode a " .. tv .. " as JSON", 3)
  end
end

--- Append the encoding of a value to a buffer (a table of strings for `table.concat`), to
-- build a large document without making one long string per part.
-- @param v as for `encode`
-- @tparam table b
function M.append(v, b)
  encode_value(v, b)
end

--- Encode a value as JSON text.
-- @param v string, number, boolean, table, or `json.null`
-- @treturn string
function M.encode(v)
  local b = {}
  encode_value(v, b)
  return table.concat(b)
end

return M
