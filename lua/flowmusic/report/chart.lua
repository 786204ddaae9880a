--- Horizontal bar charts for terminals, drawn with Unicode block characters (eighths of a
-- cell), scaled to a width.
--
--     local chart = require "flowmusic.report.chart"
--     io.write(chart.render(agg.days, { value = "charged_credits", width = chart.width() }))
-- @module flowmusic.report.chart
local M = {}

local FULL = "\226\150\136" -- U+2588 full block
local PARTS = { "\226\150\143", "\226\150\142", "\226\150\141", "\226\150\140", -- 1/8 .. 4/8
  "\226\150\139", "\226\150\138", "\226\150\137" }                              -- 5/8 .. 7/8

--- A bar for `value` where `max` fills `cells` cells (at least one eighth for a positive value).
-- @return string of block characters ("" for zero, negative or when max <= 0)
function M.bar(value, max, cells)
  if type(value) ~= "number" or type(max) ~= "number" or value <= 0 or max <= 0 then return "" end
  local eighths = math.floor(value / max * cells * 8 + 0.5)
  if eighths < 1 then eighths = 1 end
  if eighths > cells * 8 then eighths = cells * 8 end
  local rem = eighths % 8
  return FULL:rep((eighths - rem) / 8) .. (rem > 0 and PARTS[rem] or "")
end

--- The terminal's width in columns: $COLUMNS, else `stty size` on the controlling terminal,
-- else 80.
function M.width()
  local n = tonumber(os.getenv("COLUMNS") or "")
  if n and n > 0 then return math.floor(n) end
  local p = io.popen("(stty size </dev/tty) 2>/dev/null")
  if p then
    local s = p:read("*a") or ""
    p:close()
    n = tonumber(s:match("^%s*%d+%s+(%d+)"))
    if n and n > 0 then return n end
  end
  return 80
end

-- Display width of a UTF-8 string (code points).
local function width(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

--- Chart lines `LABEL  VALUE  BARS`, one per row, fitting in `width` columns.
-- @param rows array of tables
-- @param opts optional { label = field (default "key"), value = field (default
--   "charged_credits"), width = columns (default M.width()), format = function(number) ->
--   string (default: up to 2 decimals) }
-- @return text (one line per row, each ending in "\n"; "" when there are no rows)
function M.render(rows, opts)
  opts = opts or {}
  local label, value = opts.label or "key", opts.value or "charged_credits"
  local format = opts.format or function(v)
    if v == math.floor(v) then return ("%d"):format(v) end
    return (("%.2f"):format(v):gsub("0+$", ""):gsub("%.$", ""))
  end
  local total = opts.width or M.width()
  local labels, values, lw, vw, max = {}, {}, 0, 0, 0
  for i, row in ipairs(rows) do
    local v = type(row[value]) == "number" and row[value] or 0
    labels[i], values[i] = tostring(row[label] or ""):gsub("[%c]", " "), format(v)
    if width(labels[i]) > lw then lw = width(labels[i]) end
    if #values[i] > vw then vw = #values[i] end
    if v > max then max = v end
  end
  local cells = total - lw - vw - 4
  if cells < 10 then cells = 10 end
  local out = {}
  for i, row in ipairs(rows) do
    out[i] = labels[i] .. (" "):rep(lw - width(labels[i])) .. "  " .. (" "):rep(vw - #values[i]) .. values[i]
      .. "  " .. M.bar(type(row[value]) == "number" and row[value] or 0, max, cells) .. "\n"
  end
  return table.concat(out)
end

return M
