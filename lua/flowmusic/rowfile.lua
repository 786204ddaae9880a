--- Files of rows: the batch files of `flowmusic batch` and the fleet files of plan/apply
-- (flowmusic.fleet.fleetfile). CSV (a header row such as `op,email,max_jobs,refresh_token_file`,
-- columns in any order, optional ones may be left out) or JSON Lines (one object per line
-- with the same keys). One operation per record;
-- blank lines and lines starting with `#` are ignored. CSV follows RFC 4180: a quoted field
-- may hold commas, doubled quotes and line breaks (a record then spans several lines and
-- carries the number of the line it starts on).
--
-- Limits: a file holds at most `MAX_BYTES` bytes and `MAX_ROWS` records; a line (and a CSV
-- record) at most `MAX_LINE` bytes. Nothing from the file is quoted in a message unless it
-- could be a column name (see `flowmusic.validate.quote`), so a secret handed over by mistake
-- is never echoed.
-- @module flowmusic.rowfile
local M = {}

--- The keys a row may carry.
M.KEYS = { "op", "email", "max_jobs", "refresh_token_file" }

--- The columns of a kind of file, for M.parse: `keys` (array of allowed keys, `max_jobs` may
-- be a JSON number), `required` (the CSV header must have it), `what` (for messages) and
-- `objects` (optional set of keys whose JSON Lines value may also be an object, passed on as a
-- table for the caller to check: a fleet file's `labels`).
-- Batch files are `M.schema(M.KEYS, "op", "batch")`; fleet files use their own.
function M.schema(keys, required, what, objects)
  local known = {}
  for _, k in ipairs(keys) do known[k] = true end
  return { keys = keys, known = known, required = required, what = what, objects = objects or {} }
end
local BATCH = M.schema(M.KEYS, "op", "batch")

M.MAX_BYTES = 16 * 1024 * 1024
M.MAX_LINE = 64 * 1024
M.MAX_ROWS = 100000

local validate = require "flowmusic.validate"
local show = validate.quote

-- Iterate over physical lines: returns text (CR of CRLF dropped), the position after its
-- newline, or nil at the end.
local function next_line(text, pos)
  if pos > #text then return nil end
  local nl = text:find("\n", pos, true)
  local line = text:sub(pos, (nl or #text + 1) - 1)
  if line:sub(-1) == "\r" then line = line:sub(1, -2) end
  return line, (nl or #text) + 1
end

local function skip(line) return line:find("^%s*$") or line:find("^%s*#") end

local function too_long()
  return ("the line is longer than %d bytes"):format(M.MAX_LINE)
end

-- One CSV record starting with `line` (number n) at the position `pos` after it. A quoted
-- field that doesn't end on its line goes on over the next lines. Returns fields (or nil and
-- a message), then the position after the record and the number of its last line (nil, n
-- when the walk should go on after the first line: an unterminated quote).
local function csv_record(text, line, pos, n)
  local fields, s, at, last = {}, line, 1, n
  local size = #line
  while true do
    local start = s:match("^[ \t]*()", at)
    if s:sub(start, start) == '"' then
      local buf, j = {}, start + 1
      while true do
        local q = s:find('"', j, true)
        if q then
          buf[#buf + 1] = s:sub(j, q - 1)
          if s:sub(q + 1, q + 1) == '"' then
            buf[#buf + 1] = '"'
            j = q + 2
          else
            j = q + 1
            break
          end
        else
          buf[#buf + 1] = s:sub(j)
          local more, after = next_line(text, pos)
          size = size + #(more or "") + 1
          if not more then return nil, "unterminated quoted field", nil, n end
          if size > M.MAX_LINE then
            return nil, ("unterminated quoted field, or a record longer than %d bytes"):format(M.MAX_LINE), nil, n
          end
          buf[#buf + 1] = "\n"
          s, j, pos, last = more, 1, after, last + 1
        end
      end
      local after = s:match("^[ \t]*()", j)
      local nxt = s:sub(after, after)
      if nxt ~= "," and nxt ~= "" then
        return nil, "unexpected character after a quoted field", pos, last
      end
      fields[#fields + 1] = table.concat(buf)
      if nxt == "" then return fields, nil, pos, last end
      at = after + 1
    else
      local comma = s:find(",", at, true)
      local raw = s:sub(at, (comma or #s + 1) - 1)
      if raw:find('"', 1, true) then return nil, "a quote inside an unquoted field", pos, last end
      fields[#fields + 1] = raw:match("^%s*(.-)%s*$")
      if not comma then return fields, nil, pos, last end
      at = comma + 1
    end
  end
end

local function strip_bom(text) return (text:gsub("^\239\187\191", "")) end

--- Guess the format: "jsonl" for .jsonl/.ndjson/.json names or a first line starting with
-- `{`, else "csv".
function M.detect(name, text)
  local ext = (name or ""):lower():match("%.(%w+)$")
  if ext == "jsonl" or ext == "ndjson" or ext == "json" then return "jsonl" end
  if ext == "csv" then return "csv" end
  text = strip_bom(text)
  local line, pos = next_line(text, 1)
  while line do
    if not skip(line) then return line:match("^%s*{") and "jsonl" or "csv" end
    line, pos = next_line(text, pos)
  end
  return "csv"
end

local EMPTY = "the file is empty (a %s needs at least one row%s)"

-- The message for a header cell that is no column. It is named only when it could be a column
-- name and the header has other cells: a lone cell is more likely a token file given by
-- mistake, and a refresh token has no known shape.
local function unknown_column(n, cell, cells, secrets, sc)
  local expected = table.concat(sc.keys, ",")
  if cells > 1 and validate.quotable(cell, secrets) then
    return ("line %d: unknown column '%s' in the header (expected %s)"):format(n, cell, expected)
  end
  return ("line %d is not a header (is this a token file?): unknown column %s; expected the header %s")
    :format(n, validate.hidden(cell), expected)
end

-- CSV: rows after the header.
local function parse_csv(text, secrets, sc)
  local rows, header = {}, nil
  local pos, n = 1, 0
  while true do
    local l, after = next_line(text, pos)
    if not l then break end
    n = n + 1
    if #l > M.MAX_LINE then
      if not header then return nil, ("line %d: %s"):format(n, too_long()) end
      rows[#rows + 1] = { line = n, error = too_long() }
      pos = after
    elseif skip(l) then
      pos = after
    else
      local fields, err, next_pos, last = csv_record(text, l, after, n)
      if not header then
        if not fields then return nil, ("line %d: bad header row: %s"):format(n, err) end
        local seen = {}
        for i, f in ipairs(fields) do
          f = f:lower()
          if not sc.known[f] then return nil, unknown_column(n, f, #fields, secrets, sc) end
          if seen[f] then
            return nil, ("line %d: column %s appears twice in the header"):format(n, show(f, secrets))
          end
          seen[f] = true
          fields[i] = f
        end
        if not seen[sc.required] then
          return nil, ("line %d: the header row has no '%s' column"):format(n, sc.required)
        end
        header = fields
        pos, n = next_pos, last
      elseif not fields then
        rows[#rows + 1] = { line = n, error = err }
        if next_pos then pos, n = next_pos, last else pos = after end
      else
        local row = { line = n }
        if #fields ~= #header then
          row.error = ("expected %d fields, got %d"):format(#header, #fields)
        else
          for i, k in ipairs(header) do
            if fields[i] ~= "" then row[k] = fields[i] end
          end
        end
        rows[#rows + 1] = row
        pos, n = next_pos, last
      end
      if #rows > M.MAX_ROWS then return nil, ("more than %d rows (the limit of one %s)"):format(M.MAX_ROWS, sc.what) end
    end
  end
  if not header then
    return nil, EMPTY:format(sc.what, ": CSV starts with the header row " .. table.concat(sc.keys, ","))
  end
  if #rows == 0 then return nil, EMPTY:format(sc.what, " after the header") end
  return rows
end

-- JSON Lines: one object per line.
local function parse_jsonl(text, secrets, sc)
  local core = require "flowmusic.core"
  local rows = {}
  local pos, n = 1, 0
  while true do
    local l, after = next_line(text, pos)
    if not l then break end
    n, pos = n + 1, after
    if #l > M.MAX_LINE then
      rows[#rows + 1] = { line = n, error = too_long() }
    elseif not skip(l) then
      local doc, err = core.json_decode(l, core.null)
      if err or doc == nil then
        rows[#rows + 1] = { line = n, error = "invalid JSON: " .. tostring(err or "empty") }
      elseif type(doc) ~= "table" or doc[1] ~= nil or not l:match("^%s*{") then
        rows[#rows + 1] = { line = n, error = "expected a JSON object" }
      else
        local row, bad = { line = n }, nil
        local keys = {}
        for k in pairs(doc) do keys[#keys + 1] = tostring(k) end
        table.sort(keys)
        for _, k in ipairs(keys) do
          local v = doc[k]
          if not sc.known[k] then
            bad = bad or ("unknown key %s (expected %s)"):format(show(k, secrets), table.concat(sc.keys, ", "))
          elseif (type(v) == "string" and v ~= "") or (k == "max_jobs" and type(v) == "number")
            or (sc.objects[k] and type(v) == "table" and v[1] == nil) then
            row[k] = v
          elseif v ~= core.null and v ~= "" then -- null and "" stand for absent
            bad = bad or ("'%s' must be a %s"):format(k, k == "max_jobs" and "number"
              or sc.objects[k] and "string or an object" or "string")
          end
        end
        if bad then rows[#rows + 1] = { line = n, error = bad } else rows[#rows + 1] = row end
      end
      if #rows > M.MAX_ROWS then return nil, ("more than %d rows (the limit of one %s)"):format(M.MAX_ROWS, sc.what) end
    end
  end
  if #rows == 0 then return nil, EMPTY:format(sc.what, ": one JSON object per line") end
  return rows
end

--- Parse a batch file's text.
-- @param text the content (at most MAX_BYTES)
-- @param format "csv" or "jsonl"
-- @param secrets optional array of strings never to quote in a message
-- @param schema optional, from M.schema (default: batch files)
-- @return array of rows `{ line = n, op =, email =, max_jobs =, refresh_token_file = }`
--   (a malformed record gives `{ line = n, error = message }`); or nil, message when the file
--   as a whole can't be used (empty, bad CSV header, too many rows)
function M.parse(text, format, secrets, schema)
  text = strip_bom(text)
  if format == "jsonl" then return parse_jsonl(text, secrets, schema or BATCH) end
  return parse_csv(text, secrets, schema or BATCH)
end

return M
