--- Spec helper: read the pixels of a PNG (8-bit RGB/RGBA, not interlaced, as Chromium writes
-- its screenshots) and count colours. The decoding runs in python3 (zlib + the five PNG row
-- filters); the answer comes back as JSON.
--
--     local png = require "spec.helpers.png"
--     local info = png.colors("shot.png", { "#4e79a7", "#f28e2b" }, 3)
--     info.width, info.height, info.counts["#4e79a7"], info.non_white
-- @module spec.helpers.png
local cjson = require "cjson"

local M = {}

local SCRIPT = [==[
import sys, zlib, struct, json, collections
path, wanted, tol = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
data = open(path, "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, hdr = 8, [], None
while pos < len(data):
    n, typ = struct.unpack(">I", data[pos:pos + 4])[0], data[pos + 4:pos + 8]
    body = data[pos + 8:pos + 8 + n]
    pos += 12 + n
    if typ == b"IHDR": hdr = struct.unpack(">IIBBBBB", body)
    elif typ == b"IDAT": idat.append(body)
    elif typ == b"IEND": break
w, h, depth, ctype, _, _, interlace = hdr
assert depth == 8 and ctype in (2, 6) and interlace == 0, "unsupported PNG layout"
bpp = 3 if ctype == 2 else 4
stride = w * bpp
raw = zlib.decompress(b"".join(idat))
prev, i, counts = bytearray(stride), 0, collections.Counter()
for y in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    if f == 1:
        for x in range(bpp, stride): line[x] = (line[x] + line[x - bpp]) & 255
    elif f == 2:
        for x in range(stride): line[x] = (line[x] + prev[x]) & 255
    elif f == 3:
        for x in range(stride): line[x] = (line[x] + ((line[x - bpp] if x >= bpp else 0) + prev[x]) // 2) & 255
    elif f == 4:
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))) & 255
    counts.update(bytes(line[x:x + 3]) for x in range(0, stride, bpp))
    prev = line
out = {"width": w, "height": h, "counts": {}, "non_white": sum(n for c, n in counts.items() if c != b"\xff\xff\xff")}
for hexc in wanted:
    if not hexc: continue
    r, g, b = int(hexc[1:3], 16), int(hexc[3:5], 16), int(hexc[5:7], 16)
    out["counts"][hexc] = sum(n for c, n in counts.items()
                              if abs(c[0] - r) <= tol and abs(c[1] - g) <= tol and abs(c[2] - b) <= tol)
print(json.dumps(out))
]==]

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- True when python3 (with zlib) is there to decode.
function M.available()
  local ok = os.execute("python3 -c 'import zlib' >/dev/null 2>&1")
  return ok == true or ok == 0
end

--- Decode a PNG and count the pixels near each wanted colour.
-- @param path the PNG file
-- @param wanted array of "#rrggbb"
-- @param tolerance per channel (default 3)
-- @return { width, height, counts = { ["#rrggbb"] = n }, non_white = n }; raises when the file
--   is not a PNG it can read
function M.colors(path, wanted, tolerance)
  local p = assert(io.popen("python3 -c " .. q(SCRIPT) .. " " .. q(path) .. " " .. q(table.concat(wanted or {}, ","))
    .. " " .. tostring(tolerance or 3) .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  local ok, v = pcall(cjson.decode, out)
  if not ok or type(v) ~= "table" then error("cannot decode " .. path .. ": " .. out, 2) end
  return v
end

return M
