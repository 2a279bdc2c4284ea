--- Synchronisation primitives: Lock, Semaphore, Condition and
-- CapacityLimiter, built on the core's parking lot (Event is in the core).
--
-- Every wait is FIFO with direct hand-off: a released resource goes to the
-- longest waiter at release time, so a `*_nowait` call in between cannot barge
-- in. Every blocking call is a checkpoint, and a call that raised `Cancelled`
-- had no effect. Objects may be created outside `tether.run` and used in it.
-- @module tether.sync

local core = require "tether.core"
local errors = require "tether.errors"

local ParkingLot = core.ParkingLot
local task_id = core.current_task_id
local checkpoint_if_cancelled_as = core.checkpoint_if_cancelled_as
local shielded_checkpoint_as = core.cancel_shielded_checkpoint_as
local task_running = core.task_running
local WouldBlock, BrokenResourceError = errors.WouldBlock, errors.BrokenResourceError

local sync = {}

--- Raises a misuse error "fname: message" (no position: the name says where).
local function misuse(fname, message, ...)
  error(fname .. ": " .. message:format(...), 0)
end

--- Checks that `self` is an instance of `class`, for method calls.
local function check_self(self, class, fname)
  if getmetatable(self) ~= class then
    misuse(fname, "expected a %s as self (use a colon), got %s",
      class.__name, type(self))
  end
end

--- The running task's id; misuse outside a task.
local function current_task(fname)
  local id = task_id()
  if id == nil then
    misuse(fname, "must be called from a tether task inside tether.run")
  end
  return id
end

local function would_block(fname, message)
  error(WouldBlock.new(fname .. ": " .. message), 0)
end

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

local function is_count(n)
  return math.type(n) == "integer" and n >= 0
end

--- Makes a class whose instances are also to-be-closed guards that call
-- `release` (so `local _ <close> = lock:acquire()` releases at block end).
local function class(name)
  local cls = { __name = "tether." .. name }
  cls.__index = cls
  cls.__close = function(self) return cls.release(self) end
  return cls
end

-- {======================================================================
-- Lock
-- =======================================================================

local Lock = class "Lock"

--- A non-reentrant lock owned by the task that acquired it.
-- @treturn Lock
function sync.Lock()
  return setmetatable({ _owner = nil, _lot = ParkingLot "Lock" }, Lock)
end

local function check_not_owner(self, me, fname)
  if self._owner == me then
    misuse(fname, "the lock is already held by this task (locks are not "
      .. "reentrant)")
  end
end

-- The lock operations take the public name of the caller, so that a
-- Condition's errors name the condition's method.

--- Makes the running task the lock's owner. Its slot is kept beside its id to
-- tell whether the owner finished (see task_running).
local function take(lock)
  lock._owner, lock._owner_slot = task_id()
end

--- Raises BrokenResourceError if the lock's owner finished without releasing
-- it: nobody could ever release it then.
local function check_owner_alive(lock, fname)
  if not task_running(lock._owner, lock._owner_slot) then
    error(BrokenResourceError.new(("%s: the lock is held by task %d, which "
      .. "finished without releasing it; release a lock in the task that "
      .. "acquired it, e.g. with `local guard <close> = lock:acquire()`")
      :format(fname, lock._owner)), 0)
  end
end

local function lock_acquire_nowait(lock, fname)
  local me = current_task(fname)
  check_not_owner(lock, me, fname)
  if lock._owner ~= nil then
    check_owner_alive(lock, fname)
    would_block(fname, "the lock is held by another task")
  end
  take(lock)
end

local function lock_acquire(lock, fname)
  local me = current_task(fname)
  check_not_owner(lock, me, fname)
  checkpoint_if_cancelled_as(fname)
  if lock._owner == nil then
    take(lock)
    shielded_checkpoint_as(fname)
  else
    check_owner_alive(lock, fname)
    lock._lot:park(fname) -- release() makes us the owner before waking us
  end
end

local function lock_release(lock, fname)
  local me = current_task(fname)
  if lock._owner ~= me then
    misuse(fname, lock._owner == nil and "the lock is not locked"
      or "the lock is held by another task; only its owner may release it")
  end
  -- The woken task becomes the owner (nil: none was waiting).
  lock._owner, lock._owner_slot = lock._lot:unpark()
end

--- Takes the lock if it is free; raises `WouldBlock` otherwise.
-- @return the lock, as a to-be-closed guard
function Lock:acquire_nowait()
  check_self(self, Lock, "lock:acquire_nowait")
  lock_acquire_nowait(self, "lock:acquire_nowait")
  return self
end

--- Waits for the lock (FIFO) and takes it.
-- @return the lock, as a to-be-closed guard that releases it
function Lock:acquire()
  check_self(self, Lock, "lock:acquire")
  lock_acquire(self, "lock:acquire")
  return self
end

--- Releases the lock, handing it to the longest waiter if any.
function Lock:release()
  check_self(self, Lock, "lock:release")
  lock_release(self, "lock:release")
end

--- Whether some task holds the lock.
function Lock:locked()
  check_self(self, Lock, "lock:locked")
  return self._owner ~= nil
end

-- }======================================================================

