-- GET /report of examples/nginx/nginx.conf in real nginx with the sandbox behind it: the page
-- comes from the background refresh (flowmusic.ngx.report) stored in a lua_shared_dict, so
-- page views fetch no usage documents; its totals match the raw events.
local openresty = require "spec.helpers.openresty"
local format = require "flowmusic.format"

local repo = openresty.repo_dir()
local core_so = repo .. "/build51/flowmusic/core.so"
local lua_module = openresty.MODULES .. "/ngx_http_lua_module.so"

local missing
if not openresty.read_file(core_so) then
  missing = "build51/flowmusic/core.so is missing: cmake -S . -B build51 -DLUA_VERSION=5.1 && cmake --build build51"
elseif not openresty.read_file(openresty.NGINX) or not openresty.read_file(lua_module) then
  missing = "nginx or " .. lua_module .. " is missing (apt-get install nginx-core libnginx-mod-http-lua lua-resty-core)"
end

describe("GET /report in nginx #once", function()
  if missing then
    pending(missing)
    return
  end
  local socket = require "socket"
  local sb, srv, emails
  local USAGE_PATH

  setup(function()
    sb = require("spec.helpers.sandbox").start {}
    emails = sb:seed(3)
    USAGE_PATH = "GET " .. sb.base_url:match("^https?://[^/]+(.*)$") .. "/accounts/usage"
    local conf = assert(openresty.read_file(repo .. "/examples/nginx/nginx.conf"))
    local n
    conf, n = conf:gsub("/opt/flowmusic", repo)
    assert(n >= 3, "example no longer names /opt/flowmusic")
    conf, n = conf:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:@PORT@;")
    assert(n == 1, "example no longer listens on 127.0.0.1:8080")
    local pid, start = openresty.self_pid()
    -- The watchdog goes first into the example's own init_worker block (nginx allows one).
    conf, n = conf:gsub("\n(%s*)init_worker_by_lua_block {\n", function(indent)
      return ("\n%sinit_worker_by_lua_block {\n        require(\"flowmusic.sandbox.watchdog\").start { "
        .. "dir = \"@PREFIX@\", watch_pid = %d, watch_start = %q }\n"):format(indent, pid, start or "")
    end)
    assert(n == 1, "example has no init_worker_by_lua_block")
    -- a test-only location: refresh now, even when the page is fresh
    conf, n = conf:gsub("\n(%s*)location / {", function(indent)
      return "\n" .. indent .. [[location = /t/refresh {
            content_by_lua_block {
                local app = require "flowmusic_example"
                ngx.shared.flowmusic_report:delete("at")
                local ok, err = require("flowmusic.ngx.report").refresh { dict = "flowmusic_report",
                    client = app.client, interval = 300, days = 30 }
                ngx.say(tostring(ok), " ", tostring(err))
            }
        }
]] .. indent .. "location / {"
    end)
    assert(n == 1)
    srv = openresty.start { conf = conf, env = { USEAPI_TOKEN = sb.token, FLOWMUSIC_BASE_URL = sb.base_url } }
  end)

  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)

  local function usage_calls()
    return sb:requests().by[USAGE_PATH] or 0
  end

  it("serves the page made in the background; page views fetch no usage", function()
    assert.equal(0, usage_calls())
    local status, body, headers
    local deadline = socket.gettime() + 20
    repeat
      status, body, headers = srv:get("/report")
      if status == 503 then
        assert.equal("5", headers["retry-after"])
        socket.sleep(0.1)
      end
    until status ~= 503 or socket.gettime() > deadline
    assert.equal(200, status, body)
    assert.matches("text/html", headers["content-type"], 1, true)
    assert.matches("default-src 'none'", headers["content-security-policy"], 1, true)
    assert.truthy(body:find("^<!DOCTYPE html>"))
    assert.truthy(body:find("<svg", 1, true))
    assert.falsy(body:lower():find("<script", 1, true))
    for _, email in ipairs(emails) do assert.truthy(body:find(email, 1, true), email) end

    -- the totals are those of the raw events (all within the last 30 days)
    local charged = 0
    for _, email in ipairs(emails) do
      local code, doc = sb:api("GET", "/accounts/usage?email=" .. email:gsub("@", "%%40"))
      assert.equal(200, code)
      for _, ev in ipairs(doc.events) do
        if ev.type == "producer-usage" or ev.type == "riffusion" then charged = charged + ev.amount end
      end
    end
    assert.truthy(body:find("<b>" .. format.number(charged / 12) .. "</b>charged credits", 1, true))

    -- one refresh fetched each account once; 20 more page views fetch nothing
    local after_refresh = usage_calls() - #emails -- the spec's own fetches above
    assert.equal(#emails, after_refresh)
    for _ = 1, 20 do
      local s, b = srv:get("/report")
      assert.equal(200, s)
      assert.equal(body, b)
    end
    assert.equal(2 * #emails, usage_calls())

    -- a refresh that fails (the account list answers 500) keeps the page it had
    local list_path = sb.base_url:match("^https?://[^/]+(.*)$") .. "/accounts"
    sb:fault { fault = "status", code = 500, method = "GET", path = list_path, count = 0 }
    local s2, b2 = srv:get("/t/refresh")
    sb:clear_faults()
    assert.equal(200, s2)
    assert.truthy(b2:find("^nil cannot list the accounts: "), b2)
    status, body = srv:get("/report")
    assert.equal(200, status)
    assert.truthy(body:find("<b>" .. format.number(charged / 12) .. "</b>charged credits", 1, true))
    assert.truthy(srv:error_log():find("flowmusic.ngx.report: refresh failed", 1, true))
    -- and one that works replaces it
    s2, b2 = srv:get("/t/refresh")
    assert.equal(200, s2)
    assert.equal("true nil\n", b2)
  end)
end)
