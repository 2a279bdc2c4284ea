-- TCP: connect_tcp (names, Happy Eyeballs, refusals), listen_tcp, accept, serve and
-- serve_tcp, getaddrinfo; cancellation leaves nothing behind; loopback only.

local tether = require "tether"
local helper = require "spec.helper"

do
  local before, after = helper.descriptor_check("the TCP specs")
  setup(before)
  teardown(after)
end

local function misuse(pattern, fn, ...)
  local err = helper.error_of(fn, ...)
  assert.is_string(err)
  assert.matches(pattern, err)
end

-- An echo server on 127.0.0.1 under tg:start; returns its listener.
local function echo_server(tg, opts)
  opts = opts or {}
  opts.host = opts.host or "127.0.0.1"
  return tg:start(tether.serve_tcp, function(conn)
    for chunk in conn do conn:send(chunk) end
  end, 0, opts)
end

describe("connect_tcp and serve_tcp", function()
  it("echo lines through a server started with tg:start", function()
    helper.run(function()
      tether.task_group(function(tg)
        local listener = tg:start(tether.serve_tcp, function(conn)
          for line in conn:lines() do conn:send(line .. "\n") end
        end, 0, { host = "127.0.0.1" })
        assert.is_true(listener.port > 0)
        assert.same({ host = "127.0.0.1", port = listener.port, family = "inet" },
          listener.addresses[1])
        local c <close> = tether.connect_tcp("127.0.0.1", listener.port)
        c:send("hello\n")
        assert.equal("hello", c:read_line())
        c:send({ "two ", "pieces\n" })
        assert.equal("two pieces", c:read_line())
        assert.equal("127.0.0.1", c.remote_address.host)
        assert.equal(listener.port, c.remote_address.port)
        assert.equal("inet", c.local_address.family)
        tg.cancel_scope:cancel()
      end)
    end)
  end)

  it("resolve a name (localhost) and connect to one of its addresses", function()
    helper.run(function()
      tether.task_group(function(tg)
        local listener = echo_server(tg, { host = "localhost" })
        local c <close> = tether.connect_tcp("localhost", listener.port)
        c:send("via a name")
        assert.equal("via a name", c:read_exactly(10))
        tg.cancel_scope:cancel()
      end)
    end)
  end)

  it("raise OSError with the address tried when the connection is refused", function()
    helper.run(function()
      local port
      do -- a port nobody listens on: one we had, closed again
        local l <close> = tether.listen_tcp { host = "127.0.0.1" }
        port = l.port
      end
      local err = helper.error_of(tether.connect_tcp, "127.0.0.1", port)
      assert.is_true(tether.is(err, tether.OSError))
      assert.equal("ECONNREFUSED", err.code)
      assert.equal("connect", err.op)
      assert.equal("127.0.0.1:" .. port, err.target)
      assert.equal(1, #err.attempts)
      assert.matches("^tether.OSError: connect 127.0.0.1:%d+: ECONNREFUSED: ", tostring(err))
    end)
  end)

  it("streams are TCP streams: nodelay on by default, keepalive settable", function()
    helper.run(function()
      tether.task_group(function(tg)
        local listener = echo_server(tg)
        local c <close> = tether.connect_tcp("127.0.0.1", listener.port)
        assert.is_true(c.nodelay)
        c:set_option("nodelay", false)
        assert.is_false(c.nodelay)
        assert.is_false(c.keepalive)
        c:set_option("keepalive", 30)
        assert.equal(30, c.keepalive)
        misuse("^stream:set_option: keepalive must be", c.set_option, c, "keepalive", -1)
        tg.cancel_scope:cancel()
      end)
    end)
  end)

  it("a peer's close is the end of input; a reset is BrokenResourceError", function()
    helper.run(function()
      local l <close> = tether.listen_tcp { host = "127.0.0.1" }
      local c <close> = tether.connect_tcp("127.0.0.1", l.port)
      local s = l:accept()
      s:send("last words")
      s:close()
      assert.equal("last words", c:read_all())
      local c2 <close> = tether.connect_tcp("127.0.0.1", l.port)
      local s2 = l:accept()
      c2:abort() -- RST
      local err = helper.error_of(function()
        while true do s2:send(string.rep("x", 65536)) s2:flush() end
      end)
      assert.is_true(tether.is(err, tether.BrokenResourceError), tostring(err))
      assert.equal("ECONNRESET", err.code)
      s2:close()
    end)
  end)
end)

describe("half-close and reset", function()
  -- A connection over 127.0.0.1: our stream and the peer's, closed when body returns.
  local function connection(body)
    return function()
      local l <close> = tether.listen_tcp { host = "127.0.0.1" }
      local ours <close> = tether.connect_tcp("127.0.0.1", l.port)
      local peer <close> = l:accept()
      return body(ours, peer)
    end
  end

  -- Makes the peer close with bytes of ours unread in its kernel buffer, which resets
  -- the connection: the peer stops reading ahead, takes one byte, then closes.
  local function peer_resets(ours, peer)
    peer:set_option("read_ahead", 1)
    ours:send(string.rep("x", 1024 * 1024))
    assert.equal("x", peer:receive(1))
    peer:close()
  end

  local function broken_code(fn)
    local err = helper.error_of(fn)
    assert.is_true(tether.is(err, tether.BrokenResourceError), tostring(err))
    return err.code
  end

  it("after the peer's send_eof our input ends, and our replies still reach the peer",
    function()
      helper.run(connection(function(ours, peer)
        peer:send("request one\nrequest two\n")
        peer:send_eof()
        local requests = {}
        for line in ours:lines() do requests[#requests + 1] = line end
        assert.same({ "request one", "request two" }, requests)
        for _, line in ipairs(requests) do ours:send("reply to " .. line .. "\n") end
        ours:send_eof()
        assert.equal("reply to request one\nreply to request two\n", peer:read_all())
      end))
    end)

  it("a peer that closes with our data unread resets the connection: receive raises " ..
     "BrokenResourceError ECONNRESET, and so does a later send", function()
    helper.run(connection(function(ours, peer)
      peer_resets(ours, peer)
      assert.equal("ECONNRESET", broken_code(function()
        while true do ours:receive() end
      end))
      assert.equal("ECONNRESET", broken_code(function() ours:send("late") end))
    end))
  end)

  it("a send to a peer that reset the connection raises BrokenResourceError ECONNRESET",
    function()
      helper.run(connection(function(ours, peer)
        peer_resets(ours, peer)
        assert.equal("ECONNRESET", broken_code(function()
          while true do
            ours:send(string.rep("y", 65536))
            ours:flush()
          end
        end))
      end))
    end)

  it("closing a stream wakes its blocked reader and its blocked writer with " ..
     "ClosedResourceError", function()
    helper.run(connection(function(ours, peer)
      peer:set_option("read_ahead", 1)
      ours:set_option("high_water", 1024)
      -- fills the kernel's buffers (the peer reads no more) and then our queue
      local chunk, committed = string.rep("z", 65536), 0
      while true do
        local ok, err = pcall(ours.send_nowait, ours, chunk)
        if not ok then
          assert.is_true(tether.is(err, tether.WouldBlock), tostring(err))
          break
        end
        committed = committed + #chunk
        assert(committed < 256 * 1024 * 1024, "send_nowait never raised WouldBlock")
        tether.sleep(0)   -- lets the loop hand the queue to the kernel
      end
      local events, record = helper.recorder()
      tether.task_group(function(tg)
        tg:start_soon(function() record("reader: " .. helper.outcome(ours.receive, ours)) end)
        tg:start_soon(function() record("writer: " .. helper.outcome(ours.send, ours, "z")) end)
        tether.wait_all_tasks_blocked()
        ours:close()
      end)
      table.sort(events)
      assert.same({ "reader: ClosedResourceError", "writer: ClosedResourceError" }, events)
      peer:abort()
    end))
  end)
end)

describe("listeners", function()
  it("listen on every interface by default, and accept over IPv4", function()
    helper.run(function()
      local l <close> = tether.listen_tcp()
      assert.is_true(#l.addresses >= 1)
      local c <close> = tether.connect_tcp("127.0.0.1", l.port)
      local s <close> = l:accept()
      c:send("x")
      assert.equal("x", s:receive())
    end)
  end)

  it("for conn in listener accepts connection after connection", function()
    helper.run(function()
      local l <close> = tether.listen_tcp { host = "127.0.0.1" }
      local got = {}
      tether.task_group(function(tg)
        tg:start_soon(function()
          for conn in l do
            got[#got + 1] = conn:receive()
            conn:close()
            if #got == 3 then break end
          end
        end)
        for i = 1, 3 do
          local c <close> = tether.connect_tcp("127.0.0.1", l.port)
          c:send("client " .. i)
          c:flush()
          assert.is_nil(c:read_line()) -- the server closes after one receive
        end
      end)
      assert.same({ "client 1", "client 2", "client 3" }, got)
    end)
  end)

  it("a cancelled accept leaves the connection queued for the next one", function()
    helper.run(function()
      local l <close> = tether.listen_tcp { host = "127.0.0.1" }
      local c <close> = tether.connect_tcp("127.0.0.1", l.port)
      c:send("queued")
      local scope = tether.CancelScope()
      scope:cancel()
      scope:run(function() l:accept() end)
      assert.is_true(scope.cancelled_caught)
      local s <close> = l:accept()
      assert.equal("queued", s:receive())
    end)
  end)

  it("closing a listener wakes a blocked accept with ClosedResourceError", function()
    helper.run(function()
      local l = tether.listen_tcp { host = "127.0.0.1" }
      local outcome
      tether.task_group(function(tg)
        tg:start_soon(function() outcome = helper.kind(helper.error_of(l.accept, l)) end)
        tether.wait_all_tasks_blocked()
        l:close()
      end)
      assert.equal("ClosedResourceError", outcome)
      assert.equal("ClosedResourceError", helper.kind(helper.error_of(l.accept, l)))
      l:close() -- idempotent
    end)
  end)

  it("a listener and a connection still open when run returns are closed then",
    function()
      local kept
      helper.run(function()
        local l = tether.listen_tcp { host = "127.0.0.1" }
        kept = { l, tether.connect_tcp("127.0.0.1", l.port) }
      end)
      local l, c = kept[1], kept[2]
      assert.matches("closed", tostring(l))
      assert.matches("closed", tostring(c))
      assert.equal("ClosedResourceError", helper.kind(helper.error_of(l.accept, l)))
      assert.equal("ClosedResourceError", helper.kind(helper.error_of(c.receive, c)))
    end)

  it("binding a port in use raises OSError at once", function()
    helper.run(function()
      local l <close> = tether.listen_tcp { host = "127.0.0.1" }
      local err = helper.error_of(tether.listen_tcp, { host = "127.0.0.1", port = l.port })
      assert.is_true(tether.is(err, tether.OSError))
      assert.equal("EADDRINUSE", err.code)
    end)
  end)
end)

describe("serve", function()
  it("runs a task per connection and closes each connection when its handler ends",
    function()
      helper.run(function()
        tether.task_group(function(tg)
          local listener = tg:start(tether.serve_tcp, function(conn)
            conn:send("bye\n")
          end, 0, { host = "127.0.0.1" })
          for _ = 1, 5 do
            local c <close> = tether.connect_tcp("127.0.0.1", listener.port)
            assert.equal("bye\n", c:read_all())
          end
          tg.cancel_scope:cancel()
        end)
      end)
    end)

  it("a handler's error fails the group serving", function()
    helper.run(function()
      local err = helper.error_of(tether.task_group, function(tg)
        local listener = tg:start(tether.serve_tcp, function() error("handler failed") end,
          0, { host = "127.0.0.1" })
        local c <close> = tether.connect_tcp("127.0.0.1", listener.port)
        assert.equal("", c:read_all()) -- closed when its handler failed
        tether.sleep_forever() -- until the failure cancels the group
      end)
      assert.is_true(tether.is(err, tether.ErrorGroup), tostring(err))
      assert.matches("handler failed", tostring(err.errors[1]))
    end)
  end)

  it("with handler_errors = \"log\" it keeps serving after a handler fails", function()
    local out, status = helper.run_script([[
local tether = require "tether"
tether.run(function()
  tether.task_group(function(tg)
    local n = 0
    local listener = tg:start(tether.serve_tcp, function(conn)
      n = n + 1
      if n == 1 then error("first handler fails") end
      conn:send("served " .. n)
    end, 0, { host = "127.0.0.1", handler_errors = "log" })
    for _ = 1, 2 do
      local c <close> = tether.connect_tcp("127.0.0.1", listener.port)
      print(c:read_all())
    end
    tg.cancel_scope:cancel()
  end)
end)
]])
    assert.equal(0, status, out)
    assert.matches("a connection handler failed: .*first handler fails", out)
    assert.matches("stack traceback", out)
    assert.matches("\nserved 2\n", out)
  end)
end)

describe("getaddrinfo", function()
  it("returns addresses for a name and numeric addresses as they are", function()
    helper.run(function()
      local addrs = tether.getaddrinfo("localhost", 80)
      assert.is_true(#addrs >= 1)
      for _, a in ipairs(addrs) do
        assert.equal(80, a.port)
        assert.is_truthy(a.family == "inet" or a.family == "inet6")
      end
      assert.same({ { host = "127.0.0.1", port = 8080, family = "inet" } },
        tether.getaddrinfo("127.0.0.1", 8080))
    end)
  end)

  it("is a checkpoint that raises Cancelled in a cancelled scope", function()
    helper.run(function()
      local scope = tether.CancelScope()
      scope:cancel()
      scope:run(function() tether.getaddrinfo("localhost", 80) end)
      assert.is_true(scope.cancelled_caught)
    end)
  end)
end)

describe("bad input", function()
  it("raises errors naming the function", function()
    helper.run(function()
      misuse("^tether.connect_tcp: port must be", tether.connect_tcp, "127.0.0.1", 0)
      misuse("^tether.connect_tcp: port must be", tether.connect_tcp, "127.0.0.1", 70000)
      misuse("^tether.connect_tcp: host must be", tether.connect_tcp, 42, 80)
      misuse("^tether.connect_tcp: unknown option", tether.connect_tcp, "127.0.0.1", 80,
        { colour = "blue" })
      misuse("^tether.listen_tcp: port must be", tether.listen_tcp, { port = -1 })
      misuse("^tether.listen_tcp: unknown option", tether.listen_tcp, { prot = 80 })
      misuse("^tether.getaddrinfo: port must be", tether.getaddrinfo, "localhost", "x")
      local l <close> = tether.listen_tcp { host = "127.0.0.1" }
      misuse("^listener:serve: handler must be", l.serve, l, 42)
      misuse("^listener:accept: expected a tether.Listener", l.accept)
    end)
  end)
end)

describe("examples/echo_server.lua", function()
  it("echoes for a client from another process and stops on SIGTERM with status 0",
    function()
      local script = ([[
out=$(mktemp)
LUA_PATH_5_4='%s' LUA_CPATH_5_4='%s' '%s' examples/echo_server.lua 0 >"$out" 2>&1 &
pid=$!
i=0
until grep -q "echo server on" "$out"; do
  i=$((i + 1)); [ $i -gt 400 ] && { echo "no port"; kill -9 $pid; exit 1; }; sleep 0.05
done
port=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out" | head -n 1)
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'hello\nworld\n' >&3
read -r -t 10 one <&3; read -r -t 10 two <&3
echo "reply: $one $two"
exec 3>&-
kill -TERM $pid
wait $pid
echo "status: $?"
cat "$out"
rm -f "$out"
]]):format(package.path, package.cpath, helper.lua5_4)
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(script)
      f:close()
      local p = assert(io.popen("exec timeout 60 bash " .. path .. " 2>&1"))
      local out = p:read("a")
      p:close()
      os.remove(path)
      assert.matches("reply: hello world\n", out, 1, true)
      assert.matches("status: 0\n", out, 1, true)
      assert.matches("stopping", out, 1, true)
    end)
end)