-- {======================================================================
-- Semaphore
-- =======================================================================

local Semaphore = { __name = "tether.Semaphore" }
local semaphore_methods = {}

--- `sem.value` (free slots) and `sem.max_value` are read-only.
Semaphore.__index = function(self, key)
  if key == "value" then return self._value
  elseif key == "max_value" then return self._max
  end
  return semaphore_methods[key]
end

Semaphore.__newindex = function(_, key)
  misuse("semaphore." .. tostring(key), "the fields of a Semaphore are read-only")
end

--- A counting semaphore; `value` is the number of free slots.
-- @int initial the starting value (>= 0)
-- @int[opt] max_value release() beyond this raises
-- @treturn Semaphore
function sync.Semaphore(initial, max_value)
  local fname = "tether.Semaphore"
  if not is_count(initial) then
    misuse(fname, "initial value must be an integer >= 0, got %s", tostring(initial))
  end
  if max_value ~= nil and not is_count(max_value) then
    misuse(fname, "max_value must be an integer or nil, got %s", tostring(max_value))
  end
  if max_value ~= nil and max_value < initial then
    misuse(fname, "max_value (%d) must be >= the initial value (%d)", max_value, initial)
  end
  return setmetatable({ _value = initial, _max = max_value, _lot = ParkingLot "Semaphore" },
    Semaphore)
end

--- Takes a slot if one is free; raises `WouldBlock` otherwise.
-- @return the semaphore, as a to-be-closed guard
function semaphore_methods:acquire_nowait()
  local fname = "semaphore:acquire_nowait"
  check_self(self, Semaphore, fname)
  if self._value == 0 then would_block(fname, "the semaphore's value is 0") end
  rawset(self, "_value", self._value - 1)
  return self
end

--- Waits for a slot (FIFO) and takes it.
-- @return the semaphore, as a to-be-closed guard that releases it
function semaphore_methods:acquire()
  local fname = "semaphore:acquire"
  check_self(self, Semaphore, fname)
  checkpoint_if_cancelled_as(fname)
  if self._value > 0 then
    rawset(self, "_value", self._value - 1)
    shielded_checkpoint_as(fname)
  else
    self._lot:park(fname) -- release() handed us its slot
  end
  return self
end

--- Frees a slot: hands it to the longest waiter, or increments `value`.
function semaphore_methods:release()
  local fname = "semaphore:release"
  check_self(self, Semaphore, fname)
  if self._lot:unpark() then return end
  if self._value >= (self._max or math.maxinteger) then
    misuse(fname, "released too many times (value would exceed max_value %d)",
      self._max or math.maxinteger)
  end
  rawset(self, "_value", self._value + 1)
end

Semaphore.__close = semaphore_methods.release

-- }======================================================================

