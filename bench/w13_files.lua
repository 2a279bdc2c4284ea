--- W13: files. Reading a 100 MB file in 64 KiB chunks, and reading 1000 small
-- files (1 KiB each), with the page cache warm (each is read once before it is
-- timed).
--
--   tether_big    file:read(65536) until the end, from tether.open_file
--   io_big        the same with Lua's io.open (the floor)
--   tether_small  tether.fs.read_file of the 1000 files, one task each, all at once
--   io_small      a sequential loop of io.open, read("a"), close (the floor)
--
-- Each variant reports the median of BENCH_W13_REPS (9) timed runs.
-- The files are made once in $TMPDIR/tether-w13 (or /tmp) and kept for the next runs.

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w13"
local variant = common.variant("w13_files", { "tether_big", "io_big", "tether_small", "io_small" })
local CHUNK = 64 * 1024
local BIG = tonumber(os.getenv("BENCH_W13_MB") or "") or 100
local SMALL = 1000

local dir = (os.getenv("TMPDIR") or "/tmp") .. "/tether-w13"
local big_path = ("%s/big-%d"):format(dir, BIG)

local function size_of(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  f:close()
  return size
end

-- Makes the files when they are missing (another variant's process may have).
local function prepare()
  os.execute("mkdir -p " .. common.shell_quote(dir))
  if size_of(big_path) ~= BIG * 1024 * 1024 then
    local tmp = big_path .. ".part"
    local f = assert(io.open(tmp, "wb"))
    local block = {}
    for i = 1, CHUNK // 64 do block[i] = ("%063d\n"):format(i) end
    block = table.concat(block)
    for _ = 1, BIG * 1024 * 1024 // CHUNK do f:write(block) end
    f:close()
    os.rename(tmp, big_path)
  end
  for i = 1, SMALL do
    local path = ("%s/small-%04d"):format(dir, i)
    if size_of(path) ~= 1024 then
      local f = assert(io.open(path, "wb"))
      f:write(("%d"):format(i):rep(1023):sub(1, 1023), "\n")
      f:close()
    end
  end
end

local function io_big()
  local f = assert(io.open(big_path, "rb"))
  local n = 0
  while true do
    local s = f:read(CHUNK)
    if not s then break end
    n = n + #s
  end
  f:close()
  return n
end

local function io_small()
  local n = 0
  for i = 1, SMALL do
    local f = assert(io.open(("%s/small-%04d"):format(dir, i), "rb"))
    n = n + #f:read("a")
    f:close()
  end
  return n
end

local function tether_big(tether)
  local f <close> = tether.open_file(big_path, "rb")
  local n = 0
  while true do
    local s = f:read(CHUNK)
    if not s then break end
    n = n + #s
  end
  return n
end

local function tether_small(tether)
  local n = 0
  tether.task_group(function(tg)
    for i = 1, SMALL do
      tg:start_soon(function()
        local data = tether.fs.read_file(("%s/small-%04d"):format(dir, i))
        n = n + #data
      end)
    end
  end)
  return n
end

local work = { io_big = io_big, io_small = io_small, tether_big = tether_big,
  tether_small = tether_small }

-- The median of REPS timed runs (after one warm-up run: the page cache, the pool).
local REPS = tonumber(os.getenv("BENCH_W13_REPS") or "") or 9

local function median_time(clock, fn, ...)
  fn(...)
  local times, bytes = {}, nil
  for i = 1, REPS do
    common.full_gc()
    local t0 = clock()
    bytes = fn(...)
    times[i] = clock() - t0
  end
  table.sort(times)
  return times[(REPS + 1) // 2], bytes
end

prepare()
local clock = common.clock(variant)
local seconds, bytes
if variant:match("^tether") then
  local tether = require "tether"
  tether.run(function()
    seconds, bytes = median_time(clock, work[variant], tether)
  end)
else
  seconds, bytes = median_time(clock, work[variant])
end
common.result(W, variant, { { "s", seconds }, { "bytes", bytes },
  { "mb_per_s", bytes / seconds / 1048576 } })
