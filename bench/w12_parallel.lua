--- W12: parallel speed-up of CPU-bound Lua code on worker threads. The same
-- work, 2 × K calls of a loop of M iterations (K = 4, M = 2e7 by default), runs
-- once with a limiter of 1 token (one worker at a time) and once with 2 tokens
-- (two workers at a time). speedup = wall time with one ÷ wall time with two;
-- cpu_per_wall_1 and cpu_per_wall_2 = process CPU seconds per wall second with
-- one and with two workers (1.0 and 2.0 when the cores were the program's all
-- along: on a busy machine the speed-up is bounded by what it gets);
-- cpu_ratio = CPU seconds with two ÷ with one (near 1: running side by side
-- costs the workers nothing, whatever the machine's load).

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w12"
local variant = common.variant("w12_parallel", { "tether" })
local K = tonumber(os.getenv("BENCH_W12_K")) or 4
local M = tonumber(os.getenv("BENCH_W12_M")) or 20000000

local tether = require "tether"

local function spin(m)
  local x = 0
  for i = 1, m do x = x + i % 7 end
  return x
end

local serial, parallel, cpu1, cpu2, cpu_ratio
tether.run(function()
  local function timed(tokens)
    local limiter = tether.CapacityLimiter(tokens)
    local t0, c0 = tether.current_time(), os.clock()
    tether.task_group(function(tg)
      for _ = 1, 2 * K do
        tg:start_soon(tether.to_thread, { limiter = limiter }, spin, M)
      end
    end)
    return tether.current_time() - t0, os.clock() - c0
  end
  timed(2) -- two threads started and warm
  local cpu_serial, cpu_parallel
  serial, cpu_serial = timed(1)
  parallel, cpu_parallel = timed(2)
  cpu1, cpu2 = cpu_serial / serial, cpu_parallel / parallel
  cpu_ratio = cpu_parallel / cpu_serial
end)
common.result(W, variant, { { "speedup", serial / parallel }, { "serial_s", serial },
  { "parallel_s", parallel }, { "cpu_per_wall_1", cpu1 }, { "cpu_per_wall_2", cpu2 },
  { "cpu_ratio", cpu_ratio } })
