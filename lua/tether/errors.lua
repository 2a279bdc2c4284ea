--- Error classes of tether.
-- Every error tether raises on purpose is a table whose metatable is one of
-- these classes; `tether.is(err, tether.Cancelled)` tests for one. Misuse
-- (a wrong argument, a closed object) raises a plain string instead, starting
-- with the name of the function that was misused.
-- @module tether.errors

local errors = {}

local function describe(class_name, err)
  return class_name .. ": " .. tostring(err.message)
end

--- Makes an error class: a metatable whose instances print as
-- "tether.Name: message".
local function class(name)
  local full = "tether." .. name
  local cls = { __name = full }
  cls.__index = cls
  cls.__tostring = function(err) return describe(full, err) end
  --- Creates an instance with the given message.
  cls.new = function(message)
    return setmetatable({ message = message }, cls)
  end
  errors[name] = cls
  return cls
end

--- The task's enclosing cancel scope was cancelled. Raised by checkpoints;
-- caught by the scope that was cancelled. Do not swallow it for long: it is
-- raised again at the next checkpoint.
class "Cancelled"
--- Ctrl+C (SIGINT) ended the run.
class "Interrupted"
--- A fail_after/fail_at deadline expired.
class "TimeoutError"
--- A non-blocking call could not proceed.
class "WouldBlock"
--- The other end of a stream was closed and everything was received.
class "EndOfStream"
--- The object was closed by this side.
class "ClosedResourceError"
--- The other side of the resource is gone.
class "BrokenResourceError"
--- Another task is already using the resource.
class "BusyResourceError"

local ErrorGroup = class "ErrorGroup"

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
ErrorGroup.__tostring = function(group)
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
