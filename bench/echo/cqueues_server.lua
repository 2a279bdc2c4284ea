--- W7's cqueues server: cqueues.socket, one coroutine per connection (cq:wrap)
-- doing read → write, binary and unbuffered, as cqueues' documentation shows.
--
--   lua5.4 bench/echo/cqueues_server.lua [PORT]     (default 0: any free port)
--
-- Listens on 127.0.0.1, prints "PORT <n>" once it listens, serves until killed.

local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local cq = cqueues.new()
local server = socket.listen { host = "127.0.0.1", port = tonumber(arg[1]) or 0 }
assert(server:listen())
local _, _, port = server:localname()
io.stdout:write("PORT ", port, "\n")
io.stdout:flush()

local function serve(conn)
  conn:setmode("bn", "bn")
  -- errors (the client resets the connections it leaves with a message in
  -- flight) are returned instead of raised
  conn:onerror(function(_, _, why) return why end)
  while true do
    -- a negative count: whatever is there, up to 64 KiB
    local data = conn:read(-65536)
    if not data or not conn:write(data) then break end
  end
  conn:close()
end

cq:wrap(function()
  for conn in server:clients { sin_nodelay = true } do
    cq:wrap(serve, conn)
  end
end)
assert(cq:loop())