-- {======================================================================
-- Condition
-- =======================================================================

local Condition = class "Condition"

--- A condition variable over a Lock (a new one when none is given).
-- @tparam[opt] Lock lock
-- @treturn Condition
function sync.Condition(lock)
  if lock == nil then
    lock = sync.Lock()
  elseif getmetatable(lock) ~= Lock then
    misuse("tether.Condition", "expected a tether.Lock or nothing, got %s", type(lock))
  end
  return setmetatable({ _lock = lock, _lot = ParkingLot "Condition" }, Condition)
end

--- Acquires the underlying lock.
-- @return the condition, as a to-be-closed guard that releases the lock
function Condition:acquire()
  check_self(self, Condition, "condition:acquire")
  lock_acquire(self._lock, "condition:acquire")
  return self
end

--- Acquires the underlying lock if free; raises `WouldBlock` otherwise.
function Condition:acquire_nowait()
  check_self(self, Condition, "condition:acquire_nowait")
  lock_acquire_nowait(self._lock, "condition:acquire_nowait")
  return self
end

--- Releases the underlying lock.
function Condition:release()
  check_self(self, Condition, "condition:release")
  lock_release(self._lock, "condition:release")
end

--- Whether the underlying lock is held.
function Condition:locked()
  check_self(self, Condition, "condition:locked")
  return self._lock._owner ~= nil
end

local function check_holder(self, fname)
  check_self(self, Condition, fname)
  if self._lock._owner == nil or self._lock._owner ~= task_id() then
    misuse(fname, "the current task must hold the condition's lock")
  end
end

local shield = { shield = true }

--- Takes the lock back for a condition waiter: at once if it is free, else
-- in FIFO order (the caller shields this from cancellation).
local function retake(lock, fname)
  if lock._owner ~= nil then
    lock._lot:park(fname) -- release() makes us the owner before waking us
  else
    take(lock)
  end
end

local function wait(self, fname)
  check_holder(self, fname)
  checkpoint_if_cancelled_as(fname)
  local lock = self._lock
  local me = lock._owner
  -- The scope is made while the lock is still held: an error here (out of
  -- memory) leaves the caller holding the lock, as it expects.
  local reacquire = core.CancelScope(shield)
  lock_release(lock, fname)
  local woken, wait_error = pcall(self._lot.park, self._lot, fname)
  -- Whatever ended the wait, take the lock back before raising, as Trio
  -- does: the caller's guard will release it, and releasing a lock it does
  -- not hold would raise "not locked" and hide the real error.
  local _, retake_error = pcall(reacquire.run, reacquire, retake, lock, fname)
  if lock._owner == nil then
    take(lock) -- the call failed before retake() ran
  end
  if not woken then error(wait_error, 0) end
  if lock._owner ~= me then error(retake_error, 0) end
end

--- Releases the lock, waits for a notification, and re-acquires the lock
-- before returning or raising (also when cancelled).
function Condition:wait()
  wait(self, "condition:wait")
end

--- Waits until `predicate()` returns a true value, and returns it.
function Condition:wait_for(predicate)
  local fname = "condition:wait_for"
  check_self(self, Condition, fname)
  if not callable(predicate) then
    misuse(fname, "predicate must be callable, got %s", type(predicate))
  end
  check_holder(self, fname)
  local value = predicate()
  while not value do
    wait(self, fname)
    value = predicate()
  end
  return value
end

--- Wakes up to `n` (default 1) of the longest waiters.
function Condition:notify(n)
  local fname = "condition:notify"
  check_holder(self, fname)
  n = n == nil and 1 or n
  if not is_count(n) then misuse(fname, "n must be an integer >= 0, got %s", tostring(n)) end
  for _ = 1, n do
    if not self._lot:unpark() then break end
  end
end

--- Wakes every waiter.
function Condition:notify_all()
  check_holder(self, "condition:notify_all")
  self._lot:unpark_all()
end

-- }======================================================================

