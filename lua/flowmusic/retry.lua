--- The retry policy of flowmusic: one pure function, used by single calls and batches alike.
--
-- | operation                          | not sent (connect, DNS, TLS handshake) | may have reached (reset, timeout, truncated) | 429 | 408, 500, 502, 503, 504 | other status, bad response |
-- |------------------------------------|-------|-------|-------|-------|----|
-- | get, delete, set_max_jobs, GET/HEAD/PUT/DELETE requests | retry | retry | retry | retry | no |
-- | add_account, POST/PATCH requests   | retry | no: outcome unknown | retry | no: outcome unknown | no |
--
-- Delay: the server's Retry-After (seconds or HTTP-date) when it sent one, refused (no retry,
-- the error keeps `retry_after`) beyond `retry_after_max`; otherwise exponential backoff with
-- full jitter: random() * min(max_delay, base_delay * 2^(attempt-1)). At most `retries`
-- re-sends; the engine also stops when the delay would cross the call's deadline.
-- @module flowmusic.retry
local errors = require "flowmusic.errors"

local M = {}

--- Defaults of the tunables (client options override `retries`).
M.defaults = { retries = 3, base_delay = 0.25, max_delay = 8, retry_after_max = 30 }

-- Operations that may be repeated without changing the outcome.
local idempotent = { get = true, delete = true, set_max_jobs = true, idempotent = true }
-- Statuses that say "try again later" without saying the request was refused for good.
local transient_status = { [408] = true, [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }

--- The class of an error value, as the policy sees it.
-- @return "network" | "timeout" | "http" | "fatal"
function M.class_of(err)
  local kind, reason = err.kind, err.reason
  if kind == "http" then return "http" end
  if kind == "timeout" then return "timeout" end
  if kind == "network" and reason ~= "tls_verify" and reason ~= "bad_url"
    and reason ~= "protocol" and reason ~= "out_of_memory" then
    return "network"
  end
  return "fatal"
end

--- The policy kind of an operation: "get", "delete", "set_max_jobs", "add_account", or for
-- `request` "idempotent" / "unsafe" by HTTP method.
function M.op_kind(op, method)
  if op ~= "request" then
    return (op == "get_account" or op == "list_accounts" or op == "get_usage") and "get"
      or op == "delete_account" and "delete" or op
  end
  return (method == "POST" or method == "PATCH") and "unsafe" or "idempotent"
end

--- Decide whether to send a failed call again, and after how long.
-- @param op policy kind (see op_kind)
-- @param class error class (see class_of)
-- @param reached false when the request provably never reached the server
-- @param status HTTP status or nil
-- @param headers response headers (lower-case names) or nil
-- @param attempt number of attempts made so far (1 after the first)
-- @param cfg table: retries, base_delay, max_delay, retry_after_max, random (function
--   returning [0,1)), now (Unix time, for HTTP-date Retry-After)
-- @return retry (boolean), delay (seconds, when retrying), why (string)
function M.decide(op, class, reached, status, headers, attempt, cfg)
  cfg = cfg or M.defaults
  local safe = idempotent[op] or false
  local ok, why
  if class == "fatal" then
    ok, why = false, "not_retryable"
  elseif class == "network" or class == "timeout" then
    if reached == false then ok, why = true, "not_sent"
    elseif safe then ok, why = true, class
    else ok, why = false, "outcome_unknown" end
  elseif class == "http" then
    if status == 429 then ok, why = true, "rate_limited"
    elseif transient_status[status] then
      if safe then ok, why = true, "transient_status" else ok, why = false, "outcome_unknown" end
    else ok, why = false, "not_retryable" end
  else
    ok, why = false, "not_retryable"
  end
  if not ok then return false, nil, why end
  if attempt > (cfg.retries or M.defaults.retries) then return false, nil, "retries_exhausted" end
  local retry_after = headers and errors.parse_retry_after(headers["retry-after"], cfg.now and cfg.now())
  if retry_after then
    if retry_after > (cfg.retry_after_max or M.defaults.retry_after_max) then
      return false, nil, "retry_after_too_long"
    end
    return true, retry_after, why
  end
  local base = cfg.base_delay or M.defaults.base_delay
  local ceiling = math.min(cfg.max_delay or M.defaults.max_delay, base * 2 ^ (attempt - 1))
  return true, (cfg.random or math.random)() * ceiling, why
end

return M
