-- Hostile input and output for the command line (issue 14): token and batch files must be
-- regular files of bounded size (a FIFO or a device is refused at once), garbage gives a
-- bounded number of stderr lines, a secret handed over as a batch file is never echoed,
-- control characters from the server are escaped for the terminal, and --json is always
-- valid UTF-8.
local fixture = require "spec.helpers.fixture"
local cli = require "spec.helpers.cli"
local cjson = require "cjson"

local API_TOKEN = "user:4646-CliHostileToken"

local function contains(hay, needle) return hay:find(needle, 1, true) ~= nil end

-- True when text is valid UTF-8 (iconv refuses anything else).
local function valid_utf8(path)
  local ok = os.execute("iconv -f UTF-8 -t UTF-8 " .. cli.q(path) .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

describe("flowmusic CLI under hostile input", function()
  local sb, c, dir

  fixture.sandbox({ token = API_TOKEN, cli = true }, function(s, runner) sb, c, dir = s, runner, runner.tmp end)

  -- Run in the background; a command that blocks is killed and reported.
  local function run_bounded(argv, opts)
    local h = c:spawn(argv, opts)
    local code = h.wait(20)
    if not code then
      h.signal("KILL")
      h.wait(5)
      error("flowmusic " .. argv .. " did not end (blocked?)", 2)
    end
    return code, h.out(), h.err()
  end

  it("a FIFO as a token file or a batch file is refused at once", function()
    local fifo = dir .. "/fifo"
    assert.truthy(os.execute("mkfifo " .. cli.q(fifo)))
    cli.spit(dir .. "/fifo-row.csv", "op,refresh_token_file\nadd,fifo\n")
    for _, argv in ipairs({
      "accounts list --token-file " .. cli.q(fifo),
      "accounts add --refresh-token-file " .. cli.q(fifo),
      "batch " .. cli.q(fifo),
      "batch " .. cli.q(dir .. "/fifo-row.csv") .. " --json",
    }) do
      local code, _, err = run_bounded(argv)
      assert.equal(2, code, argv)
      assert.truthy(contains(err, "is a FIFO (named pipe), not a regular file"), argv .. ": " .. err)
    end
    assert.equal(0, sb:requests().total)
  end)

  it("a device as a token file or a batch file is refused", function()
    for _, argv in ipairs({ "accounts list --token-file /dev/zero", "accounts add --refresh-token-file /dev/zero",
                            "batch /dev/zero", "batch /dev/null" }) do
      local code, _, err = run_bounded(argv)
      assert.equal(2, code, argv)
      assert.truthy(contains(err, "is a device, not a regular file"), argv .. ": " .. err)
    end
  end)

  it("token files are at most 64 KiB, batch files at most 16 MiB (also on standard input)", function()
    local big = cli.spit(dir .. "/big-token.txt", ("x"):rep(64 * 1024 + 1))
    local code, _, err = run_bounded("accounts add --refresh-token-file " .. cli.q(big))
    assert.equal(2, code)
    assert.truthy(contains(err, "is larger than 64 KiB"), err)
    code, _, err = run_bounded("accounts list --token-file " .. cli.q(big))
    assert.equal(2, code)
    assert.truthy(contains(err, "is larger than 64 KiB"), err)
    local huge = ("# filler line of a comment\n"):rep(math.floor(16 * 1024 * 1024 / 27) + 1)
    cli.spit(dir .. "/huge.csv", huge)
    code, _, err = run_bounded("batch " .. cli.q(dir .. "/huge.csv"))
    assert.equal(2, code)
    assert.truthy(contains(err, "is larger than 16 MiB"), err)
    code, _, err = run_bounded("batch -", { stdin = huge })
    assert.equal(2, code)
    assert.truthy(contains(err, "is larger than 16 MiB"), err)
  end)

  it("a line over 64 KiB is an invalid row and is not echoed", function()
    sb:seed(1)
    local f = cli.spit(dir .. "/long.jsonl", '{"op":"get","email":"seed-01@sandbox.test"}\n{"op":"get","email":"'
      .. ("A"):rep(70000) .. '"}\n{"op":"get","email":"seed-01@sandbox.test"}\n')
    local code, out, err = run_bounded("batch " .. cli.q(f) .. " --json")
    assert.equal(2, code)
    local rows = {}
    for _, l in ipairs(cli.lines(out)) do rows[#rows + 1] = cjson.decode(l) end
    assert.equal(3, #rows)
    assert.equal("ok", rows[1].status)
    assert.equal("invalid", rows[2].status)
    assert.truthy(contains(rows[2].message, "longer than 65536 bytes"))
    assert.equal("ok", rows[3].status)
    assert.falsy(contains(out .. err, "AAAAAAAA"))
  end)

  it("garbage gives at most 20 error lines on stderr, then '... and N more'", function()
    local lines = {}
    for i = 1, 500 do lines[i] = "{garbage " .. i end
    local f = cli.spit(dir .. "/garbage.jsonl", table.concat(lines, "\n"))
    local code, out, err = run_bounded("batch " .. cli.q(f) .. " --json --dry-run")
    assert.equal(2, code)
    assert.equal(500, #cli.lines(out))
    local errlines = cli.lines(err)
    assert.truthy(#errlines <= 22, #errlines)
    assert.truthy(contains(err, "... and 480 more"), err)
    -- Binary garbage: one clear error.
    local bin = {}
    for i = 0, 4000 do bin[#bin + 1] = string.char((i * 37) % 256) end
    f = cli.spit(dir .. "/garbage.bin", table.concat(bin))
    code, out, err = run_bounded("batch " .. cli.q(f))
    assert.equal(2, code)
    assert.equal("", out)
    assert.truthy(#cli.lines(err) <= 22)
  end)

  it("never echoes a token handed over as the batch file", function()
    local sentinel = "user:999-SENTINELxyz"
    local f = cli.spit(dir .. "/token.txt", sentinel .. "\n")
    local code, out, err = run_bounded("batch " .. cli.q(f))
    assert.equal(2, code)
    assert.truthy(contains(err, "unknown column (a 20-byte value, not shown)"), err)
    assert.falsy(contains(out .. err, "SENTINEL"))
    f = cli.spit(dir .. "/token.jsonl", sentinel .. "\n")
    code, out, err = run_bounded("batch " .. cli.q(f) .. " --json")
    assert.equal(2, code)
    assert.falsy(contains(out .. err, "SENTINEL"))
    -- A plain-word API token that the CLI holds is not quoted either, as a column or an op.
    local word_token = "plainwordtoken1234"
    f = cli.spit(dir .. "/held.csv", "op," .. word_token .. "\n")
    code, out, err = run_bounded("batch " .. cli.q(f) .. " --dry-run", { env = { USEAPI_TOKEN = word_token } })
    assert.equal(2, code)
    assert.falsy(contains(out .. err, word_token), err)
    f = cli.spit(dir .. "/held-op.csv", "op\n" .. word_token .. "\n")
    code, out, err = run_bounded("batch " .. cli.q(f) .. " --dry-run --json", { env = { USEAPI_TOKEN = word_token } })
    assert.equal(2, code)
    assert.falsy(contains(out .. err, word_token), out .. err)
    -- A short plain column is still named.
    f = cli.spit(dir .. "/mail.csv", "op,mail\n")
    code, out, err = run_bounded("batch " .. cli.q(f))
    assert.equal(2, code)
    assert.equal("", out)
    assert.truthy(contains(err, "unknown column 'mail'"), err)
  end)

  it("no control character from the server reaches the terminal; --json stays valid JSON", function()
    local email = sb:seed(1)[1]
    local evil = "bad \27[31mred\27[0m \27]0;owned\7 \194\155 end"
    sb:fault { fault = "status", code = 400, message = evil, method = "GET", count = 0 }
    local code, out, err = run_bounded("accounts get " .. email)
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(contains(err, "red"), err)
    assert.falsy(err:find("[%z\1-\8\11-\31\127]"), err)
    assert.falsy(contains(err, "\194\155"), err)
    local f = cli.spit(dir .. "/esc.csv", "op,email\nget," .. email .. "\n")
    code, out = run_bounded("batch " .. cli.q(f) .. " --retries 0")
    assert.equal(1, code)
    assert.falsy(out:find("[%z\1-\8\11-\31\127]"), out)
    assert.falsy(contains(out, "\194\155"), out)
    code, out = run_bounded("batch " .. cli.q(f) .. " --retries 0 --json")
    assert.equal(1, code)
    assert.falsy(out:find("[%z\1-\9\11-\31\127]"), out)
    assert.truthy(contains(cjson.decode(out).message, "red"))
  end)

  it("escapes control characters from the input in human output (ESC -> \\27)", function()
    local name = dir .. "/odd\27]0;title\7name.csv"
    local f = cli.spit(name, "op,email\nfrob,a@example.com\n")
    local code, out, err = run_bounded("batch " .. cli.q(f))
    assert.equal(2, code)
    assert.falsy((out .. err):find("[\27\7]"), err)
    assert.truthy(contains(err, "odd\\27]0;title\\7name.csv: line 2: unknown op 'frob'"), err)
    code, out, err = run_bounded("accounts add --refresh-token-file " .. cli.q(dir .. "/no\27[2Jfile"))
    assert.equal(2, code)
    assert.equal("", out)
    assert.falsy(err:find("\27"), err)
    -- a missing file's odd name is not a file name one could have meant: its size only
    assert.truthy(err:find("cannot read refresh token file %(a %d+%-byte value, not shown%): no such file"), err)
  end)

  it("--json is valid UTF-8 even when the input isn't", function()
    local f = cli.spit(dir .. "/latin1.csv", "op,email\nget,caf\233@example.com\nfrob\255,x@example.com\n")
    local code, out = run_bounded("batch " .. cli.q(f) .. " --json --retries 0")
    assert.equal(2, code)
    local o = cli.spit(dir .. "/out.jsonl", out)
    assert.is_true(valid_utf8(o), out)
    local rows = {}
    for _, l in ipairs(cli.lines(out)) do rows[#rows + 1] = cjson.decode(l) end
    assert.equal(2, #rows)
    assert.equal("caf\239\191\189@example.com", rows[1].email)
    assert.equal("failed", rows[1].status)
    assert.equal("invalid", rows[2].status)
    -- The table mode escapes the bytes instead.
    code, out = run_bounded("batch " .. cli.q(f) .. " --retries 0")
    assert.equal(2, code)
    assert.truthy(contains(out, "caf\\233@example.com"), out)
  end)
end)
