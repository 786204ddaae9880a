--- The usage report as one self-contained HTML page: fleet totals and date range, a per-day
-- stacked bar chart of charged credits by account (inline SVG, with axes and a legend), the
-- per-day, per-account, per-type and per-song tables, and when it was made.
--
--     local html = require "flowmusic.report.html"
--     local page = html.render(agg)   -- agg: flowmusic.fleet.usage aggregates
--
-- No script, no external asset (a Content-Security-Policy forbids both), and every string
-- that came from the API (emails, song titles, conversation ids, types, errors) is escaped.
-- Pure Lua, no I/O: OpenResty can serve the same page.
-- @module flowmusic.report.html
local number = require("flowmusic.format").number
local usage = require "flowmusic.fleet.usage"

local M = {}

local ENTITIES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

--- Escape any value for HTML text and attribute values (nil becomes "").
function M.escape(v)
  if v == nil or type(v) == "userdata" then return "" end
  return (tostring(v):gsub("[&<>\"']", ENTITIES):gsub("[%z\1-\8\11\12\14-\31\127]", "\239\191\189"))
end
local esc = M.escape

local PALETTE = { "#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
  "#9c755f", "#ff9da7", "#bab0ac" }

-- "#rrggbb" for a hue (degrees), saturation and lightness (0-1).
local function hsl(h, s, l)
  local function f(n)
    local k = (n + h / 30) % 12
    local a = s * math.min(l, 1 - l)
    local v = l - a * math.max(-1, math.min(k - 3, 9 - k, 1))
    return math.floor(v * 255 + 0.5)
  end
  return ("#%02x%02x%02x"):format(f(0), f(8), f(4))
end

--- The fill colour of the i-th account in the chart (1-based): ten fixed colours, then hues
-- spread by the golden angle.
function M.color(i)
  if PALETTE[i] then return PALETTE[i] end
  return hsl((i * 137.508) % 360, 0.55, 0.42 + (i % 3) * 0.1)
end

-- A readable number (up to 2 decimals) or "-".
local function n(v)
  if type(v) ~= "number" then return "-" end
  return esc(number(v))
end

local function pct(v)
  if type(v) ~= "number" then return "-" end
  return esc(("%.1f%%"):format(v * 100))
end

-- A step of 1, 2, 2.5 or 5 times a power of ten giving about five ticks up to max.
local function tick_step(max)
  local raw = max / 5
  local mag = 10 ^ math.floor(math.log(raw) / math.log(10) + 1e-9)
  for _, m in ipairs({ 1, 2, 2.5, 5, 10 }) do
    if m * mag >= raw then return m * mag end
  end
  return 10 * mag
end

local function fmt(x) return ("%.1f"):format(x) end

