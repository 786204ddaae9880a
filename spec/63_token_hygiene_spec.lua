-- Safer fleet writes (issue 25): the used-token store (a refresh token is sent once, unless
-- --force), token and config files others may read are refused, one apply at a time, and
-- profiles of the config file with their precedence. The command line runs as a subprocess
-- against a private sandbox that counts every request. The lock cases wait on purpose and
-- are #once (Lua 5.4 only); the rest runs under every Lua.
local sandbox = require "spec.helpers.sandbox"
local clih = require "spec.helpers.cli"
local jsonl = clih.jsonl
local cjson = require "cjson"
local pieces = require("spec.helpers.client").secret_pieces

local API_TOKEN = "user:6363-HygieneSpecApiTok"
-- Sentinel refresh tokens (not sandbox:* ones: no email is part of them); none of their
-- 8-byte pieces may be in the store.
local SENTINELS = { "Qm4Xr8Tz1Vb6Nc3Lk7Pw-first", "Jh5Ds2Fg9Ak0Wz4Ey8Rt-second", "Uo3Ib7Ny1Mv5Cx9Ze2Lq-third" }

local sb, tmp, runner
local n = 0

local function contains(hay, needle) return tostring(hay):find(needle, 1, true) ~= nil end

-- A fresh directory under the spec's temp dir.
local function fresh(name)
  n = n + 1
  local d = tmp .. "/" .. name .. n
  assert(os.execute("mkdir -p " .. clih.q(d)))
  return d
end

local function token_file(dir, name, token, mode)
  local path = clih.spit(dir .. "/" .. name, token .. "\n")
  if mode then assert(os.execute("chmod " .. mode .. " " .. clih.q(path))) end
  return path
end

local function sha256(s)
  local p = io.popen("printf %s " .. clih.q(s) .. " | sha256sum")
  local hex = p:read("*l"):match("^%x+")
  p:close()
  return hex
end

local mode_of = clih.mode_of

local function posts() return sb:requests().by["POST /v1/flowmusic/accounts"] or 0 end
local function total() return sb:requests().total end

local function run(argv, env) return runner:run(argv, { env = env }) end

