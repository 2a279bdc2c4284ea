--- W10: child processes. Start /bin/true and wait for its exit, N times (default
-- 1000) one after the other ("seq") and N times with 50 running at a time ("50");
-- and capture a 100 MB output.
--
--   tether          tether.open_process({"/bin/true"}, {stdin/stdout/stderr = "null"})
--                   and p:wait() (tether_50: 50 tasks doing that, N in all)
--   tether_run      tether.run_process({"/bin/true"}): the defaults, stdout and stderr
--                   captured through pipes by two tasks
--   luv_spawn       raw luv: uv.spawn("/bin/true", {}) and its exit callback, which
--                   starts the next one (luv_spawn_50: 50 chains), the floor
--   asyncio         Python's asyncio.create_subprocess_exec + wait, for context
--                   (python3, if installed; asyncio_50: 50 tasks)
--   tether_drain    the 100 MB output read from p.stdout and dropped (for chunk in
--                   p.stdout do end): the pipe path itself
--   cat_pipe        the floor of that: sh -c 'head -c 100000000 /dev/zero | cat
--                   >/dev/null', timed from here
--   tether_capture  tether.run_process({"head", "-c", "100000000", "/dev/zero"}):
--                   seconds until the 100 MB string is there
--   lua_popen       plain Lua doing that: io.popen(...):read("a")

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w10"
local VARIANTS = { "tether", "tether_50", "tether_run", "luv_spawn", "luv_spawn_50", "asyncio",
  "asyncio_50", "tether_drain", "cat_pipe", "tether_capture", "lua_popen" }
local variant = common.variant("w10_spawn", VARIANTS)
local N = tonumber(os.getenv("BENCH_W10_N")) or 1000
local WIDTH = 50
local BYTES = 100000000
local TRUE = "/bin/true"

local run = {}

-- Runs `one()` N times, `width` at a time; microseconds per process.
local function tether_spawns(width, one)
  local tether = require "tether"
  local us
  tether.run(function()
    local t0 = tether.current_time()
    tether.task_group(function(tg)
      for w = 1, width do
        tg:start_soon(function()
          for _ = w, N, width do one(tether) end
        end)
      end
    end)
    us = (tether.current_time() - t0) / N * 1e6
  end)
  return { { "us_per_process", us } }
end

local NULL = { stdin = "null", stdout = "null", stderr = "null" }

local function open_and_wait(tether)
  local p <close> = tether.open_process({ TRUE }, NULL)
  p:wait()
end

function run.tether() return tether_spawns(1, open_and_wait) end

run.tether_50 = function() return tether_spawns(WIDTH, open_and_wait) end

function run.tether_run()
  return tether_spawns(1, function(tether) tether.run_process({ TRUE }) end)
end

local function luv_spawns(width)
  local uv = require "luv"
  local started, t0 = 0, uv.hrtime()
  local function next_one()
    if started >= N then return end
    started = started + 1
    local handle
    handle = uv.spawn(TRUE, {}, function()
      handle:close()
      next_one()
    end)
  end
  for _ = 1, width do next_one() end
  uv.run()
  return { { "us_per_process", (uv.hrtime() - t0) / N * 1e-3 } }
end

function run.luv_spawn() return luv_spawns(1) end

run.luv_spawn_50 = function() return luv_spawns(WIDTH) end

local PYTHON = [[
import asyncio, sys, time
N, WIDTH = int(sys.argv[1]), int(sys.argv[2])
async def chain(count):
    for _ in range(count):
        p = await asyncio.create_subprocess_exec("/bin/true")
        await p.wait()
async def main():
    t0 = time.monotonic()
    await asyncio.gather(*(chain(len(range(w, N, WIDTH))) for w in range(WIDTH)))
    print("us_per_process=%.3f" % ((time.monotonic() - t0) / N * 1e6))
asyncio.run(main())
]]

local function asyncio(width)
  if not common.sh("command -v python3"):match("%S") then
    return nil, "python3 is not installed"
  end
  local out = common.sh(("python3 -c %s %d %d 2>&1"):format(common.shell_quote(PYTHON), N,
    width))
  local us = tonumber(out:match("us_per_process=([%d.]+)"))
  if not us then return nil, "python3 failed: " .. out:gsub("%s+", " "):sub(1, 100) end
  return { { "us_per_process", us } }
end

function run.asyncio() return asyncio(1) end

run.asyncio_50 = function() return asyncio(WIDTH) end

local HEAD = ("head -c %d /dev/zero"):format(BYTES)

function run.tether_drain()
  local tether = require "tether"
  local seconds
  tether.run(function()
    local t0 = tether.current_time()
    local p <close> = tether.open_process({ "sh", "-c", HEAD }, { stdout = "pipe" })
    local n = 0
    for chunk in p.stdout do n = n + #chunk end
    seconds = tether.current_time() - t0
    assert(n == BYTES)
  end)
  return { { "seconds", seconds } }
end

function run.tether_capture()
  local tether = require "tether"
  local seconds
  tether.run(function()
    local t0 = tether.current_time()
    local r = tether.run_process({ "sh", "-c", HEAD }, { max_output = 2 * BYTES })
    seconds = tether.current_time() - t0
    assert(#r.stdout == BYTES)
  end)
  return { { "seconds", seconds } }
end

function run.cat_pipe()
  local uv = require "luv"
  local t0 = uv.hrtime()
  assert(os.execute(HEAD .. " | cat >/dev/null"))
  return { { "seconds", (uv.hrtime() - t0) * 1e-9 } }
end

function run.lua_popen()
  local uv = require "luv"
  local t0 = uv.hrtime()
  local p = assert(io.popen(HEAD))
  local data = p:read("a")
  p:close()
  assert(#data == BYTES)
  return { { "seconds", (uv.hrtime() - t0) * 1e-9 } }
end

local fields, why = run[variant]()
if fields then
  common.result(W, variant, fields)
else
  common.na(W, variant, why)
end
