-- Memory object streams: tether.create_memory_object_stream, send/receive (blocking and
-- nowait), FIFO fairness with direct hand-off, checkpoints and cancellation, clone/close,
-- iteration, statistics, and misuse.
-- Contract: API.md §6 and SEMANTICS.md §1.6-1.8, §6.7 (Trio's behaviour for a task
-- blocked on a handle that another task closes).
local tether = require "tether"
local helper = require "spec.helper"
local recorder, kind, outcome, misuse = helper.recorder, helper.kind, helper.outcome,
  helper.misuse
local raises, outcome_when_cancelled = helper.raises, helper.outcome_when_cancelled

local create = tether.create_memory_object_stream

-- Calls fn(...) under pcall; returns its first result as a string, or the kind of error.
local function result(fn, ...)
  local ok, v = pcall(fn, ...)
  if ok then return tostring(v) end
  return kind(v)
end

-- Runs fn() while a task started just before waits to run; returns the order of the two.
-- { "other task", "call returned" } means fn yielded before it returned.
local function order_around(fn)
  local events, record = recorder()
  tether.task_group(function(tg)
    tg:start_soon(function() record("other task") end)
    fn()
    record("call returned")
  end)
  return events
end

-- Starts fn(...) as a child of tg and waits until every other task is blocked (so
-- children queue in the order they were started).
local function start_blocked(tg, fn, ...)
  tg:start_soon(fn, ...)
  tether.wait_all_tasks_blocked()
end

-- Starts fn(...) as a child of tg inside a fresh cancel scope, waits until every other
-- task is blocked, and returns the scope.
local function start_in_scope(tg, fn, ...)
  local scope = tether.CancelScope{}
  local args = table.pack(...)
  tg:start_soon(function()
    scope:run(fn, table.unpack(args, 1, args.n))
  end)
  tether.wait_all_tasks_blocked()
  return scope
end

-- The six documented statistics of a stream handle.
local function stats(handle)
  local st = handle:statistics()
  return {
    current_buffer_used = st.current_buffer_used,
    max_buffer_size = st.max_buffer_size,
    open_send_streams = st.open_send_streams,
    open_receive_streams = st.open_receive_streams,
    tasks_waiting_send = st.tasks_waiting_send,
    tasks_waiting_receive = st.tasks_waiting_receive,
  }
end

-- The statistics table with the given fields; unlisted ones take the values of a
-- fresh stream with one handle at each end.
local function expected(fields)
  local t = {
    current_buffer_used = 0, max_buffer_size = 0, open_send_streams = 1,
    open_receive_streams = 1, tasks_waiting_send = 0, tasks_waiting_receive = 0,
  }
  for k, v in pairs(fields) do t[k] = v end
  return t
end

-------------------------------------------------------------------------------------------
describe("tether.create_memory_object_stream", function()
  it("returns a send and a receive handle on a rendezvous stream by default", function()
    helper.run(function()
      local send, receive = create()
      assert.is_not_nil(send)
      assert.is_not_nil(receive)
      assert.same(expected{}, stats(send))
      assert.same(expected{}, stats(receive))
      raises("WouldBlock", send.send_nowait, send, "x")
      raises("WouldBlock", receive.receive_nowait, receive)
    end)
  end)

  it("accepts a max_buffer_size that is an integer >= 0 or math.huge", function()
    helper.run(function()
      local s0 = create(0)
      assert.same(expected{ max_buffer_size = 0 }, stats(s0))
      local s3 = create(3)
      assert.same(expected{ max_buffer_size = 3 }, stats(s3))
      local sinf = create(math.huge)
      assert.same(expected{ max_buffer_size = math.huge }, stats(sinf))
    end)
  end)

  it("rejects a negative or non-integer max_buffer_size", function()
    helper.run(function()
      for _, bad in ipairs { -1, 1.5, 0 / 0, -math.huge, "2", {}, true } do
        misuse("^tether%.create_memory_object_stream: ", create, bad)
      end
    end)
  end)

  it("can be created and inspected outside tether.run and used inside it", function()
    local events, record = recorder()
    local send, receive = create(1)
    assert.same(expected{ max_buffer_size = 1 }, stats(receive))
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          local s <close> = send
          for i = 1, 3 do s:send(i) end
        end)
        for v in receive do record(v) end
      end)
    end)
    assert.same({ 1, 2, 3 }, events)
    assert.same(expected{ max_buffer_size = 1, open_send_streams = 0 }, stats(receive))
  end)
