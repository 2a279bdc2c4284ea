-- Helper program for spec/signal_spec.lua: runs inside a pseudo-terminal and waits
-- for Ctrl+C typed into it.  Prints "ready" once every task is blocked.
--
--   lua5.4 spec/support/ctrl_c.lua MODE
--
-- MODE:
--   graceful  a worker blocked in sleep_forever; on Ctrl+C its shielded cleanup does a
--             real wait and prints "cleanup done"; run must raise tether.Interrupted,
--             which is re-raised uncaught at the end (lua5.4 prints it, status 1).
--   stuck     the shielded cleanup prints "cleanup blocking" and blocks forever: only
--             a second Ctrl+C ends the process (killed by SIGINT, status 130).
--   swallow   the main task swallows its Cancelled with a plain pcall and returns
--             normally: run must still raise tether.Interrupted.
--   receiver  a SIGINT receiver is open: Ctrl+C goes to it, run returns normally.
--   process   a task runs a child process that ignores SIGTERM (in its own process
--             group, so the terminal's SIGINT does not reach it): Ctrl+C terminates it
--             by the ladder (SIGTERM, then SIGKILL after 0.2 s) before run raises.
local tether = require "tether"

local mode = arg[1]
local MODES = { graceful = true, stuck = true, swallow = true, receiver = true, process = true }
if not MODES[mode] then
  io.stderr:write("usage: ctrl_c.lua graceful|stuck|swallow|receiver|process\n")
  os.exit(2)
end

local function say(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

-- Whether SIGINT has a handler (bit SIGINT-1 of SigCgt in /proc/self/status).
local function sigint_caught()
  local f = io.open("/proc/self/status")
  if not f then return "unknown" end
  local text = f:read("a")
  f:close()
  local hex = text:match("SigCgt:%s*(%x+)")
  local digit = tonumber(hex:sub(-1 - (tether.SIGINT - 1) // 4, -1 - (tether.SIGINT - 1) // 4), 16)
  return (digit >> ((tether.SIGINT - 1) % 4)) & 1 == 1
end

local function worker()
  local _, err = pcall(tether.sleep_forever)
  say("worker cancelled:", tostring(tether.is(err, tether.Cancelled)))
  tether.CancelScope({ shield = true }):run(function()
    if mode == "stuck" then
      say("cleanup blocking")
      tether.sleep_forever()
    end
    tether.sleep(0.05) -- a real wait: the shield keeps the Ctrl+C cancellation out
    say("cleanup done")
  end)
  error(err, 0)
end

local child -- mode "process": the child's Process

local function main()
  if mode == "process" then
    tether.task_group(function(tg)
      child = tg:start(tether.run_process,
        { "sh", "-c", "trap '' TERM INT; echo started; while :; do sleep 1; done" },
        { stdout = "pipe", terminate = { "SIGTERM", 0.2, "SIGKILL" } })
      say("child says", child.stdout:read_line())
      tether.wait_all_tasks_blocked()
      say("ready")
      tether.sleep_forever()
    end)
  elseif mode == "swallow" then
    say("ready")
    local _, err = pcall(tether.sleep_forever)
    say("main swallowed Cancelled:", tostring(tether.is(err, tether.Cancelled)))
    return "swallowed"
  elseif mode == "receiver" then
    local signals <close> = tether.open_signal_receiver(tether.SIGINT)
    say("ready")
    local signum, count = signals:receive()
    say("receiver got", tether.signal_name(signum), count)
    return "received"
  end
  tether.task_group(function(tg)
    tg:start_soon(worker)
    tether.wait_all_tasks_blocked()
    say("ready")
    tether.sleep_forever()
  end)
end

local ok, err = pcall(tether.run, main)
if child then
  say("child ended by", tether.signal_name(child.signal),
    "gone:", tostring(not io.open("/proc/" .. child.pid .. "/stat")))
end
say("SIGINT handler back:", tostring(sigint_caught()))
if ok then
  say("run returned", tostring(err))
  os.exit(0)
end
say("run raised Interrupted:", tostring(tether.is(err, tether.Interrupted)))
error(err, 0) -- uncaught: lua5.4 prints it and exits with status 1
