--- Networking on top of the core's sockets: TCP connections with name
-- resolution and Happy Eyeballs, listeners on names, UNIX sockets, and
-- serving (a task per connection).
-- @module tether.net

local core = require "tether.core"
local errors = require "tether.errors"

local net = {}

local OSError, Cancelled = errors.OSError, errors.Cancelled
local is = errors.is

local function misuse(fname, fmt, ...)
  error(fname .. ": " .. fmt:format(...), 0)
end

local function check_opts(fname, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then misuse(fname, "opts must be a table, got %s", type(opts)) end
  for k in pairs(opts) do
    if not known[k] then misuse(fname, "unknown option %s", tostring(k)) end
  end
  return opts
end

local function check_host(fname, host, what)
  if type(host) ~= "string" or host == "" then
    misuse(fname, "%s must be a non-empty string, got %s", what, type(host))
  end
end

--- The addresses of `host`, IPv6 and IPv4 interleaved (RFC 8305's order:
-- the first family the resolver answered first).
local function interleave(addrs)
  local by = { {}, {} }
  local first = addrs[1] and addrs[1].family
  for _, a in ipairs(addrs) do
    local list = a.family == first and by[1] or by[2]
    list[#list + 1] = a
  end
  local out = {}
  for i = 1, math.max(#by[1], #by[2]) do
    out[#out + 1] = by[1][i]
    out[#out + 1] = by[2][i]
  end
  return out
end

local function connect_error(host, port, attempts)
  local last = attempts[#attempts] or {}
  return setmetatable({
    op = "connect", target = ("%s:%d"):format(host, port), code = last.code,
    errno = last.errno, message = last.message, attempts = attempts,
  }, OSError)
end

local CONNECT_OPTS = {
  local_host = true, local_port = true, family = true, happy_eyeballs_delay = true,
}

--- Connects to `host`:`port` (a name or an address), trying every address
-- with Happy Eyeballs: the next attempt starts after `happy_eyeballs_delay`
-- (default 0.25 s) or when the previous one failed; the first to connect
-- wins and the others are closed.
function net.connect_tcp(host, port, opts)
  local fname = "tether.connect_tcp"
  check_host(fname, host, "host")
  opts = check_opts(fname, opts, CONNECT_OPTS)
  if math.type(port) ~= "integer" or port < 1 or port > 65535 then
    misuse(fname, "port must be an integer in 1..65535, got %s", tostring(port))
  end
  local delay = opts.happy_eyeballs_delay or 0.25
  if type(delay) ~= "number" or delay < 0 then
    misuse(fname, "happy_eyeballs_delay must be a number >= 0")
  end
  local addrs = interleave(core.getaddrinfo(host, port, opts.family))
  local attempts, winner = {}, nil
  local function attempt(a, failed)
    local ok, conn = pcall(core.tcp_connect, a.host, port, opts.local_host, opts.local_port)
    if not ok then
      if not is(conn, OSError) then error(conn, 0) end
      conn.target = ("%s:%d"):format(a.host, port)
      attempts[#attempts + 1] = conn
      failed:set()
    elseif winner then
      conn:close()
    else
      winner = conn
    end
  end
  local ok, err = pcall(core.task_group, function(tg)
    for _, a in ipairs(addrs) do
      local failed = core.Event()
      tg:start_soon(function()
        attempt(a, failed)
        if winner then tg.cancel_scope:cancel() end
      end)
      core.move_on_after(delay):run(failed.wait, failed)
    end
  end)
  if not ok then
    if winner then winner:close() end
    error(err, 0)
  end
  if winner then return winner end
  error(connect_error(host, port, attempts), 2)
end

local LISTEN_OPTS = { host = true, port = true, backlog = true, reuse_port = true, family = true }

--- A Listener on `opts.host` (nil: every interface, IPv6 and IPv4) and
-- `opts.port` (default 0: a free port, the same on every address).
function net.listen_tcp(opts)
  local fname = "tether.listen_tcp"
  opts = check_opts(fname, opts, LISTEN_OPTS)
  local port = opts.port or 0
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    misuse(fname, "port must be an integer in 0..65535, got %s", tostring(port))
  end
  local backlog = opts.backlog or 511
  if math.type(backlog) ~= "integer" or backlog < 1 then
    misuse(fname, "backlog must be an integer > 0")
  end
  if opts.host == nil then
    -- One dual-stack socket takes IPv4 too; without IPv6, IPv4 alone.
    local ok, listener = pcall(core.tcp_listen, { "::" }, port, backlog, opts.reuse_port)
    if ok then return listener end
    if not (is(listener, OSError) and (listener.code == "EAFNOSUPPORT"
        or listener.code == "EADDRNOTAVAIL")) then
      error(listener, 2)
    end
    return core.tcp_listen({ "0.0.0.0" }, port, backlog, opts.reuse_port)
  end
  check_host(fname, opts.host, "opts.host")
  local hosts, seen = {}, {}
  for _, a in ipairs(core.getaddrinfo(opts.host, port == 0 and 1 or port, opts.family, true)) do
    if not seen[a.host] then
      seen[a.host] = true
      hosts[#hosts + 1] = a.host
    end
  end
  return core.tcp_listen(hosts, port, backlog, opts.reuse_port)
end

local SERVE_OPTS = { group = true, handler_errors = true }

local function is_cancellation(err)
  return is(err, Cancelled) or is(err, errors.Interrupted)
end

-- The message handler of a logged handler: a traceback, except for a
-- cancellation, which goes on unchanged.
local function traced(err)
  if is_cancellation(err) then return err end
  return debug.traceback(tostring(err), 2)
end

-- Out of descriptors or memory: accepting can succeed again later.
local RETRY = { EMFILE = true, ENFILE = true, ENOMEM = true, ENOBUFS = true }

--- Accepts forever, running `handler(conn)` as a task per connection (in
-- `opts.group`, else a group of its own); each `conn` is closed when its
-- handler ends. `opts.handler_errors = "log"` prints a handler's error with
-- its traceback and keeps serving; otherwise the error fails the group. The
-- listener is closed when serving ends.
function net.serve(listener, handler, opts)
  local fname = "listener:serve"
  opts = check_opts(fname, opts, SERVE_OPTS)
  if type(handler) ~= "function" and not (getmetatable(handler) or {}).__call then
    misuse(fname, "handler must be a function, got %s", type(handler))
  end
  local log = opts.handler_errors == "log"
  if opts.handler_errors ~= nil and not log then
    misuse(fname, "handler_errors must be \"log\" or nil")
  end
  local function run(conn)
    local _ <close> = conn
    if not log then return handler(conn) end
    local ok, err = xpcall(handler, traced, conn)
    if ok then return end
    if is_cancellation(err) then error(err, 0) end
    io.stderr:write("tether: a connection handler failed: ", err, "\n")
  end
  local function accept_loop(tg)
    local _ <close> = listener
    while true do
      local ok, conn = pcall(listener.accept, listener)
      if ok then
        tg:start_soon(run, conn)
      elseif is(conn, OSError) and RETRY[conn.code] then
        core.sleep(0.1)
      else
        error(conn, 0)
      end
    end
  end
  if opts.group then return accept_loop(opts.group) end
  return core.task_group(accept_loop)
end

--- `listen_tcp` and `serve`: `serve_tcp(handler, port[, opts])`. Under
-- `tg:start` (which passes a task status first) the listener is passed to
-- `task_status:started`, so `tg:start(tether.serve_tcp, handler, 0)`
-- returns it.
function net.serve_tcp(...)
  local status, handler, port, opts
  if type((...)) == "userdata" then
    status, handler, port, opts = ...
  else
    handler, port, opts = ...
  end
  local listen_opts, serve_opts = {}, {}
  for k, v in pairs(opts or {}) do
    if SERVE_OPTS[k] then serve_opts[k] = v else listen_opts[k] = v end
  end
  listen_opts.port = port
  local listener = net.listen_tcp(listen_opts)
  if status then status:started(listener) end
  return net.serve(listener, handler, serve_opts)
end

-- Raises OSError `err` again with the socket file's path as its target.
local function with_target(err, path)
  if is(err, OSError) then err.target = path end
  error(err, 0)
end

--- Connects to the UNIX socket at `path`; raises OSError (op "connect",
-- target `path`).
function net.connect_unix(path)
  local ok, conn = pcall(core.unix_connect, path)
  if ok then return conn end
  with_target(conn, path)
end

local UNIX_LISTEN_OPTS = { mode = true, backlog = true }

--- A Listener on the UNIX socket file `path`. `opts.mode` sets the file's
-- permissions, `opts.backlog` the queue of pending connections. A stale
-- socket file (nobody listens on it) is replaced; closing the listener
-- removes the file.
function net.listen_unix(path, opts)
  local fname = "tether.listen_unix"
  opts = check_opts(fname, opts, UNIX_LISTEN_OPTS)
  local mode, backlog = opts.mode, opts.backlog or 511
  if mode ~= nil and (math.type(mode) ~= "integer" or mode < 0 or mode > 4095) then
    misuse(fname, "mode must be an integer in 0..4095 (such as tonumber(\"600\", 8)), got %s",
      tostring(mode))
  end
  if math.type(backlog) ~= "integer" or backlog < 1 then
    misuse(fname, "backlog must be an integer > 0")
  end
  local ok, listener = pcall(core.unix_listen, path, backlog, mode)
  if ok then return listener end
  with_target(listener, path)
end

--- `listen_unix` and `serve`: `serve_unix(handler, path[, opts])`, passing
-- the listener to `task_status:started` under `tg:start` as `serve_tcp`
-- does.
function net.serve_unix(...)
  local status, handler, path, opts
  if type((...)) == "userdata" then
    status, handler, path, opts = ...
  else
    handler, path, opts = ...
  end
  local fname = "tether.serve_unix"
  if type(handler) ~= "function" and not (getmetatable(handler) or {}).__call then
    misuse(fname, "handler must be a function, got %s", type(handler))
  end
  if opts ~= nil and type(opts) ~= "table" then
    misuse(fname, "opts must be a table, got %s", type(opts))
  end
  local listen_opts, serve_opts = {}, {}
  for k, v in pairs(opts or {}) do
    if SERVE_OPTS[k] then serve_opts[k] = v else listen_opts[k] = v end
  end
  local listener = net.listen_unix(path, listen_opts)
  if status then status:started(listener) end
  return net.serve(listener, handler, serve_opts)
end

core.listener_methods.serve = net.serve

return net
