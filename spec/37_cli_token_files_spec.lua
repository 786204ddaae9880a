-- A refresh token file handed over by mistake (issue 20): given as the batch file, as the
-- fleet file of apply or plan, as a flag value or inside a file, the token is never echoed.
-- A refresh token has no known shape, so the CLI quotes a value from a file or a flag only
-- when it could be a column name (letters, digits, `_`, `-`, at most 32 bytes, no run of more
-- than 4 digits), and an unknown header cell only when the header has other cells. The
-- tokens are random each run; no 8-byte piece of one (in any letter case) may appear in
-- standard output or standard error. Genuine mistakes are still named.
local sandbox = require "spec.helpers.sandbox"
local cli = require "spec.helpers.cli"

local API_TOKEN = "user:3737-TokenFilesSpecKey"

local function contains(hay, needle) return hay:find(needle, 1, true) ~= nil end

-- Seeded from the clock and an address, so every run gets other tokens.
math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0) % 1000003)

local LOWER, DIGITS = "abcdefghijklmnopqrstuvwxyz", "0123456789"
local MIXED = LOWER .. LOWER:upper() .. DIGITS .. "-_"

local function pick(alphabet)
  local i = math.random(1, #alphabet)
  return alphabet:sub(i, i)
end

local function random_word(n, alphabet)
  local t = {}
  for i = 1, n do t[i] = pick(alphabet) end
  return table.concat(t)
end

-- The tokens of one run, by what makes them hard.
local function tokens()
  -- Letters, digits, '-' and '_' (both present).
  local mixed = random_word(29, MIXED) .. "-" .. random_word(28, MIXED) .. "_" .. pick(LOWER)
  -- Would pass a naive column-name check but for its length: lowercase, digits, '_', and no
  -- run of more than 4 digits (a letter after every 4 characters).
  local function plain(n)
    local t = {}
    for i = 1, n do t[i] = i % 5 == 0 and pick(LOWER) or pick(LOWER .. DIGITS .. "_") end
    return table.concat(t)
  end
  -- Short and column-like ('abcdefgh1234'), but the only cell of its line.
  local short = random_word(8, LOWER) .. random_word(4, DIGITS)
  return { mixed60 = mixed, plain60 = plain(60), plain40 = plain(40), short12 = short }
end

-- The tokens that can't be column names (the short one may be named, except as a lone cell).
local function long(toks)
  local t = {}
  for name, token in pairs(toks) do
    if #token > 32 then t[name] = token end
  end
  return t
end

-- The first 8-byte piece of token found in text (letter case ignored), or nil.
local function leaked(token, text)
  local hay = text:lower()
  for i = 1, #token - 7 do
    local piece = token:sub(i, i + 7)
    if hay:find(piece:lower(), 1, true) then return piece end
  end
  return nil
end

describe("flowmusic CLI: a token handed over by mistake is never echoed (issue 20)", function()
  local sb, c, dir, toks

  lazy_setup(function()
    sb = sandbox.start { token = API_TOKEN }
    c = cli.new { env = { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb.base_url } }
    dir = c.tmp
    toks = tokens()
  end)
  lazy_teardown(function()
    if c then c:close() end
    if sb then sb:stop() end
  end)
  before_each(function() sb:reset() end)

  -- Run argv: exit status 2, nothing of token in stdout or stderr, nothing sent.
  local function refused(token, argv, opts)
    local code, out, err = c:run(argv, opts)
    assert.equal(2, code, argv .. ": " .. err)
    local piece = leaked(token, out .. err)
    assert.is_nil(piece, ("%s: the piece %q of the token was echoed:\n%s%s"):format(argv, tostring(piece), out, err))
    assert.equal(0, sb:requests().total, argv)
    return out, err
  end

  it("the tokens are what the spec says", function()
    assert.equal(60, #toks.mixed60)
    assert.truthy(toks.mixed60:find("-", 1, true) and toks.mixed60:find("_", 1, true))
    assert.truthy(toks.plain60:find("^[a-z0-9_]+$") and not toks.plain60:find("%d%d%d%d%d"))
    assert.equal(40, #toks.plain40)
    assert.truthy(toks.short12:find("^[a-z]+%d%d%d%d$") and #toks.short12 <= 32)
  end)

  it("a one-line refresh token file as the batch file, the apply fleet file and the plan fleet file", function()
    for name, token in pairs(toks) do
      local f = cli.spit(dir .. "/" .. name .. ".txt", token .. "\n")
      local hidden = ("unknown column (a %d-byte value, not shown)"):format(#token)
      for _, argv in ipairs({ "batch " .. cli.q(f), "batch " .. cli.q(f) .. " --json --dry-run",
                              "apply " .. cli.q(f) .. " --yes", "plan " .. cli.q(f) }) do
        local _, err = refused(token, argv)
        assert.truthy(contains(err, "line 1 is not a header (is this a token file?)"), name .. ": " .. err)
        assert.truthy(contains(err, hidden), name .. ": " .. err)
      end
      -- The same file taken as JSON Lines (by its name or --format).
      local j = cli.spit(dir .. "/" .. name .. ".jsonl", token .. "\n")
      refused(token, "batch " .. cli.q(j) .. " --json")
      refused(token, "batch " .. cli.q(f) .. " --format jsonl --csv")
      refused(token, "plan " .. cli.q(j))
      refused(token, "apply " .. cli.q(j) .. " --yes")
    end
  end)

  it("a token among other header cells, as a JSON key, or as a value in a row", function()
    for name, token in pairs(long(toks)) do
      local f = cli.spit(dir .. "/cells-" .. name .. ".csv", "op,email," .. token .. "\nget,a@x.test,1\n")
      local _, err = refused(token, "batch " .. cli.q(f))
      assert.truthy(contains(err, "line 1 is not a header"), name .. ": " .. err)
      assert.truthy(contains(err, ("unknown column (a %d-byte value, not shown)"):format(#token)), name .. ": " .. err)
      f = cli.spit(dir .. "/fleet-cells-" .. name .. ".csv", "email," .. token:lower() .. "\na@x.test,1\n")
      refused(token, "plan " .. cli.q(f))
      -- JSON Lines: an unknown key, an op, an email and a max_jobs that are the token.
      f = cli.spit(dir .. "/rows-" .. name .. ".jsonl", table.concat({
        ('{"op":"get","email":"a@x.test","%s":1}'):format(token),
        ('{"op":"%s","email":"a@x.test"}'):format(token),
        ('{"op":"get","email":"%s"}'):format(token),
        ('{"op":"set-max-jobs","email":"a@x.test","max_jobs":"%s"}'):format(token),
      }, "\n") .. "\n")
      refused(token, "batch " .. cli.q(f) .. " --json")
      refused(token, "batch " .. cli.q(f) .. " --csv --dry-run")
      refused(token, "batch " .. cli.q(f))
      -- CSV rows: an op and a max_jobs that are the token.
      f = cli.spit(dir .. "/rows-" .. name .. ".csv",
        "op,email,max_jobs\n" .. token .. ",a@x.test,\nset-max-jobs,a@x.test," .. token .. "\n")
      refused(token, "batch " .. cli.q(f) .. " --json")
      f = cli.spit(dir .. "/fleet-rows-" .. name .. ".jsonl",
        ('{"email":"a@x.test","max_jobs":"%s"}\n{"email":"b@x.test","%s":1}\n'):format(token, token))
      refused(token, "plan " .. cli.q(f))
    end
  end)

  it("a token as the value of a flag or as a command word", function()
    for _, token in pairs(long(toks)) do
      local f = cli.spit(dir .. "/ok.csv", "op,email\nget,a@x.test\n")
      refused(token, "batch " .. cli.q(f) .. " --concurrency " .. cli.q(token))
      refused(token, "batch " .. cli.q(f) .. " --retries " .. cli.q(token))
      refused(token, "batch " .. cli.q(f) .. " --timeout " .. cli.q(token))
      refused(token, "status --fail-on " .. cli.q(token))
      refused(token, "status --fail-on " .. cli.q("ok," .. token))
      refused(token, "status --min-credits " .. cli.q(token))
      refused(token, "usage --all --since " .. cli.q(token))
      refused(token, "usage --all --by " .. cli.q(token))
      refused(token, "accounts set-max-jobs a@x.test " .. cli.q(token))
      refused(token, "sandbox start --port " .. cli.q(token))
      refused(token, cli.q(token))
      refused(token, "help " .. cli.q(token))
      refused(token, cli.q("--" .. token))
      refused(token, cli.q("--" .. token .. "=1"))
      refused(token, "accounts " .. cli.q(token))
      -- the token itself where its file was meant: a missing file is named only when its
      -- name could be one
      refused(token, "accounts add --refresh-token-file " .. cli.q(token))
      refused(token, "accounts list --token-file " .. cli.q(token))
      refused(token, "batch " .. cli.q(token))
      refused(token, "plan " .. cli.q(token))
    end
    local _, err = refused("x", "accounts add --refresh-token-file " .. cli.q(dir .. "/nope/refresh.txt"))
    assert.truthy(contains(err, "cannot read refresh token file '" .. dir .. "/nope/refresh.txt': no such file"), err)
  end)

  it("a token inside a saved plan (its version, a fingerprint, its base URL)", function()
    for name, token in pairs(long(toks)) do
      local f = cli.spit(dir .. "/plan-" .. name .. ".json",
        ('{"format":"flowmusic-plan","version":"%s","rows":[],"fingerprint":{}}'):format(token))
      refused(token, "apply " .. cli.q(f) .. " --yes")
      f = cli.spit(dir .. "/fp-" .. name .. ".json",
        ('{"format":"flowmusic-plan","version":1,"rows":[],"fingerprint":{"%s":1}}'):format(token))
      refused(token, "apply " .. cli.q(f) .. " --yes")
      -- A plan made for another API: the base URL it names is not echoed (exit 1).
      f = cli.spit(dir .. "/url-" .. name .. ".json", ('{"format":"flowmusic-plan","version":1,'
        .. '"base_url":"https://%s.example/v1","rows":[],"fingerprint":{}}'):format(token))
      local code, out, err = c:run("apply " .. cli.q(f) .. " --yes")
      assert.equal(1, code, err)
      assert.truthy(contains(err, "another API"), err)
      assert.is_nil(leaked(token, out .. err), out .. err)
    end
  end)

  it("still names a genuine mistake: a misspelled column, key, op, state or command", function()
    local cases = {
      { "batch", "op,email,max_jobz\nget,a@x.test,\n", "csv", "line 1: unknown column 'max_jobz' in the header" },
      { "plan", "email,max_jobz\na@x.test,3\n", "csv", "line 1: unknown column 'max_jobz' in the header" },
      { "apply", "email,max_jobz\na@x.test,3\n", "csv", "line 1: unknown column 'max_jobz' in the header" },
      { "plan", '{"email":"a@x.test","max_jobz":3}\n', "jsonl", "line 1: unknown key 'max_jobz'" },
      { "batch", '{"op":"get","email":"a@x.test","emial":1}\n', "jsonl", "line 1: unknown key 'emial'" },
      { "batch", "op,email\ngte,a@x.test\n", "csv", "line 2: unknown op 'gte'" },
      { "plan", "email,max_jobs\na@x.test,17\n", "csv", "line 2: max_jobs must be an integer 1-16, got '17'" },
    }
    for i, case in ipairs(cases) do
      local f = cli.spit(dir .. "/typo" .. i .. "." .. case[3], case[2])
      local code, _, err = c:run(case[1] .. " " .. cli.q(f) .. (case[1] == "apply" and " --yes" or ""))
      assert.equal(2, code, err)
      assert.truthy(contains(err, case[4]), case[4] .. " in: " .. err)
    end
    local code, _, err = c:run("status --fail-on ok,bogus")
    assert.equal(2, code)
    assert.truthy(contains(err, "unknown state 'bogus'"), err)
    code, _, err = c:run("usage --all --since 2026-02-30")
    assert.equal(2, code)
    assert.truthy(contains(err, "'2026-02-30' is not a calendar day"), err)
    code, _, err = c:run("acounts list")
    assert.equal(2, code)
    assert.truthy(contains(err, "unknown command 'acounts'"), err)
    code, _, err = c:run("accounts list --verbos")
    assert.equal(2, code)
    assert.truthy(contains(err, "unknown option '--verbos'"), err)
    assert.equal(0, sb:requests().total)
  end)
end)
