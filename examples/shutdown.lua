-- Graceful shutdown on Ctrl+C / SIGTERM: the handler cancels the whole group.
local tether = require "tether"

local function signal_handler(scope)
  local signals <close> = tether.open_signal_receiver(tether.SIGINT, tether.SIGTERM)
  for signum in signals do
    if signum == tether.SIGINT then
      print("Ctrl+C pressed!")
    else
      print("Terminated!")
    end
    scope:cancel()
    return
  end
end

tether.run(function()
  tether.task_group(function(tg)
    tg:start_soon(signal_handler, tg.cancel_scope)
    -- ... the application's own tasks start here ...
  end)
end)
