-- The flowmusic command line, run as a subprocess against a private sandbox:
-- every subcommand, the three output modes, batch files (good, malformed, unknown-account
-- and fault-injected rows), dry runs, exit codes and the absence of secrets in any output.
local sandbox = require "spec.helpers.sandbox"
local clih = require "spec.helpers.cli"
local cjson = require "cjson"

local LUA = ({ ["Lua 5.1"] = "lua5.1", ["Lua 5.2"] = "lua5.2", ["Lua 5.3"] = "lua5.3",
  ["Lua 5.4"] = "lua5.4" })[_VERSION] or "lua"
local API_TOKEN = "user:4242-CliSpecSecretToken7"

local sb, tmp
local seen_output = {}   -- every stdout and stderr, checked for secrets at the end
local secrets = { API_TOKEN }

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local spit = clih.spit

-- A refresh token file in the temp dir; the token is remembered as a secret.
local function token_file(name, token)
  secrets[#secrets + 1] = token
  return spit(tmp .. "/" .. name, token .. "\n")
end

local runs = 0

--- Run `flowmusic <argv>`; returns exit code, stdout, stderr.
-- opts: env (table; default the sandbox's token and URL, `false` values unset), stdin (text)
local function run(argv, opts)
  opts = opts or {}
  -- A state directory of its own per run (the used-token store is spec 63's), no config file.
  runs = runs + 1
  local env = { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb.base_url,
    FLOWMUSIC_STATE_DIR = tmp .. "/state" .. runs, XDG_CONFIG_HOME = tmp .. "/config" }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local parts = { "env -u USEAPI_TOKEN -u FLOWMUSIC_BASE_URL -u FLOWMUSIC_PROFILE -u FLOWMUSIC_MIN_CREDITS" }
  for k, v in pairs(env) do
    if v then parts[#parts + 1] = k .. "=" .. q(v) end
  end
  parts[#parts + 1] = LUA .. " bin/flowmusic " .. argv
  local out, err, rc = tmp .. "/out", tmp .. "/err", tmp .. "/rc"
  local stdin = opts.stdin and spit(tmp .. "/stdin", opts.stdin) or "/dev/null"
  os.execute("(" .. table.concat(parts, " ") .. ") <" .. q(stdin) .. " >" .. q(out) .. " 2>" .. q(err)
    .. "; echo $? >" .. q(rc))
  local o, e = slurp(out), slurp(err)
  if not opts.unchecked then
    seen_output[#seen_output + 1] = o
    seen_output[#seen_output + 1] = e
  end
  return tonumber(slurp(rc):match("%d+")), o, e
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function jsonl(s)
  local t = {}
  for _, l in ipairs(lines(s)) do t[#t + 1] = cjson.decode(l) end
  return t
end

local function contains(hay, needle) return hay:find(needle, 1, true) ~= nil end

local function assert_no_secret(text, where)
  for _, s in ipairs(secrets) do
    assert(not contains(text, s), "a secret appeared in " .. (where or "the output"))
  end
end

describe("flowmusic CLI", function()
  lazy_setup(function()
    sb = sandbox.start { token = API_TOKEN }
    local p = io.popen("mktemp -d")
    tmp = p:read("*l")
    p:close()
  end)

  lazy_teardown(function()
    if sb then sb:stop() end
    for i, text in ipairs(seen_output) do assert_no_secret(text, "output #" .. i) end
    if tmp then os.execute("rm -rf " .. q(tmp)) end
  end)

  before_each(function() sb:reset() end)

  describe("help", function()
    it("flowmusic --help lists every command with examples", function()
      local code, out = run("--help")
      assert.equal(0, code)
      for _, word in ipairs({ "accounts", "usage", "batch", "sandbox", "--json", "--csv",
                              "--token-file", "--base-url", "examples:", "exit status" }) do
        assert.truthy(contains(out, word), word)
      end
    end)

    it("every command has --help", function()
      for _, cmd in ipairs({ "accounts", "usage", "batch", "sandbox" }) do
        local code, out = run(cmd .. " --help")
        assert.equal(0, code, cmd)
        assert.truthy(out:find("^Usage: flowmusic " .. cmd), cmd)
      end
      local _, out = run("accounts --help")
      for _, w in ipairs({ "list", "get EMAIL", "--refresh-token-file", "set-max-jobs EMAIL N",
                           "delete EMAIL", "--max-jobs", "examples:" }) do
        assert.truthy(contains(out, w), w)
      end
      _, out = run("batch --help")
      for _, w in ipairs({ "op,email,max_jobs,refresh_token_file", "--dry-run", "--concurrency",
                           "set-max-jobs", "usage", "examples:" }) do
        assert.truthy(contains(out, w), w)
      end
      _, out = run("usage --help")
      assert.truthy(contains(out, "--by day|account|type|song"))
      assert.equal(0, (run("accounts set-max-jobs --help")))
    end)

    it("no command, or an unknown one, is a usage error", function()
      local code, _, err = run("")
      assert.equal(2, code)
      assert.truthy(contains(err, "Usage: flowmusic"))
      code, _, err = run("frobnicate")
      assert.equal(2, code)
      assert.truthy(contains(err, "unknown command 'frobnicate'"))
    end)
  end)

  describe("accounts", function()
    it("add reads the token from a file, reports created, and never prints it", function()
      local f = token_file("alice.txt", "sandbox:plus:alice@example.com")
      local code, out, err = run("accounts add --refresh-token-file " .. q(f) .. " --max-jobs 3 --verbose")
      assert.equal(0, code, err)
      assert.truthy(out:find("result:%s+added"))
      assert.truthy(out:find("email:%s+alice@example.com"))
      assert.truthy(out:find("maxJobs:%s+3"))
      assert.truthy(err:find("add account: 201, 1 attempt"))
      -- A second add refreshes.
      code, out = run("accounts add --refresh-token-file=" .. q(f) .. " --json")
      assert.equal(0, code)
      local row = jsonl(out)[1]
      assert.equal("refreshed", row.result)
      assert.equal("alice@example.com", row.email)
      assert.is_nil(row.refresh_token)
      assert.is_nil(row.access_token)
    end)

    it("add reads the token from standard input with - or --refresh-token-file -", function()
      secrets[#secrets + 1] = "sandbox:free:bob@example.com"
      local code, out = run("accounts add - --csv", { stdin = "sandbox:free:bob@example.com\n" })
      assert.equal(0, code)
      local l = lines(out)
      assert.equal(2, #l)
      assert.truthy(l[1]:find("^result,email,tier,"))
      assert.truthy(l[2]:find("^added,bob@example.com,free,"))
      code = run("accounts add --refresh-token-file -", { stdin = "sandbox:free:bob@example.com" })
      assert.equal(0, code)
    end)

    it("add refuses a token on the command line, without echoing it", function()
      secrets[#secrets + 1] = "sandbox:plus:argv@example.com"
      local code, out, err = run("accounts add sandbox:plus:argv@example.com")
      assert.equal(2, code)
      assert.equal("", out)
      assert.truthy(contains(err, "never taken from the command line"))
      assert.equal(0, sb:requests().total)
    end)

    it("add: bad inputs are usage errors (exit 2) and send nothing", function()
      local empty = spit(tmp .. "/empty.txt", "\n")
      local good = token_file("carol.txt", "sandbox:plus:carol@example.com")
      local cases = {
        { "accounts add", "missing the refresh token" },
        { "accounts add --refresh-token-file " .. q(empty), "is empty" },
        { "accounts add --refresh-token-file " .. q(tmp .. "/nope.txt"), "cannot read refresh token file" },
        { "accounts add --refresh-token-file " .. q(good) .. " --max-jobs 0", "integer 1-16" },
        { "accounts add --refresh-token-file " .. q(good) .. " --max-jobs 17", "integer 1-16" },
        { "accounts add --refresh-token-file " .. q(good) .. " --max-jobs 2.5", "integer 1-16" },
        { "accounts add --refresh-token-file " .. q(good) .. " --max-jobs", "requires an argument" },
        { "accounts add --refresh-token-file " .. q(good) .. " --frob", "unknown option '--frob'" },
        { "accounts add --refresh-token-file " .. q(good) .. " --json --csv", "can not be used together" },
        { "accounts add - --refresh-token-file " .. q(good), "not both" },
      }
      for _, c in ipairs(cases) do
        local code, out, err = run(c[1])
        assert.equal(2, code, c[1])
        assert.equal("", out, c[1])
        assert.truthy(contains(err, c[2]), c[1] .. " -> " .. err)
      end
      local code, _, err = run("accounts add -", { stdin = "" })
      assert.equal(2, code)
      assert.truthy(contains(err, "(standard input)' is empty"))
      assert.equal(0, sb:requests().total)
    end)

    it("add: a token the service rejects fails with exit 1", function()
      local f = token_file("fail.txt", "sandbox:fail:dave@example.com")
      local code, out, err = run("accounts add --refresh-token-file " .. q(f))
      assert.equal(1, code)
      assert.equal("", out)
      assert.truthy(contains(err, "http 400 on POST /accounts"))
    end)

    it("list in the three output modes", function()
      local emails = sb:seed(3)
      local code, out, err = run("accounts list")
      assert.equal(0, code)
      local l = lines(out)
      assert.truthy(l[1]:find("^EMAIL%s+TIER%s+MAXJOBS%s+ADDED%s+REFRESHED%s+STATE"))
      assert.equal(4, #l)
      assert.truthy(l[2]:find("^" .. emails[1]:gsub("%p", "%%%0")))
      assert.truthy(contains(err, "3 accounts"))

      code, out = run("accounts list --json")
      assert.equal(0, code)
      local rows = jsonl(out)
      assert.equal(3, #rows)
      assert.equal(emails[1], rows[1].email)
      assert.equal("number", type(rows[1].maxJobs))

      code, out = run("accounts list --csv")
      assert.equal(0, code)
      l = lines(out)
      assert.equal(4, #l)
      assert.truthy(l[1]:find("^email,tier,"))
    end)

    it("list of no accounts", function()
      local code, out = run("accounts list --json")
      assert.equal(0, code)
      assert.equal("", out)
      code, out = run("accounts list --csv")
      assert.equal(0, code)
      assert.equal(1, #lines(out))
    end)

    it("get shows remaining credits; an unknown account exits 1", function()
      local email = sb:seed(1)[1]
      local code, out = run("accounts get " .. email)
      assert.equal(0, code)
      assert.truthy(out:find("credits_remaining:%s+%d"))
      code, out = run("accounts get " .. email .. " --json")
      assert.equal(0, code)
      local row = jsonl(out)[1]
      assert.equal(email, row.email)
      assert.equal("number", type(row.credits_remaining))
      local err
      code, out, err = run("accounts get nobody@example.com")
      assert.equal(1, code)
      assert.equal("", out)
      assert.truthy(contains(err, "404"))
      -- Emails are judged by the library's rule (flowmusic.validate), before anything is sent.
      local before = sb:requests().total
      local _
      code, _, err = run("accounts get usage")
      assert.equal(2, code)
      assert.truthy(contains(err, select(2, require("flowmusic.validate").email("usage", true))), err)
      assert.equal(before, sb:requests().total)
    end)

    it("set-max-jobs changes maxJobs and checks N", function()
      local email = sb:seed(1)[1]
      local code, out = run("accounts set-max-jobs " .. email .. " 7 --json")
      assert.equal(0, code)
      local row = jsonl(out)[1]
      assert.equal("updated", row.result)
      assert.equal(7, row.maxJobs)
      for _, n in ipairs({ "0", "17", "4.5", "x", "-3" }) do
        local c, o, e = run("accounts set-max-jobs " .. email .. " -- " .. n)
        assert.equal(2, c, n)
        assert.equal("", o)
        assert.truthy(contains(e, "integer 1-16"), n .. ": " .. e)
      end
      code = run("accounts set-max-jobs " .. email)
      assert.equal(2, code)
      code = run("accounts set-max-jobs nobody@example.com 4")
      assert.equal(1, code)
    end)

    it("delete removes an account; deleting it again exits 1", function()
      local email = sb:seed(1)[1]
      local code, out = run("accounts delete " .. email)
      assert.equal(0, code)
      assert.truthy(contains(out, "deleted " .. email))
      code = run("accounts delete " .. email)
      assert.equal(1, code)
      code = run("accounts get " .. email)
      assert.equal(1, code)
    end)

    it("shows an account in error state", function()
      local f = token_file("broken.txt", "sandbox:broken:eve@example.com")
      assert.equal(0, (run("accounts add --refresh-token-file " .. q(f))))
      local code, out = run("accounts list")
      assert.equal(0, code)
      assert.truthy(out:find("eve@example.com.-error: "))
      code, out = run("accounts get eve@example.com --json")
      assert.equal(0, code)
      assert.equal("string", type(jsonl(out)[1].error))
    end)

    it("an unknown subcommand or extra argument is a usage error", function()
      assert.equal(2, (run("accounts frob")))
      assert.equal(2, (run("accounts list extra")))
      assert.equal(2, (run("accounts get")))
    end)
  end)

  describe("connection options", function()
    it("needs an API token", function()
      local code, _, err = run("accounts list", { env = { USEAPI_TOKEN = false } })
      assert.equal(2, code)
      assert.truthy(contains(err, "USEAPI_TOKEN"))
    end)

    it("reads --token-file, refuses an empty or unreadable one", function()
      local f = spit(tmp .. "/api-token", API_TOKEN .. "\n")
      assert.equal(0, (run("accounts list --token-file " .. q(f), { env = { USEAPI_TOKEN = false } })))
      local empty = spit(tmp .. "/empty-token", "")
      local code, _, err = run("accounts list --token-file " .. q(empty))
      assert.equal(2, code)
      assert.truthy(contains(err, "is empty"))
      code = run("accounts list --token-file " .. q(tmp .. "/missing"))
      assert.equal(2, code)
    end)

    it("a wrong token is a failure (401, exit 1) and is not printed", function()
      local f = spit(tmp .. "/wrong-token", "user:1-WrongSecretToken99\n")
      secrets[#secrets + 1] = "user:1-WrongSecretToken99"
      local code, _, err = run("accounts list --verbose --token-file " .. q(f))
      assert.equal(1, code)
      assert.truthy(contains(err, "401"))
    end)

    it("--base-url overrides $FLOWMUSIC_BASE_URL; bad values are usage errors", function()
      assert.equal(0, (run("accounts list --base-url " .. q(sb.base_url), { env = { FLOWMUSIC_BASE_URL = false } })))
      local code, _, err = run("accounts list --base-url ftp://x")
      assert.equal(2, code)
      assert.truthy(contains(err, "base_url"))
      assert.equal(2, (run("accounts list --timeout 0")))
      assert.equal(2, (run("accounts list --retries 99")))
    end)
  end)

  describe("usage", function()
    it("prints totals, a per-day table and per-song spend", function()
      local email = sb:seed(1)[1]
      local code, out = run("usage " .. email)
      assert.equal(0, code)
      assert.truthy(contains(out, "Usage of " .. email))
      assert.truthy(out:find("charged:%s+[%d.]+ credits"))
      assert.truthy(out:find("received:%s+%d+ tokens"))
      assert.truthy(contains(out, "Per day:"))
      assert.truthy(out:find("\n%d%d%d%d%-%d%d%-%d%d%s"))
      assert.truthy(contains(out, "Per type:"))
      assert.truthy(contains(out, "Per song:"))
      code, out = run("usage " .. email .. " --by song")
      assert.equal(0, code)
      assert.truthy(contains(out, "Per song:"))
      assert.falsy(contains(out, "Per day:"))
    end)

    it("--json and --csv rows agree with the service's summary", function()
      local email = sb:seed(1)[1]
      local _, doc = sb:api("GET", "/accounts/usage?email=" .. email:gsub("@", "%%40"))
      local code, out = run("usage " .. email .. " --json")
      assert.equal(0, code)
      local rows = jsonl(out)
      assert.equal("total", rows[1].section)
      assert.equal(doc.summary.total_received_tokens, rows[1].received_tokens)
      assert.is_true(math.abs(doc.summary.total_charged_credits - rows[1].charged_credits) < 1e-6)
      local types = 0
      for _, r in ipairs(rows) do
        if r.section == "type" then
          types = types + 1
          assert.equal(doc.summary.by_type_tokens[r.key], r.tokens)
        end
      end
      assert.truthy(types > 0)
      code, out = run("usage " .. email .. " --by day --csv")
      assert.equal(0, code)
      local l = lines(out)
      assert.truthy(l[1]:find("^section,email,key,"))
      for i = 2, #l do assert.truthy(l[i]:find("^day,")) end
    end)

    it("bad arguments are usage errors; an unknown account exits 1", function()
      assert.equal(2, (run("usage")))
      assert.equal(2, (run("usage a@x.com --by week")))
      assert.equal(2, (run("usage a@x.com b@x.com")))
      assert.equal(1, (run("usage nobody@example.com")))
    end)
  end)

  describe("batch", function()
    local batch_dir

    -- A batch in its own directory with relative token files.
    local function setup_batch(name, text)
      batch_dir = tmp .. "/b-" .. name:gsub("%W", "")
      os.execute("mkdir -p " .. q(batch_dir .. "/tokens"))
      local function tok(file, token)
        secrets[#secrets + 1] = token
        spit(batch_dir .. "/tokens/" .. file, token .. "\n")
      end
      tok("new.txt", "sandbox:starter:new@example.com")
      tok("fail.txt", "sandbox:fail:bad@example.com")
      spit(batch_dir .. "/tokens/empty.txt", "")
      return spit(batch_dir .. "/" .. name, text)
    end

    local MIXED_CSV = table.concat({
      "op,email,max_jobs,refresh_token_file",           -- 1
      "set-max-jobs,seed-01@sandbox.test,5,",            -- 2 ok
      "add,,2,tokens/new.txt",                           -- 3 ok (created)
      "set-max-jobs,seed-02@sandbox.test,99,",           -- 4 invalid: max_jobs
      "",                                                -- 5 blank: ignored
      "set-max-jobs,nobody@example.com,3,",              -- 6 failed: 404
      "get,seed-03@sandbox.test,,",                      -- 7 failed: injected 500
      "add,,,tokens/fail.txt",                           -- 8 failed: 400
      "frob,seed-01@sandbox.test,,",                     -- 9 invalid: op
      '"get","seed-02@sandbox.test",,',                  -- 10 ok (quoted fields)
      "get,seed-02@sandbox.test",                        -- 11 invalid: field count
      "add,,,tokens/empty.txt",                          -- 12 invalid: empty token file
      "usage,seed-01@sandbox.test,,",                    -- 13 ok
    }, "\n") .. "\n"

    local function prepare_mixed()
      sb:seed(3)
      sb:fault { fault = "status", code = 500, method = "GET",
                 path = "/v1/flowmusic/accounts/seed-03%40sandbox.test", count = 0 }
      return setup_batch("mixed.csv", MIXED_CSV)
    end

    local EXPECT = { [2] = "ok", [3] = "ok", [4] = "invalid", [6] = "failed", [7] = "failed",
      [8] = "failed", [9] = "invalid", [10] = "ok", [11] = "invalid", [12] = "invalid", [13] = "ok" }

    it("gives exactly one result per row, in file order, with line numbers (--json)", function()
      local file = prepare_mixed()
      local code, out, err = run("batch " .. q(file) .. " --json --retries 0 --concurrency 4")
      assert.equal(2, code) -- invalid rows are input errors
      local rows = jsonl(out)
      local n = 0
      for _ in pairs(EXPECT) do n = n + 1 end
      assert.equal(n, #rows)
      local seen = {}
      for i, r in ipairs(rows) do
        assert.is_nil(seen[r.line], "duplicate line " .. r.line)
        seen[r.line] = true
        if i > 1 then assert.truthy(r.line > rows[i - 1].line) end
        assert.equal(EXPECT[r.line], r.status, "line " .. r.line .. ": " .. tostring(r.message))
        if r.status == "invalid" then
          assert.truthy(r.message:find(("^line %d: "):format(r.line)), r.message)
          assert.truthy(contains(err, ("line %d: "):format(r.line)))
        end
      end
      local by = {}
      for _, r in ipairs(rows) do by[r.line] = r end
      assert.equal(5, by[2].max_jobs)
      assert.equal(201, by[3].http_status)
      assert.equal("new@example.com", by[3].email)
      assert.truthy(contains(by[4].message, "integer 1-16"))
      assert.equal(404, by[6].http_status)
      assert.equal(500, by[7].http_status)
      assert.equal(400, by[8].http_status)
      assert.truthy(contains(by[9].message, "unknown op 'frob'"))
      assert.truthy(contains(by[11].message, "expected 4 fields, got 2"))
      assert.truthy(contains(by[12].message, "is empty"))
      assert.truthy(contains(by[13].message, "credits"))
      assert.truthy(err:find("11 rows: 4 ok, 3 failed, 4 skipped %(invalid%)"), err)
      -- Only the valid rows were sent: 7 requests, no retries.
      assert.equal(7, sb:requests().total)
    end)

    it("prints a table and a summary line on stdout by default", function()
      local file = prepare_mixed()
      local code, out, err = run("batch " .. q(file) .. " --retries 0")
      assert.equal(2, code)
      local l = lines(out)
      assert.truthy(l[1]:find("^LINE%s+OP%s+EMAIL%s+STATUS"), l[1])
      assert.equal(1 + 11 + 1, #l)
      assert.truthy(l[#l]:find("^11 rows: 4 ok, 3 failed, 4 skipped"))
      assert.falsy(contains(err, "\r"))       -- stderr is no TTY: no progress bar
    end)

    it("--csv output is one header plus one line per row; summary on stderr", function()
      local file = prepare_mixed()
      local code, out, err = run("batch " .. q(file) .. " --csv --retries 0")
      assert.equal(2, code)
      local l = lines(out)
      assert.equal("line,op,email,status,http_status,max_jobs,attempts,elapsed_ms,message", l[1])
      assert.equal(12, #l)
      assert.truthy(contains(err, "11 rows:"))
    end)

    it("exits 1 when operations fail but every row is valid, 0 when all succeed", function()
      sb:seed(2)
      local file = setup_batch("ok.csv", "op,email,max_jobs\nset-max-jobs,seed-01@sandbox.test,4\n"
        .. "set-max-jobs,nobody@example.com,4\n")
      local code, out = run("batch " .. q(file) .. " --json")
      assert.equal(1, code)
      assert.equal(2, #jsonl(out))
      file = setup_batch("good.csv", "email,op,max_jobs\nseed-01@sandbox.test,set-max-jobs,4\n"
        .. "seed-02@sandbox.test,get,\nseed-02@sandbox.test,usage,\nseed-01@sandbox.test,delete,\n")
      code, out = run("batch " .. q(file) .. " --json --concurrency 1")
      assert.equal(0, code)
      local rows = jsonl(out)
      assert.equal(4, #rows)
      for _, r in ipairs(rows) do assert.equal("ok", r.status) end
      assert.truthy(contains(rows[3].message, "charged"))
      assert.equal("deleted", rows[4].message)
      assert.equal(1, (run("accounts get seed-01@sandbox.test")))
    end)

    it("reads JSON Lines with line numbers; a broken line still gets its result row", function()
      sb:seed(1)
      local file = setup_batch("ops.jsonl", table.concat({
        '{"op":"set-max-jobs","email":"seed-01@sandbox.test","max_jobs":6}',
        '{"op":"add","refresh_token_file":"tokens/new.txt","max_jobs":"3"}',
        '{"op":"get","email":',
        '# a comment',
        '{"op":"delete","email":"seed-01@sandbox.test","extra":1}',
        '[1,2]',
        '{"op":"get","email":"new@example.com","max_jobs":2}',
      }, "\n"))
      local code, out = run("batch " .. q(file) .. " --json --concurrency 1")
      assert.equal(2, code)
      local rows = jsonl(out)
      assert.equal(6, #rows)
      local want = { { 1, "ok" }, { 2, "ok" }, { 3, "invalid" }, { 5, "invalid" }, { 6, "invalid" },
        { 7, "invalid" } }
      for i, w in ipairs(want) do
        assert.equal(w[1], rows[i].line)
        assert.equal(w[2], rows[i].status, tostring(rows[i].message))
      end
      assert.truthy(contains(rows[3].message, "line 3: invalid JSON"))
      assert.truthy(contains(rows[4].message, "unknown key 'extra'"))
      assert.truthy(contains(rows[6].message, "get takes no max_jobs"))
      assert.equal(3, rows[2].max_jobs)
    end)

    it("--dry-run validates every row and sends nothing", function()
      local file = prepare_mixed()
      local before = sb:requests().total
      local code, out, err = run("batch " .. q(file) .. " --dry-run --json", { env = { USEAPI_TOKEN = false } })
      assert.equal(2, code)
      assert.equal(before, sb:requests().total)
      local rows = jsonl(out)
      assert.equal(11, #rows)
      for _, r in ipairs(rows) do
        assert.equal(EXPECT[r.line] == "invalid" and "invalid" or "planned", r.status)
      end
      assert.truthy(contains(err, "dry run: 11 rows, 7 planned, 4 invalid; nothing sent"))
      -- An all-valid file: exit 0.
      file = setup_batch("dry.csv", "op,email,max_jobs,refresh_token_file\nadd,,,tokens/new.txt\n")
      code, out = run("batch " .. q(file) .. " --dry-run")
      assert.equal(0, code)
      assert.truthy(contains(out, "planned"))
      assert.truthy(contains(out, "tokens/new.txt"))
      assert.equal(before, sb:requests().total)
    end)

    it("never prints a secret, even with --verbose", function()
      local file = prepare_mixed()
      local code, out, err = run("batch " .. q(file) .. " --verbose --retries 0")
      assert.equal(2, code)
      assert.truthy(err:find("line 3 add new@example.com: 201, 1 attempt"), err)
      assert_no_secret(out, "stdout")
      assert_no_secret(err, "stderr")
      local _
      _, out, err = run("batch " .. q(file) .. " --verbose --json --dry-run")
      assert_no_secret(out .. err, "dry run")
    end)

    it("draws a progress bar on stderr only when asked or on a terminal", function()
      sb:seed(2)
      local file = setup_batch("p.csv", "op,email\nget,seed-01@sandbox.test\nget,seed-02@sandbox.test\n")
      local code, out, err = run("batch " .. q(file) .. " --json --progress")
      assert.equal(0, code)
      assert.truthy(contains(err, "] 2/2"))
      assert.falsy(contains(out, "2/2"))
      local _
      _, _, err = run("batch " .. q(file) .. " --json")
      assert.falsy(contains(err, "] 2/2"))
    end)

    it("reads the batch from standard input; tokens relative to the current directory", function()
      sb:seed(1)
      local code, out = run("batch - --json", { stdin = "op,email\nget,seed-01@sandbox.test\n" })
      assert.equal(0, code)
      assert.equal(1, #jsonl(out))
    end)

    it("file-level problems are usage errors that run nothing", function()
      local cases = {
        { "batch", "missing argument 'FILE'" },
        { "batch " .. q(tmp .. "/missing.csv"), "cannot read batch file" },
        { "batch " .. q(setup_batch("hdr.csv", "op,mail\nget,a@x.com\n")), "unknown column 'mail'" },
        { "batch " .. q(setup_batch("nohdr.csv", "email\na@x.com\n")), "no 'op' column" },
        { "batch " .. q(setup_batch("empty.csv", "\n")), "empty" },
        { "batch " .. q(setup_batch("c.csv", "op,email\n")) .. " --concurrency 0", "--concurrency" },
        { "batch " .. q(setup_batch("c2.csv", "op,email\n")) .. " --format xml", "--format" },
        { "batch a.csv b.csv", "too many arguments" },
        { "batch a.csv --bogus", "unknown option '--bogus'" },
      }
      for _, c in ipairs(cases) do
        local code, out, err = run(c[1])
        assert.equal(2, code, c[1])
        assert.equal("", out, c[1])
        assert.truthy(contains(err, c[2]), c[1] .. " -> " .. err)
      end
      assert.equal(0, sb:requests().total)
    end)

    it("runs the shipped examples (CSV and JSON Lines)", function()
      for _, f in ipairs({ "alice", "alice-rotated", "bob", "carol", "dave-expired" }) do
        secrets[#secrets + 1] = slurp("examples/tokens/" .. f .. ".txt"):gsub("%s+$", "")
      end
      -- (a clone checks the token files out 0644: scripts/demo.sh makes them 0600)
      local loose = " --allow-insecure-token-file"
      assert.equal(0, (run("accounts add --refresh-token-file examples/tokens/alice.txt" .. loose)))
      assert.equal(0, (run("accounts add --refresh-token-file examples/tokens/bob.txt" .. loose)))
      for _, f in ipairs({ "examples/batch.csv", "examples/batch.jsonl" }) do
        local code, out = run("batch " .. f .. " --json" .. loose)
        assert.equal(1, code, f) -- the examples include two rows that fail on purpose
        local rows, failed = jsonl(out), 0
        assert.equal(8, #rows)
        for _, r in ipairs(rows) do
          if r.status == "failed" then failed = failed + 1 else assert.equal("ok", r.status) end
        end
        assert.equal(2, failed)
      end
    end)
  end)

  describe("sandbox command", function()
    it("is part of the same tool, and does not print a token given with --token", function()
      local code, out = run("sandbox status --dir " .. q(sb.dir))
      assert.equal(0, code)
      assert.truthy(out:find(sb.base_url, 1, true))
      code = run("sandbox status --dir " .. q(tmp .. "/no-sandbox"))
      assert.equal(1, code)
    end)
  end)
end)
