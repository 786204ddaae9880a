-- TLS verification is on by default: a self-signed server is refused (and not retried), and
-- trusted once its certificate is given as cainfo.
local sandbox = require "spec.helpers.sandbox"
local h = require "spec.helpers.client"

describe("flowmusic over TLS", function()
  local sb

  lazy_setup(function() sb = sandbox.start { tls = true } end)
  lazy_teardown(function() if sb then sb:stop() end end)

  it("refuses a certificate it can't verify, without retrying", function()
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

  it("accepts it with cainfo, and works as over plain HTTP", function()
    local c = h.client(sb, { base_url = sb.tls_base_url, cainfo = sb.tls_cert })
    local acct, created = c:add_account("sandbox:plus:tls@x.com")
    assert.is_true(created)
    assert.equal("tls@x.com", c:get_account("tls@x.com").email)
    assert.equal(acct.email, c:list_accounts()["tls@x.com"].email)
    c:close()
  end)
end)