describe("token hygiene", function()
  setup(function()
    sb = sandbox.start { token = API_TOKEN }
    runner = clih.new { env = clih.env_with { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb.base_url } }
    tmp = runner.tmp
  end)
  teardown(function()
    runner:close()
    sb:stop()
  end)
  before_each(function() sb:reset() end)

  describe("the used-token store", function()
    it("refuses to re-add a token, with its date and email, sending nothing; --force sends it", function()
      local state, dir = fresh("state"), fresh("tok")
      local file = token_file(dir, "t.txt", SENTINELS[1])
      local env = { FLOWMUSIC_STATE_DIR = state .. "/sub" }
      local rc, out, err = run("accounts add --refresh-token-file " .. clih.q(file) .. " --json", env)
      assert.are.equal(0, rc, err)
      assert.are.equal("added", cjson.decode(out).result)
      assert.are.equal("700", mode_of(state .. "/sub"))
      assert.are.equal("600", mode_of(state .. "/sub/used-tokens.jsonl"))
      local before = total()
      rc, out, err = run("accounts add --refresh-token-file " .. clih.q(file), env)
      assert.are.equal(2, rc, err)
      assert.are.equal("", out)
      assert.truthy(contains(err, sandbox.derived_email(SENTINELS[1])), err)
      assert.truthy(err:find("already used on %d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d UTC"), err)
      assert.truthy(contains(err, "--force"), err)
      assert.are.equal(before, total()) -- not even a GET
      rc, out, err = run("accounts add --refresh-token-file " .. clih.q(file) .. " --force --json", env)
      assert.are.equal(0, rc, err)
      assert.are.equal("refreshed", cjson.decode(out).result)
      assert.are.equal(2, posts())
      -- Another token of the same account (the sandbox's rotated form) is not refused.
      local rotated = token_file(dir, "r.txt", "sandbox:plus:rot@x.com/2")
      assert.are.equal(0, (run("accounts add --refresh-token-file " .. clih.q(token_file(dir, "o.txt", "sandbox:plus:rot@x.com")), env)))
      rc, out, err = run("accounts add --refresh-token-file " .. clih.q(rotated) .. " --json", env)
      assert.are.equal(0, rc, err)
      assert.are.same({ "refreshed", "rot@x.com" }, { cjson.decode(out).result, cjson.decode(out).email })
    end)

    it("holds a fingerprint, the email and the time, and no token nor any piece of one", function()
      local state, dir = fresh("state"), fresh("tok")
      local env = { FLOWMUSIC_STATE_DIR = state }
      for i = 1, 2 do
        local rc, _, err = run("accounts add --refresh-token-file " .. clih.q(token_file(dir, i .. ".txt", SENTINELS[i])), env)
        assert.are.equal(0, rc, err)
      end
      local text = clih.slurp(state .. "/used-tokens.jsonl")
      local records = jsonl(text)
      assert.are.equal(2, #records)
      for i, r in ipairs(records) do
        assert.are.equal("sha256:" .. sha256(SENTINELS[i]), r.fingerprint)
        assert.are.equal(sandbox.derived_email(SENTINELS[i]), r.email)
        assert.are.equal("ok", r.outcome)
        assert.truthy(r.at:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"), r.at)
      end
      for _, s in ipairs(SENTINELS) do assert.are.same({}, pieces(text, s)) end
    end)

    it("records nothing for an add the service refuses (400), which may be sent again", function()
      local state, dir = fresh("state"), fresh("tok")
      local env = { FLOWMUSIC_STATE_DIR = state }
      local file = token_file(dir, "fail.txt", "sandbox:fail:nope@x.com")
      for _ = 1, 2 do
        local rc, _, err = run("accounts add --refresh-token-file " .. clih.q(file), env)
        assert.are.equal(1, rc, err)
        assert.truthy(contains(err, "400"), err)
      end
      assert.are.equal(2, posts())
      assert.are.equal("", clih.slurp(state .. "/used-tokens.jsonl"))
    end)

    it("records an add whose outcome is unknown, and refuses that token next time", function()
      local state, dir = fresh("state"), fresh("tok")
      local env = { FLOWMUSIC_STATE_DIR = state }
      local file = token_file(dir, "t.txt", "sandbox:plus:unknown@x.com")
      sb:fault { fault = "reset", apply = 1, method = "POST", path = "/v1/flowmusic/accounts" }
      local rc, _, err = run("accounts add --refresh-token-file " .. clih.q(file), env)
      assert.are.equal(1, rc, err)
      assert.truthy(contains(err, "outcome unknown"), err)
      local records = jsonl(clih.slurp(state .. "/used-tokens.jsonl"))
      assert.are.equal(1, #records)
      assert.are.equal("unknown", records[1].outcome)
      rc, _, err = run("accounts add --refresh-token-file " .. clih.q(file), env)
      assert.are.equal(2, rc, err)
      assert.truthy(contains(err, "outcome is unknown"), err)
      assert.are.equal(1, posts())
    end)

    it("batch: a used token and a token two rows share are invalid rows; the others run", function()
      local state, dir = fresh("state"), fresh("batch")
      local env = { FLOWMUSIC_STATE_DIR = state }
      token_file(dir, "used.txt", "sandbox:plus:used@x.com")
      token_file(dir, "new.txt", "sandbox:plus:new@x.com")
      assert.are.equal(0, (run("accounts add --refresh-token-file " .. clih.q(dir .. "/used.txt"), env)))
      local f = clih.spit(dir .. "/b.csv", "op,email,refresh_token_file\nadd,,used.txt\nadd,,new.txt\n"
        .. "add,,new.txt\nget,used@x.com,\n")
      local before = posts()
      local rc, out, err = run("batch " .. clih.q(f) .. " --json --concurrency 1", env)
      assert.are.equal(2, rc, err)
      local rows = jsonl(out)
      assert.are.same({ "invalid", "ok", "invalid", "ok" }, { rows[1].status, rows[2].status, rows[3].status,
        rows[4].status })
      assert.truthy(contains(rows[1].message, "already used on"), rows[1].message)
      assert.truthy(contains(rows[1].message, "used@x.com"), rows[1].message)
      assert.truthy(contains(rows[3].message, "line 3"), rows[3].message)
      assert.are.equal(before + 1, posts())
      -- The same batch again: the token it sent is used now; --force sends both.
      rc, out = run("batch " .. clih.q(f) .. " --json --concurrency 1", env)
      assert.are.equal(2, rc)
      assert.are.equal("invalid", jsonl(out)[2].status)
      local forced_rc, _, forced_err = run("batch " .. clih.q(f) .. " --json --concurrency 1 --force", env)
      assert.are.equal(0, forced_rc, forced_err)
      assert.are.equal(before + 4, posts())
    end)

    it("plan and apply show a used token as a problem and send nothing for it", function()
      local state, dir = fresh("state"), fresh("fleet")
      local env = { FLOWMUSIC_STATE_DIR = state }
      token_file(dir, "a.txt", "sandbox:plus:a@fleet.test")
      local fleet = clih.spit(dir .. "/fleet.csv", "email,max_jobs,refresh_token_file\na@fleet.test,3,a.txt\n")
      local rc, out, err = run("apply " .. clih.q(fleet) .. " --yes", env)
      assert.are.equal(0, rc, err)
      assert.truthy(contains(out, "converged"), out)
      sb:api("DELETE", "/accounts/a@fleet.test")
      local before = posts()
      rc, out, err = run("plan " .. clih.q(fleet), env)
      assert.are.equal(1, rc, err)
      assert.truthy(contains(out, "! missing a@fleet.test"), out)
      assert.truthy(contains(out, "already used on"), out)
      rc = run("apply " .. clih.q(fleet) .. " --yes", env)
      assert.are.equal(1, rc)
      assert.are.equal(before, posts())
      rc, out, err = run("apply " .. clih.q(fleet) .. " --yes --force", env)
      assert.are.equal(0, rc, err)
      assert.truthy(contains(out, "converged"), out)
      assert.are.equal(before + 1, posts())
    end)

    it("from Lua, opt-in: a client with a store refuses a used token, and one a batch sends twice", function()
      local flowmusic = require "flowmusic"
      local used_tokens = require "flowmusic.used_tokens"
      local state = fresh("state")
      local store = assert(used_tokens.open { dir = state })
      local client = flowmusic.new { token = API_TOKEN, base_url = sb.base_url, used_tokens = store }
      local plain = flowmusic.new { token = API_TOKEN, base_url = sb.base_url }
      assert.truthy(client:add_account(SENTINELS[3]))
      local v, err = client:add_account(SENTINELS[3])
      assert.is_nil(v)
      assert.are.equal("refused", err.kind)
      assert.are.equal("token_used", err.reason)
      assert.truthy(contains(tostring(err), sandbox.derived_email(SENTINELS[3])), tostring(err))
      assert.are.same({}, pieces(tostring(err) .. tostring(store), SENTINELS[3]))
      assert.truthy(plain:add_account(SENTINELS[3])) -- without a store nothing is checked
      local res = client:batch { { "add_account", "sandbox:plus:twice@x.com" }, { "add_account", "sandbox:plus:twice@x.com" } }
      assert.is_true(res[1].ok)
      assert.are.equal("token_used", res[2].err.reason)
      assert.are.equal(3, posts())
      -- The same store, opened again, knows both; with force it refuses nothing.
      local again = assert(used_tokens.open { dir = state })
      assert.truthy(again:lookup(SENTINELS[3]))
      assert.truthy(again:lookup("sandbox:plus:twice@x.com"))
      assert.is_nil(assert(used_tokens.open { dir = state, force = true }):refusal(SENTINELS[3]))
      assert.has_error(function() used_tokens.open { dri = state } end)
      assert.has_error(function() flowmusic.new { token = API_TOKEN, used_tokens = {} } end)
      client:close()
      plain:close()
    end)

    it("a store line that is not a record is an error naming the file and line, sending nothing", function()
      local state, dir = fresh("state"), fresh("tok")
      clih.spit(state .. "/used-tokens.jsonl", '{"fingerprint":"sha256:00","at":"x","outcome":"ok"}\n')
      local rc, _, err = run("accounts add --refresh-token-file " .. clih.q(token_file(dir, "t.txt", "sandbox:plus:z@x.com")),
        { FLOWMUSIC_STATE_DIR = state })
      assert.are.equal(2, rc)
      assert.truthy(contains(err, "used-tokens.jsonl line 1"), err)
      assert.are.equal(0, total())
    end)
  end)

  describe("token files", function()
    it("a refresh token file group or others may read or write is refused before anything is sent", function()
      local dir = fresh("tok")
      for _, mode in ipairs { "644", "640", "604", "620", "602", "660" } do
        local file = token_file(dir, "t" .. mode .. ".txt", "sandbox:plus:m" .. mode .. "@x.com", mode)
        local rc, out, err = run("accounts add --refresh-token-file " .. clih.q(file))
        assert.are.equal(2, rc, mode)
        assert.are.equal("", out)
        assert.truthy(contains(err, file), err)
        assert.truthy(contains(err, "chmod 600"), err)
        assert.truthy(contains(err, "0" .. mode), err)
      end
      assert.are.equal(0, total())
      for _, mode in ipairs { "600", "400", "700", "611" } do
        local file = token_file(dir, "ok" .. mode .. ".txt", "sandbox:plus:ok" .. mode .. "@x.com", mode)
        local rc, _, err = run("accounts add --refresh-token-file " .. clih.q(file))
        assert.are.equal(0, rc, mode .. ": " .. err)
      end
      local loose = token_file(dir, "loose.txt", "sandbox:plus:loose@x.com", "644")
      assert.are.equal(0, (run("accounts add --allow-insecure-token-file --refresh-token-file " .. clih.q(loose))))
    end)

    it("an API token file too, and in batch rows and fleet files", function()
      local dir = fresh("tok")
      local api = token_file(dir, "api.txt", API_TOKEN, "640")
      local rc, _, err = run("accounts list --token-file " .. clih.q(api), { USEAPI_TOKEN = false })
      assert.are.equal(2, rc)
      assert.truthy(contains(err, "chmod 600"), err)
      assert.are.equal(0, total())
      assert(os.execute("chmod 600 " .. clih.q(api)))
      rc, _, err = run("accounts list --token-file " .. clih.q(api), { USEAPI_TOKEN = false })
      assert.are.equal(0, rc, err)
      token_file(dir, "row.txt", "sandbox:plus:row@x.com", "644")
      local b = clih.spit(dir .. "/b.csv", "op,email,refresh_token_file\nadd,,row.txt\n")
      local out
      rc, out = run("batch " .. clih.q(b) .. " --json")
      assert.are.equal(2, rc)
      assert.truthy(contains(jsonl(out)[1].message, "chmod 600"))
      local fleet = clih.spit(dir .. "/fleet.csv", "email,max_jobs,refresh_token_file\nrow@x.com,,row.txt\n")
      local before = total()
      rc, _, err = run("apply " .. clih.q(fleet) .. " --yes")
      assert.are.equal(2, rc)
      assert.truthy(contains(err, "chmod 600") and contains(err, "nothing was sent"), err)
      assert.are.equal(0, posts())
      assert.are.equal(before + 2, total()) -- the plan's GETs only
    end)
  end)

  describe("one apply at a time", function()
    local dir, fleet, env
    before_each(function()
      dir = fresh("lock")
      env = { FLOWMUSIC_STATE_DIR = dir .. "/state" }
      token_file(dir, "l.txt", "sandbox:plus:lock@x.com")
      fleet = clih.spit(dir .. "/fleet.csv", "email,max_jobs,refresh_token_file\nlock@x.com,2,l.txt\n")
    end)

    -- Start an apply whose first GET /accounts takes ms, and wait until it holds the lock.
    local function slow_apply(ms)
      sb:fault { fault = "latency", ms = ms, method = "GET", path = "/v1/flowmusic/accounts" }
      local h = runner:spawn("apply " .. clih.q(fleet) .. " --yes", { env = env })
      local socket = require "socket"
      local t0 = socket.gettime()
      while clih.slurp(dir .. "/state/apply.lock"):match("%d+") ~= tostring(h.pid) do
        assert(socket.gettime() - t0 < 20, "the first apply never took the lock: " .. h.err())
        socket.sleep(0.02)
      end
      return h
    end

    it("a second apply refuses at once, naming the first one's pid, and sends nothing #once", function()
      local first = slow_apply(1500)
      local rc, out, err = run("apply " .. clih.q(fleet) .. " --yes", env)
      assert.are.equal(1, rc, err)
      assert.truthy(contains(err, "pid " .. first.pid), err)
      assert.truthy(contains(err, "--lock-timeout"), err)
      assert.falsy(contains(out, "Plan:"), out)
      assert.are.equal(0, first.wait(30), first.err())
      assert.are.equal(1, posts())
      -- A batch that writes takes the same lock; one that only reads does not.
      local again = slow_apply(1500)
      local b = clih.spit(dir .. "/b.csv", "op,email,max_jobs\nset-max-jobs,lock@x.com,3\n")
      rc, out, err = run("batch " .. clih.q(b), env)
      assert.are.equal("", out)
      assert.are.equal(1, rc, err)
      assert.truthy(contains(err, "pid " .. again.pid), err)
      local r = clih.spit(dir .. "/r.csv", "op,email\nget,lock@x.com\n")
      rc, out, err = run("batch " .. clih.q(r), env)
      assert.truthy(contains(out, "lock@x.com"), out)
      assert.are.equal(0, rc, err)
      assert.are.equal(0, again.wait(30), again.err())
    end)

    it("with --lock-timeout the second one waits, then runs #once", function()
      local first = slow_apply(1000)
      local rc, out, err = run("apply " .. clih.q(fleet) .. " --yes --lock-timeout 30", env)
      assert.are.equal(0, first.wait(30), first.err())
      assert.are.equal(0, rc, err)
      assert.truthy(contains(out, "converged"), out)
      assert.are.equal(1, posts()) -- the second one found the account there
      first = slow_apply(1500)
      rc, out, err = run("apply " .. clih.q(fleet) .. " --yes --lock-timeout 0.2", env)
      assert.falsy(contains(out, "converged"), out)
      assert.are.equal(1, rc)
      assert.truthy(contains(err, "after --lock-timeout 0.2"), err)
      assert.are.equal(0, first.wait(30))
      assert.are.equal(2, (run("apply x --lock-timeout soon", env)))
    end)

    it("a lock left by a killed process is taken over #once", function()
      local first = slow_apply(30000)
      first.signal("KILL")
      first.wait(10)
      assert.truthy(clih.slurp(dir .. "/state/apply.lock"):find(tostring(first.pid), 1, true))
      local rc, out, err = run("apply " .. clih.q(fleet) .. " --yes", env)
      assert.are.equal(0, rc, err)
      assert.truthy(contains(out, "converged"), out)
      sb:clear_faults()
    end)
  end)

  describe("profiles", function()
    -- A config dir holding text as its config file (mode 0600 unless said).
    local function config(text, mode)
      local d = fresh("cfg")
      assert(os.execute("mkdir -p " .. clih.q(d .. "/flowmusic")))
      clih.spit(d .. "/flowmusic/config", text)
      if mode then assert(os.execute("chmod " .. mode .. " " .. clih.q(d .. "/flowmusic/config"))) end
      return d
    end

    -- config show --json as setting -> { value, source }.
    local function show(env, flags)
      local e = { USEAPI_TOKEN = false, FLOWMUSIC_BASE_URL = false }
      for k, v in pairs(env) do e[k] = v end
      local rc, out, err = run("config show --json " .. (flags or ""), e)
      assert.are.equal(0, rc, err)
      local t = {}
      local function v(x) if x ~= cjson.null then return x end end
      for _, r in ipairs(jsonl(out)) do t[r.setting] = { value = v(r.value), source = v(r.source) } end
      return t, out
    end

    it("flag, then environment, then profile, then default, for every setting", function()
      local dir = fresh("p")
      local tok = token_file(dir, "api.txt", API_TOKEN)
      local pem = clih.spit(dir .. "/ca.pem", "")
      local cfg = config(table.concat({ "[b]", "base_url = http://127.0.0.1:9/v1/flowmusic", "token_file = " .. tok,
        "cacert = " .. pem, "capath = " .. dir, "proxy = http://127.0.0.1:8", "min_credits = 70",
        "state_dir = " .. dir .. "/state-b", "" }, "\n"))
      local base = { XDG_CONFIG_HOME = cfg, FLOWMUSIC_PROFILE = "b", FLOWMUSIC_STATE_DIR = false }
      -- profile only
      local t = show(base)
      assert.are.same({ value = "b", source = "$FLOWMUSIC_PROFILE" }, t.profile)
      for key, want in pairs { base_url = "http://127.0.0.1:9/v1/flowmusic", cacert = pem, capath = dir,
        proxy = "http://127.0.0.1:8", min_credits = 70, state_dir = dir .. "/state-b" } do
        assert.are.same({ value = want, source = "profile b" }, t[key], key)
      end
      assert.are.equal("profile b", t.token.source)
      assert.truthy(contains(t.token.value, tok) and contains(t.token.value, "(" .. #API_TOKEN .. " bytes)"))
      -- the environment over the profile
      local env = {}
      for k, v in pairs(base) do env[k] = v end
      for k, v in pairs { FLOWMUSIC_BASE_URL = "http://127.0.0.1:7/v1/flowmusic", USEAPI_TOKEN = "user:1-envtoken",
        SSL_CERT_FILE = pem, SSL_CERT_DIR = "/tmp", https_proxy = "http://127.0.0.1:6", http_proxy = "http://127.0.0.1:6",
        FLOWMUSIC_MIN_CREDITS = "60", FLOWMUSIC_STATE_DIR = dir .. "/state-env" } do env[k] = v end
      t = show(env)
      assert.are.same({ value = "http://127.0.0.1:7/v1/flowmusic", source = "$FLOWMUSIC_BASE_URL" }, t.base_url)
      assert.are.same({ value = "(15 bytes)", source = "$USEAPI_TOKEN" }, t.token) -- user:1-envtoken
      assert.are.same({ value = pem, source = "$SSL_CERT_FILE" }, t.cacert)
      assert.are.same({ value = "/tmp", source = "$SSL_CERT_DIR" }, t.capath)
      assert.are.equal("http://127.0.0.1:6", t.proxy.value)
      assert.truthy(contains(t.proxy.source, "environment"))
      assert.are.same({ value = 60, source = "$FLOWMUSIC_MIN_CREDITS" }, t.min_credits)
      assert.are.same({ value = dir .. "/state-env", source = "$FLOWMUSIC_STATE_DIR" }, t.state_dir)
      -- flags over both
      local flag_tok = token_file(dir, "flag.txt", "user:2-flagtoken")
      t = show(env, "--base-url http://127.0.0.1:5/v1/flowmusic --token-file " .. clih.q(flag_tok)
        .. " --cacert " .. clih.q(pem) .. " --proxy http://127.0.0.1:4 --min-credits 50 --state-dir " .. clih.q(dir .. "/s"))
      assert.are.same({ value = "http://127.0.0.1:5/v1/flowmusic", source = "--base-url" }, t.base_url)
      assert.are.equal("--token-file", t.token.source)
      assert.are.same({ value = pem, source = "--cacert/--capath" }, t.cacert)
      assert.are.same({ source = "--cacert/--capath" }, t.capath)
      assert.are.same({ value = "http://127.0.0.1:4", source = "--proxy" }, t.proxy)
      assert.are.same({ value = 50, source = "--min-credits" }, t.min_credits)
      assert.are.same({ value = dir .. "/s", source = "--state-dir" }, t.state_dir)
      -- --profile over $FLOWMUSIC_PROFILE; the defaults without either
      cfg = config("[b]\nmin_credits = 1\n[c]\nmin_credits = 2\n")
      t = show({ XDG_CONFIG_HOME = cfg, FLOWMUSIC_PROFILE = "b" }, "--profile c")
      assert.are.same({ value = "c", source = "--profile" }, t.profile)
      assert.are.equal(2, t.min_credits.value)
      t = show({ XDG_CONFIG_HOME = cfg })
      assert.are.same({ value = "(none)" }, t.profile)
      assert.are.same({ value = "https://api.useapi.net/v1/flowmusic", source = "default" }, t.base_url)
      assert.are.same({ source = "default" }, t.min_credits)
      assert.are.equal(cfg .. "/flowmusic/config", t.config.value)
    end)

    it("a profile's settings are the ones commands use", function()
      local dir = fresh("p")
      local tok = token_file(dir, "api.txt", API_TOKEN)
      sb:seed(2)
      local cfg = config(("[default]\nbase_url = %s\ntoken_file = %s\nmin_credits = 999999999\nstate_dir = %s\n")
        :format(sb.base_url, "api.txt", "state"))
      assert(os.execute("cp " .. clih.q(tok) .. " " .. clih.q(cfg .. "/flowmusic/api.txt")))
      local env = { XDG_CONFIG_HOME = cfg, USEAPI_TOKEN = false, FLOWMUSIC_BASE_URL = false, FLOWMUSIC_STATE_DIR = false }
      local rc, out, err = run("status --json", env)
      assert.are.equal(0, rc, err) -- low_credits is not in the default --fail-on
      for _, r in ipairs(jsonl(out)) do assert.are.equal("low_credits", r.state) end
      rc, out = run("status --json --min-credits 0", env)
      assert.are.equal(0, rc)
      for _, r in ipairs(jsonl(out)) do assert.are.equal("ok", r.state) end
      local t = token_file(dir, "r.txt", "sandbox:plus:prof@x.com")
      rc, out, err = run("accounts add --refresh-token-file " .. clih.q(t), env)
      assert.truthy(contains(out, "added"), out)
      assert.are.equal(0, rc, err)
      assert.are.equal(1, #jsonl(clih.slurp(cfg .. "/flowmusic/state/used-tokens.jsonl")))
    end)

    it("an unknown profile or key, or a malformed line, is a usage error naming it", function()
      local cases = {
        { "[b]\nmin_credits = 1\n", "--profile nope", "unknown profile 'nope'" },
        { "[b]\nmin_credits = 1\n", "--profile nope", "b" },
        { "[b]\nbase-url = x\n", "", "line 2" },
        { "[b]\nbaseurl = x\n", "", "unknown key 'baseurl'" },
        { "min_credits = 1\n[b]\n", "", "before any [PROFILE]" },
        { "[b]\nno equals sign\n", "", "not 'key = value'" },
        { "[b]\n[b]\n", "", "profile 'b' again" },
        { "[b]\nproxy = a\nproxy = b\n", "", "proxy again" },
        { "[b c]\n", "", "line 1" },
        { "[b]\nmin_credits = lots\n", "--profile b", "min_credits" },
      }
      for _, c in ipairs(cases) do
        local cfg = config(c[1])
        local rc, _, err = run("status " .. c[2], { XDG_CONFIG_HOME = cfg })
        assert.are.equal(2, rc, c[1])
        assert.truthy(contains(err, c[3]), c[1] .. " -> " .. err)
      end
      local rc, _, err = run("status --profile nope", { XDG_CONFIG_HOME = fresh("nocfg") })
      assert.are.equal(2, rc)
      assert.truthy(contains(err, "unknown profile 'nope'"), err)
      assert.are.equal(0, total())
    end)

    it("a config file others may read is refused while it names a token file", function()
      local dir = fresh("p")
      local tok = token_file(dir, "api.txt", API_TOKEN)
      local cfg = config("[default]\ntoken_file = " .. tok .. "\nbase_url = " .. sb.base_url .. "\n", "644")
      local env = { XDG_CONFIG_HOME = cfg, USEAPI_TOKEN = false, FLOWMUSIC_BASE_URL = false }
      local rc, _, err = run("accounts list", env)
      assert.are.equal(2, rc)
      assert.truthy(contains(err, "config file") and contains(err, "chmod 600"), err)
      rc = run("accounts list --allow-insecure-token-file", env)
      assert.are.equal(0, rc)
      local plain = config("[default]\nbase_url = " .. sb.base_url .. "\n", "644")
      rc, _, err = run("accounts list", { XDG_CONFIG_HOME = plain })
      assert.are.equal(0, rc, err)
    end)

    it("config show holds no piece of a token, and hides a proxy's password", function()
      local dir = fresh("p")
      local tok = token_file(dir, "api.txt", SENTINELS[1])
      local cfg = config("[default]\ntoken_file = " .. tok .. "\nproxy = http://me:" .. SENTINELS[2] .. "@127.0.0.1:3/\n")
      for _, env in ipairs { { XDG_CONFIG_HOME = cfg }, { XDG_CONFIG_HOME = cfg, USEAPI_TOKEN = SENTINELS[3] } } do
        for _, mode in ipairs { "", "--json", "--csv" } do
          local rc, out, err = run("config show " .. mode, env)
          assert.are.equal(0, rc, err)
          assert.truthy(contains(out, "***@127.0.0.1:3"), out)
          for _, s in ipairs(SENTINELS) do assert.are.same({}, pieces(out .. err, s)) end
        end
      end
    end)
  end)
end)