end)

-------------------------------------------------------------------------------------------
describe("send_nowait and receive_nowait", function()
  it("buffer items in send order up to max_buffer_size, then raise WouldBlock", function()
    helper.run(function()
      local send, receive = create(2)
      send:send_nowait("a")
      send:send_nowait("b")
      assert.same(expected{ max_buffer_size = 2, current_buffer_used = 2 }, stats(send))
      raises("WouldBlock", send.send_nowait, send, "c")
      assert.same(expected{ max_buffer_size = 2, current_buffer_used = 2 }, stats(send))
      assert.equal("a", receive:receive_nowait())
      assert.equal("b", receive:receive_nowait())
      raises("WouldBlock", receive.receive_nowait, receive)
      assert.same(expected{ max_buffer_size = 2 }, stats(receive))
    end)
  end)

  it("keep FIFO order while the buffer never drains", function()
    helper.run(function()
      local send, receive = create(3)
      send:send_nowait(-1)
      send:send_nowait(0)
      local got, want = {}, {}
      for i = 1, 500 do
        send:send_nowait(i)
        got[i] = receive:receive_nowait()
        want[i] = i - 2
      end
      assert.same(want, got)
      assert.same(expected{ max_buffer_size = 3, current_buffer_used = 2 }, stats(send))
      assert.equal(499, receive:receive_nowait())
      assert.equal(500, receive:receive_nowait())
      raises("WouldBlock", receive.receive_nowait, receive)
    end)
  end)

  it("carry any non-nil value unchanged, false and tables included", function()
    helper.run(function()
      local send, receive = create(math.huge)
      local t = {}
      for _, v in ipairs { false, 0, "", t } do send:send_nowait(v) end
      assert.is_false(receive:receive_nowait())
      assert.equal(0, receive:receive_nowait())
      assert.equal("", receive:receive_nowait())
      assert.is_true(rawequal(t, receive:receive_nowait()))
    end)
  end)

  it("on a rendezvous stream, send_nowait() succeeds only when a receiver waits", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      tether.task_group(function(tg)
        raises("WouldBlock", send.send_nowait, send, "early")
        start_blocked(tg, function() record("got " .. receive:receive()) end)
        assert.same(expected{ tasks_waiting_receive = 1 }, stats(send))
        send:send_nowait("x")
        assert.same(expected{}, stats(send))
        raises("WouldBlock", send.send_nowait, send, "y") -- nobody waits any more
      end)
      assert.same({ "got x" }, events)
    end)
  end)

  it("on an unbounded stream (math.huge), send_nowait() never blocks", function()
    helper.run(function()
      local send, receive = create(math.huge)
      for i = 1, 1000 do send:send_nowait(i) end
      assert.same(expected{ max_buffer_size = math.huge, current_buffer_used = 1000 },
        stats(send))
      local got = {}
      for i = 1, 1000 do got[i] = receive:receive_nowait() end
      local want = {}
      for i = 1, 1000 do want[i] = i end
      assert.same(want, got)
    end)
  end)

  it("refuse nil with an error that names the function and change nothing", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(1)
      tether.task_group(function(tg)
        start_blocked(tg, function() record("got " .. receive:receive()) end)
        misuse("^send:send_nowait: ", send.send_nowait, send, nil)
        misuse("^send:send_nowait: ", send.send_nowait, send)
        misuse("^send:send: ", send.send, send, nil)
        misuse("^send:send: ", send.send, send)
        assert.same(expected{ max_buffer_size = 1, tasks_waiting_receive = 1 }, stats(send))
        tether.wait_all_tasks_blocked()
        assert.same({}, events)
        send:send_nowait("real")
      end)
      assert.same({ "got real" }, events)
      assert.same(expected{ max_buffer_size = 1 }, stats(send))
    end)
  end)

  it("say how to iterate when a for loop is given the send end", function()
    local send, receive = create(1)
    send:send_nowait("kept")
    local ok, err = pcall(function()
      for _ in send do error("the send end yielded an item") end
    end)
    assert.is_false(ok)
    assert.matches("^send:__call: .* iterate its receive end: for item in receive do", err)
    assert.equal("kept", receive:receive_nowait())
  end)
