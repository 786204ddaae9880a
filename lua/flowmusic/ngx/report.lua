--- The fleet usage report served by nginx, refreshed in the background.
--
--     lua_shared_dict flowmusic_report 16m;
--     location = /report {
--         content_by_lua_block {
--             require("flowmusic.ngx.report").serve { dict = "flowmusic_report", client = app.client }
--         }
--     }
--
-- A timer (`ngx.timer.every`, started by M.start from `init_worker_by_lua`, or by the first
-- M.serve of each worker) runs flowmusic.fleet.usage.collect and stores the page rendered by
-- flowmusic.report.html in a lua_shared_dict; page views only read it, so they never fetch
-- usage documents. Workers share the page; a lock in the dict makes one refresh at a time, and
-- a worker skips a refresh when another made the page less than half an interval ago.
-- While the first refresh runs, /report answers 503 with Retry-After.
-- @module flowmusic.ngx.report
local fleet_usage = require "flowmusic.fleet.usage"
local html = require "flowmusic.report.html"

local M = {}

local KEY_PAGE, KEY_AT, KEY_ERROR, KEY_LOCK = "page", "at", "error", "lock"
local started = {} -- dict name -> true, per worker

local known = { dict = true, client = true, interval = true, days = true, concurrency = true, title = true }

-- Check the options; raises on misuse.
local function check(opts, level)
  if type(opts) ~= "table" then error("flowmusic.ngx.report: options must be a table", level + 1) end
  for k in pairs(opts) do
    if not known[k] then error(("flowmusic.ngx.report: unknown option '%s'"):format(tostring(k)), level + 1) end
  end
  if type(opts.dict) ~= "string" then
    error("flowmusic.ngx.report: dict (a lua_shared_dict name) is required", level + 1)
  end
  if not ngx.shared[opts.dict] then
    error(("flowmusic.ngx.report: no lua_shared_dict '%s' (declare it in the http block)"):format(opts.dict), level + 1)
  end
  local c = opts.client
  if type(c) ~= "function" and type(c) ~= "table" then
    error("flowmusic.ngx.report: client (a flowmusic client, or a function returning one) is required", level + 1)
  end
  local interval = opts.interval
  if interval ~= nil and (type(interval) ~= "number" or interval <= 0 or interval ~= interval) then
    error("flowmusic.ngx.report: interval must be a positive number of seconds", level + 1)
  end
  local days = opts.days
  if days ~= nil and (type(days) ~= "number" or days < 1 or days ~= math.floor(days)) then
    error("flowmusic.ngx.report: days must be a positive integer", level + 1)
  end
end

local function interval_of(opts) return opts.interval or 300 end

--- Make the page once now (in a phase that may yield: timer, content, ...). Skipped when
-- another worker made it less than half an interval ago or is making it now.
-- @param opts as for M.serve
-- @return true when a page was stored; or nil, reason ("fresh", "busy", or the error text)
function M.refresh(opts)
  check(opts, 2)
  local dict = ngx.shared[opts.dict]
  local at = dict:get(KEY_AT)
  if at and ngx.now() - at < interval_of(opts) / 2 then return nil, "fresh" end
  if not dict:add(KEY_LOCK, true, 900) then return nil, "busy" end
  local ok, res, err = pcall(function()
    local client = opts.client
    if type(client) == "function" then client = client() end
    local since
    if opts.days then since = os.date("!%Y-%m-%d", ngx.time() - (opts.days - 1) * 86400) end
    local agg, cerr = fleet_usage.collect(client, { since = since, concurrency = opts.concurrency })
    if not agg then return nil, "cannot list the accounts: " .. tostring(cerr) end
    local page = html.render(agg, { title = opts.title or "Flow Music usage: all accounts" })
    local sok, serr = dict:set(KEY_PAGE, page)
    if not sok then return nil, "cannot store the page in lua_shared_dict '" .. opts.dict .. "': " .. tostring(serr) end
    return true
  end)
  if not ok then res, err = nil, tostring(res) end
  if res then
    dict:set(KEY_AT, ngx.now())
    dict:delete(KEY_ERROR)
  else
    dict:set(KEY_ERROR, err)
    ngx.log(ngx.ERR, "flowmusic.ngx.report: refresh failed: ", err)
  end
  dict:delete(KEY_LOCK)
  return res, err
end

--- Start the background refresh in this worker (once per dict; later calls do nothing):
-- a refresh now, then every `interval` seconds. Call from init_worker_by_lua, or let M.serve
-- call it.
-- @param opts as for M.serve
-- @return true; raises on misuse
function M.start(opts)
  check(opts, 2)
  if started[opts.dict] then return true end
  local function tick(premature)
    if premature then return end
    M.refresh(opts)
  end
  local ok, err = ngx.timer.at(0, tick)
  if ok then ok, err = ngx.timer.every(interval_of(opts), tick) end
  if not ok then error("flowmusic.ngx.report: cannot start the refresh timer: " .. tostring(err), 2) end
  started[opts.dict] = true
  return true
end

--- Answer a request with the latest page (content phase). 503 + Retry-After while the first
-- refresh runs (with the last error, as text, when it failed).
-- @param opts { dict = lua_shared_dict name, client = client or function returning it,
--   interval = seconds between refreshes (300), days = only the last N UTC days (default: all
--   history), concurrency = usage calls in flight (batch default), title = page heading }
function M.serve(opts)
  M.start(opts)
  local dict = ngx.shared[opts.dict]
  local page = dict:get(KEY_PAGE)
  if not page then
    ngx.status = 503
    ngx.header["Content-Type"] = "text/plain; charset=utf-8"
    ngx.header["Retry-After"] = "5"
    local err = dict:get(KEY_ERROR)
    ngx.say(err and ("the usage report could not be made: " .. err)
      or "the usage report is being made; try again shortly")
    return ngx.exit(503)
  end
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.header["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
  ngx.header["X-Content-Type-Options"] = "nosniff"
  local at = dict:get(KEY_AT)
  if at then ngx.header["Last-Modified"] = ngx.http_time(math.floor(at)) end
  ngx.print(page)
  return ngx.exit(200)
end

return M
