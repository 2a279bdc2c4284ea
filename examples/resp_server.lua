--- A small Redis-protocol (RESP2) server: PING, ECHO, SET, GET, DEL, EXISTS,
-- INCR, RPUSH, LRANGE (and CONFIG GET of the two settings redis-benchmark
-- asks for), with Redis's own error replies. Requests come as RESP
-- arrays or as inline commands ("PING\r\n"). Pipelining: the replies to the
-- requests already buffered go out in one send (an array of strings, one
-- gather write). Every connection is a task; the data is one Lua table that
-- they share without locks, since tasks run one at a time and no command
-- waits in the middle. SIGTERM or Ctrl+C stops the server.
--
--   lua5.4 examples/resp_server.lua [PORT]       (default 6380; 0: any free port)
--   redis-cli -p 6380 set greeting hello
local tether = require "tether"

local port = tonumber(arg[1] or "6380")
local MAX_LINE = 64 * 1024         -- an inline command or a RESP header line
local MAX_ARGS = 1024 * 1024
local MAX_BULK = 512 * 1024 * 1024 -- Redis's proto-max-bulk-len default
local MAX_BATCH = 256              -- replies held back while more requests are buffered

local data = {} -- key -> string, or a Lua array for a list

-- ---- replies (RESP2) ----------------------------------------------------------------

local OK, PONG, NULL = "+OK\r\n", "+PONG\r\n", "$-1\r\n"
local WRONGTYPE = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
local NOT_INTEGER = "-ERR value is not an integer or out of range\r\n"

