--- Spec helper: a real Prometheus server (Debian's `prometheus`) on a free loopback port, in
-- a private directory, scraping the given targets every second and evaluating rules every
-- second; stopped by pid.
--
--     local prometheus = require "spec.helpers.prometheus"
--     local p = prometheus.start { targets = { { job = "flowmusic", target = "127.0.0.1:8080" } },
--       rule_files = { "/path/alerts.yml" } }
--     p:ready(30)                               -- true once /-/ready answers 200
--     local code, doc = p:get("/api/v1/query?query=up")
--     p:query("flowmusic_status_success")       -- the result array of an instant query
--     p:stop()
-- @module spec.helpers.prometheus
local cjson = require "cjson"
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local host = require "flowmusic.sandbox.host"

local q = host.shell_quote
local live = require("spec.helpers.live").new() -- servers not yet stopped

local M = {}

local Prom = {}
Prom.__index = Prom

--- Whether pid is a live (non-zombie) process.
function M.alive(pid)
  local state = pid and host.proc_info(pid)
  return state ~= nil and state ~= "Z" and state ~= "X"
end

--- Whether the `prometheus` binary is there.
function M.available()
  return host.run("command -v prometheus >/dev/null 2>&1")
end

--- Stop by pid (SIGTERM, then SIGKILL after 10 s) and remove the directory. Idempotent.
function Prom:stop()
  if self.stopped then return end
  self.stopped = true
  live.remove(self)
  if M.alive(self.pid) then
    host.run("kill -TERM " .. self.pid)
    local deadline = socket.gettime() + 10
    while M.alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.05) end
    if M.alive(self.pid) then host.run("kill -KILL " .. self.pid) end
  end
  host.run("rm -rf " .. q(self.dir))
end

--- GET a path of its HTTP API: status, decoded JSON (or the raw body).
function Prom:get(path)
  local chunks = {}
  local ok, code = http.request { url = "http://127.0.0.1:" .. self.port .. path,
    sink = ltn12.sink.table(chunks) }
  if not ok then return nil, code end
  local body = table.concat(chunks)
  local dok, doc = pcall(cjson.decode, body)
  return code, dok and doc or body
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- The result of an instant query (an array, empty when no series), or nil and why.
function Prom:query(expr)
  local code, doc = self:get("/api/v1/query?query=" .. urlencode(expr))
  if code ~= 200 or type(doc) ~= "table" or doc.status ~= "success" then
    return nil, ("query %s: %s %s"):format(expr, tostring(code), type(doc) == "table" and cjson.encode(doc) or tostring(doc))
  end
  return doc.data.result
end

--- Its log so far.
function Prom:log()
  return host.read_file(self.dir .. "/prometheus.log") or ""
end

--- Wait (bounded) until it is ready.
function Prom:ready(seconds)
  local deadline = socket.gettime() + seconds
  repeat
    if self:get("/-/ready") == 200 then return true end
    socket.sleep(0.1)
  until socket.gettime() > deadline
  return false
end

--- Start Prometheus.
-- @tparam table opts `targets` (array of `{ job =, target = "host:port", path = "/metrics" }`),
--   `rule_files` (array of paths, copied into its directory)
function M.start(opts)
  local dir = host.capture("mktemp -d /tmp/flowmusic-prometheus-spec.XXXXXX"):gsub("%s+$", "")
  assert(dir ~= "", "mktemp failed")
  local conf = { "global:", "  scrape_interval: 1s", "  evaluation_interval: 1s" }
  if opts.rule_files then
    conf[#conf + 1] = "rule_files:"
    for i, path in ipairs(opts.rule_files) do
      local copy = ("%s/rules-%d.yml"):format(dir, i)
      assert(host.write_file(copy, assert(host.read_file(path), path)))
      conf[#conf + 1] = "  - " .. copy
    end
  end
  conf[#conf + 1] = "scrape_configs:"
  for _, t in ipairs(opts.targets) do
    for _, line in ipairs({ "  - job_name: " .. t.job, "    scrape_interval: 1s", "    scrape_timeout: 1s",
      "    metrics_path: " .. (t.path or "/metrics"), "    static_configs:",
      "      - targets: ['" .. t.target .. "']" }) do
      conf[#conf + 1] = line
    end
  end
  conf[#conf + 1] = ""
  assert(host.write_file(dir .. "/prometheus.yml", table.concat(conf, "\n")))
  local port = assert(host.free_port())
  local pid = tonumber(host.capture(table.concat({
    "prometheus", "--config.file=" .. q(dir .. "/prometheus.yml"),
    "--storage.tsdb.path=" .. q(dir .. "/data"),
    "--web.listen-address=127.0.0.1:" .. port,
    ">" .. q(dir .. "/prometheus.log"), "2>&1 </dev/null & echo $!" }, " ")):match("%d+"))
  assert(pid, "prometheus did not start")
  local p = setmetatable({ pid = pid, port = port, dir = dir }, Prom)
  live.add(p)
  return p
end

M.stop_all = live.stop_all
M._sentinel = live.sentinel

return M
