-- A worker pool that shuts down gracefully on SIGTERM or Ctrl+C: no new job is
-- started, and jobs already in flight get up to GRACE seconds to finish inside a
-- shielded scope, so cancellation cannot cut them in half.
--
--   lua5.4 examples/graceful_shutdown.lua     (then press Ctrl+C, or kill -TERM <pid>)
local tether = require "tether"

local WORKERS, JOB_SECONDS, GRACE = 3, 0.3, 2

local next_job = 0
local function take_job()
  next_job = next_job + 1
  return next_job
end

local function worker(id)
  while true do
    tether.checkpoint()               -- stop here once shutdown began
    local job = take_job()
    print(("worker %d: started job %d"):format(id, job))
    -- The job itself is shielded: it finishes even while the pool is being
    -- cancelled, but never takes longer than GRACE seconds.
    local guard = tether.move_on_after(GRACE, { shield = true })
    guard:run(tether.sleep, JOB_SECONDS)
    if guard.cancelled_caught then
      print(("worker %d: job %d abandoned after %g s"):format(id, job, GRACE))
    else
      print(("worker %d: finished job %d"):format(id, job))
    end
  end
end

local function shutdown_on_signal(pool_scope)
  local signals <close> = tether.open_signal_receiver(tether.SIGINT, tether.SIGTERM)
  print(("pid %d: send SIGTERM or press Ctrl+C to stop"):format(tether.getpid()))
  local signum = signals:receive()
  print(("%s: finishing jobs in flight"):format(tether.signal_name(signum)))
  pool_scope:cancel("shutdown")
end

tether.run(function()
  tether.task_group(function(tg)
    tg:start_soon("signals", shutdown_on_signal, tg.cancel_scope)
    for id = 1, WORKERS do
      tg:start_soon("worker " .. id, worker, id)
    end
  end)
  print("all workers stopped")
end)