-- The stacked bar chart as inline SVG.
local function chart(agg)
  local days, series = agg.days or {}, {}
  for _, a in ipairs(agg.accounts or {}) do
    if not a.error then series[#series + 1] = { email = a.email, color = M.color(#series + 1) } end
  end
  local max = 0
  for _, d in ipairs(days) do
    if (d.charged_credits or 0) > max then max = d.charged_credits end
  end
  local W, left, right, top, plot_h = 960, 72, 24, 24, 280
  local plot_w = W - left - right
  local axis_y = top + plot_h
  local legend_cols = 3
  local legend_rows = math.ceil(#series / legend_cols)
  local legend_top = axis_y + 96
  local H = legend_top + legend_rows * 20 + 12
  local o = {}
  local function add(s) o[#o + 1] = s end
  add(('<svg id="chart" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
    .. 'aria-label="Charged credits per day, stacked by account">'):format(W, H, W, H))
  add('<rect x="0" y="0" width="' .. W .. '" height="' .. H .. '" fill="#ffffff"/>')
  if #days == 0 or max <= 0 then
    add(('<text x="%d" y="%d" font-size="16" fill="#555">No charged credits in this range.</text>')
      :format(left, top + 40))
    add("</svg>")
    return table.concat(o), 0
  end
  local step = tick_step(max)
  local ymax = math.ceil(max / step - 1e-9) * step
  local function y_of(v) return axis_y - v / ymax * plot_h end
  -- grid and y axis ticks
  local t = 0
  while t <= ymax + step / 2 do
    local y = fmt(y_of(t))
    add(('<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#e3e3e3" stroke-width="1"/>'):format(left, y, left + plot_w, y))
    add(('<text x="%d" y="%s" font-size="12" text-anchor="end" dominant-baseline="middle" fill="#333">%s</text>')
      :format(left - 6, y, n(t)))
    t = t + step
  end
  -- bars
  local band = plot_w / #days
  local bw = math.max(band * 0.8, 1)
  local rects = 0
  for i, d in ipairs(days) do
    local x = fmt(left + (i - 1) * band + (band - bw) / 2)
    local acc = 0
    for _, s in ipairs(series) do
      local v = d.by_account and d.by_account[s.email]
      if v and v > 0 then
        local y0, y1 = y_of(acc), y_of(acc + v)
        add(('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s, %s: %s credits</title></rect>')
          :format(x, fmt(y1), fmt(bw), fmt(y0 - y1), s.color, esc(s.email), esc(d.key), n(v)))
        acc = acc + v
        rects = rects + 1
      end
    end
  end
  -- axes
  add(('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333" stroke-width="1"/>'):format(left, top, left, axis_y))
  add(('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333" stroke-width="1"/>')
    :format(left, axis_y, left + plot_w, axis_y))
  -- x labels: at most about 14 of them
  local every = math.ceil(#days / 14)
  for i, d in ipairs(days) do
    if (i - 1) % every == 0 then
      local x = fmt(left + (i - 0.5) * band)
      add(('<text x="%s" y="%d" font-size="12" text-anchor="end" fill="#333" transform="rotate(-35 %s %d)">%s</text>')
        :format(x, axis_y + 16, x, axis_y + 16, esc(d.key)))
    end
  end
  add(('<text x="%d" y="%d" font-size="13" text-anchor="middle" fill="#111">day (UTC)</text>')
    :format(left + plot_w / 2, axis_y + 76))
  add(('<text x="16" y="%d" font-size="13" text-anchor="middle" fill="#111" transform="rotate(-90 16 %d)">'
    .. 'charged credits</text>')
    :format(top + plot_h / 2, top + plot_h / 2))
  -- legend
  local col_w = plot_w / legend_cols
  for k, s in ipairs(series) do
    local col, row = (k - 1) % legend_cols, math.floor((k - 1) / legend_cols)
    local x, y = left + col * col_w, legend_top + row * 20
    add(('<rect x="%s" y="%d" width="12" height="12" fill="%s"/>'):format(fmt(x), y, s.color))
    add(('<text x="%s" y="%d" font-size="12" fill="#111">%s</text>'):format(fmt(x + 18), y + 10, esc(s.email)))
  end
  add("</svg>")
  return table.concat(o), rects
end

-- An HTML table: columns { {title, cell = function(row) -> escaped html, num = bool} }.
local function table_html(id, columns, rows, empty)
  local o = { '<table id="' .. id .. '"><thead><tr>' }
  for _, c in ipairs(columns) do o[#o + 1] = (c.num and '<th class="n">' or "<th>") .. esc(c.title) .. "</th>" end
  o[#o + 1] = "</tr></thead><tbody>"
  for _, row in ipairs(rows) do
    o[#o + 1] = row.error and '<tr class="failed">' or "<tr>"
    for _, c in ipairs(columns) do o[#o + 1] = (c.num and '<td class="n">' or "<td>") .. c.cell(row) .. "</td>" end
    o[#o + 1] = "</tr>"
  end
  if #rows == 0 then
    o[#o + 1] = '<tr><td colspan="' .. #columns .. '">' .. esc(empty) .. "</td></tr>"
  end
  o[#o + 1] = "</tbody></table>"
  return table.concat(o)
end

-- "a + b" of a set's keys, sorted.
local function names(set)
  local t = {}
  for k in pairs(set) do t[#t + 1] = k end
  table.sort(t)
  return table.concat(t, " + ")
end

local function field(k) return function(r) return esc(r[k]) end end
local function numf(k) return function(r) return n(r[k]) end end

local STYLE = [[
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;
color:#111;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;margin:0 0 16px}
.totals{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0 8px}
.totals div{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:120px}
.totals b{display:block;font-size:20px}
table{border-collapse:collapse;font-size:13px}
th,td{border-bottom:1px solid #e5e5e5;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f5f5f5}.n{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{color:#a00}
footer{margin-top:28px;color:#666;font-size:12px}
]]

--- Render the aggregates as one HTML document.
-- @param agg the aggregates of flowmusic.fleet.usage (reducer:result() or collect())
-- @param opts optional { title = heading (default "Flow Music usage"), generated_at = time
--   text (default agg.generated_at, else now in UTC) }
-- @return the HTML text
function M.render(agg, opts)
  if type(agg) ~= "table" or type(agg.total) ~= "table" then
    error("flowmusic.report.html: render needs the aggregates of flowmusic.fleet.usage", 2)
  end
  opts = opts or {}
  local title = opts.title or "Flow Music usage"
  local when = opts.generated_at or agg.generated_at or os.date("!%Y-%m-%dT%H:%M:%SZ")
  local t = agg.total
  local range
  if agg.since or agg["until"] then
    range = ("%s to %s"):format(esc(agg.since or "the beginning"), esc(agg["until"] or "today"))
  else
    range = "whole history"
  end
  if agg.first then
    range = range .. (" (events from %s to %s)"):format(esc(agg.first), esc(agg.last))
  else
    range = range .. " (no events)"
  end
  local svg = chart(agg)
  local o = {
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
    "<title>", esc(title), "</title><style>", STYLE, "</style></head><body>",
    "<h1>", esc(title), "</h1>",
    '<p class="meta">Range: ', range, " &middot; accounts: ", n(t.accounts),
    (t.failed or 0) > 0 and (' &middot; <span class="failed">failed: ' .. n(t.failed) .. "</span>") or "", "</p>",
    '<div class="totals" id="totals">',
    "<div><b>", n(t.charged_credits), "</b>charged credits</div>",
    "<div><b>", n(t.charged_tokens), "</b>charged tokens</div>",
    "<div><b>", n(t.received_tokens), "</b>received tokens</div>",
    "<div><b>", n(t.songs), "</b>songs</div>",
    "</div>",
    "<h2>Charged credits per day, by account</h2>", svg,
    "<h2>Per account</h2>",
    table_html("accounts", {
      { title = "Account", cell = field("email") },
      { title = "Charged credits", num = true, cell = numf("charged_credits") },
      { title = "Received tokens", num = true, cell = numf("received_tokens") },
      { title = "Songs", num = true, cell = numf("songs") },
      { title = "Share", num = true, cell = function(r) return pct(r.share) end },
      { title = "Error", cell = field("error") },
    }, agg.accounts or {}, "no accounts"),
    "<h2>Per day</h2>",
    table_html("days", {
      { title = "Day (UTC)", cell = field("key") },
      { title = "Charged credits", num = true, cell = numf("charged_credits") },
      { title = "Charged tokens", num = true, cell = numf("charged_tokens") },
      { title = "Received tokens", num = true, cell = numf("received_tokens") },
      { title = "Songs", num = true, cell = numf("songs") },
    }, agg.days or {}, "no events"),
    "<h2>Per type</h2>",
    table_html("types", {
      { title = "Type", cell = field("key") }, { title = "Kind", cell = field("kind") },
      { title = "Tokens", num = true, cell = numf("tokens") },
      { title = "Credits", num = true, cell = numf("credits") },
    }, agg.types or {}, "no events"),
    "<h2>Per song</h2>",
    table_html("songs", {
      { title = "Conversation", cell = field("key") },
      { title = "Title", cell = function(r) return r.title and esc(r.title) or "<i>(untitled)</i>" end },
      { title = "Account", cell = field("email") },
      { title = "Tokens", num = true, cell = numf("tokens") },
      { title = "Credits", num = true, cell = numf("credits") },
    }, agg.songs or {}, "no songs"),
    "<footer>Generated at <time>", esc(when), "</time> by flowmusic. ", esc(usage.TOKENS_PER_CREDIT),
    " tokens = 1 credit; charged = ", esc(names(usage.CHARGED)), "; received = ", esc(names(usage.RECEIVED)),
    ".</footer>",
    "</body></html>\n",
  }
  return table.concat(o)
end

return M
