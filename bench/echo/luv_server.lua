--- W7's luv callback server: a TCP echo server written the way luv's own
-- examples write one, with no coroutines: each read callback writes the chunk
-- it got (luv's write is uv_write, holding the string until it is written).
--
--   lua5.4 bench/echo/luv_server.lua [PORT]     (default 0: any free port)
--
-- Listens on 127.0.0.1, prints "PORT <n>" once it listens, serves until killed.

local uv = require "luv"

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", tonumber(arg[1]) or 0))
assert(server:listen(128, function(err)
  assert(not err, err)
  local client = uv.new_tcp()
  server:accept(client)
  client:nodelay(true)
  client:read_start(function(_, data)
    if data then
      client:write(data)
    elseif not client:is_closing() then
      -- end of input, or an error (the client resets the connections it
      -- leaves with a message in flight)
      client:close()
    end
  end)
end))
io.stdout:write("PORT ", server:getsockname().port, "\n")
io.stdout:flush()
uv.run()
