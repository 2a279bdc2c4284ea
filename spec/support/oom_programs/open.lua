-- oom_host program: loads tether itself (the host preloads it for the others), so
-- that the module's opening runs under failing allocations too.
local tether = require "tether"
local results = table.pack(tether.run(function(a, b)
  tether.checkpoint()
  return a + b, "done"
end, 1, 2))
assert(results[1] == 3 and results[2] == "done")
