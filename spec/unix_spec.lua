-- UNIX sockets: connect_unix, listen_unix (mode, stale files, the socket file removed
-- on close), serve_unix; in a temporary directory, which every spec leaves empty.

local tether = require "tether"
local helper = require "spec.helper"
local chost = require "spec.support.chost"

local q, shell = chost.quote, chost.shell
local DIR

do
  local before, after = helper.descriptor_check("the UNIX socket specs")
  setup(function()
    before()
    DIR = (shell("mktemp -d"):gsub("\n$", ""))
  end)
  teardown(function()
    local _, status = shell("rmdir " .. q(DIR))
    assert.equal(0, status, "a file was left in " .. DIR)
    after()
  end)
end

local function exists(path)
  local _, status = shell("test -e " .. q(path))
  return status == 0
end

-- The files left in DIR, sorted, one per line.
local function files_left()
  return (shell("ls -A " .. q(DIR)))
end

local function path_of(name)
  return DIR .. "/" .. name
end

after_each(function()
  assert.equal("", files_left())
end)

describe("connect_unix and serve_unix", function()
  it("echo through a server started with tg:start", function()
    local path = path_of("echo.sock")
    helper.run(function()
      tether.task_group(function(tg)
        local listener = tg:start(tether.serve_unix, function(conn)
          for line in conn:lines() do conn:send(line .. "\n") end
        end, path)
        assert.is_nil(listener.port)
        assert.same({ { path = path } }, listener.addresses)
        assert.matches("^tether.Listener %(unix, open%)", tostring(listener))
        local c <close> = tether.connect_unix(path)
        assert.matches("^tether.Stream %(unix, open%)", tostring(c))
        c:send("hello\n")
        assert.equal("hello", c:read_line())
        c:send({ "two ", "pieces\n" })
        assert.equal("two pieces", c:read_line())
        tg.cancel_scope:cancel()
      end)
      assert.is_false(exists(path)) -- serving ended: the file is gone
    end)
  end)

  it("a stream's addresses are {path =} of the socket file, nil when unnamed", function()
    local path = path_of("addresses.sock")
    helper.run(function()
      local l <close> = tether.listen_unix(path)
      local c <close> = tether.connect_unix(path)
      local s <close> = l:accept()
      assert.same({ path = path }, c.remote_address)
      assert.is_nil(c.local_address)
      assert.same({ path = path }, s.local_address)
      assert.is_nil(s.remote_address)
      assert.is_nil(c.nodelay) -- a TCP option
      c:close()
      assert.is_nil(c.remote_address)
    end)
  end)

  it("connecting to a missing file raises OSError ENOENT with the path", function()
    local path = path_of("missing.sock")
    helper.run(function()
      local err = helper.error_of(tether.connect_unix, path)
      assert.is_true(tether.is(err, tether.OSError), tostring(err))
      assert.equal("ENOENT", err.code)
      assert.equal("connect", err.op)
      assert.equal(path, err.target)
      assert.matches("^tether.OSError: connect .*missing.sock: ENOENT", tostring(err))
    end)
  end)

  it("a cancelled connect is a checkpoint that leaves nothing open", function()
    local path = path_of("cancelled.sock")
    helper.run(function()
      local _ <close> = tether.listen_unix(path)
      local scope = tether.CancelScope()
      scope:cancel()
      scope:run(tether.connect_unix, path)
      assert.is_true(scope.cancelled_caught)
    end)
  end)

  it("a client in another process talks to serve_unix", function()
    local _, has_python = shell("command -v python3")
    if has_python ~= 0 then
      pending("python3 is not installed: no client process for a UNIX socket")
      return
    end
    local path = path_of("child.sock")
    local client = ([[
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(%q)
s.sendall(b"ping\n")
reply = b""
while not reply.endswith(b"\n"):
    chunk = s.recv(100)
    if not chunk:
        break
    reply += chunk
s.sendall(b"got " + reply)
s.close()
]]):format(path)
    helper.run(function()
      local heard = {}
      tether.task_group(function(tg)
        tg:start(tether.serve_unix, function(conn)
          local line = conn:read_line()
          heard[#heard + 1] = line
          conn:send(line .. "\n")
          heard[#heard + 1] = conn:read_line()
          tg.cancel_scope:cancel()
        end, path)
        shell(("timeout 30 python3 -c %s </dev/null >/dev/null 2>&1 &"):format(q(client)))
      end)
      assert.same({ "ping", "got ping" }, heard)
    end)
  end)
end)

describe("half-close and reset", function()
  -- A connection over a socket file: our stream and the peer's, closed when body returns.
  local function connection(body)
    return function()
      local path = path_of("pair.sock")
      local l <close> = tether.listen_unix(path)
      local ours <close> = tether.connect_unix(path)
      local peer <close> = l:accept()
      return body(ours, peer)
    end
  end

  it("after the peer's send_eof our input ends, and our replies still reach the peer",
    function()
      helper.run(connection(function(ours, peer)
        peer:send("one\ntwo\n")
        peer:send_eof()
        local requests = {}
        for line in ours:lines() do requests[#requests + 1] = line end
        assert.same({ "one", "two" }, requests)
        for _, line in ipairs(requests) do ours:send(line .. " done\n") end
        ours:send_eof()
        assert.equal("one done\ntwo done\n", peer:read_all())
      end))
    end)

  it("a peer that closes with our data unread breaks the stream: receive and send " ..
     "raise BrokenResourceError ECONNRESET", function()
    helper.run(connection(function(ours, peer)
      peer:set_option("read_ahead", 1)
      ours:send(string.rep("x", 1024 * 1024))
      assert.equal("x", peer:receive(1))
      peer:close()
      for _, call in ipairs {
        function() while true do ours:receive() end end,
        function() ours:send("late") end,
      } do
        local err = helper.error_of(call)
        assert.is_true(tether.is(err, tether.BrokenResourceError), tostring(err))
        assert.equal("ECONNRESET", err.code)
      end
    end))
  end)
end)

describe("listen_unix", function()
  it("sets the socket file's permissions from opts.mode", function()
    local path = path_of("mode.sock")
    helper.run(function()
      local _ <close> = tether.listen_unix(path, { mode = tonumber("600", 8) })
      assert.equal("600\n", (shell("stat -c %a " .. q(path))))
      local _ <close> = tether.listen_unix(path_of("mode2.sock"),
        { mode = tonumber("660", 8), backlog = 4 })
      assert.equal("660\n", (shell("stat -c %a " .. q(path_of("mode2.sock")))))
    end)
  end)

  it("removes its socket file when it closes", function()
    local path = path_of("close.sock")
    helper.run(function()
      local l = tether.listen_unix(path)
      assert.is_true(exists(path))
      l:close()
      assert.is_false(exists(path))
      assert.equal("ClosedResourceError", helper.kind(helper.error_of(l.accept, l)))
      assert.same({}, l.addresses)
    end)
  end)

  it("replaces a stale socket file (nobody listens on it)", function()
    local path = path_of("stale.sock")
    -- A process that listened and exited without closing: the file stays.
    helper.run_script(([[
local tether = require "tether"
tether.run(function()
  tether.listen_unix(%q)
  os.exit(0)
end)
]]):format(path))
    assert.is_true(exists(path))
    helper.run(function()
      local l <close> = tether.listen_unix(path)
      local c <close> = tether.connect_unix(path)
      local s <close> = l:accept()
      c:send("fresh")
      assert.equal("fresh", s:receive())
    end)
  end)

  it("raises OSError EADDRINUSE for a socket someone listens on, keeping it", function()
    local path = path_of("live.sock")
    helper.run(function()
      local l <close> = tether.listen_unix(path)
      local err = helper.error_of(tether.listen_unix, path)
      assert.is_true(tether.is(err, tether.OSError), tostring(err))
      assert.equal("EADDRINUSE", err.code)
      assert.equal("listen", err.op)
      assert.equal(path, err.target)
      -- Finding it live took a connection, which the listener sees closed at once.
      local probe <close> = l:accept()
      assert.equal("", probe:read_all())
      local c <close> = tether.connect_unix(path) -- the first one still listens
      local s <close> = l:accept()
      c:send("still")
      assert.equal("still", s:receive())
    end)
  end)

  it("does not replace a file that is not a socket", function()
    local path = path_of("plain")
    local f = assert(io.open(path, "w"))
    f:close()
    helper.run(function()
      local err = helper.error_of(tether.listen_unix, path)
      assert.equal("EADDRINUSE", err.code)
    end)
    assert.is_true(exists(path))
    os.remove(path)
  end)

  it("removes only the file it bound, not one that replaced it", function()
    local path, moved = path_of("first.sock"), path_of("moved.sock")
    helper.run(function()
      local first = tether.listen_unix(path)
      assert(os.rename(path, moved))
      local second <close> = tether.listen_unix(path)
      first:close() -- `path` is the second listener's file now
      assert.is_true(exists(path))
      local c <close> = tether.connect_unix(path)
      local s <close> = second:accept()
      c:send("second")
      assert.equal("second", s:receive())
    end)
    assert.is_false(exists(path))
    os.remove(moved)
  end)

  it("a cancelled accept leaves the connection queued for the next one", function()
    local path = path_of("queued.sock")
    helper.run(function()
      local l <close> = tether.listen_unix(path)
      local c <close> = tether.connect_unix(path)
      c:send("queued")
      local scope = tether.CancelScope()
      scope:cancel()
      scope:run(function() l:accept() end)
      assert.is_true(scope.cancelled_caught)
      local s <close> = l:accept()
      assert.equal("queued", s:receive())
    end)
  end)

  it("for conn in listener accepts connection after connection", function()
    local path = path_of("loop.sock")
    helper.run(function()
      local l <close> = tether.listen_unix(path)
      local got = {}
      tether.task_group(function(tg)
        tg:start_soon(function()
          for conn in l do
            got[#got + 1] = conn:receive()
            conn:close()
            if #got == 2 then break end
          end
        end)
        for i = 1, 2 do
          local c <close> = tether.connect_unix(path)
          c:send("client " .. i)
          assert.is_nil(c:read_line()) -- the server closes after one receive
        end
      end)
      assert.same({ "client 1", "client 2" }, got)
    end)
  end)

  it("a listener and a stream still open when run returns are closed then", function()
    local path = path_of("left.sock")
    local kept
    helper.run(function()
      local l = tether.listen_unix(path)
      kept = { l, tether.connect_unix(path) }
    end)
    local l, c = kept[1], kept[2]
    assert.matches("closed", tostring(l))
    assert.matches("closed", tostring(c))
    assert.is_false(exists(path))
    assert.equal("ClosedResourceError", helper.kind(helper.error_of(l.accept, l)))
  end)
end)

describe("bad input", function()
  it("raises errors naming the function", function()
    local misuse = helper.misuse
    helper.run(function()
      misuse("^tether.connect_unix: path must be a non%-empty string", tether.connect_unix, 42)
      misuse("^tether.connect_unix: path must be a non%-empty string", tether.connect_unix, "")
      misuse("^tether.connect_unix: path is 200 bytes long", tether.connect_unix,
        "/" .. string.rep("x", 199))
      misuse("^tether.connect_unix: path must not contain NUL", tether.connect_unix, "a\0b")
      misuse("^tether.listen_unix: path must be a non%-empty string", tether.listen_unix)
      misuse("^tether.listen_unix: path is 200 bytes long", tether.listen_unix,
        "/" .. string.rep("x", 199))
      misuse("^tether.listen_unix: unknown option", tether.listen_unix, path_of("x"),
        { colour = "blue" })
      misuse("^tether.listen_unix: mode must be", tether.listen_unix, path_of("x"),
        { mode = "600" })
      misuse("^tether.listen_unix: backlog must be", tether.listen_unix, path_of("x"),
        { backlog = 0 })
      misuse("^tether.serve_unix: handler must be", tether.serve_unix, 42, path_of("x"))
      misuse("^tether.listen_unix: unknown option", tether.serve_unix, function() end,
        path_of("x"), { colour = "blue" })
    end)
    assert.is_false(exists(path_of("x")))
  end)
end)