-- {======================================================================
-- CapacityLimiter
-- =======================================================================

local CapacityLimiter = { __name = "tether.CapacityLimiter" }
local limiter_methods = {}

local function check_total(total, fname)
  if not (is_count(total) or total == math.huge) then
    misuse(fname, "total_tokens must be an integer >= 0 or math.huge, got %s",
      tostring(total))
  end
end

--- Limits how many tasks hold a token at once; each task holds at most one.
-- @tparam integer|number total total_tokens (math.huge for no limit)
-- @treturn CapacityLimiter
function sync.CapacityLimiter(total)
  check_total(total, "tether.CapacityLimiter")
  return setmetatable({ _total = total, _borrowed = 0, _borrowers = {},
    _lot = ParkingLot "CapacityLimiter" }, CapacityLimiter)
end

CapacityLimiter.__index = function(self, key)
  if key == "total_tokens" then return self._total
  elseif key == "borrowed_tokens" then return self._borrowed
  elseif key == "available_tokens" then return self._total - self._borrowed
  end
  return limiter_methods[key]
end

--- Grants tokens to waiters, FIFO, while there are tokens to grant.
local function grant(self)
  while self._borrowed < self._total do
    local id = self._lot:unpark()
    if id == nil then return end
    self._borrowers[id] = true
    self._borrowed = self._borrowed + 1
  end
end

CapacityLimiter.__newindex = function(self, key, value)
  check_self(self, CapacityLimiter, "limiter." .. tostring(key))
  if key ~= "total_tokens" then
    misuse("limiter." .. tostring(key), "only total_tokens can be set")
  end
  check_total(value, "limiter.total_tokens")
  rawset(self, "_total", value)
  grant(self)
end

CapacityLimiter.__close = function(self) return limiter_methods.release(self) end

--- The running task's id, which must not hold a token yet.
local function check_borrower(self, fname)
  check_self(self, CapacityLimiter, fname)
  local me = current_task(fname)
  if self._borrowers[me] then
    misuse(fname, "this task already holds one of this limiter's tokens")
  end
  return me
end

--- Whether a token can be taken now without passing a waiter.
local function token_free(self)
  return self._borrowed < self._total and #self._lot == 0
end

--- Takes a token if one is free; raises `WouldBlock` otherwise.
-- @return the limiter, as a to-be-closed guard
function limiter_methods:acquire_nowait()
  local fname = "limiter:acquire_nowait"
  local me = check_borrower(self, fname)
  if not token_free(self) then would_block(fname, "no token is available") end
  self._borrowers[me] = true
  self._borrowed = self._borrowed + 1
  return self
end

--- Waits for a token (FIFO) and takes it.
-- @return the limiter, as a to-be-closed guard that releases the token
function limiter_methods:acquire()
  local fname = "limiter:acquire"
  local me = check_borrower(self, fname)
  -- In a cancelled scope this yields; a shield set meanwhile lets it return,
  -- and tokens may have been released or taken: look at them only afterwards.
  checkpoint_if_cancelled_as(fname)
  if token_free(self) then
    self._borrowers[me] = true
    self._borrowed = self._borrowed + 1
    shielded_checkpoint_as(fname)
  else
    self._lot:park(fname) -- grant() gave us a token before waking us
  end
  return self
end

--- Returns this task's token, handing it to the longest waiter if any.
function limiter_methods:release()
  local fname = "limiter:release"
  check_self(self, CapacityLimiter, fname)
  local me = current_task(fname)
  if not self._borrowers[me] then
    misuse(fname, "this task does not hold any of this limiter's tokens")
  end
  self._borrowers[me] = nil
  self._borrowed = self._borrowed - 1
  grant(self)
end

-- Limiters whose token a worker job holds (see tether.to_thread's "abandon").
local token_of = setmetatable({}, { __mode = "k" })

--- Moves the running task's token of `limiter` to `holder` (a worker job
-- whose caller left); `release_token_of(holder)` gives it back.
function sync.pass_token(limiter, holder)
  -- What may fail for want of memory comes first: then nothing changed.
  token_of[holder] = limiter
  limiter._borrowers[holder] = true
  limiter._borrowers[task_id()] = nil
end

--- Releases the token `pass_token` gave to `holder`, if any.
function sync.release_token_of(holder)
  local limiter = token_of[holder]
  if limiter == nil then return end
  token_of[holder] = nil
  limiter._borrowers[holder] = nil
  limiter._borrowed = limiter._borrowed - 1
  grant(limiter)
end

-- }======================================================================

-- {======================================================================
-- pcall
-- =======================================================================

local Cancelled, Interrupted = errors.Cancelled, errors.Interrupted

local function let_cancellation_through(ok, ...)
  if not ok then
    local err = ...
    local mt = getmetatable(err)
    if mt == Cancelled or mt == Interrupted then error(err, 0) end
  end
  return ok, ...
end

--- Like `pcall`, but `Cancelled` and `Interrupted` propagate: code that
-- catches "every error" cannot swallow a cancellation by accident.
function sync.pcall(f, ...)
  return let_cancellation_through(pcall(f, ...))
end

-- }======================================================================

return sync
