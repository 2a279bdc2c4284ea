-- Finalizers re-entering the core.  Any allocation may run __gc metamethods, and a
-- finalizer may call tether: close a stream handle, read or write one without
-- blocking, set an Event, unpark a lot.  A waker that walks a wait queue must not
-- let such a call change the queue under it, and every parked task must get exactly
-- one outcome.  Each scenario runs in a child lua5.4 with the collector at its most
-- aggressive legal setting (a step at nearly every allocation), so that a crash
-- fails the test instead of the whole run.

local helper = require "spec.helper"

-- Runs `body` (Lua source, inside tether.run's main task, with `tether` in scope)
-- in a child process; the child prints "ok" when body returns.
local function run_child(body)
  local out, status = helper.run_script(([[
local tether = require "tether"
collectgarbage("incremental", 1, 1000, 6)
local ok, err = pcall(tether.run, function()
%s
end)
if not ok then io.write("run raised: ", tostring(err), "\n") os.exit(3) end
collectgarbage("collect")
io.write("ok\n")
]]):format(body))
  return out, status
end

local function assert_ok(out, status)
  assert.equals(0, status, out)
  assert.truthy(out:find("ok\n", 1, true), out)
end

-- Shared by the scenarios: 'parked(n, send)' starts n tasks that each send their
-- index through 'send' and record how that ended in outcomes[i].
local SENDERS = [[
local function kind(err)
  for _, name in ipairs { "ClosedResourceError", "BrokenResourceError", "Cancelled" } do
    if tether.is(err, tether[name]) then return name end
  end
  return "other: " .. tostring(err)
end
local outcomes = {}
local function parked(tg, n, send)
  for i = 1, n do
    tg:start_soon(function()
      local ok, err = pcall(send.send, send, i)
      assert(outcomes[i] == nil, "sender " .. i .. " got two outcomes")
      outcomes[i] = ok and "sent" or kind(err)
    end)
  end
end
]]

describe("finalizers that call tether while a waker walks a wait queue", function()
  it("a dropped receive handle finalized while a cloned send handle's close wakes 200 "
    .. "senders: each sender gets one error, no crash", function()
    assert_ok(run_child(SENDERS .. [[
  local n = 200
  tether.task_group(function(tg)
    local send, receive = tether.create_memory_object_stream(0)
    local clone = send:clone()
    send:close()
    parked(tg, n, clone)
    tether.wait_all_tasks_blocked()
    -- Dropped without closing, right before the close (nothing allocates in
    -- between): the collector finds it while the close runs, and its __gc closes it.
    receive = nil
    clone:close()
  end)
  for i = 1, n do
    assert(outcomes[i] == "ClosedResourceError" or outcomes[i] == "BrokenResourceError",
      "sender " .. i .. ": " .. tostring(outcomes[i]))
  end
]]))
  end)

  it("finalizers that receive, send and read statistics during a close never see a "
    .. "negative count, and never take an item whose sender is told it failed", function()
    assert_ok(run_child(SENDERS .. [[
  local n = 200
  local received, negative = {}, {}
  tether.task_group(function(tg)
    local send, receive = tether.create_memory_object_stream(0)
    local clone = send:clone()
    parked(tg, n, clone)
    tether.wait_all_tasks_blocked()
    -- garbage whose finalizers use the stream while clone:close() wakes the senders
    local function spy()
      local ok, st = pcall(receive.statistics, receive)
      if ok then
        for field, v in pairs(st) do
          if type(v) == "number" and v < 0 then negative[#negative + 1] = field .. "=" .. v end
        end
      end
      local got, item = pcall(receive.receive_nowait, receive)
      if got then received[item] = (received[item] or 0) + 1 end
      pcall(send.send_nowait, send, "extra")
    end
    local spies = {}
    for i = 1, 2000 do spies[i] = setmetatable({}, { __gc = spy }) end
    spies = nil -- garbage from here on: the collector finds them during the close
    clone:close()
    collectgarbage("collect")
    send:close()
    receive:close()
  end)
  assert(#negative == 0, "negative counts: " .. table.concat(negative, ", "))
  for i = 1, n do
    if outcomes[i] == "sent" then
      assert(received[i] == 1, "sender " .. i .. " returned but its item was received "
        .. tostring(received[i]) .. " times")
    else
      assert(outcomes[i] == "ClosedResourceError", "sender " .. i .. ": " .. tostring(outcomes[i]))
      assert(received[i] == nil, "sender " .. i .. " was told it failed, but its item arrived")
    end
  end
]]))
  end)

  it("finalizers that set Events, unpark lots and close streams while an Event wakes "
    .. "300 waiters: every waiter wakes exactly once", function()
    assert_ok(run_child([[
  local core = require "tether.core"
  local n = 300
  local woke = {}
  local ev = tether.Event()
  local lot = core.ParkingLot()
  local others = {}
  tether.task_group(function(tg)
    for i = 1, n do
      tg:start_soon(function()
        ev:wait()
        woke[i] = (woke[i] or 0) + 1
      end)
    end
    for i = 1, 50 do
      tg:start_soon(function() woke[n + i] = select("#", lot:park()) end)
    end
    tether.wait_all_tasks_blocked()
    for i = 1, 500 do
      local s, r = tether.create_memory_object_stream(1)
      others[i] = setmetatable({}, { __gc = function()
        ev:set()
        lot:unpark(i)
        s:close()
        pcall(r.receive_nowait, r)
      end })
    end
    others = nil -- garbage from here on: the collector finds it during the wake-ups
    ev:set()
    lot:unpark_all(1, 2)
  end)
  for i = 1, n do assert(woke[i] == 1, "waiter " .. i .. " woke " .. tostring(woke[i])) end
  for i = n + 1, n + 50 do assert(woke[i] ~= nil, "lot waiter " .. i .. " never woke") end
]]))
  end)
end)