end)

-------------------------------------------------------------------------------------------
describe("send and receive", function()
  it("deliver items in send order", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      tether.task_group(function(tg)
        tg:start_soon(function()
          for i = 1, 5 do send:send(i) end
          send:close()
        end)
        while true do
          local ok, v = pcall(receive.receive, receive)
          if not ok then
            record(kind(v))
            break
          end
          record(v)
        end
      end)
      assert.same({ 1, 2, 3, 4, 5, "EndOfStream" }, events)
    end)
  end)

  it("send() with room in the buffer yields before it returns", function()
    helper.run(function()
      local send, _receive = create(1)
      assert.same({ "other task", "call returned" }, order_around(function()
        send:send("x")
      end))
      assert.equal(1, stats(send).current_buffer_used)
    end)
  end)

  it("receive() of a buffered item yields before it returns", function()
    helper.run(function()
      local send, receive = create(1)
      send:send_nowait("x")
      local got
      assert.same({ "other task", "call returned" }, order_around(function()
        got = receive:receive()
      end))
      assert.equal("x", got)
    end)
  end)

  it("send() on a rendezvous stream returns only once a receiver took the item", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      tether.task_group(function(tg)
        start_blocked(tg, function()
          send:send("a")
          record("sent")
        end)
        assert.same({}, events)
        assert.same(expected{ tasks_waiting_send = 1 }, stats(send))
        record("received " .. receive:receive_nowait())
        assert.same(expected{}, stats(send))
      end)
      assert.same({ "received a", "sent" }, events)
    end)
  end)

  it("a receiver that waits gets the item directly, even with room in the buffer: "
    .. "no barging", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(1)
      tether.task_group(function(tg)
        start_blocked(tg, function() record("A got " .. receive:receive()) end)
        send:send_nowait("x")
        assert.same(expected{ max_buffer_size = 1 }, stats(send))
        raises("WouldBlock", receive.receive_nowait, receive)
        send:send("y") -- a blocking send takes the same path
        assert.equal(1, stats(send).current_buffer_used)
      end)
      assert.same({ "A got x" }, events)
      assert.equal("y", receive:receive_nowait())
    end)
  end)

  it("serve blocked receivers in arrival order", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      tether.task_group(function(tg)
        for _, name in ipairs { "R1", "R2", "R3" } do
          start_blocked(tg, function() record(name .. " " .. receive:receive()) end)
        end
        assert.equal(3, stats(send).tasks_waiting_receive)
        for _, item in ipairs { "a", "b", "c" } do send:send_nowait(item) end
        assert.same(expected{}, stats(send))
      end)
      assert.same({ "R1 a", "R2 b", "R3 c" }, events)
    end)
  end)

  it("deliver blocked senders' items in the senders' arrival order", function()
    helper.run(function()
      local events, record = recorder()
      local received = {}
      local send, receive = create(0)
      tether.task_group(function(tg)
        for _, item in ipairs { "a", "b", "c" } do
          start_blocked(tg, function()
            send:send(item)
            record("sent " .. item)
          end)
        end
        assert.equal(3, stats(send).tasks_waiting_send)
        for i = 1, 3 do received[i] = receive:receive() end
      end)
      assert.same({ "a", "b", "c" }, received)
      assert.same({ "sent a", "sent b", "sent c" }, events)
    end)
  end)

  it("receive_nowait() moves the oldest blocked sender's item into the buffer and releases "
    .. "that sender", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(1)
      tether.task_group(function(tg)
        send:send_nowait("x")
        for _, item in ipairs { "a", "b" } do
          start_blocked(tg, function()
            send:send(item)
            record("sent " .. item)
          end)
        end
        assert.same(expected{ max_buffer_size = 1, current_buffer_used = 1,
                              tasks_waiting_send = 2 }, stats(send))
        assert.equal("x", receive:receive_nowait())
        assert.same(expected{ max_buffer_size = 1, current_buffer_used = 1,
                              tasks_waiting_send = 1 }, stats(send))
        tether.wait_all_tasks_blocked()
        assert.same({ "sent a" }, events)
        assert.equal("a", receive:receive_nowait())
        assert.same(expected{ max_buffer_size = 1, current_buffer_used = 1 }, stats(send))
        assert.equal("b", receive:receive_nowait())
        assert.same(expected{ max_buffer_size = 1 }, stats(send))
      end)
      assert.same({ "sent a", "sent b" }, events)
    end)
  end)

  it("send() in a cancelled scope raises Cancelled and sends nothing, even if a receiver waits",
    function()
      helper.run(function()
        local events, record = recorder()
        local send, receive = create(0)
        tether.task_group(function(tg)
          start_blocked(tg, function() record("got " .. receive:receive()) end)
          assert.equal("Cancelled", outcome_when_cancelled(function() send:send("x") end))
          assert.same(expected{ tasks_waiting_receive = 1 }, stats(send))
          tether.wait_all_tasks_blocked()
          assert.same({}, events)
          send:send_nowait("y")
        end)
        assert.same({ "got y" }, events)

        local bsend, breceive = create(1) -- keep the receive end from the collector
        assert.equal("Cancelled", outcome_when_cancelled(function() bsend:send("x") end))
        assert.same(expected{ max_buffer_size = 1 }, stats(bsend))
        breceive:close()
      end)
    end)

  it("receive() in a cancelled scope raises Cancelled and consumes nothing, even if an item "
    .. "is buffered", function()
    helper.run(function()
      local send, receive = create(1)
      send:send_nowait("x")
      assert.equal("Cancelled", outcome_when_cancelled(function() receive:receive() end))
      assert.same(expected{ max_buffer_size = 1, current_buffer_used = 1 }, stats(receive))
      assert.equal("x", receive:receive_nowait())

      local events, record = recorder()
      local s2, r2 = create(0)
      tether.task_group(function(tg)
        start_blocked(tg, function() -- a sender blocked on a rendezvous stream
          s2:send("held")
          record("sent")
        end)
        record(outcome_when_cancelled(function() r2:receive() end))
        assert.same(expected{ tasks_waiting_send = 1 }, stats(r2))
        record(r2:receive_nowait())
      end)
      assert.same({ "Cancelled", "held", "sent" }, events)
    end)
  end)

  it("the nowait calls are not checkpoints", function()
    helper.run(function()
      local send, receive = create(1)
      assert.equal("returned", outcome_when_cancelled(function()
        send:send_nowait("x")
        assert.equal("x", receive:receive_nowait())
      end))
    end)
  end)

  it("a sender cancelled while blocked withdraws its item; it is never delivered", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      tether.task_group(function(tg)
        local scope_a = start_in_scope(tg, function()
          record("S1 " .. outcome(send.send, send, "a"))
        end)
        start_blocked(tg, function()
          send:send("b")
          record("S2 sent")
        end)
        scope_a:cancel()
        tether.wait_all_tasks_blocked()
        assert.same({ "S1 Cancelled" }, events)
        assert.same(expected{ tasks_waiting_send = 1 }, stats(send))
        record("received " .. receive:receive_nowait())
        raises("WouldBlock", receive.receive_nowait, receive)
      end)
      assert.same({ "S1 Cancelled", "received b", "S2 sent" }, events)
    end)
  end)

  it("a sender whose scope is cancelled just before a receive is skipped", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      tether.task_group(function(tg)
        local scope_a = start_in_scope(tg, function()
          record("S1 " .. outcome(send.send, send, "a"))
        end)
        start_blocked(tg, function()
          send:send("b")
          record("S2 sent")
        end)
        scope_a:cancel()
        record("received " .. receive:receive_nowait())
        raises("WouldBlock", receive.receive_nowait, receive)
      end)
      assert.same({ "received b", "S1 Cancelled", "S2 sent" }, events)
    end)
  end)

  it("a receiver whose scope is cancelled just before a send is skipped; the item goes to "
    .. "the next receiver", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      tether.task_group(function(tg)
        local scope_a = start_in_scope(tg, function()
          record("R1 " .. result(receive.receive, receive))
        end)
        start_blocked(tg, function() record("R2 " .. receive:receive()) end)
        scope_a:cancel()
        send:send_nowait("x")
        assert.same(expected{}, stats(send))
      end)
      assert.same({ "R1 Cancelled", "R2 x" }, events)
    end)
  end)

  it("a receiver cancelled while blocked leaves the queue", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      tether.task_group(function(tg)
        local scope_a = start_in_scope(tg, function()
          record("R1 " .. result(receive.receive, receive))
        end)
        assert.equal(1, stats(send).tasks_waiting_receive)
        scope_a:cancel()
        tether.wait_all_tasks_blocked()
        assert.same(expected{}, stats(send))
        raises("WouldBlock", send.send_nowait, send, "x")
      end)
      assert.same({ "R1 Cancelled" }, events)
    end)
  end)

  it("an item handed to a receiver is not lost if its scope is cancelled before it runs",
    function()
      helper.run(function()
        local events, record = recorder()
        local send, receive = create(0)
        tether.task_group(function(tg)
          local scope_a = start_in_scope(tg, function()
            record("got " .. result(receive.receive, receive))
            record("checkpoint " .. outcome(tether.checkpoint))
          end)
          send:send_nowait("x")
          scope_a:cancel()
        end)
        assert.same({ "got x", "checkpoint Cancelled" }, events)
        assert.same(expected{}, stats(send))
      end)
    end)

  it("a blocked sender whose item was taken returns normally even if cancelled before it runs",
    function()
      helper.run(function()
        local events, record = recorder()
        local send, receive = create(0)
        tether.task_group(function(tg)
          local scope_a = start_in_scope(tg, function()
            record("send " .. outcome(send.send, send, "a"))
            record("checkpoint " .. outcome(tether.checkpoint))
          end)
          record("received " .. receive:receive_nowait())
          scope_a:cancel()
        end)
        assert.same({ "received a", "send returned", "checkpoint Cancelled" }, events)
      end)
    end)
