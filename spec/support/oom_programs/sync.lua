-- oom_host program: Event, memory object streams with blocked senders and receivers,
-- Lock, Semaphore, Condition and wait_all_tasks_blocked.
local tether = require "tether"

local received = tether.run(function()
  local got = {}
  local event = tether.Event()
  local send, receive = tether.create_memory_object_stream(0)
  local buffered_send, buffered_receive = tether.create_memory_object_stream(2)
  local lock, semaphore = tether.Lock(), tether.Semaphore(1)
  local condition = tether.Condition()
  tether.task_group(function(tg)
    -- Senders block on a rendezvous stream until the receiver comes.
    for i = 1, 3 do
      local mine = send:clone()
      tg:start_soon(function()
        local s <close> = mine
        s:send(i)
      end)
    end
    send:close()
    tg:start_soon(function()
      local r <close> = receive
      event:wait()
      for item in r do got[#got + 1] = item end
    end)
    -- A receiver blocks on the buffered stream until an item comes.
    tg:start_soon(function()
      local r <close> = buffered_receive
      for item in r do got[#got + 1] = item end
    end)
    tg:start_soon(function()
      local s <close> = buffered_send
      for i = 10, 13 do s:send(i) end
    end)
    -- Lock, Semaphore, Condition: tasks queue up on each.
    for _ = 1, 2 do
      tg:start_soon(function()
        lock:acquire()
        tether.checkpoint()
        lock:release()
        semaphore:acquire()
        tether.checkpoint()
        semaphore:release()
      end)
    end
    tg:start_soon(function()
      condition:acquire()
      condition:wait()
      condition:release()
    end)
    tether.wait_all_tasks_blocked()
    condition:acquire()
    condition:notify_all()
    condition:release()
    event:set()
  end)
  return #got
end)
assert(received == 7)
