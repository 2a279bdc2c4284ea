--- W5: signal round trip: the process sends itself SIGUSR1 and waits until the
-- delivery reaches a waiting task; N round trips (default 10000) after N/10
-- warm-up ones.
--
--   tether   tether.open_signal_receiver(tether.SIGUSR1); tether.kill(getpid(), SIGUSR1);
--            receiver:receive()
--   floor    raw luv: uv.new_signal() started on "sigusr1"; its callback sends the
--            next signal with uv.kill (no tasks)
--   cqueues  cqueues.signal.block(SIGUSR1) (single-threaded process, so blocking it
--            in this thread is enough), signal.listen(SIGUSR1) (signalfd on Linux);
--            a task calls signal.raise(SIGUSR1) (cqueues has no kill) and
--            listener:wait()
--   luv      bench/luv_sched.lua: a task sends the signal with uv.kill and blocks in
--            a receiver whose uv_signal_t callback wakes it

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w5"
local variant = common.variant("w5_signal", common.VARIANTS)
local N = tonumber(os.getenv("BENCH_W5_N")) or 10000
local WARM = N // 10
local clock = common.clock(variant)

local run = {}

function run.tether()
  local tether = require "tether"
  local ns
  tether.run(function()
    local receiver <close> = tether.open_signal_receiver(tether.SIGUSR1)
    local kill, pid, SIGUSR1 = tether.kill, tether.getpid(), tether.SIGUSR1
    local function loop(n)
      for _ = 1, n do
        kill(pid, SIGUSR1)
        local signum, count = receiver:receive()
        assert(signum == SIGUSR1 and count == 1)
      end
    end
    loop(WARM)
    ns = common.ns_per_op(clock, N, loop)
  end)
  return ns
end

function run.floor()
  local uv = require "luv"
  local pid = uv.os_getpid()
  local signal = uv.new_signal()
  local count, t0, t1 = 0, nil, nil
  signal:start("sigusr1", function()
    count = count + 1
    if count == WARM then t0 = clock() end
    if count < WARM + N then
      uv.kill(pid, "sigusr1")
    else
      t1 = clock()
      signal:stop()
      signal:close()
    end
  end)
  uv.kill(pid, "sigusr1")
  uv.run("default")
  assert(count == WARM + N)
  return (t1 - t0) / N * 1e9
end

function run.cqueues()
  local cqueues = require "cqueues"
  local signal = require "cqueues.signal"
  local SIGUSR1 = signal.SIGUSR1
  signal.block(SIGUSR1)
  local listener = signal.listen(SIGUSR1)
  local cq = cqueues.new()
  local ns
  cq:wrap(function()
    local function loop(n)
      for _ = 1, n do
        signal.raise(SIGUSR1)
        assert(listener:wait() == SIGUSR1)
      end
    end
    loop(WARM)
    ns = common.ns_per_op(clock, N, loop)
  end)
  assert(cq:loop())
  return ns
end

function run.luv()
  local uv = require "luv"
  local sched = require "luv_sched"
  local ns
  sched.run(function()
    local receiver = sched.signal_receiver("sigusr1")
    local pid = uv.os_getpid()
    local function loop(n)
      for _ = 1, n do
        uv.kill(pid, "sigusr1")
        receiver:receive()
      end
    end
    loop(WARM)
    ns = common.ns_per_op(clock, N, loop)
    receiver:close()
  end)
  return ns
end

common.result(W, variant, { { "ns_per_op", run[variant]() }, { "n", N } })
