-- flowmusic inside nginx (lua-nginx-module 0.10.23, LuaJIT): examples/nginx/nginx.conf with the
-- sandbox behind it. The spec process only drives HTTP (LuaSocket, curl CLI); the client
-- runs in nginx, its blocking calls in the `flowmusic` thread pool.
local cjson = require "cjson"
local openresty = require "spec.helpers.openresty"

local repo = openresty.repo_dir()
local core_so = repo .. "/build51/flowmusic/core.so"
local lua_module = openresty.MODULES .. "/ngx_http_lua_module.so"

local missing
if not openresty.read_file(repo .. "/lua/flowmusic/init.lua") then
  missing = "run busted from the repository root"
elseif not openresty.read_file(core_so) then
  missing = "build51/flowmusic/core.so is missing: cmake -S . -B build51 -DLUA_VERSION=5.1 && cmake --build build51"
elseif not openresty.read_file(openresty.NGINX) or not openresty.read_file(lua_module) then
  missing = "nginx or " .. lua_module .. " is missing (apt-get install nginx-core libnginx-mod-http-lua lua-resty-core)"
end

describe("flowmusic outside nginx", function()
  it("does not install the nginx adapter", function()
    if not os.getenv("LUA_CPATH") then
      package.cpath = (_VERSION == "Lua 5.1" and "build51" or "build") .. "/?.so;" .. package.cpath
    end
    local ok, flowmusic = pcall(require, "flowmusic")
    if not ok then
      return pending("the C core for " .. _VERSION .. " is not on package.cpath: " .. tostring(flowmusic))
    end
    assert.is_nil(rawget(_G, "ngx"))
    assert.is_nil(flowmusic._ngx_installed)
    assert.is_nil(package.loaded["flowmusic.ngx"])
  end)
end)

if missing then
  describe("flowmusic in OpenResty/nginx", function()
    pending(missing)
  end)
  return
end

