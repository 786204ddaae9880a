-- The flowmusic command line's parser (argparse): help, "did you mean" hints, usage errors
-- with exit status 2, --version, and the source-tree launcher respecting LUA_CPATH.
local cli = require "spec.helpers.cli"

local function contains(hay, needle) return hay:find(needle, 1, true) ~= nil end

describe("flowmusic command line parser", function()
  local c

  lazy_setup(function() c = cli.new { env = { USEAPI_TOKEN = "user:1-unused" } } end)
  lazy_teardown(function() c:close() end)

  it("--help of every command and sub-command exits 0 and prints its usage on stdout", function()
    for _, cmd in ipairs({ "", "accounts", "accounts list", "accounts get", "accounts add",
                           "accounts set-max-jobs", "accounts delete", "usage", "batch", "sandbox",
                           "sandbox start", "sandbox stop", "sandbox status" }) do
      local code, out, err = c:run(cmd .. " --help")
      assert.equal(0, code, cmd)
      assert.equal("", err, cmd)
      assert.truthy(out:find("^Usage: flowmusic"), cmd)
      code, out = c:run(cmd .. " -h")
      assert.equal(0, code, cmd)
      assert.truthy(out:find("^Usage: flowmusic"), cmd)
    end
    local code, out = c:run("help batch")
    assert.equal(0, code)
    assert.truthy(out:find("^Usage: flowmusic batch"))
    assert.equal(2, (c:run("help frob")))
  end)

  it("every documented flag is in the help of its command", function()
    local want = {
      ["accounts add"] = { "--refresh-token-file FILE", "--max-jobs N", "--token-file FILE", "--base-url URL",
        "--timeout SECS", "--retries N", "--verbose", "--json", "--csv" },
      ["accounts list"] = { "--json", "--csv", "--token-file", "--verbose" },
      usage = { "--by day|account|type|song", "--all", "--since YYYY-MM-DD", "--until YYYY-MM-DD",
        "--concurrency N", "--html FILE", "--chart", "--json", "--csv", "--timeout" },
      batch = { "--concurrency N", "--dry-run", "--format F", "--progress", "--no-progress", "--json",
        "--csv", "--retries N", "exit status" },
      ["sandbox start"] = { "--port N", "--token T", "--dir D" },
    }
    for cmd, flags in pairs(want) do
      local _, out = c:run(cmd .. " --help")
      for _, f in ipairs(flags) do assert.truthy(contains(out, f), cmd .. ": " .. f) end
    end
  end)

  it("usage errors exit 2 with the message, a hint and no stack trace", function()
    local cases = {
      { "acounts list", "unknown command 'acounts' (did you mean 'accounts'?)", "try 'flowmusic --help'" },
      { "accounts lst", "did you mean 'list'?", "try 'flowmusic accounts --help'" },
      { "accounts list --jsn", "did you mean '--json'?", "try 'flowmusic accounts list --help'" },
      { "accounts list --timeout 5 --timeout 6", "at most 1 time", "try 'flowmusic accounts list --help'" },
      { "accounts get", "missing argument 'EMAIL'", "try 'flowmusic accounts get --help'" },
      { "batch x.csv --format xml", "must be one of", "try 'flowmusic batch --help'" },
      { "batch x.csv --progress --no-progress", "can not be used together", "flowmusic batch --help" },
      { "sandbox start --port nope", "--port", "try 'flowmusic sandbox start --help'" },
      { "", "a command is required", "try 'flowmusic --help'" },
    }
    for _, k in ipairs(cases) do
      local code, out, err = c:run(k[1])
      assert.equal(2, code, k[1])
      assert.equal("", out, k[1])
      assert.truthy(contains(err, k[2]), k[1] .. " -> " .. err)
      assert.truthy(contains(err, k[3]), k[1] .. " -> " .. err)
      assert.falsy(contains(err, "traceback"), k[1])
      assert.falsy(err:find("%.lua:%d+"), k[1])
    end
  end)

  it("--version prints the library version and libcurl's", function()
    local code, out = c:run("--version")
    assert.equal(0, code)
    assert.truthy(out:find("^flowmusic %d+%.%d+%.%d+ %(libcurl %d+%.%d+"), out)
  end)

  it("an explicit LUA_CPATH wins over the tree's build, and --version shows the real load error", function()
    local dir = c.tmp .. "/fakecore"
    os.execute("mkdir -p " .. cli.q(dir .. "/flowmusic"))
    cli.spit(dir .. "/flowmusic/core.so", "not a shared object\n")
    local code, out, err = c:run("--version", { env = { LUA_CPATH = dir .. "/?.so;;" } })
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(contains(err, "cannot load the flowmusic library"), err)
    assert.truthy(contains(err, dir .. "/flowmusic/core.so"), err)
    assert.falsy(contains(err, "traceback"))
  end)
end)
