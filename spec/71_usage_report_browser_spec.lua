-- The HTML usage report in a real browser: headless Chromium takes a screenshot of a report
-- made by `flowmusic usage --all --html` from a private sandbox (the chart's bars are there, in
-- each account's colour), and dumps the DOM of a report whose song titles and email are
-- hostile (no script or img element comes out of them; the text shows as text). Each
-- Chromium run has its own temporary profile directory, removed afterwards.
local sandbox = require "spec.helpers.sandbox"
local png = require "spec.helpers.png"
local html = require "flowmusic.report.html"
local fleet_usage = require "flowmusic.fleet.usage"

local LUA = ({ ["Lua 5.1"] = "lua5.1", ["Lua 5.2"] = "lua5.2", ["Lua 5.3"] = "lua5.3",
  ["Lua 5.4"] = "lua5.4" })[_VERSION] or "lua"
local API_TOKEN = "user:7171-BrowserSpecToken3"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end

local function exists(path)
  return os.execute("test -e " .. q(path)) == true or os.execute("test -e " .. q(path)) == 0
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local CHROMIUM = capture("command -v chromium 2>/dev/null"):gsub("%s+$", "")

--- Run headless Chromium on a file with its own profile directory, removed afterwards.
-- @param what "--screenshot=<png>" or "--dump-dom"
-- @return stdout, the profile directory (gone by now)
local function browser(what, file)
  local profile = capture("mktemp -d /tmp/flowmusic-chromium-spec.XXXXXX"):gsub("%s+$", "")
  assert(profile ~= "", "mktemp failed")
  local out = capture(table.concat({ "timeout 60", q(CHROMIUM), "--headless --no-sandbox --disable-gpu",
    "--disable-quic --no-first-run --disable-background-networking --disable-component-update --disable-sync",
    "--user-data-dir=" .. q(profile), "--window-size=1200,900", what, q("file://" .. file), "2>/dev/null" }, " "))
  os.execute("rm -rf " .. q(profile))
  return out, profile
end

describe("the HTML usage report in headless Chromium #once", function()
  local sb, tmp

  lazy_setup(function()
    if CHROMIUM == "" then return end
    tmp = capture("mktemp -d /tmp/flowmusic-report-spec.XXXXXX"):gsub("%s+$", "")
    sb = sandbox.start { token = API_TOKEN }
  end)

  lazy_teardown(function()
    if sb then sb:stop() end
    if tmp and tmp ~= "" then os.execute("rm -rf " .. q(tmp)) end
  end)

  local function report(argv, file)
    local rc = os.execute(("USEAPI_TOKEN=%s FLOWMUSIC_BASE_URL=%s %s bin/flowmusic usage %s --html %s >/dev/null 2>&1")
      :format(q(API_TOKEN), q(sb.base_url), LUA, argv, q(file)))
    assert(rc == true or rc == 0, "flowmusic usage " .. argv .. " failed")
    return file
  end

  it("the screenshot shows the stacked bars of every account; an empty range shows none", function()
    if CHROMIUM == "" then return pending("chromium is not installed (scripts/setup.sh --test installs it)") end
    if not png.available() then return pending("python3 with zlib is needed to decode the PNG") end
    sb:reset()
    local emails = sb:seed(3)
    local colors = { html.color(1), html.color(2), html.color(3) }
    local shot = tmp .. "/report.png"
    local _, profile = browser("--screenshot=" .. q(shot), report("--all", tmp .. "/report.html"))
    assert.is_false(exists(profile))
    local info = png.colors(shot, colors)
    assert.equal(1200, info.width)
    assert.equal(900, info.height)
    for i, c in ipairs(colors) do
      -- each account's bars cover thousands of pixels (a legend square alone is 144)
      assert.is_true(info.counts[c] > 2000, emails[i] .. " (" .. c .. "): " .. tostring(info.counts[c]) .. " pixels")
    end

    -- the same page with no events in range: no bar colour anywhere (the check can fail)
    local empty = tmp .. "/empty.png"
    browser("--screenshot=" .. q(empty), report("--all --since 2001-01-01 --until 2001-01-02", tmp .. "/empty.html"))
    local none = png.colors(empty, colors)
    for _, c in ipairs(colors) do assert.equal(0, none.counts[c]) end
    assert.is_true(none.non_white > 0) -- the tables and text are still there
  end)

  it("hostile song titles and emails stay text: no script or img element in the DOM", function()
    if CHROMIUM == "" then return pending("chromium is not installed (scripts/setup.sh --test installs it)") end
    local red = fleet_usage.reducer()
    local evil_email = 'x"><svg onload=alert(3)>@evil.test'
    red:add("a@example.test", { events = {
      { type = "producer-usage", amount = 120, conversation_id = "c-1",
        conversation_title = "<script>alert(1)</script>",
        event_at = "2026-06-01T00:00:00" },
      { type = "riffusion", amount = 60, conversation_id = "c-2", conversation_title = '"><img src=x onerror=alert(2)>',
        event_at = "2026-06-02T00:00:00" },
    } })
    red:add(evil_email, { events = {
      { type = "producer-usage", amount = 24, conversation_id = "<b>c-3</b>", conversation_title = "it's & fine",
        event_at = "2026-06-02T00:00:00" },
    } })
    red:fail("broken@example.test", "503 <i>Service unavailable</i>")
    local file = tmp .. "/hostile.html"
    spit(file, html.render(red:result()))
    local dom, profile = browser("--dump-dom", file)
    assert.is_false(exists(profile))
    assert.truthy(dom:find("<body", 1, true), "no DOM came back")
    local lower = dom:lower()
    assert.falsy(lower:find("<script", 1, true))
    assert.falsy(lower:find("<img", 1, true))
    assert.falsy(lower:find("<i>service", 1, true))
    assert.falsy(lower:find("<b>c-3", 1, true))
    assert.truthy(dom:find("503 &lt;i&gt;Service unavailable&lt;/i&gt;", 1, true))
    assert.falsy(lower:find("<svg onload", 1, true))
    -- the text itself is there, escaped as text
    assert.truthy(dom:find("&lt;script&gt;alert(1)&lt;/script&gt;", 1, true))
    assert.truthy(dom:find('"&gt;&lt;img src=x onerror=alert(2)&gt;', 1, true))
    assert.truthy(dom:find('x"&gt;&lt;svg onload=alert(3)&gt;@evil.test', 1, true))
    assert.truthy(dom:find("it's &amp; fine", 1, true))
    -- one svg element: the chart
    local _, svgs = lower:gsub("<svg", "")
    assert.equal(1, svgs)
    assert.truthy(slurp(file):find("Content-Security-Policy", 1, true))
  end)
end)