end)

-------------------------------------------------------------------------------------------
describe("close and clone", function()
  it("closing the last send handle ends the stream for every waiting receiver", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      tether.task_group(function(tg)
        for _, name in ipairs { "R1", "R2" } do
          start_blocked(tg, function() record(name .. " " .. result(receive.receive, receive)) end)
        end
        send:close()
        assert.same(expected{ open_send_streams = 0 }, stats(receive))
      end)
      assert.same({ "R1 EndOfStream", "R2 EndOfStream" }, events)
      raises("EndOfStream", receive.receive_nowait, receive)
      raises("EndOfStream", receive.receive, receive)
    end)
  end)

  it("buffered items stay receivable after every sender closed, then EndOfStream", function()
    helper.run(function()
      local send, receive = create(3)
      send:send_nowait(1)
      send:send_nowait(2)
      send:close()
      assert.same(expected{ max_buffer_size = 3, current_buffer_used = 2,
                            open_send_streams = 0 }, stats(receive))
      assert.equal(1, receive:receive())
      assert.equal(2, receive:receive_nowait())
      raises("EndOfStream", receive.receive_nowait, receive)
      raises("EndOfStream", receive.receive, receive)
      assert.same(expected{ max_buffer_size = 3, open_send_streams = 0 }, stats(receive))
    end)
  end)

  it("closing the last receive handle breaks waiting senders and every later send", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      tether.task_group(function(tg)
        for _, item in ipairs { "a", "b" } do
          start_blocked(tg, function() record(item .. " " .. outcome(send.send, send, item)) end)
        end
        receive:close()
        assert.same(expected{ open_receive_streams = 0 }, stats(send))
      end)
      assert.same({ "a BrokenResourceError", "b BrokenResourceError" }, events)
      raises("BrokenResourceError", send.send_nowait, send, "c")
      raises("BrokenResourceError", send.send, send, "c")
      assert.same(expected{ open_receive_streams = 0 }, stats(send))

      local bsend, breceive = create(5) -- even with room in the buffer
      breceive:close()
      raises("BrokenResourceError", bsend.send_nowait, bsend, "x")
      raises("BrokenResourceError", bsend.send, bsend, "x")
      assert.same(expected{ max_buffer_size = 5, open_receive_streams = 0 }, stats(bsend))
    end)
  end)

  it("a closed send handle raises ClosedResourceError for every use; close() is idempotent",
    function()
      helper.run(function()
        local send, receive = create(1)
        local other = send:clone()
        send:close()
        send:close()
        assert.same(expected{ max_buffer_size = 1 }, stats(receive)) -- one clone left
        raises("ClosedResourceError", send.send_nowait, send, "x")
        raises("ClosedResourceError", send.send, send, "x")
        raises("ClosedResourceError", send.clone, send)
        assert.same(expected{ max_buffer_size = 1 }, stats(receive))
        other:close()
        other:close()
        assert.same(expected{ max_buffer_size = 1, open_send_streams = 0 }, stats(receive))
      end)
    end)

  it("a closed receive handle raises ClosedResourceError for every use; close() is idempotent",
    function()
      helper.run(function()
        local send, receive = create(2)
        local other = receive:clone()
        send:send_nowait("x")
        receive:close()
        receive:close()
        assert.same(expected{ max_buffer_size = 2, current_buffer_used = 1 }, stats(send))
        raises("ClosedResourceError", receive.receive_nowait, receive)
        raises("ClosedResourceError", receive.receive, receive)
        raises("ClosedResourceError", receive.clone, receive)
        raises("ClosedResourceError", function()
          for _ in receive do end
        end)
        assert.same(expected{ max_buffer_size = 2, current_buffer_used = 1 }, stats(send))
        assert.equal("x", other:receive_nowait())
        other:close()
        other:close()
        assert.same(expected{ max_buffer_size = 2, open_receive_streams = 0 }, stats(send))
      end)
    end)

  it("a send end stays open until all its clones are closed", function()
    helper.run(function()
      local send, receive = create(1)
      local send2 = send:clone()
      local send3 = send2:clone()
      assert.same(expected{ max_buffer_size = 1, open_send_streams = 3 }, stats(receive))
      send:close()
      assert.same(expected{ max_buffer_size = 1, open_send_streams = 2 }, stats(receive))
      raises("WouldBlock", receive.receive_nowait, receive)
      send2:send_nowait("from clone")
      send2:close()
      assert.equal("from clone", receive:receive_nowait())
      raises("WouldBlock", receive.receive_nowait, receive)
      send3:close()
      raises("EndOfStream", receive.receive_nowait, receive)
      assert.same(expected{ max_buffer_size = 1, open_send_streams = 0 }, stats(receive))
    end)
  end)

  it("a receive end stays open until all its clones are closed", function()
    helper.run(function()
      local send, receive = create(1)
      local receive2 = receive:clone()
      assert.same(expected{ max_buffer_size = 1, open_receive_streams = 2 }, stats(send))
      receive:close()
      assert.same(expected{ max_buffer_size = 1 }, stats(send))
      send:send_nowait("x")
      assert.equal("x", receive2:receive_nowait())
      receive2:close()
      raises("BrokenResourceError", send.send_nowait, send, "y")
      assert.same(expected{ max_buffer_size = 1, open_receive_streams = 0 }, stats(send))
    end)
  end)

  it("a receiver blocked on a handle that another task closes gets ClosedResourceError "
    .. "while another clone stays open", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      local receive2 = receive:clone()
      tether.task_group(function(tg)
        start_blocked(tg, function() record("R " .. result(receive.receive, receive)) end)
        receive:close()
        assert.same(expected{}, stats(send))
        tether.wait_all_tasks_blocked()
        assert.same({ "R ClosedResourceError" }, events)
        raises("WouldBlock", send.send_nowait, send, "x") -- nobody waits now
        start_blocked(tg, function() record("R2 " .. result(receive2.receive, receive2)) end)
        send:send_nowait("y")
      end)
      assert.same({ "R ClosedResourceError", "R2 y" }, events)
    end)
  end)

  it("a sender blocked on a handle that another task closes gets ClosedResourceError "
    .. "while another clone stays open; its item is not delivered", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(0)
      local send2 = send:clone()
      tether.task_group(function(tg)
        start_blocked(tg, function() record("S " .. outcome(send.send, send, "a")) end)
        send:close()
        assert.same(expected{}, stats(receive))
        tether.wait_all_tasks_blocked()
        assert.same({ "S ClosedResourceError" }, events)
        raises("WouldBlock", receive.receive_nowait, receive)
        start_blocked(tg, function() record("S2 " .. outcome(send2.send, send2, "b")) end)
        record("received " .. receive:receive_nowait())
      end)
      assert.same({ "S ClosedResourceError", "received b", "S2 returned" }, events)
    end)
  end)

  it("close() works as a to-be-closed value and is not a checkpoint", function()
    helper.run(function()
      local send, receive = create(1)
      assert.equal("returned", outcome_when_cancelled(function()
        local _s <close> = send
      end))
      assert.same(expected{ max_buffer_size = 1, open_send_streams = 0 }, stats(receive))
      raises("ClosedResourceError", send.send_nowait, send, "x")
      assert.equal("returned", outcome_when_cancelled(function()
        local _r <close> = receive
      end))
      raises("ClosedResourceError", receive.receive_nowait, receive)
    end)
  end)

  it("a to-be-closed handle is closed when its block ends by error", function()
    helper.run(function()
      local send, receive = create(1)
      local err = helper.error_of(function()
        local _s <close> = send
        error("boom", 0)
      end)
      assert.equal("boom", err)
      raises("EndOfStream", receive.receive_nowait, receive)
    end)
  end)
