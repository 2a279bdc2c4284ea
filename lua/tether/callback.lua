--- tether.wait_callback: a blocking, cancellable call made of any callback API.
local core = require "tether.core"

local ParkingLot = core.ParkingLot
local checkpoint_if_cancelled_as = core.checkpoint_if_cancelled_as
local shielded_checkpoint_as = core.cancel_shielded_checkpoint_as
local pack, unpack = table.pack, table.unpack

local FNAME = "tether.wait_callback"

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

local callback = {}

function callback.wait_callback(fn)
  if not callable(fn) then
    error(FNAME .. ": argument 1 must be a function (called with done), got "
      .. type(fn), 0)
  end
  -- raises Cancelled (and misuse outside a task) before fn runs
  checkpoint_if_cancelled_as(FNAME)
  local lot = ParkingLot()
  local called, parked, early = false, false, nil
  local function done(...)
    if called then return end
    called = true
    if parked then
      -- wakes the caller with the values; after a cancel nobody is parked
      -- any more and they are dropped
      lot:unpark(...)
    else
      early = pack(...)
    end
  end
  fn(done)
  if called then -- done ran inside fn
    shielded_checkpoint_as(FNAME)
    return unpack(early, 1, early.n)
  end
  parked = true
  return lot:park(FNAME)
end

return callback
