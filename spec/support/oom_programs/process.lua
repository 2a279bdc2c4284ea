-- oom_host program: child processes: run_process feeding stdin and capturing
-- stdout and stderr through pipes, and a cancelled owner whose child the ladder
-- kills.
local tether = require "tether"

local got = tether.run(function()
  local r = tether.run_process({ "cat" }, { stdin = "in" })
  tether.move_on_after(0):run(function()
    local _ <close> = tether.open_process({ "sleep", "10" }, { terminate = { "SIGKILL" } })
    tether.sleep_forever()
  end)
  return r.stdout
end)
assert(got == "in", got)
