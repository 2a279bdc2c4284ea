--- Memory object streams: a channel between tasks with a send end and a
-- receive end, each cloneable and closeable (Trio's memory channels).
--
-- Items go directly from a sender to the longest-waiting receiver, or through
-- a buffer of `max_buffer_size` items (0, the default, is a rendezvous).
-- Waiters are served FIFO; `send` and `receive` are checkpoints and have no
-- effect when they raise `Cancelled`.
-- @module tether.stream

local core = require "tether.core"
local errors = require "tether.errors"

local ParkingLot = core.ParkingLot
local task_id = core.current_task_id
local checkpoint_if_cancelled_as = core.checkpoint_if_cancelled_as
local shielded_checkpoint_as = core.cancel_shielded_checkpoint_as

local stream = {}

-- Values a parked task may be woken with besides an item.
local END = setmetatable({}, { __name = "end of stream" })
local BROKEN = setmetatable({}, { __name = "broken" })
local CLOSED = setmetatable({}, { __name = "closed" })

local function misuse(fname, message, ...)
  error(fname .. ": " .. message:format(...), 0)
end

local function raise(class, fname, message)
  error(class.new(fname .. ": " .. message), 0)
end

local SendStream = { __name = "tether.MemoryObjectSendStream" }
SendStream.__index = SendStream
local ReceiveStream = { __name = "tether.MemoryObjectReceiveStream" }
ReceiveStream.__index = ReceiveStream

local function check_handle(self, class, fname)
  if getmetatable(self) ~= class then
    misuse(fname, "expected a %s as self (use a colon), got %s", class.__name,
      type(self))
  end
  if self._closed then
    raise(errors.ClosedResourceError, fname, "this stream handle is closed")
  end
  return self._state
end

local function new_handle(class, state)
  return setmetatable({ _state = state, _closed = false, _waiting = {} }, class)
end

--- Creates a stream; returns its send and receive ends.
-- @tparam[opt=0] integer|number max_buffer_size items buffered without a
-- waiting receiver (math.huge: unbounded)
-- @treturn MemoryObjectSendStream
-- @treturn MemoryObjectReceiveStream
function stream.create_memory_object_stream(max_buffer_size)
  local fname = "tether.create_memory_object_stream"
  max_buffer_size = max_buffer_size == nil and 0 or max_buffer_size
  if not ((math.type(max_buffer_size) == "integer" and max_buffer_size >= 0)
      or max_buffer_size == math.huge) then
    misuse(fname, "max_buffer_size must be an integer >= 0 or math.huge, got %s",
      tostring(max_buffer_size))
  end
  local state = {
    max = max_buffer_size,
    items = {}, head = 1, tail = 0, -- the buffer, a queue
    open_send = 1, open_receive = 1,
    senders = ParkingLot(),   -- blocked senders, their item as payload
    receivers = ParkingLot(), -- blocked receivers
  }
  return new_handle(SendStream, state), new_handle(ReceiveStream, state)
end

--- Parks the running task in `lot` on behalf of `handle` (so closing the
-- handle can find it); returns the value it was woken with.
local function wait(handle, lot, fname, payload)
  local id = task_id()
  handle._waiting[id] = true
  local ok, value = pcall(lot.park, lot, fname, payload)
  handle._waiting[id] = nil
  if not ok then error(value, 0) end
  return value
end

-- {======================================================================
-- Sending
-- =======================================================================

--- Tries to deliver `item` without blocking; returns false when it would
-- have to wait.
local function try_send(state, item, fname)
  if state.open_receive == 0 then
    raise(errors.BrokenResourceError, fname, "every receive end is closed")
  end
  if #state.receivers > 0 then
    state.receivers:unpark(item)
  elseif state.tail - state.head + 1 < state.max then
    state.tail = state.tail + 1
    state.items[state.tail] = item
  else
    return false
  end
  return true
end

local function check_item(item, fname)
  if item == nil then misuse(fname, "cannot send nil (it ends iteration)") end
end

--- Sends `item` if a receiver waits or the buffer has room; raises
-- `WouldBlock` otherwise.
function SendStream:send_nowait(item)
  local fname = "send:send_nowait"
  local state = check_handle(self, SendStream, fname)
  check_item(item, fname)
  if not try_send(state, item, fname) then
    raise(errors.WouldBlock, fname, "no receiver is waiting and the buffer is full")
  end
end

--- Sends `item`, waiting (FIFO) until a receiver or the buffer takes it.
function SendStream:send(item)
  local fname = "send:send"
  local state = check_handle(self, SendStream, fname)
  check_item(item, fname)
  checkpoint_if_cancelled_as(fname)
  if try_send(state, item, fname) then
    return shielded_checkpoint_as(fname)
  end
  local outcome = wait(self, state.senders, fname, item)
  if outcome == BROKEN then
    raise(errors.BrokenResourceError, fname, "every receive end was closed")
  elseif outcome == CLOSED then
    raise(errors.ClosedResourceError, fname, "this stream handle was closed")
  end
end

-- }======================================================================

-- {======================================================================
-- Receiving
-- =======================================================================

--- Takes the next item without blocking: from the buffer (refilled from the
-- longest-waiting sender) or directly from that sender. Returns nothing when
-- it would have to wait, END when every sender is gone.
local function try_receive(state)
  local _, item = state.senders:unpark()
  if item ~= nil then
    state.tail = state.tail + 1
    state.items[state.tail] = item
  end
  if state.head <= state.tail then
    item = state.items[state.head]
    state.items[state.head] = nil
    state.head = state.head + 1
    return item
  end
  if state.open_send == 0 then return END end
end

--- Receives an item if one is ready; raises `WouldBlock` or `EndOfStream`
-- otherwise.
function ReceiveStream:receive_nowait()
  local fname = "receive:receive_nowait"
  local item = try_receive(check_handle(self, ReceiveStream, fname))
  if item == nil then
    raise(errors.WouldBlock, fname, "no item is ready")
  elseif item == END then
    raise(errors.EndOfStream, fname, "every send end is closed")
  end
  return item
end

--- Receives the next item, or returns END when the stream has ended.
local function receive(self, fname)
  local state = check_handle(self, ReceiveStream, fname)
  checkpoint_if_cancelled_as(fname)
  local item = try_receive(state)
  if item ~= nil then
    shielded_checkpoint_as(fname)
    return item
  end
  item = wait(self, state.receivers, fname)
  if item == CLOSED then
    raise(errors.ClosedResourceError, fname, "this stream handle was closed")
  end
  return item
end

--- Receives the next item, waiting (FIFO) for one; raises `EndOfStream`
-- once every send end is closed and the buffer is empty.
function ReceiveStream:receive()
  local item = receive(self, "receive:receive")
  if item == END then
    raise(errors.EndOfStream, "receive:receive", "every send end is closed")
  end
  return item
end

--- `for item in receive_stream do ... end` iterates until the stream ends.
function ReceiveStream:__call()
  local item = receive(self, "receive:receive")
  if item ~= END then return item end
end

-- }======================================================================

-- {======================================================================
-- Cloning, closing, statistics
-- =======================================================================

--- A new handle on the same end; the end closes when all its handles have.
function SendStream:clone()
  local state = check_handle(self, SendStream, "send:clone")
  state.open_send = state.open_send + 1
  return new_handle(SendStream, state)
end

function ReceiveStream:clone()
  local state = check_handle(self, ReceiveStream, "receive:clone")
  state.open_receive = state.open_receive + 1
  return new_handle(ReceiveStream, state)
end

--- Marks a handle closed and wakes the tasks blocked on it with CLOSED.
local function close_handle(self, lot)
  if self._closed then return false end
  self._closed = true
  for id in pairs(self._waiting) do
    lot:unpark_task(id, CLOSED)
  end
  self._waiting = {}
  return true
end

--- Closes this send handle (idempotent). When the last one closes, blocked
-- receivers get `EndOfStream` once the buffer is drained.
function SendStream:close()
  local state = self._state
  if not close_handle(self, state.senders) then return end
  state.open_send = state.open_send - 1
  if state.open_send == 0 then state.receivers:unpark_all(END) end
end

--- Closes this receive handle (idempotent). When the last one closes,
-- blocked senders get `BrokenResourceError`.
function ReceiveStream:close()
  local state = self._state
  if not close_handle(self, state.receivers) then return end
  state.open_receive = state.open_receive - 1
  if state.open_receive == 0 then state.senders:unpark_all(BROKEN) end
end

SendStream.__close = SendStream.close
ReceiveStream.__close = ReceiveStream.close

local function statistics(self, class, fname)
  local state = check_handle(self, class, fname)
  return {
    current_buffer_used = state.tail - state.head + 1,
    max_buffer_size = state.max,
    open_send_streams = state.open_send,
    open_receive_streams = state.open_receive,
    tasks_waiting_send = #state.senders,
    tasks_waiting_receive = #state.receivers,
  }
end

--- Counts of the stream's buffer, handles and waiting tasks.
function SendStream:statistics()
  return statistics(self, SendStream, "send:statistics")
end

function ReceiveStream:statistics()
  return statistics(self, ReceiveStream, "receive:statistics")
end

-- }======================================================================

return stream
