-- oom_host program: UNIX sockets: serve_unix with a task per connection, a client that
-- talks to it, a cancelled accept, a socketpair's stream closed while its reader waits,
-- and the socket file removed when the listener closes.
local tether = require "tether"

local path = ("/tmp/tether-oom-%d.sock"):format(tether.getpid())

local got = tether.run(function()
  local out = {}
  tether.task_group(function(tg)
    tg:start(tether.serve_unix, function(conn)
      for line in conn:lines() do conn:send(line:upper() .. "\n") end
    end, path)
    local c <close> = tether.connect_unix(path)
    c:send({ "one\n", "two\n" })
    out[#out + 1] = c:read_line()
    out[#out + 1] = c:read_line()
    c:send_eof()
    out[#out + 1] = tostring(c:read_line())
    tg.cancel_scope:cancel()
  end)
  do
    local listener <close> = tether.listen_unix(path)
    tether.move_on_after(0):run(listener.accept, listener)
    local c <close> = tether.connect_unix(path)
    local s <close> = listener:accept()
    c:send("queued")
    out[#out + 1] = s:read_exactly(6)
  end
  local a, b = tether.socketpair()
  tether.task_group(function(tg)
    tg:start_soon(function()
      local ok, err = pcall(a.receive, a)
      out[#out + 1] = ok and "data" or tether.is(err, tether.ClosedResourceError)
          and "closed" or error(err, 0)
    end)
    tether.wait_all_tasks_blocked()
    a:close()
  end)
  b:close()
  return table.concat(out, ",")
end)
assert(got == "ONE,TWO,nil,queued,closed", got)
assert(not io.open(path), "the socket file was left behind")
