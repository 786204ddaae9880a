--- Spec helper: the set of servers a spec process started and has not stopped yet, stopped
-- by `stop_all()` or, failing that, when the Lua state closes (a __gc sentinel: a table on
-- Lua 5.2+, a newproxy on 5.1). Each helper that starts servers makes its own set.
-- @module spec.helpers.live
local M = {}

--- A new set: `set.add(x)`, `set.remove(x)`, `set.stop_all()` (calls x:stop() on each).
function M.new()
  local members = {}
  local set = {}
  function set.add(x) members[x] = true end
  function set.remove(x) members[x] = nil end
  function set.stop_all()
    for x in pairs(members) do x:stop() end
  end
  if newproxy then
    set.sentinel = newproxy(true)
    getmetatable(set.sentinel).__gc = function() set.stop_all() end
  else
    set.sentinel = setmetatable({}, { __gc = function() set.stop_all() end })
  end
  return set
end

return M
