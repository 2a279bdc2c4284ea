--- W6: memory per idle blocked task. N tasks (default 10000) block forever;
-- after a full collection the growth of the Lua heap (collectgarbage "count")
-- and of the resident set (VmRSS; it also sees C allocations such as tether's
-- task records and libuv's) are divided by N. Both include what the scheduler
-- keeps per task (run-queue or waiter-list entries).
--
--   tether   tg:start_soon(idle) in a task group, idle = tether.sleep_forever();
--            measured once tether.wait_all_tasks_blocked() returns, then the
--            group is cancelled
--   floor    coroutine.create + resume to a coroutine.yield() (suspended), kept
--            in a list
--   cqueues  cq:wrap(idle), idle waits on a condition nobody signals; cq:step(0)
--            until every task has blocked
--   luv      bench/luv_sched.lua: sched.spawn(idle), idle waits on an Event
--            nobody sets; measured after the batch that ran them

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w6"
local variant = common.variant("w6_idle_memory", common.VARIANTS)
local N = tonumber(os.getenv("BENCH_W6_N")) or 10000

local gc0, rss0, gc1, rss1
local function before()
  common.full_gc()
  gc0, rss0 = collectgarbage("count"), common.rss_kb()
end
local function after()
  common.full_gc()
  gc1, rss1 = collectgarbage("count"), common.rss_kb()
end

local blocked = 0 -- tasks that reached their blocking call

local run = {}

function run.tether()
  local tether = require "tether"
  local function idle()
    blocked = blocked + 1
    tether.sleep_forever()
  end
  tether.run(function()
    tether.task_group(function(tg)
      before()
      for _ = 1, N do tg:start_soon(idle) end
      tether.wait_all_tasks_blocked()
      after()
      tg.cancel_scope:cancel()
    end)
  end)
end

function run.floor()
  local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield
  local function idle()
    blocked = blocked + 1
    yield()
  end
  before()
  local tasks = {}
  for i = 1, N do
    local co = create(idle)
    resume(co)
    tasks[i] = co
  end
  after()
  assert(#tasks == N)
end

function run.cqueues()
  local cqueues = require "cqueues"
  local condition = require "cqueues.condition"
  local cq = cqueues.new()
  local never = condition.new()
  local function idle()
    blocked = blocked + 1
    never:wait()
  end
  before()
  for _ = 1, N do cq:wrap(idle) end
  repeat assert(cq:step(0)) until blocked == N
  after()
end

function run.luv()
  local sched = require "luv_sched"
  local never = sched.Event()
  local function idle()
    blocked = blocked + 1
    never:wait()
  end
  sched.run(function()
    before()
    for _ = 1, N do sched.spawn(idle) end
    sched.yield() -- the spawned tasks run in this batch, before us
    after()
  end)
end

run[variant]()
assert(blocked == N, "not every task blocked")
common.result(W, variant, {
  { "gc_bytes_per_task", (gc1 - gc0) * 1024 / N },
  { "rss_bytes_per_task", (rss1 - rss0) * 1024 / N },
  { "n", N },
})
