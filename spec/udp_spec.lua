-- UDP: open_udp, send and receive, iteration, connect, the receive queue and
-- what it drops, cancellation and close, getnameinfo; loopback only.

local tether = require "tether"
local helper = require "spec.helper"

do
  local before, after = helper.descriptor_check("the UDP specs")
  setup(before)
  teardown(after)
end

-- Two sockets on 127.0.0.1.
local function pair(opts)
  local a = tether.open_udp(opts or { host = "127.0.0.1" })
  local b = tether.open_udp { host = "127.0.0.1" }
  return a, b
end

describe("UDP sockets", function()
  it("exchange datagrams with their sender's address", function()
    helper.run(function()
      local a <close>, b = pair()
      local _ <close> = b
      local pa, pb = a.local_address.port, b.local_address.port
      b:send("ping", "127.0.0.1", pa)
      assert.same({ "ping", "127.0.0.1", pb }, { a:receive() })
      a:send("pong", "127.0.0.1", pb)
      assert.same({ "pong", "127.0.0.1", pa }, { b:receive() })
      b:send("", "127.0.0.1", pa)
      assert.same({ "", "127.0.0.1", pb }, { a:receive() })
    end)
  end)

  it("tell their local address", function()
    helper.run(function()
      local a <close> = tether.open_udp { host = "127.0.0.1" }
      local addr = a.local_address
      assert.equal("127.0.0.1", addr.host)
      assert.equal("inet", addr.family)
      assert.is_true(addr.port > 0)
      assert.equal(0, a.dropped)
      a:close()
      assert.is_nil(a.local_address)
    end)
  end)

  it("work over IPv6 when ::1 is there", function()
    helper.run(function()
      local ok, a = pcall(tether.open_udp, { host = "::1" })
      if not ok then return end -- no IPv6 loopback on this machine
      local b <close> = tether.open_udp { host = "::1" }
      assert.equal("inet6", a.local_address.family)
      b:send("six", "::1", a.local_address.port)
      assert.same({ "six", "::1", b.local_address.port }, { a:receive() })
      a:close()
    end)
  end)

  it("are iterated with a for loop", function()
    helper.run(function()
      local a <close>, b = pair()
      local _ <close> = b
      for i = 1, 3 do b:send("n" .. i, "127.0.0.1", a.local_address.port) end
      local got = {}
      for data, host, port in a do
        assert.equal("127.0.0.1", host)
        assert.equal(b.local_address.port, port)
        got[#got + 1] = data
        if #got == 3 then break end
      end
      assert.same({ "n1", "n2", "n3" }, got)
    end)
  end)

  it("talk to one peer once connected", function()
    helper.run(function()
      local a <close>, b = pair()
      local _ <close> = b
      local other <close> = tether.open_udp { host = "127.0.0.1" }
      a:connect("127.0.0.1", b.local_address.port)
      a:send("to b")
      assert.same({ "to b", "127.0.0.1", a.local_address.port }, { b:receive() })
      other:send("ignored", "127.0.0.1", a.local_address.port)
      b:send("from b", "127.0.0.1", a.local_address.port)
      assert.same({ "from b", "127.0.0.1", b.local_address.port }, { a:receive() })
      helper.misuse("^udp:send: the socket is connected", a.send, a, "x", "127.0.0.1", 1)
      helper.misuse("^udp:connect: the socket is already connected",
        a.connect, a, "127.0.0.1", 1)
    end)
  end)

  it("drop and count the datagrams beyond their queue while nobody reads", function()
    helper.run(function()
      local a <close> = tether.open_udp { host = "127.0.0.1", queue = 2 }
      local b <close> = tether.open_udp { host = "127.0.0.1" }
      local sent = 50
      for i = 1, sent do b:send("d" .. i, "127.0.0.1", a.local_address.port) end
      local received = 0
      tether.fail_after(10 * helper.time_scale):run(function()
        while received + a.dropped < sent do
          a:receive()
          received = received + 1
        end
      end)
      assert.equal(sent, received + a.dropped)
      assert.is_true(a.dropped > 0)
    end)
  end)

  it("keep a datagram queued through a cancelled receive", function()
    helper.run(function()
      local a <close>, b = pair()
      local _ <close> = b
      b:send("one", "127.0.0.1", a.local_address.port)
      b:send("two", "127.0.0.1", a.local_address.port)
      assert.equal("one", (a:receive()))
      assert.equal("Cancelled", helper.outcome_when_cancelled(function() a:receive() end))
      assert.equal("two", (a:receive()))
    end)
  end)

  it("keep a datagram that arrives after its receiver was cancelled", function()
    helper.run(function()
      local a <close>, b = pair()
      local _ <close> = b
      local outcome
      tether.task_group(function(tg)
        local scope = tether.CancelScope {}
        tg:start_soon(function()
          scope:run(function() outcome = helper.outcome(a.receive, a) end)
        end)
        tether.wait_all_tasks_blocked()
        b:send("late", "127.0.0.1", a.local_address.port)
        scope:cancel()
      end)
      assert.equal("Cancelled", outcome)
      assert.equal("late", (a:receive()))
    end)
  end)

  it("wake a blocked receiver with ClosedResourceError when closed", function()
    helper.run(function()
      local a = tether.open_udp { host = "127.0.0.1" }
      local outcome
      tether.task_group(function(tg)
        tg:start_soon(function() outcome = helper.outcome(a.receive, a) end)
        tether.wait_all_tasks_blocked()
        a:close()
        a:close()
      end)
      assert.equal("ClosedResourceError", outcome)
      helper.raises("ClosedResourceError", a.receive, a)
      helper.raises("ClosedResourceError", a.send, a, "x", "127.0.0.1", 9)
      assert.matches("closed", tostring(a))
    end)
  end)

  it("take one receiver at a time", function()
    helper.run(function()
      local a <close> = tether.open_udp { host = "127.0.0.1" }
      tether.task_group(function(tg)
        tg:start_soon(function() helper.outcome(a.receive, a) end)
        tether.wait_all_tasks_blocked()
        helper.raises("BusyResourceError", a.receive, a)
        a:close()
      end)
    end)
  end)

  it("still open when run returns are closed then", function()
    local kept
    helper.run(function()
      kept = tether.open_udp { host = "127.0.0.1" }
    end)
    assert.matches("closed", tostring(kept))
    assert.equal("ClosedResourceError", helper.kind(helper.error_of(kept.receive, kept)))
  end)

  it("reject bad input with errors naming the function", function()
    helper.misuse("^tether.open_udp: called outside tether.run", tether.open_udp)
    helper.run(function()
      helper.misuse("^tether.open_udp: opts must be a table", tether.open_udp, "x")
      helper.misuse("^tether.open_udp: port must be", tether.open_udp, { port = -1 })
      helper.misuse("^tether.open_udp: opts.family must be", tether.open_udp,
        { family = "unix" })
      helper.misuse("^tether.open_udp: opts.queue must be", tether.open_udp, { queue = 0 })
      helper.misuse("^tether.open_udp: opts.reuse_addr must be a boolean", tether.open_udp,
        { reuse_addr = 1 })
      local a <close> = tether.open_udp { host = "127.0.0.1" }
      helper.misuse("^udp:send: data must be a string", a.send, a, 1, "127.0.0.1", 9)
      helper.misuse("^udp:send: host and port required", a.send, a, "x")
      helper.misuse("^udp:send: host must be a numeric IPv4 address", a.send, a, "x", "::1", 9)
      helper.misuse("^udp:send: a datagram holds at most", a.send, a,
        string.rep("x", 70000), "127.0.0.1", 9)
      helper.misuse("^udp:receive: expected a tether.UdpSocket", a.receive, {})
      helper.misuse("^tether.getnameinfo: host must be a string", tether.getnameinfo, 1, 80)
      helper.misuse("^tether.getnameinfo: not an IP address", tether.getnameinfo, "x", 80)
      helper.misuse("^tether.getnameinfo: port must be", tether.getnameinfo, "127.0.0.1", -1)
      helper.assert_task_still_works()
    end)
  end)

  it("raise OSError for a port in use", function()
    helper.run(function()
      local a <close> = tether.open_udp { host = "127.0.0.1" }
      local err = helper.error_of(tether.open_udp,
        { host = "127.0.0.1", port = a.local_address.port })
      assert.is_true(tether.is(err, tether.OSError))
      assert.equal("EADDRINUSE", err.code)
    end)
  end)
end)

describe("UDP sockets and host names", function()
  it("bind a name's first IPv4 address by default", function()
    helper.run(function()
      local a <close> = tether.open_udp { host = "localhost" }
      assert.same({ host = "127.0.0.1", port = a.local_address.port, family = "inet" },
        a.local_address)
    end)
  end)

  it("send to a name, and connect to one", function()
    helper.run(function()
      local a <close>, b = pair()
      local _ <close> = b
      b:send("by name", "localhost", a.local_address.port)
      assert.same({ "by name", "127.0.0.1", b.local_address.port }, { a:receive() })
      a:connect("localhost", b.local_address.port)
      a:send("connected by name")
      assert.same({ "connected by name", "127.0.0.1", a.local_address.port }, { b:receive() })
    end)
  end)

  it("bind, send to and connect to a name's IPv6 address when it has one", function()
    helper.run(function()
      local ok, found = pcall(tether.getaddrinfo, "localhost", 1, "inet6")
      if not ok or found[1].host ~= "::1" then return end -- no ::1 for localhost here
      local a <close> = tether.open_udp { host = "localhost", family = "inet6" }
      local b <close> = tether.open_udp { host = "::1" }
      assert.equal("::1", a.local_address.host)
      b:send("six", "localhost", a.local_address.port)
      assert.same({ "six", "::1", b.local_address.port }, { a:receive() })
      a:connect("localhost", b.local_address.port)
      a:send("six back")
      assert.same({ "six back", "::1", a.local_address.port }, { b:receive() })
    end)
  end)

  it("look a name up cancellably: a cancelled send sent nothing, a cancelled connect " ..
     "connected nothing", function()
    helper.run(function()
      local a <close>, b = pair()
      local _ <close> = b
      local port = a.local_address.port
      assert.equal("Cancelled",
        helper.outcome_when_cancelled(function() b:send("lost", "localhost", port) end))
      assert.equal("Cancelled",
        helper.outcome_when_cancelled(function() b:connect("localhost", port) end))
      b:send("kept", "127.0.0.1", port)   -- not connected: a host is still taken
      assert.same({ "kept", "127.0.0.1", b.local_address.port }, { a:receive() })
      assert.equal(0, a.dropped)
    end)
  end)

  it("reject bad input with errors naming the function, before any lookup", function()
    helper.run(function()
      local a <close> = tether.open_udp { host = "127.0.0.1" }
      helper.misuse("^udp:send: port must be", a.send, a, "x", "localhost", 70000)
      helper.misuse("^udp:send: data must be a string", a.send, a, {}, "localhost", 9)
      helper.misuse("^udp:connect: port must be", a.connect, a, "localhost", "x")
      helper.misuse("^udp:send: expected a tether.UdpSocket", a.send, {}, "x", "localhost", 9)
      a:close()
      helper.raises("ClosedResourceError", a.send, a, "x", "localhost", 9)
      helper.raises("ClosedResourceError", a.connect, a, "localhost", 9)
    end)
  end)
end)

describe("getnameinfo", function()
  it("names 127.0.0.1", function()
    helper.run(function()
      local name, service = tether.getnameinfo("127.0.0.1", 80)
      assert.is_string(name)
      assert.is_true(#name > 0)
      assert.is_string(service)
    end)
  end)

  it("returns at once when cancelled", function()
    helper.run(function()
      assert.equal("Cancelled",
        helper.outcome_when_cancelled(function() tether.getnameinfo("127.0.0.1", 80) end))
    end)
  end)
end)
