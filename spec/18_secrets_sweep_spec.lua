-- The secrets sweep: sentinel API and refresh tokens go through every error kind, tostring,
-- the CLI in every output mode with --verbose, the batch report, the sandbox directory and its
-- logs; no 8-byte piece of either sentinel may appear anywhere.
local h = require "spec.helpers.client"
local sandbox = require "spec.helpers.sandbox"
local cli = require "spec.helpers.cli"
local core = require "flowmusic.core"

local flowmusic = h.flowmusic
local API = "user:7777-APISENTINEL0123456789abcdef"
local REFRESH = "REFRESHSENTINEL-fedcba9876543210zyxw"
local ACCOUNTS = "/v1/flowmusic/accounts"

local pieces_in = h.secret_pieces

local function assert_clean(s, where)
  s = tostring(s)
  assert.same({}, pieces_in(s, API), where .. " shows a piece of the API token")
  assert.same({}, pieces_in(s, REFRESH), where .. " shows a piece of the refresh token")
end

-- Every string reachable from v (tables, their keys, error values).
local function strings_of(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then out[#out + 1] = v
  elseif type(v) == "number" or type(v) == "boolean" then out[#out + 1] = tostring(v)
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do strings_of(k, out, seen) strings_of(x, out, seen) end
  end
  return out
end

describe("secrets sweep", function()
  local sb, run, dir
  setup(function()
    sb = sandbox.start { token = API }
    run = cli.new { env = { USEAPI_TOKEN = API, FLOWMUSIC_BASE_URL = sb.base_url } }
    dir = run.tmp
    cli.spit(dir .. "/refresh.txt", REFRESH .. "\n")
    cli.spit(dir .. "/batch.csv", "op,email,max_jobs,refresh_token_file\nadd,,3,refresh.txt\n"
      .. "get,nobody@x.com,,\nset-max-jobs,nobody@x.com,4,\n")
  end)
  teardown(function()
    run:close()
    sb:stop()
  end)

  it("every error kind and its tostring", function()
    sb:reset()
    local c = h.client(sb, { max_response_bytes = 64 * 1024 })
    local errs = {}
    local function keep(_, e) errs[#errs + 1] = e end
    keep(c:get_account("nobody@x.com"))                                          -- http
    sb:fault { fault = "echo_secret", method = "POST", path = ACCOUNTS }
    keep(c:add_account(REFRESH))                                                 -- http, echoed
    sb:fault { fault = "echo_secret", secret = "refresh", offset = 290, method = "POST", path = ACCOUNTS }
    keep(c:add_account(REFRESH))
    sb:fault { fault = "latency", ms = 1500, method = "POST", path = ACCOUNTS }
    keep(c:add_account(REFRESH, { timeout = 0.3 }))                              -- timeout
    sb:fault { fault = "reset", method = "POST", path = ACCOUNTS }
    keep(c:add_account(REFRESH))                                                 -- network
    sb:fault { fault = "invalid_json", method = "POST", path = ACCOUNTS }
    keep(c:add_account(REFRESH))                                                 -- bad_response
    sb:fault { fault = "huge", mb = 1, method = "POST", path = ACCOUNTS }
    keep(c:add_account(REFRESH))                                                 -- too_large
    sb:fault { fault = "redirect", method = "POST", path = ACCOUNTS }
    keep(c:add_account(REFRESH))                                                 -- redirect
    local t0 = core.now()
    sb:fault { fault = "latency", ms = 2000, method = "POST", path = ACCOUNTS, count = 0 }
    local rs = c:batch({ { "add_account", REFRESH }, { "add_account", REFRESH } }, { concurrency = 1,
      grace = 0.1, cancel = function() return core.now() - t0 > 0.3 and "stop" or nil end })
    for _, r in ipairs(rs) do errs[#errs + 1] = r.err end                      -- cancelled
    sb:clear_faults()
    local kinds = {}
    for _, e in ipairs(errs) do
      assert.is_true(flowmusic.errors.is(e))
      kinds[e.kind] = true
      assert_clean(tostring(e), "tostring(" .. e.kind .. ")")
      for _, s in ipairs(strings_of(e)) do assert_clean(s, "a field of a " .. e.kind .. " error") end
    end
    for _, k in ipairs { "http", "timeout", "network", "bad_response", "too_large", "redirect", "cancelled" } do
      assert.is_true(kinds[k], "no " .. k .. " error was made")
    end
    assert_clean(tostring(c), "tostring(client)")
    c:close()
  end)

  it("the CLI in every output mode with --verbose, the batch report, and errors that echo secrets", function()
    sb:reset()
    local all = {}
    for _, mode in ipairs { "", " --json", " --csv" } do
      for _, fault in ipairs { false, "echo_secret", "echo_secret secret=refresh offset=292" } do
        if fault then sb:fault { fault = fault, method = "POST", path = ACCOUNTS, count = 0 } end
        for _, cmd in ipairs {
          "accounts add --refresh-token-file " .. cli.q(dir .. "/refresh.txt") .. " --max-jobs 2 --verbose" .. mode,
          "accounts list --verbose" .. mode,
          "accounts get nobody@x.com --verbose" .. mode,
          "batch " .. cli.q(dir .. "/batch.csv") .. " --verbose" .. mode,
          "batch " .. cli.q(dir .. "/batch.csv") .. " --dry-run --verbose" .. mode,
        } do
          local code, out, err = run:run(cmd)
          all[#all + 1] = cmd .. " -> " .. tostring(code)
          assert_clean(out, "stdout of flowmusic " .. cmd)
          assert_clean(err, "stderr of flowmusic " .. cmd)
        end
        sb:clear_faults()
      end
    end
    assert.is_true(#all >= 45)
  end)

  it("the used-token store, and config show", function()
    sb:reset()
    local state = dir .. "/state-sweep"
    local with = { env = { FLOWMUSIC_STATE_DIR = state } }
    local add = "accounts add --refresh-token-file " .. cli.q(dir .. "/refresh.txt")
    assert.equal(0, (run:run(add, with)))
    -- an add whose answer never comes is recorded too (outcome unknown)
    sb:fault { fault = "reset", apply = 1, method = "POST", path = ACCOUNTS }
    assert.equal(1, (run:run(add .. " --force", with)))
    local code, out, err = run:run(add, with)
    assert.equal(2, code)
    assert_clean(out .. err, "the refusal of a used token")
    local p = io.popen("cat " .. cli.q(state) .. "/used-tokens.jsonl")
    local store = p:read("*a")
    p:close()
    assert.truthy(store:find('"outcome":"ok"', 1, true), store)
    assert.truthy(store:find('"outcome":"unknown"', 1, true), store)
    assert.truthy(store:find("sha256:" .. core.sha256(REFRESH), 1, true), store)
    assert_clean(store, "the used-token store")
    -- config show, with the API token from a profile's file and from the environment
    cli.spit(dir .. "/api.txt", API .. "\n")
    local cfg = dir .. "/cfg-sweep"
    os.execute("mkdir -p " .. cli.q(cfg .. "/flowmusic"))
    cli.spit(cfg .. "/flowmusic/config", "[default]\ntoken_file = " .. dir .. "/api.txt\n"
      .. "proxy = http://user:" .. REFRESH .. "@127.0.0.1:9/\n")
    for _, env in ipairs { { XDG_CONFIG_HOME = cfg, USEAPI_TOKEN = false }, { XDG_CONFIG_HOME = cfg } } do
      for _, mode in ipairs { "", " --json", " --csv" } do
        code, out, err = run:run("config show" .. mode, { env = env })
        assert.equal(0, code, err)
        assert.truthy(out:find("token", 1, true), out)
        assert_clean(out .. err, "config show" .. mode)
      end
    end
  end)

  it("the sandbox directory and its logs", function()
    local hits = io.popen("cat " .. cli.q(sb.dir) .. "/* 2>/dev/null"):read("*a")
    assert.is_true(#hits > 0, "the sandbox directory is empty")
    assert_clean(hits, "the sandbox directory")
  end)
end)
