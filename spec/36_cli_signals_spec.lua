-- Interrupted runs (issue 13): SIGINT/SIGTERM during a CLI command stop it cleanly. No new
-- request starts, transfers in flight get a short grace, every completed row is reported,
-- rows in flight when aborted are `interrupted`, rows never started `not_run`, the summary
-- says so, and the exit status is 130 (SIGINT) or 143 (SIGTERM). A second Ctrl-C aborts at
-- once. (SIGKILL keeps every completed row too: spec/34_cli_stream_spec.lua.)
local fixture = require "spec.helpers.fixture"
local cli = require "spec.helpers.cli"
local cjson = require "cjson"
local socket = require "socket"

local API_TOKEN = "user:4747-CliSignalsToken"

local function contains(hay, needle) return hay:find(needle, 1, true) ~= nil end

describe("flowmusic CLI interrupted by signals", function()
  local sb, c

  fixture.sandbox({ token = API_TOKEN, cli = true }, function(s, runner) sb, c = s, runner end)

  -- 20 set-max-jobs rows; every POST takes 1 s at the sandbox (less than the 2 s grace: rows in
  -- flight at the first signal complete; a second signal comes 0.2 s later, well before that).
  local function slow_batch(name)
    local emails = sb:seed(20)
    local lines = { "op,email,max_jobs" }
    for _, e in ipairs(emails) do lines[#lines + 1] = "set-max-jobs," .. e .. ",3" end
    sb:fault { fault = "latency", ms = 1000, method = "POST", path = "/v1/flowmusic/accounts", count = 0 }
    return cli.spit(c.tmp .. "/" .. name, table.concat(lines, "\n") .. "\n"), emails
  end

  -- Run the batch, send the signals, and check the report against the server.
  local function interrupted_batch(name, signals, want_code)
    local file, emails = slow_batch(name)
    local h = c:spawn("batch " .. cli.q(file) .. " --concurrency 2 --retries 0 --json")
    -- Signal once the first rows are done and the next are in flight (the third POST has
    -- arrived), not after a fixed time a loaded machine may not keep.
    local deadline = socket.gettime() + 30
    repeat socket.sleep(0.02)
    until (sb:requests().by["POST /v1/flowmusic/accounts"] or 0) >= 3 or socket.gettime() > deadline
    for k, sig in ipairs(signals) do
      if k > 1 then socket.sleep(0.2) end
      h.signal(sig)
    end
    local code = h.wait(30)
    assert.equal(want_code, code)
    local out, err = h.out(), h.err()
    local rows = {}
    for _, l in ipairs(cli.lines(out)) do rows[#rows + 1] = cjson.decode(l) end
    -- Every input row has exactly one output row, in file order.
    assert.equal(20, #rows)
    local n = { ok = 0, interrupted = 0, not_run = 0 }
    for i, r in ipairs(rows) do
      assert.equal(i + 1, r.line)
      assert.equal(emails[i], r.email)
      assert.is_not_nil(n[r.status], r.status .. ": " .. tostring(r.message))
      n[r.status] = n[r.status] + 1
      if r.status == "interrupted" then assert.truthy(contains(r.message, "outcome unknown"), r.message) end
    end
    assert.truthy(n.not_run > 0)
    -- The requests the server received are the rows reported ok plus those interrupted.
    sb:clear_faults()
    assert.equal(n.ok + n.interrupted, sb:requests().by["POST /v1/flowmusic/accounts"] or 0)
    for i, r in ipairs(rows) do
      local _, acct = sb:api("GET", "/accounts/" .. emails[i]:gsub("@", "%%40"))
      if r.status == "ok" then assert.equal(3, acct.maxJobs, r.email) end
      if r.status == "not_run" then assert.are_not.equal(3, acct.maxJobs, r.email) end
    end
    assert.truthy(err:find(("20 rows: %d ok, 0 failed, 0 skipped %%(invalid%%), %d interrupted, %d not run "
      .. "in [%%d.]+ s; interrupted by SIG"):format(n.ok, n.interrupted, n.not_run)), err)
    assert.falsy(contains(err, "traceback"), err)
    assert.falsy(err:find("%.lua:%d"), err)
    return n, err
  end

  it("SIGINT during a batch: every row reported once, applied rows = ok + interrupted, exit 130", function()
    local _, err = interrupted_batch("int.csv", { "INT" }, 130)
    assert.truthy(contains(err, "interrupted by SIGINT"))
  end)

  it("SIGTERM during a batch: the same, exit 143", function()
    local _, err = interrupted_batch("term.csv", { "TERM" }, 143)
    assert.truthy(contains(err, "interrupted by SIGTERM"))
  end)

  it("a second SIGINT aborts the rows in flight at once", function()
    local n = interrupted_batch("twice.csv", { "INT", "INT" }, 130)
    assert.truthy(n.interrupted > 0)
  end)

  it("SIGINT at any moment of start-up is never lost: exit 130, no stack trace", function()
    sb:seed(1)
    -- long enough that every pause ends before the list does; a signal during the request
    -- then waits at most this long (the grace is 2 s)
    sb:fault { fault = "latency", ms = 600, method = "GET", count = 0 }
    for _, pause in ipairs({ 0, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15 }) do
      local h = c:spawn("accounts list --json")
      -- Count from the moment the interpreter runs: before, the starting shell still ignores
      -- SIGINT (POSIX, for background commands) and a signal would prove nothing.
      local t0 = socket.gettime()
      repeat
        local p = io.popen("readlink /proc/" .. h.pid .. "/exe 2>/dev/null")
        local exe = p:read("*l") or ""
        p:close()
      until exe:find("lua") or h.done() or socket.gettime() - t0 > 10
      if pause > 0 then socket.sleep(pause) end
      h.signal("INT")
      local code = h.wait(30)
      local err = h.err()
      assert.equal(130, code, "SIGINT after " .. pause .. " s; stderr: " .. err)
      assert.falsy(contains(err, "traceback"), err)
      assert.falsy(err:find("%.lua:%d"), err)
      assert.falsy(contains(err, "internal error"), err)
    end
  end)

  it("SIGINT or SIGTERM during accounts get: exit 130/143, no stack trace", function()
    local email = sb:seed(1)[1]
    sb:fault { fault = "latency", ms = 3000, method = "GET", count = 0 }
    local key = "GET /v1/flowmusic/accounts/" .. email:gsub("@", "%%40")
    for sig, want in pairs({ INT = 130, TERM = 143 }) do
      local before = sb:requests().by[key] or 0
      local h = c:spawn("accounts get " .. email)
      -- Signal once the request is at the server (the command is inside its call by then,
      -- its handler installed), not after a fixed time a loaded machine may not keep.
      local deadline = socket.gettime() + 20
      repeat socket.sleep(0.05) until (sb:requests().by[key] or 0) > before or socket.gettime() > deadline
      h.signal(sig)
      assert.equal(want, h.wait(30))
      local err = h.err()
      assert.equal("", h.out())
      assert.truthy(contains(err, "flowmusic accounts: interrupted by SIG" .. sig), err)
      assert.falsy(contains(err, "traceback"), err)
      assert.falsy(err:find("%.lua:%d"), err)
    end
  end)
end)
