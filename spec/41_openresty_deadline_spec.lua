-- Inside nginx a call's deadline covers the whole call: the wait for a thread of the pool and
-- for a worker-thread Lua VM too. More stalled calls than the pool has threads: every call
-- ends within its deadline (plus a margin), and a healthy call behind them succeeds or fails
-- as a timeout, never as a network error.
local cjson = require "cjson"
local openresty = require "spec.helpers.openresty"

local repo = openresty.repo_dir()
if not openresty.read_file(repo .. "/build51/flowmusic/core.so") or not openresty.read_file(openresty.NGINX) then
  describe("flowmusic deadlines in nginx", function() pending("needs nginx and build51/") end)
  return
end

local CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log notice;
thread_pool flowmusic threads=2;
env USEAPI_TOKEN;
env FLOWMUSIC_BASE_URL;
events { worker_connections 256; }
http {
    access_log off;
    lua_package_path "@REPO@/lua/?.lua;@REPO@/lua/?/init.lua;;";
    lua_package_cpath "@REPO@/build51/?.so;;";
    lua_worker_thread_vm_pool_size 3;
    server {
        listen 127.0.0.1:@PORT@;
        location = /t/get {
            content_by_lua_block {
                local flowmusic = require "flowmusic"
                local core = require "flowmusic.core"
                local c = flowmusic.new { deadline = tonumber(ngx.var.arg_deadline), timeout = 30, retries = 0 }
                local t0 = core.now()
                local v, err = c:get_account(ngx.var.arg_email)
                ngx.say(require("cjson").encode { ok = v ~= nil, kind = err and err.kind, reason = err and err.reason,
                    elapsed = core.now() - t0 })
            }
        }
    }
}
]]

describe("flowmusic deadlines in nginx #once", function()
  local sb, srv
  setup(function()
    sb = require("spec.helpers.sandbox").start {}
    sb:seed(1)
    local conf = CONF:gsub("@REPO@", repo)
    srv = openresty.start { conf = conf, env = { USEAPI_TOKEN = sb.token, FLOWMUSIC_BASE_URL = sb.base_url } }
  end)
  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)

  it("holds for queued calls, and a healthy call behind them succeeds or times out", function()
    sb:fault { fault = "stall", ms = 20000, method = "GET", path = "/v1/flowmusic/accounts/stalled%40x.com", count = 0 }
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. dir))
    local deadline = 2
    local cmds = {}
    for i = 1, 8 do
      cmds[#cmds + 1] = ("curl -s --max-time 20 '%s/t/get?email=stalled@x.com&deadline=%d' > %s/%d &"):format(
        srv.root, deadline, dir, i)
    end
    cmds[#cmds + 1] = ("sleep 0.2; curl -s --max-time 20 '%s/t/get?email=seed-01@sandbox.test&deadline=%d' > %s/healthy &"):format(
      srv.root, deadline, dir)
    cmds[#cmds + 1] = "wait"
    assert(os.execute(table.concat(cmds, "\n")))
    local function result(name)
      local f = assert(io.open(dir .. "/" .. name))
      local doc = cjson.decode(f:read("*a"))
      f:close()
      return doc
    end
    for i = 1, 8 do
      local r = result(tostring(i))
      assert.is_false(r.ok)
      assert.equal("timeout", r.kind)
      assert.is_true(r.elapsed < deadline + 1.0, ("call %d took %.2f s"):format(i, r.elapsed))
    end
    local healthy = result("healthy")
    assert.is_true(healthy.ok or healthy.kind == "timeout", cjson.encode(healthy))
    assert.is_true(healthy.elapsed < deadline + 1.0, ("healthy call took %.2f s"):format(healthy.elapsed))
    os.execute("rm -rf " .. dir)
  end)
end)
