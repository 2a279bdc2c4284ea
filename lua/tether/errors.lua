--- Error classes of tether.
-- Every error tether raises on purpose is a table whose metatable is one of
-- these classes; `tether.is(err, tether.Cancelled)` tests for one. Misuse
-- (a wrong argument, a closed object) raises a plain string instead, starting
-- with the name of the function that was misused.
--
-- The classes are made by the core (`tether.core`), which raises them; this
-- module gives `ErrorGroup` its report and adds `is`. Each class has
-- `Class.new(message)`, and its instances print as "tether.Name: message".
-- @module tether.errors

local core = require "tether.core"

local errors = {}

--- The names of the classes (each is `errors.Name` and `tether.Name`):
-- `Cancelled` (the enclosing cancel scope was cancelled; caught by that
-- scope), `Interrupted` (Ctrl+C ended the run), `TimeoutError` (a
-- fail_after/fail_at deadline expired), `ErrorGroup` (errors of a task
-- group), `WouldBlock` (a non-blocking call could not proceed),
-- `EndOfStream` (the other end was closed and everything was received),
-- `ClosedResourceError` (the object was closed by this side),
-- `BrokenResourceError` (the other side is gone; `code` is "EPIPE" or
-- "ECONNRESET" when the peer reset or a pipe broke), `BusyResourceError`
-- (another task is already using the resource), `LimitExceeded` (a read's
-- `max` was exceeded; field `limit`), `IncompleteRead` (input ended first;
-- field `partial`), `OSError` (fields `code` such as "ECONNREFUSED",
-- `errno`, `op`, `target`, `message`), `ProcessError` (a checked child
-- process failed; fields `cmd`, `code`, `signal`, `stdout`, `stderr`),
-- `WorkerError` (a worker thread's function failed; fields `message`,
-- `traceback`).
errors.names = {
  "Cancelled", "Interrupted", "TimeoutError", "ErrorGroup", "WouldBlock",
  "EndOfStream", "ClosedResourceError", "BrokenResourceError",
  "BusyResourceError", "LimitExceeded", "IncompleteRead", "OSError",
  "ProcessError", "WorkerError",
}

for _, name in ipairs(errors.names) do
  errors[name] = core[name]
end

-- tostring that cannot fail: an error value's own __tostring may raise.
local function describe_value(value)
  local ok, text = pcall(tostring, value)
  return ok and text or ("<%s whose __tostring raised>"):format(type(value))
end

local function indent(text)
  return (describe_value(text):gsub("\n", "\n    "))
end

--- An ErrorGroup prints every error with the task that raised it and the
-- traceback captured where it was raised.
errors.ErrorGroup.__tostring = function(group)
  local lines = { "tether.ErrorGroup: " .. tostring(group.message) }
  for i = 1, #group.tasks do -- errors may hold nil: tasks has no holes
    lines[#lines + 1] = string.format("  [%d] in task %s: %s", i,
      tostring(group.tasks[i]), indent(group.errors[i]))
    if group.tracebacks[i] then
      lines[#lines + 1] = "    " .. indent(group.tracebacks[i])
    end
  end
  return table.concat(lines, "\n")
end

--- Whether `err` is an instance of the error class `class`.
-- @param err any error value
-- @param cls one of the classes above
-- @treturn boolean
function errors.is(err, cls)
  return type(err) == "table" and getmetatable(err) == cls
end

return errors
