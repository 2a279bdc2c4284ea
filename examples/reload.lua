-- Reload on SIGHUP, exit on SIGTERM.
local tether = require "tether"

tether.run(function()
  local signals <close> = tether.open_signal_receiver(tether.SIGTERM, tether.SIGHUP)
  for signum in signals do
    if signum == tether.SIGTERM then
      return
    elseif signum == tether.SIGHUP then
      print("Reloading configuration")
    end
  end
end)
