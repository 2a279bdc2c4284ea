--- W7's tether server: tether.serve_tcp, one task per connection echoing each
-- chunk it receives.
--
--   lua5.4 bench/echo/tether_server.lua [PORT]     (default 0: any free port)
--
-- Listens on 127.0.0.1, prints "PORT <n>" once it listens, serves until killed.
-- bench/w7_echo.lua skips it while tether has no serve_tcp.

local tether = require "tether"

tether.run(function()
  tether.task_group(function(tg)
    local listener = tg:start(tether.serve_tcp, function(conn)
      for chunk in conn do conn:send(chunk) end
    end, tonumber(arg[1]) or 0, {
      host = "127.0.0.1",
      -- the client resets the connections it leaves with a message in flight
      handler_errors = "log",
    })
    io.stdout:write("PORT ", listener.port, "\n")
    io.stdout:flush()
  end)
end)
