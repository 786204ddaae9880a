-- The sandbox launcher as a local server (issue 14) and on other nginx builds (issue 12):
-- the directory rules, private files, `stop` signalling only the sandbox's own nginx, the
-- multi-user attacks (as root, with a throwaway user), and nginx binaries with the lua
-- module built in.

local server = require "flowmusic.sandbox.server"
local host = require "flowmusic.sandbox.host"

local q, capture, run = host.shell_quote, host.capture, host.run
local ROOT = host.uid() == 0
local LUA = _VERSION == "Lua 5.1" and "lua5.1" or ("lua" .. _VERSION:match("%d%.%d"))

-- A fresh private directory (removed by the caller).
local function temp_dir()
  local template = (os.getenv("TMPDIR") or "/tmp") .. "/flowmusic-launcher-spec.XXXXXX"
  local d = capture("mktemp -d " .. q(template)):gsub("%s+$", "")
  assert(d ~= "", "mktemp failed")
  return d
end

-- Run a command; its output (stdout and stderr) and exit code.
local function sh(cmd)
  local out = capture("(" .. cmd .. ") 2>&1; echo \"__rc=$?\"")
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return (out:gsub("__rc=%d+%s*$", "")), rc
end

-- `stat -c FORMAT` of a path (no symlink following).
local function stat(fmt, path)
  return (capture("stat -c " .. q(fmt) .. " -- " .. q(path)):gsub("%s+$", ""))
end

-- Whether a process runs (not a zombie).
local function alive(pid)
  local p = host.process(pid)
  return p ~= nil and p.state ~= "Z" and p.state ~= "X"
end

-- Start a background command; its pid (the command must exec its last program).
local function spawn(cmd)
  local pid = tonumber(capture(cmd .. " >/dev/null 2>&1 & echo $!"):match("%d+"))
  assert(pid, "could not start " .. cmd)
  return pid
end

