-- Change alerts: `flowmusic status --state FILE --changes-only`, the history, `--notify URL`
-- to a real local webhook receiver, `--notify-cmd`, `--remind`, the state file's rules (0600,
-- one run at a time, corrupt or foreign files refused), and `flowmusic history`. The long
-- sequence and the concurrent runs are #once (Lua 5.4 only): the other suites run the rest.
local sandbox = require "spec.helpers.sandbox"
local webhook = require "spec.helpers.webhook"
local cli = require "spec.helpers.cli"
local jsonl = cli.jsonl
local cjson = require "cjson"
local socket = require "socket"

local API_TOKEN = "user:5353-AlertsSpecSecret7"
local EVENT_KEYS = { "at", "email", "event", "from", "to", "reason", "credits_remaining" }

local function contains(hay, needle) return tostring(hay):find(needle, 1, true) ~= nil end

local mode_of = cli.mode_of

-- "email event" of each event, for comparisons.
local function names(list)
  local t = {}
  for i, e in ipairs(list) do t[i] = e.email .. " " .. e.event end
  return t
end

describe("flowmusic status --state (change alerts)", function()
  local sb, c, hook, dir

  local function add(token)
    local code, body = sb:api("POST", "/accounts", { json = { refresh_token = token } })
    assert(code == 200 or code == 201, cjson.encode(body))
  end

  local function remove(email)
    assert.equal(204, (sb:api("DELETE", "/accounts/" .. email)))
  end

  -- One watched run: exit code, stdout, stderr (no secret in either).
  local function watch(extra, env)
    local code, out, err = c:run("status --state " .. cli.q(dir .. "/status.json") .. " --min-credits 500 "
      .. (extra or ""), { env = env })
    assert.falsy(contains(out, API_TOKEN) or contains(err, API_TOKEN))
    return code, out, err
  end

  before_each(function()
    sb = sandbox.start { token = API_TOKEN }
    c = cli.new { env = cli.env_with { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb.base_url } }
    dir = c.tmp .. "/state"
    os.execute("mkdir -p " .. cli.q(dir))
    hook = webhook.start()
  end)

  after_each(function()
    hook:stop()
    c:close()
    sb:stop()
  end)

  it("delivers each event of a sequence exactly once, keeps them while the receiver is down, and records the history #once", function()
    local A, C, D = "a@alerts.test", "c@alerts.test", "d@alerts.test"
    add("sandbox:plus:" .. A)
    add("sandbox:starter:" .. C) -- 1000 credits: above --min-credits 500
    local notify = "--changes-only --json --notify " .. cli.q(hook.url)

    -- run 1: both accounts appear
    local code, out, err = watch(notify)
    assert.equal(0, code, err)
    local printed = jsonl(out)
    assert.same({ A .. " appeared", C .. " appeared" }, names(printed))
    for _, e in ipairs(printed) do -- exactly the documented keys, in order
      local keys = {}
      for k in cli.lines(out)[1]:gmatch('"([%w_]+)":') do keys[#keys + 1] = k end
      assert.same(EVENT_KEYS, keys)
      assert.equal("ok", e.to)
      assert.equal(cjson.null, e.from)
    end
    assert.same({ A .. " appeared", C .. " appeared" }, names(hook:bodies()))

    -- run 2: A breaks (error state)
    add("sandbox:broken:" .. A)
    code, out, err = watch(notify)
    assert.equal(1, code, err) -- needs_reauth is in the default --fail-on
    printed = jsonl(out)
    assert.same({ A .. " needs_reauth" }, names(printed))
    assert.equal("ok", printed[1].from)
    assert.equal("needs_reauth", printed[1].to)
    assert.truthy(contains(printed[1].reason, "re-add"))
    assert.equal(3, #hook:bodies())

    -- run 3: the receiver is down; A is re-added (recovered), D appears
    hook:down()
    add("sandbox:plus:" .. A)
    add("sandbox:plus:" .. D)
    code, out, err = watch(notify)
    assert.equal(1, code) -- not delivered
    assert.same({ A .. " recovered", D .. " appeared" }, names(jsonl(out)))
    assert.truthy(contains(err, "not delivered (kept for the next run)"), err)
    local state = cjson.decode(cli.slurp(dir .. "/status.json"))
    assert.equal(2, #state.pending)

    -- run 4: the receiver is back; C's credits fall under the minimum
    hook:up()
    add("sandbox:low:" .. C) -- 3 credits
    code, out, err = watch(notify)
    assert.equal(0, code, err)
    assert.same({ C .. " low_credits" }, names(jsonl(out)))
    -- the backlog first, in order, then the new event; nothing twice
    local got = hook:bodies()
    assert.same({ A .. " appeared", C .. " appeared", A .. " needs_reauth", A .. " recovered",
      D .. " appeared", C .. " low_credits" }, names(got))
    assert.equal("ok", got[6].from)
    assert.equal(3, got[6].credits_remaining)
    assert.truthy(contains(got[6].reason, "below the minimum of 500"))
    for _, r in ipairs(hook:requests()) do
      assert.equal("POST", r.method)
      assert.equal(false, r.authorization) -- the API token never goes to a webhook
      assert.truthy(contains(r.content_type, "application/json"))
    end
    state = cjson.decode(cli.slurp(dir .. "/status.json"))
    assert.equal(0, #(state.pending[1] and state.pending or {}))

    -- run 5: nothing changed: nothing printed, nothing sent
    code, out, err = watch(notify)
    assert.equal(0, code, err)
    assert.equal("", out)
    assert.equal(6, #hook:bodies())

    -- D disappears
    remove(D)
    code, out = watch(notify)
    assert.equal(0, code)
    local gone = jsonl(out)
    assert.same({ D .. " disappeared" }, names(gone))
    assert.equal("ok", gone[1].from)
    assert.equal(cjson.null, gone[1].to)

    -- the history has every event with its time; recovered says how long A was down
    local hcode, hout, herr = c:run("history --state " .. cli.q(dir .. "/status.json") .. " --json")
    assert.equal(0, hcode, herr)
    local hist = jsonl(hout)
    assert.same({ A .. " appeared", C .. " appeared", A .. " needs_reauth", A .. " recovered",
      D .. " appeared", C .. " low_credits", D .. " disappeared" }, names(hist))
    for _, e in ipairs(hist) do assert.truthy(e.at:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"), e.at) end
    assert.is_number(hist[4].down_seconds)
    assert.truthy(hist[4].down_seconds >= 0)
    -- one account, as a table
    hcode, hout = c:run("history " .. A .. " --history " .. cli.q(dir .. "/status.history.jsonl"))
    assert.equal(0, hcode)
    local rows = cli.lines(hout)
    assert.equal(4, #rows) -- header + appeared, needs_reauth, recovered
    assert.truthy(rows[1]:match("^AT%s+EMAIL%s+EVENT%s+FROM%s+TO%s+DOWN FOR%s+REASON"))
    assert.truthy(rows[4]:match("recovered%s+needs_reauth%s+ok%s+%d+s"), rows[4])
    -- --since a day after today: nothing
    hcode, hout = c:run("history --state " .. cli.q(dir .. "/status.json") .. " --since 2999-01-01 --json")
    assert.equal(0, hcode)
    assert.equal("", hout)
  end)

  it("writes the state file and the history with mode 0600, and prints the whole status without --changes-only", function()
    add("sandbox:plus:a@alerts.test")
    local code, out = watch("")
    assert.equal(0, code)
    assert.truthy(contains(out, "1 account: 1 ok"))
    assert.equal("600", mode_of(dir .. "/status.json"))
    assert.equal("600", mode_of(dir .. "/status.history.jsonl"))
    local doc = cjson.decode(cli.slurp(dir .. "/status.json"))
    assert.equal("flowmusic-status-state", doc.format)
    assert.equal("ok", doc.accounts["a@alerts.test"].state)
    -- a history elsewhere
    add("sandbox:plus:b@alerts.test")
    code = watch("--history " .. cli.q(dir .. "/elsewhere.jsonl"))
    assert.equal(0, code)
    assert.equal("600", mode_of(dir .. "/elsewhere.jsonl"))
    assert.same({ "b@alerts.test appeared" }, names(jsonl(cli.slurp(dir .. "/elsewhere.jsonl"))))
  end)

  it("lets two concurrent runs leave a valid state file and no duplicate event #once", function()
    for i = 1, 4 do add(("sandbox:plus:n%d@alerts.test"):format(i)) end
    -- slow live calls, so the two runs overlap
    sb:fault { fault = "latency", ms = 400, method = "GET", path = "/v1/flowmusic/accounts/*", count = 0 }
    local argv = "status --state " .. cli.q(dir .. "/status.json") .. " --changes-only --json --notify " .. cli.q(hook.url)
    local r1, r2 = c:spawn(argv), c:spawn(argv)
    local code1, code2 = r1.wait(60), r2.wait(60)
    assert.equal(0, code1, r1.err())
    assert.equal(0, code2, r2.err())
    -- one of them saw the four accounts appear; the other, after it, saw nothing new
    local outs = { jsonl(r1.out()), jsonl(r2.out()) }
    table.sort(outs, function(a, b) return #a > #b end)
    assert.equal(4, #outs[1])
    assert.equal(0, #outs[2])
    assert.equal(4, #hook:bodies())
    local doc = cjson.decode(cli.slurp(dir .. "/status.json"))
    assert.equal("flowmusic-status-state", doc.format)
    local n = 0
    for _ in pairs(doc.accounts) do n = n + 1 end
    assert.equal(4, n)
    assert.equal(4, #jsonl(cli.slurp(dir .. "/status.history.jsonl")))
  end)

  it("a run stopped by SIGINT makes no events, sends nothing and leaves the state as it was #once", function()
    add("sandbox:plus:a@alerts.test")
    local code, _, err = watch("--changes-only --notify " .. cli.q(hook.url))
    assert.equal(0, code, err)
    assert.equal(1, #hook:requests()) -- appeared
    local state = cli.slurp(dir .. "/status.json")
    local history = cli.slurp(dir .. "/status.history.jsonl")
    remove("a@alerts.test") -- would be 'disappeared'; the slow list keeps the run in flight
    socket.sleep(1.05) -- (a state file saved again would have another updated_at)
    sb:fault { fault = "latency", ms = 20000, method = "GET", path = "/v1/flowmusic/accounts" }
    local lists = sb:requests().by["GET /v1/flowmusic/accounts"] or 0
    local h = c:spawn("status --state " .. cli.q(dir .. "/status.json") .. " --changes-only --notify " .. cli.q(hook.url))
    local t0 = socket.gettime()
    while (sb:requests().by["GET /v1/flowmusic/accounts"] or 0) <= lists do
      assert(socket.gettime() - t0 < 10, "the run never asked for the accounts")
      socket.sleep(0.02)
    end
    h.signal("INT")
    assert.equal(130, h.wait(15), h.err())
    assert.truthy(contains(h.err(), "interrupted"), h.err())
    assert.equal("", h.out())
    assert.equal(1, #hook:requests())
    assert.equal(state, cli.slurp(dir .. "/status.json"))
    assert.equal(history, cli.slurp(dir .. "/status.history.jsonl"))
    sb:clear_faults()
  end)

  it("refuses a corrupt or foreign state file (exit 2), leaving it, the history and the receiver untouched", function()
    add("sandbox:plus:a@alerts.test")
    for _, text in ipairs({ "{not json", '{"hello":1}', '{"format":"flowmusic-status-state","version":99}',
      '{"format":"flowmusic-status-state","version":1,"accounts":{"a@x":{"state":7}},"pending":[]}', "" }) do
      cli.spit(dir .. "/status.json", text)
      local code, out, err = watch("--changes-only --notify " .. cli.q(hook.url))
      assert.equal(2, code, err)
      assert.equal("", out)
      assert.truthy(contains(err, dir .. "/status.json"), err)
      assert.truthy(contains(err, "is not a flowmusic status state file"), err)
      assert.equal(text, cli.slurp(dir .. "/status.json"))
    end
    assert.equal(0, #hook:requests())
    assert.equal("", cli.slurp(dir .. "/status.history.jsonl"))
  end)

  it("needs --state for the alert options", function()
    for _, opt in ipairs({ "--changes-only", "--history h.jsonl", "--notify http://127.0.0.1:1/x",
      "--notify-cmd true", "--remind 1h" }) do
      local code, _, err = c:run("status " .. opt)
      assert.equal(2, code, err)
      assert.truthy(contains(err, "needs --state FILE"), err)
    end
    local code, _, err = c:run("status --state " .. cli.q(dir .. "/s.json") .. " --remind soon")
    assert.equal(2, code)
    assert.truthy(contains(err, "--remind must be a duration"), err)
    code, _, err = c:run("status --state " .. cli.q(dir .. "/s.json") .. " --notify ftp://127.0.0.1/x")
    assert.equal(2, code)
    assert.truthy(contains(err, "--notify: webhook URL must start with https:// or http://"), err)
    code, _, err = c:run("status --state " .. cli.q(dir .. "/s.json") .. " --notify http://hooks.example/x")
    assert.equal(2, code)
    assert.truthy(contains(err, "only allowed to loopback hosts"), err)
  end)

  it("keeps credentials and query tokens of the webhook URL out of every output", function()
    add("sandbox:plus:a@alerts.test")
    local url = hook.url:gsub("^http://", "http://hookuser:HookPassw0rd@") .. "?token=QueryT0kenSecret"
    hook:down()
    local code, out, err = watch("--changes-only --verbose --json --notify " .. cli.q(url))
    assert.equal(1, code)
    assert.truthy(contains(err, "not delivered"), err)
    for _, text in ipairs({ out, err, cli.slurp(dir .. "/status.json"), cli.slurp(dir .. "/status.history.jsonl") }) do
      assert.falsy(contains(text, "HookPassw0rd"))
      assert.falsy(contains(text, "QueryT0kenSecret"))
      assert.falsy(contains(text, "hookuser:"))
    end
    hook:up()
    local _
    code, _, err = watch("--changes-only --verbose --notify " .. cli.q(url))
    assert.equal(0, code, err)
    assert.truthy(contains(err, "notify http://***@127.0.0.1:" .. hook.port .. "/hook?*** appeared a@alerts.test: 200"), err)
    assert.falsy(contains(err, "HookPassw0rd"))
    local r = hook:requests()
    assert.equal(1, #r)
    assert.equal("/hook?token=QueryT0kenSecret", r[1].path)
    assert.truthy(tostring(r[1].authorization):match("^Basic "), "credentials go as basic authentication")
  end)

  it("runs --notify-cmd with the event on standard input, and keeps the event when it fails", function()
    add("sandbox:plus:a@alerts.test")
    local got = dir .. "/got.jsonl"
    local code, _, err = watch("--changes-only --notify-cmd " .. cli.q("cat >> " .. cli.q(got) .. "; exit 3"))
    assert.equal(1, code)
    assert.truthy(contains(err, "--notify-cmd exited with status 3"), err)
    code, _, err = watch("--changes-only --notify-cmd " .. cli.q("cat >> " .. cli.q(got)))
    assert.equal(0, code, err)
    local list = jsonl(cli.slurp(got))
    assert.same({ "a@alerts.test appeared", "a@alerts.test appeared" }, names(list)) -- the failed try, then the delivery
    code = watch("--changes-only --notify-cmd " .. cli.q("cat >> " .. cli.q(got)))
    assert.equal(0, code)
    assert.equal(2, #jsonl(cli.slurp(got))) -- delivered once: never again
  end)

  it("reminds of a state that is still bad at most once per --remind", function()
    add("sandbox:broken:a@alerts.test")
    local code, out = watch("--changes-only --json --remind 0.5s")
    assert.equal(1, code)
    assert.same({ "a@alerts.test appeared" }, names(jsonl(out)))
    code, out = watch("--changes-only --json --remind 1h")
    assert.equal(1, code)
    assert.equal("", out) -- too soon
    socket.sleep(0.6)
    code, out = watch("--changes-only --json --remind 0.5s")
    assert.equal(1, code)
    local list = jsonl(out)
    assert.same({ "a@alerts.test reminder" }, names(list))
    assert.equal("needs_reauth", list[1].from)
    assert.equal("needs_reauth", list[1].to)
  end)
end)
