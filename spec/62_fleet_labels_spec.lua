-- Fleet file labels: the label rule (flowmusic.fleet.labels) and the fleet file reader in
-- process; then `--label KEY=VALUE` and `--fleet FILE` on plan, apply, status and usage --all
-- run as subprocesses against a private sandbox that counts every request: the accounts a
-- filter leaves out get no request at all (--prune deletes nothing), labels in JSON, CSV and
-- flowmusic_account_info, every malformed label and --label refused before anything is sent,
-- and no refresh token in any output.
local sandbox = require "spec.helpers.sandbox"
local clih = require "spec.helpers.cli"
local jsonl = clih.jsonl
local metrics = require "spec.helpers.metrics"
local cjson = require "cjson"
local labels = require "flowmusic.fleet.labels"
local fleetfile = require "flowmusic.fleet.fleetfile"
local fleet = require "flowmusic.fleet.plan"

local API_TOKEN = "user:6262-LabelSpecSecretTok"
-- A refresh-token-like sentinel: none of its 8-byte pieces may appear in any output.
local SENTINEL = "Kx8Qw2Zr5Tn7Vb3Lm9Jd4Hs-label-secret"

local function contains(hay, needle) return hay:find(needle, 1, true) ~= nil end

describe("flowmusic.fleet.labels", function()
  it("parses the text form, trimming spaces, and writes it back with sorted keys", function()
    local l = assert(labels.parse(" team = a ; plan=pro ;region=eu west"))
    assert.are.same({ team = "a", plan = "pro", region = "eu west" }, l)
    assert.are.equal("plan=pro;region=eu west;team=a", labels.text(l))
    assert.are.equal("", labels.text(nil))
    assert.is_nil(labels.parse(""))
    assert.is_nil(labels.parse("   "))
    assert.are.same({ _x9 = "ü" }, labels.parse("_x9=ü"))
  end)

  it("refuses every malformed label with a message naming the key, never the value", function()
    local cases = {
      { "team", "entry 1 has no '='" },
      { "team=a;plan", "entry 2 has no '='" },
      { "team=a;;plan=b", "entry 2 is empty" },
      { "team=a;", "entry 2 is empty" },
      { "=a", "a key must not be empty" },
      { "9team=a", "key '9team' is not a name" },
      { "te-am=a", "key 'te-am' is not a name" },
      { ("k"):rep(64) .. "=a", "is not a name (letters, digits and _, not starting with a digit, at most 63 bytes)" },
      { "team=", "the value of 'team' is empty" },
      { "team=a;team=b", "key 'team' appears twice" },
      { "team=a=b", "the value of 'team' must not contain ';' or '='" },
      { "team=a\tb", "the value of 'team' must be UTF-8 text without control characters" },
      { "team=a\127", "the value of 'team' must be UTF-8 text without control characters" },
      { "team=\194\133", "the value of 'team' must be UTF-8 text without control characters" }, -- C1 NEL
      { "team=\255x", "the value of 'team' must be UTF-8 text without control characters" },
      { "team=" .. ("v"):rep(129), "the value of 'team' is longer than 128 bytes" },
    }
    local many = {}
    for i = 1, 17 do many[i] = "k" .. i .. "=v" end
    cases[#cases + 1] = { table.concat(many, ";"), "more than 16 labels" }
    for _, c in ipairs(cases) do
      local l, err = labels.parse(c[1])
      assert.is_nil(l, c[1])
      assert.truthy(err and contains(err, c[2]), c[1] .. ": " .. tostring(err))
    end
    -- exactly at the limits: fine
    assert.truthy(labels.parse(("k"):rep(63) .. "=" .. ("v"):rep(128)))
    many[17] = nil
    assert.truthy(labels.parse(table.concat(many, ";")))
    -- a secret-looking value or key is never quoted
    local _, err = labels.parse("team=" .. SENTINEL .. "=x")
    assert.is_nil(err:find(SENTINEL:sub(1, 8), 1, true), err)
    _, err = labels.parse(SENTINEL .. "-key=x")
    assert.is_nil(err:find(SENTINEL:sub(1, 8), 1, true), err)
    assert.truthy(contains(err, "key (a 40-byte value, not shown) is not a name"), err)
  end)

  it("checks tables, and selectors made of KEY=VALUE strings", function()
    assert.are.same({ team = "a" }, labels.check({ team = "a" }))
    assert.is_nil((labels.check({})))
    assert.are.equal("the value of 'team' must be a string", select(2, labels.check({ team = 1 })))
    assert.are.same({ team = "a", plan = "pro" }, labels.selector({ "team=a", " plan = pro " }))
    assert.is_nil(labels.selector({}))
    assert.are.equal("--label 'team' is not KEY=VALUE", select(2, labels.selector({ "team" })))
    assert.truthy(contains(select(2, labels.selector({ "9=a" })), "--label: key '9' is not a name"))
    assert.are.equal("--label: the value of 'team' is empty", select(2, labels.selector({ "team=" })))
    assert.truthy(contains(select(2, labels.selector({ "team=a", "team=b" })), "--label 'team' is given twice"))
    local sel = { team = "a", plan = "pro" }
    assert.is_true(labels.matches({ team = "a", plan = "pro", x = "y" }, sel))
    assert.is_false(labels.matches({ team = "a" }, sel))
    assert.is_false(labels.matches(nil, sel))
    assert.is_true(labels.matches(nil, nil))
    assert.are.equal("plan=pro, team=a", labels.describe(sel))
  end)
end)

describe("fleet files with labels", function()
  it("reads the labels column of CSV and both JSON Lines forms alike; none is nil", function()
    local csv = assert(fleetfile.parse(table.concat({
      "email,labels,max_jobs",
      "a@x.test,team=a;plan=pro,4",
      '"b@x.test","team = b",',
      "c@x.test,,2",
    }, "\n") .. "\n", { name = "f.csv" }))
    assert.are.same({ team = "a", plan = "pro" }, csv[1].labels)
    assert.are.same({ team = "b" }, csv[2].labels)
    assert.is_nil(csv[3].labels)
    assert.are.equal(2, csv[3].max_jobs)
    local jl = assert(fleetfile.parse(table.concat({
      '{"email":"a@x.test","max_jobs":4,"labels":{"team":"a","plan":"pro"}}',
      '{"email":"b@x.test","labels":"team = b"}',
      '{"email":"c@x.test","max_jobs":2,"labels":null}',
      '{"email":"d@x.test","labels":""}',
      '{"email":"e@x.test","labels":{}}',
    }, "\n") .. "\n", { name = "f.jsonl" }))
    assert.are.same(csv[1].labels, jl[1].labels)
    assert.are.same(csv[2].labels, jl[2].labels)
    assert.is_nil(jl[3].labels)
    assert.is_nil(jl[4].labels)
    assert.is_nil(jl[5].labels)
  end)

  it("gives line-numbered errors for malformed labels in either form", function()
    local w, err = fleetfile.parse(table.concat({
      "email,labels",
      "a@x.test,team=a",
      "b@x.test,team",
      "c@x.test,9x=1",
      'd@x.test,"team=a;team=b"',
      "e@x.test,team=" .. SENTINEL .. "=z",
    }, "\n") .. "\n", { name = "f.csv" })
    assert.is_nil(w)
    assert.are.equal(table.concat({
      "f.csv: line 3: labels: entry 1 has no '=' (labels are key=value pairs joined by ';')",
      "f.csv: line 4: labels: key '9x' is not a name (letters, digits and _, not starting with a digit, at most 63 bytes)",
      "f.csv: line 5: labels: key 'team' appears twice",
      "f.csv: line 6: labels: the value of 'team' must not contain ';' or '='",
    }, "\n"), err)
    w, err = fleetfile.parse(table.concat({
      '{"email":"a@x.test","labels":{"team":1}}',
      '{"email":"b@x.test","labels":["team=a"]}',
      '{"email":"c@x.test","labels":3}',
      '{"email":"d@x.test","labels":{"team":"a;b"}}',
      '{"email":"e@x.test","labels":{"9":"a"}}',
      '{"email":"f@x.test","labels":{"team":""}}',
    }, "\n") .. "\n", { name = "f.jsonl" })
    assert.is_nil(w)
    assert.are.equal(table.concat({
      "f.jsonl: line 1: labels: the value of 'team' must be a string",
      "f.jsonl: line 2: 'labels' must be a string or an object",
      "f.jsonl: line 3: 'labels' must be a string or an object",
      "f.jsonl: line 4: labels: the value of 'team' must not contain ';' or '='",
      "f.jsonl: line 5: labels: key '9' is not a name (letters, digits and _, not starting with a digit, at most 63 bytes)",
      "f.jsonl: line 6: labels: the value of 'team' is empty",
    }, "\n"), err)
  end)

  it("flowmusic.fleet.plan: a selector plans only its accounts and never deletes, even with prune", function()
    local live = { ["a@x.test"] = { maxJobs = 2 }, ["b@x.test"] = { maxJobs = 2 }, ["old@x.test"] = { maxJobs = 1 } }
    local wanted = { { email = "a@x.test", max_jobs = 4, labels = { team = "a" } },
                     { email = "b@x.test", max_jobs = 6, labels = { team = "b" } } }
    local p = fleet.compute(live, wanted, { prune = true, labels = { team = "a" } })
    assert.are.equal(1, #p.rows)
    assert.are.equal("set-max-jobs", p.rows[1].action)
    assert.are.same({ team = "a" }, p.rows[1].labels)
    assert.are.same({ team = "a" }, p.labels)
    -- without the selector the same call prunes old@ and changes b@ too
    local all = fleet.compute(live, wanted, { prune = true })
    assert.are.equal(3, #all.rows)
    assert.are.equal("delete", all.rows[3].action)
    -- a saved plan keeps the selector and the rows' labels
    local back = assert(fleet.decode(assert(fleet.encode(p))))
    assert.are.same({ team = "a" }, back.labels)
    assert.are.same({ team = "a" }, back.rows[1].labels)
    assert.is_nil(assert(fleet.decode(assert(fleet.encode(all)))).labels)
    assert.has_error(function() fleet.compute(live, { { email = "a@x.test", labels = { ["9"] = "a" } } }) end)
    assert.has_error(function() fleet.compute(live, wanted, { labels = { team = 1 } }) end)
  end)
end)

describe("--label and --fleet on the command line", function()
  local sb, runner, tmp, prefix
  local seen = {}

  local function run(argv, opts)
    local rc, out, err = runner:run(argv, opts)
    seen[#seen + 1] = out
    seen[#seen + 1] = err
    return rc, out, err
  end

  local function api(method, path, json)
    local code, body = sb:api(method, path, { json = json })
    assert(code and code < 300, ("sandbox %s %s: %s"):format(method, path, tostring(code)))
    return body
  end

  local function live(email, max_jobs)
    return api("POST", "/accounts", { refresh_token = "sandbox:plus:" .. email, maxJobs = max_jobs })
  end

  local function live_accounts()
    local _, body = sb:api("GET", "/accounts")
    return body
  end

  local function esc(email) return (email:gsub("@", "%%40")) end

  -- Rows of CSV text as tables keyed by the header (no quoted commas in these).
  local function csv_rows(s)
    local l = clih.lines(s)
    local head, rows = {}, {}
    for h in (l[1] .. ","):gmatch("([^,]*),") do head[#head + 1] = h end
    for i = 2, #l do
      local row, j = {}, 0
      for f in (l[i] .. ","):gmatch("([^,]*),") do j = j + 1 row[head[j]] = f end
      rows[#rows + 1] = row
    end
    return rows, head
  end

  local FLEET = table.concat({
    "email,max_jobs,refresh_token_file,labels",
    "a1@lab.test,4,,team=a;plan=pro",
    "a2@lab.test,5,,team=a;plan=free",
    "b1@lab.test,6,,team=b",
    "n1@lab.test,3,,",
  }, "\n") .. "\n"

  setup(function()
    sb = sandbox.start { token = API_TOKEN }
    prefix = sb.base_url:match("^https?://[^/]+(.*)$")
    runner = clih.new { env = { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb.base_url } }
    tmp = runner.tmp
  end)

  teardown(function()
    if sb then sb:stop() end
    if runner then runner:close() end
  end)

  -- Every fleet account at maxJobs 2, and old@ live but not in the fleet file.
  before_each(function()
    sb:reset()
    for _, e in ipairs({ "a1@lab.test", "a2@lab.test", "b1@lab.test", "n1@lab.test", "old@lab.test" }) do live(e, 2) end
  end)

  local function fleet_file(text, name)
    return clih.q(clih.spit(tmp .. "/" .. (name or "fleet.csv"), text or FLEET))
  end

  it("plan --label plans only the matching accounts, with their labels in JSON and CSV", function()
    local f = fleet_file()
    local d, rc, out, err = sb:requests_during(function() return run("plan " .. f .. " --label team=a --json") end)
    assert.are.equal(0, rc, err)
    assert.are.same({ ["GET " .. prefix .. "/accounts"] = 1, ["GET " .. prefix .. "/jobs"] = 1 }, d)
    assert.are.same({
      '{"action":"set-max-jobs","email":"a1@lab.test","from_max_jobs":2,"to_max_jobs":4,"message":null,'
        .. '"labels":{"plan":"pro","team":"a"}}',
      '{"action":"set-max-jobs","email":"a2@lab.test","from_max_jobs":2,"to_max_jobs":5,"message":null,'
        .. '"labels":{"plan":"free","team":"a"}}',
    }, clih.lines(out))
    assert.truthy(contains(err, "Plan: 0 to add, 0 to re-authenticate, 2 to change, 0 to delete; 0 problems."), err)

    -- Two labels: both must match.
    rc, out = run("plan " .. f .. " --label team=a --label plan=free --json")
    assert.are.equal(0, rc)
    local rows = jsonl(out)
    assert.are.equal(1, #rows)
    assert.are.equal("a2@lab.test", rows[1].email)

    -- CSV: one labels column, k=v;k2=v2 with sorted keys, empty for none (and for deletes).
    rc, out = run("plan " .. f .. " --prune --csv")
    assert.are.equal(0, rc)
    local csv, head = csv_rows(out)
    assert.are.same({ "action", "email", "from_max_jobs", "to_max_jobs", "message", "labels" }, head)
    local by = {}
    for _, r in ipairs(csv) do by[r.email] = r end
    assert.are.equal("plan=pro;team=a", by["a1@lab.test"].labels)
    assert.are.equal("team=b", by["b1@lab.test"].labels)
    assert.are.equal("", by["n1@lab.test"].labels)
    assert.are.equal("delete", by["old@lab.test"].action)
    assert.are.equal("", by["old@lab.test"].labels)
  end)

  it("the same labels in a JSON Lines fleet file (string and object forms) give the same plan", function()
    local jl = fleet_file(table.concat({
      '{"email":"a1@lab.test","max_jobs":4,"labels":{"team":"a","plan":"pro"}}',
      '{"email":"a2@lab.test","max_jobs":5,"labels":"team=a;plan=free"}',
      '{"email":"b1@lab.test","max_jobs":6,"labels":{"team":"b"}}',
      '{"email":"n1@lab.test","max_jobs":3}',
    }, "\n") .. "\n", "fleet.jsonl")
    local _, want = run("plan " .. fleet_file() .. " --label team=a --json")
    local rc, out = run("plan " .. jl .. " --label team=a --json")
    assert.are.equal(0, rc)
    assert.are.equal(want, out)
    assert.are.equal(2, #clih.lines(out))
  end)

  it("apply --label --prune changes only the selection and deletes nothing; without --label it prunes", function()
    local f = fleet_file()
    local d, rc, out, err = sb:requests_during(function()
      return run("apply " .. f .. " --label team=a --prune --yes --json")
    end)
    assert.are.equal(0, rc, err)
    assert.are.same({
      ["GET " .. prefix .. "/accounts"] = 2, -- the plan, then the convergence check
      ["GET " .. prefix .. "/jobs"] = 1,
      ["POST " .. prefix .. "/accounts"] = 2, -- set-max-jobs a1 and a2, nothing else
    }, d)
    assert.truthy(contains(err, "--prune deletes nothing with --label"), err)
    assert.truthy(contains(err, "\nconverged\n"), err)
    local rows = jsonl(out)
    assert.are.equal(2, #rows)
    assert.are.same({ plan = "pro", team = "a" }, rows[1].labels)
    assert.are.same({ plan = "free", team = "a" }, rows[2].labels)
    local accts = live_accounts()
    assert.are.equal(4, accts["a1@lab.test"].maxJobs)
    assert.are.equal(5, accts["a2@lab.test"].maxJobs)
    assert.are.equal(2, accts["b1@lab.test"].maxJobs) -- left alone
    assert.are.equal(2, accts["n1@lab.test"].maxJobs) -- left alone
    assert.truthy(accts["old@lab.test"], "a filtered apply deleted an account outside the selection")

    -- CSV result rows carry the labels column too.
    rc, out = run("apply " .. f .. " --label team=b --yes --csv")
    assert.are.equal(0, rc)
    local csv, head = csv_rows(out)
    assert.are.equal("labels", head[#head])
    assert.are.equal(1, #csv)
    assert.are.equal("team=b", csv[1].labels)

    -- The same command without --label does prune: the test above could fail.
    d, rc = sb:requests_during(function() return run("apply " .. f .. " --prune --yes --json") end)
    assert.are.equal(0, rc)
    assert.are.equal(1, d["DELETE " .. prefix .. "/accounts/" .. esc("old@lab.test")])
    assert.is_nil(live_accounts()["old@lab.test"])
  end)

  it("a saved plan keeps the selection: apply PLAN.json does the same, and refuses --label", function()
    local f = fleet_file()
    local plan_path = tmp .. "/plan.json"
    local rc, _, err = run("plan " .. f .. " --label team=b --prune --out " .. clih.q(plan_path))
    assert.are.equal(0, rc, err)
    local saved = cjson.decode(clih.slurp(plan_path))
    assert.are.same({ team = "b" }, saved.labels)
    assert.are.equal(1, #saved.rows)
    assert.are.equal("b1@lab.test", saved.rows[1].email)
    assert.are.same({ team = "b" }, saved.rows[1].labels)

    local d
    d, rc, _, err = sb:requests_during(function() return run("apply " .. clih.q(plan_path) .. " --label team=a --yes") end)
    assert.are.equal(2, rc)
    assert.truthy(contains(err, "--label is for fleet files; a saved plan keeps the selection it was made with"), err)
    assert.are.same({}, d)

    local out
    d, rc, out, err = sb:requests_during(function() return run("apply " .. clih.q(plan_path) .. " --yes") end)
    assert.are.equal(0, rc, err)
    assert.truthy(contains(err, "the saved plan covers only the accounts with the labels team=b"), err)
    assert.are.equal(1, sandbox.writes(d))
    assert.truthy(out:find("\nLINE%s+OP%s.-%sLABELS%s+MESSAGE\n"), out) -- the table's LABELS column
    assert.truthy(out:find("b1@lab%.test%s.-%steam=b%s+maxJobs set to 6\n"), out)
    local accts = live_accounts()
    assert.are.equal(6, accts["b1@lab.test"].maxJobs)
    assert.are.equal(2, accts["a1@lab.test"].maxJobs)
    assert.truthy(accts["old@lab.test"])
  end)

  it("refuses a malformed --label, or one matching no account, before any request (exit 2)", function()
    local f = fleet_file()
    local cases = {
      { "--label team", "--label 'team' is not KEY=VALUE" },
      { "--label 9team=a", "--label: key '9team' is not a name" },
      { "--label team=", "--label: the value of 'team' is empty" },
      { "--label team=a --label team=b", "--label 'team' is given twice" },
      { "--label team=a=b", "--label: the value of 'team' must not contain ';' or '='" },
      { "--label " .. SENTINEL .. "=x", "--label: key (a 36-byte value, not shown) is not a name" },
      { "--label team=zz", "no account of " .. tmp .. "/fleet.csv has the labels team=zz" },
      { "--label team=a --label plan=gold", "has the labels plan=gold, team=a (every --label must match)" },
    }
    local commands = { "plan " .. f, "apply " .. f .. " --yes", "status --fleet " .. f,
      "usage --all --fleet " .. f }
    for _, cmd in ipairs(commands) do
      for _, c in ipairs(cases) do
        local d, rc, out, err = sb:requests_during(function() return run(cmd .. " " .. c[1]) end)
        local what = cmd .. " " .. c[1]
        assert.are.equal(2, rc, what .. ": " .. err)
        assert.truthy(contains(err, c[2]), what .. ": " .. err)
        assert.are.equal("", out, what)
        assert.are.same({}, d, what)
      end
    end
  end)

  it("--label needs --fleet on status and usage --all; --fleet and --label go with usage --all", function()
    for _, c in ipairs({
      { "status --label team=a", "--label needs --fleet FILE" },
      { "usage --all --label team=a", "--label needs --fleet FILE" },
      { "usage a1@lab.test --fleet " .. fleet_file(), "--fleet goes with --all" },
      { "usage a1@lab.test --label team=a", "--label goes with --all" },
    }) do
      local d, rc, _, err = sb:requests_during(function() return run(c[1]) end)
      assert.are.equal(2, rc, c[1] .. ": " .. err)
      assert.truthy(contains(err, c[2]), c[1] .. ": " .. err)
      assert.are.same({}, d, c[1])
    end
  end)

  it("reports a malformed fleet file label with its line before any request, on every command", function()
    local bad = fleet_file("email,labels\na1@lab.test,team=a\nb1@lab.test,team=" .. SENTINEL .. ";team=c\n"
      .. "n1@lab.test,x\n", "bad.csv")
    for _, cmd in ipairs({ "plan " .. bad, "apply " .. bad .. " --yes", "status --fleet " .. bad,
      "usage --all --fleet " .. bad }) do
      local d, rc, _, err = sb:requests_during(function() return run(cmd) end)
      assert.are.equal(2, rc, cmd)
      assert.truthy(contains(err, tmp .. "/bad.csv: line 3: labels: key 'team' appears twice"), cmd .. ": " .. err)
      assert.truthy(contains(err, tmp .. "/bad.csv: line 4: labels: entry 1 has no '='"), cmd .. ": " .. err)
      assert.are.same({}, d, cmd)
    end
  end)

  it("status --fleet reports only the fleet's accounts, with labels; --label only its selection", function()
    local f = fleet_file(FLEET .. "gone@lab.test,,,team=a\n")
    local d, rc, out, err = sb:requests_during(function() return run("status --fleet " .. f .. " --json") end)
    assert.are.equal(0, rc, err)
    local rows = jsonl(out)
    local got = {}
    for i, r in ipairs(rows) do got[i] = r.email end
    assert.are.same({ "a1@lab.test", "a2@lab.test", "b1@lab.test", "n1@lab.test" }, got) -- not old@
    assert.are.same({ plan = "pro", team = "a" }, rows[1].labels)
    assert.are.same({}, rows[4].labels)
    assert.is_nil(d["GET " .. prefix .. "/accounts/" .. esc("old@lab.test")])
    assert.truthy(contains(err, "1 account of " .. tmp .. "/fleet.csv is not live (flowmusic plan shows what to do): "
      .. "gone@lab.test"), err)
    assert.truthy(contains(err, "4 accounts: 4 ok"), err)

    d, rc, out = sb:requests_during(function() return run("status --fleet " .. f .. " --label team=a --csv") end)
    assert.are.equal(0, rc)
    local csv, head = csv_rows(out)
    assert.are.equal("labels", head[#head])
    assert.are.equal(2, #csv)
    assert.are.equal("plan=pro;team=a", csv[1].labels)
    assert.are.equal("plan=free;team=a", csv[2].labels)
    local lives = 0
    for k, n in pairs(d) do
      if k:match("^GET " .. prefix:gsub("%p", "%%%0") .. "/accounts/") then lives = lives + n end
    end
    assert.are.equal(2, lives) -- a live call for a1 and a2 only

    -- The table shows a LABELS column; without --fleet neither it nor the JSON key is there.
    rc, out = run("status --fleet " .. f)
    assert.are.equal(0, rc)
    assert.truthy(clih.lines(out)[1]:find("%sLABELS%s+MESSAGE$"), out)
    assert.truthy(contains(out, "plan=free;team=a"), out)
    rc, out = run("status --json")
    assert.are.equal(0, rc)
    assert.are.equal(5, #jsonl(out))
    assert.is_nil(out:find('"labels"', 1, true))
  end)

  it("status --fleet --prometheus adds label_<key> to flowmusic_account_info, escaped", function()
    local f = fleet_file((FLEET:gsub("n1@lab.test,3,,", 'n1@lab.test,3,,"note=say ""hi"" \\ ok;team=n"')))
    local path = tmp .. "/labels.prom"
    local rc, _, err = run("status --fleet " .. f .. " --prometheus " .. clih.q(path))
    assert.are.equal(0, rc, err)
    local text = clih.slurp(path)
    local m = metrics.parse(text)
    local a1 = m:find("flowmusic_account_info", { email = "a1@lab.test" })
    assert.are.equal(1, #a1)
    assert.are.equal("a", a1[1].labels.label_team)
    assert.are.equal("pro", a1[1].labels.label_plan)
    assert.are.equal(1, a1[1].value)
    assert.are.equal(1, m:value("flowmusic_account_info", { email = "n1@lab.test", label_team = "n",
      label_note = 'say "hi" \\ ok' }))
    assert.truthy(contains(text, 'label_note="say \\"hi\\" \\\\ ok",label_team="n"'), text)
    assert.is_nil(m:find("flowmusic_account_info", { email = "old@lab.test" })[1])
    if metrics.have_promtool() then
      local ok, pout = metrics.promtool(text)
      assert(ok, pout)
    end
    -- Without --fleet: no label_ labels at all.
    rc = run("status --prometheus " .. clih.q(path))
    assert.are.equal(0, rc)
    local info = metrics.parse(clih.slurp(path)):find("flowmusic_account_info")
    assert.are.equal(5, #info)
    for _, sample in ipairs(info) do
      for k in pairs(sample.labels) do assert.is_nil(k:find("^label_"), k) end
    end
  end)

  it("status --state with --label leaves the other accounts' known states alone", function()
    local f = fleet_file()
    local state = clih.q(tmp .. "/status.json")
    local rc, out = run("status --state " .. state .. " --changes-only --json")
    assert.are.equal(0, rc)
    assert.are.equal(5, #jsonl(out)) -- every account appeared
    rc, out = run("status --state " .. state .. " --fleet " .. f .. " --label team=b --changes-only --json")
    assert.are.equal(0, rc)
    assert.are.equal("", out) -- no 'disappeared' for the accounts outside the selection
    rc, out = run("status --state " .. state .. " --changes-only --json")
    assert.are.equal(0, rc)
    assert.are.equal("", out)
    api("DELETE", "/accounts/" .. esc("b1@lab.test"))
    rc, out = run("status --state " .. state .. " --fleet " .. f .. " --label team=b --changes-only --json")
    assert.are.equal(0, rc)
    local events = jsonl(out)
    assert.are.equal(1, #events)
    assert.are.equal("disappeared", events[1].event)
    assert.are.equal("b1@lab.test", events[1].email)
  end)

  it("usage --all --fleet --label reads only the selection, with labels on account rows", function()
    local f = fleet_file()
    local d, rc, out, err = sb:requests_during(function()
      return run("usage --all --fleet " .. f .. " --label team=a --by account --json")
    end)
    assert.are.equal(0, rc, err)
    local rows = jsonl(out)
    assert.are.equal(2, #rows)
    assert.are.equal("a1@lab.test", rows[1].email)
    assert.are.same({ plan = "pro", team = "a" }, rows[1].labels)
    assert.are.same({ plan = "free", team = "a" }, rows[2].labels)
    local usage_calls = 0
    for k, n in pairs(d) do
      if k:find("/accounts/usage", 1, true) then usage_calls = usage_calls + n end
    end
    assert.are.equal(2, usage_calls)

    rc, out = run("usage --all --fleet " .. f .. " --csv")
    assert.are.equal(0, rc)
    local csv, head = csv_rows(out)
    assert.are.equal("labels", head[#head])
    local accounts = {}
    for _, r in ipairs(csv) do
      if r.section == "account" then accounts[r.email] = r.labels
      else assert.are.equal("", r.labels) end
    end
    assert.are.same({ ["a1@lab.test"] = "plan=pro;team=a", ["a2@lab.test"] = "plan=free;team=a",
      ["b1@lab.test"] = "team=b", ["n1@lab.test"] = "" }, accounts)

    -- The account table shows the labels; without --fleet the CSV has no labels column.
    rc, out = run("usage --all --fleet " .. f .. " --by account")
    assert.are.equal(0, rc)
    assert.truthy(contains(out, "LABELS"), out)
    assert.truthy(contains(out, "plan=pro;team=a"), out)
    rc, out = run("usage --all --by account --csv")
    assert.are.equal(0, rc)
    assert.is_nil(clih.lines(out)[1]:find("labels", 1, true))
  end)

  it("never prints the API token or the sentinel anywhere", function()
    for _, s in ipairs(seen) do
      for i = 1, #SENTINEL - 7 do assert.is_nil(s:find(SENTINEL:sub(i, i + 7), 1, true), s) end
      assert.is_nil(s:find(API_TOKEN, 1, true))
      assert.is_nil(s:find("LabelSpecSecret", 1, true))
    end
    assert.truthy(#seen > 40)
  end)
end)
