--- Output of the flowmusic command line: a human table, JSON Lines or CSV, a progress bar
-- and TTY detection. Every writer takes an explicit column list so the field order is stable.
-- @module flowmusic.cli.output
local validate = require "flowmusic.validate"

local M = {}

local floor = math.floor

--- True when the file (io.stdout or io.stderr) is a terminal.
-- Uses lua-term's isatty when installed, else `test -t FD` in a shell.
function M.isatty(file)
  local ok, term = pcall(require, "term.core")
  if ok and type(term) == "table" and term.isatty then
    local ok2, r = pcall(term.isatty, file)
    if ok2 then return r and true or false end
  end
  local fd = (file == io.stderr) and 2 or 1
  local r1, _, r3 = os.execute("test -t " .. fd)
  if type(r1) == "number" then return r1 == 0 end -- Lua 5.1
  return r1 == true and r3 == 0
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

-- Quoting a value from the input in a message follows one rule, `flowmusic.validate.quote`
-- (only what could be a column name, holding no secret); these are its names here.

--- Quote a value from the input for a message, or describe it by its size
-- (`flowmusic.validate.quote`), so a token handed over by mistake is never echoed.
-- @param s the text
-- @param secrets optional array of strings never to echo
M.show = validate.quote

--- True when s holds one of secrets (8 bytes or longer), or is a piece (8+ bytes) of one.
M.holds_secret = validate.holds_secret

--- What is said instead of a value that isn't shown.
M.hidden = validate.hidden

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function u_escape(c) return escapes[c] or ("\\u%04x"):format(c:byte()) end
local function replacement() return "\239\191\189" end

-- A JSON string: always valid UTF-8 (bytes that aren't become U+FFFD), control characters
-- (C0, DEL, C1) escaped.
local function json_string(s)
  if not s:find('[%z\1-\31"\\\127-\255]') then return '"' .. s .. '"' end
  s = fix_utf8(s, replacement):gsub('[%z\1-\31"\\\127]', u_escape)
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
-- sorted keys; `null` (flowmusic.null, a userdata) and functions become null.
function M.json(v)
  local t = type(v)
  if t == "string" then return json_string(v) end
  if t == "number" then
    return M.exact(v) or "null"
  end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" then return "null" end
  local parts = {}
  if is_array(v) then
    for i = 1, #v do parts[i] = M.json(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local val = v[k]
    if val == nil then val = v[tonumber(k)] end
    parts[#parts + 1] = json_string(k) .. ":" .. M.json(val)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- One JSON object with keys in the given order (absent values are written as null).
-- @param columns array of { key = name, ... }
-- @param row table
function M.json_row(columns, row)
  local parts = {}
  for i, c in ipairs(columns) do parts[i] = '"' .. c.key .. '":' .. M.json(row[c.key]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- One CSV field (RFC 4180 quoting when needed).
function M.csv_field(v)
  if v == nil or type(v) == "userdata" then return "" end
  if type(v) == "number" then v = M.exact(v) or "" end
  if type(v) == "table" then v = M.json(v) end
  v = tostring(v)
  if v:find('[,"\r\n]') or v:match("^%s") or v:match("%s$") then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

local function cell(v)
  if v == nil or type(v) == "userdata" then return "-" end
  if type(v) == "number" then return M.number(v) end
  if type(v) == "boolean" then return v and "yes" or "no" end
  if type(v) == "table" then return M.json(v) end
  return M.escape(v)
end

-- Display width of a UTF-8 string (code points; good enough for the ellipsis in tokens).
local function width(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

--- A writer for one output mode.
-- @param mode "table", "json" or "csv"
-- @param columns array of { key = field, title = heading, right = align right }
-- @param out file (default io.stdout)
-- @return writer with :add(row) and :finish(); table mode buffers rows to size columns
function M.writer(mode, columns, out)
  out = out or io.stdout
  local w = { rows = {} }
  local header_done = false
  function w.add(_, row)
    if mode == "json" then
      out:write(M.json_row(columns, row), "\n")
    elseif mode == "csv" then
      if not header_done then
        local h = {}
        for i, c in ipairs(columns) do h[i] = M.csv_field(c.key) end
        out:write(table.concat(h, ","), "\n")
        header_done = true
      end
      local f = {}
      for i, c in ipairs(columns) do f[i] = M.csv_field(row[c.key]) end
      out:write(table.concat(f, ","), "\n")
    else
      w.rows[#w.rows + 1] = row
    end
    out:flush()
  end
  function w.finish()
    if mode == "csv" and not header_done then
      local h = {}
      for i, c in ipairs(columns) do h[i] = M.csv_field(c.key) end
      out:write(table.concat(h, ","), "\n")
      header_done = true
    end
    if mode ~= "table" then return end
    out:write(M.render(columns, w.rows))
    w.rows = {}
  end
  return w
end

--- Render rows as an aligned text table with a heading line.
function M.render(columns, rows)
  local widths, cells = {}, {}
  for i, c in ipairs(columns) do widths[i] = width(c.title or c.key:upper()) end
  for r, row in ipairs(rows) do
    cells[r] = {}
    for i, c in ipairs(columns) do
      local s = cell(row[c.key])
      cells[r][i] = s
      if width(s) > widths[i] then widths[i] = width(s) end
    end
  end
  local lines = {}
  local function line(values)
    local parts = {}
    for i, c in ipairs(columns) do
      local s = values[i]
      local pad = (" "):rep(widths[i] - width(s))
      if i == #columns and not c.right then parts[i] = s
      else parts[i] = c.right and (pad .. s) or (s .. pad) end
    end
    lines[#lines + 1] = table.concat(parts, "  ")
  end
  local titles = {}
  for i, c in ipairs(columns) do titles[i] = c.title or c.key:upper() end
  line(titles)
  for r = 1, #rows do line(cells[r]) end
  return table.concat(lines, "\n") .. "\n"
end

--- A progress bar on a stream: update(done, total) redraws it in place; finish() clears it.
-- Does nothing unless `enabled`.
function M.progress(enabled, out)
  out = out or io.stderr
  local p = { shown = false }
  function p.update(_, done, total)
    if not enabled then return end
    local size = 30
    local filled = total > 0 and floor(size * done / total) or size
    out:write(("\r[%s%s] %d/%d"):format(("#"):rep(filled), ("."):rep(size - filled), done, total))
    out:flush()
    p.shown = true
  end
  function p.finish()
    if enabled and p.shown then
      out:write("\r", (" "):rep(50), "\r")
      out:flush()
    end
  end
  return p
end

return M
