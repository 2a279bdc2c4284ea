-- oom_host program: virtual time (run_with, MockClock with autojump, fail_after,
-- jump), the task tree of blocked tasks with format_task_tree, and errors that
-- carry where they were raised.
local tether = require "tether"

local clock = tether.MockClock{ autojump_threshold = 0 }
return tether.run_with({ clock = clock }, function()
  local text
  local event, lock = tether.Event(), tether.Lock()
  local send, receive = tether.create_memory_object_stream()
  lock:acquire()
  tether.task_group(function(tg)
    tg:start_soon("event", function() event:wait() end)
    tg:start_soon("lock", function() lock:acquire() end)
    tg:start_soon("receive", function() receive:receive() end)
    tg:start_soon("sleep", tether.sleep, 3600)
    tether.move_on_after(10):run(function()
      tether.wait_all_tasks_blocked()
      text = tether.format_task_tree(tether.task_tree())
    end)
    tg.cancel_scope:cancel()
  end)
  lock:release()
  send:close()
  local ok, err = pcall(function()
    tether.fail_after(60):run(tether.sleep, 120)
  end)
  if ok or not tether.is(err, tether.TimeoutError) then error(err, 0) end
  assert(err.where, "a TimeoutError without where")
  clock:jump(1)
  return #text > 0, tether.current_time()
end)
