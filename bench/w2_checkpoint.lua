--- W2: checkpoint round trip in one task, N times (default 500000).
--
--   tether             tether.sleep(0)
--   tether_checkpoint  tether.checkpoint()
--   floor              coroutine.resume of a coroutine that loops on coroutine.yield()
--   cqueues            cqueues.poll() with no argument, its bare yield to the
--                      controller (cqueues.sleep(0) is timed too: sleep0_ns_per_op;
--                      it is usually a little slower)
--   luv                bench/luv_sched.lua: sched.yield() (re-queue, one batch per
--                      loop iteration driven by a uv_idle_t)
--
-- A warm-up of N/10 round trips precedes the timed run.

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w2"
local variant = common.variant("w2_checkpoint",
  { "tether", "tether_checkpoint", "floor", "cqueues", "luv" })
local N = tonumber(os.getenv("BENCH_W2_N")) or 500000
local WARM = N // 10
local clock = common.clock(variant)

local function loop_of(op, arg)
  return function(n)
    for _ = 1, n do op(arg) end
  end
end

local run = {}

local function tether_variant(name)
  local tether = require "tether"
  local loop = name == "sleep" and loop_of(tether.sleep, 0) or loop_of(tether.checkpoint)
  local ns
  tether.run(function()
    ns = common.warm_ns_per_op(clock, WARM, N, loop)
  end)
  return ns
end

function run.tether() return tether_variant("sleep") end
function run.tether_checkpoint() return tether_variant("checkpoint") end

function run.floor()
  local resume, yield = coroutine.resume, coroutine.yield
  local co = coroutine.create(function()
    while true do yield() end
  end)
  local function loop(n)
    for _ = 1, n do resume(co) end
  end
  return common.warm_ns_per_op(clock, WARM, N, loop)
end

function run.cqueues()
  local cqueues = require "cqueues"
  local cq = cqueues.new()
  local ns, sleep0_ns
  local poll_loop, sleep_loop = loop_of(cqueues.poll), loop_of(cqueues.sleep, 0)
  cq:wrap(function()
    ns = common.warm_ns_per_op(clock, WARM, N, poll_loop)
    sleep0_ns = common.warm_ns_per_op(clock, WARM, N, sleep_loop)
  end)
  assert(cq:loop())
  return ns, { { "sleep0_ns_per_op", sleep0_ns } }
end

function run.luv()
  local sched = require "luv_sched"
  local loop = loop_of(sched.yield)
  local ns
  sched.run(function()
    ns = common.warm_ns_per_op(clock, WARM, N, loop)
  end)
  return ns
end

local ns, extra = run[variant]()
local fields = { { "ns_per_op", ns }, { "n", N } }
for _, kv in ipairs(extra or {}) do fields[#fields + 1] = kv end
common.result(W, variant, fields)
