--- Operator settings for the command line: the config file's named profiles, and the one
-- place that decides each setting. Precedence, for every setting: the flag, then the
-- environment, then the profile, then the default.
--
-- The config file (`$XDG_CONFIG_HOME/flowmusic/config`, else `~/.config/flowmusic/config`)
-- is INI, read with lua-inifile: `[NAME]` starts a profile, `key = value` lines set its
-- settings (the keys of `M.KEYS`), lines starting with `;` or `#` are comments. `--profile
-- NAME` or `$FLOWMUSIC_PROFILE` picks a profile; without either, `[default]` applies when the
-- file has one. Paths may start with `~/`; relative ones are relative to the config file.
-- @module flowmusic.cli.profile
local files = require "flowmusic.files"
local format = require "flowmusic.format"
local defaults = require "flowmusic.defaults"
local statedir = require "flowmusic.statedir"
local trust = require "flowmusic.trust"

local M = {}

--- The environment variable that picks a profile.
M.ENV = "FLOWMUSIC_PROFILE"

--- The settings a profile may hold, in the order `config show` lists them. Each is also the
-- flag's name (argparse's target: `--base-url` is `base_url`).
M.KEYS = { "base_url", "token_file", "cacert", "capath", "proxy", "min_credits", "state_dir" }
-- Per key: the environment variables that set it, in their order, and whether it is a path.
-- ($USEAPI_TOKEN holds the token itself; the CA and proxy variables are read as
-- flowmusic.trust and flowmusic.proxy read them.)
local SETTINGS = {
  base_url = { env = { "FLOWMUSIC_BASE_URL" } },
  token_file = { path = true },
  cacert = { path = true },
  capath = { path = true },
  proxy = {},
  min_credits = { env = { "FLOWMUSIC_MIN_CREDITS" } },
  state_dir = { env = { statedir.ENV }, path = true },
}
local MAX_BYTES = 64 * 1024

local function getenv(name)
  local v = os.getenv(name)
  if v ~= nil and v ~= "" then return v end
end

--- The config file's path, and what chose it ("$XDG_CONFIG_HOME" or "$HOME"); nil without
-- either variable.
function M.path()
  local xdg = getenv("XDG_CONFIG_HOME")
  if xdg then return xdg .. "/flowmusic/config", "$XDG_CONFIG_HOME" end
  local home = getenv("HOME")
  if home then return home .. "/.config/flowmusic/config", "$HOME" end
end

local function dir_of(path) return path:match("^(.*)/[^/]*$") or "." end

-- A path from the file: `~/` is the home directory, a relative path is relative to the file.
local function expand(value, config_path)
  local home = getenv("HOME")
  if value:sub(1, 2) == "~/" and home then return home .. value:sub(2) end
  if value:sub(1, 1) == "/" then return value end
  return dir_of(config_path) .. "/" .. value
end

