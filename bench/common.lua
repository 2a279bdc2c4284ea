--- Shared helpers of the benchmark scripts (bench/w*.lua): finding the modules,
-- clocks, memory readings from /proc/self/status, and the RESULT line that
-- bench/run.lua parses.
--
-- Every workload script runs one variant per process:
--   lua5.4 bench/w1_spawn.lua tether|floor|cqueues|luv
-- and prints one line
--   RESULT <workload> <variant> key=value key=value ...
-- or, when the variant cannot be measured,
--   RESULT <workload> <variant> na="<one-line reason>"

local common = {}

-- The directory of this file (bench/), and the repository above it.
local here = (debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$")) or "."
local root = here .. "/.."

-- bench/ first (luv_sched); the repository's lua/ and build/ last, so that the
-- LUA_PATH_5_4/LUA_CPATH_5_4 given by `make bench` (which may name another
-- BUILDDIR) win, and a bare `lua5.4 bench/w1_spawn.lua tether` from anywhere
-- still finds tether.
package.path = here .. "/?.lua;" .. package.path .. ";" .. root .. "/lua/?.lua;"
  .. root .. "/lua/?/init.lua"
package.cpath = package.cpath .. ";" .. root .. "/build/?.so"

common.VARIANTS = { "tether", "floor", "cqueues", "luv" }

--- Returns the variant named on the command line, checked against `allowed`
-- (a list of names), or exits with a usage message.
function common.variant(workload, allowed)
  local v = arg and arg[1]
  for _, name in ipairs(allowed) do
    if v == name then return v end
  end
  io.stderr:write(("usage: lua5.4 bench/%s.lua %s\n"):format(workload,
    table.concat(allowed, "|")))
  os.exit(2)
end

--- A monotonic wall clock in seconds, from the library under test (so a
-- process loads nothing it does not measure): tether's, cqueues', or luv's
-- (for the raw floor and the luv scheduler).
function common.clock(variant)
  if variant:match("^tether") then
    return require("tether").current_time
  elseif variant == "cqueues" then
    return require("cqueues").monotime
  else
    local hrtime = require("luv").hrtime
    return function() return hrtime() * 1e-9 end
  end
end

--- Reads the fields of /proc/self/status we use, in kB.
local function status()
  local f = assert(io.open("/proc/self/status", "r"))
  local s = f:read("a")
  f:close()
  return {
    rss = tonumber(s:match("VmRSS:%s*(%d+)")),
    hwm = tonumber(s:match("VmHWM:%s*(%d+)")),
  }
end

--- Resident set size now, kB.
function common.rss_kb() return status().rss end

--- Peak resident set size of the process so far (VmHWM), kB.
function common.peak_rss_kb() return status().hwm end

--- A full collection (two passes, so objects with finalizers go too).
function common.full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

local function fmt(v)
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then return ("%.6g"):format(v) end
  return ("%q"):format(tostring(v))
end

--- Prints the RESULT line. `fields` is a list of {key, value} pairs (kept in
-- order); peak_rss_kb is appended.
function common.result(workload, variant, fields)
  local parts = { "RESULT", workload, variant }
  for _, kv in ipairs(fields) do
    parts[#parts + 1] = kv[1] .. "=" .. fmt(kv[2])
  end
  parts[#parts + 1] = "peak_rss_kb=" .. common.peak_rss_kb()
  io.stdout:write(table.concat(parts, " "), "\n")
  io.stdout:flush()
end

--- Prints a RESULT line saying the variant cannot be measured, and why.
function common.na(workload, variant, reason)
  io.stdout:write(("RESULT %s %s na=%q\n"):format(workload, variant, reason))
  io.stdout:flush()
end

--- Times `fn(n)` and returns nanoseconds per operation.
function common.ns_per_op(clock, n, fn)
  local t0 = clock()
  fn(n)
  return (clock() - t0) / n * 1e9
end

--- Runs `fn(warm)` (caches, pools and the heap reach their steady state), a
-- full collection, then times `fn(n)`: nanoseconds per operation.
function common.warm_ns_per_op(clock, warm, n, fn)
  fn(warm)
  common.full_gc()
  return common.ns_per_op(clock, n, fn)
end

--- The interpreter running this script (arg[-1], or further left when it was
-- given options), for starting more processes.
function common.interpreter()
  local interp, i = "lua5.4", -1
  while arg and arg[i] do
    interp = arg[i]
    i = i - 1
  end
  return interp
end

--- `s` quoted for sh.
function common.shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- Runs a shell command and returns its output.
function common.sh(cmd)
  local p = io.popen(cmd, "r")
  local out = p:read("a")
  p:close()
  return out
end

--- A Markdown table: returns `add(cols)`, which appends a row, and the list
-- of lines, which starts with `header` and its separator row.
function common.markdown_table(header)
  local lines = {}
  local function add(cols) lines[#lines + 1] = "| " .. table.concat(cols, " | ") .. " |" end
  add(header)
  local seps = {}
  for i = 1, #header do seps[i] = "---" end
  add(seps)
  return add, lines
end

return common
