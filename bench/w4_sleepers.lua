--- W4: N tasks (default 100000), each sleeping its own random delay in
-- [0, 1) s (math.randomseed(4), the same delays for every variant); reports the
-- wall time from the first spawn until everything finished and the loop
-- returned, minus the longest delay (overhead_s), and the peak RSS (VmHWM).
--
--   tether   tg:start_soon(sleeper, d) in one task group; sleeper calls tether.sleep(d)
--   tether_lateness  the same, and each sleeper reads the clock before its sleep
--            (s) and after it (w): a wake-up is late by w - (s + d), never
--            less than by how much it missed its deadline (tether.sleep reads
--            the clock after s). Reports the median, 99th percentile and
--            largest lateness over the N sleepers (late_p50_ms, late_p99_ms,
--            late_max_ms) and how many woke before s + d (early; must be 0).
--   floor    raw luv: uv.new_timer() per delay, its callback closes it (no tasks)
--   coroutines  not a sleeper: the floor under tether's overhead. The wall
--            time to create a plain coroutine per sleeper and resume it once
--            (it reads the clock, as tether.sleep does to compute its deadline,
--            and yields), then resume each to its end. With sleep measured
--            from the current time, the last of N tasks cannot start its
--            sleep before this much of it has passed; reported as overhead_s.
--   cqueues  cq:wrap(sleeper, d); sleeper calls cqueues.sleep(d); cq:loop()
--   luv      bench/luv_sched.lua: group:spawn(sleeper, d); sleeper calls
--            sched.sleep(d) (a uv timer per sleep); group:wait()

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w4"
local variant = common.variant("w4_sleepers",
  { "tether", "tether_lateness", "floor", "coroutines", "cqueues", "luv" })
local N = tonumber(os.getenv("BENCH_W4_N")) or 100000
local clock = common.clock(variant)

math.randomseed(4)
local delays, longest = {}, 0
for i = 1, N do
  local d = math.random()
  delays[i] = d
  if d > longest then longest = d end
end

local run = {}

function run.tether()
  local tether = require "tether"
  local sleep = tether.sleep
  local function sleeper(d) sleep(d) end
  tether.run(function()
    tether.task_group(function(tg)
      for i = 1, N do tg:start_soon(sleeper, delays[i]) end
    end)
  end)
end

-- Clock readings of tether_lateness, allocated before the clock starts.
local called, woke = {}, {}

function run.tether_lateness()
  local tether = require "tether"
  local sleep, now = tether.sleep, tether.current_time
  local function sleeper(i)
    called[i] = now()
    sleep(delays[i])
    woke[i] = now()
  end
  tether.run(function()
    tether.task_group(function(tg)
      for i = 1, N do tg:start_soon(sleeper, i) end
    end)
  end)
end

function run.floor()
  local uv = require "luv"
  local ceil = math.ceil
  uv.update_time() -- timers count from the loop's cached time: make it now
  for i = 1, N do
    local timer = uv.new_timer()
    timer:start(ceil(delays[i] * 1000), 0, function() timer:close() end)
  end
  uv.run("default")
end

function run.coroutines()
  local hrtime = require("luv").hrtime
  local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield
  local function sleeper(d)
    local deadline = hrtime() + d * 1e9
    yield()
    return deadline
  end
  local cos = {}
  for i = 1, N do
    local co = create(sleeper)
    assert(resume(co, delays[i]))
    cos[i] = co
  end
  for i = 1, N do assert(resume(cos[i])) end
end

function run.cqueues()
  local cqueues = require "cqueues"
  local sleep = cqueues.sleep
  local function sleeper(d) sleep(d) end
  local cq = cqueues.new()
  for i = 1, N do cq:wrap(sleeper, delays[i]) end
  assert(cq:loop())
end

function run.luv()
  local sched = require "luv_sched"
  local sleep = sched.sleep
  local function sleeper(d) sleep(d) end
  sched.run(function()
    local g = sched.group()
    for i = 1, N do g:spawn(sleeper, delays[i]) end
    g:wait()
  end)
end

if variant == "tether_lateness" then
  for i = 1, N do called[i], woke[i] = 0.0, 0.0 end
end

common.full_gc()
local t0 = clock()
run[variant]()
local wall = clock() - t0
if variant == "coroutines" then longest = 0 end -- it does not sleep
local fields = {
  { "overhead_s", wall - longest }, { "wall_s", wall }, { "longest_s", longest }, { "n", N },
}
if variant == "tether_lateness" then
  local late, early = {}, 0
  for i = 1, N do
    late[i] = woke[i] - (called[i] + delays[i])
    if late[i] < 0 then early = early + 1 end
  end
  table.sort(late)
  local function pct(p) return late[math.max(1, math.ceil(N * p))] * 1e3 end
  fields[#fields + 1] = { "late_p50_ms", pct(0.5) }
  fields[#fields + 1] = { "late_p99_ms", pct(0.99) }
  fields[#fields + 1] = { "late_max_ms", pct(1) }
  fields[#fields + 1] = { "early", early }
end
common.result(W, variant, fields)
