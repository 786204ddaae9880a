-- Defects of the command line found by a demanding user (issue 13), each against the real
-- sandbox: empty JSON Lines files, an add row whose email isn't the token's account, full
-- precision in --csv/--json, RFC 4180 multi-line fields, clean error messages (no path
-- twice, no source paths), and the "outcome unknown" note said once.
local fixture = require "spec.helpers.fixture"
local cli = require "spec.helpers.cli"
local cjson = require "cjson"

local API_TOKEN = "user:4444-CliDefectsToken"

local function contains(hay, needle) return hay:find(needle, 1, true) ~= nil end
local function count(hay, needle)
  local n, i = 0, 1
  while true do
    local s, e = hay:find(needle, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

local function jsonl(s)
  local t = {}
  for _, l in ipairs(cli.lines(s)) do t[#t + 1] = cjson.decode(l) end
  return t
end

describe("flowmusic CLI defects (issue 13)", function()
  local sb, c, dir

  fixture.sandbox({ token = API_TOKEN, cli = true }, function(s, runner) sb, c, dir = s, runner, runner.tmp end)

  it("an empty JSON Lines file is an input error (exit 2), like an empty CSV", function()
    for name, text in pairs({ ["empty.jsonl"] = "", ["comments.jsonl"] = "# nothing\n\n  \n",
                              ["empty.csv"] = "\n", ["header-only.csv"] = "op,email\n" }) do
      local f = cli.spit(dir .. "/" .. name, text)
      local code, out, err = c:run("batch " .. cli.q(f) .. " --json")
      assert.equal(2, code, name)
      assert.equal("", out, name)
      assert.truthy(contains(err, "empty"), name .. ": " .. err)
    end
    local code, _, err = c:run("batch - --format jsonl", { stdin = "" })
    assert.equal(2, code)
    assert.truthy(contains(err, "empty"))
    assert.equal(0, sb:requests().total)
  end)

  it("an add row whose email is not the token's account fails and names the account added", function()
    cli.spit(dir .. "/bob.txt", "sandbox:plus:bob@example.com\n")
    local f = cli.spit(dir .. "/mismatch.csv",
      "op,email,refresh_token_file\nadd,alice@example.com,bob.txt\nadd,BOB@example.com,bob.txt\n")
    -- (--force: both rows send the same token on purpose; spec 63 tests the refusal)
    local code, out = c:run("batch " .. cli.q(f) .. " --json --concurrency 1 --force")
    assert.equal(1, code)
    local rows = jsonl(out)
    assert.equal("failed", rows[1].status)
    assert.truthy(contains(rows[1].message, "belongs to bob@example.com, not alice@example.com"), rows[1].message)
    assert.truthy(contains(rows[1].message, "added"), rows[1].message)
    assert.equal("ok", rows[2].status) -- the same account, another case
  end)

  it("--csv and --json keep full precision", function()
    local email = sb:seed(1)[1]
    local _, doc = sb:api("GET", "/accounts/usage?email=" .. email:gsub("@", "%%40"))
    local want = doc.summary.total_charged_credits
    assert.are_not.equal(want, math.floor(want)) -- a fraction, or the spec proves nothing
    local code, out = c:run("usage " .. email .. " --csv")
    assert.equal(0, code)
    local l = cli.lines(out)
    local cols = {}
    for k in l[1]:gmatch("[^,]+") do cols[#cols + 1] = k end
    local fields = {}
    for v in (l[2] .. ","):gmatch("([^,]*),") do fields[#fields + 1] = v end
    local by = {}
    for i, k in ipairs(cols) do by[k] = fields[i] end
    assert.equal("total", by.section)
    assert.equal(want, tonumber(by.charged_credits))
    code, out = c:run("usage " .. email .. " --json")
    assert.equal(0, code)
    assert.equal(want, jsonl(out)[1].charged_credits)
    for _, r in ipairs(jsonl(out)) do
      if r.section == "type" and doc.summary.by_type_credits[r.key] then
        assert.equal(doc.summary.by_type_credits[r.key], r.credits)
      end
    end
  end)

  it("RFC 4180 quoted fields may span lines; later rows keep their line numbers", function()
    sb:seed(2)
    local f = cli.spit(dir .. "/multi.csv", table.concat({
      "op,email,max_jobs",                       -- 1
      'set-max-jobs,seed-01@sandbox.test,"4',    -- 2 (a field over lines 2-3)
      '",',                                      -- 3 (one more field: 4 columns -> invalid)
      'set-max-jobs,seed-01@sandbox.test,"5',    -- 4
      '"',                                       -- 5: ok, max_jobs "5\n"
      '"get",seed-02@sandbox.test,',             -- 6: ok
      '"get","line one',                         -- 7: email over lines 7-8 (control character)
      'line two",',                              -- 8
      "get,nobody@example.com,",                 -- 9: failed 404
      'get,"unterminated,',                      -- 10: runs to the end: invalid
      "get,seed-02@sandbox.test,",               -- 11: ok
    }, "\r\n") .. "\r\n")
    local code, out = c:run("batch " .. cli.q(f) .. " --json --concurrency 1")
    assert.equal(2, code)
    local rows = jsonl(out)
    local want = { { 2, "invalid", "expected 3 fields, got 4" }, { 4, "ok" }, { 6, "ok" },
      { 7, "invalid", "control characters" }, { 9, "failed" }, { 10, "invalid", "unterminated" }, { 11, "ok" } }
    assert.equal(#want, #rows)
    for i, w in ipairs(want) do
      assert.equal(w[1], rows[i].line, i)
      assert.equal(w[2], rows[i].status, i .. ": " .. tostring(rows[i].message))
      if w[3] then assert.truthy(contains(rows[i].message, w[3]), rows[i].message) end
      if w[2] == "invalid" then assert.truthy(rows[i].message:find("^line " .. w[1] .. ": "), rows[i].message) end
    end
    assert.equal(5, rows[2].max_jobs)
  end)

  it("names a missing or unusable file once, with the reason", function()
    local missing = dir .. "/nope/x.txt"
    local code, _, err = c:run("accounts add --refresh-token-file " .. cli.q(missing))
    assert.equal(2, code)
    assert.equal(1, count(err, missing), err)
    assert.truthy(contains(err, "cannot read refresh token file '" .. missing .. "': no such file"), err)
    code, _, err = c:run("batch " .. cli.q(dir))
    assert.equal(2, code)
    assert.equal(1, count(err, dir), err)
    assert.truthy(contains(err, "is a directory"), err)
    code, _, err = c:run("accounts list --token-file " .. cli.q(missing))
    assert.equal(2, code)
    assert.equal(1, count(err, missing), err)
  end)

  it("an internal error prints one line without source paths or a stack trace", function()
    local script = [[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.loaded["flowmusic.cli.sandbox"] = { name = "sandbox",
        configure = function() end,
        run = function() local t = nil; return t.field end }
      os.exit(require("flowmusic.cli").main({ "sandbox" }))
    ]]
    local p = io.popen(cli.LUA .. " -e " .. cli.q(script) .. " 2>&1; echo \"rc=$?\"")
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("^flowmusic sandbox: internal error: attempt to index"), out)
    assert.falsy(out:find("%.lua:%d"), out)
    assert.falsy(contains(out, "traceback"), out)
    assert.truthy(contains(out, "rc=1"), out)
  end)

  it("says 'outcome unknown' once", function()
    cli.spit(dir .. "/carol.txt", "sandbox:plus:carol@example.com\n")
    sb:fault { fault = "reset", apply = 1, method = "POST", path = "/v1/flowmusic/accounts", count = 1 }
    local code, _, err = c:run("accounts add --refresh-token-file " .. cli.q(dir .. "/carol.txt"))
    assert.equal(1, code)
    assert.equal(1, count(err, "outcome unknown"), err)
    sb:fault { fault = "reset", apply = 1, method = "POST", path = "/v1/flowmusic/accounts", count = 1 }
    local f = cli.spit(dir .. "/one.csv", "op,refresh_token_file\nadd,carol.txt\n")
    local out
    code, out = c:run("batch " .. cli.q(f) .. " --json")
    assert.equal(1, code)
    assert.equal(1, count(out, "outcome unknown"), out)
  end)
end)