-- The profiles of a config file's text: name -> { key -> value }, or
-- nil, message. Every line is checked here first (inifile skips what it doesn't understand,
-- and a misspelt line must not be silently ignored); inifile then splits the checked text.
local function parse(text, path)
  local clean, where, section, seen = {}, {}, nil, {}
  local n = 0
  for raw in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local line = raw:gsub("\r$", ""):match("^%s*(.-)%s*$")
    local function bad(why) return nil, ("%s: line %d: %s"):format(format.escape(path), n, why) end
    if line == "" or line:find("^[;#]") then
      line = ""
    elseif line:sub(1, 1) == "[" then
      local name = line:match("^%[%s*([%w_.-]+)%s*%]$")
      if not name then return bad("a profile name is [NAME] (letters, digits, '_', '.', '-')") end
      if seen[name] then return bad(("profile '%s' again (first on line %d)"):format(name, seen[name])) end
      seen[name], section = n, name
      where[name] = {}
      line = "[" .. name .. "]"
    else
      local key, value = line:match("^([%w_]+)%s*=%s*(.-)$")
      if not key then return bad("not 'key = value' (keys: " .. table.concat(M.KEYS, ", ") .. ")") end
      if not SETTINGS[key] then
        return bad(("unknown key '%s' (keys: %s)"):format(format.escape(key), table.concat(M.KEYS, ", ")))
      end
      if not section then return bad(("'%s' before any [PROFILE] line"):format(key)) end
      if value == "" then return bad(key .. " has no value") end
      if where[section][key] then
        return bad(("%s again in [%s] (first on line %d)"):format(key, section, where[section][key]))
      end
      where[section][key] = n
      line = key .. "=" .. value
    end
    clean[#clean + 1] = line
  end
  local ok, inifile = pcall(require, "inifile")
  if not ok then
    return nil, ("reading %s needs lua-inifile (apt-get install lua-inifile)"):format(format.escape(path))
  end
  local t = inifile.parse(table.concat(clean, "\n") .. "\n", "memory")
  local profiles = {}
  for name, lines in pairs(where) do
    local p = {}
    for key in pairs(lines) do
      local v = tostring(t[name][key]) -- (inifile turns numbers and true/false into values)
      p[key] = SETTINGS[key].path and expand(v, path) or v
    end
    profiles[name] = p
  end
  return profiles
end

local loaded = {} -- config path -> profiles (or false: no file), read once per process

--- The profiles of the config file: name -> settings, and the file's path; an empty table
-- when there is no file. Or nil, message (unreadable, malformed, readable by others while
-- it names a token file, unless allow_insecure).
function M.profiles(allow_insecure)
  local path = M.path()
  if not path then return {}, nil end
  if loaded[path] ~= nil then return loaded[path] or {}, path end
  local text, err = files.read_state(path, MAX_BYTES)
  if text == nil then return nil, err end
  if not text or text == "" then loaded[path] = false return {}, path end
  local profiles, perr = parse(text, path)
  if not profiles then return nil, perr end
  for _, p in pairs(profiles) do
    if p.token_file and not allow_insecure then
      local loose = files.loose_mode(path, "config file")
      if loose then return nil, loose .. " (it names a token file)" end
      break
    end
  end
  loaded[path] = profiles
  return profiles, path
end

--- The profile in effect for these arguments: its name, settings and how it was picked
-- ("--profile", "$FLOWMUSIC_PROFILE", "default"); nil when none; or nil, message (a usage
-- error: unknown profile, bad config file).
function M.selected(args)
  local profiles, path = M.profiles(args.allow_insecure_token_file)
  if not profiles then return nil, path end
  local name, how = args.profile, "--profile"
  if not name then name, how = getenv(M.ENV), "$" .. M.ENV end
  if not name then
    if profiles.default then return { name = "default", how = "default", values = profiles.default, path = path } end
    return nil
  end
  local p = profiles[name]
  if not p then
    local names = {}
    for k in pairs(profiles) do names[#names + 1] = k end
    table.sort(names)
    if not path or #names == 0 then
      return nil, ("unknown profile '%s' (from %s): there is no config file %s"):format(format.escape(name), how,
        format.escape(path or "(no $HOME)"))
    end
    return nil, ("unknown profile '%s' (from %s): %s has %s"):format(format.escape(name), how,
      format.escape(path), table.concat(names, ", "))
  end
  return { name = name, how = how, values = p, path = path }
end

-- The first set variable of a list: name, value.
local function first_env(list)
  for _, name in ipairs(list or {}) do
    local v = getenv(name)
    if v then return name, v end
  end
end

--- Every setting for these arguments, with where it came from: key -> `{ value =, source = }`
-- (value nil: not set, the default applies), plus `profile` (the selected one, or nil).
-- `token` stands for the API token: its value is never kept here, only where it comes from.
-- @return the settings, or nil and a message (a usage error)
function M.resolve(args)
  local prof, err = M.selected(args)
  if err then return nil, err end
  local pv = prof and prof.values or {}
  local from_profile = prof and ("profile " .. prof.name) or nil
  local out = { profile = prof }
  local function pick(key)
    if args[key] ~= nil then return { value = args[key], source = "--" .. key:gsub("_", "-") } end
    local name, v = first_env(SETTINGS[key].env)
    if name then return { value = v, source = "$" .. name } end
    if pv[key] ~= nil then return { value = pv[key], source = from_profile } end
    return { source = "default" }
  end
  out.base_url = pick("base_url")
  if out.base_url.value == nil then out.base_url.value = defaults.base_url end
  out.min_credits = pick("min_credits")
  out.state_dir = pick("state_dir")
  if out.state_dir.value == nil then
    local dir, why = statedir.resolve(nil)
    out.state_dir = { value = dir, source = dir and "default (" .. why .. ")" or "default (none: " .. why .. ")" }
  end
  -- The API token: --token-file, else $USEAPI_TOKEN, else the profile's token_file.
  if args.token_file then
    out.token = { file = args.token_file, source = "--token-file" }
  elseif getenv("USEAPI_TOKEN") then
    out.token = { env = "USEAPI_TOKEN", source = "$USEAPI_TOKEN" }
  elseif pv.token_file then
    out.token = { file = pv.token_file, source = from_profile }
  else
    out.token = { source = "none" }
  end
  -- The CAs are one setting at each level (as flowmusic.trust reads them): both flags, or the
  -- variables, or the profile's two keys.
  if args.cacert or args.capath then
    out.cacert = { value = args.cacert, source = "--cacert/--capath" }
    out.capath = { value = args.capath, source = "--cacert/--capath" }
  elseif trust.from_env() then
    local cainfo, capath, vars = trust.from_env()
    out.cacert = { value = cainfo, source = cainfo and "$" .. vars.cainfo or "environment" }
    out.capath = { value = capath, source = capath and "$" .. vars.capath
      or (vars.capath and "environment" or "$" .. vars.cainfo .. " (no directory)") }
    out.ca_from_env = true
  elseif pv.cacert or pv.capath then
    out.cacert = { value = pv.cacert, source = from_profile }
    out.capath = { value = pv.capath, source = from_profile }
  else
    out.cacert, out.capath = { source = "default (system store)" }, { source = "default (system store)" }
  end
  -- The proxy: --proxy, else the variables libcurl reads for the base URL, else the profile.
  if args.proxy ~= nil then
    out.proxy = { value = args.proxy, source = "--proxy" }
  else
    local env_proxy = require("flowmusic.proxy").for_url(nil, out.base_url.value)
    if env_proxy then
      out.proxy = { value = env_proxy, source = "environment (https_proxy, all_proxy, ...)", from_env = true }
    elseif pv.proxy then
      out.proxy = { value = pv.proxy, source = from_profile }
    else
      out.proxy = { source = "default (none)" }
    end
  end
  return out
end

return M