end)

-------------------------------------------------------------------------------------------
describe("for v in receive", function()
  it("yields every item until every send handle is closed and the buffer is drained",
    function()
      helper.run(function()
        local events, record = recorder()
        local send, receive = create(2)
        tether.task_group(function(tg)
          local send2 = send:clone()
          tg:start_soon(function()
            local s <close> = send
            for i = 1, 3 do s:send(i) end
          end)
          tg:start_soon(function()
            tether.wait_all_tasks_blocked() -- the first producer has finished
            local s <close> = send2
            s:send("last")
          end)
          for v in receive do record(v) end
          record("loop ended")
        end)
        assert.same({ 1, 2, 3, "last", "loop ended" }, events)
      end)
    end)

  it("passes false through without ending the loop", function()
    helper.run(function()
      local events, record = recorder()
      local send, receive = create(math.huge)
      for _, v in ipairs { false, 0, "" } do send:send_nowait(v) end
      send:close()
      for v in receive do record(v) end
      assert.same({ false, 0, "" }, events)
    end)
  end)

  it("checkpoints at every step: in a cancelled scope it raises Cancelled and consumes nothing",
    function()
      helper.run(function()
        local events, record = recorder()
        local send, receive = create(math.huge)
        send:send_nowait(1)
        send:send_nowait(2)
        assert.equal("Cancelled", outcome_when_cancelled(function()
          for v in receive do record(v) end
        end))
        assert.same({}, events)
        assert.equal(2, stats(receive).current_buffer_used)

        send:close()
        assert.same({ "other task", "call returned" }, order_around(function()
          for v in receive do record(v) end
        end))
        assert.same({ 1, 2 }, events)
      end)
    end)
end)

