--- Batch files of the flowmusic command line: CSV (header row
-- `op,email,max_jobs,refresh_token_file`, columns in any order, optional ones may be left
-- out) or JSON Lines (one object per line with the same keys). One operation per line;
-- blank lines and lines starting with `#` are ignored. A quoted CSV field may hold commas
-- and doubled quotes but must end on its line.
-- @module flowmusic.cli.batchfile
local M = {}

--- The keys a row may carry.
M.KEYS = { "op", "email", "max_jobs", "refresh_token_file" }

--- The columns of a kind of file, for M.parse: `keys` (array of allowed keys, `max_jobs` may
-- be a JSON number), `required` (the CSV header must have it) and `what` (for messages).
-- Batch files are `M.schema(M.KEYS, "op", "batch")`; fleet files use their own.
function M.schema(keys, required, what)
  local known = {}
  for _, k in ipairs(keys) do known[k] = true end
  return { keys = keys, known = known, required = required, what = what }
end
local BATCH = M.schema(M.KEYS, "op", "batch")

--- Split one CSV line into fields, or nil, message.
function M.csv_line(s)
  local fields, i, n = {}, 1, #s
  while true do
    local start = s:match("^[ \t]*()", i)
    local c = s:sub(start, start)
    if c == '"' then
      i = start
      local buf, j = {}, i + 1
      while true do
        local q = s:find('"', j, true)
        if not q then return nil, "unterminated quoted field" end
        buf[#buf + 1] = s:sub(j, q - 1)
        if s:sub(q + 1, q + 1) == '"' then
          buf[#buf + 1] = '"'
          j = q + 2
        else
          j = q + 1
          break
        end
      end
      -- Only spaces may follow the closing quote before the comma.
      local after = s:match("^[ \t]*()", j)
      local nxt = s:sub(after, after)
      if nxt ~= "," and nxt ~= "" then return nil, "unexpected character after a quoted field" end
      fields[#fields + 1] = table.concat(buf)
      if nxt == "" then return fields end
      i = after + 1
    else
      local comma = s:find(",", i, true)
      local raw = s:sub(i, (comma or n + 1) - 1)
      if raw:find('"', 1, true) then return nil, "a quote inside an unquoted field" end
      fields[#fields + 1] = raw:match("^%s*(.-)%s*$")
      if not comma then return fields end
      i = comma + 1
    end
  end
end

-- Physical lines with their numbers (CRLF or LF; a UTF-8 BOM on the first line is dropped).
local function lines_of(text)
  local out, n = {}, 0
  text = text:gsub("^\239\187\191", "")
  for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("([^\n]*)\n") do
    n = n + 1
    out[#out + 1] = { n = n, text = (line:gsub("\r$", "")) }
  end
  return out
end

local function skip(text) return text:match("^%s*$") or text:match("^%s*#") end

--- Guess the format: "jsonl" for .jsonl/.ndjson/.json names or a first line starting with
-- `{`, else "csv".
function M.detect(name, text)
  local ext = (name or ""):lower():match("%.(%w+)$")
  if ext == "jsonl" or ext == "ndjson" or ext == "json" then return "jsonl" end
  if ext == "csv" then return "csv" end
  for _, l in ipairs(lines_of(text)) do
    if not skip(l.text) then return l.text:match("^%s*{") and "jsonl" or "csv" end
  end
  return "csv"
end

-- CSV: rows after the header.
local function parse_csv(text, sc)
  local rows, header, header_line = {}, nil, nil
  for _, l in ipairs(lines_of(text)) do
    if not skip(l.text) then
      local fields, err = M.csv_line(l.text)
      if not header then
        if not fields then return nil, ("line %d: bad header row: %s"):format(l.n, err) end
        local seen = {}
        for i, f in ipairs(fields) do
          f = f:lower()
          if not sc.known[f] then
            return nil, ("line %d: unknown column '%s' in the header (expected %s)")
              :format(l.n, f, table.concat(sc.keys, ","))
          end
          if seen[f] then return nil, ("line %d: column '%s' appears twice in the header"):format(l.n, f) end
          seen[f] = true
          fields[i] = f
        end
        if not seen[sc.required] then
          return nil, ("line %d: the header row has no '%s' column"):format(l.n, sc.required)
        end
        header, header_line = fields, l.n
      elseif not fields then
        rows[#rows + 1] = { line = l.n, error = err }
      elseif #fields ~= #header then
        rows[#rows + 1] = { line = l.n, error = ("expected %d fields, got %d"):format(#header, #fields) }
      else
        local row = { line = l.n }
        for i, k in ipairs(header) do
          if fields[i] ~= "" then row[k] = fields[i] end
        end
        rows[#rows + 1] = row
      end
    end
  end
  if not header then
    return nil, ("the file is empty (a CSV %s needs the header row %s)"):format(sc.what, table.concat(sc.keys, ","))
  end
  return rows, header_line
end

-- JSON Lines: one object per line.
local function parse_jsonl(text, sc)
  local core = require "flowmusic.core"
  local rows = {}
  for _, l in ipairs(lines_of(text)) do
    if not skip(l.text) then
      local doc, err = core.json_decode(l.text, core.null)
      if err or doc == nil then
        rows[#rows + 1] = { line = l.n, error = "invalid JSON: " .. tostring(err or "empty") }
      elseif type(doc) ~= "table" or doc[1] ~= nil or not l.text:match("^%s*{") then
        rows[#rows + 1] = { line = l.n, error = "expected a JSON object" }
      else
        local row, bad = { line = l.n }, nil
        local keys = {}
        for k in pairs(doc) do keys[#keys + 1] = tostring(k) end
        table.sort(keys)
        for _, k in ipairs(keys) do
          local v = doc[k]
          if not sc.known[k] then
            bad = bad or ("unknown key '%s' (expected %s)"):format(k, table.concat(sc.keys, ", "))
          elseif v == core.null or v == "" then -- absent
          elseif type(v) == "string" or (k == "max_jobs" and type(v) == "number") then
            row[k] = v
          else
            bad = bad or ("'%s' must be a %s"):format(k, k == "max_jobs" and "number" or "string")
          end
        end
        if bad then rows[#rows + 1] = { line = l.n, error = bad } else rows[#rows + 1] = row end
      end
    end
  end
  return rows
end

--- Parse a batch file's text.
-- @param text the content
-- @param format "csv" or "jsonl"
-- @param schema optional, from M.schema (default: batch files)
-- @return array of rows `{ line = n, op =, email =, max_jobs =, refresh_token_file = }`
--   (a malformed line gives `{ line = n, error = message }`); or nil, message when the file
--   as a whole can't be used (empty, bad CSV header)
function M.parse(text, format, schema)
  if format == "jsonl" then return parse_jsonl(text, schema or BATCH) end
  return parse_csv(text, schema or BATCH)
end

return M
