--- Fleet files: the accounts you want, one per line, for `flowmusic plan` and `apply`.
--
-- CSV with the header `email,max_jobs,refresh_token_file` (columns in any order, optional
-- ones may be left out, `labels` too) or JSON Lines with the same keys. They are read by the
-- batch file reader (`flowmusic.rowfile`), with the same line-numbered errors. `email` is
-- required; an empty `max_jobs` leaves maxJobs alone; `refresh_token_file` is relative to
-- the fleet file's directory and is read only when the account must be added or
-- re-authenticated; `labels` is `team=a;plan=pro` (in JSON Lines also an object of strings),
-- by the rule of `flowmusic.fleet.labels`. A duplicate email is an input error, and so is an
-- empty file (with `--prune` it would delete every account).
--
--     local fleetfile = require "flowmusic.fleet.fleetfile"
--     local wanted, err = fleetfile.read("fleet.csv")   -- for flowmusic.fleet.plan
-- @module flowmusic.fleet.fleetfile
local rowfile = require "flowmusic.rowfile"
local validate = require "flowmusic.validate"
local files = require "flowmusic.files"
local labels = require "flowmusic.fleet.labels"

local M = {}

--- The keys of a fleet file row.
M.KEYS = { "email", "max_jobs", "refresh_token_file", "labels" }
local SCHEMA = rowfile.schema(M.KEYS, "email", "fleet file", { labels = true })

-- The current directory (for making token paths absolute, so saved plans work from anywhere).
local cwd
local function current_dir()
  if cwd then return cwd end
  local p = io.popen("pwd 2>/dev/null")
  local d = p and p:read("*l")
  if p then p:close() end
  cwd = (d and d:sub(1, 1) == "/") and d or "."
  return cwd
end

local function dir_of(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == "" then return "/" end
  d = d or "."
  if d:sub(1, 1) ~= "/" then d = current_dir() .. (d == "." and "" or "/" .. d) end
  return d
end

--- Parse a fleet file's text.
-- @param text the content
-- @param opts optional `{ name = for messages, base_dir = directory token paths are relative
--   to (default "."), format = "csv" | "jsonl" (default: guessed from name and text),
--   secrets = strings never to quote in a message }`
-- @return array of wanted entries `{ line =, email =, max_jobs = n|nil,
--   refresh_token_file = path|nil, labels = { key = value }|nil }` (for
--   `flowmusic.fleet.plan`; `labels` nil when the row has none); or nil, message (one line
--   per problem, each `NAME: line N: ...`)
function M.parse(text, opts)
  opts = opts or {}
  local name = opts.name or "fleet file"
  local base = opts.base_dir or "."
  local rows, err = rowfile.parse(text, opts.format or rowfile.detect(opts.name, text), opts.secrets, SCHEMA)
  if not rows then return nil, name .. ": " .. err end
  local wanted, errs, first_line = {}, {}, {}
  for _, row in ipairs(rows) do
    local bad
    if row.error then
      bad = row.error
    elseif row.email == nil then
      bad = "email is required"
    else
      local ok, msg = validate.email(row.email)
      if not ok then bad = msg end
    end
    local entry = { line = row.line, email = row.email }
    if not bad and row.max_jobs ~= nil then
      local n, msg = validate.max_jobs_input(row.max_jobs, nil, opts.secrets)
      if n then entry.max_jobs = n else bad = msg end
    end
    if not bad and row.refresh_token_file ~= nil then
      local f = row.refresh_token_file
      if f == "-" then
        bad = "refresh_token_file must name a file"
      else
        entry.refresh_token_file = f:sub(1, 1) == "/" and f or (base .. "/" .. f)
      end
    end
    if not bad and row.labels ~= nil then
      local l, msg = labels.from(row.labels, opts.secrets)
      if msg then bad = "labels: " .. msg else entry.labels = l end
    end
    if not bad and first_line[entry.email] then
      bad = ("duplicate email %s (first on line %d)"):format(entry.email, first_line[entry.email])
    end
    if bad then
      errs[#errs + 1] = ("%s: line %d: %s"):format(name, row.line, bad)
    else
      first_line[entry.email] = row.line
      wanted[#wanted + 1] = entry
    end
  end
  if #errs > 0 then return nil, table.concat(errs, "\n") end
  return wanted
end

--- Read and parse a fleet file ("-" = standard input; token paths then relative to the
-- current directory). Token paths come back absolute.
-- @param path file name
-- @param opts optional `{ format = "csv" | "jsonl", text = the content when already read,
--   secrets = strings never to quote in a message }`
-- @return wanted entries (see `parse`); or nil, message
function M.read(path, opts)
  opts = opts or {}
  local text = opts.text
  if text == nil then
    local err
    text, err = files.read_file(path, "fleet file", rowfile.MAX_BYTES)
    if not text then return nil, err end
  end
  return M.parse(text, { name = path == "-" and "(stdin)" or path, format = opts.format, secrets = opts.secrets,
                         base_dir = path == "-" and current_dir() or dir_of(path) })
end

--- Read a refresh token from a file (trailing newline trimmed; the token is never echoed).
-- A file group or others may read or write is refused, naming the file and the fix
-- (flowmusic.files.loose_mode), unless `opts.allow_insecure`.
-- @param path file name
-- @param opts optional `{ allow_insecure = bool }`
-- @return token; or nil, message, and "insecure" when the file's mode was the reason
function M.read_token(path, opts)
  return files.read_secret(path, "refresh token file", opts)
end

return M