-------------------------------------------------------------------------------------------
describe("statistics", function()
  it("counts buffered items, open handles and waiting tasks, the same on both ends", function()
    helper.run(function()
      local send, receive = create(1)
      local send2, receive2 = send:clone(), receive:clone()
      local want = expected{ max_buffer_size = 1, open_send_streams = 2,
                             open_receive_streams = 2 }
      assert.same(want, stats(send))
      assert.same(want, stats(receive2))
      tether.task_group(function(tg)
        send:send_nowait("x")
        for _ = 1, 2 do
          start_blocked(tg, function() send2:send("y") end)
        end
        want = expected{ max_buffer_size = 1, open_send_streams = 2,
                         open_receive_streams = 2, current_buffer_used = 1,
                         tasks_waiting_send = 2 }
        assert.same(want, stats(send))
        assert.same(want, stats(receive))
        for _ = 1, 3 do receive:receive() end
        for _ = 1, 3 do
          start_blocked(tg, function() pcall(receive2.receive, receive2) end)
        end
        want = expected{ max_buffer_size = 1, open_send_streams = 2,
                         open_receive_streams = 2, tasks_waiting_receive = 3 }
        assert.same(want, stats(send2))
        assert.same(want, stats(receive))
        send2:close()
        send:close()
      end)
      assert.same(expected{ max_buffer_size = 1, open_send_streams = 0,
                            open_receive_streams = 2 }, stats(receive))
    end)
  end)
end)

