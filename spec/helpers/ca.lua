--- Spec helper: a throwaway certificate authority made with openssl, and a server certificate
-- for 127.0.0.1 that it signed, as a private CA or a TLS-inspecting proxy would have.
--
--     local ca = require("spec.helpers.ca").new()
--     ca.cert        -- the CA certificate (PEM): what a client is told to trust
--     ca.dir         -- a directory holding only that certificate under its OpenSSL hash name
--     ca.server_cert, ca.server_key -- for the server (signed by the CA, SAN IP:127.0.0.1)
--     ca:remove()
-- @module spec.helpers.ca
local M = {}

local function run(cmd)
  assert(os.execute(cmd .. " >/dev/null 2>&1"), "failed: " .. cmd)
end

local CA = {}
CA.__index = CA

--- Make a CA and a server certificate in a fresh private directory.
function M.new()
  local root = require("flowmusic.sandbox.host").temp_dir("flowmusic-ca-spec")
  local ca = setmetatable({ root = root, cert = root .. "/ca.pem", dir = root .. "/certs",
    server_cert = root .. "/server.pem", server_key = root .. "/server-key.pem" }, CA)
  local q = function(s) return "'" .. s .. "'" end
  run("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj '/CN=flowmusic spec CA' "
    .. "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
    .. "-keyout " .. q(root .. "/ca-key.pem") .. " -out " .. q(ca.cert))
  run("openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout " .. q(ca.server_key)
    .. " -out " .. q(root .. "/server.csr"))
  local ext = assert(io.open(root .. "/server.ext", "w"))
  ext:write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
  ext:close()
  run("openssl x509 -req -days 1 -in " .. q(root .. "/server.csr") .. " -CA " .. q(ca.cert)
    .. " -CAkey " .. q(root .. "/ca-key.pem") .. " -CAcreateserial -extfile " .. q(root .. "/server.ext")
    .. " -out " .. q(ca.server_cert))
  run("mkdir " .. q(ca.dir) .. " && cp " .. q(ca.cert) .. " " .. q(ca.dir .. "/ca.pem")
    .. " && openssl rehash " .. q(ca.dir))
  return ca
end

--- Remove the CA's directory. Idempotent.
function CA:remove()
  if self.root then os.execute("rm -rf '" .. self.root .. "'") end
  self.root = nil
end

return M
