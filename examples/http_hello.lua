--- HTTP/1.1 "Hello, world!" with keep-alive: every connection is a task that
-- answers request after request until the client sends `Connection: close`,
-- closes, or stays idle for IDLE_TIMEOUT seconds. A malformed request gets a
-- 400 and the connection is closed. SIGTERM or Ctrl+C stops the server.
--
--   lua5.4 examples/http_hello.lua [PORT]        (default 8080; 0: any free port)
--   curl -v http://127.0.0.1:8080/ http://127.0.0.1:8080/
local tether = require "tether"

local port = tonumber(arg[1] or "8080")
local BODY = "Hello, world!"
local MAX_LINE = 8192        -- the longest request line or header line
local MAX_HEADERS = 100
local MAX_BODY = 1024 * 1024 -- a request body is read and discarded
local IDLE_TIMEOUT = 30      -- seconds without a new request, then close

local REASONS = {
  [200] = "OK", [400] = "Bad Request", [413] = "Content Too Large",
  [431] = "Request Header Fields Too Large", [501] = "Not Implemented",
}

-- `connection`: the Connection header to send, if any ("close", "keep-alive").
local function respond(conn, status, body, connection)
  -- One gather write: status line, headers and body leave in one system call.
  conn:send({
    "HTTP/1.1 ", tostring(status), " ", REASONS[status], "\r\n",
    "Content-Type: text/plain\r\n",
    "Content-Length: ", tostring(#body), "\r\n",
    connection and "Connection: " .. connection .. "\r\n" or "",
    "\r\n", body,
  })
end

-- A request's head: { method =, target =, version =, headers = {lowercase name = value} };
-- nil when the client closed between requests; or false and the status to answer.
local function read_head(conn)
  local line = conn:read_line(MAX_LINE)
  if line == nil then return nil end
  local method, target, version = line:match("^(%u+) (%S+) HTTP/(1%.[01])$")
  if not method then return false, 400 end
  local headers = {}
  for _ = 1, MAX_HEADERS do
    local header = conn:read_line(MAX_LINE)
    if header == nil then return nil end
    if header == "" then
      return { method = method, target = target, version = version, headers = headers }
    end
    local name, value = header:match("^([!#$%%&'*+.^_`|~%w-]+):[ \t]*(.-)[ \t]*$")
    if not name then return false, 400 end
    name = name:lower()
    -- Repeated headers are joined with commas (RFC 9110, section 5.3).
    headers[name] = headers[name] and headers[name] .. ", " .. value or value
  end
  return false, 431
end

-- Whether the connection stays open after this request (RFC 9112, section 9.3).
local function keep_alive(request)
  local connection = (request.headers.connection or ""):lower()
  if connection:find("close", 1, true) then return false end
  return request.version == "1.1" or connection:find("keep-alive", 1, true) ~= nil
end

-- Reads and drops the request's body; false and a status if it cannot.
local function skip_body(conn, headers)
  if headers["transfer-encoding"] then return false, 501 end
  local length = headers["content-length"]
  if length == nil then return true end
  length = length:match("^%d+$") and tonumber(length)
  if not length then return false, 400 end
  if length > MAX_BODY then return false, 413 end
  if length > 0 then conn:read_exactly(length) end
  return true
end

local function serve_requests(conn)
  while true do
    -- A cancelled read consumed nothing, and the connection closes anyway.
    local request, status = tether.move_on_after(IDLE_TIMEOUT):run(read_head, conn)
    if request == nil then return end
    local ok = request ~= false
    if ok then ok, status = skip_body(conn, request.headers) end
    if not ok then
      respond(conn, status, REASONS[status] .. "\n", "close")
      return
    end
    if not keep_alive(request) then
      respond(conn, 200, BODY, "close")
      return
    end
    -- HTTP/1.0 closes by default: a 1.0 client that asked to keep the
    -- connection is told that it was kept.
    respond(conn, 200, BODY, request.version == "1.0" and "keep-alive" or nil)
  end
end

-- What a client can do to its own connection: send too long a line, end in
-- the middle of a request, reset. The connection ends; the server goes on.
local CLIENT_ERRORS = {
  tether.LimitExceeded, tether.IncompleteRead, tether.BrokenResourceError, tether.OSError,
}

local function handle(conn)
  local ok, err = pcall(serve_requests, conn)
  if ok then return end
  if tether.is(err, tether.LimitExceeded) then
    pcall(respond, conn, 431, REASONS[431] .. "\n", "close")
    return
  end
  for _, class in ipairs(CLIENT_ERRORS) do
    if tether.is(err, class) then return end
  end
  error(err, 0)
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
