--- Which proxy a client's requests go through, as libcurl decides it: the `proxy` option
-- (the CLI's `--proxy URL`), else the variables libcurl reads by itself: `https_proxy` /
-- `HTTPS_PROXY` for https (`http_proxy`, lowercase only, for http), then `all_proxy` /
-- `ALL_PROXY`; a host named in `no_proxy` / `NO_PROXY` (comma-separated names, matched as the
-- host or a domain it ends in; `*` for all) goes direct. flowmusic only reads them to know
-- that a failure was the proxy's (reason `proxy`) and which credentials never to show.
-- @module flowmusic.proxy
local M = {}

local function env(getenv, name)
  local v = getenv(name)
  if v ~= nil and v ~= "" then return v end
end

-- Is host named by the no_proxy list?
local function bypassed(host, list)
  host = host:lower():gsub("^%[(.*)%]$", "%1")
  for entry in list:gmatch("[^,%s]+") do
    entry = entry:lower():gsub("^%.", ""):gsub("^%[(.*)%]$", "%1")
    if entry == "*" or host == entry or host:sub(-#entry - 1) == "." .. entry then return true end
  end
  return false
end

--- The proxy URL a request to url goes through, or nil when it goes direct.
-- @param option the client's `proxy` option, or nil
-- @param url the base URL
-- @param getenv optional, `os.getenv` by default
function M.for_url(option, url, getenv)
  if option ~= nil then return option ~= "" and option or nil end
  getenv = getenv or os.getenv
  local scheme, host = url:match("^(%a+)://%[?([^/%]:?#]*)")
  if not scheme then return nil end
  scheme = scheme:lower()
  local no_proxy = env(getenv, "no_proxy") or env(getenv, "NO_PROXY")
  if no_proxy and bypassed(host, no_proxy) then return nil end
  local p = env(getenv, scheme .. "_proxy")
  if not p and scheme ~= "http" then p = env(getenv, scheme:upper() .. "_PROXY") end
  return p or env(getenv, "all_proxy") or env(getenv, "ALL_PROXY")
end

--- A proxy URL as it may be shown: its credentials (`user:password@`) as `***@`.
function M.show(url)
  return (tostring(url):gsub("^(%a[%w+.-]*://)[^/@]*@", "%1***@"):gsub("^[^/:@]*:?[^/@]*@", "***@"))
end

--- The parts of a proxy URL never to show: the URL itself when it holds credentials,
-- `user:password` and the password.
-- @param url the proxy URL, or nil
-- @return array of strings (empty when the URL holds no credentials)
function M.secrets(url)
  local userinfo = url and url:match("^[%a][%w+.-]*://([^/@]*)@") or (url and url:match("^([^/@]*)@"))
  if not userinfo then return {} end
  local list = { url, userinfo }
  local password = userinfo:match(":(.*)$")
  if password and #password >= 4 then list[#list + 1] = password end
  -- the percent-decoded forms too: libcurl decodes them before it uses them
  local function decode(s) return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
  for i = 2, #list do
    local d = decode(list[i])
    if d ~= list[i] then list[#list + 1] = d end
  end
  return list
end

return M
