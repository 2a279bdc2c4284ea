--- Helpers shared by the specs (the API is fixed by CONTRACT.md).
--
--   local helper = require "spec.helper"
--   helper.run(fn, ...)                 tether.run under a 10 s watchdog, then checks that
--                                       nothing is left (tasks, loop, running flag)
--   helper.run_within(seconds, fn, ...) the same with another watchdog
--   helper.run_with(opts, fn, ...)      helper.run with tether.run_with's options
--   helper.error_of(fn, ...)            the error fn(...) raises (fails if it returns)
--   helper.lua5_4                       path of the lua5.4 interpreter
--   helper.time_scale                   $TETHER_TEST_TIME_SCALE (>= 1): how much slower
--                                       than normal this run is (valgrind, ASan)
--   helper.run_script(code)             runs code in a child lua5.4; returns its
--                                       stdout and stderr (merged), exit status
--   helper.write_file(path, data)       writes a file with Lua's io; returns path
--   helper.read_file(path)              a file's content, read with Lua's io
local helper = {}

-- Slow runners (valgrind, ASan) set TETHER_TEST_TIME_SCALE (the Makefile does) to
-- stretch the two limits below and every run_within watchdog; 1 otherwise.
local TIME_SCALE = tonumber(os.getenv("TETHER_TEST_TIME_SCALE") or "") or 1
if TIME_SCALE < 1 then TIME_SCALE = 1 end
helper.time_scale = TIME_SCALE

local DEFAULT_WATCHDOG = 10   -- seconds, for helper.run
local SCRIPT_TIMEOUT = math.ceil(60 * TIME_SCALE)   -- seconds, then a run_script child dies

--- Fails the current test: a busted failure when busted runs us, else a plain error.
local function fail(msg, level)
  local ok, busted = pcall(require, "busted")
  if ok and type(busted) == "table" then
    local bfail = busted.fail
    if type(bfail) == "function" then bfail(msg, level + 1) end
  end
  error(msg, level + 1)
end

local function describe_error(err)
  local ok, s = pcall(tostring, err)
  return ok and s or ("<" .. type(err) .. ">")
end

local function describe_results(res)
  local parts = {}
  for i = 1, res.n do parts[i] = describe_error(res[i]) end
  return #parts == 0 and "nothing" or table.concat(parts, ", ")
end

