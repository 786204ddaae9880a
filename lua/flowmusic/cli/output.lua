--- Output of the flowmusic command line: a human table, JSON Lines or CSV, a progress bar
-- and TTY detection. Every writer takes an explicit column list so the field order is stable.
-- @module flowmusic.cli.output
local validate = require "flowmusic.validate"
local format = require "flowmusic.format"

local M = {}


--- True when the file (io.stdout or io.stderr) is a terminal.
-- Uses lua-term's isatty when installed, else `test -t FD` in a shell.
function M.isatty(file)
  local ok, term = pcall(require, "term.core")
  if ok and type(term) == "table" and term.isatty then
    local ok2, r = pcall(term.isatty, file)
    if ok2 then return r and true or false end
  end
  local fd = (file == io.stderr) and 2 or (file == io.stdin) and 0 or 1
  return require("flowmusic.files").execute("test -t " .. fd) == 0
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

--- One JSON object with keys in the given order (absent values are written as null).
-- @param columns array of { key = name, ... }
-- @param row table
local function json_row(columns, row)
  local parts = {}
  for i, c in ipairs(columns) do parts[i] = '"' .. c.key .. '":' .. format.json(row[c.key]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- One CSV field (RFC 4180 quoting when needed).
local function csv_field(v)
  if v == nil or type(v) == "userdata" then return "" end
  if type(v) == "number" then v = format.exact(v) or "" end
  if type(v) == "table" then v = format.json(v) end
  v = tostring(v)
  if v:find('[,"\r\n]') or v:match("^%s") or v:match("%s$") then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

local function cell(v)
  if v == nil or type(v) == "userdata" then return "-" end
  if type(v) == "number" then return format.number(v) end
  if type(v) == "boolean" then return v and "yes" or "no" end
  if type(v) == "table" then return format.json(v) end
  return format.escape(v)
end

-- Display width of a UTF-8 string (code points; good enough for the ellipsis in tokens).
local function width(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

--- A writer for one output mode.
-- @param mode "table", "json" or "csv"
-- @param columns array of { key = field, title = heading, right = align right, text =
--   function(value) -> string for CSV and tables (JSON keeps the value: e.g. labels, an
--   object in JSON and `k=v;k2=v2` in CSV) }
-- @param out file (default io.stdout)
-- @return writer with :add(row) and :finish(); table mode buffers rows to size columns
function M.writer(mode, columns, out)
  out = out or io.stdout
  local w = { rows = {} }
  local header_done = false
  function w.add(_, row)
    if mode == "json" then
      out:write(json_row(columns, row), "\n")
    elseif mode == "csv" then
      if not header_done then
        local h = {}
        for i, c in ipairs(columns) do h[i] = csv_field(c.key) end
        out:write(table.concat(h, ","), "\n")
        header_done = true
      end
      local f = {}
      for i, c in ipairs(columns) do
        local v = row[c.key]
        if c.text then v = c.text(v) end
        f[i] = csv_field(v)
      end
      out:write(table.concat(f, ","), "\n")
    else
      w.rows[#w.rows + 1] = row
    end
    out:flush()
  end
  function w.finish()
    if mode == "csv" and not header_done then
      local h = {}
      for i, c in ipairs(columns) do h[i] = csv_field(c.key) end
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
      local v = row[c.key]
      if c.text then v = c.text(v) end
      local s = cell(v)
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
    local filled = total > 0 and math.floor(size * done / total) or size
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
