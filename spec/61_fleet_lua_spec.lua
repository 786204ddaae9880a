-- The Lua side of declarative fleets (flowmusic.fleet.plan, flowmusic.fleet.fleetfile):
-- pure plan computation, misuse, saved plans without tokens, and make/check/apply/converge
-- against a private sandbox with tokens given in memory.
local sandbox = require "spec.helpers.sandbox"
local helper = require "spec.helpers.client"
local clih = require "spec.helpers.cli"
local fleet = require "flowmusic.fleet.plan"
local fleetfile = require "flowmusic.fleet.fleetfile"

local TOKEN_A = "MemTokenQ8w3Er5Ty7Ui9Op"  -- in-memory tokens (non-sandbox: derived emails)
local BROKEN = "Refresh token is invalid or expired; re-add the account"

-- True when any string reachable from v (keys, values, metatables) contains needle.
local function reachable(v, needle, seen)
  seen = seen or {}
  if type(v) == "string" then return v:find(needle, 1, true) ~= nil end
  if type(v) ~= "table" or seen[v] then return false end
  seen[v] = true
  for k, x in pairs(v) do
    if reachable(k, needle, seen) or reachable(x, needle, seen) then return true end
  end
  return reachable(getmetatable(v), needle, seen)
end

local function actions(p)
  local t = {}
  for i, r in ipairs(p.rows) do t[i] = r.action .. " " .. r.email end
  return t
end