--- What debug_stats() says is still alive after a run, or nil when all is clean.
local function leftovers(core)
  local ok, stats = pcall(core.debug_stats)
  if not ok then
    return "tether.core.debug_stats() raised: " .. describe_error(stats)
  end
  if type(stats) ~= "table" then
    return "tether.core.debug_stats() returned " .. type(stats)
  end
  local problems = {}
  if stats.tasks ~= 0 then
    problems[#problems + 1] = ("tasks = %s (want 0)"):format(describe_error(stats.tasks))
  end
  if stats.loop_open ~= false then
    problems[#problems + 1] =
        ("loop_open = %s (want false)"):format(describe_error(stats.loop_open))
  end
  if stats.running ~= false then
    problems[#problems + 1] = ("running = %s (want false)"):format(describe_error(stats.running))
  end
  if #problems > 0 then
    return "tether.core.debug_stats(): " .. table.concat(problems, ", ")
  end
  return nil
end

-- opts: nil for tether.run, else the options of tether.run_with.
local function run_checked(level, seconds, opts, fn, ...)
  local tether = require "tether"
  local core = require "tether.core"
  if type(seconds) == "number" then seconds = seconds * TIME_SCALE end
  core.set_watchdog(seconds)
  local res
  if opts then
    res = table.pack(pcall(tether.run_with, opts, fn, ...))
  else
    res = table.pack(pcall(tether.run, fn, ...))
  end
  local reset_ok, reset_err = pcall(core.set_watchdog, nil)
  local problem = leftovers(core)
  if not reset_ok then
    problem = (problem and problem .. "; " or "") ..
        "tether.core.set_watchdog(nil) raised: " .. describe_error(reset_err)
  end
  if problem then
    local outcome = res[1] and ("returned " .. describe_results(table.pack(
        table.unpack(res, 2, res.n))))
        or ("raised " .. describe_error(res[2]))
    fail(("after tether.run %s\n%s"):format(outcome, problem), level + 1)
  end
  if not res[1] then
    error(res[2], 0)   -- the original error value, unchanged
  end
  return table.unpack(res, 2, res.n)
end

--- tether.run(fn, ...) under a 10 s watchdog (times helper.time_scale); afterwards
--- debug_stats() must say tasks == 0, loop_open == false, running == false (checked
--- also when run raised).
--- Returns fn's results, or re-raises run's error unchanged.
function helper.run(fn, ...)
  return run_checked(2, DEFAULT_WATCHDOG, nil, fn, ...)
end

--- helper.run with a watchdog of `seconds`.
function helper.run_within(seconds, fn, ...)
  return run_checked(2, seconds, nil, fn, ...)
end

--- helper.run with tether.run_with(opts, ...) (the watchdog counts real time).
function helper.run_with(opts, fn, ...)
  return run_checked(2, DEFAULT_WATCHDOG, opts, fn, ...)
end

--- Calls fn(...) expecting it to raise; returns the error value.
function helper.error_of(fn, ...)
  local res = table.pack(pcall(fn, ...))
  if res[1] then
    fail(("expected an error, but the call returned %s"):format(
        describe_results(table.pack(table.unpack(res, 2, res.n)))), 2)
  end
  return res[2]
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local function command_path(name)
  if name:find("/", 1, true) then return name end
  local p = io.popen("command -v " .. shell_quote(name) .. " 2>/dev/null")
  if not p then return name end
  local found = p:read("l")
  p:close()
  return (found and found ~= "") and found or name
end

--- The interpreter running the specs: $TETHER_LUA (set by the Makefile), else the
--- interpreter in `arg` (lua5.4 for `lua5.4 /usr/bin/busted`), else lua5.4.
local function find_lua()
  local name = os.getenv("TETHER_LUA")
  if not name or name == "" then
    local i = -1
    while arg and arg[i - 1] do i = i - 1 end
    local a = arg and arg[i]
    name = (type(a) == "string" and a:match("lua[^/]*$")) and a or "lua5.4"
  end
  return command_path(name)
end

helper.lua5_4 = find_lua()

--- Writes `data` to the file at `path` (binary, replacing it) with Lua's io; returns
--- `path`.
function helper.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
  return path
end

--- The whole content of the file at `path`, read with Lua's io.
function helper.read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

--- The number of descriptors this process has open (after a full collection, so that
--- objects closed by __gc are counted closed).
function helper.open_descriptors()
  collectgarbage("collect")
  collectgarbage("collect")
  -- (ls without the sanitizer runtime the ASan run preloads: LeakSanitizer aborts it)
  local p = assert(io.popen("exec env -u LD_PRELOAD ls /proc/" .. require("tether").getpid()
    .. "/fd"))
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

--- A check that a spec file's tests leave no descriptor open: returns the functions
--- to give to busted's setup and teardown.  The first loop of the process opens
--- descriptors libuv keeps for the process's lifetime, so one empty run comes before
--- the count.
function helper.descriptor_check(what)
  local before
  return function()
    helper.run(function() end)
    before = helper.open_descriptors()
  end, function()
    -- (Fewer is no leak: what earlier spec files left to the collector may close
    -- meanwhile.)
    local after = helper.open_descriptors()
    if after > before then
      fail(("%d descriptor(s) left open by %s"):format(after - before, what), 1)
    end
  end
end

--- Writes `code` to a temporary file and runs it with helper.lua5_4, in the current
--- directory, with this process's package.path/package.cpath (so the child loads
--- the same tether build), stdin from /dev/null and stderr merged into stdout.
--- Returns output, status: status is the exit code, or 128 + N when signal N
--- killed the child (what a shell reports).  A child still running after 60 s
--- (times helper.time_scale) is killed: status 124, and the output says so.  A third
--- result says "exit" or "signal".
function helper.run_script(code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  assert(f:write(code))
  assert(f:close())
  local cmd = ("exec env LUA_PATH_5_4=%s LUA_CPATH_5_4=%s timeout -k 5 %d %s %s </dev/null 2>&1")
      :format(shell_quote(package.path), shell_quote(package.cpath), SCRIPT_TIMEOUT,
              shell_quote(helper.lua5_4), shell_quote(path))
  local p = assert(io.popen(cmd, "r"))
  local output = p:read("a")
  local _, how, code_or_sig = p:close()
  os.remove(path)
  local status = code_or_sig
  if how == "signal" then status = 128 + code_or_sig end
  if how == "exit" and status == 124 then
    output = output .. ("\n[helper.run_script: killed after %d s]\n"):format(SCRIPT_TIMEOUT)
  end
  return output, status, how
end

-- {======================================================================
-- Shared by the specs: event logs and outcomes of calls
-- =======================================================================

--- An event list and a function that appends to it.
function helper.recorder()
  local events = {}
  return events, function(event) events[#events + 1] = event end
end

local ERROR_CLASSES = {
  "Cancelled", "Interrupted", "TimeoutError", "ErrorGroup", "WouldBlock", "EndOfStream",
  "ClosedResourceError", "BrokenResourceError", "BusyResourceError",
}

--- A short name for an error value, for event logs: its tether class, or the text.
function helper.kind(err)
  local tether = require "tether"
  for _, name in ipairs(ERROR_CLASSES) do
    if tether.is(err, tether[name]) then return name end
  end
  return "other error: " .. tostring(err)
end

--- Calls fn(...) under pcall; returns "returned" or the kind of error it raised.
function helper.outcome(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return "returned" end
  return helper.kind(err)
end

--- Asserts that fn(...) raises a misuse error (a string) whose message matches pattern.
function helper.misuse(pattern, fn, ...)
  local luassert = require "luassert"
  local err = helper.error_of(fn, ...)
  luassert.is_string(err)
  luassert.matches(pattern, err)
end

--- Asserts that fn(...) raises an instance of tether[class_name].
function helper.raises(class_name, fn, ...)
  local err = helper.error_of(fn, ...)
  require("luassert").equal(class_name, helper.kind(err))
end

--- After a misuse the task must still work normally: checkpoint, sleep, scopes, groups.
function helper.assert_task_still_works()
  local tether = require "tether"
  local luassert = require "luassert"
  tether.checkpoint()
  tether.sleep(0)
  local scope = tether.move_on_after(0.001)
  scope:run(tether.sleep_forever)
  luassert.is_true(scope.cancelled_caught)
  luassert.same({ "ok" }, { tether.task_group(function(tg)
    tg:start_soon(function() tether.checkpoint() end)
    return "ok"
  end) })
end

--- Runs fn() in a cancel scope that is already cancelled; returns fn's outcome.
function helper.outcome_when_cancelled(fn)
  local tether = require "tether"
  local scope = tether.CancelScope{}
  local result
  scope:run(function()
    scope:cancel()
    result = helper.outcome(fn)
  end)
  return result
end

-- }======================================================================

return helper
