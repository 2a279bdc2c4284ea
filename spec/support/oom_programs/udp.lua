-- oom_host program: UDP: datagrams both ways with their sender, to a host name, over a
-- connected socket, a cancelled receive, a close that wakes a blocked receiver,
-- getnameinfo.
local tether = require "tether"

local got = tether.run(function()
  local out = {}
  local a <close> = tether.open_udp { host = "127.0.0.1" }
  local b <close> = tether.open_udp { host = "localhost" }
  local port_a, port_b = a.local_address.port, b.local_address.port
  b:send("ping", "127.0.0.1", port_a)
  local data, host, port = a:receive()
  out[#out + 1] = data
  a:send(data:upper(), host, port)
  out[#out + 1] = (b:receive())
  b:send("by name", "localhost", port_a)
  out[#out + 1] = (a:receive())
  tether.move_on_after(0):run(a.receive, a)
  b:connect("localhost", port_a)
  for i = 1, 2 do b:send("n" .. i) end
  out[#out + 1] = (a:receive())
  out[#out + 1] = (a:receive())
  tether.task_group(function(tg)
    tg:start_soon(function()
      local ok, err = pcall(a.receive, a)
      out[#out + 1] = ok and "data" or tether.is(err, tether.ClosedResourceError)
          and "closed" or error(err, 0)
    end)
    tether.wait_all_tasks_blocked()
    a:close()
  end)
  out[#out + 1] = type((tether.getnameinfo("127.0.0.1", port_b)))
  return table.concat(out, ",")
end)
assert(got == "ping,PING,by name,n1,n2,closed,string", got)