describe("flowmusic.fleet.plan", function()
  local tmp
  setup(function()
    local p = io.popen("mktemp -d")
    tmp = p:read("*l")
    p:close()
  end)
  teardown(function() os.execute("rm -rf " .. clih.q(tmp)) end)

  local LIVE = {
    ["ok@x.test"] = { email = "ok@x.test", maxJobs = 4 },
    ["jobs@x.test"] = { email = "jobs@x.test", maxJobs = 4 },
    ["broken@x.test"] = { email = "broken@x.test", maxJobs = 2, error = BROKEN },
    ["stuck@x.test"] = { email = "stuck@x.test", maxJobs = 2, error = BROKEN },
    ["old@x.test"] = { email = "old@x.test", maxJobs = 12 },
  }

  it("computes rows in wanted order, deletes last, from a live table alone", function()
    local p = fleet.compute(LIVE, {
      { email = "ok@x.test" },
      { email = "jobs@x.test", max_jobs = 8 },
      { email = "new@x.test", max_jobs = 2, refresh_token = "sandbox:plus:new@x.test" },
      { email = "broken@x.test", refresh_token = "sandbox:plus:broken@x.test" },
      { email = "stuck@x.test", max_jobs = 3 },
      { email = "gone@x.test" },
    }, { prune = true })
    assert.are.same({ "ok ok@x.test", "set-max-jobs jobs@x.test", "add new@x.test", "reauth broken@x.test",
      "set-max-jobs stuck@x.test", "needs-reauth stuck@x.test", "missing gone@x.test", "delete old@x.test" },
      actions(p))
    local c = fleet.counts(p)
    assert.are.equal(5, c.writes)
    assert.are.equal(2, c.problems)
    assert.are.same({ ["jobs@x.test"] = { exists = true, max_jobs = 4, error = false },
      ["new@x.test"] = { exists = false, error = false },
      ["broken@x.test"] = { exists = true, max_jobs = 2, error = true },
      ["stuck@x.test"] = { exists = true, max_jobs = 2, error = true },
      ["old@x.test"] = { exists = true, max_jobs = 12, error = false } }, p.fingerprint)
    -- Tokens given in memory are nowhere in the plan, and it can't be saved.
    assert.is_false(reachable(p, "sandbox:plus"))
    local text, err = fleet.encode(p)
    assert.is_nil(text)
    assert.truthy(err:find("new@x.test", 1, true))
  end)

  it("raises on misuse: duplicates, bad emails, bad max_jobs, unknown keys", function()
    assert.has_error(function() fleet.compute(LIVE, { { email = "a@x.test" }, { email = "a@x.test" } }) end,
      "flowmusic.fleet: wanted entry 2: duplicate email a@x.test (also entry 1)")
    assert.has_error(function() fleet.compute(LIVE, { { email = 3 } }) end)
    assert.has_error(function() fleet.compute(LIVE, { { email = "a@x.test", max_jobs = 17 } }) end)
    assert.has_error(function() fleet.compute(LIVE, { { email = "a@x.test", maxjobs = 4 } }) end)
    assert.has_error(function() fleet.compute(LIVE, { { email = "a@x.test", refresh_token = "short" } }) end)
    assert.has_error(function() fleet.compute(nil, {}) end)
  end)

  it("turns an unreadable token file into a problem, and reads a file only when needed", function()
    local p = fleet.compute(LIVE, {
      { email = "new@x.test", refresh_token_file = tmp .. "/none.txt" },
      { email = "broken@x.test", refresh_token_file = tmp .. "/none.txt" },
      { email = "ok@x.test", refresh_token_file = tmp .. "/none.txt" },
    })
    assert.are.same({ "missing new@x.test", "needs-reauth broken@x.test", "ok ok@x.test" }, actions(p))
    assert.truthy(p.rows[1].message:find("cannot read refresh token file", 1, true), p.rows[1].message)
  end)

  it("saves a plan with token file paths only, and loads it back", function()
    local file = clih.spit(tmp .. "/new.txt", "sandbox:plus:new@x.test\n")
    os.execute("chmod 600 " .. clih.q(file))
    local p = fleet.compute(LIVE, {
      { email = "jobs@x.test", max_jobs = 8, refresh_token_file = file },
      { email = "new@x.test", max_jobs = 2, refresh_token_file = file },
    })
    p.base_url = "http://127.0.0.1:9/v1/flowmusic"
    local text = assert(fleet.encode(p))
    assert.is_nil(text:find("sandbox:plus", 1, true))
    assert.truthy(fleet.is_saved(text))
    assert.is_false(fleet.is_saved('{"email":"a@x.test"}'))
    local q = assert(fleet.decode(text))
    assert.are.same(p.fingerprint, q.fingerprint)
    assert.are.equal(p.base_url, q.base_url)
    assert.are.same(actions(p), actions(q))
    assert.is_nil(q.rows[1].refresh_token_file) -- only rows that need a token keep the path
    assert.are.equal(file, q.rows[2].refresh_token_file)
    assert.are.equal(8, q.rows[1].to_max_jobs)

    local bad = {
      { "[]", "not a saved plan" }, { "nonsense", "not a saved plan" },
      { '{"format":"flowmusic-plan","version":2,"rows":[],"fingerprint":{}}', "version '2'" },
      { '{"format":"flowmusic-plan","version":1,"rows":[{"action":"explode","email":"a@x.test"}],'
        .. '"fingerprint":{}}', "row 1: unknown action" },
      { '{"format":"flowmusic-plan","version":1,"rows":[{"action":"add","email":"a@x.test"}],'
        .. '"fingerprint":{"a@x.test":{"exists":false}}}', "add without refresh_token_file" },
      { '{"format":"flowmusic-plan","version":1,"rows":[{"action":"delete","email":"a@x.test"}],'
        .. '"fingerprint":{}}', "no fingerprint for a@x.test" },
    }
    for _, b in ipairs(bad) do
      local r, err = fleet.decode(b[1])
      assert.is_nil(r)
      assert.truthy(err:find(b[2], 1, true), err)
    end
  end)

  it("check_live names the account that changed", function()
    local p = fleet.compute(LIVE, { { email = "jobs@x.test", max_jobs = 8 } })
    assert.is_true(fleet.check_live(LIVE, p))
    local changed = { ["jobs@x.test"] = { email = "jobs@x.test", maxJobs = 6 } }
    local ok, msg, email = fleet.check_live(changed, p)
    assert.is_nil(ok)
    assert.are.equal("jobs@x.test", email)
    assert.are.equal("the plan is stale: jobs@x.test changed since it was made (maxJobs was 4, now 6)", msg)
    ok, msg = fleet.check_live({}, p)
    assert.is_nil(ok)
    assert.truthy(msg:find("it was deleted", 1, true))
  end)

  describe("against the sandbox", function()
    local sb, client
    setup(function()
      sb = sandbox.start()
      client = helper.client(sb)
    end)
    teardown(function()
      if client then client:close() end
      if sb then sb:stop() end
    end)

    it("makes, checks, applies and converges with tokens held in memory only", function()
      sb:reset()
      local want_email = "user-" .. (function()
        local p = io.popen("printf %s " .. clih.q(TOKEN_A) .. " | md5sum")
        local h = p:read("*l"):sub(1, 8)
        p:close()
        return h
      end)() .. "@flowmusic.sandbox"
      assert(client:add_account("sandbox:plus:keep@x.test", 4))
      local p = assert(fleet.make(client, {
        { email = "keep@x.test", max_jobs = 6 },
        { email = want_email, max_jobs = 3, refresh_token = TOKEN_A },
      }))
      assert.are.same({ "set-max-jobs keep@x.test", "add " .. want_email }, actions(p))
      assert.are.equal(sb.base_url, p.base_url)
      assert.is_false(reachable(p, TOKEN_A))
      assert.is_true(fleet.check(client, p))
      -- Results are handed out in order as they complete: with concurrency 1, the first one
      -- before the second call has finished.
      local seen, progress, progress_at = {}, 0, {}
      local results = fleet.apply(client, p, { concurrency = 1,
        on_progress = function() progress = progress + 1 end,
        on_result = function(r)
          seen[#seen + 1] = r
          progress_at[#seen] = progress
        end })
      assert.are.equal(2, #results)
      assert.are.equal(results[1], seen[1])
      assert.are.equal(results[2], seen[2])
      assert.are.same({ 0, 1 }, progress_at) -- each before on_progress of its own completion
      assert.are.equal(2, progress)
      for _, r in ipairs(results) do
        assert.is_true(r.ok)
        assert.are.equal("ok", r.status)
      end
      assert.is_true(results[2].created)
      assert.is_false(reachable(results, TOKEN_A))
      assert.are.same({}, fleet.converge(assert(client:list_accounts()), p))
      -- The plan is stale now, and a new one has nothing to do.
      local ok, msg = fleet.check(client, p)
      assert.is_nil(ok)
      assert.truthy(msg:find("stale", 1, true))
      local p2 = assert(fleet.make(client, { { email = "keep@x.test", max_jobs = 6 } }))
      assert.are.equal(0, fleet.counts(p2).writes)
    end)

    it("reports what still differs", function()
      sb:reset()
      assert(client:add_account("sandbox:plus:keep@x.test", 4))
      local p = assert(fleet.make(client, { { email = "keep@x.test", max_jobs = 6 }, { email = "gone@x.test" } }))
      local diffs = fleet.converge(assert(client:list_accounts()), p)
      assert.are.same({ { email = "keep@x.test", message = "maxJobs 4, wanted 6" },
        { email = "gone@x.test", message = "missing" } }, diffs)
    end)
  end)
end)

describe("flowmusic.fleet.fleetfile", function()
  it("parses CSV and JSON Lines into wanted entries, token paths relative to base_dir", function()
    local csv = assert(fleetfile.parse("email,max_jobs,refresh_token_file\n# comment\na@x.test,4,t/a.txt\nb@x.test,,\n",
      { name = "f.csv", base_dir = "/fleet" }))
    assert.are.same({ { line = 3, email = "a@x.test", max_jobs = 4, refresh_token_file = "/fleet/t/a.txt" },
      { line = 4, email = "b@x.test" } }, csv)
    local jl = assert(fleetfile.parse('{"email":"a@x.test","max_jobs":4,"refresh_token_file":"/abs/a.txt"}\n',
      { name = "f.jsonl" }))
    assert.are.same({ { line = 1, email = "a@x.test", max_jobs = 4, refresh_token_file = "/abs/a.txt" } }, jl)
  end)

  it("collects every bad line", function()
    local w, err = fleetfile.parse("email,max_jobs\na@x.test,0\na@x.test,2\nc@x.test,x\n", { name = "f.csv" })
    assert.is_nil(w)
    assert.are.equal(table.concat({
      "f.csv: line 2: max_jobs must be an integer 1-16, got '0'",
      "f.csv: line 4: max_jobs must be an integer 1-16, got 'x'",
    }, "\n"), err)
    w, err = fleetfile.parse('{"email":"a@x.test","op":"add"}\n', { name = "f.jsonl" })
    assert.is_nil(w)
    assert.truthy(err:find("line 1: unknown key 'op' (expected email, max_jobs, refresh_token_file, labels)", 1, true), err)
  end)
end)
