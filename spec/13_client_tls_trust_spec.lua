-- TLS as users meet it: the sandbox's TLS listener (HTTP/2 with HTTP/1.1 fallback) holds a
-- certificate signed by a throwaway CA, as behind a private CA or a TLS-inspecting proxy.
-- The library trusts it through `cainfo` or `capath`, the CLI through `--cacert`, `--capath`,
-- `CURL_CA_BUNDLE` or `SSL_CERT_FILE`/`SSL_CERT_DIR`; without it nothing reaches the server.
-- Concurrent reads multiplex on one HTTP/2 connection.
local sandbox = require "spec.helpers.sandbox"
local h = require "spec.helpers.client"
local cli = require "spec.helpers.cli"
local CA = require "spec.helpers.ca"
local cjson = require "cjson"

local env_with = cli.env_with

describe("TLS trust", function()
  local ca, sb, run

  lazy_setup(function()
    ca = CA.new()
    sb = sandbox.start { tls = ca }
    run = cli.new { env = { USEAPI_TOKEN = sb.token, FLOWMUSIC_BASE_URL = sb.tls_base_url } }
  end)
  lazy_teardown(function()
    if run then run:close() end
    if sb then sb:stop() end
    if ca then ca:remove() end
  end)
  before_each(function() sb:reset() end)

  describe("the library", function()
    it("refuses the server without the CA: tls_verify, not retried, nothing reaches the server", function()
      local c = h.client(sb, { base_url = sb.tls_base_url, retries = 3 })
      local list, err = c:list_accounts()
      assert.is_nil(list)
      assert.equal("network", err.kind)
      assert.equal("tls_verify", err.reason)
      assert.is_false(err.reached)
      assert.equal(1, err.attempts)
      assert.equal(0, sb:requests().total)
      c:close()
    end)

    it("trusts the CA given as cainfo, over HTTP/2", function()
      local c = h.client(sb, { base_url = sb.tls_base_url, cainfo = ca.cert })
      local acct, created = c:add_account("sandbox:plus:tls@x.com")
      assert.is_true(created)
      assert.equal(acct.email, c:get_account("tls@x.com").email)
      local seen = sb:requests()
      assert.equal(2, seen.total)
      assert.same({ ["HTTP/2.0"] = 2 }, seen.protocols)
      c:close()
    end)

    it("trusts the CA found in capath (a hashed directory)", function()
      local c = h.client(sb, { base_url = sb.tls_base_url, capath = ca.dir })
      local list, err = c:list_accounts()
      assert.is_table(list, tostring(err))
      assert.equal(1, sb:requests().total)
      c:close()
    end)

    it("refuses a cainfo or capath it can't read, before anything is sent", function()
      local missing = ca.root .. "/missing.pem"
      assert.has_error(function() h.client(sb, { base_url = sb.tls_base_url, cainfo = missing }) end,
        "flowmusic.new: cainfo: cannot read " .. missing .. ": No such file or directory")
      assert.has_error(function() h.client(sb, { base_url = sb.tls_base_url, cainfo = ca.dir }) end,
        "flowmusic.new: cainfo: " .. ca.dir .. " is a directory, not a file (use capath for a directory)")
      assert.has_error(function() h.client(sb, { base_url = sb.tls_base_url, capath = ca.cert }) end,
        "flowmusic.new: capath: " .. ca.cert .. " is not a directory")
      assert.equal(0, sb:requests().total)
    end)

    it("honours CURL_CA_BUNDLE, then SSL_CERT_FILE / SSL_CERT_DIR, when no option is given", function()
      local trust = require "flowmusic.trust"
      local function env(t) return function(name) return t[name] end end
      assert.same({ cainfo = ca.cert, source = "CURL_CA_BUNDLE" },
        trust.resolve(nil, nil, env { CURL_CA_BUNDLE = ca.cert, SSL_CERT_FILE = "/nonexistent", SSL_CERT_DIR = ca.dir }))
      assert.same({ cainfo = ca.cert, capath = ca.dir, source = "SSL_CERT_FILE/SSL_CERT_DIR" },
        trust.resolve(nil, nil, env { SSL_CERT_FILE = ca.cert, SSL_CERT_DIR = ca.dir }))
      assert.same({ capath = ca.dir, source = "SSL_CERT_FILE/SSL_CERT_DIR" },
        trust.resolve(nil, nil, env { SSL_CERT_DIR = ca.dir, CURL_CA_BUNDLE = "" }))
      assert.same({ cainfo = ca.cert, source = "options" },
        trust.resolve(ca.cert, nil, env { CURL_CA_BUNDLE = "/nonexistent" }))
      assert.same({ source = "default" }, trust.resolve(nil, nil, env {}))
      local r, msg = trust.resolve(nil, nil, env { CURL_CA_BUNDLE = ca.root .. "/nope.pem" })
      assert.is_nil(r)
      assert.equal("CURL_CA_BUNDLE: cannot read " .. ca.root .. "/nope.pem: No such file or directory", msg)
      r, msg = trust.resolve(nil, nil, env { SSL_CERT_DIR = ca.cert })
      assert.is_nil(r)
      assert.equal("SSL_CERT_DIR: " .. ca.cert .. " is not a directory", msg)
    end)

    it("reads CURL_CA_BUNDLE from the real environment of a process", function()
      local script = ca.root .. "/env_client.lua"
      cli.spit(script, ([[
        local c = require("flowmusic").new { token = %q, base_url = %q, retries = 0 }
        local list, err = c:list_accounts()
        io.write(list and "ok" or tostring(err))
      ]]):format(sb.token, sb.tls_base_url))
      local lua_path = "lua/?.lua;lua/?/init.lua;" .. package.path
      local cmd = ("env -u SSL_CERT_FILE -u SSL_CERT_DIR LUA_PATH=%s LUA_CPATH=%s CURL_CA_BUNDLE=%s %s %s")
        :format(cli.q(lua_path), cli.q(package.cpath), cli.q(ca.cert), cli.LUA, cli.q(script))
      local p = io.popen(cmd)
      local out = p:read("*a")
      p:close()
      assert.equal("ok", out)
      assert.equal(1, sb:requests().total)
    end)

    it("multiplexes 30 concurrent GETs from a fresh client on at most 2 TLS connections", function()
      local c = h.client(sb, { base_url = sb.tls_base_url, cainfo = ca.cert })
      local items = {}
      for i = 1, 30 do items[i] = { "list_accounts" } end
      local results = c:batch(items, { concurrency = 30 })
      for i, r in ipairs(results) do assert(r.ok, i .. ": " .. tostring(r.err)) end
      local seen = sb:requests()
      assert.equal(30, seen.total)
      assert.same({ ["HTTP/2.0"] = 30 }, seen.protocols)
      assert.is_true(seen.tls_handshakes >= 1 and seen.tls_handshakes <= 2, "handshakes: " .. seen.tls_handshakes)
      c:close()
    end)

    it("sends every write on a connection of its own, even over HTTP/2", function()
      local c = h.client(sb, { base_url = sb.tls_base_url, cainfo = ca.cert })
      assert.is_table(c:list_accounts())
      for i = 1, 3 do assert.is_table(c:add_account("sandbox:plus:w" .. i .. "@x.com")) end
      assert.is_table(c:list_accounts())
      local seen = sb:requests()
      assert.equal(5, seen.total)
      -- the first read's connection, then one per write; the last read reuses a pooled one
      assert.equal(4, seen.tls_handshakes)
      local per_connection = {}
      for _, n in pairs(seen.connections) do per_connection[#per_connection + 1] = n end
      table.sort(per_connection)
      assert.same({ 1, 1, 1, 2 }, per_connection)
      c:close()
    end)

    it("falls back to HTTP/1.1 for a server that offers only that", function()
      -- the plain listener speaks HTTP/1.1 only; the client negotiates what it is offered
      local c = h.client(sb)
      assert.is_table(c:list_accounts())
      assert.same({ ["HTTP/1.1"] = 1 }, sb:requests().protocols)
      c:close()
    end)
  end)

  describe("the CLI", function()
    before_each(function() sb:seed(1) end)

    local function listed(code, out, err)
      assert.equal(0, code, err)
      assert.is_string(cjson.decode(cli.lines(out)[1]).email)
    end

    it("refuses the server without the CA (exit 1, tls_verify), sending nothing", function()
      local code, out, err = run:run("accounts list --json", { env = env_with() })
      assert.equal(1, code)
      assert.equal("", out)
      assert.truthy(err:find("tls_verify", 1, true) or err:find("certificate", 1, true), err)
      assert.equal(0, sb:requests().total)
    end)

    it("trusts --cacert FILE and --capath DIR", function()
      listed(run:run("accounts list --json --cacert " .. cli.q(ca.cert), { env = env_with() }))
      listed(run:run("accounts list --json --capath " .. cli.q(ca.dir), { env = env_with() }))
      assert.equal(2, sb:requests().total)
    end)

    it("trusts CURL_CA_BUNDLE, and SSL_CERT_FILE / SSL_CERT_DIR", function()
      listed(run:run("accounts list --json", { env = env_with { CURL_CA_BUNDLE = ca.cert } }))
      listed(run:run("accounts list --json", { env = env_with { SSL_CERT_FILE = ca.cert } }))
      listed(run:run("accounts list --json", { env = env_with { SSL_CERT_DIR = ca.dir } }))
      assert.equal(3, sb:requests().total)
    end)

    it("lets --cacert win over the variables", function()
      listed(run:run("accounts list --json --cacert " .. cli.q(ca.cert),
        { env = env_with { CURL_CA_BUNDLE = ca.root .. "/missing.pem" } }))
    end)

    it("refuses a missing or unreadable CA file or directory as a usage error, sending nothing", function()
      local missing = ca.root .. "/missing.pem"
      for _, args in ipairs { "--cacert " .. cli.q(missing), "--capath " .. cli.q(missing),
                              "--capath " .. cli.q(ca.cert), "--cacert " .. cli.q(ca.dir) } do
        local code, out, err = run:run("accounts list --json " .. args, { env = env_with() })
        assert.equal(2, code, args .. ": " .. err)
        assert.equal("", out)
        assert.truthy(err:find(missing, 1, true) or err:find(ca.cert, 1, true) or err:find(ca.dir, 1, true), err)
      end
      local code, _, err = run:run("accounts list --json", { env = env_with { CURL_CA_BUNDLE = missing } })
      assert.equal(2, code, err)
      assert.truthy(err:find("CURL_CA_BUNDLE", 1, true), err)
      assert.equal(0, sb:requests().total)
    end)
  end)
end)
