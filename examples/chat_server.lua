--- A line-based chat: every line a client sends goes to every other client.
-- Each client has an outbox, a bounded memory object stream that a writer
-- task empties into its connection; broadcasting never waits: a client whose
-- outbox is full (it does not read) is disconnected, so one slow client
-- cannot stall the others. SIGHUP reloads the banner (sent to each client
-- as it joins) from BANNER_FILE; SIGTERM tells every client "server shutting
-- down", lets the outboxes drain (for at most GRACE seconds), and exits.
--
--   lua5.4 examples/chat_server.lua [PORT [BANNER_FILE]]   (default 7000; 0: any free port)
--   socat - TCP:127.0.0.1:7000
local tether = require "tether"

local port = tonumber(arg[1] or "7000")
local banner_file = arg[2]
local OUTBOX_LINES = 64 -- lines queued for a client before it counts as too slow
local MAX_LINE = 4096
local GRACE = 5         -- seconds for the goodbyes to go out on SIGTERM

local banner = ""
local clients = {}      -- client -> true, for the clients that joined
local next_id = 0
local shutting_down = false

local function load_banner()
  if not banner_file then return end
  local f, err = io.open(banner_file, "rb")
  if not f then
    io.stderr:write("chat: keeping the old banner: ", err, "\n")
    return
  end
  banner = f:read("a")
  f:close()
  if banner ~= "" and banner:sub(-1) ~= "\n" then banner = banner .. "\n" end
end

-- Disconnects a client: its task stops at once, and its connection is aborted.
local function drop(client)
  clients[client] = nil
  client.dropped = true
  client.scope:cancel()
end

-- Queues `line` for every joined client but `from`, without waiting.
local function broadcast(from, line)
  local too_slow = {}
  for client in pairs(clients) do
    if client ~= from then
      local ok, err = pcall(client.outbox.send_nowait, client.outbox, line)
      if not ok then
        if not tether.is(err, tether.WouldBlock) then error(err, 0) end
        too_slow[#too_slow + 1] = client
      end
    end
  end
  for _, client in ipairs(too_slow) do
    drop(client)
    broadcast(nil, ("* %s was too slow and is disconnected\n"):format(client.name))
  end
end

-- A connection that breaks (the client reset it) ends the client's reading too.
local function write_outbox(conn, inbox, client)
  local ok, err = pcall(function()
    for line in inbox do conn:send(line) end
  end)
  if ok then return end
  if not (tether.is(err, tether.BrokenResourceError) or tether.is(err, tether.OSError)) then
    error(err, 0)
  end
  client.reading:cancel()
end

local function read_lines(conn, client)
  local ok, err = pcall(function()
    for line in conn:lines(MAX_LINE) do
      broadcast(client, ("%s: %s\n"):format(client.name, line))
    end
  end)
  if ok then return end
  if tether.is(err, tether.LimitExceeded) then
    client.outbox:send_nowait(("* lines are limited to %d bytes; goodbye\n"):format(MAX_LINE))
  elseif not (tether.is(err, tether.BrokenResourceError) or tether.is(err, tether.OSError)) then
    error(err, 0)
  end
end

local function handle(conn)
  if shutting_down then return end
  next_id = next_id + 1
  local outbox, inbox = tether.create_memory_object_stream(OUTBOX_LINES)
  local client = {
    name = "guest" .. next_id, outbox = outbox,
    scope = tether.CancelScope(), reading = tether.CancelScope(),
  }
  client.scope:run(function()
    tether.task_group(function(tg)
      tg:start_soon(write_outbox, conn, inbox, client)
      if banner ~= "" then outbox:send_nowait(banner) end
      outbox:send_nowait(("* you are %s\n"):format(client.name))
      broadcast(nil, ("* %s joined\n"):format(client.name))
      clients[client] = true
      client.reading:run(read_lines, conn, client)
      if clients[client] then
        clients[client] = nil
        broadcast(nil, ("* %s left\n"):format(client.name))
      end
      outbox:close() -- the writer sends what is queued, then ends
    end)
  end)
  if client.dropped then conn:abort() end
end

-- Stops every client's reading and queues the goodbye; the writers drain.
local function say_goodbye()
  shutting_down = true
  for client in pairs(clients) do
    clients[client] = nil
    client.reading:cancel()
    if pcall(client.outbox.send_nowait, client.outbox, "server shutting down\n") then
      client.outbox:close()
    else
      drop(client)
    end
  end
end

tether.run(function()
  load_banner()
  local signals <close> = tether.open_signal_receiver(tether.SIGTERM, tether.SIGHUP)
  local listener = tether.listen_tcp { host = "127.0.0.1", port = port }
  print(("listening on 127.0.0.1:%d"):format(listener.port))
  io.stdout:flush()
  tether.task_group(function(connections)
    local accepting = tether.CancelScope()
    connections:start_soon(function()
      accepting:run(function()
        listener:serve(handle, { group = connections, handler_errors = "log" })
      end)
    end)
    for signum in signals do
      if signum == tether.SIGHUP then
        load_banner()
        print("banner reloaded")
        io.stdout:flush()
      else
        break
      end
    end
    print("stopping")
    accepting:cancel()
    say_goodbye()
    connections.cancel_scope.deadline = tether.current_time() + GRACE
  end)
end)
