--- W11: a worker-thread round trip: a function that returns its integer
-- argument, called N times (default 20000) one after the other, so each call
-- pays the hand-off to a worker thread and the result's way back to the loop.
--
--   tether   tether.to_thread(fn, i) in one task (the default limiter, the
--            pool's thread reused)
--   floor    luv: uv.new_work(fn, after):queue(i), the next queued from the
--            previous call's `after` callback (libuv's thread pool; luv
--            passes scalars only and cannot cancel)

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w11"
local variant = common.variant("w11_to_thread", { "tether", "floor" })
local N = tonumber(os.getenv("BENCH_W11_N")) or 20000

local run = {}

function run.tether()
  local tether = require "tether"
  local ns
  tether.run(function()
    local to_thread = tether.to_thread
    local function identity(x) return x end
    for i = 1, 200 do to_thread(identity, i) end -- the thread and its cache warm
    ns = common.ns_per_op(tether.current_time, N, function(n)
      for i = 1, n do
        if to_thread(identity, i) ~= i then error("wrong result") end
      end
    end)
  end)
  return ns
end

function run.floor()
  local ok, uv = pcall(require, "luv")
  if not ok then return nil, "luv is not installed (Debian: lua-luv)" end
  local clock = common.clock("luv")
  local i, n, t0, t1 = 0, 200, nil, nil
  local work
  local function next_call(x)
    if x ~= nil and x ~= i then error("wrong result") end
    if i == n then
      if t0 == nil then -- warm-up done: the measured calls
        i, n, t0 = 0, N, clock()
      else
        t1 = clock()
        return
      end
    end
    i = i + 1
    work:queue(i)
  end
  work = uv.new_work(function(x) return x end, next_call)
  next_call()
  uv.run()
  return (t1 - t0) / N * 1e9
end

local ns, why = run[variant]()
if ns == nil then
  common.na(W, variant, why)
else
  common.result(W, variant, { { "ns_per_op", ns }, { "n", N } })
end
