--- Which certificate authorities a client trusts: the `cainfo` (a PEM bundle file) and
-- `capath` (a directory of certificates under OpenSSL's hashed names) options, or, when
-- neither is given, the variables curl and OpenSSL users already set. libcurl itself reads
-- none of them (only the curl tool does), so they are read here, in this order:
--
-- 1. the options `cainfo` and/or `capath` (the CLI's `--cacert` and `--capath`);
-- 2. `CURL_CA_BUNDLE` (a file), as the curl tool does;
-- 3. `SSL_CERT_FILE` (a file) and/or `SSL_CERT_DIR` (a directory), as OpenSSL does;
-- 4. libcurl's built-in default (the system store).
--
-- A file or directory that is named but can't be read is an error before anything is sent.
-- Verification itself is never turned off.
-- @module flowmusic.trust
local M = {}

-- nil, or why path can't serve as a CA bundle file (want "file") or directory ("dir").
local function unusable(path, want)
  local f, err = io.open(path, "rb")
  if not f then return "cannot read " .. path .. ": " .. tostring(err):gsub("^[^:]*: ", "") end
  local byte, rerr, code = f:read(1)
  f:close()
  local is_dir = byte == nil and code == 21 -- EISDIR: opened, but a directory
  if want == "dir" then
    if not is_dir then return path .. " is not a directory" end
    return nil
  end
  if is_dir then return path .. " is a directory, not a file (use capath for a directory)" end
  if byte == nil then return rerr and ("cannot read " .. path .. ": " .. rerr) or (path .. " is empty") end
  return nil
end

--- The CAs the environment names, as libcurl's tools read them: `$CURL_CA_BUNDLE`, else
-- `$SSL_CERT_FILE` and `$SSL_CERT_DIR` (empty variables count as unset).
-- @param getenv optional, `os.getenv` by default
-- @return cainfo, capath (each nil when unset), and the variables they came from
--   (`{ cainfo = name, capath = name }`); all nil when none is set
function M.from_env(getenv)
  getenv = getenv or os.getenv
  local function env(name)
    local v = getenv(name)
    if v ~= nil and v ~= "" then return v end
  end
  local bundle = env("CURL_CA_BUNDLE")
  if bundle then return bundle, nil, { cainfo = "CURL_CA_BUNDLE" } end
  local file, dir = env("SSL_CERT_FILE"), env("SSL_CERT_DIR")
  if file or dir then return file, dir, { cainfo = "SSL_CERT_FILE", capath = "SSL_CERT_DIR" } end
  return nil
end

--- The CA settings a client uses.
-- @param cainfo the option (a file), or nil
-- @param capath the option (a directory), or nil
-- @param getenv optional, `os.getenv` by default
-- @treturn table `{ cainfo =, capath =, source = }` (source names where they came from:
--   "options", "CURL_CA_BUNDLE", "SSL_CERT_FILE/SSL_CERT_DIR" or "default"), or
-- @return nil, message naming the option or variable and the path
function M.resolve(cainfo, capath, getenv)
  local names = { cainfo = "cainfo", capath = "capath" }
  local source = "options"
  if cainfo == nil and capath == nil then
    local vars
    cainfo, capath, vars = M.from_env(getenv)
    if vars then names = vars end
    source = vars and (vars.capath and "SSL_CERT_FILE/SSL_CERT_DIR" or "CURL_CA_BUNDLE") or "default"
  end
  local msg = cainfo and unusable(cainfo, "file")
  if msg then return nil, names.cainfo .. ": " .. msg end
  msg = capath and unusable(capath, "dir")
  if msg then return nil, names.capath .. ": " .. msg end
  return { cainfo = cainfo, capath = capath, source = source }
end

return M
