-- Cancellation at random moments: every blocking stream call (send, flush, receive,
-- read with each format, read_line, read_until, read_exactly; accept and connect_tcp)
-- runs under random deadlines (none, already passed, a few microseconds) while another
-- task cancels it at random checkpoints. Whatever was cancelled, a byte stream arrives
-- exactly once and in order over socketpairs, pipes and TCP (a cancelled send committed
-- nothing, a returned send is delivered, a cancelled read consumed nothing), a cancelled
-- accept leaves its connection queued, a cancelled connect leaves nothing open.
--
-- The runs are random but seeded: a failure names its seed, and TETHER_SEED=<seed>
-- repeats the same choices (the timing of the OS may still differ).

local tether = require "tether"
local helper = require "spec.helper"

local KiB = 1024

do
  local before, after = helper.descriptor_check("the cancellation property specs")
  setup(before)
  teardown(after)
end

local SEED = tonumber(os.getenv("TETHER_SEED") or "") or os.time()

-- Each run moves this much data; slow runners (valgrind, ASan) move less, in as many
-- calls (sends of up to SEND_MAX bytes, reads of up to READ_MAX).
local DATA_SIZE = math.max(64 * KiB, 1024 * KiB // math.ceil(helper.time_scale))
local SEND_MAX, READ_MAX = DATA_SIZE // 64, DATA_SIZE // 256

-- A generator of integers in [lo, hi] with a fixed seed (a 64-bit LCG).
local function prng(seed)
  local state = seed
  return function(lo, hi)
    state = state * 6364136223846793005 + 1442695040888963407
    return lo + (state >> 33) % (hi - lo + 1)
  end
end

-- Which run failed, and how to repeat it.
local function with_seed(message, seed)
  return ("%s (seed %d; TETHER_SEED=%d repeats this run)"):format(message, seed, SEED)
end

-- size random bytes ending in "\n", with no "\r" (read_line would drop it).
local function random_data(random, size)
  local blocks = {}
  for first = 1, size - 1, 4096 do
    local bytes = {}
    for i = 1, math.min(4096, size - first) do
      local byte = random(0, 255)
      bytes[i] = byte == 13 and 10 or byte
    end
    blocks[#blocks + 1] = string.char(table.unpack(bytes))
  end
  return table.concat(blocks) .. "\n"
end

-- A deadline for one call: none, already passed, or a few microseconds to a millisecond.
local function tiny_timeout(random)
  local choice = random(1, 8)
  if choice == 1 then return nil end
  if choice == 2 then return 0 end
  return random(1, 1000) * 1e-6 * helper.time_scale
end

-- {======================================================================
-- Attempts: one call under a random deadline, which the canceller may also cancel
-- =======================================================================

-- The cancel scopes of the calls under way, by side; the canceller cancels them.
local function new_control()
  return { scopes = {}, sides = 0, done = 0 }
end

-- fn(...) under move_on_after(timeout), cancellable by the canceller through
-- control.scopes[side]: nil if it was cancelled, else tether.pcall(fn, ...) packed.
local function attempt(control, side, random, fn, ...)
  local result
  local scope = tether.move_on_after(tiny_timeout(random))
  control.scopes[side] = scope
  scope:run(function(...)
    result = table.pack(tether.pcall(fn, ...))
  end, ...)
  control.scopes[side] = nil
  return result
end

-- Until every side is done: lets a random number of checkpoints pass, then cancels the
-- call under way on a random side (if any).
local function canceller(control, random)
  while control.done < control.sides do
    for _ = 1, random(0, 6) do tether.checkpoint() end
    if random(1, 3) == 1 then tether.sleep(random(0, 200) * 1e-6) end
    local scope = control.scopes[random(1, control.sides)]
    if scope then scope:cancel() end
  end
end

-- Runs each of bodies (functions of control) as a side of its own, with a canceller.
local function with_canceller(random, bodies)
  local control = new_control()
  control.sides = #bodies
  tether.task_group(function(tg)
    for side, body in ipairs(bodies) do
      tg:start_soon(function()
        body(control, side)
        control.done = control.done + 1
      end)
    end
    canceller(control, random)
  end)
end

-- }======================================================================

-- {======================================================================
-- A byte stream under cancellation
-- =======================================================================

-- Read calls that return the bytes they consumed, or nil at end of input.
local READ_OPS = {
  { name = "receive", call = function(s, n) return s:receive(n) end },
  { name = "read(n)", call = function(s, n) return s:read(n) end },
  { name = 'read("l")', call = function(s)
    local line = s:read("l")
    return line and line .. "\n"
  end },
  { name = 'read("L")', call = function(s) return s:read("L") end },
  { name = "read_line", call = function(s, n)
    local line = s:read_line(n)
    return line and line .. "\n"
  end },
  { name = "read_until", call = function(s, n) return s:read_until(";", n) .. ";" end },
  { name = "read_exactly", call = function(s, n) return s:read_exactly(n) end },
  { name = "receive and unread", call = function(s, n)
    local chunk = s:receive(n)   -- keeps half of a chunk and pushes the rest back
    local keep = (#chunk + 1) // 2
    if keep < #chunk then s:unread(chunk:sub(keep + 1)) end
    return chunk:sub(1, keep)
  end },
}
-- read("a") waits for the end of input: it is tried once in a while only.
local READ_ALL = { name = 'read("a")', call = function(s) return s:read("a") end }

-- What a read call that completed consumed, and whether input ended.
local function consumed(result)
  if result[1] then return result[2] or "", result[2] == nil end
  local err = result[2]
  if tether.is(err, tether.LimitExceeded) then return "", false end
  if tether.is(err, tether.IncompleteRead) then return err.partial, true end
  if tether.is(err, tether.EndOfStream) then return "", true end
  error(err, 0)
end

-- Sends data in random pieces (some as arrays of strings, some with send_nowait), with
-- random flushes, every call cancellable; then the end of input.
local function send_all(control, side, random, s, data, counts)
  local first = 1
  while first <= #data do
    local piece = data:sub(first, first + random(1, SEND_MAX) - 1)
    local payload = piece
    if random(1, 4) == 1 then
      local cut = random(0, #piece)
      payload = { piece:sub(1, cut), piece:sub(cut + 1) }
    end
    local committed
    if random(1, 8) == 1 then   -- send_nowait commits all at once, or nothing
      local ok, err = tether.pcall(s.send_nowait, s, payload)
      if not ok and not tether.is(err, tether.WouldBlock) then error(err, 0) end
      committed = ok
    else
      local result = attempt(control, side, random, s.send, s, payload)
      if result == nil then
        counts.sends_cancelled = counts.sends_cancelled + 1
      elseif not result[1] then
        error(result[2], 0)
      end
      committed = result ~= nil
    end
    if committed then
      first = first + #piece
      if random(1, 6) == 1 then
        local flushed = attempt(control, side, random, s.flush, s)
        if flushed and not flushed[1] then error(flushed[2], 0) end
      end
    end
  end
  s:send_eof()
end

-- Reads until the end of input with random read calls, every one cancellable.
local function receive_all(control, side, random, s, counts)
  local parts = {}
  local ended = false
  while not ended do
    local op = random(1, 200) == 1 and READ_ALL or READ_OPS[random(1, #READ_OPS)]
    local result = attempt(control, side, random, op.call, s, random(1, READ_MAX))
    if result == nil then
      counts.reads_cancelled = counts.reads_cancelled + 1
    else
      local piece
      piece, ended = consumed(result)
      parts[#parts + 1] = piece
      counts.reads_done = counts.reads_done + 1
    end
  end
  return table.concat(parts)
end

-- The first position where a and b differ, or nil.
local function first_difference(a, b)
  if a == b then return nil end
  for i = 1, math.max(#a, #b) do
    if a:byte(i) ~= b:byte(i) then return i end
  end
end

-- A TCP connection over 127.0.0.1: the client's stream, the server's stream.
local function tcp_pair()
  local listener <close> = tether.listen_tcp { host = "127.0.0.1" }
  local client = tether.connect_tcp("127.0.0.1", listener.port)
  return client, listener:accept()
end

local TRANSPORTS = {   -- open() returns a writer and a reader
  { name = "socketpair", open = function() return tether.socketpair() end },
  { name = "pipe", open = function()
    local r, w = tether.open_pipe()
    return w, r
  end },
  { name = "TCP", open = tcp_pair },
}

describe("a byte stream under random cancellation", function()
  for index, transport in ipairs(TRANSPORTS) do
    it(("arrives exactly once and in order (%s)"):format(transport.name), function()
      local seed = SEED + index
      local random = prng(seed)
      local data = random_data(random, DATA_SIZE)
      local counts = { sends_cancelled = 0, reads_cancelled = 0, reads_done = 0 }
      local received = helper.run_within(60, function()
        local writer, reader = transport.open()
        local _w <close> = writer
        local _r <close> = reader
        writer:set_option("high_water", 8 * KiB)
        reader:set_option("read_ahead", 4 * KiB)
        local got
        local writing, reading = prng(seed * 3), prng(seed * 5)
        with_canceller(prng(seed * 7), {
          function(control, side) send_all(control, side, writing, writer, data, counts) end,
          function(control, side) got = receive_all(control, side, reading, reader, counts) end,
        })
        return got
      end)
      local at = first_difference(data, received)
      assert(at == nil, with_seed(("%d bytes sent, %d received, first difference at %s")
        :format(#data, #received, tostring(at)), seed))
      assert(counts.sends_cancelled > 0, with_seed("no send was cancelled", seed))
      assert(counts.reads_cancelled > 0, with_seed("no read was cancelled", seed))
      assert(counts.reads_done > 0, with_seed("no read completed", seed))
    end)
  end
end)

-- }======================================================================

-- {======================================================================
-- Accepting and connecting under cancellation
-- =======================================================================

describe("accept and connect_tcp under random cancellation", function()
  local CONNECTIONS = 60

  it("a cancelled accept leaves its connection queued; a cancelled connect leaves " ..
     "nothing open", function()
    local seed = SEED + 100
    local before = helper.open_descriptors()
    local connected, accepted, cancels = {}, {}, { accept = 0, connect = 0 }
    helper.run_within(60, function()
      local listener <close> = tether.listen_tcp { host = "127.0.0.1", backlog = 128 }
      local clients = {}
      local connecting, accepting = prng(seed * 3), prng(seed * 5)
      with_canceller(prng(seed * 7), {
        function(control, side)   -- clients: each sends its number once connected
          for id = 1, CONNECTIONS do
            local result = attempt(control, side, connecting, tether.connect_tcp,
              "127.0.0.1", listener.port)
            if result == nil then
              cancels.connect = cancels.connect + 1
            else
              local conn = assert(result[1] and result[2], result[2])
              conn:send(("%d\n"):format(id))
              clients[#clients + 1] = conn
              connected[#connected + 1] = id
            end
          end
          for _, conn in ipairs(clients) do conn:send_eof() end
        end,
        function(control, side)   -- the server: accepts until every client is seen
          while not (control.done > 0 and #accepted == #connected) do
            local result = attempt(control, side, accepting, listener.accept, listener)
            if result == nil then
              cancels.accept = cancels.accept + 1
            else
              local conn <close> = assert(result[1] and result[2], result[2])
              -- a connection whose connect was cancelled may reach the backlog: it has
              -- no number, and ends at once
              local ok, line = pcall(conn.read_line, conn)
              if ok and line then accepted[#accepted + 1] = tonumber(line) end
            end
          end
        end,
      })
      for _, conn in ipairs(clients) do conn:close() end
    end)
    table.sort(accepted)
    assert.same(connected, accepted, with_seed("accepted connections differ", seed))
    assert(cancels.accept > 0, with_seed("no accept was cancelled", seed))
    assert(cancels.connect > 0, with_seed("no connect was cancelled", seed))
    local after = helper.open_descriptors()
    assert(after <= before, with_seed(("%d descriptor(s) left open"):format(after - before),
      seed))
  end)
end)

-- }======================================================================
