-- The proxy and user_agent options, through a real forward proxy (nginx) in front of the
-- sandbox: requests go through it, carry the agent given, and the proxy never logs a token.
local sandbox = require "spec.helpers.sandbox"
local openresty = require "spec.helpers.openresty"
local h = require "spec.helpers.client"

local PROXY_CONF = [[
daemon on;
master_process on;
worker_processes 1;
pid @PREFIX@/logs/nginx.pid;
error_log @PREFIX@/logs/error.log;
events { worker_connections 256; }
http {
  log_format forward '$request_method $request_uri ua=$http_user_agent';
  access_log @PREFIX@/logs/proxy.log forward;
  client_body_temp_path @PREFIX@/tmp/body;
  proxy_temp_path @PREFIX@/tmp/proxy;
  server {
    listen 127.0.0.1:@PORT@;
    location / {
      proxy_pass http://$http_host$request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
]]

describe("flowmusic through a proxy", function()
  local sb, proxy

  -- The proxy log once it holds every wanted line: nginx writes a line after it has
  -- answered, so it may lag the client by a moment (bounded wait, 2 s).
  local function log_with(wanted)
    local socket = require "socket"
    local deadline, log = socket.gettime() + 2
    repeat
      log = openresty.read_file(proxy.dir .. "/logs/proxy.log") or ""
      local all = true
      for _, w in ipairs(wanted) do
        if not log:find(w[1], 1, w[2] ~= "pattern") then all = false end
      end
      if all then break end
      socket.sleep(0.02)
    until socket.gettime() > deadline
    return log
  end

  lazy_setup(function()
    sb = sandbox.start {}
    proxy = openresty.start { conf = PROXY_CONF }
  end)
  lazy_teardown(function()
    if proxy then proxy:stop() end
    if sb then sb:stop() end
  end)

  it("sends every request through the proxy, with the user agent given", function()
    local c = h.client(sb, { proxy = proxy.root, user_agent = "flowmusic-spec/1.0" })
    assert.is_true(select(2, c:add_account("sandbox:plus:p@x.com")))
    assert.equal("p@x.com", c:get_account("p@x.com").email)
    c:close()
    local log = log_with { { "POST /v1/flowmusic/accounts ua=flowmusic-spec/1.0" },
      { "GET /v1/flowmusic/accounts/p%40x.com ua=flowmusic-spec/1.0" } }
    assert.truthy(log:find("POST /v1/flowmusic/accounts ua=flowmusic-spec/1.0", 1, true), log)
    assert.truthy(log:find("GET /v1/flowmusic/accounts/p%40x.com ua=flowmusic-spec/1.0", 1, true), log)
    assert.is_nil(log:find(sb.token, 1, true))
  end)

  it("the default user agent names flowmusic and its version", function()
    local c = h.client(sb, { proxy = proxy.root })
    assert.is_table(c:list_accounts())
    c:close()
    local pattern = "GET /v1/flowmusic/accounts ua=flowmusic/%d+%.%d+%.%d+\n"
    local log = log_with { { pattern, "pattern" } }
    assert.truthy(log:find(pattern), log)
  end)

  it("a proxy that can't be reached is a network error that never reached the server", function()
    local c = h.client(sb, { proxy = "http://127.0.0.1:" .. h.closed_port() })
    local list, err = c:list_accounts()
    assert.is_nil(list)
    assert.equal("network", err.kind)
    assert.is_false(err.reached)
    c:close()
  end)
end)
