-- Byte streams: the Stream object of tether.socketpair() and tether.open_pipe() —
-- reading (receive, read formats, read_line, lines, read_until, read_exactly, read_all,
-- unread) and its limits, writing (send, send_nowait, flush, send_eof), close, abort and
-- <close>, checkpoints and cancellation (a cancelled call had no effect), backpressure,
-- one reader and one writer at a time, broken pipes, misuse, options, addresses and stats.
-- Contract: API.md §9 (9.1, 9.3) and §14; SEMANTICS.md §1.6-1.8 for cancellation.
local tether = require "tether"
local helper = require "spec.helper"
local recorder, outcome, misuse = helper.recorder, helper.outcome, helper.misuse
local outcome_when_cancelled = helper.outcome_when_cancelled

local KiB = 1024
local DEFAULT_SIZE = 64 * KiB   -- read_ahead, high_water, receive's and read_line's max

-- {======================================================================
-- Helpers
-- =======================================================================

-- The error classes this spec meets that helper.kind does not know yet.
local STREAM_ERROR_CLASSES = { "LimitExceeded", "IncompleteRead", "OSError" }

-- A short name for an error value: its tether class, or the text.
local function kind(err)
  for _, name in ipairs(STREAM_ERROR_CLASSES) do
    if tether[name] ~= nil and tether.is(err, tether[name]) then return name end
  end
  return helper.kind(err)
end

-- Asserts that fn(...) raises an instance of tether[class_name]; returns the error.
local function raises(class_name, fn, ...)
  local err = helper.error_of(fn, ...)
  assert.equal(class_name, kind(err))
  return err
end

local function open_socketpair() return tether.socketpair() end
local function open_pipe() return tether.open_pipe() end   -- read end, write end

-- Calls body(x, y) on the two streams that open() returns; both are closed afterwards.
local function with_pair(open, body)
  local x, y = open()
  local _x <close> = x
  local _y <close> = y
  return body(x, y)
end

-- helper.run of body(a, b) on a fresh socketpair.
local function run_on_socketpair(body)
  return helper.run(with_pair, open_socketpair, body)
end

-- The two transports of this slice; open() returns a reader and a writer.
local TRANSPORTS = {
  { name = "socketpair", open = open_socketpair },
  { name = "pipe", open = open_pipe },
}

-- One test per transport: body(open) runs in helper.run.
local function for_each_transport(title, body)
  for _, transport in ipairs(TRANSPORTS) do
    it(("%s (%s)"):format(title, transport.name), function()
      helper.run(body, transport.open)
    end)
  end
end

-- One test per transport: body(reader, writer) runs in helper.run on a fresh pair.
local function each_pair(title, body)
  for_each_transport(title, function(open) return with_pair(open, body) end)
end

-- The writer's whole output: data, then end of input.
local function input(writer, data)
  writer:send(data)
  writer:send_eof()
end

-- Runs fn() in a child task and act() once every other task is blocked.
local function blocked_then(fn, act)
  tether.task_group(function(tg)
    tg:start_soon(fn)
    tether.wait_all_tasks_blocked()
    act()
  end)
end

-- Runs body() while a child task sends each piece (and flushes it) once every other task
-- is blocked, so that the pieces tend to arrive separately.
local function arriving_in_pieces(writer, pieces, body)
  local result
  tether.task_group(function(tg)
    tg:start_soon(function()
      for _, piece in ipairs(pieces) do
        tether.wait_all_tasks_blocked()
        writer:send(piece)
        writer:flush()
      end
    end)
    result = body()
  end)
  return result
end

-- Runs fn() in a child task inside a cancel scope, cancels that scope once the task is
-- blocked, and returns fn's outcome.
local function cancelled_while_blocked(fn)
  local scope = tether.CancelScope{}
  local result
  blocked_then(function()
    scope:run(function() result = outcome(fn) end)
  end, function() scope:cancel() end)
  return result
end

-- Whether fn() let another ready task run before it returned.
local function yielded(fn)
  local other_ran, seen = false, nil
  tether.task_group(function(tg)
    tg:start_soon(function() other_ran = true end)
    fn()
    seen = other_ran
  end)
  return seen
end

-- n bytes read with receive only, so the result does not depend on read_exactly.
local function take(s, n)
  local parts, have = {}, 0
  while have < n do
    local chunk = s:receive(n - have)
    parts[#parts + 1] = chunk
    have = have + #chunk
  end
  return table.concat(parts)
end

-- Everything until end of input, read with `for chunk in s`.
local function drain(s)
  local parts = {}
  for chunk in s do parts[#parts + 1] = chunk end
  return table.concat(parts)
end

-- Makes data buffered in `reader`: takes #data bytes (sent by writer) and unreads them.
local function buffer(reader, writer, data)
  writer:send(data)
  reader:unread(take(reader, #data))
end

-- n bytes that never repeat within 4 GiB and hold no "\n", "\r" or ";".
local function pattern(n)
  local parts = {}
  for i = 1, n // 8 + 1 do parts[i] = ("%08x"):format(i) end
  return table.concat(parts):sub(1, n)
end

local CLOG_SIZE = 4 * KiB * KiB

-- Commits CLOG_SIZE bytes of "." at once (send_nowait commits all of it when the queue is
-- below high_water): more than the OS and the peer's read-ahead can take, so the write
-- queue stays above high_water until the peer reads. Returns CLOG_SIZE.
local function clog(s)
  s:send_nowait(("."):rep(CLOG_SIZE))
  return CLOG_SIZE
end

local MAX_FILL = 64 * KiB * KiB

-- Commits 1 KiB chunks of "." with send_nowait until it raises WouldBlock; returns the
-- number of bytes committed.
local function fill_write_queue(s)
  local chunk = ("."):rep(KiB)
  local committed = 0
  while true do
    local ok, err = pcall(s.send_nowait, s, chunk)
    if not ok then
      assert.equal("WouldBlock", kind(err))
      return committed
    end
    committed = committed + #chunk
    assert(committed <= MAX_FILL, "send_nowait never raised WouldBlock (64 MiB committed)")
  end
end

-- The four documented fields of s:stats().
local function stats_of(s)
  local st = s:stats()
  return {
    bytes_sent = st.bytes_sent, bytes_received = st.bytes_received,
    write_queue = st.write_queue, read_buffer = st.read_buffer,
  }
end

-- The first value that `for v in ...` produces.
local function first_of(...)
  for v in ... do return v end -- luacheck: ignore 512 (one step on purpose)
end

-- Every read call of the API, as name, call and the buffered bytes that leave it
-- waiting for more (with "ab;cd\nef" and end of input, each one returns).
local READS = {
  { name = "receive", pending = "", call = function(s) return s:receive() end },
  { name = "for chunk in s", pending = "", call = function(s) return first_of(s) end },
  { name = "read(4)", pending = "ab", call = function(s) return s:read(4) end },
  { name = 'read("l")', pending = "ab", call = function(s) return s:read("l") end },
  { name = 'read("L")', pending = "ab", call = function(s) return s:read("L") end },
  { name = 'read("a")', pending = "ab", call = function(s) return s:read("a") end },
  { name = "read_line", pending = "ab", call = function(s) return s:read_line() end },
  { name = "lines", pending = "ab", call = function(s) return first_of(s:lines()) end },
  { name = "read_until", pending = "ab", call = function(s) return s:read_until(";", 100) end },
  { name = "read_exactly", pending = "ab", call = function(s) return s:read_exactly(4) end },
  { name = "read_all", pending = "ab", call = function(s) return s:read_all() end },
}
local READ_INPUT = "ab;cd\nef"

-- Every write call of the API, as name and call.
local WRITES = {
  { name = "send", call = function(s) return s:send("x") end },
  { name = "send (array)", call = function(s) return s:send({ "x", "y" }) end },
  { name = "send_nowait", call = function(s) return s:send_nowait("x") end },
  { name = "flush", call = function(s) return s:flush() end },
  { name = "send_eof", call = function(s) return s:send_eof() end },
}

-- The reads that take a max, each called with max = 5.
local LIMITED_READS = {
  { name = "read_line", call = function(s) return s:read_line(5) end },
  { name = "lines", call = function(s) return first_of(s:lines(5)) end },
  { name = "read_until", call = function(s) return s:read_until(";", 5) end },
  { name = "read_all", call = function(s) return s:read_all(5) end },
}

-- One test per transport: for each call c of `calls`, body(c, reader, writer) runs on a
-- fresh pair; the results, by call name, must be expected(c).
local function for_each_call(calls, title, body, expected)
  for_each_transport(title, function(open)
    local results, wanted = {}, {}
    for _, c in ipairs(calls) do
      results[c.name] = with_pair(open, function(r, w) return body(c, r, w) end)
      wanted[c.name] = expected(c)
    end
    assert.same(wanted, results)
  end)
end

-- }======================================================================

-- No test may leave a descriptor open (streams closed by <close>, by close or by __gc).
do
  local before, after = helper.descriptor_check("the stream specs")
  setup(before)
  teardown(after)
end

-------------------------------------------------------------------------------------------
describe("stream:receive", function()
  each_pair("returns what has arrived, 1..max bytes, without waiting to fill max",
    function(r, w)
      w:send("abcdef")
      local chunks = {}
      local have = 0
      while have < 6 do
        local chunk = r:receive(4)
        assert.is_true(#chunk >= 1 and #chunk <= 4, "chunk of " .. #chunk .. " bytes")
        chunks[#chunks + 1] = chunk
        have = have + #chunk
      end
      assert.equal("abcdef", table.concat(chunks))
    end)

  each_pair("returns buffered bytes first", function(r, w)
    w:send("abc")
    r:unread("XY")
    assert.equal("X", r:receive(1))
    assert.equal("Yabc", take(r, 4))
  end)

  each_pair("raises EndOfStream at end of input, and again at every later call",
    function(r, w)
      input(w, "tail")
      assert.equal("tail", take(r, 4))
      raises("EndOfStream", r.receive, r)
      raises("EndOfStream", r.receive, r)
    end)

  each_pair("for chunk in s yields every chunk in order and ends at end of input",
    function(r, w)
      local data = pattern(200 * KiB)
      tether.task_group(function(tg)
        tg:start_soon(input, w, data)
        assert.equal(data, drain(r))
      end)
      assert.is_nil(r:read_line(), "the loop closed the stream")
    end)
end)

-------------------------------------------------------------------------------------------
describe("stream:read", function()
  each_pair('reads "l", "L", a byte count and "a" like Lua\'s file:read', function(r, w)
    input(w, "one\ntwo\nthree")
    assert.equal("one", r:read("l"))
    assert.equal("two\n", r:read("L"))
    assert.equal("th", r:read(2))
    assert.equal("ree", r:read("a"))
  end)

  each_pair('returns nil at end of input, and "" for "a"', function(r, w)
    input(w, "")
    assert.is_nil(r:read("l"))
    assert.is_nil(r:read("L"))
    assert.is_nil(r:read(1))
    assert.equal("", r:read("a"))
  end)

  each_pair("takes several formats in one call, and none means \"l\"", function(r, w)
    input(w, "one\ntwo\nthree\nrest")
    assert.equal("one", r:read())
    assert.same({ "two", "three\n", "re", "st" }, { r:read("l", "L", 2, "a") })
  end)

  each_pair("read(n) waits for n bytes and returns fewer only at end of input",
    function(r, w)
      buffer(r, w, "ab")
      assert.equal("abcde", arriving_in_pieces(w, { "cd", "efg" }, function()
        return r:read(5)
      end))
      w:send_eof()
      assert.equal("fg", r:read(5))
      assert.is_nil(r:read(5))
    end)

  each_pair('"l" is limited by read_line\'s default max, leaving the buffer intact',
    function(r, w)
      local line = pattern(DEFAULT_SIZE + 1)
      input(w, line .. "\nnext\n")
      assert.equal(DEFAULT_SIZE, raises("LimitExceeded", r.read, r, "l").limit)
      assert.equal(line .. "\n", r:read(#line + 1))
      assert.equal("next", r:read("l"))
    end)
end)

-------------------------------------------------------------------------------------------
describe("stream:read_line", function()
  each_pair("strips \"\\n\" and a \"\\r\" before it, and returns the last unterminated line",
    function(r, w)
      input(w, "a\nb\r\n\r\nc\rd\n\nlast")
      local lines = {}
      for i = 1, 7 do lines[i] = r:read_line() or "<nil>" end
      assert.same({ "a", "b", "", "c\rd", "", "last", "<nil>" }, lines)
    end)

  each_pair("waits for the rest of a line arriving in pieces", function(r, w)
    buffer(r, w, "hel")
    assert.equal("hello", arriving_in_pieces(w, { "lo", "\nworld" }, function()
      return r:read_line()
    end))
    w:send_eof()
    assert.equal("world", r:read_line())
    assert.is_nil(r:read_line())
  end)

  each_pair("counts max without the delimiter, and over max raises LimitExceeded " ..
    "leaving the buffer intact", function(r, w)
      input(w, "123456\nabc\n")
      assert.equal(5, raises("LimitExceeded", r.read_line, r, 5).limit)
      assert.equal("123456", r:read_line(6))
      assert.equal("abc", r:read_line(3))
    end)
end)

-------------------------------------------------------------------------------------------
describe("stream:lines", function()
  each_pair("iterates over read_line until end of input, and does not close the stream",
    function(r, w)
      input(w, "one\r\ntwo\n\nfour")
      local events, record = recorder()
      for line in r:lines() do record(line) end
      assert.same({ "one", "two", "", "four" }, events)
      assert.is_nil(r:read_line(), "lines closed the stream")
    end)

  each_pair("raises LimitExceeded for a line over max, leaving it buffered", function(r, w)
    input(w, "ok\ntoo long\nok\n")
    local events, record = recorder()
    local err = helper.error_of(function()
      for line in r:lines(3) do record(line) end
    end)
    assert.equal("LimitExceeded", kind(err))
    assert.equal(3, err.limit)
    assert.same({ "ok" }, events)
    assert.equal("too long", r:read_line())
  end)
end)

-------------------------------------------------------------------------------------------
describe("stream:read_until", function()
  each_pair("returns the bytes before the delimiter and consumes it", function(r, w)
    input(w, "key=value;;rest")
    assert.equal("key=value", r:read_until(";", 100))
    assert.equal("", r:read_until(";", 100))
    assert.equal("rest", r:read_all())
  end)

  each_pair("finds a delimiter of several bytes split across arrivals", function(r, w)
    buffer(r, w, "GET / HTTP/1.1\r\n")
    local head = arriving_in_pieces(w, { "\r", "\nbody" }, function()
      return r:read_until("\r\n\r\n", 100)
    end)
    assert.equal("GET / HTTP/1.1", head)
    w:send_eof()
    assert.equal("body", r:read_all())
  end)

  each_pair("counts max without the delimiter, and over max raises LimitExceeded " ..
    "leaving the buffer intact", function(r, w)
      input(w, "abcdef;abcde;")
      assert.equal(5, raises("LimitExceeded", r.read_until, r, ";", 5).limit)
      assert.equal("abcdef", r:read_until(";", 6))
      assert.equal("abcde", r:read_until(";", 5))
    end)

  each_pair("raises IncompleteRead with the bytes that arrived, consumed, when input ends",
    function(r, w)
      input(w, "abc")
      assert.equal("abc", raises("IncompleteRead", r.read_until, r, ";", 10).partial)
      raises("EndOfStream", r.receive, r)
    end)
end)

-------------------------------------------------------------------------------------------
describe("stream:read_exactly", function()
  each_pair("waits for exactly n bytes arriving in pieces", function(r, w)
    buffer(r, w, "ab")
    assert.equal("abcdef", arriving_in_pieces(w, { "cd", "efgh" }, function()
      return r:read_exactly(6)
    end))
    assert.equal("gh", r:read_exactly(2))
  end)

  each_pair("raises IncompleteRead with the bytes that arrived, consumed, when input ends",
    function(r, w)
      input(w, "abc")
      assert.equal("abc", raises("IncompleteRead", r.read_exactly, r, 5).partial)
      assert.equal("", raises("IncompleteRead", r.read_exactly, r, 1).partial)
    end)

  each_pair("at end of input with nothing buffered raises IncompleteRead with partial \"\"",
    function(r, w)
      input(w, "")
      assert.equal("", raises("IncompleteRead", r.read_exactly, r, 3).partial)
    end)
end)

-------------------------------------------------------------------------------------------
describe("stream:read_all", function()
  each_pair("returns everything until end of input, and \"\" when there is none",
    function(r, w)
      local data = pattern(300 * KiB)
      tether.task_group(function(tg)
        tg:start_soon(input, w, data)
        assert.equal(data, r:read_all())
      end)
      assert.equal("", r:read_all())
    end)

  each_pair("over max raises LimitExceeded leaving the buffer intact", function(r, w)
    input(w, "0123456789")
    assert.equal(9, raises("LimitExceeded", r.read_all, r, 9).limit)
    assert.equal("0123456789", r:read_all(10))
  end)
end)

-------------------------------------------------------------------------------------------
describe("limits", function()
  for_each_call(LIMITED_READS, "a read raises LimitExceeded as soon as more than max bytes " ..
    "arrived without its delimiter, and leaves them buffered", function(c, r, w)
      w:send("1234567")   -- no end of input: a wait for more would never return
      local err = helper.error_of(c.call, r)
      return { kind = kind(err), limit = err.limit, then_read = r:read(7) }
    end,
    function() return { kind = "LimitExceeded", limit = 5, then_read = "1234567" } end)
end)

-------------------------------------------------------------------------------------------
describe("stream:unread", function()
  each_pair("pushes bytes back in front of the buffer, the last pushed first", function(r, w)
    w:send("cd")
    r:unread("b")
    r:unread("a")
    assert.equal("abcd", take(r, 4))
  end)

  each_pair("works after end of input, which still follows the pushed bytes", function(r, w)
    input(w, "")
    raises("EndOfStream", r.receive, r)
    r:unread("x")
    assert.equal("x", r:receive())
    raises("EndOfStream", r.receive, r)
  end)
end)

-------------------------------------------------------------------------------------------
describe("stream:send", function()
  each_pair("writes strings and arrays of strings (one gather write each) in order",
    function(r, w)
      w:send("ab")
      w:send({ "cd", "", "ef" })
      w:send("g")
      w:send_eof()
      assert.equal("abcdefg", r:read_all())
    end)

  each_pair("commits all of data at once, even more than high_water, when the queue is " ..
    "below it", function(r, w)
      local data = pattern(4 * DEFAULT_SIZE)
      input(w, data)   -- the reader has not started: a wait here would never end
      assert.equal(data, drain(r))
    end)
end)

-------------------------------------------------------------------------------------------
describe("stream:send_nowait", function()
  each_pair("commits at once and is not a checkpoint", function(r, w)
    assert.equal("returned", outcome_when_cancelled(function() w:send_nowait("a") end))
    assert.is_false(yielded(function() w:send_nowait({ "b", "c" }) end))
    w:send_eof()
    assert.equal("abc", r:read_all())
  end)

  each_pair("raises WouldBlock once the write queue is at high_water, committing nothing",
    function(r, w)
      w:set_option("high_water", 4 * KiB)
      local committed = fill_write_queue(w)
      assert.is_true(stats_of(w).write_queue >= 4 * KiB)
      w:send_eof()
      assert.equal(("."):rep(committed), drain(r))
    end)
end)

-------------------------------------------------------------------------------------------
describe("stream:flush", function()
  each_pair("waits until everything committed has been handed to the OS", function(r, w)
    local data = pattern(2 * KiB * KiB)   -- more than the OS and the reader buffer
    local events, record = recorder()
    w:send(data)
    tether.task_group(function(tg)
      tg:start_soon(function()
        w:flush()
        record("flushed with a queue of " .. stats_of(w).write_queue)
      end)
      tether.wait_all_tasks_blocked()
      record("reading")
      assert.equal(data, take(r, #data))
    end)
    assert.same({ "reading", "flushed with a queue of 0" }, events)
  end)

  each_pair("returns when nothing is queued", function(_, w)
    w:flush()
    w:send("x")
    w:flush()
    assert.equal(0, stats_of(w).write_queue)
  end)
end)

-------------------------------------------------------------------------------------------
describe("stream:send_eof", function()
  it("half-closes: the peer sees end of input and can still send back", function()
    run_on_socketpair(function(a, b)
      input(a, "request")
      assert.equal("request", b:read_all())
      input(b, "reply")
      assert.equal("reply", a:read_all())
    end)
  end)

  each_pair("goes out after the queued data, without waiting for it to drain",
    function(r, w)
      local data = pattern(2 * KiB * KiB)
      w:send(data)
      w:send_eof()   -- the reader has not started: a wait here would never end
      assert.equal(data, r:read_all())
    end)

  each_pair("is idempotent, and a later send raises ClosedResourceError", function(r, w)
    w:send_eof()
    w:send_eof()
    raises("ClosedResourceError", w.send, w, "late")
    raises("ClosedResourceError", w.send_nowait, w, "late")
    assert.equal("", r:read_all())
  end)
end)

-------------------------------------------------------------------------------------------
describe("stream:close", function()
  each_pair("wakes a reader blocked in another task with ClosedResourceError",
    function(r, _)
      local result
      blocked_then(function() result = outcome(r.receive, r) end, function() r:close() end)
      assert.equal("ClosedResourceError", result)
    end)

  each_pair("wakes a writer blocked in another task, and still delivers what was " ..
    "committed", function(r, w)
      local committed = clog(w)
      local result
      blocked_then(function() result = outcome(w.send, w, "late") end,
        function() w:close() end)
      assert.equal("ClosedResourceError", result)
      assert.equal(("."):rep(committed), drain(r))
    end)

  each_pair("never blocks, is not a checkpoint, and is idempotent", function(r, w)
    assert.equal("returned", outcome_when_cancelled(function() w:close() end))
    assert.is_false(yielded(function() w:close() end))
    assert.is_false(yielded(function() r:close() end))
    r:close()
  end)

  each_pair("keeps fields and stats readable", function(r, w)
    input(w, "abc")
    assert.equal("abc", take(r, 3))
    r:close()
    w:close()
    assert.equal(DEFAULT_SIZE, r.read_ahead)
    assert.equal(5, w.linger)
    assert.equal(3, stats_of(r).bytes_received)
    assert.equal(3, stats_of(w).bytes_sent)
  end)

  for_each_transport("makes every later I/O call raise ClosedResourceError", function(open)
    local results, expected = {}, {}
    -- c.call on the stream that pick(reader, writer) returns, once it is closed.
    local function after_close(c, pick)
      results[c.name] = with_pair(open, function(r, w)
        local s = pick(r, w)
        s:close()
        return outcome(c.call, s)
      end)
      expected[c.name] = "ClosedResourceError"
    end
    for _, c in ipairs(READS) do after_close(c, function(r) return r end) end
    for _, c in ipairs(WRITES) do after_close(c, function(_, w) return w end) end
    after_close({ name = "unread", call = function(s) return s:unread("x") end },
      function(r) return r end)
    assert.same(expected, results)
  end)

  each_pair("flushes queued data to the peer in the background, then ends its input",
    function(r, w)
      local data = pattern(2 * KiB * KiB)
      w:send(data)
      w:close()
      assert.equal(data, r:read_all())
    end)

  each_pair("runs for a <close> variable", function(r, w)
    do
      local s <close> = w
      s:send("last words")
    end
    raises("ClosedResourceError", w.send, w, "more")
    assert.equal("last words", r:read_all())
  end)

  for_each_transport("runs when a stream is garbage-collected", function(open)
    local function reader_only()
      local reader = open()   -- the other stream is dropped, never closed
      return reader
    end
    local r <close> = reader_only()
    collectgarbage("collect")
    collectgarbage("collect")
    assert.equal("", r:read_all())
  end)
end)

-------------------------------------------------------------------------------------------
describe("stream:abort", function()
  it("drops queued data: the peer's input ends early", function()
    run_on_socketpair(function(a, b)
      local committed = clog(a)
      assert.is_true(stats_of(a).write_queue > 0)
      a:abort()
      local received = 0
      local ending = outcome(function()
        while true do received = received + #b:receive() end
      end)
      assert.is_true(ending == "EndOfStream" or ending == "BrokenResourceError", ending)
      assert.is_true(received < committed,
        ("the peer received %d of %d bytes"):format(received, committed))
    end)
  end)

  each_pair("is idempotent with close, not a checkpoint, and later I/O raises " ..
    "ClosedResourceError", function(_, w)
      assert.equal("returned", outcome_when_cancelled(function() w:abort() end))
      w:abort()
      w:close()
      w:abort()
      raises("ClosedResourceError", w.send, w, "x")
    end)
end)

-------------------------------------------------------------------------------------------
describe("checkpoints and cancellation", function()
  for_each_call(READS, "every read raises Cancelled in a cancelled scope and consumes nothing",
    function(c, r, w)
      buffer(r, w, READ_INPUT)
      w:send_eof()
      return { cancelled = outcome_when_cancelled(function() c.call(r) end),
        then_read = r:read_all() }
    end,
    function() return { cancelled = "Cancelled", then_read = READ_INPUT } end)

  for_each_call(READS, "a read cancelled while waiting for more leaves what had arrived",
    function(c, r, w)
      if c.pending ~= "" then buffer(r, w, c.pending) end
      local cancelled = cancelled_while_blocked(function() c.call(r) end)
      input(w, "cd;\nef")
      return { cancelled = cancelled, then_read = r:read_all() }
    end,
    function(c) return { cancelled = "Cancelled", then_read = c.pending .. "cd;\nef" } end)

  for_each_call(READS, "every read yields even when it can complete at once",
    function(c, r, w)
      buffer(r, w, READ_INPUT)
      w:send_eof()
      return yielded(function() c.call(r) end)
    end,
    function() return true end)

  each_pair("send and flush yield even when they can complete at once", function(_, w)
    assert.is_true(yielded(function() w:send("x") end))
    assert.is_true(yielded(function() w:send({ "y", "z" }) end))
    assert.is_true(yielded(function() w:flush() end))
  end)

  each_pair("a send or flush in a cancelled scope raises Cancelled and commits nothing",
    function(r, w)
      w:send_nowait("kept ")
      assert.equal("Cancelled", outcome_when_cancelled(function() w:send("lost") end))
      assert.equal("Cancelled", outcome_when_cancelled(function() w:send({ "lo", "st" }) end))
      assert.equal("Cancelled", outcome_when_cancelled(function() w:flush() end))
      input(w, "and kept")
      assert.equal("kept and kept", r:read_all())
    end)

  each_pair("a send cancelled while waiting for room commits nothing", function(r, w)
    local committed = clog(w)
    assert.equal("Cancelled", cancelled_while_blocked(function() w:send("LOST") end))
    w:send_eof()
    assert.equal(("."):rep(committed), drain(r))
  end)
end)

-------------------------------------------------------------------------------------------
describe("backpressure", function()
  it("blocks a writer whose peer does not read, until the peer reads", function()
    run_on_socketpair(function(a, b)
      b:set_option("read_ahead", KiB)
      a:set_option("high_water", 4 * KiB)
      local data = pattern(2 * KiB * KiB)
      local sent, done = 0, tether.Event()
      tether.task_group(function(tg)
        tg:start_soon(function()
          for first = 1, #data, KiB do
            a:send(data:sub(first, first + KiB - 1))
            sent = first + KiB - 1
          end
          a:send_eof()
          done:set()
        end)
        tether.move_on_after(0.1):run(done.wait, done)
        assert.is_false(done:is_set(), "the writer finished without a reader")
        tether.wait_all_tasks_blocked()   -- the OS buffers are full by now: nothing moves
        assert.is_true(sent < #data)
        assert.is_true(stats_of(a).write_queue >= 4 * KiB, "blocked below high_water")
        assert.is_true(stats_of(b).read_buffer <= KiB + DEFAULT_SIZE, "read past read_ahead")
        assert.equal(data, drain(b))
      end)
      assert.same({ bytes_sent = #data, bytes_received = 0, write_queue = 0, read_buffer = 0 },
        stats_of(a))
      assert.same({ bytes_sent = 0, bytes_received = #data, write_queue = 0, read_buffer = 0 },
        stats_of(b))
    end)
  end)

  it("buffers at most one read past read_ahead while a reader waits", function()
    run_on_socketpair(function(a, b)
      b:set_option("read_ahead", KiB)
      local most, total = 0, 0
      tether.task_group(function(tg)
        tg:start_soon(function()
          for _ = 1, 100 do a:send(("x"):rep(64 * KiB)) end
          a:send_eof()
        end)
        -- receive(max) takes everything buffered: what it returns is what was buffered
        while true do
          local ok, chunk = pcall(b.receive, b, 8 * KiB * KiB)
          if not ok then
            assert.is_true(tether.is(chunk, tether.EndOfStream), tostring(chunk))
            break
          end
          most = math.max(most, #chunk)
          total = total + #chunk
        end
      end)
      assert.equal(100 * 64 * KiB, total)
      assert.is_true(most <= KiB + DEFAULT_SIZE,
        ("read past read_ahead by more than one read: %d"):format(most))
    end)
  end)

  each_pair("a read that needs more than read_ahead still gets it", function(r, w)
    r:set_option("read_ahead", KiB)
    local part = pattern(100 * KiB)
    tether.task_group(function(tg)
      tg:start_soon(input, w, part .. part .. part .. ";" .. part .. "\n" .. part)
      assert.equal(part, r:read_exactly(#part))
      assert.equal(part, r:read(#part))
      assert.equal(part, r:read_until(";", #part))
      assert.equal(part, r:read_line(#part))
      assert.equal(part, r:read_all())
    end)
  end)

  it("stats() counts bytes sent and received, the write queue and the read buffer",
    function()
      run_on_socketpair(function(a, b)
        local zero = { bytes_sent = 0, bytes_received = 0, write_queue = 0, read_buffer = 0 }
        assert.same(zero, stats_of(a))
        a:send("hello")
        a:flush()
        assert.equal("hello", b:read_exactly(5))
        b:unread("xy")
        assert.same({ bytes_sent = 5, bytes_received = 0, write_queue = 0, read_buffer = 0 },
          stats_of(a))
        assert.same({ bytes_sent = 0, bytes_received = 5, write_queue = 0, read_buffer = 2 },
          stats_of(b))
      end)
    end)
end)

-------------------------------------------------------------------------------------------
describe("one reader and one writer at a time", function()
  for_each_call(READS, "a second read while one is blocked raises BusyResourceError",
    function(c, r, w)
      local first, second
      blocked_then(function() first = r:receive() end, function()
        second = outcome(c.call, r)
        w:send("data")
      end)
      return { second = second, first = first }
    end,
    function() return { second = "BusyResourceError", first = "data" } end)

  each_pair("a send or send_nowait while a send is blocked raises BusyResourceError",
    function(r, w)
      local committed = clog(w)
      local events, record = recorder()
      tether.task_group(function(tg)
        tg:start_soon(function()
          w:send("blocked")
          w:send_eof()
        end)
        tether.wait_all_tasks_blocked()
        record(outcome(w.send, w, "second"))
        record(outcome(w.send_nowait, w, "third"))
        record(drain(r) == ("."):rep(committed) .. "blocked")
      end)
      assert.same({ "BusyResourceError", "BusyResourceError", true }, events)
    end)

  it("a reader and a writer may use a stream at once", function()
    run_on_socketpair(function(a, b)
      local reply
      blocked_then(function() reply = a:receive() end, function()
        a:send("ping")
        assert.equal("ping", b:receive())
        b:send("pong")
      end)
      assert.equal("pong", reply)
    end)
  end)
end)

-------------------------------------------------------------------------------------------
describe("broken streams", function()
  -- A program that closes the peer, then sends and flushes on `victim` until an error;
  -- it prints whether SIGPIPE was ignored to begin with, the error, and that it lived on.
  local function broken_pipe_program(open_streams)
    return table.concat({
      'local tether = require "tether"',
      'local f = assert(io.open("/proc/self/status"))',
      'local ignored = tonumber(f:read("a"):match("SigIgn:%s*(%x+)"), 16)',
      "f:close()",
      'print("SIGPIPE ignored: " .. tostring((ignored >> (tether.SIGPIPE - 1)) & 1 == 1))',
      "tether.run(function()",
      open_streams,
      "  peer:close()",
      "  local ok, err = pcall(function()",
      '    for _ = 1, 64 do victim:send(("x"):rep(65536)); victim:flush() end',
      "  end)",
      '  print(ok and "no error" or tether.is(err, tether.BrokenResourceError)',
      '    and "BrokenResourceError " .. tostring(err.code) or "other: " .. tostring(err))',
      "  victim:close()",
      "end)",
      'print("still running")',
    }, "\n")
  end

  local function assert_broken_pipe(open_streams)
    local output, status = helper.run_script(broken_pipe_program(open_streams))
    assert.equal("SIGPIPE ignored: false\nBrokenResourceError EPIPE\nstill running\n", output)
    assert.equal(0, status)
  end

  it("a send after the peer closed raises BrokenResourceError EPIPE, with no SIGPIPE",
    function()
      assert_broken_pipe("local victim, peer = tether.socketpair()")
    end)

  it("a pipe's write end after the read end closed raises BrokenResourceError EPIPE",
    function()
      assert_broken_pipe("local peer, victim = tether.open_pipe()")
    end)
end)

-------------------------------------------------------------------------------------------
describe("misuse", function()
  local METHODS = {
    "receive", "read", "read_line", "lines", "read_until", "read_exactly", "read_all",
    "unread", "send", "send_nowait", "flush", "send_eof", "close", "abort", "set_option",
    "stats",
  }

  -- A call of method `name` with the given arguments.
  local function call(name, ...)
    return { name = name, args = table.pack(...) }
  end

  local BAD_CALLS = {
    call("receive", 0), call("receive", -1), call("receive", 1.5), call("receive", "many"),
    call("read", "x"), call("read", -1), call("read", {}),
    call("read_line", 0), call("read_line", -1), call("read_line", {}),
    call("lines", 0), call("lines", -1),
    call("read_until", "", 10), call("read_until", nil, 10), call("read_until", {}, 10),
    call("read_until", ";", 0), call("read_until", ";", -1),
    call("read_exactly", -1), call("read_exactly", nil), call("read_exactly", "x"),
    call("read_all", 0), call("read_all", -1),
    call("unread", nil), call("unread", {}), call("unread", true),
    call("send", nil), call("send", true), call("send", { "a", true }),
    call("send", function() end),
    call("send_nowait", nil), call("send_nowait", { "a", {} }),
    call("set_option", "bogus", 1), call("set_option", nil, 1),
    call("set_option", "read_ahead", "big"), call("set_option", "read_ahead", -1),
    call("set_option", "read_ahead", 1.5), call("set_option", "high_water", -1),
    call("set_option", "high_water", "x"), call("set_option", "linger", -1),
    call("set_option", "linger", "long"), call("set_option", "keepalive", "yes"),
    call("set_option", "keepalive", -1),
  }

  it("a method called with a dot raises an error naming it", function()
    run_on_socketpair(function(a, _)
      for _, name in ipairs(METHODS) do
        misuse(("^stream:%s: "):format(name), a[name])
        misuse(("^stream:%s: "):format(name), a[name], {})
      end
    end)
  end)

  it("bad arguments raise an error naming the method, and the stream still works",
    function()
      run_on_socketpair(function(a, b)
        for _, c in ipairs(BAD_CALLS) do
          misuse(("^stream:%s: "):format(c.name), a[c.name], a,
            table.unpack(c.args, 1, c.args.n))
        end
        input(b, "still works")
        assert.equal("still works", a:read_all())
      end)
    end)
end)

-------------------------------------------------------------------------------------------
describe("options", function()
  each_pair("have their defaults, readable as fields", function(r, w)
    for _, s in ipairs { r, w } do
      assert.equal(DEFAULT_SIZE, s.read_ahead)
      assert.equal(DEFAULT_SIZE, s.high_water)
      assert.equal(5, s.linger)
      assert.is_nil(s.nodelay)   -- TCP only
    end
  end)

  each_pair("set_option changes the field", function(r, w)
    r:set_option("read_ahead", 1000)
    w:set_option("high_water", 2000)
    w:set_option("linger", 0.5)
    assert.same({ 1000, 2000, 0.5 }, { r.read_ahead, w.high_water, w.linger })
  end)

  it("keepalive is false, and a TCP option: setting it elsewhere says so", function()
    run_on_socketpair(function(a, _)
      assert.is_false(a.keepalive)
      misuse("^stream:set_option: keepalive applies to TCP streams", a.set_option, a,
        "keepalive", 30)
      assert.is_false(a.keepalive)
    end)
  end)
end)

-------------------------------------------------------------------------------------------
describe("addresses", function()
  each_pair("are nil for unnamed sockets and pipes", function(r, w)
    assert.same({}, { r.local_address, r.remote_address, w.local_address, w.remote_address })
  end)
end)
