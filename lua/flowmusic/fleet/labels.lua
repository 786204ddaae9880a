--- Labels of fleet file accounts (`team=a;plan=pro`), and selectors that pick accounts by them
-- (`--label team=a`). The one home of the label rule:
--
-- * a key is `[A-Za-z_][A-Za-z0-9_]*`, at most `MAX_KEY` bytes, so that it can become the
--   Prometheus label name `label_<key>`; keys are case-sensitive;
-- * a value is non-empty UTF-8 text of at most `MAX_VALUE` bytes without `;`, `=` or control
--   characters (C0, DEL, C1); spaces inside are kept, around it they are trimmed;
-- * a row has at most `MAX_LABELS` labels, each key once.
--
-- The text form is `key=value` pairs joined by `;` (spaces around keys and values ignored);
-- `text` writes it back with the keys sorted. Labels are a table `key -> value`; none is `nil`
-- (never an empty table) wherever an account has none. Messages name a key only as
-- `flowmusic.validate.quote` allows and never quote a value: a secret pasted into a labels
-- column is not echoed.
--
--     local labels = require "flowmusic.fleet.labels"
--     local l = assert(labels.parse("team=a;plan=pro"))  --> { team = "a", plan = "pro" }
--     labels.text(l)                                    --> "plan=pro;team=a"
--     local sel = assert(labels.selector({ "team=a" }))
--     labels.matches(l, sel)                            --> true
-- @module flowmusic.fleet.labels
local validate = require "flowmusic.validate"

local M = {}

--- Longest key, in bytes.
M.MAX_KEY = 63
--- Longest value, in bytes.
M.MAX_VALUE = 128
--- Most labels on one account.
M.MAX_LABELS = 16

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local sorted_keys = require("flowmusic.format").sorted_keys

-- True when s is well-formed UTF-8 with no C1 control character (U+0080-U+009F).
local function utf8_text(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then len = 3
    elseif c >= 0xF0 and c <= 0xF4 then len = 4
    else return false end
    if i + len - 1 > n then return false end
    for j = i + 1, i + len - 1 do
      local b = s:byte(j)
      if b < 0x80 or b > 0xBF then return false end
    end
    local c2 = s:byte(i + 1)
    if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F) or (c == 0xF0 and c2 < 0x90)
      or (c == 0xF4 and c2 > 0x8F) or (c == 0xC2 and c2 <= 0x9F) then
      return false -- overlong, a surrogate, past U+10FFFF, or a C1 control
    end
    i = i + len
  end
  return true
end

--- Check a label key.
-- @tparam any k
-- @param secrets optional array of strings never to quote
-- @return k; or nil, message
function M.key(k, secrets)
  if type(k) ~= "string" or k == "" then return nil, "a key must not be empty" end
  if #k > M.MAX_KEY or not k:find("^[A-Za-z_][A-Za-z0-9_]*$") then
    return nil, ("key %s is not a name (letters, digits and _, not starting with a digit, at most %d bytes)")
      :format(validate.quote(k, secrets), M.MAX_KEY)
  end
  return k
end

--- Check the value of label `k` (a checked key).
-- @tparam string k
-- @tparam any v
-- @param secrets optional array of strings never to quote
-- @return v; or nil, message (naming the key, never the value)
function M.value(k, v, secrets)
  local name = validate.quote(k, secrets)
  if type(v) ~= "string" then return nil, ("the value of %s must be a string"):format(name) end
  if v == "" then return nil, ("the value of %s is empty"):format(name) end
  if #v > M.MAX_VALUE then
    return nil, ("the value of %s is longer than %d bytes"):format(name, M.MAX_VALUE)
  end
  if v:find("[%z\1-\31\127]") or not utf8_text(v) then
    return nil, ("the value of %s must be UTF-8 text without control characters"):format(name)
  end
  if v:find("[;=]") then return nil, ("the value of %s must not contain ';' or '='"):format(name) end
  return v
end

-- Put k=v into t, refusing a duplicate and too many labels.
local function put(t, n, k, v, secrets)
  local ok, msg = M.key(k, secrets)
  if not ok then return nil, msg end
  if t[k] ~= nil then return nil, ("key %s appears twice"):format(validate.quote(k, secrets)) end
  ok, msg = M.value(k, v, secrets)
  if not ok then return nil, msg end
  if n >= M.MAX_LABELS then return nil, ("more than %d labels"):format(M.MAX_LABELS) end
  t[k] = v
  return n + 1
end

