--- W14: a blocking call made inside a coroutine of tether.coroutine, against the same
-- call made by the task itself; ns per call, N calls (default 300000).
--
--   tether        tether.sleep(0) inside a tether.coroutine.wrap generator that the
--                 task resumes once (one level: the park passes up through one resume)
--   tether_deep   the same three levels deep (context)
--   floor         tether.sleep(0) in the task itself (W2's tether variant)
--   cqueues       cqueues.sleep(0) inside a coroutine resumed with
--                 cqueues.auxlib.resume, cqueues' way of yielding through
--
-- A warm-up of N/10 calls precedes the timed run.

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w14"
local variant = common.variant("w14_coroutine", { "tether", "tether_deep", "floor", "cqueues" })
local N = tonumber(os.getenv("BENCH_W14_N")) or 300000
local WARM = N // 10
local clock = common.clock(variant)

-- loop(n) calls op() n times inside `levels` nested coroutines made by wrap.
local function nested(wrap, op, levels)
  return function(n)
    local function body()
      for _ = 1, n do op() end
    end
    for _ = 1, levels do
      local inner = body
      body = wrap(inner)
    end
    body()
  end
end

local run = {}

local function tether_variant(levels)
  local tether = require "tether"
  local sleep = tether.sleep
  local loop = nested(tether.coroutine.wrap, function() sleep(0) end, levels)
  local ns
  tether.run(function()
    ns = common.warm_ns_per_op(clock, WARM, N, loop)
  end)
  return ns
end

function run.tether() return tether_variant(1) end
function run.tether_deep() return tether_variant(3) end
function run.floor() return tether_variant(0) end

function run.cqueues()
  local cqueues = require "cqueues"
  local auxlib = require "cqueues.auxlib"
  local sleep = cqueues.sleep
  local loop = nested(auxlib.wrap, function() sleep(0) end, 1)
  local cq = cqueues.new()
  local ns
  cq:wrap(function()
    ns = common.warm_ns_per_op(clock, WARM, N, loop)
  end)
  assert(cq:loop())
  return ns
end

local ns = run[variant]()
common.result(W, variant, { { "ns_per_op", ns }, { "n", N } })
