-- Through a real forward proxy, as behind a corporate one: Debian's tinyproxy, started here on
-- a free port, tunnels (CONNECT) to the sandbox's TLS listener or forwards plain HTTP. The
-- library's `proxy` option, the CLI's `--proxy`, `HTTPS_PROXY`, `http_proxy` and `NO_PROXY`;
-- a proxy that refuses the tunnel, wants a password or can't be reached: reason `proxy`,
-- never sent, never `outcome_unknown`, and the password in no output.
local sandbox = require "spec.helpers.sandbox"
local tinyproxy = require "spec.helpers.tinyproxy"
local h = require "spec.helpers.client"
local cli = require "spec.helpers.cli"
local CA = require "spec.helpers.ca"
local cjson = require "cjson"

local env_with = cli.env_with

local function count(s, needle)
  local n, at = 0, 1
  while true do
    local i = s:find(needle, at, true)
    if not i then return n end
    n, at = n + 1, i + #needle
  end
end

local PASSWORD = "s3cret-proxy-pw"

describe("through tinyproxy", function()
  local ca, sb, tls_port, open, closed, locked, run

  lazy_setup(function()
    ca = CA.new()
    sb = sandbox.start { tls = ca }
    tls_port = tonumber(sb.tls_base_url:match(":(%d+)"))
    open = tinyproxy.start { connect_ports = { tls_port } }
    closed = tinyproxy.start {} -- refuses every CONNECT (403)
    locked = tinyproxy.start { connect_ports = { tls_port }, user = "fleet", password = PASSWORD }
    run = cli.new { env = { USEAPI_TOKEN = sb.token, FLOWMUSIC_BASE_URL = sb.tls_base_url } }
  end)
  lazy_teardown(function()
    if run then run:close() end
    for _, p in ipairs { open, closed, locked } do p:stop() end
    if sb then sb:stop() end
    if ca then ca:remove() end
  end)
  before_each(function() sb:reset() end)

  local function tls_client(opts)
    opts.base_url, opts.cainfo = sb.tls_base_url, ca.cert
    return h.client(sb, opts)
  end

  describe("the library", function()
    it("tunnels to the TLS listener through the proxy option, HTTP/2 inside the tunnel", function()
      local c = tls_client { proxy = open.url }
      local acct, created = c:add_account("sandbox:plus:tunnel@x.com")
      assert.is_true(created, tostring(acct))
      assert.equal("tunnel@x.com", c:get_account("tunnel@x.com").email)
      c:close()
      local seen = sb:requests()
      assert.equal(2, seen.total)
      assert.same({ ["HTTP/2.0"] = 2 }, seen.protocols)
      local log = open:log()
      assert.truthy(log:find("CONNECT 127.0.0.1:" .. tls_port, 1, true), log)
      assert.is_nil(log:find(sb.token, 1, true))
    end)

    it("forwards plain HTTP through the proxy, the token in no proxy log line", function()
      local c = h.client(sb, { proxy = open.url })
      assert.is_table(c:list_accounts())
      c:close()
      local log = open:log()
      assert.truthy(log:find("GET " .. sb.root .. "/v1/flowmusic/accounts", 1, true), log)
      assert.is_nil(log:find(sb.token, 1, true))
      assert.equal(1, sb:requests().total)
    end)

    it("a refused CONNECT is reason proxy, never sent, not outcome_unknown; the add goes through once allowed", function()
      local events = {}
      local c = tls_client { proxy = closed.url, retries = 1,
        on_event = function(e) events[#events + 1] = e end }
      local acct, err = c:add_account("sandbox:plus:refused@x.com")
      assert.is_nil(acct)
      assert.equal("network", err.kind)
      assert.equal("proxy", err.reason)
      assert.is_false(err.reached)
      assert.is_falsy(err.outcome_unknown)
      assert.equal(403, err.proxy_status)
      assert.truthy(tostring(err):find("the proxy refused the tunnel (CONNECT answered 403)", 1, true), tostring(err))
      -- retried like a refused connection: the write was never sent
      assert.equal(2, err.attempts)
      assert.equal(2, count(closed:log(), "Refused CONNECT method on port " .. tls_port))
      c:close()
      assert.equal(0, sb:requests().total)
      assert.equal(404, (sb:api("GET", "/accounts/refused%40x.com")))

      c = tls_client { proxy = open.url }
      local added, created = c:add_account("sandbox:plus:refused@x.com")
      assert.is_true(created, tostring(added))
      assert.equal("refused@x.com", added.email)
      c:close()
      assert.equal(1, sb:requests().by["POST /v1/flowmusic/accounts"])
    end)

    -- Where a password could show: every string an error or event holds.
    local function assert_hidden(err, events, c)
      local seen = { tostring(err), cjson.encode(events), tostring(c) }
      for k, v in pairs(err) do seen[#seen + 1] = tostring(k) .. "=" .. tostring(v) end
      for _, s in ipairs(seen) do assert.is_nil(s:find(PASSWORD, 1, true), s) end
    end

    it("a 407 is typed, over a tunnel and over plain HTTP", function()
      for _, c in ipairs { tls_client { proxy = locked.url, retries = 0 },
                           h.client(sb, { proxy = locked.url, retries = 0 }) } do
        local list, err = c:list_accounts()
        assert.is_nil(list)
        assert.equal("network", err.kind)
        assert.equal("proxy", err.reason)
        assert.equal(407, err.proxy_status)
        assert.is_false(err.reached)
        assert.truthy(tostring(err):find("the proxy requires authentication", 1, true), tostring(err))
        c:close()
      end
      assert.equal(0, sb:requests().total)
    end)

    it("the proxy password is in no error, event or string, whatever fails", function()
      -- tinyproxy answers wrong credentials with 401 rather than 407: still the proxy's refusal
      for _, url in ipairs { locked:url_with("fleet", PASSWORD .. "-wrong"),
                             "http://fleet:" .. PASSWORD .. "@127.0.0.1:" .. h.closed_port() } do
        local events = {}
        local c = tls_client { proxy = url, retries = 1, on_event = function(e) events[#events + 1] = e end }
        local list, err = c:list_accounts()
        assert.is_nil(list)
        assert.equal("proxy", err.reason)
        assert.is_false(err.reached)
        assert.is_true(#events > 0)
        assert_hidden(err, events, c)
        c:close()
      end
      local c = tls_client { proxy = locked:url_with("fleet", PASSWORD) }
      assert.is_table(c:list_accounts())
      c:close()
      assert.equal(1, sb:requests().total)
      assert.is_nil(locked:log():find(PASSWORD, 1, true))
    end)

    it("a proxy that can't be reached is reason proxy and retried", function()
      local c = tls_client { proxy = "http://127.0.0.1:" .. h.closed_port(), retries = 2 }
      local list, err = c:list_accounts()
      assert.is_nil(list)
      assert.equal("proxy", err.reason)
      assert.is_false(err.reached)
      assert.equal(3, err.attempts)
      assert.truthy(tostring(err):find("the proxy could not be reached", 1, true), tostring(err))
      c:close()
    end)
  end)

  describe("the CLI", function()
    before_each(function() sb:seed(1) end)

    local function listed(code, out, err)
      assert.equal(0, code, err)
      assert.is_string(cjson.decode(cli.lines(out)[1]).email)
    end

    it("goes through --proxy URL", function()
      local before = count(open:log(), "CONNECT 127.0.0.1:" .. tls_port)
      listed(run:run("accounts list --json --cacert " .. cli.q(ca.cert) .. " --proxy " .. cli.q(open.url),
        { env = env_with() }))
      assert.equal(before + 1, count(open:log(), "CONNECT 127.0.0.1:" .. tls_port))
    end)

    it("goes through HTTPS_PROXY for https, and http_proxy for plain http", function()
      local before = count(open:log(), "CONNECT 127.0.0.1:" .. tls_port)
      listed(run:run("accounts list --json --cacert " .. cli.q(ca.cert),
        { env = env_with { HTTPS_PROXY = open.url } }))
      assert.equal(before + 1, count(open:log(), "CONNECT 127.0.0.1:" .. tls_port))
      listed(run:run("accounts list --json", { env = env_with { http_proxy = open.url,
        FLOWMUSIC_BASE_URL = sb.base_url } }))
      assert.truthy(open:log():find("GET " .. sb.root .. "/v1/flowmusic/accounts", 1, true))
    end)

    it("goes direct for a host in NO_PROXY", function()
      local before, refused = open:log(), count(closed:log(), "CONNECT 127.0.0.1:" .. tls_port)
      listed(run:run("accounts list --json --cacert " .. cli.q(ca.cert),
        { env = env_with { HTTPS_PROXY = closed.url, NO_PROXY = "127.0.0.1" } }))
      listed(run:run("accounts list --json --cacert " .. cli.q(ca.cert),
        { env = env_with { https_proxy = closed.url, no_proxy = "localhost,127.0.0.1" } }))
      assert.equal(refused, count(closed:log(), "CONNECT 127.0.0.1:" .. tls_port))
      assert.equal(before, open:log())
    end)

    it("reports a refused tunnel for a write as never sent, with exit 1", function()
      local token = ca.root .. "/refresh.txt"
      cli.spit(token, "sandbox:plus:cli-refused@x.com\n")
      local code, out, err = run:run("accounts add --json --retries 0 --refresh-token-file " .. cli.q(token)
        .. " --cacert " .. cli.q(ca.cert) .. " --proxy " .. cli.q(closed.url), { env = env_with() })
      assert.equal(1, code, err)
      assert.equal("", out)
      assert.truthy(err:find("the proxy refused the tunnel (CONNECT answered 403)", 1, true), err)
      assert.is_nil(err:lower():find("unknown", 1, true), err)
      assert.equal(0, sb:requests().total) -- the add never arrived
    end)

    it("keeps the proxy password out of --verbose and --json output", function()
      for _, url in ipairs { locked:url_with("fleet", PASSWORD .. "-wrong"),
                             "http://fleet:" .. PASSWORD .. "@127.0.0.1:" .. h.closed_port() } do
        for _, flags in ipairs { "--verbose", "--json", "--verbose --json" } do
          local code, out, err = run:run("accounts list --retries 1 " .. flags .. " --cacert " .. cli.q(ca.cert)
            .. " --proxy " .. cli.q(url), { env = env_with() })
          assert.equal(1, code, err)
          assert.truthy((out .. err):find("proxy", 1, true), flags .. ": " .. err)
          assert.is_nil((out .. err):find(PASSWORD, 1, true), flags .. ": " .. out .. err)
        end
      end
      local code, out, err = run:run("accounts list --json --verbose --cacert " .. cli.q(ca.cert),
        { env = env_with { HTTPS_PROXY = locked:url_with("fleet", PASSWORD) } })
      listed(code, out, err)
      assert.is_nil((out .. err):find(PASSWORD, 1, true), err)
    end)
  end)
end)
