-- oom_host program: tether.to_thread with tables both ways, a worker's error, a
-- tether.worker.call, and a call under cancel = "wait" that a scope cancels.
local tether = require "tether"

local result = tether.run(function()
  tether.worker.expose("double", function(x) return 2 * x end)
  local t = tether.to_thread(function(list)
    local out = {}
    for i, v in ipairs(list) do out[i] = v + require("tether").worker.call("double", v) end
    out.self = out
    return out
  end, { 1, 2, 3 })
  local ok, err = pcall(tether.to_thread, function() error("expected") end)
  assert(not ok and (tether.is(err, tether.WorkerError) or tostring(err):find("memory")))
  tether.move_on_after(0):run(tether.to_thread, { cancel = "wait" }, function() return 1 end)
  return t[1] + t[2] + t[3]
end)
assert(result == 18, result)