-- Kill a pid we started and wait for it to be gone.
local function kill(pid)
  run("kill -KILL " .. pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not alive(pid) then return end
    run("sleep 0.02")
  end
end

describe("sandbox launcher: the directory", function()
  local base, started

  before_each(function()
    base = temp_dir()
    started = nil
  end)

  after_each(function()
    if started then server.stop({ dir = started, remove = true }) end
    run("rm -rf -- " .. q(base))
  end)

  it("creates a missing directory 0700 and its files 0600; nothing in it is writable by others", function()
    local dir = base .. "/new/sb"
    local url, pid, info = server.start({ dir = dir, token = "user:9-LauncherSecret" })
    assert.is_string(url, pid)
    started = dir
    assert.are.equal("700", stat("%a", dir))
    assert.are.equal("700", stat("%a", base .. "/new"))
    assert.are.equal("600", stat("%a", dir .. "/sandbox.info"))
    -- the token is nowhere in the directory: the configuration that carried it to nginx is gone
    assert.is_nil(io.open(dir .. "/sandbox-config.lua"))
    local token = "user:9-LauncherSecret"
    for i = 1, #token - 7 do
      local piece = token:sub(i, i + 7)
      local hits = capture("grep -rlF -- " .. q(piece) .. " " .. q(dir))
      assert.are.equal("", hits, "a piece of the token in " .. hits)
    end
    assert.are.equal(200, tonumber(capture("curl -s -o /dev/null -w '%{http_code}' -H "
      .. q("Authorization: Bearer " .. token) .. " " .. q(url .. "/accounts"))))
    -- the pid files: nobody else can write them (the master's and the worker's)
    for _, f in ipairs({ "nginx.pid", "worker.pid", "error.log", "access.log", "nginx.conf" }) do
      local mode = tonumber(stat("%a", dir .. "/" .. f), 8)
      assert.are.equal(0, math.floor(mode / 2) % 2, f .. " is world-writable")
      assert.are.equal(0, math.floor(mode / 16) % 2, f .. " is group-writable")
    end
    local out = capture("find " .. q(dir) .. " -perm /022 -print")
    assert.are.equal("", out)
    assert.are.equal(info.pid, pid)
  end)

  it("refuses a directory that group or others may write to", function()
    local dir = base .. "/sb"
    assert(run("mkdir -m 0770 " .. q(dir)))
    local url, err = server.start({ dir = dir })
    assert.is_nil(url)
    assert.matches("refusing sandbox directory", err)
    assert.matches("writable by other users %(mode 0770%)", err)
    assert.is_nil(io.open(dir .. "/sandbox-config.lua"), "wrote into a refused directory")
  end)

  it("refuses a directory under a parent others may write to that is not sticky", function()
    assert(run("chmod 0777 " .. q(base)))
    local url, err = server.start({ dir = base .. "/sb" })
    assert.is_nil(url)
    assert.matches("writable by other users", err)
    assert.matches("not sticky", err)
    -- a sticky parent (like /tmp) is fine
    assert(run("chmod 1777 " .. q(base)))
    url, err = server.start({ dir = base .. "/sb" })
    assert.is_string(url, err)
    started = base .. "/sb"
  end)

  it("refuses a directory that is a symbolic link, even to a private directory of ours", function()
    assert(run("mkdir -m 0700 " .. q(base .. "/real") .. " && ln -s real " .. q(base .. "/sb")))
    local url, err = server.start({ dir = base .. "/sb" })
    assert.is_nil(url)
    assert.matches("is a symbolic link", err)
    assert.are.equal("", capture("ls -A " .. q(base .. "/real")))
  end)

  it("never writes through a symbolic link or a hard link under the names it uses", function()
    local dir = base .. "/sb"
    local victim = base .. "/victim"
    assert(host.write_file(victim, "precious\n"))
    assert(run("mkdir -m 0700 " .. q(dir) .. " && ln -s " .. q(victim) .. " " .. q(dir .. "/error.log")))
    local url, err = server.start({ dir = dir })
    assert.is_nil(url)
    assert.matches("error%.log is a symbolic link", err)
    assert.are.equal("precious\n", host.read_file(victim))
    -- a dangling link where the token file goes
    assert(run("rm " .. q(dir .. "/error.log") .. " && ln -s " .. q(base .. "/catch") .. " "
      .. q(dir .. "/sandbox.info")))
    url, err = server.start({ dir = dir })
    assert.is_nil(url)
    assert.matches("sandbox%.info is a symbolic link", err)
    assert.is_nil(io.open(base .. "/catch"))
    -- a hard link to a file of ours
    assert(run("rm " .. q(dir .. "/sandbox.info") .. " && ln " .. q(victim) .. " " .. q(dir .. "/nginx.conf")))
    url, err = server.start({ dir = dir })
    assert.is_nil(url)
    assert.matches("nginx%.conf has other hard links", err)
    assert.are.equal("precious\n", host.read_file(victim))
  end)

  it("the CLI says why it refuses, with exit status 1", function()
    local dir = base .. "/sb"
    assert(run("mkdir -m 0777 " .. q(dir)))
    local out, rc = sh(LUA .. " bin/flowmusic sandbox start --dir " .. q(dir))
    assert.are.equal(1, rc)
    assert.matches("refusing sandbox directory " .. dir:gsub("%p", "%%%0") .. ": .*writable by other users", out)
  end)
end)

describe("sandbox launcher: stop", function()
  local base, dir, pid, sleeps

  before_each(function()
    base = temp_dir()
    dir = base .. "/sb"
    local url
    url, pid = server.start({ dir = dir })
    assert.is_string(url, pid)
    sleeps = {}
  end)

  after_each(function()
    server.stop({ dir = dir, pid = pid })
    for _, s in ipairs(sleeps) do kill(s) end
    run("rm -rf -- " .. q(base))
  end)

  it("does not signal a process that is not this sandbox's nginx, whatever the pid files say", function()
    local plain = spawn("exec sleep 60")
    -- a process of ours calling itself nginx, without this directory's configuration
    local named = spawn("exec bash -c 'exec -a \"nginx: master process /usr/sbin/nginx\" sleep 60'")
    -- one calling itself this sandbox's master, with the right command line (but it does not
    -- hold the sandbox's error.log open)
    local mimic = spawn("exec bash -c " .. q("exec -a \"nginx: master process /usr/sbin/nginx -p " .. dir
      .. "/ -c " .. dir .. "/nginx.conf\" sleep 61"))
    sleeps = { plain, named, mimic }
    local master = host.read_file(dir .. "/nginx.pid")
    for _, victim in ipairs({ plain, named, mimic }) do
      assert(host.write_file(dir .. "/nginx.pid", victim .. "\n"))
      assert(host.write_file(dir .. "/worker.pid", victim .. "\n"))
      local ok, err = server.stop({ dir = dir })
      assert.is_nil(ok)
      assert.matches("pid " .. victim .. " is not this sandbox's nginx", err)
      run("sleep 0.1")
      assert.is_true(alive(victim), "stop killed an unrelated process")
    end
    -- the worker pid file alone cannot name a process either
    assert(host.write_file(dir .. "/nginx.pid", master))
    assert(host.write_file(dir .. "/worker.pid", plain .. "\n"))
    assert.is_true(alive(pid))
    -- the real master stops; the others live on
    assert.is_true(server.stop({ dir = dir }))
    assert.is_false(alive(pid))
    assert.is_true(alive(plain))
    assert.is_true(alive(named))
    assert.is_true(alive(mimic))
  end)

  it("status does not take a foreign pid for a running sandbox", function()
    local plain = spawn("exec sleep 60")
    sleeps = { plain }
    assert.is_true((server.status({ dir = dir })))
    local master = host.read_file(dir .. "/nginx.pid")
    assert(host.write_file(dir .. "/nginx.pid", plain .. "\n"))
    assert.is_false((server.status({ dir = dir })))
    assert(host.write_file(dir .. "/nginx.pid", master))
    assert.is_true((server.status({ dir = dir })))
  end)
end)

-- Multi-user attacks: only root can make another user's files.
local it_root = ROOT and it or pending

describe("sandbox launcher against another local user (as root)", function()
  local user, base

  lazy_setup(function()
    if not ROOT then return end
    user = "flowmusic-spec-" .. host.read_file("/proc/self/stat"):match("^%d+")
    local out, rc = sh("useradd --system --no-create-home --shell /usr/sbin/nologin " .. q(user))
    assert.are.equal(0, rc, out)
  end)

  lazy_teardown(function()
    if user then run("userdel " .. q(user) .. " >/dev/null 2>&1") end
  end)

  before_each(function() base = temp_dir() end)
  after_each(function() run("rm -rf -- " .. q(base)) end)

  -- Run a shell command as the throwaway user.
  local function as_user(cmd)
    return sh("setpriv --reuid=" .. q(user) .. " --regid=" .. q(user) .. " --clear-groups sh -c " .. q(cmd))
  end

  it_root("refuses a default directory pre-created by that user (777, error.log linked to a root file)", function()
    -- $TMPDIR is a shared sticky directory, like /tmp
    assert(run("chmod 1777 " .. q(base)))
    local victim_dir = base .. "/root-only"
    assert(run("mkdir -m 0755 " .. q(victim_dir)))
    local victim = victim_dir .. "/precious"
    assert(host.write_file(victim, "root's data\n"))
    local dir = base .. "/flowmusic-sandbox-0"
    local out, rc = as_user("mkdir " .. q(dir) .. " && chmod 777 " .. q(dir) .. " && ln -s " .. q(victim) .. " "
      .. q(dir .. "/error.log"))
    assert.are.equal(0, rc, out)
    -- through the CLI, with the default directory
    out, rc = sh("TMPDIR=" .. q(base) .. " " .. LUA .. " bin/flowmusic sandbox start")
    assert.are.equal(1, rc, out)
    assert.matches("refusing sandbox directory " .. dir:gsub("%p", "%%%0") .. ": .*belongs to another user", out)
    -- through the library
    local url, err = server.start({ dir = dir })
    assert.is_nil(url)
    assert.matches("belongs to another user", err)
    assert.are.equal("root's data\n", host.read_file(victim))
    assert.are.equal("0", stat("%u", victim))
    -- nothing of ours landed in that user's directory
    assert.are.equal("error.log", (capture("ls -A " .. q(dir)):gsub("%s+$", "")))
    -- stop there touches nothing either
    out, rc = as_user("echo 'pid=1' > " .. q(dir .. "/sandbox.info") .. " && echo 1 > " .. q(dir .. "/nginx.pid"))
    assert.are.equal(0, rc, out)
    assert.is_nil((server.stop({ dir = dir, remove = true })))
    assert.are.equal("pid=1\n", host.read_file(dir .. "/sandbox.info"))
    out, rc = as_user("rm " .. q(dir .. "/sandbox.info") .. " " .. q(dir .. "/nginx.pid"))
    assert.are.equal(0, rc, out)
    -- a directory that user owns with mode 0700 is refused just the same
    out, rc = as_user("rm " .. q(dir .. "/error.log") .. " && chmod 700 " .. q(dir))
    assert.are.equal(0, rc, out)
    url, err = server.start({ dir = dir })
    assert.is_nil(url)
    assert.matches("belongs to another user", err)
    -- as is a directory of root's under a directory of that user's
    out, rc = as_user("chmod 755 " .. q(dir))
    assert.are.equal(0, rc, out)
    url, err = server.start({ dir = dir .. "/inner" })
    assert.is_nil(url)
    assert.matches(dir:gsub("%p", "%%%0") .. " belongs to another user", err)
  end)

  it_root("a pid file written by that user cannot make stop kill anything else", function()
    local dir = base .. "/sb"
    local url, pid = server.start({ dir = dir })
    assert.is_string(url, pid)
    local victim = spawn("exec setpriv --reuid=" .. q(user) .. " --regid=" .. q(user) .. " --clear-groups sleep 60")
    local mimic = spawn("exec setpriv --reuid=" .. q(user) .. " --regid=" .. q(user) .. " --clear-groups bash -c "
      .. q("exec -a \"nginx: master process /usr/sbin/nginx -p " .. dir .. "/ -c " .. dir .. "/nginx.conf\" sleep 60"))
    local root_sleep = spawn("exec sleep 60")
    local ok_all, err_all = pcall(function()
      -- the user cannot write the pid files at all
      for _, f in ipairs({ "nginx.pid", "worker.pid" }) do
        local out, rc = as_user("echo " .. root_sleep .. " > " .. q(dir .. "/" .. f))
        assert.are_not.equal(0, rc, out)
      end
      assert.are.equal(pid, host.read_pid(dir .. "/nginx.pid"))
      -- and had they been written, stop would still refuse: another user's processes, and
      -- root's own unrelated process
      for _, other in ipairs({ victim, mimic, root_sleep }) do
        assert(host.write_file(dir .. "/nginx.pid", other .. "\n"))
        assert(host.write_file(dir .. "/worker.pid", other .. "\n"))
        local ok, err = server.stop({ dir = dir })
        assert.is_nil(ok)
        assert.matches("not this sandbox's nginx", err)
        local _, rc = sh("TMPDIR=/nonexistent " .. LUA .. " bin/flowmusic sandbox stop --dir " .. q(dir))
        assert.are.equal(1, rc)
      end
      run("sleep 0.1")
      assert.is_true(alive(victim))
      assert.is_true(alive(mimic))
      assert.is_true(alive(root_sleep))
      assert.is_true(alive(pid))
    end)
    server.stop({ dir = dir, pid = pid })
    for _, s in ipairs({ victim, mimic, root_sleep }) do kill(s) end
    assert(ok_all, err_all)
    assert.is_false(alive(pid))
  end)
end)

describe("sandbox launcher: nginx builds", function()
  local base

  before_each(function() base = temp_dir() end)
  after_each(function() run("rm -rf -- " .. q(base)) end)

  it("writes load_module lines for Debian's nginx and none for a built-in lua module", function()
    assert.matches('load_module "/usr/lib/nginx/modules/ngx_http_lua_module.so";',
                   server.load_modules(server.NGINX, server.MODULES), 1, true)
    assert.are.equal("", server.load_modules(server.NGINX, "builtin"))
  end)

  it("starts OpenResty-style nginx (lua module compiled in) without load_module lines", function()
    -- a stand-in for OpenResty's binary: `nginx -V` names the lua module among the configure
    -- arguments, and the modules come in through -g, not through the configuration file
    local fake = base .. "/nginx"
    assert(host.write_file(fake, table.concat({
      "#!/bin/sh",
      'if [ "$1" = -V ]; then',
      "  " .. server.NGINX .. " -V 2>&1"
        .. " | sed 's#configure arguments:#configure arguments: --add-module=../ngx_lua-0.10.26#' >&2",
      "  exit 0",
      "fi",
      "exec " .. server.NGINX .. " -g 'load_module " .. server.MODULES .. "/ndk_http_module.so; load_module "
        .. server.MODULES .. "/ngx_http_lua_module.so;' \"$@\"", "" }, "\n")))
    assert(run("chmod 0700 " .. q(fake)))
    assert.are.equal("", server.load_modules(fake, server.MODULES))
    local dir = base .. "/sb"
    local url, pid = server.start({ dir = dir, nginx = fake })
    assert.is_string(url, pid)
    local conf = host.read_file(dir .. "/nginx.conf")
    assert.is_nil(conf:find("load_module", 1, true))
    local out = capture("curl -sS -H 'Authorization: Bearer user:1-sandbox' " .. q(url .. "/accounts"))
    assert.are.equal("{}", out)
    assert.is_true(server.stop({ dir = dir }))
    -- the environment override does the same for the CLI
    out = capture("FLOWMUSIC_SANDBOX_NGINX=" .. q(fake) .. " " .. LUA .. " bin/flowmusic sandbox start --dir "
      .. q(dir) .. " 2>&1 && FLOWMUSIC_SANDBOX_NGINX=" .. q(fake) .. " " .. LUA
      .. " bin/flowmusic sandbox stop --dir " .. q(dir) .. " 2>&1")
    assert.matches("http://127%.0%.0%.1:%d+/v1/flowmusic", out)
    assert.matches("sandbox stopped", out)
  end)

  it("runs the workers as the invoking user", function()
    local dir = base .. "/sb"
    local url, pid = server.start({ dir = dir })
    assert.is_string(url, pid)
    local worker = host.read_pid(dir .. "/worker.pid")
    assert.are.equal(host.uid(), host.process(worker).uid)
    assert.is_true(server.stop({ dir = dir }))
  end)
end)
