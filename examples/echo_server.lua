--- An echo server: every connection is a task that sends back what it
-- receives, until the client closes. SIGTERM or Ctrl+C stops it: the
-- listener closes, the connections' tasks are cancelled, and run returns.
--
--   lua5.4 examples/echo_server.lua [PORT]        (default 7777; 0: any free port)
--   printf 'hello\n' | nc -q1 127.0.0.1 7777
local tether = require "tether"

local port = tonumber(arg[1] or "7777")

tether.run(function()
  tether.task_group(function(tg)
    local listener = tg:start(tether.serve_tcp, function(conn)
      for chunk in conn do conn:send(chunk) end
    end, port, { host = "127.0.0.1" })
    print(("echo server on 127.0.0.1:%d"):format(listener.port))
    io.stdout:flush()
    local signals <close> = tether.open_signal_receiver(tether.SIGTERM)
    signals:receive()
    print("stopping")
    tg.cancel_scope:cancel()
  end)
end)
