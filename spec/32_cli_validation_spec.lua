-- The command line validates through the library (flowmusic.validate): emails, refresh
-- tokens and maxJobs get the library's verdict and message; --timeout takes any positive
-- decimal number, --retries an integer 0-20. Bad values are usage errors that send nothing.
local fixture = require "spec.helpers.fixture"
local cli = require "spec.helpers.cli"
local validate = require "flowmusic.validate"

local API_TOKEN = "user:4343-CliValidationToken"

local function contains(hay, needle) return hay:find(needle, 1, true) ~= nil end

describe("flowmusic CLI validation", function()
  local sb, c

  fixture.sandbox({ token = API_TOKEN, cli = true }, function(s, runner) sb, c = s, runner end)

  it("--timeout takes any positive decimal number", function()
    for _, t in ipairs({ ".5", "1e1", "2.", "+3", "0.25", "1E1" }) do
      local code, _, err = c:run("accounts list --json --timeout " .. t)
      assert.equal(0, code, t .. ": " .. err)
    end
    for _, t in ipairs({ "0", "-1", "nan", "inf", "1e400", "0x10", "", ".", "e1", "1e", "5s" }) do
      local code, out, err = c:run("accounts list --timeout=" .. cli.q(t))
      assert.equal(2, code, t)
      assert.equal("", out)
      assert.truthy(contains(err, "--timeout must be a positive number of seconds"), t .. ": " .. err)
    end
  end)

  it("--retries takes an integer 0-20", function()
    assert.equal(0, (c:run("accounts list --json --retries 0")))
    assert.equal(0, (c:run("accounts list --json --retries 20")))
    for _, n in ipairs({ "21", "1.5", "x", "-1" }) do
      local code, _, err = c:run("accounts list --retries=" .. n)
      assert.equal(2, code, n)
      assert.truthy(contains(err, "--retries must be an integer 0-20"), n .. ": " .. err)
    end
    assert.equal(0, sb:requests().total - 2)
  end)

  it("maxJobs gets the library's verdict", function()
    local _, rule = validate.max_jobs(0)
    local email = sb:seed(1)[1]
    for _, n in ipairs({ "0", "17", "4.5", "x", "1e400" }) do
      local code, _, err = c:run("accounts set-max-jobs " .. email .. " " .. n)
      assert.equal(2, code, n)
      assert.truthy(contains(err, (rule:gsub("^max_jobs", "N (maxJobs)"))), n .. ": " .. err)
    end
    local code, out = c:run("accounts set-max-jobs " .. email .. " 4.0 --json")
    assert.equal(0, code)
    assert.truthy(contains(out, '"maxJobs":4'))
  end)

  it("emails get the library's verdict, in accounts, usage and batch rows", function()
    local _, as_path = validate.email("usage", true)
    local _, empty = validate.email("")
    local code, _, err = c:run("accounts delete usage")
    assert.equal(2, code)
    assert.truthy(contains(err, as_path), err)
    code, _, err = c:run("usage ''")
    assert.equal(2, code)
    assert.truthy(contains(err, empty), err)
    local dir = c.tmp
    local f = cli.spit(dir .. "/emails.jsonl",
      '{"op":"get","email":"usage"}\n{"op":"usage","email":"a\\u001bb@x.com"}\n')
    local out
    code, out = c:run("batch " .. cli.q(f) .. " --json")
    assert.equal(2, code)
    local rows = {}
    for l in out:gmatch("[^\n]+") do rows[#rows + 1] = require("cjson").decode(l) end
    assert.equal("invalid", rows[1].status)
    assert.truthy(contains(rows[1].message, as_path))
    assert.equal("invalid", rows[2].status)
    assert.truthy(contains(rows[2].message, select(2, validate.email("a\27b@x.com"))))
    assert.equal(0, sb:requests().total)
  end)

  it("refresh tokens get the library's verdict", function()
    local _, short = validate.refresh_token("short")
    local code, _, err = c:run("accounts add -", { stdin = "short\n" })
    assert.equal(2, code)
    assert.truthy(contains(err, short), err)
    local _, ctl = validate.refresh_token("sandbox:\1plus:a@x.com")
    code, _, err = c:run("accounts add -", { stdin = "sandbox:\1plus:a@x.com\n" })
    assert.equal(2, code)
    assert.truthy(contains(err, ctl), err)
    assert.equal(0, sb:requests().total)
  end)
end)
