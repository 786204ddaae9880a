--- Fleet status in the Prometheus text exposition format (version 0.0.4), and its atomic
-- write for node_exporter's textfile collector.
--
--     local status = require "flowmusic.fleet.status"
--     local prometheus = require "flowmusic.fleet.prometheus"
--     local records, summary = status.collect(client)
--     local text = prometheus.exposition(records, summary, { timestamp = os.time() })
--     assert(prometheus.write_file("/var/lib/node_exporter/flowmusic.prom", text))
--
-- Metrics (each with `# HELP` and `# TYPE`):
--
-- * `flowmusic_account_up{email,tier}`: 1 for `ok`/`low_credits`, 0 otherwise;
-- * `flowmusic_account_needs_reauth{email}`: 1 when the state is `needs_reauth`;
-- * `flowmusic_account_credits_remaining{email}`, `flowmusic_account_tokens_remaining{email}`:
--   left out for an account whose value is unknown;
-- * `flowmusic_account_max_jobs{email}`;
-- * `flowmusic_account_refreshed_timestamp_seconds{email}` (when `refreshed_at` is known);
-- * `flowmusic_account_access_token_expires_timestamp_seconds{email}`;
-- * `flowmusic_account_jobs_running{email}` (when `list_jobs` answered);
-- * `flowmusic_account_info{email,tier,subscription_plan}`: 1; a record with `labels` (its
--   fleet file's, `flowmusic status --fleet FILE`) adds one `label_<key>="value"` per label,
--   keys sorted (as kube-state-metrics does);
-- * `flowmusic_accounts{state}`: accounts per state (every state, 0 included);
-- * `flowmusic_subscription_active`, `flowmusic_subscription_accounts_max` (when
--   `get_subscription` answered);
-- * `flowmusic_build_info{version,libcurl}`: 1;
-- * `flowmusic_status_success`: 1, or 0 when the list call failed (or, in nginx, the data
--   is stale);
-- * `flowmusic_status_timestamp_seconds`: when the status was collected;
-- * `flowmusic_status_duration_seconds`: how long the collection took.
--
-- Label values are escaped as the format requires (`\` → `\\`, `"` → `\"`, newline → `\n`).
-- No API token ever enters a metric: the records hold none.
-- @module flowmusic.fleet.prometheus
local status = require "flowmusic.fleet.status"
local format = require "flowmusic.format"

local M = {}

--- Content-Type of the text exposition format.
M.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

local label_escapes = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }

--- Escape a label value (backslash, double quote, line feed).
-- @tparam string s
-- @treturn string
function M.escape_label(s)
  return (tostring(s):gsub('[\\"\n]', label_escapes))
end

--- Escape HELP text (backslash, line feed).
-- @tparam string s
-- @treturn string
function M.escape_help(s)
  return (tostring(s):gsub("[\\\n]", label_escapes))
end

--- A sample value as text: integers without a fraction, `NaN`, `+Inf`, `-Inf`, other numbers
-- with the fewest digits that read back the same.
-- @tparam number v
-- @treturn string
function M.number(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  return format.exact(v)
end

--- A new metric family.
-- @tparam string name
-- @tparam string kind `gauge`, `counter`, ...
-- @tparam string help
-- @treturn table `{ name, kind, help, samples = {} }`
function M.family(name, kind, help)
  return { name = name, kind = kind, help = help, samples = {} }
end

--- Add a sample to a family.
-- @tparam table fam from `family`
-- @tparam[opt] table labels array of `{ name, value }` pairs (in output order)
-- @tparam number value
-- @treturn table fam
function M.add(fam, labels, value)
  fam.samples[#fam.samples + 1] = { labels = labels, value = value }
  return fam
end

--- Render families as exposition text (each family's HELP, TYPE and samples together).
-- @tparam {table,...} families
-- @treturn string
function M.render(families)
  local out = {}
  for _, fam in ipairs(families) do
    out[#out + 1] = "# HELP " .. fam.name .. " " .. M.escape_help(fam.help)
    out[#out + 1] = "# TYPE " .. fam.name .. " " .. fam.kind
    for _, s in ipairs(fam.samples) do
      local line = fam.name
      if s.labels and #s.labels > 0 then
        local parts = {}
        for i, l in ipairs(s.labels) do parts[i] = l[1] .. '="' .. M.escape_label(l[2]) .. '"' end
        line = line .. "{" .. table.concat(parts, ",") .. "}"
      end
      out[#out + 1] = line .. " " .. M.number(s.value)
    end
  end
  if #out == 0 then return "" end
  return table.concat(out, "\n") .. "\n"
end

--- The per-account families and `flowmusic_accounts{state}` for collected records.
-- @tparam {table,...} records from `flowmusic.fleet.status.collect`
-- @tparam[opt] table summary its summary (computed from records when absent)
-- @treturn {table,...} families
function M.account_families(records, summary)
  summary = summary or status.summarize(records)
  local up = M.family("flowmusic_account_up", "gauge",
    "1 when the account is usable (state ok or low_credits), 0 otherwise")
  local reauth = M.family("flowmusic_account_needs_reauth", "gauge",
    "1 when the account needs re-authentication (its refresh token was rejected)")
  local credits = M.family("flowmusic_account_credits_remaining", "gauge",
    "Credits remaining on the account (absent when unknown)")
  local tokens = M.family("flowmusic_account_tokens_remaining", "gauge",
    "Tokens remaining on the account (absent when unknown)")
  local jobs = M.family("flowmusic_account_max_jobs", "gauge",
    "maxJobs configured for the account")
  local refreshed = M.family("flowmusic_account_refreshed_timestamp_seconds", "gauge",
    "When the account's session was last refreshed, seconds since the epoch")
  local expires = M.family("flowmusic_account_access_token_expires_timestamp_seconds", "gauge",
    "When the account's access token expires (useapi refreshes it before), seconds since the epoch")
  local running = M.family("flowmusic_account_jobs_running", "gauge",
    "Jobs running now on the account (GET /jobs; absent when it could not be listed)")
  local info = M.family("flowmusic_account_info", "gauge",
    "Always 1: the account's tier, subscription plan and fleet file labels (label_<key>) as labels")
  local accounts = M.family("flowmusic_accounts", "gauge", "Accounts per state")
  for _, r in ipairs(records) do
    local email = { "email", r.email }
    M.add(up, { email, { "tier", r.tier or "" } }, (r.state == "ok" or r.state == "low_credits") and 1 or 0)
    M.add(reauth, { email }, r.state == "needs_reauth" and 1 or 0)
    if type(r.credits_remaining) == "number" then M.add(credits, { email }, r.credits_remaining) end
    if type(r.tokens_remaining) == "number" then M.add(tokens, { email }, r.tokens_remaining) end
    if type(r.max_jobs) == "number" then M.add(jobs, { email }, r.max_jobs) end
    local ts = status.timestamp(r.refreshed_at)
    if ts then M.add(refreshed, { email }, ts) end
    local exp = status.timestamp(r.access_token_expires_at)
    if exp then M.add(expires, { email }, exp) end
    if type(r.jobs_running) == "number" then M.add(running, { email }, r.jobs_running) end
    local info_labels = { email, { "tier", r.tier or "" }, { "subscription_plan", r.subscription_plan or "" } }
    if type(r.labels) == "table" then -- (keys follow flowmusic.fleet.labels: valid label names)
      local keys = {}
      for k in pairs(r.labels) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do info_labels[#info_labels + 1] = { "label_" .. k, r.labels[k] } end
    end
    M.add(info, info_labels, 1)
  end
  for _, st in ipairs(status.STATES) do M.add(accounts, { { "state", st } }, summary[st] or 0) end
  local fams = { up, reauth, credits, tokens, jobs, refreshed, expires, running, info, accounts }
  local sub = summary.subscription
  if sub and sub.active ~= nil then
    fams[#fams + 1] = M.add(M.family("flowmusic_subscription_active", "gauge",
      "1 when the useapi.net subscription is active (GET /v2/account)"), nil, sub.active and 1 or 0)
  end
  if sub and sub.accounts_max then
    fams[#fams + 1] = M.add(M.family("flowmusic_subscription_accounts_max", "gauge",
      "Accounts per API the useapi.net subscription allows (GET /v2/account maxAccountsPerAPI)"), nil,
      sub.accounts_max)
  end
  return fams
end

--- `flowmusic_build_info{version,libcurl}` (always 1).
-- @treturn table the family
function M.build_info()
  return M.add(M.family("flowmusic_build_info", "gauge",
    "Always 1: the flowmusic version and the libcurl it runs on, as labels"),
    { { "version", require("flowmusic.defaults").VERSION },
      { "libcurl", require("flowmusic.core").curl_version() } }, 1)
end

--- The families about the collection itself.
-- @tparam table meta `success` (boolean), `timestamp` (seconds since the epoch of the
--   collection; left out when nil), `age` (seconds; adds `flowmusic_status_age_seconds`),
--   `duration` (seconds the collection took; adds `flowmusic_status_duration_seconds`)
-- @treturn {table,...} families
function M.status_families(meta)
  local fams = { M.build_info(), M.add(M.family("flowmusic_status_success", "gauge",
    "1 when the last status collection listed the accounts (and is fresh), 0 otherwise"),
    nil, meta.success and 1 or 0) }
  if meta.duration then
    fams[#fams + 1] = M.add(M.family("flowmusic_status_duration_seconds", "gauge",
      "How long the status collection took"), nil, meta.duration)
  end
  if meta.timestamp then
    fams[#fams + 1] = M.add(M.family("flowmusic_status_timestamp_seconds", "gauge",
      "When the status shown was collected, seconds since the epoch"), nil, meta.timestamp)
  end
  if meta.age then
    fams[#fams + 1] = M.add(M.family("flowmusic_status_age_seconds", "gauge",
      "Seconds since the status shown was collected"), nil, meta.age)
  end
  return fams
end

--- The spend of the fleet from `flowmusic.fleet.usage` aggregates (what `flowmusic usage --all
-- --prometheus FILE` writes): per account `flowmusic_usage_charged_credits_today{email}`
-- (today, UTC; 0 when today is outside the range) and `flowmusic_usage_charged_credits_range{email}`
-- (the whole range), `flowmusic_usage_success` (1 when every account's usage was read) and
-- `flowmusic_usage_timestamp_seconds`. No song labels: one series per account.
-- @tparam table|nil agg the aggregates, nil when the accounts could not be listed
-- @tparam table meta `timestamp` (seconds since the epoch)
-- @treturn {table,...} families
function M.usage_families(agg, meta)
  local fams = { M.build_info(), M.add(M.family("flowmusic_usage_success", "gauge",
    "1 when the usage of every account was read, 0 otherwise"), nil,
    (agg and agg.total.failed == 0) and 1 or 0) }
  if meta.timestamp then
    fams[#fams + 1] = M.add(M.family("flowmusic_usage_timestamp_seconds", "gauge",
      "When the usage was collected, seconds since the epoch"), nil, meta.timestamp)
  end
  if not agg then return fams end
  local today_key = os.date("!%Y-%m-%d", meta.timestamp or os.time())
  local today_by = {}
  for _, d in ipairs(agg.days) do
    if d.key == today_key then today_by = d.by_account end
  end
  local today = M.family("flowmusic_usage_charged_credits_today", "gauge",
    "Credits charged to the account today (UTC)")
  local range = M.family("flowmusic_usage_charged_credits_range", "gauge",
    "Credits charged to the account in the report's range (--since/--until; all its history without)")
  for _, a in ipairs(agg.accounts) do
    if not a.error then
      M.add(today, { { "email", a.email } }, today_by[a.email] or 0)
      M.add(range, { { "email", a.email } }, a.charged_credits or 0)
    end
  end
  fams[#fams + 1] = today
  fams[#fams + 1] = range
  return fams
end

--- The whole exposition of one collection (what `flowmusic status --prometheus` writes).
-- @tparam {table,...}|nil records nil when the list call failed
-- @tparam[opt] table summary
-- @tparam table meta `timestamp` (seconds since the epoch)
-- @treturn string
function M.exposition(records, summary, meta)
  local text = M.render(M.status_families({ success = records ~= nil, timestamp = meta and meta.timestamp,
    duration = meta and meta.duration }))
  if records then text = text .. M.render(M.account_families(records, summary)) end
  return text
end

-- Unique enough suffix for a temporary file name.
local function suffix()
  return ("%d.%s.%06d"):format(os.time(), tostring({}):match("0x(%x+)") or "0",
    math.random(0, 999999))
end

--- Write a file atomically: a temporary file in the same directory (named `.<name>.tmp.*`,
-- so a textfile collector reading `*.prom` never sees it), then a rename over `path`.
-- @tparam string path
-- @tparam string text
-- @treturn true, or nil, message (the temporary file is removed)
function M.write_file(path, text)
  if type(path) ~= "string" or path == "" then
    error("flowmusic.fleet.prometheus: bad argument #1 to 'write_file' (a path expected)", 2)
  end
  local dir, name = path:match("^(.*/)([^/]+)$")
  if not dir then dir, name = "", path end
  if name == "" then return nil, ("cannot write '%s': not a file name"):format(path) end
  local tmp = dir .. "." .. name .. ".tmp." .. suffix()
  local f, err = io.open(tmp, "wb")
  if not f then return nil, ("cannot write '%s': %s"):format(path, tostring(err)) end
  local ok, werr = f:write(text)
  if ok then ok, werr = f:flush() end
  f:close()
  if ok then ok, werr = os.rename(tmp, path) end
  if not ok then
    os.remove(tmp)
    return nil, ("cannot write '%s': %s"):format(path, tostring(werr))
  end
  return true
end

return M
