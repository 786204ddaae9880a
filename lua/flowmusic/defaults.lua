--- The defaults of flowmusic, in one place: the library, the nginx adapter, the CLI and the
-- sandbox read them from here. Also the version of the whole project.
-- @module flowmusic.defaults
return {
  --- The version of flowmusic (the Lua modules, the C core and the sandbox alike).
  VERSION = "0.2.0",

  base_url = "https://api.useapi.net/v1/flowmusic",
  timeout = 30,            -- seconds per attempt
  connect_timeout = 10,    -- seconds to connect, per attempt
  deadline = 60,           -- seconds per call, across its retries
  retries = 3,             -- re-sends after the first attempt
  max_retries = 20,
  base_delay = 0.25,       -- backoff: random() * min(max_delay, base_delay * 2^(attempt-1))
  max_delay = 8,
  retry_after_max = 30,    -- a longer Retry-After fails the call at once
  max_response_bytes = 64 * 1024 * 1024,
  -- Decoded JSON may hold at most max_response_bytes / this many values (an API document
  -- spends far more bytes per value; a body of nested empty arrays spends 2-3).
  bytes_per_json_value = 16,

  concurrency = 16,        -- client:batch
  max_concurrency = 50,
  cli_concurrency = 8,     -- flowmusic batch and the fleet commands
  cancel_grace = 2,
  max_token_age = 15 * 60, -- seconds past its expiry before an access token counts as stale
  state_lock_wait = 60,    -- seconds a status run waits for another one's --state lock        -- seconds transfers in flight get after a stop (e.g. Ctrl-C)

  thread_pool = "flowmusic", -- nginx: the thread_pool calls run in
}
