-- oom_host program: a signal receiver gets a SIGUSR1 the program sends itself (when
-- the run fails before the receive, the unread delivery is re-raised to the host's
-- own SIGUSR1 handler).
local tether = require "tether"

local signum = tether.run(function()
  local signals <close> = tether.open_signal_receiver(tether.SIGUSR1, "SIGTERM")
  assert(tether.kill(tether.getpid(), tether.SIGUSR1))
  local got = signals:receive()
  return got
end)
assert(signum == tether.SIGUSR1)
