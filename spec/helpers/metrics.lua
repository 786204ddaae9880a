--- Spec helper for the fleet-status metrics: parse Prometheus text exposition, run
-- `promtool check metrics`, and build examples/nginx/nginx.conf for a test run.
--
--     local metrics = require "spec.helpers.metrics"
--     local m = metrics.parse(text)
--     m:value("flowmusic_account_credits_remaining", { email = "a@x.com" })  --> 5000
--     local ok, out = metrics.promtool(text)
--     local conf = metrics.example_conf { interval = 1, workers = 2, start = "min_credits = 200" }
-- @module spec.helpers.metrics
local host = require "flowmusic.sandbox.host"

local M = {}

local q = host.shell_quote

-- Undo label-value escaping (\\, \", \n).
local function unescape(s)
  return (s:gsub("\\(.)", { ["\\"] = "\\", ['"'] = '"', n = "\n" }))
end

-- Labels of a sample line: the text between braces -> table name -> value; or raises.
local function parse_labels(s)
  local labels, i = {}, 1
  while i <= #s do
    local name, j = s:match("^%s*([%a_][%w_]*)%s*=%s*\"()", i)
    if not name then error("bad labels: " .. s) end
    local k, value = j, {}
    while true do
      local c = s:sub(k, k)
      if c == "" then error("unterminated label value: " .. s) end
      if c == "\\" then
        value[#value + 1] = s:sub(k, k + 1)
        k = k + 2
      elseif c == '"' then
        break
      else
        value[#value + 1] = c
        k = k + 1
      end
    end
    labels[name] = unescape(table.concat(value))
    i = k + 1
    local comma = s:match("^%s*,()", i)
    if comma then i = comma else break end
  end
  return labels
end

local Parsed = {}
Parsed.__index = Parsed

--- Parse exposition text.
-- @treturn table `{ samples = { {name=, labels=, value=}, ... }, help = {name=text}, type = {name=kind} }`
function M.parse(text)
  local p = setmetatable({ samples = {}, help = {}, type = {} }, Parsed)
  for line in text:gmatch("[^\n]+") do
    local name, rest = line:match("^# HELP ([%w_:]+) ?(.*)$")
    if name then
      p.help[name] = rest
    else
      local tname, kind = line:match("^# TYPE ([%w_:]+) (%w+)$")
      if tname then
        p.type[tname] = kind
      elseif not line:match("^#") then
        local n, labels, value = line:match("^([%w_:]+){(.*)}%s+(%S+)$")
        if not n then
          n, value = line:match("^([%w_:]+)%s+(%S+)$")
          labels = nil
        end
        if not n then error("bad sample line: " .. line) end
        p.samples[#p.samples + 1] = { name = n, labels = labels and parse_labels(labels) or {},
          value = tonumber(value) or (value == "NaN" and 0 / 0) or (value == "+Inf" and math.huge)
            or (value == "-Inf" and -math.huge) }
      end
    end
  end
  return p
end

--- Samples of a metric whose labels include `labels`.
-- @treturn {table,...}
function Parsed:find(name, labels)
  local out = {}
  for _, s in ipairs(self.samples) do
    if s.name == name then
      local match = true
      for k, v in pairs(labels or {}) do
        if s.labels[k] ~= v then match = false break end
      end
      if match then out[#out + 1] = s end
    end
  end
  return out
end

--- The value of the one sample of `name` with `labels`; nil when there is none; raises when
-- there are several.
function Parsed:value(name, labels)
  local found = self:find(name, labels)
  if #found > 1 then error(("%d samples of %s match"):format(#found, name), 2) end
  return found[1] and found[1].value
end

--- `promtool check metrics` on text.
-- @treturn boolean ok, string promtool's output
function M.promtool(text)
  local tmp = host.capture("mktemp /tmp/flowmusic-promtool.XXXXXX"):gsub("%s+$", "")
  assert(host.write_file(tmp, text))
  local out = host.capture("promtool check metrics < " .. q(tmp) .. " 2>&1; echo \"rc=$?\"")
  os.remove(tmp)
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc == 0, out
end

--- Whether promtool (Debian package prometheus) is installed.
function M.have_promtool()
  return host.run("command -v promtool >/dev/null 2>&1")
end

--- The repository (the current directory; busted runs from the root).
function M.repo_dir()
  return (host.capture("pwd"):gsub("%s+$", ""))
end

--- examples/nginx/nginx.conf made ready for spec.helpers.openresty: module paths to this
-- repository, `listen @PORT@`, a watchdog on this process, and the metrics options (the
-- openresty helper makes the workers run as the invoking user).
-- @tparam table o `interval` (seconds), `workers` (worker_processes), `start` (extra options
--   for flowmusic.ngx.metrics.start, Lua text), `locations` (extra locations, nginx text), `watch_pid`,
--   `watch_start`
-- @treturn string configuration text
function M.example_conf(o)
  local repo = M.repo_dir()
  local conf = assert(host.read_file(repo .. "/examples/nginx/nginx.conf"), "examples/nginx/nginx.conf is missing")
  local n
  conf, n = conf:gsub("/opt/flowmusic", repo)
  assert(n >= 2, "example no longer names /opt/flowmusic")
  conf, n = conf:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:@PORT@;")
  assert(n == 1, "example no longer listens on 127.0.0.1:8080")
  conf, n = conf:gsub("\nworker_processes %d+;", "\nworker_processes " .. (o.workers or 1) .. ";")
  assert(n == 1, "example has no worker_processes")
  local start = "interval = " .. tostring(o.interval or 60) .. (o.start and (", " .. o.start) or "")
  conf, n = conf:gsub('require%("flowmusic%.ngx%.metrics"%)%.start { interval = 60 }', function()
    return 'require("flowmusic.ngx.metrics").start { ' .. start .. " }"
  end)
  assert(n == 1, "example no longer starts flowmusic.ngx.metrics with interval = 60")
  if o.watch_pid then
    conf, n = conf:gsub("init_worker_by_lua_block {\n", function()
      return ("init_worker_by_lua_block {\n        require(\"flowmusic.sandbox.watchdog\").start"
        .. " { dir = \"@PREFIX@\", watch_pid = %d, watch_start = %q }\n"):format(o.watch_pid, o.watch_start or "")
    end)
    assert(n == 1, "example has no init_worker_by_lua_block")
  end
  if o.locations then
    conf, n = conf:gsub("\n(%s*)location / {", function(indent)
      return "\n" .. o.locations .. "\n" .. indent .. "location / {"
    end)
    assert(n == 1, "example has no 'location /'")
  end
  return conf
end

return M
