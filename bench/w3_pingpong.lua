--- W3: ping-pong between two tasks; ns per hop (one hand-over from one task to
-- the other), N hops (default 300000, N/2 round trips).
--
--   tether        two rendezvous streams, tether.create_memory_object_stream(0):
--                 A sends on one and receives on the other; B echoes
--   tether_event  a fresh tether.Event per hop: each side makes its next Event,
--                 sets the other side's, waits on its own
--   floor         two coroutines alternating, resumed in turn by a driver loop
--                 that passes the value along (one resume/yield per hop)
--   cqueues       cqueues.condition: a `turn` variable, each side signals the
--                 other's condition and waits on its own while it is not its turn
--   luv           bench/luv_sched.lua: two unbuffered channels, as tether's streams
--
-- A warm-up of N/10 hops precedes the timed run.

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w3"
local variant = common.variant("w3_pingpong",
  { "tether", "tether_event", "floor", "cqueues", "luv" })
local N = tonumber(os.getenv("BENCH_W3_N")) or 300000
local WARM = N // 10
local clock = common.clock(variant)

local run = {}

-- Runs pingpong(hops) for WARM hops, then times it for N hops.
local function measure(pingpong)
  pingpong(WARM)
  common.full_gc()
  return common.ns_per_op(clock, N, pingpong)
end

function run.tether()
  local tether = require "tether"
  local ns
  tether.run(function()
    local function pingpong(hops)
      local s1, r1 = tether.create_memory_object_stream(0)
      local s2, r2 = tether.create_memory_object_stream(0)
      tether.task_group(function(tg)
        tg:start_soon(function()
          for _ = 1, hops // 2 do s2:send(r1:receive()) end
        end)
        for i = 1, hops // 2 do
          s1:send(i)
          assert(r2:receive() == i)
        end
      end)
    end
    ns = measure(pingpong)
  end)
  return ns
end

function run.tether_event()
  local tether = require "tether"
  local Event = tether.Event
  local ns
  tether.run(function()
    local function pingpong(hops)
      local wake_a, wake_b = nil, Event()
      tether.task_group(function(tg)
        tg:start_soon(function()
          for _ = 1, hops // 2 do
            wake_b:wait()
            wake_b = Event()
            wake_a:set()
          end
        end)
        for _ = 1, hops // 2 do
          local mine = Event()
          wake_a = mine
          wake_b:set()
          mine:wait()
        end
      end)
    end
    ns = measure(pingpong)
  end)
  return ns
end

function run.floor()
  local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield
  local function echo(v)
    while true do v = yield(v) end
  end
  local function pingpong(hops)
    local a, b = create(echo), create(echo)
    local _, v = nil, 0
    for _ = 1, hops // 2 do
      _, v = resume(a, v + 1)
      _, v = resume(b, v)
    end
    assert(v == hops // 2)
  end
  return measure(pingpong)
end

function run.cqueues()
  local cqueues = require "cqueues"
  local condition = require "cqueues.condition"
  local cq = cqueues.new()
  local function pingpong(hops)
    local cond_a, cond_b = condition.new(), condition.new()
    local turn = "A"
    cq:wrap(function()
      for _ = 1, hops // 2 do
        while turn ~= "B" do cond_b:wait() end
        turn = "A"
        cond_a:signal()
      end
    end)
    cq:wrap(function()
      for _ = 1, hops // 2 do
        turn = "B"
        cond_b:signal()
        while turn ~= "A" do cond_a:wait() end
      end
    end)
    assert(cq:loop())
  end
  return measure(pingpong)
end

function run.luv()
  local sched = require "luv_sched"
  local ns
  sched.run(function()
    local function pingpong(hops)
      local c1, c2 = sched.Channel(), sched.Channel()
      local g = sched.group()
      g:spawn(function()
        for _ = 1, hops // 2 do c2:send(c1:receive()) end
      end)
      for i = 1, hops // 2 do
        c1:send(i)
        assert(c2:receive() == i)
      end
      g:wait()
    end
    ns = measure(pingpong)
  end)
  return ns
end

common.result(W, variant, { { "ns_per_op", run[variant]() }, { "n", N } })
