--- UDP sockets on host names: `open_udp`, `UdpSocket:send` and
-- `UdpSocket:connect` look a name up (with `getaddrinfo`: off the loop, and
-- cancellable) and use its first address of the socket's family. Numeric
-- addresses go to the core as they are, with no lookup.
-- @module tether.udp

local core = require "tether.core"
local errors = require "tether.errors"

local udp = {}

local methods = core.udp_methods
local core_send, core_connect = methods.send, methods.connect

-- Whether `host` is a name to look up: not a numeric IPv4 or IPv6 address, and not bad
-- input, which the core reports in its own words.
local function is_name(host)
  return type(host) == "string" and host ~= "" and not host:find(":", 1, true)
      and not host:match("^%d+%.%d+%.%d+%.%d+$")
end

local function is_port(port)
  return math.type(port) == "integer" and port >= 0 and port <= 65535
end

-- The first address of `host` in `family` ("inet" or "inet6"), to bind when `passive`;
-- a failed lookup raises OSError with `host` as its target.
local function lookup(host, family, passive)
  local ok, found = pcall(core.getaddrinfo, host, 1, family, passive)
  if ok then return found[1] end
  if errors.is(found, errors.OSError) then found.target = host end
  error(found, 0)
end

local function local_address(u)
  return u.local_address
end

-- The family of UdpSocket `u`, or nil when `u` is not an open UdpSocket (the core then
-- says what is wrong). Running out of memory is not that.
local function family_of(u)
  if type(u) ~= "userdata" then return nil end
  local ok, address = pcall(local_address, u)
  if not ok and address == "not enough memory" then error(address, 0) end
  return ok and type(address) == "table" and address.family or nil
end

--- A UDP socket (see the reference of `tether.open_udp`); `opts.host` may
-- be a name, bound at its first address of `opts.family` (default `"inet"`,
-- as for no host).
function udp.open_udp(opts)
  if type(opts) == "table" and is_name(opts.host) and is_port(opts.port or 0) then
    local address = lookup(opts.host, opts.family or "inet", true)
    local resolved = {}
    for k, v in pairs(opts) do resolved[k] = v end
    resolved.host, resolved.family = address.host, address.family
    opts = resolved
  end
  return core.open_udp(opts)
end

--- `u:send(data, host, port)`: `host` may be a name.
function methods.send(u, data, host, port)
  if is_name(host) and is_port(port) and type(data) == "string" then
    local family = family_of(u)
    if family then host = lookup(host, family).host end
  end
  return core_send(u, data, host, port)
end

--- `u:connect(host, port)`: `host` may be a name.
function methods.connect(u, host, port)
  if is_name(host) and is_port(port) then
    local family = family_of(u)
    if family then host = lookup(host, family).host end
  end
  return core_connect(u, host, port)
end

return udp