-- Test-only additions to the example: a watchdog (nginx stops when this process is gone),
-- phase probes (at the start of the example's init_worker block), and a location checking
-- values and error types from Lua.
local function test_init_worker_additions(watch_pid, watch_start)
  return ([[
        require("flowmusic.sandbox.watchdog").start { dir = "@PREFIX@", watch_pid = %d, watch_start = %q }
        local flowmusic = require "flowmusic"
        local ok, err = pcall(function() return flowmusic.new {}:list_accounts() end)
        ngx.log(ngx.NOTICE, "flowmusic-spec init_worker plain: ", tostring(ok), " ", tostring(err))
        local list, lerr = flowmusic.new { allow_blocking = true }:list_accounts()
        local n = 0
        for _ in pairs(list or {}) do n = n + 1 end
        ngx.log(ngx.NOTICE, "flowmusic-spec init_worker allow_blocking: ", n, " accounts ", tostring(lerr))
]]):format(watch_pid, watch_start or "")
end

local TEST_LOCATIONS = [[
        location = /t/set {
            set_by_lua_block $fm_result {
                local flowmusic = require "flowmusic"
                local ok, err = pcall(function() return flowmusic.new {}:list_accounts() end)
                return tostring(ok) .. " " .. tostring(err)
            }
            return 200 "$fm_result";
        }
        location = /t/set_blocking {
            set_by_lua_block $fm_result {
                local flowmusic = require "flowmusic"
                local list, err = flowmusic.new { allow_blocking = true }:list_accounts()
                local n = 0
                for _ in pairs(list or {}) do n = n + 1 end
                return "accounts " .. n .. " " .. tostring(err)
            }
            return 200 "$fm_result";
        }
        location = /t/header_filter {
            content_by_lua_block { ngx.say("ok") }
            header_filter_by_lua_block {
                local flowmusic = require "flowmusic"
                local ok, err = pcall(function() return flowmusic.new {}:list_accounts() end)
                ngx.header["X-Flowmusic-Result"] = tostring(ok) .. " " .. tostring(err)
            }
        }
        location = /t/nopool {
            content_by_lua_block {
                local flowmusic = require "flowmusic"
                local ok, err = pcall(function() return flowmusic.new { thread_pool = "missing" }:list_accounts() end)
                local list = flowmusic.new { thread_pool = "missing", allow_blocking = true }:list_accounts()
                ngx.say(require("cjson").encode { ok = ok, err = tostring(err), blocking_ok = type(list) == "table" })
            }
        }
        location = /t/timer {
            content_by_lua_block {
                local flowmusic = require "flowmusic"
                local out = {}
                assert(ngx.timer.at(0, function()
                    local list, err = flowmusic.new {}:list_accounts()
                    out.done, out.ok, out.err = true, type(list) == "table", tostring(err)
                end))
                for _ = 1, 100 do
                    if out.done then break end
                    ngx.sleep(0.05)
                end
                ngx.say(require("cjson").encode(out))
            }
        }
        location = /t/values {
            content_by_lua_block {
                local flowmusic = require "flowmusic"
                local cjson = require "cjson"
                local free, plus = ngx.var.arg_free, ngx.var.arg_plus
                local out = {}
                local c = flowmusic.new {}
                local a, e = c:get_account("nobody@sandbox.test")
                out.single = { account_nil = a == nil, is_error = flowmusic.errors.is(e), kind = e.kind,
                    status = e.status, text = tostring(e) }
                local S = {}
                local a1 = assert(c:get_account(free))
                local a2 = assert(flowmusic.new { null = flowmusic.null }:get_account(free))
                local a3 = assert(flowmusic.new { null = S }:get_account(free))
                out.null = { default_nil = a1.tokens_remaining == nil and a1.credits_remaining ~= nil,
                    ngx_null = a2.tokens_remaining == ngx.null, sentinel = a3.tokens_remaining == S }
                local progress = {}
                local rs = c:batch({ { "get_account", plus }, { "get_account", "nobody@sandbox.test" },
                    { "request", "GET", "/accounts" } },
                    { concurrency = 2, on_progress = function(done, n, i, r)
                        progress[#progress + 1] = { done, n, i, r.ok }
                    end })
                out.batch = {}
                for i, r in ipairs(rs) do
                    out.batch[i] = { ok = r.ok, is_error = flowmusic.errors.is(r.err),
                        kind = r.err and r.err.kind or cjson.null, status = r.status or cjson.null,
                        credits = type(r.value) == "table" and r.value.credits_remaining or cjson.null,
                        ctype = r.headers and r.headers["content-type"] or cjson.null,
                        same_value = r.value == nil or r.value == rs[i].value }
                end
                out.progress = progress
                ngx.say(cjson.encode(out))
            }
        }
]]

describe("flowmusic in OpenResty/nginx", function()
  local sb, srv, emails, free, plus
  local spec_pid, spec_start = openresty.self_pid()

  setup(function()
    sb = require("spec.helpers.sandbox").start {}
    free = sb:seed(1, "free")[1]        -- seed-01: tokens_remaining is JSON null
    emails = sb:seed(3)                  -- seed-02, seed-03: plus
    plus = emails[2]
    local conf = assert(openresty.read_file(repo .. "/examples/nginx/nginx.conf"))
    local n
    conf, n = conf:gsub("/opt/flowmusic", repo)
    assert(n >= 3, "example no longer names /opt/flowmusic")
    conf, n = conf:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:@PORT@;")
    assert(n == 1, "example no longer listens on 127.0.0.1:8080")
    conf, n = conf:gsub("\n(%s*)location / {", function(indent)
      return "\n" .. TEST_LOCATIONS .. indent .. "location / {"
    end)
    assert(n == 1, "example has no 'location /' to put the test locations before")
    conf, n = conf:gsub("\n(%s*)init_worker_by_lua_block {\n", function(indent)
      return "\n" .. indent .. "init_worker_by_lua_block {\n" .. test_init_worker_additions(spec_pid, spec_start)
    end)
    assert(n == 1, "example has no init_worker_by_lua_block")
    srv = openresty.start { conf = conf, env = { USEAPI_TOKEN = sb.token, FLOWMUSIC_BASE_URL = sb.base_url } }
  end)

  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)

  local function get_json(path)
    local status, body, headers = srv:get(path)
    assert(status, body)
    local ok, doc = pcall(cjson.decode, body)
    assert(ok, "not JSON: " .. tostring(body))
    return status, doc, headers
  end

  describe("the example locations", function()
    it("GET /credits/<email> answers the credits as JSON", function()
      local status, doc, headers = get_json("/credits/" .. plus)
      assert.equal(200, status)
      assert.matches("application/json", headers["content-type"], 1, true)
      assert.same({ email = plus, credits_remaining = 5000, tokens_remaining = 60000 }, doc)
    end)

    it("GET /credits/<email> keeps a JSON null as null", function()
      local status, doc = get_json("/credits/" .. free)
      assert.equal(200, status)
      assert.equal(free, doc.email)
      assert.equal(120, doc.credits_remaining)
      assert.equal(cjson.null, doc.tokens_remaining)
    end)

    it("GET /accounts lists the accounts", function()
      local status, doc = get_json("/accounts")
      assert.equal(200, status)
      assert.equal(3, doc.count)
      for _, email in ipairs(emails) do
        assert.is_table(doc.accounts[email])
        assert.equal(email, doc.accounts[email].email)
      end
    end)

    it("maps an unknown account to 404 with the error's kind/status/message", function()
      local status, doc = get_json("/credits/nobody@sandbox.test")
      assert.equal(404, status)
      assert.equal("http", doc.kind)
      assert.equal(404, doc.status)
      assert.matches("not found", doc.message, 1, true)
      assert.matches("^flowmusic: http 404 on GET /accounts/nobody%%40sandbox%.test", doc.error)
    end)

    it("answers a malformed argument with 400 (the client raises before sending)", function()
      local status, doc = get_json("/credits/usage")
      assert.equal(400, status)
      assert.equal("bad_request", doc.kind)
      assert.matches("bad argument #1 to 'get_account'", doc.message, 1, true)
    end)

    it("maps a rejected API token (401) to 502", function()
      sb:fault { fault = "status", code = 401, method = "GET", path = "/v1/flowmusic/accounts", count = 1 }
      local status, doc = get_json("/accounts")
      sb:clear_faults()
      assert.equal(502, status)
      assert.equal("http", doc.kind)
      assert.equal(401, doc.status)
    end)
  end)

  it("keeps serving other requests while a call waits (thread pool, one worker)", function()
    sb:fault { fault = "latency", ms = 2000, method = "GET", count = 1,
      path = "/v1/flowmusic/accounts/" .. plus:gsub("@", "%%40") }
    local t = srv:slow_and_fast("/credits/" .. plus, "/accounts", 20, 0.3)
    assert.equal(200, t.slow_code, t.slow_body)
    assert.equal(5000, cjson.decode(t.slow_body).credits_remaining)
    assert.is_true(t.slow_end - t.slow_start >= 1.8, "the slow call did not wait for the fault")
    assert.equal(20, #t.fast_codes)
    for _, code in ipairs(t.fast_codes) do assert.equal(200, code) end
    -- all 20 finished while the slow one was still waiting, and quickly
    assert.is_true(t.fast_end < t.slow_end, ("fast ones ended %.3f s after the slow one"):format(t.fast_end - t.slow_end))
    assert.is_true(t.fast_end - t.fast_start < 1.0, ("20 requests took %.3f s"):format(t.fast_end - t.fast_start))
  end)

  it("returns the same values and typed errors as outside nginx", function()
    local status, doc = get_json("/t/values?free=" .. free .. "&plus=" .. plus)
    assert.equal(200, status)
    assert.same({ account_nil = true, is_error = true, kind = "http", status = 404,
      text = "flowmusic: http 404 on GET /accounts/nobody%40sandbox.test: Account nobody@sandbox.test not found" },
      doc.single)
    assert.same({ default_nil = true, ngx_null = true, sentinel = true }, doc.null)
    assert.same({ ok = true, is_error = false, kind = cjson.null, status = 200, credits = 5000,
      ctype = cjson.null, same_value = true }, doc.batch[1])
    assert.same({ ok = false, is_error = true, kind = "http", status = 404, credits = cjson.null,
      ctype = cjson.null, same_value = true }, doc.batch[2])
    assert.is_true(doc.batch[3].ok)
    assert.matches("json", doc.batch[3].ctype, 1, true)
    -- on_progress ran in the request, once per result, in input order
    assert.same({ { 1, 3, 1, true }, { 2, 3, 2, false }, { 3, 3, 3, true } }, doc.progress)
  end)

  it("runs in ngx.timer callbacks through the pool", function()
    local status, doc = get_json("/t/timer")
    assert.equal(200, status)
    assert.same({ done = true, ok = true, err = "nil" }, doc)
  end)

  describe("where nginx cannot yield", function()
    local function phase_message(phase)
      return "flowmusic: cannot run 'list_accounts' in nginx's '" .. phase .. "' phase: it cannot yield"
    end

    it("raises a clear error in set_by_lua", function()
      local status, body = srv:get("/t/set")
      assert.equal(200, status)
      assert.matches("^false " .. phase_message("set"):gsub("%p", "%%%0"), body)
      assert.matches("allow_blocking = true", body, 1, true)
    end)

    it("raises a clear error in header_filter_by_lua", function()
      local status, _, headers = srv:get("/t/header_filter")
      assert.equal(200, status)
      assert.matches("^false " .. phase_message("header_filter"):gsub("%p", "%%%0"), headers["x-flowmusic-result"])
    end)

    it("raises a clear error in init_worker_by_lua, and allow_blocking runs the call there", function()
      local log = srv:error_log()
      assert.matches("flowmusic%-spec init_worker plain: false " .. phase_message("init_worker"):gsub("%p", "%%%0"), log)
      assert.matches("flowmusic%-spec init_worker allow_blocking: %d+ accounts nil", log)
    end)

    it("with allow_blocking = true, runs the call in the worker", function()
      local status, body = srv:get("/t/set_blocking")
      assert.equal(200, status)
      assert.equal("accounts 3 nil", body)
    end)

    it("raises a clear error when the thread pool does not exist", function()
      local status, doc = get_json("/t/nopool")
      assert.equal(200, status)
      assert.is_false(doc.ok)
      assert.matches("nginx thread pool 'missing' is not available", doc.err, 1, true)
      assert.matches("thread_pool missing threads=4;", doc.err, 1, true)
      assert.is_true(doc.blocking_ok)
    end)
  end)

  it("logs no errors and never the token", function()
    local log = srv:error_log()
    assert.is_nil(log:find("%[error%]"), log)
    assert.is_nil(log:find("%[alert%]"), log)
    assert.is_nil(log:find("%[crit%]"), log)
    assert.is_nil(log:find(sb.token, 1, true))
    assert.is_nil((openresty.read_file(srv.dir .. "/logs/access.log") or ""):find(sb.token, 1, true))
  end)

  it("leaves nothing running", function()
    local pid = srv.pid
    assert.is_true(openresty.alive(pid))
    assert.is_true(srv:stop())
    assert.is_false(openresty.alive(pid))
    local sb_pid = sb.pid
    sb:stop()
    assert.is_false(openresty.alive(sb_pid))
  end)
end)