local function bulk(s) return ("$%d\r\n%s\r\n"):format(#s, s) end
local function integer(n) return (":%d\r\n"):format(n) end
local function err(message) return "-" .. message .. "\r\n" end

local function array(items)
  local parts = { ("*%d\r\n"):format(#items) }
  for i, item in ipairs(items) do parts[i + 1] = bulk(item) end
  return table.concat(parts)
end

-- What CONFIG GET answers: no persistence.
local CONFIG = { save = "", appendonly = "no" }

-- ---- commands: each takes the arguments after the name, returns the reply -----------

-- A list's index as Redis reads it: negative counts from the end.
local function list_index(s, length)
  local i = math.tointeger(tonumber(s))
  if not i then return nil end
  return i < 0 and length + i or i
end

-- name -> { arity, handler }; arity as Redis's: n exactly, -n at least n (with the name).
local COMMANDS = {
  ping = { -1, function(args)
    if #args > 1 then return err("ERR wrong number of arguments for 'ping' command") end
    return args[1] and bulk(args[1]) or PONG
  end },
  echo = { 2, function(args) return bulk(args[1]) end },
  set = { 3, function(args)
    data[args[1]] = args[2]
    return OK
  end },
  get = { 2, function(args)
    local value = data[args[1]]
    if value == nil then return NULL end
    if type(value) ~= "string" then return WRONGTYPE end
    return bulk(value)
  end },
  del = { -2, function(args)
    local n = 0
    for _, key in ipairs(args) do
      if data[key] ~= nil then
        data[key] = nil
        n = n + 1
      end
    end
    return integer(n)
  end },
  exists = { -2, function(args)
    local n = 0
    for _, key in ipairs(args) do
      if data[key] ~= nil then n = n + 1 end
    end
    return integer(n)
  end },
  incr = { 2, function(args)
    local value = data[args[1]] or "0"
    if type(value) ~= "string" then return WRONGTYPE end
    -- Redis accepts only the canonical decimal form of a 64-bit integer.
    local n = value:match("^-?%d+$") and math.tointeger(tonumber(value))
    if not n or tostring(n) ~= value then return NOT_INTEGER end
    if n == math.maxinteger then return err("ERR increment or decrement would overflow") end
    data[args[1]] = tostring(n + 1)
    return integer(n + 1)
  end },
  rpush = { -3, function(args)
    local list = data[args[1]]
    if list == nil then
      list = {}
      data[args[1]] = list
    elseif type(list) ~= "table" then
      return WRONGTYPE
    end
    for i = 2, #args do list[#list + 1] = args[i] end
    return integer(#list)
  end },
  lrange = { 4, function(args)
    local list = data[args[1]] or {}
    if type(list) ~= "table" then return WRONGTYPE end
    local first, last = list_index(args[2], #list), list_index(args[3], #list)
    if not first or not last then return NOT_INTEGER end
    local items = {}
    for i = math.max(first, 0) + 1, math.min(last, #list - 1) + 1 do items[#items + 1] = list[i] end
    return array(items)
  end },
  config = { -2, function(args)
    if args[1]:lower() ~= "get" then
      return err(("ERR unknown subcommand '%s'. Try CONFIG HELP."):format(args[1]))
    end
    if #args ~= 2 then return err("ERR wrong number of arguments for 'config|get' command") end
    local name = args[2]:lower()
    local value = CONFIG[name]
    return array(value and { name, value } or {})
  end },
}

local function execute(request)
  local name = request[1]:lower()
  local command = COMMANDS[name]
  local args = table.move(request, 2, #request, 1, {})
  if not command then
    local shown = {}
    for i = 1, math.min(#args, 20) do shown[i] = ("'%s' "):format(args[i]) end
    return err(("ERR unknown command '%s', with args beginning with: %s")
      :format(request[1], table.concat(shown)))
  end
  local arity, handler = command[1], command[2]
  if (arity > 0 and #request ~= arity) or (arity < 0 and #request < -arity) then
    return err(("ERR wrong number of arguments for '%s' command"):format(name))
  end
  return handler(args)
end

-- ---- requests -------------------------------------------------------------------------

local ProtocolError = {}

local function protocol_error(what)
  error(setmetatable({ message = "ERR Protocol error: " .. what }, ProtocolError), 0)
end

-- The next request as an array of strings (possibly empty: a blank inline line),
-- or nil at the end of input.
local function read_request(conn)
  local line = conn:read_line(MAX_LINE)
  if line == nil then return nil end
  if line:sub(1, 1) ~= "*" then -- an inline command
    local words = {}
    for word in line:gmatch("%S+") do words[#words + 1] = word end
    return words
  end
  local count = math.tointeger(tonumber(line:sub(2)))
  if not count or count > MAX_ARGS then protocol_error("invalid multibulk length") end
  local request = {}
  for i = 1, count do
    local header = conn:read_line(MAX_LINE)
    if header == nil then return nil end
    if header:sub(1, 1) ~= "$" then
      protocol_error(("expected '$', got '%s'"):format(header:sub(1, 1)))
    end
    local length = math.tointeger(tonumber(header:sub(2)))
    if not length or length < 0 or length > MAX_BULK then
      protocol_error("invalid bulk length")
    end
    request[i] = conn:read_exactly(length + 2):sub(1, length)
  end
  return request
end

local function serve_requests(conn)
  local replies = {}
  while true do
    local ok, request = pcall(read_request, conn)
    if not ok then
      if getmetatable(request) ~= ProtocolError then error(request, 0) end
      replies[#replies + 1] = err(request.message)
      conn:send(replies)
      return
    end
    if request == nil then break end
    if #request > 0 then replies[#replies + 1] = execute(request) end
    -- Reply now unless the next request is already here (pipelining).
    if conn:stats().read_buffer == 0 or #replies >= MAX_BATCH then
      if #replies > 0 then conn:send(replies) end
      replies = {}
    end
  end
  if #replies > 0 then conn:send(replies) end
end

-- A client's own trouble ends its connection, not the server.
local CLIENT_ERRORS = {
  tether.LimitExceeded, tether.IncompleteRead, tether.BrokenResourceError, tether.OSError,
}

local function handle(conn)
  local ok, e = pcall(serve_requests, conn)
  if ok then return end
  for _, class in ipairs(CLIENT_ERRORS) do
    if tether.is(e, class) then return end
  end
  error(e, 0)
end

tether.run(function()
  local signals <close> = tether.open_signal_receiver(tether.SIGTERM)
  tether.task_group(function(tg)
    local listener = tg:start(tether.serve_tcp, handle, port,
      { host = "127.0.0.1", handler_errors = "log" })
    print(("listening on 127.0.0.1:%d"):format(listener.port))
    io.stdout:flush()
    signals:receive()
    print("stopping")
    tg.cancel_scope:cancel()
  end)
end)
