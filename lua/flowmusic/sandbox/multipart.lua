--- A minimal multipart/form-data parser (RFC 7578) for small form bodies.
-- @module flowmusic.sandbox.multipart

local M = {}

--- The boundary parameter of a multipart/form-data Content-Type, or nil.
-- @tparam string content_type
-- @treturn string|nil
function M.boundary(content_type)
  if not content_type or not content_type:lower():match("^%s*multipart/form%-data") then
    return nil
  end
  return content_type:match('[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]="([^"]+)"')
      or content_type:match("[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]=([^;%s]+)")
end

--- Parse a multipart/form-data body into `{name = text}`.
-- @tparam string body
-- @tparam string boundary
-- @treturn table fields, or `nil, message` when the body is malformed or repeats a field
function M.parse(body, boundary)
  local delim = "--" .. boundary
  local fields = {}
  local pos = body:find(delim, 1, true)
  if not pos then return nil, "multipart body without its boundary" end
  pos = pos + #delim
  while true do
    if body:sub(pos, pos + 1) == "--" then return fields end -- closing delimiter
    if body:sub(pos, pos + 1) ~= "\r\n" then return nil, "malformed multipart delimiter" end
    pos = pos + 2
    local head_end = body:find("\r\n\r\n", pos, true)
    if not head_end then return nil, "malformed multipart part headers" end
    local head = body:sub(pos, head_end + 1)
    local next_delim = body:find("\r\n" .. delim, head_end + 4, true)
    if not next_delim then return nil, "multipart body is not terminated" end
    local name
    for line in head:gmatch("([^\r\n]*)\r\n") do
      local hname, value = line:match("^([^:]+):%s*(.*)$")
      if hname and hname:lower() == "content-disposition" then
        name = value:match('[; ]name="([^"]*)"') or value:match("[; ]name=([^;%s]+)")
      end
    end
    if not name then return nil, "multipart part without a name" end
    if fields[name] ~= nil then return nil, 'field "' .. name .. '" sent twice' end
    fields[name] = body:sub(head_end + 4, next_delim - 1)
    pos = next_delim + 2 + #delim
  end
end

return M
