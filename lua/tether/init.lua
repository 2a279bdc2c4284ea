--- tether: structured concurrency for Lua 5.4 on libuv.
-- Tasks are coroutines run by an event loop; task groups own their children;
-- cancel scopes carry deadlines and shields. This reference is the contract:
-- every name, its arguments, results and errors. docs/guide.md is a tour.
-- @module tether

local core = require "tether.core"
-- tether's own frames are not where a user's error or wait is: the facade's
-- files all have sources that start like this one's.
core.set_facade_prefix(debug.getinfo(1, "S").source:match "^(.*[/\\])" or "")
local errors = require "tether.errors"
local sync = require "tether.sync"
local net = require "tether.net"
local process = require "tether.process"
local fs = require "tether.fs"
local tasktree = require "tether.tasktree"
local callback = require "tether.callback"
local udp = require "tether.udp"
local worker = require "tether.worker"

local tether = {
  _VERSION = core._VERSION,
  is = errors.is,
  fs = fs,
  open_file = core.open_file,
  coroutine = require "tether.coroutine",
  wait_callback = callback.wait_callback,
}

for _, name in ipairs(errors.names) do
  tether[name] = errors[name]
end

for _, name in ipairs {
  "run", "current_time", "sleep", "sleep_until", "sleep_forever",
  "checkpoint", "checkpoint_if_cancelled", "cancel_shielded_checkpoint",
  "current_task", "get_running_tasks", "wait_all_tasks_blocked",
  "task_group", "CancelScope", "move_on_after", "move_on_at", "fail_after",
  "fail_at", "current_effective_deadline", "open_signal_receiver", "kill",
  "getpid", "signal_name", "Event", "create_memory_object_stream",
  "socketpair", "open_pipe", "getaddrinfo", "getnameinfo",
  "wrap_fd", "stdin", "stdout",
  "stderr",
  "run_with", "MockClock",
} do
  tether[name] = core[name]
end

for _, name in ipairs {
  "Lock", "Semaphore", "Condition", "CapacityLimiter", "pcall",
} do
  tether[name] = sync[name]
end

for _, name in ipairs {
  "connect_tcp", "listen_tcp", "serve_tcp", "connect_unix", "listen_unix", "serve_unix",
} do
  tether[name] = net[name]
end

for _, name in ipairs { "run_process", "open_process" } do
  tether[name] = process[name]
end

for _, name in ipairs { "task_tree", "format_task_tree" } do
  tether[name] = tasktree[name]
end

for _, name in ipairs { "open_udp" } do
  tether[name] = udp[name]
end

tether.to_thread = worker.to_thread
tether.worker = { expose = worker.expose, call = worker.call,
  check_cancelled = worker.check_cancelled }

-- Signal numbers of this platform: tether.SIGTERM, tether.SIGINT, ...
for name, value in pairs(core) do
  if name:match "^SIG%w+$" then tether[name] = value end
end

return tether
