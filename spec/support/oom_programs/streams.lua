-- oom_host program: byte streams (a socket pair, a pipe) and TCP on loopback: reads
-- that wait, a send that waits for room, a close that wakes a blocked reader, an
-- echo server with a task per connection.
local tether = require "tether"

local got = tether.run(function()
  local out = {}
  local a, b = tether.socketpair()
  local r, w = tether.open_pipe()
  tether.task_group(function(tg)
    tg:start_soon(function()
      out[#out + 1] = b:read_line()
      out[#out + 1] = b:read_until("|", 10)
      out[#out + 1] = b:read_exactly(3)
      b:close()
    end)
    tg:start_soon(function()
      for chunk in r do out[#out + 1] = #chunk end
    end)
    a:send("line\n")
    a:send({ "until", "|", "xyz" })
    w:set_option("high_water", 10)
    w:send(string.rep("p", 40))
    w:send("q")
    w:send_eof()
  end)
  a:close()
  tether.task_group(function(tg)
    local listener = tg:start(tether.serve_tcp, function(conn)
      for line in conn:lines() do conn:send(line .. "\n") end
    end, 0, { host = "127.0.0.1" })
    local c <close> = tether.connect_tcp("127.0.0.1", listener.port)
    c:send("echo\n")
    out[#out + 1] = c:read_line()
    tg.cancel_scope:cancel()
  end)
  return table.concat(out, ",")
end)
assert(got:match("^line,until,xyz,") and got:match(",echo$"), got)