-------------------------------------------------------------------------------------------
describe("misuse", function()
  it("send() on a full stream and receive() on an empty one raise Cancelled at once in a "
    .. "cancelled scope and queue nothing", function()
    helper.run(function()
      local send, receive = create(1)
      send:send_nowait("x")
      assert.equal("Cancelled", outcome_when_cancelled(function() send:send("y") end))
      assert.same(expected{ max_buffer_size = 1, current_buffer_used = 1 }, stats(send))
      assert.equal("x", receive:receive_nowait())
      raises("WouldBlock", receive.receive_nowait, receive) -- "y" was never queued
      assert.equal("Cancelled", outcome_when_cancelled(function() receive:receive() end))
      assert.same(expected{ max_buffer_size = 1 }, stats(send))
      send:send_nowait("z") -- buffered, not handed to a phantom receiver
      assert.same(expected{ max_buffer_size = 1, current_buffer_used = 1 }, stats(send))
    end)
  end)

  it("send() and receive() outside tether.run raise an error naming the call", function()
    local send, receive = create(1)
    misuse("^send:send: ", send.send, send, "x")
    misuse("^receive:receive: ", receive.receive, receive)
    send:send_nowait("x")
    misuse("^receive:receive: ", receive.receive, receive)
    assert.same(expected{ max_buffer_size = 1, current_buffer_used = 1 }, stats(send))
  end)

  it("send() and receive() from a coroutine that is not a task or across a C-call boundary "
    .. "raise an error naming the call and change nothing", function()
    helper.run(function()
      local send, receive = create(1)
      local calls = {
        { "send:send: ", function() send:send("x") end },        -- room in the buffer
        { "receive:receive: ", function() receive:receive() end }, -- empty
      }
      local function check_all(want)
        for _, call in ipairs(calls) do
          local prefix, fn = call[1], call[2]
          local err = helper.error_of(coroutine.wrap(fn))
          assert.is_string(err)
          assert.is_truthy(err:find(prefix, 1, true))
          misuse("^" .. prefix, table.sort, { 2, 1 }, function(a, b)
            fn()
            return a < b
          end)
          misuse("^" .. prefix, string.gsub, "a", "a", fn)
          assert.same(want, stats(send))
        end
      end
      check_all(expected{ max_buffer_size = 1 })
      send:send_nowait("buffered") -- now receive() has an item and send() no room
      check_all(expected{ max_buffer_size = 1, current_buffer_used = 1 })
      assert.equal("buffered", receive:receive_nowait())
    end)
  end)

  it("methods called with a wrong self raise an error naming the method", function()
    local SHARED = { clone = true, close = true, statistics = true }
    helper.run(function()
      local send, receive = create(1)
      local ends = {
        { "send", send, { "send", "send_nowait", "clone", "close", "statistics" } },
        { "receive", receive, { "receive", "receive_nowait", "clone", "close", "statistics" } },
      }
      local wrong = {}
      for _, entry in ipairs(ends) do
        local prefix, handle, methods = entry[1], entry[2], entry[3]
        for _, method in ipairs(methods) do
          local fn = handle[method]
          assert.is_function(fn)
          local name = prefix .. ":" .. method
          -- clone, close and statistics may be one function shared by both ends, which
          -- cannot tell which end a wrong self was meant to be: either name will do.
          local pattern = SHARED[method] and "^%a+:" .. method .. ": "
              or "^" .. name .. ": "
          for _, bad in ipairs { {}, 42, "self", false, "nil" } do
            if bad == "nil" then bad = nil end -- h.method(): a dot instead of a colon
            local ok, err = pcall(fn, bad, "item")
            if ok or type(err) ~= "string" or not err:find(pattern) then
              wrong[#wrong + 1] = ("%s(%s) %s"):format(name, tostring(bad),
                ok and "returned" or "raised " .. tostring(err))
            end
          end
        end
      end
      assert.same({}, wrong)
      assert.same(expected{ max_buffer_size = 1 }, stats(send))
    end)
  end)
end)
