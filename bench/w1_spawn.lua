--- W1: spawn an empty task and join it, N tasks (default 100000) in one group.
--
--   tether   tg:start_soon(empty) N times in one tether.task_group
--   floor    coroutine.create N times (kept in a list, as a run queue keeps them),
--            then coroutine.resume each to its end
--   cqueues  cq:wrap(empty) N times, then cq:loop()
--   luv      bench/luv_sched.lua: group:spawn(empty) N times, group:wait()
--
-- Each process runs the round 1 + ROUNDS times (default 5; BENCH_W1_ROUNDS), each
-- after a full collection. The first is cold: the heap grows and its pages are
-- touched for the first time (page faults are costly in a VM). The others are
-- warm: memory freed by earlier rounds is reused. ns_per_op is the median of the
-- warm rounds (their min and max and the cold round are reported too): warm
-- rounds vary with the state of malloc's free lists, by up to 3x for tether.

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w1"
local variant = common.variant("w1_spawn", common.VARIANTS)
local N = tonumber(os.getenv("BENCH_W1_N")) or 100000
local ROUNDS = tonumber(os.getenv("BENCH_W1_ROUNDS")) or 5
local clock = common.clock(variant)

local function empty() end

--- Times round(N) once cold and ROUNDS times warm, each after a full
-- collection; returns the cold ns/op and the sorted list of warm ones.
local function measure(round)
  common.full_gc()
  local cold = common.ns_per_op(clock, N, round)
  local warm = {}
  for i = 1, ROUNDS do
    common.full_gc()
    warm[i] = common.ns_per_op(clock, N, round)
  end
  table.sort(warm)
  return cold, warm
end

-- Each returns what measure() returns (and a list of extra fields).
local run = {}

function run.tether()
  local tether = require "tether"
  local cold, warm
  local function round(n)
    tether.task_group(function(tg)
      for _ = 1, n do tg:start_soon(empty) end
    end)
  end
  tether.run(function()
    cold, warm = measure(round)
  end)
  return cold, warm
end

function run.floor()
  local create, resume = coroutine.create, coroutine.resume
  local function round(n)
    local queue = {}
    for i = 1, n do queue[i] = create(empty) end
    for i = 1, n do resume(queue[i]) end
  end
  -- The same without keeping N coroutines alive at once, for reference.
  local function sequential(n)
    for _ = 1, n do resume(create(empty)) end
  end
  local cold, warm = measure(round)
  common.full_gc()
  local seq = common.ns_per_op(clock, N, sequential)
  return cold, warm, { { "sequential_ns_per_op", seq } }
end

function run.cqueues()
  local cqueues = require "cqueues"
  local cq = cqueues.new()
  local function round(n)
    for _ = 1, n do cq:wrap(empty) end
    assert(cq:loop())
  end
  return measure(round)
end

function run.luv()
  local sched = require "luv_sched"
  local cold, warm
  local function round(n)
    local g = sched.group()
    for _ = 1, n do g:spawn(empty) end
    g:wait()
  end
  sched.run(function()
    cold, warm = measure(round)
  end)
  return cold, warm
end

local cold, warm, extra = run[variant]()
local fields = {
  { "ns_per_op", warm[(#warm + 1) // 2] }, { "warm_min_ns", warm[1] },
  { "warm_max_ns", warm[#warm] }, { "cold_ns_per_op", cold }, { "n", N },
}
for _, kv in ipairs(extra or {}) do fields[#fields + 1] = kv end
common.result(W, variant, fields)
