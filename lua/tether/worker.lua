--- Worker threads: `tether.to_thread` and `tether.worker`.
-- The core (csrc/to_thread.c) copies the values, runs the threads and wakes
-- the waiting task; this file takes the limiter's token, serves the worker's
-- `tether.worker.call`s, and decides what cancellation means in each mode.
-- @module tether.worker

local core = require "tether.core"
local errors = require "tether.errors"
local sync = require "tether.sync"

local new_job, start, wait = core.worker_job, core.worker_start, core.worker_wait
local finish, cancelled = core.worker_finish, core.worker_cancelled
local call_args, reply, reply_nomem = core.worker_call_args, core.worker_reply,
  core.worker_reply_nomem
local exposed, leave = core.worker_exposed, core.worker_leave
local checkpoint_if_cancelled = core.checkpoint_if_cancelled
local CapacityLimiter, Cancelled, WorkerError = sync.CapacityLimiter,
  errors.Cancelled, errors.WorkerError

local worker = {}

local default_limiter = CapacityLimiter(16)

--- The limiter that `to_thread` uses when none is given (16 tokens).
function worker.default_limiter()
  return default_limiter
end

local function misuse(fname, message, ...)
  error(fname .. ": " .. message:format(...), 0)
end

local modes = { interrupt = true, wait = true, abandon = true }

local function check_opts(opts)
  local limiter, mode = opts.limiter or default_limiter, opts.cancel or "interrupt"
  if getmetatable(limiter) ~= getmetatable(default_limiter) then
    misuse("tether.to_thread", "opts.limiter must be a tether.CapacityLimiter, got %s",
      type(limiter))
  end
  if not modes[mode] then
    misuse("tether.to_thread",
      'opts.cancel must be "interrupt", "wait" or "abandon", got %s', tostring(mode))
  end
  for key in pairs(opts) do
    if key ~= "limiter" and key ~= "cancel" then
      misuse("tether.to_thread", "unknown option %s (known: limiter, cancel)",
        tostring(key))
    end
  end
  return limiter, mode
end

--- Message handler of an exposed function: Cancelled passes as it is, any
-- other error becomes its message and the traceback of where it was raised.
local function capture(err)
  if getmetatable(err) == Cancelled then return err end
  local message = type(err) == "string" and err or tostring(err)
  return { message = message, traceback = debug.traceback(message, 2) }
end

--- Answers the worker; when even that fails (no memory), says so.
local function answer(job, ...)
  if not pcall(reply, job, ...) then reply_nomem(job) end
end

--- Sends the results of an exposed function to the worker (an error if
-- they cannot cross).
local function send_results(job, ok, ...)
  if ok then
    local sent, err = pcall(reply, job, "ok", ...)
    if not sent then answer(job, "error", tostring(err), "") end
    return
  end
  local err = ...
  if getmetatable(err) == Cancelled then
    answer(job, "cancelled")
  elseif type(err) == "table" and type(err.message) == "string" then
    answer(job, "error", err.message, err.traceback or "")
  else -- the message handler itself failed
    answer(job, "error", tostring(err), "")
  end
end

--- Serves one `tether.worker.call`: runs the exposed function in this task.
local function serve_call(job)
  local function serve(name, ...)
    local fn = exposed()[name]
    if fn == nil then
      answer(job, "misuse", ("tether.worker.call: no function is exposed as %q "
        .. "(expose it with tether.worker.expose in the main program)"):format(tostring(name)))
      return
    end
    send_results(job, xpcall(fn, capture, ...))
  end
  serve(call_args(job))
end

--- Waits for the job, serving its calls, until it ends.
local function wait_for(job)
  while wait(job) == "call" do serve_call(job) end
end

-- An abandoned job holds its caller's token until the worker ends; then the
-- core calls this.
core.worker_set_reaper(sync.release_token_of)

--- Takes a token: at once when one is free (the wait for the worker is the
-- call's schedule point), else waiting for it. Raises Cancelled first if the
-- caller is cancelled already.
local function take_token(limiter)
  checkpoint_if_cancelled()
  if not pcall(limiter.acquire_nowait, limiter) then limiter:acquire() end
end

local function run(limiter, mode, job)
  take_token(limiter)
  local ok, err = pcall(start, job)
  if not ok then
    limiter:release()
    error(err, 0)
  end
  -- Under "abandon", a cancelled wait raises; any mode may fail for want of
  -- memory. The job is then left running and holds the token until it ends.
  ok, err = pcall(wait_for, job)
  if not ok then
    leave(job)
    if not pcall(sync.pass_token, limiter, job) then limiter:release() end
    error(err, 0)
  end
  limiter:release()
  local caller_cancelled, stopped = cancelled(job)
  if stopped or (caller_cancelled and mode == "interrupt") then
    checkpoint_if_cancelled()
  end
  if stopped then
    error(WorkerError.new("the worker stopped for a cancellation that has since been shielded"), 0)
  end
  return finish(job)
end

--- Runs `fn(...)` in a worker thread and returns its results.
-- @param[opt] opts `limiter` (a CapacityLimiter), `cancel` ("interrupt", "wait", "abandon")
-- @param fn a function without upvalues (other than `_ENV`) or "module.function"
function worker.to_thread(...)
  local opts = ...
  if type(opts) == "table" then
    local limiter, mode = check_opts(opts)
    return run(limiter, mode, new_job(mode, 2, select(2, ...)))
  end
  return run(default_limiter, "interrupt", new_job("interrupt", 1, ...))
end

--- Makes `fn` callable from workers of this run as `tether.worker.call(name, ...)`.
function worker.expose(name, fn)
  if type(name) ~= "string" then
    misuse("tether.worker.expose", "expected a name (string) as argument 1, got %s", type(name))
  end
  if type(fn) ~= "function" then
    local mt = getmetatable(fn)
    if type(mt) ~= "table" or mt.__call == nil then
      misuse("tether.worker.expose", "expected a function as argument 2, got %s", type(fn))
    end
  end
  exposed()[name] = fn
end

--- Only inside a worker: see the worker's own `tether.worker.call`.
function worker.call()
  misuse("tether.worker.call", "call it inside a worker (a function run by tether.to_thread)")
end

--- Only inside a worker: see the worker's own `tether.worker.check_cancelled`.
function worker.check_cancelled()
  misuse("tether.worker.check_cancelled",
    "call it inside a worker (a function run by tether.to_thread)")
end

return worker
