-- oom_host program for an attached host (see run_attached in oom_host.c): the host
-- spawns each of `tasks` with tether_spawn, `posted` from callbacks that a second
-- thread posts with tether_post, and `forever`, which tether_shutdown cancels.
local tether = require "tether"

return {
  tasks = {
    function()
      return tether.task_group(function(tg)
        local send, receive = tether.create_memory_object_stream(0)
        tg:start_soon(function() send:send("item") send:close() end)
        local item = receive:receive()
        receive:close()
        return item
      end)
    end,
    function()
      tether.checkpoint()
      return "raise in done" -- the host's done callback raises: tether contains it
    end,
    function()
      tether.sleep(0)
      error("this task fails")
    end,
    function()
      local event = tether.Event()
      tether.task_group(function(tg)
        tg:start_soon(function() event:wait() end)
        tg:start_soon(function() tether.checkpoint() event:set() end)
      end)
      return event:is_set()
    end,
  },
  posted = function() tether.checkpoint() return "posted" end,
  forever = function()
    tether.sleep_forever()
  end,
}
