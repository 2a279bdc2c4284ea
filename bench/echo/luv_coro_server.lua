--- W7's luv coroutine server: one coroutine per connection on
-- bench/luv_sched.lua (the small scheduler of the other workloads' luv peer),
-- doing read → write in a loop, as a luv user who wants sequential code per
-- connection writes it.
--
-- - conn:receive() returns the next chunk: the read callback hands it to the
--   parked coroutine through the scheduler's run queue; a chunk that comes
--   while no one waits is kept and reading is paused until it is taken.
-- - conn:send(data) tries uv.try_write first and waits for a uv_write of the
--   rest only when the socket's buffer is full.
--
--   lua5.4 bench/echo/luv_coro_server.lua [PORT]     (default 0: any free port)
--
-- Listens on 127.0.0.1, prints "PORT <n>" once it listens, serves until killed.

package.path = ((arg[0]:match("^(.*)[/\\]echo[/\\]") or ".") .. "/?.lua;") .. package.path
local uv = require "luv"
local sched = require "luv_sched"

local yield, running = coroutine.yield, coroutine.running
local ready = sched.ready

local Conn = {}
Conn.__index = Conn

local function new_conn(tcp)
  local conn = setmetatable({ tcp = tcp, waiter = false, pending = false, eof = false }, Conn)
  conn.on_read = function(err, data)
    if err or not data then conn.eof = true end
    if conn.waiter then
      local co = conn.waiter
      conn.waiter = false
      ready(co, data)
    else
      conn.pending = data
      tcp:read_stop()
    end
  end
  tcp:read_start(conn.on_read)
  return conn
end

--- The next chunk, or nil at end of input.
function Conn:receive()
  local data = self.pending
  if data then
    self.pending = false
    self.tcp:read_start(self.on_read)
    return data
  end
  if self.eof then return nil end
  self.waiter = running()
  return yield()
end

--- Writes all of `data`.
function Conn:send(data)
  local n = self.tcp:try_write(data)
  if n == #data then return end
  local co = running()
  self.tcp:write(n and data:sub(n + 1) or data, function() ready(co) end)
  yield()
end

local function serve(tcp)
  local conn = new_conn(tcp)
  while true do
    local data = conn:receive()
    if not data then break end
    conn:send(data)
  end
  tcp:close()
end

sched.run(function()
  local server = uv.new_tcp()
  assert(server:bind("127.0.0.1", tonumber(arg[1]) or 0))
  assert(server:listen(128, function(err)
    assert(not err, err)
    local client = uv.new_tcp()
    server:accept(client)
    client:nodelay(true)
    sched.spawn(serve, client)
  end))
  io.stdout:write("PORT ", server:getsockname().port, "\n")
  io.stdout:flush()
end)
