-- Declarative fleets: `flowmusic plan` and `flowmusic apply` run as subprocesses against a
-- private sandbox, which counts every request: the exact plan for one account of each
-- action and problem, no writes from plan, exactly the planned writes from apply, nothing
-- the second time, --prune, stale saved plans, confirmation, an add whose outcome is
-- unknown, interrupted applies (SIGINT, SIGTERM), input errors, and no refresh token
-- anywhere in any output or plan file.
local sandbox = require "spec.helpers.sandbox"
local clih = require "spec.helpers.cli"
local jsonl = clih.jsonl
local cjson = require "cjson"

local API_TOKEN = "user:6060-PlanSpecSecretTok"
local BROKEN = "Refresh token is invalid or expired; re-add the account"

-- Sentinel refresh tokens (not sandbox:* ones, so no email is part of them): none of their
-- 8-byte pieces may appear in any output, plan file or error.
local SENTINELS = { "Zq7Vx9Lm2Kp4Wt8Rn3Hy6Jb-addme", "Yw5Tc3Nf8Gd1Qs6Pk0Xe4Ur-reauth",
  "Hb2Mj7Rv9Lc5Ea1Zt3Wq8Ko-mismatch" }

local sb, tmp, runner, prefix
local plan_files = {}

-- The command line runner; every stdout and stderr is kept for the secret check.
local cli = { seen = {} }
function cli:run(argv, opts)
  local rc, out, err = runner:run(argv, opts)
  self.seen[#self.seen + 1] = out
  self.seen[#self.seen + 1] = err
  return rc, out, err
end

local function api(method, path, json)
  local code, body = sb:api(method, path, { json = json })
  assert(code and code < 300, ("sandbox %s %s: %s"):format(method, path, tostring(code)))
  return body
end

-- Create a live account from a refresh token (optionally with maxJobs).
local function live(token, max_jobs) return api("POST", "/accounts", { refresh_token = token, maxJobs = max_jobs }) end

local function live_accounts()
  local _, body = sb:api("GET", "/accounts")
  return body
end

local function token_file(name, token, mode)
  local path = clih.spit(tmp .. "/tokens/" .. name, token .. "\n")
  os.execute("chmod " .. (mode or "600") .. " " .. clih.q(path))
  return path
end

local function fleet(text, name)
  return clih.spit(tmp .. "/" .. (name or "fleet.csv"), "email,max_jobs,refresh_token_file\n" .. text)
end

-- JSON null -> nil, and no labels ({}) -> nil, for comparing rows.
local function plain(row)
  local t = {}
  for k, v in pairs(row) do
    if v ~= cjson.null and not (k == "labels" and next(v) == nil) then t[k] = v end
  end
  return t
end

local function contains(hay, needle) return hay:find(needle, 1, true) ~= nil end

local function esc(email) return (email:gsub("@", "%%40")) end

describe("flowmusic plan / apply", function()
  setup(function()
    sb = sandbox.start { token = API_TOKEN }
    prefix = sb.base_url:match("^https?://[^/]+(.*)$")
    runner = clih.new { env = { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb.base_url } }
    tmp = runner.tmp
    os.execute("mkdir -p " .. clih.q(tmp .. "/tokens"))
  end)

  teardown(function()
    if sb then sb:stop() end
    if runner then runner:close() end
  end)

  before_each(function() sb:reset() end)

  -- One account of each action and problem.
  local function each_kind()
    live("sandbox:plus:ok@fleet.test", 4)
    live("sandbox:plus:jobs@fleet.test", 4)
    live("sandbox:broken:reauth@fleet.test")
    live("sandbox:broken:needs@fleet.test")
    live("sandbox:plus:old@fleet.test")
    token_file("add.txt", "sandbox:plus:add@fleet.test")
    token_file("reauth.txt", "sandbox:plus:reauth@fleet.test")
    return fleet([[
ok@fleet.test,4,
jobs@fleet.test,8,
add@fleet.test,2,tokens/add.txt
reauth@fleet.test,5,tokens/reauth.txt
missing@fleet.test,3,
needs@fleet.test,,
]])
  end

  it("gives the exact plan for one account of each action and problem, sending no write", function()
    local path = each_kind()
    local d, rc, out = sb:requests_during(function() return cli:run("plan " .. clih.q(path) .. " --prune --json") end)
    assert.are.equal(1, rc) -- problems
    local rows = jsonl(out)
    for i, r in ipairs(rows) do rows[i] = plain(r) end
    assert.are.same({
      { action = "ok", email = "ok@fleet.test", from_max_jobs = 4, to_max_jobs = 4 },
      { action = "set-max-jobs", email = "jobs@fleet.test", from_max_jobs = 4, to_max_jobs = 8 },
      { action = "add", email = "add@fleet.test", to_max_jobs = 2 },
      { action = "reauth", email = "reauth@fleet.test", from_max_jobs = 2, to_max_jobs = 5,
        message = "live error: " .. BROKEN },
      { action = "missing", email = "missing@fleet.test", to_max_jobs = 3, message = "no refresh_token_file" },
      { action = "needs-reauth", email = "needs@fleet.test", from_max_jobs = 2,
        message = "no refresh_token_file; live error: " .. BROKEN },
      { action = "delete", email = "old@fleet.test", from_max_jobs = 12 },
    }, rows)
    -- Every row has exactly the six keys, in order (labels: {} when the account has none).
    assert.are.equal('{"action":"ok","email":"ok@fleet.test","from_max_jobs":4,"to_max_jobs":4,"message":null,"labels":{}}',
      clih.lines(out)[1])
    assert.are.same({ ["GET " .. prefix .. "/accounts"] = 1, ["GET " .. prefix .. "/jobs"] = 1 }, d)

    local d2, rc2, out2 = sb:requests_during(function() return cli:run("plan " .. clih.q(path) .. " --prune") end)
    assert.are.equal(1, rc2)
    assert.are.same({
      "~ set-max-jobs jobs@fleet.test 4 -> 8",
      "+ add add@fleet.test (maxJobs 2)",
      "~ reauth reauth@fleet.test (maxJobs 2 -> 5): live error: " .. BROKEN,
      "! missing missing@fleet.test: no refresh_token_file",
      "! needs-reauth needs@fleet.test: no refresh_token_file; live error: " .. BROKEN,
      "- delete old@fleet.test",
      "Plan: 1 to add, 1 to re-authenticate, 1 to change, 1 to delete; 2 problems.",
    }, clih.lines(out2))
    assert.are.equal(0, sandbox.writes(d2))

    -- Without --prune there is no delete.
    local _, out3 = select(2, sb:requests_during(function() return cli:run("plan " .. clih.q(path)) end))
    assert.is_nil(out3:find("delete old", 1, true))
    assert.truthy(contains(out3, "Plan: 1 to add, 1 to re-authenticate, 1 to change, 0 to delete; 2 problems."))
  end)

  it("reads JSON Lines fleet files like CSV ones", function()
    each_kind()
    local path = clih.spit(tmp .. "/fleet.jsonl", table.concat({
      '{"email":"ok@fleet.test","max_jobs":4}',
      '{"email":"jobs@fleet.test","max_jobs":8}',
      '{"email":"add@fleet.test","max_jobs":2,"refresh_token_file":"tokens/add.txt"}',
      '{"email":"reauth@fleet.test","max_jobs":5,"refresh_token_file":"tokens/reauth.txt"}',
      '{"email":"missing@fleet.test","max_jobs":3}',
      '{"email":"needs@fleet.test"}',
    }, "\n") .. "\n")
    local _, csv_out = cli:run("plan " .. clih.q(tmp .. "/fleet.csv") .. " --json")
    local rc, out = cli:run("plan " .. clih.q(path) .. " --json")
    assert.are.equal(1, rc)
    assert.are.equal(csv_out, out)
  end)

  -- The each-kind fleet without its problems.
  local function fixable()
    each_kind()
    return fleet([[
ok@fleet.test,4,
jobs@fleet.test,8,
add@fleet.test,2,tokens/add.txt
reauth@fleet.test,5,tokens/reauth.txt
]])
  end

  it("apply --yes sends exactly the planned writes; a second plan and apply do nothing", function()
    local path = fixable()
    local d, rc, out, err = sb:requests_during(function()
      return cli:run("apply " .. clih.q(path) .. " --prune --yes --json")
    end)
    assert.are.equal(0, rc, err)
    assert.are.same({
      ["GET " .. prefix .. "/accounts"] = 2, -- the plan, then the convergence check
      ["GET " .. prefix .. "/jobs"] = 1, -- the plan's warnings
      ["POST " .. prefix .. "/accounts"] = 3, -- set-max-jobs, add (with maxJobs), reauth (with maxJobs)
      ["DELETE " .. prefix .. "/accounts/" .. esc("old@fleet.test")] = 1,
      ["DELETE " .. prefix .. "/accounts/" .. esc("needs@fleet.test")] = 1,
    }, d)
    local rows = jsonl(out)
    local got = {}
    for i, r in ipairs(rows) do
      got[i] = r.op .. " " .. r.email .. " " .. r.status
      assert.are.same({ "line", "op", "email", "status", "http_status", "max_jobs", "attempts", "elapsed_ms",
        "message", "labels" }, (function()
          local keys = {}
          for k in clih.lines(out)[i]:gmatch('"([%w_]+)":') do keys[#keys + 1] = k end
          return keys
        end)())
    end
    assert.are.same({ "set-max-jobs jobs@fleet.test ok", "add add@fleet.test ok", "reauth reauth@fleet.test ok",
      "delete needs@fleet.test ok", "delete old@fleet.test ok" }, got)
    assert.truthy(contains(err, "\nconverged\n"))
    local accts = live_accounts()
    assert.are.equal(8, accts["jobs@fleet.test"].maxJobs)
    assert.are.equal(2, accts["add@fleet.test"].maxJobs)
    assert.are.equal(5, accts["reauth@fleet.test"].maxJobs)
    assert.is_nil(accts["reauth@fleet.test"].error)

    local d2, rc2, out2 = sb:requests_during(function()
      return cli:run("plan " .. clih.q(path) .. " --prune --detailed-exitcode")
    end)
    assert.are.equal(0, rc2)
    assert.are.same({ "Plan: 0 to add, 0 to re-authenticate, 0 to change, 0 to delete; 0 problems." },
      clih.lines(out2))
    assert.are.equal(0, sandbox.writes(d2))

    local d3, rc3, out3 = sb:requests_during(function() return cli:run("apply " .. clih.q(path) .. " --prune --yes") end)
    assert.are.equal(0, rc3)
    assert.are.equal(0, sandbox.writes(d3))
    assert.truthy(contains(out3, "converged"))
  end)

  it("plan --detailed-exitcode exits 3 when actions are pending", function()
    local path = fixable()
    local d, rc = sb:requests_during(function() return cli:run("plan " .. clih.q(path) .. " --detailed-exitcode") end)
    assert.are.equal(3, rc)
    assert.are.equal(0, sandbox.writes(d))
    assert.are.equal(0, (cli:run("plan " .. clih.q(path))))
  end)

  it("--prune deletes only what is missing from the file", function()
    local path = fixable()
    live("sandbox:free:retired@fleet.test")
    local d, rc = sb:requests_during(function() return cli:run("apply " .. clih.q(path) .. " --yes") end)
    assert.are.equal(0, rc)
    for k in pairs(d) do assert.is_nil(k:match("^DELETE"), k) end
    local d2, rc2 = sb:requests_during(function() return cli:run("apply " .. clih.q(path) .. " --yes --prune") end)
    assert.are.equal(0, rc2)
    local deleted = {}
    for k, n in pairs(d2) do
      if k:match("^DELETE") then deleted[#deleted + 1] = ("%s %d"):format(k, n) end
    end
    table.sort(deleted)
    assert.are.same({
      "DELETE " .. prefix .. "/accounts/" .. esc("needs@fleet.test") .. " 1",
      "DELETE " .. prefix .. "/accounts/" .. esc("old@fleet.test") .. " 1",
      "DELETE " .. prefix .. "/accounts/" .. esc("retired@fleet.test") .. " 1",
    }, deleted)
    local emails = {}
    for e in pairs(live_accounts()) do emails[#emails + 1] = e end
    table.sort(emails)
    assert.are.same({ "add@fleet.test", "jobs@fleet.test", "ok@fleet.test", "reauth@fleet.test" }, emails)
  end)

  it("applies a saved plan, and refuses one whose account changed behind its back", function()
    local path = fixable()
    local plan = tmp .. "/plan.json"
    plan_files[#plan_files + 1] = plan
    local rc = cli:run("plan " .. clih.q(path) .. " --out " .. clih.q(plan))
    assert.are.equal(0, rc)
    -- Someone changes jobs@'s maxJobs.
    api("POST", "/accounts", { email = "jobs@fleet.test", maxJobs = 6 })
    local d, rc2, _, err = sb:requests_during(function() return cli:run("apply " .. clih.q(plan) .. " --yes") end)
    assert.are.equal(1, rc2)
    assert.are.equal(0, sandbox.writes(d))
    assert.truthy(contains(err, "jobs@fleet.test"), err)
    assert.truthy(contains(err, "stale"), err)

    -- A fresh saved plan applies; its refresh tokens come from the files it names.
    assert.are.equal(0, (cli:run("plan " .. clih.q(path) .. " --out " .. clih.q(plan))))
    local text = clih.slurp(plan)
    assert.truthy(contains(text, "tokens/add.txt"))
    local d3, rc3, out3 = sb:requests_during(function() return cli:run("apply " .. clih.q(plan) .. " --yes") end)
    assert.are.equal(0, rc3, out3)
    assert.are.same({ ["GET " .. prefix .. "/accounts"] = 2, ["POST " .. prefix .. "/accounts"] = 3 }, d3)
    assert.truthy(contains(out3, "converged"))
    -- Applying the same saved plan again is refused: its accounts have changed.
    local d4, rc4, _, err4 = sb:requests_during(function() return cli:run("apply " .. clih.q(plan) .. " --yes") end)
    assert.are.equal(1, rc4)
    assert.are.equal(0, sandbox.writes(d4))
    assert.truthy(contains(err4, "stale"))
    -- --prune belongs to the plan.
    assert.are.equal(2, (cli:run("apply " .. clih.q(plan) .. " --yes --prune")))
  end)

  it("refuses to apply without --yes when standard input is not a terminal", function()
    local path = fixable()
    local d, rc, out, err = sb:requests_during(function() return cli:run("apply " .. clih.q(path)) end)
    assert.are.equal(2, rc)
    assert.are.equal(0, sandbox.writes(d))
    assert.truthy(contains(out, "Plan: 1 to add, 1 to re-authenticate, 1 to change, 0 to delete; 0 problems."))
    assert.truthy(contains(err, "--yes"))
  end)

  it("asks on a terminal: anything but 'yes' cancels, 'yes' applies", function()
    local path = fixable()
    -- script(1) runs the command on a pseudo-terminal; the command is its one argument.
    local function run_tty(answer)
      local cmd = ("%s bin/flowmusic apply %s --prune"):format(clih.LUA, path)
      local env = ("USEAPI_TOKEN=%s FLOWMUSIC_BASE_URL=%s FLOWMUSIC_STATE_DIR=%s XDG_CONFIG_HOME=%s"):format(
        API_TOKEN, sb.base_url, clih.q(tmp .. "/tty-state-" .. answer), clih.q(tmp .. "/config"))
      local shell = ("printf '%s\\n' | env %s script -qec %s /dev/null > %s 2>&1; echo $? > %s"):format(
        answer, env, clih.q(cmd), clih.q(tmp .. "/tty.out"), clih.q(tmp .. "/tty.rc"))
      os.execute(shell)
      local out = clih.slurp(tmp .. "/tty.out")
      cli.seen[#cli.seen + 1] = out
      return tonumber(clih.slurp(tmp .. "/tty.rc"):match("%d+")), out
    end
    local d, rc, out = sb:requests_during(function() return run_tty("no") end)
    assert.are.equal(1, rc, out)
    assert.are.equal(0, sandbox.writes(d))
    assert.truthy(contains(out, "Only 'yes' will be accepted"), out)
    assert.truthy(contains(out, "Apply cancelled"), out)
    local d2, rc2, out2 = sb:requests_during(function() return run_tty("yes") end)
    assert.are.equal(0, rc2, out2)
    assert.are.equal(5, sandbox.writes(d2))
    assert.truthy(contains(out2, "converged"), out2)
  end)

  it("never re-sends an add whose outcome is unknown; the next plan shows the account present", function()
    token_file("add.txt", "sandbox:plus:add@fleet.test")
    local path = fleet("add@fleet.test,2,tokens/add.txt\n")
    sb:fault { fault = "status", code = 500, apply = 1, method = "POST", path = prefix .. "/accounts" }
    local d, rc, out = sb:requests_during(function() return cli:run("apply " .. clih.q(path) .. " --yes --json") end)
    assert.are.equal(1, rc)
    assert.are.equal(1, d["POST " .. prefix .. "/accounts"])
    local rows = jsonl(out)
    assert.are.equal(1, #rows)
    assert.are.equal("failed", rows[1].status)
    assert.are.equal(500, rows[1].http_status)
    assert.are.equal(1, rows[1].attempts)
    assert.truthy(contains(rows[1].message, "outcome unknown"), rows[1].message)
    local rc2, out2 = cli:run("plan " .. clih.q(path) .. " --json --detailed-exitcode")
    assert.are.equal(0, rc2)
    assert.are.same({ action = "ok", email = "add@fleet.test", from_max_jobs = 2, to_max_jobs = 2 },
      plain(jsonl(out2)[1]))
  end)

  -- Run apply in the background; once the sandbox has received `posts` POSTs (so the batch
  -- is running), send it a signal. Returns exit code, stdout, stderr.
  local function apply_interrupted(argv, signal, posts)
    local h = runner:spawn("apply " .. argv)
    local key = "POST " .. prefix .. "/accounts"
    for _ = 1, 400 do -- bounded wait (20 s) for the batch to be under way
      if (sb:requests().by[key] or 0) >= posts or h.done() then break end
      os.execute("sleep 0.05")
    end
    h.signal(signal)
    local rc = h.wait(30)
    local o, e = h.out(), h.err()
    cli.seen[#cli.seen + 1] = o
    cli.seen[#cli.seen + 1] = e
    return rc, o, e
  end

  -- Eight accounts at maxJobs 12 and a fleet that wants 3 for each: eight POSTs.
  local function eight()
    local emails = sb:seed(8)
    local lines = {}
    for i, e in ipairs(emails) do lines[i] = e .. ",3," end
    return fleet(table.concat(lines, "\n") .. "\n"), emails
  end

  -- Every action reported exactly once; what the server applied matches the report.
  local function check_report(out, emails, allowed)
    local rows = jsonl(out)
    assert.are.equal(#emails, #rows)
    local accts, status = live_accounts(), {}
    for _, r in ipairs(rows) do
      assert.is_nil(status[r.email], "reported twice: " .. r.email)
      status[r.email] = r.status
      assert.truthy(allowed[r.status], r.status)
      if r.status == "ok" then assert.are.equal(3, accts[r.email].maxJobs) end
      if r.status == "not_run" then assert.are.equal(12, accts[r.email].maxJobs) end
    end
    local tally = {}
    for _, e in ipairs(emails) do
      assert.truthy(status[e], "not reported: " .. e)
      tally[status[e]] = (tally[status[e]] or 0) + 1
    end
    return tally
  end

  it("reports every action of an apply interrupted by SIGINT: ok, interrupted or not run (exit 130)", function()
    local path, emails = eight()
    sb:fault { fault = "latency", ms = 1000, method = "POST", path = prefix .. "/accounts", count = 0 }
    local rc, out, err = apply_interrupted(clih.q(path) .. " --yes --json --concurrency 2", "INT", 3)
    sb:clear_faults()
    assert.are.equal(130, rc, err)
    local tally = check_report(out, emails, { ok = true, interrupted = true, not_run = true })
    assert.truthy((tally.not_run or 0) > 0)
    assert.truthy((tally.ok or 0) > 0)
    assert.truthy(contains(err, "interrupted by SIGINT"), err)
    assert.is_nil(err:find("traceback", 1, true))
  end)

  it("marks writes in flight past the grace period interrupted and outcome unknown (SIGTERM, exit 143)", function()
    local path, emails = eight()
    sb:fault { fault = "latency", ms = 6000, method = "POST", path = prefix .. "/accounts", count = 0 }
    local rc, out, err = apply_interrupted(clih.q(path) .. " --yes --json --concurrency 2", "TERM", 2)
    sb:clear_faults()
    assert.are.equal(143, rc, err)
    local tally = check_report(out, emails, { interrupted = true, not_run = true })
    assert.are.equal(2, tally.interrupted)
    assert.are.equal(6, tally.not_run)
    for _, r in ipairs(jsonl(out)) do
      if r.status == "interrupted" then assert.truthy(contains(r.message, "outcome unknown"), r.message) end
    end
    assert.truthy(contains(err, "0 ok, 0 failed, 2 interrupted, 6 not run; interrupted by SIGTERM"), err)
  end)

  it("rejects bad fleet files with line-numbered errors (exit 2), sending nothing", function()
    local cases = {
      { "a@fleet.test,4,\nb@fleet.test,,\na@fleet.test,5,\n",
        "line 4: duplicate email a@fleet.test (first on line 2)" },
      { "a@fleet.test,17,\n", "line 2: max_jobs must be an integer 1-16, got '17'" },
      { ",4,\n", "line 2: email is required" },
      { "a@fleet.test,4\n", "line 2: expected 3 fields, got 2" },
      { "", "the file is empty (a fleet file needs at least one row after the header)" },
    }
    for _, c in ipairs(cases) do
      local path = fleet(c[1])
      local d, rc, _, err = sb:requests_during(function() return cli:run("plan " .. clih.q(path)) end)
      assert.are.equal(2, rc, err)
      assert.truthy(contains(err, c[2]), err)
      assert.are.same({}, d)
    end
    local path = clih.spit(tmp .. "/bad.csv", "email,op\na@fleet.test,add\n")
    local rc, _, err = cli:run("plan " .. clih.q(path))
    assert.are.equal(2, rc)
    assert.truthy(contains(err,
      "line 1: unknown column 'op' in the header (expected email,max_jobs,refresh_token_file,labels)"), err)
    local rc2, _, err2 = cli:run("apply " .. clih.q(tmp .. "/nonexistent.csv") .. " --yes")
    assert.are.equal(2, rc2)
    assert.truthy(contains(err2, "nonexistent.csv"))
    assert.are.equal(2, (cli:run("plan")))
    assert.are.equal(2, (cli:run("plan a b")))
    assert.are.equal(2, (cli:run("apply x.csv --concurrency 0")))
  end)

  it("refuses a token file readable by group or others (exit 2), naming the file, never the token", function()
    local file = token_file("loose.txt", SENTINELS[1], "644")
    local path = fleet(("%s,,tokens/loose.txt\n"):format(sandbox.derived_email(SENTINELS[1])))
    local rc, _, err = cli:run("plan " .. clih.q(path))
    assert.are.equal(2, rc, err)
    assert.truthy(contains(err, "chmod 600"), err)
    assert.truthy(contains(err, file), err)
    assert.truthy(contains(err, "0644"), err)
    rc, _, err = cli:run("plan --allow-insecure-token-file " .. clih.q(path))
    assert.are.equal(0, rc, err)
    token_file("loose.txt", SENTINELS[1], "600")
    local _, _, err2 = cli:run("plan " .. clih.q(path))
    assert.are.equal("", err2)
  end)

  it("lets no refresh token appear in any output, plan file or error", function()
    local add_email, reauth_email = sandbox.derived_email(SENTINELS[1]), sandbox.derived_email(SENTINELS[2])
    live("sandbox:broken:" .. reauth_email)
    token_file("s1.txt", SENTINELS[1])
    token_file("s2.txt", SENTINELS[2])
    token_file("s3.txt", SENTINELS[3])
    local path = fleet(("%s,3,tokens/s1.txt\n%s,4,tokens/s2.txt\nwrong@fleet.test,,tokens/s3.txt\n"):format(
      add_email, reauth_email))
    local plan = tmp .. "/secret-plan.json"
    plan_files[#plan_files + 1] = plan
    cli:run("plan " .. clih.q(path))
    cli:run("plan " .. clih.q(path) .. " --json")
    cli:run("plan " .. clih.q(path) .. " --out " .. clih.q(plan) .. " --verbose")
    -- An error on the re-authentication (outcome unknown), and a token of another account.
    sb:fault { fault = "status", code = 500, apply = 0, method = "POST", path = prefix .. "/accounts", count = 1 }
    local rc, out = cli:run("apply " .. clih.q(plan) .. " --yes --verbose --concurrency 1")
    assert.are.equal(1, rc)
    assert.truthy(contains(out, "outcome unknown"), out)
    assert.truthy(contains(out, "belongs to " .. sandbox.derived_email(SENTINELS[3])), out)
    cli:run("apply " .. clih.q(path) .. " --yes --csv --verbose")
    cli:run("apply " .. clih.q(path) .. " --yes --json")
    local texts = {}
    for _, s in ipairs(cli.seen) do texts[#texts + 1] = s end
    for _, f in ipairs(plan_files) do texts[#texts + 1] = clih.slurp(f) end
    local all = table.concat(texts, "\n")
    assert.truthy(#all > 0)
    for _, token in ipairs(SENTINELS) do
      for i = 1, #token - 7 do
        local piece = token:sub(i, i + 7)
        assert.is_nil(all:find(piece, 1, true), "a piece of a refresh token appeared: " .. piece)
      end
    end
    for _, s in ipairs(cli.seen) do assert.is_nil(s:find(API_TOKEN, 1, true)) end
  end)
end)
