-- The C core's private state files (src/private_files.c): created 0600 whatever the umask,
-- replaced atomically, appended in one write, never written through a symbolic link, and
-- locked with flock (a second lock waits, then names the holder; a dead holder's lock is free).
local core = require "flowmusic.core"
local cli = require "spec.helpers.cli"

local mode_of = cli.mode_of

local function self_pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = tonumber(f:read("*l"):match("^(%d+)"))
  f:close()
  return pid
end

describe("private state files", function()
  local dir

  before_each(function()
    local p = io.popen("mktemp -d")
    dir = p:read("*l")
    p:close()
  end)

  after_each(function() os.execute("rm -rf " .. cli.q(dir)) end)

  it("write_private replaces a file atomically with mode 0600, even under umask 000", function()
    local path = dir .. "/state.json"
    cli.spit(path, "old")
    os.execute("chmod 644 " .. cli.q(path))
    assert.is_true(core.write_private(path, "new\n"))
    assert.equal("new\n", cli.slurp(path))
    assert.equal("600", mode_of(path))
    -- no temporary file is left beside it
    local p = io.popen("ls -A " .. cli.q(dir))
    assert.equal("state.json", p:read("*a"):match("^%s*(.-)%s*$"))
    p:close()
    -- a child under umask 000 still gets 0600
    local code = os.execute("umask 000 && " .. cli.LUA
      .. " -e 'package.cpath=" .. cli.q(package.cpath):gsub("'", "\"")
      .. "' -e 'assert(require(\"flowmusic.core\").write_private(\"" .. dir .. "/u.json\", \"x\"))'")
    assert.truthy(code == true or code == 0)
    assert.equal("600", mode_of(dir .. "/u.json"))
  end)

  it("write_private fails cleanly: a missing directory, a directory in the way", function()
    local ok, err = core.write_private(dir .. "/missing/state.json", "x")
    assert.is_nil(ok)
    assert.matches("cannot create the temporary file: No such file or directory", err, 1, true)
    os.execute("mkdir " .. cli.q(dir .. "/d") .. " && touch " .. cli.q(dir .. "/d/inside"))
    ok, err = core.write_private(dir .. "/d", "x")
    assert.is_nil(ok)
    assert.matches("cannot write", err, 1, true)
    assert.equal("", cli.slurp(dir .. "/d/inside")) -- nothing lost
    local p = io.popen("ls -A " .. cli.q(dir))
    assert.equal("d", p:read("*a"):match("^%s*(.-)%s*$")) -- the temporary file was removed
    p:close()
  end)

  it("write_private replaces a symbolic link instead of writing through it", function()
    local target = dir .. "/target"
    cli.spit(target, "keep")
    os.execute("ln -s " .. cli.q(target) .. " " .. cli.q(dir .. "/link"))
    assert.is_true(core.write_private(dir .. "/link", "mine"))
    assert.equal("keep", cli.slurp(target))
    assert.equal("mine", cli.slurp(dir .. "/link"))
  end)

  it("append_private appends whole records with mode 0600 and refuses links and directories", function()
    local path = dir .. "/history.jsonl"
    assert.is_true(core.append_private(path, "a\n"))
    assert.is_true(core.append_private(path, "b\n"))
    assert.equal("a\nb\n", cli.slurp(path))
    assert.equal("600", mode_of(path))
    os.execute("ln -s " .. cli.q(path) .. " " .. cli.q(dir .. "/link"))
    local ok, err = core.append_private(dir .. "/link", "c\n")
    assert.is_nil(ok)
    assert.matches("cannot open", err, 1, true)
    assert.equal("a\nb\n", cli.slurp(path))
    ok, err = core.append_private(dir, "c\n")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.has_error(function() core.append_private(path) end)
    assert.has_error(function() core.write_private(nil, "x") end)
  end)

  it("lock_file: one holder at a time, the holder's pid named, released by unlock and by collection", function()
    local path = dir .. "/s.lock"
    local lock = assert(core.lock_file(path))
    assert.equal("flowmusic.lock (held)", tostring(lock))
    assert.equal("600", mode_of(path))
    local none, why, pid = core.lock_file(path, 0.1) -- (another open file: flock conflicts)
    assert.is_nil(none)
    assert.equal("locked", why)
    assert.equal(self_pid(), pid)
    lock:unlock()
    lock:unlock() -- idempotent
    assert.equal("flowmusic.lock (released)", tostring(lock))
    assert(core.lock_file(path)) -- dropped at once: collected, it releases the lock
    collectgarbage()
    collectgarbage()
    local third = assert(core.lock_file(path, 0))
    third:unlock()
  end)

  it("lock_file: waits for another process, and a killed holder's lock is free at once", function()
    local path = dir .. "/s.lock"
    local hold = "exec " .. cli.LUA .. " -e 'package.cpath=" .. cli.q(package.cpath):gsub("'", "\"")
      .. "' -e 'local l = assert(require(\"flowmusic.core\").lock_file(\"" .. path .. "\")) io.open(\""
      .. dir .. "/ready\", \"w\"):close() os.execute(\"sleep 30\")'"
    local p = io.popen("sh -c " .. cli.q(hold) .. " >/dev/null 2>&1 & echo $!")
    local holder = tonumber(p:read("*l"))
    p:close()
    local socket = require "socket"
    local t0 = socket.gettime()
    while not io.open(dir .. "/ready") and socket.gettime() - t0 < 10 do socket.sleep(0.02) end
    local none, why, pid = core.lock_file(path, 0.2)
    assert.is_nil(none)
    assert.equal("locked", why)
    assert.equal(holder, pid)
    os.execute("kill -9 " .. holder)
    local lock = assert(core.lock_file(path, 5)) -- taken over
    lock:unlock()
    assert.has_error(function() core.lock_file() end)
    local bad, err = core.lock_file(dir .. "/missing/x.lock")
    assert.is_nil(bad)
    assert.matches("cannot open lock file", err, 1, true)
  end)

  it("sleep sleeps, and ignores what is not a positive number", function()
    local t0 = core.now()
    core.sleep(0.05)
    assert.truthy(core.now() - t0 >= 0.045)
    core.sleep(0)
    core.sleep(-1)
    core.sleep(0 / 0)
    assert.has_error(function() core.sleep("soon") end)
  end)

  it("file_mode gives a file's permission bits, owner and kind, following links; nil, message, missing", function()
    local f = cli.spit(dir .. "/f", "x")
    os.execute("chmod 640 " .. cli.q(f) .. " && ln -s f " .. cli.q(dir .. "/link"))
    local mode, uid, kind = core.file_mode(f)
    assert.are.equal(6 * 64 + 4 * 8, mode)
    assert.are.equal("number", type(uid))
    assert.are.equal("file", kind)
    assert.are.equal(mode, (core.file_mode(dir .. "/link")))
    assert.are.equal("directory", select(3, core.file_mode(dir)))
    os.execute("mkfifo " .. cli.q(dir .. "/fifo"))
    assert.are.equal("fifo", select(3, core.file_mode(dir .. "/fifo")))
    assert.are.equal("device", select(3, core.file_mode("/dev/null")))
    local none, err, why = core.file_mode(dir .. "/missing")
    assert.is_nil(none)
    assert.truthy(err:find("No such file", 1, true), err)
    assert.are.equal("missing", why)
    assert.are.equal("missing", select(3, core.file_mode(f .. "/under-a-file")))
    assert.has_error(function() core.file_mode() end)
  end)

  it("make_private_dir creates missing parents 0700, leaves existing ones, refuses a file in the way", function()
    os.execute("chmod 755 " .. cli.q(dir))
    assert.is_true(core.make_private_dir(dir .. "/a/b/c/"))
    for _, d in ipairs { "/a", "/a/b", "/a/b/c" } do assert.are.equal("700", mode_of(dir .. d)) end
    assert.are.equal("755", mode_of(dir))
    assert.is_true(core.make_private_dir(dir .. "/a/b/c"))
    cli.spit(dir .. "/file", "x")
    local ok, err = core.make_private_dir(dir .. "/file/sub")
    assert.is_nil(ok)
    assert.truthy(err:find("Not a directory", 1, true), err)
    assert.is_nil((core.make_private_dir("")))
    assert.has_error(function() core.make_private_dir() end)
  end)

  it("sha256 matches sha256sum, across the padding boundaries, and FIPS 180-4's vectors", function()
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", core.sha256(""))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256("abc"))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      core.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    assert.are.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", core.sha256(("a"):rep(1000000)))
    for _, n in ipairs { 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000 } do
      local s = ("\0\255x"):rep(n):sub(1, n)
      local path = cli.spit(dir .. "/in" .. n, s)
      local p = io.popen("sha256sum " .. cli.q(path))
      local want = p:read("*l"):match("^%x+")
      p:close()
      assert.are.equal(want, core.sha256(s), n)
    end
    assert.has_error(function() core.sha256() end)
    assert.has_error(function() core.sha256({}) end)
  end)
end)