--- Parse the text form `key=value;key2=value2`.
-- @tparam string s
-- @param secrets optional array of strings never to quote
-- @return labels (nil when s is empty or blank); or nil, message
function M.parse(s, secrets)
  if type(s) ~= "string" then return nil, "labels must be text such as team=a;plan=pro" end
  if trim(s) == "" then return nil end
  local t, n, i = {}, 0, 0
  for part in (s .. ";"):gmatch("([^;]*);") do
    i = i + 1
    local eq = part:find("=", 1, true)
    if trim(part) == "" then
      return nil, ("entry %d is empty (labels are key=value pairs joined by ';')"):format(i)
    end
    if not eq then return nil, ("entry %d has no '=' (labels are key=value pairs joined by ';')"):format(i) end
    local err
    n, err = put(t, n, trim(part:sub(1, eq - 1)), trim(part:sub(eq + 1)), secrets)
    if not n then return nil, err end
  end
  return t
end

--- Check a table of labels (`{ team = "a" }`, as a JSON Lines fleet file's object gives it).
-- @tparam table t
-- @param secrets optional array of strings never to quote
-- @return a copy (nil when t is empty); or nil, message
function M.check(t, secrets)
  if type(t) ~= "table" then return nil, "labels must be a table of key -> value" end
  local out, n = {}, 0
  for _, k in ipairs(sorted_keys(t)) do
    local err
    n, err = put(out, n, k, t[k], secrets)
    if not n then return nil, err end
  end
  if n == 0 then return nil end
  return out
end

--- Labels from either form: text (`parse`) or a table (`check`); nil stays nil.
-- @param v nil, string or table
-- @param secrets optional array of strings never to quote
-- @return labels or nil (none); or nil, message
function M.from(v, secrets)
  if v == nil then return nil end
  if type(v) == "table" then return M.check(v, secrets) end
  if type(v) == "string" then return M.parse(v, secrets) end
  return nil, "labels must be text (team=a;plan=pro) or an object of strings"
end

--- The text form with sorted keys (`plan=pro;team=a`); `""` for nil or no labels.
-- @tparam table|nil t
-- @treturn string
function M.text(t)
  if type(t) ~= "table" then return "" end
  local parts = {}
  for i, k in ipairs(sorted_keys(t)) do parts[i] = k .. "=" .. t[k] end
  return table.concat(parts, ";")
end

--- The sorted keys of labels (`{}` for nil).
-- @tparam table|nil t
-- @treturn {string,...}
function M.keys(t)
  if type(t) ~= "table" then return {} end
  return sorted_keys(t)
end

--- A selector from `KEY=VALUE` strings (one per `--label`): every pair must match.
-- @tparam {string,...} list
-- @param secrets optional array of strings never to quote
-- @return selector `{ key = value }` (nil for an empty list); or nil, message naming the bad
--   one (`--label ...`)
function M.selector(list, secrets)
  if type(list) ~= "table" or #list == 0 then return nil end
  local sel = {}
  for _, s in ipairs(list) do
    local eq = type(s) == "string" and s:find("=", 1, true)
    if not eq then
      return nil, ("--label %s is not KEY=VALUE"):format(validate.quote(s, secrets))
    end
    local k, v = trim(s:sub(1, eq - 1)), trim(s:sub(eq + 1))
    local ok, msg = M.key(k, secrets)
    if not ok then return nil, "--label: " .. msg end
    if sel[k] ~= nil then
      return nil, ("--label %s is given twice (every --label must match: one value per key)"):format(
        validate.quote(k, secrets))
    end
    ok, msg = M.value(k, v, secrets)
    if not ok then return nil, "--label: " .. msg end
    sel[k] = v
  end
  return sel
end

--- Whether labels have every pair of a selector (a nil selector matches everything).
-- @tparam table|nil t labels
-- @tparam table|nil sel selector
-- @treturn boolean
function M.matches(t, sel)
  if sel == nil then return true end
  for k, v in pairs(sel) do
    if type(t) ~= "table" or t[k] ~= v then return false end
  end
  return true
end

--- The entries (tables with `labels`) a selector matches, in their order.
-- @tparam {table,...} entries
-- @tparam table|nil sel
-- @treturn {table,...} a new array (all of them for a nil selector)
function M.select(entries, sel)
  local out = {}
  for _, e in ipairs(entries) do
    if M.matches(e.labels, sel) then out[#out + 1] = e end
  end
  return out
end

--- A selector for a message: `team=a, plan=pro` (keys sorted; each key and value shown only
-- as `flowmusic.validate.quote` allows, else by its size).
-- @tparam table sel
-- @param secrets optional array of strings never to quote
-- @treturn string
function M.describe(sel, secrets)
  local function show(s) return validate.quotable(s, secrets) and s or validate.hidden(s) end
  local parts = {}
  for i, k in ipairs(sorted_keys(sel or {})) do
    parts[i] = show(k) .. "=" .. show(sel[k])
  end
  return table.concat(parts, ", ")
end

return M
