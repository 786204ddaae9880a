--- The transport settings of a libcurl session and its scheduler, from options already
-- checked one by one: timeouts, the retry schedule, TLS trust, the proxy, the user agent.
-- The one place where the defaults (flowmusic.defaults) fill in what was not given, for the
-- API client (flowmusic.new) and for webhook senders (flowmusic.webhook) alike.
-- @module flowmusic.settings
local core = require "flowmusic.core"
local defaults = require "flowmusic.defaults"
local trust = require "flowmusic.trust"
local proxy = require "flowmusic.proxy"

local M = {}

--- The settings for requests to url.
-- @tparam table o checked options (timeout, connect_timeout, deadline, retries, base_delay,
--   max_delay, retry_after_max, clock, sleep, random, null, on_event, thread_pool,
--   allow_blocking, max_response_bytes, cainfo, capath, proxy, user_agent), all optional
-- @tparam string url where the requests go (to pick the proxy the environment names for it)
-- @return the settings table (without token or base URL), or nil and a message (an
--   unreadable CA file or directory)
function M.transport(o, url)
  local ca, msg = trust.resolve(o.cainfo, o.capath)
  if not ca then return nil, msg end
  local cfg = {
    null = o.null, on_event = o.on_event,
    timeout = o.timeout or defaults.timeout, connect_timeout = o.connect_timeout or defaults.connect_timeout,
    deadline = o.deadline or defaults.deadline, retries = o.retries or defaults.retries,
    base_delay = o.base_delay or defaults.base_delay, max_delay = o.max_delay or defaults.max_delay,
    retry_after_max = o.retry_after_max or defaults.retry_after_max,
    clock = o.clock or core.now, sleep = o.sleep, random = o.random or math.random,
    thread_pool = o.thread_pool or defaults.thread_pool, allow_blocking = o.allow_blocking or false,
    max_response_bytes = o.max_response_bytes or defaults.max_response_bytes,
    cainfo = ca.cainfo, capath = ca.capath, proxy = o.proxy,
    -- Short on purpose: libcurl 7.88 spends about 100 instructions on every header byte.
    user_agent = o.user_agent or ("flowmusic/" .. defaults.VERSION),
  }
  -- Which proxy libcurl will use: to tell its failures apart, and never to show its password.
  local proxy_url = proxy.for_url(o.proxy, url)
  cfg.via_proxy, cfg.proxy_secrets = proxy_url ~= nil, proxy.secrets(proxy_url)
  return cfg
end

return M
