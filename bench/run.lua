--- bench/run.lua: runs every workload (bench/w*.lua) for every variant in
-- separate processes, interleaved (round r runs W1's variants, then W2's, ...,
-- each workload's variants in an order rotated by r), R rounds (env
-- BENCH_REPEAT, default 5). Prints one table of medians [min-max] with the
-- ratios and targets of issue 5, and writes it with the machine and versions
-- to bench/results.md.
--
--   make bench                       (builds first; sets LUA_PATH_5_4/LUA_CPATH_5_4)
--   BENCH_REPEAT=9 make bench
--   BENCH_ONLY=w1,w3 lua5.4 bench/run.lua   (a subset; results.md is then not written)
--
-- The child processes inherit the environment; each is given TIMEOUT seconds.
--
-- W7 (TCP echo, bench/w7_echo.lua) and W9 (a Redis-protocol server under
-- redis-benchmark, bench/w9_resp.lua) run after the other workloads, each in
-- one process that starts its own servers and rounds (BENCH_REPEAT of them)
-- and prints its own table (different columns: one per server); they are
-- selected like the others (BENCH_ONLY=w7,w9).

local here = (debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$")) or "."

local REPEAT = tonumber(os.getenv("BENCH_REPEAT") or "") or 5
local ONLY = os.getenv("BENCH_ONLY")
local TIMEOUT = 120

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"
local interp = common.interpreter()

local shell_quote = common.shell_quote

local sh = common.sh

local function now()
  return tonumber(sh("date +%s.%N")) or os.time()
end

-- {======================================================================
-- What runs
-- =======================================================================

local WORKLOADS = {
  { id = "w1", script = "w1_spawn.lua", variants = { "tether", "floor", "cqueues", "luv" } },
  { id = "w2", script = "w2_checkpoint.lua",
    variants = { "tether", "tether_checkpoint", "floor", "cqueues", "luv" } },
  { id = "w3", script = "w3_pingpong.lua",
    variants = { "tether", "tether_event", "floor", "cqueues", "luv" } },
  { id = "w4", script = "w4_sleepers.lua",
    variants = { "tether", "tether_lateness", "floor", "coroutines", "cqueues", "luv" } },
  { id = "w5", script = "w5_signal.lua", variants = { "tether", "floor", "cqueues", "luv" } },
  { id = "w6", script = "w6_idle_memory.lua",
    variants = { "tether", "floor", "cqueues", "luv" } },
  { id = "w8", script = "w8_idle_conns.lua", variants = { "tether" } },
  { id = "w10", script = "w10_spawn.lua",
    variants = { "tether", "tether_50", "tether_run", "luv_spawn", "luv_spawn_50", "asyncio",
      "asyncio_50", "tether_drain", "cat_pipe", "tether_capture", "lua_popen" } },
  { id = "w13", script = "w13_files.lua",
    variants = { "tether_big", "io_big", "tether_small", "io_small" } },
  { id = "w14", script = "w14_coroutine.lua",
    variants = { "tether", "tether_deep", "floor", "cqueues" } },
  { id = "w11", script = "w11_to_thread.lua", variants = { "tether", "floor" } },
  { id = "w12", script = "w12_parallel.lua", variants = { "tether" } },
}

local function wanted(id)
  return not ONLY or ("," .. ONLY .. ","):find("," .. id .. ",", 1, true) ~= nil
end

local selected = {}
for _, w in ipairs(WORKLOADS) do
  if wanted(w.id) then selected[#selected + 1] = w end
end
local OWN_TABLE_TIMEOUT = 600

-- samples[workload][variant] = list of result tables (field -> number), or
-- { na = reason } / { err = text }
local samples = {}

local function parse(line)
  local r = {}
  for k, v in line:gmatch('([%w_]+)="([^"]*)"') do r[k] = v end
  for k, v in line:gmatch('([%w_]+)=([^%s"][^%s]*)') do r[k] = tonumber(v) or v end
  return r
end

-- Every RESULT line (or error), in the order the processes ran.
local raw = {}

local function run_one(w, variant)
  local cmd = ("timeout %d %s %s %s 2>&1"):format(TIMEOUT, shell_quote(interp),
    shell_quote(here .. "/" .. w.script), variant)
  local out = sh(cmd)
  local line = out:match("RESULT " .. w.id .. " " .. variant .. "[^\n]*")
  local r
  if line then
    r = parse(line)
    r.raw = line
  else
    r = { err = (out:gsub("%s+", " "):sub(1, 200)) }
  end
  local list = samples[w.id][variant]
  list[#list + 1] = r
  raw[#raw + 1] = line or ("ERROR " .. w.id .. " " .. variant .. " " .. r.err)
  return r
end

local started = now()
for _, w in ipairs(selected) do
  samples[w.id] = {}
  for _, v in ipairs(w.variants) do samples[w.id][v] = {} end
end
for round = 1, REPEAT do
  io.stderr:write(("bench: round %d/%d:"):format(round, REPEAT))
  for _, w in ipairs(selected) do
    local vs, n = w.variants, #w.variants
    io.stderr:write(" ", w.id)
    for k = 0, n - 1 do
      local v = vs[(k + round - 1) % n + 1]
      local r = run_one(w, v)
      if r.err then io.stderr:write(("\nbench: %s %s failed: %s\n"):format(w.id, v, r.err)) end
    end
  end
  io.stderr:write(("  (%.0f s)\n"):format(now() - started))
end

-- Runs a workload that prints its own table (W7, W9): returns the table, and
-- adds its RESULT and ERROR lines to `raw`.
local function own_table(id, script, what)
  io.stderr:write(("bench: %s (%s)\n"):format(id, what))
  local out = sh(("timeout %d %s %s; echo \"EXIT $?\""):format(OWN_TABLE_TIMEOUT,
    shell_quote(interp), shell_quote(here .. "/" .. script)))
  local tables = {}
  for line in out:gmatch("[^\n]*") do
    if line:match("^RESULT " .. id .. " ") or line:match("^ERROR " .. id .. " ") then
      raw[#raw + 1] = line
    elseif not line:match("^EXIT %d+$") then
      tables[#tables + 1] = line
    end
  end
  if out:match("EXIT (%d+)%s*$") ~= "0" then io.stderr:write(("bench: %s failed\n"):format(id)) end
  return (table.concat(tables, "\n"):gsub("^%s+", ""):gsub("%s+$", ""))
end

local w7_text = wanted("w7") and own_table("w7", "w7_echo.lua", "TCP echo") or nil
local w9_text = wanted("w9") and own_table("w9", "w9_resp.lua", "redis-benchmark") or nil
local elapsed = now() - started

-- }======================================================================

-- {======================================================================
-- Statistics and the table
-- =======================================================================

--- { median, min, max } of field `key` (scaled by `scale`) over the samples
-- of one variant, or { na = reason } / { err = text } / nil.
local function stat(wid, variant, key, scale)
  local list = samples[wid] and samples[wid][variant]
  if not list or #list == 0 then return nil end
  local xs, failed, err = {}, 0, nil
  for _, r in ipairs(list) do
    if r.na then return { na = r.na } end
    if r.err or type(r[key]) ~= "number" then
      failed, err = failed + 1, r.err or ("no " .. key)
    else
      xs[#xs + 1] = r[key] * (scale or 1)
    end
  end
  if #xs == 0 then return { err = err } end
  table.sort(xs)
  local n = #xs
  local median = n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
  return { median = median, min = xs[1], max = xs[n], failed = failed }
end

local function num(x, digits)
  if math.abs(x) >= 100 or digits == 0 then return ("%.0f"):format(x) end
  return ("%." .. (digits or 2) .. "f"):format(x)
end

local function cell(s, digits)
  if s == nil then return "—" end
  if s.na then return "n/a: " .. s.na end
  if s.err then return "error" end
  return ("%s [%s–%s]%s"):format(num(s.median, digits), num(s.min, digits), num(s.max, digits),
    s.failed > 0 and (" (%d runs failed)"):format(s.failed) or "")
end

-- Rows: the tether variant, the metric, its unit and scale, and the target.
-- Lower is better everywhere but where `min` is a lower bound on tether's
-- median (a speed-up). `floor_ratio` is the tether/floor bound,
-- `peer_factor` how many times faster than the best peer tether must be,
-- `max` an absolute bound on tether's median. `floor` names the variant in the
-- floor column when it is not "floor"; `tether_only` rows measure tether alone
-- (no floor or peer columns); a row with no target is context only.
local ROWS = {
  { label = "W1 spawn+join empty task, 100k in one group (ns)", w = "w1", t = "tether",
    key = "ns_per_op", digits = 0, floor_ratio = 1.8, peer_factor = 2 },
  { label = "W2 checkpoint: sleep(0) (ns)", w = "w2", t = "tether", key = "ns_per_op",
    digits = 0, floor_ratio = 3, peer_factor = 2 },
  { label = "W2 checkpoint: checkpoint() (ns)", w = "w2", t = "tether_checkpoint",
    key = "ns_per_op", digits = 0, floor_ratio = 3, peer_factor = 2 },
  { label = "W3 ping-pong hop: rendezvous stream (ns)", w = "w3", t = "tether",
    key = "ns_per_op", digits = 0, floor_ratio = 4, peer_factor = 2 },
  { label = "W3 ping-pong hop: Event per hop (ns)", w = "w3", t = "tether_event",
    key = "ns_per_op", digits = 0, floor_ratio = 4, peer_factor = 2 },
  { label = "W4 100k sleepers ≤ 1 s: wall − longest delay (s)", w = "w4", t = "tether",
    key = "overhead_s", digits = 3, max = 0.05, no_ratio_below = 0.005 },
  { label = "W4 the same, floor = starting 100k coroutines (s)", w = "w4", t = "tether",
    floor = "coroutines", key = "overhead_s", digits = 3, floor_ratio = 1.2 },
  { label = "W4 100k sleepers: peak RSS (MB)", w = "w4", t = "tether", key = "peak_rss_kb",
    scale = 1 / 1024, digits = 0, max = 150 },
  { label = "W4 wake-up lateness, median over the 100k sleepers (ms)", w = "w4",
    t = "tether_lateness", key = "late_p50_ms", digits = 2, tether_only = true },
  { label = "W4 wake-up lateness, 99th percentile (ms)", w = "w4", t = "tether_lateness",
    key = "late_p99_ms", digits = 2, max = 2, tether_only = true },
  { label = "W4 wake-up lateness, largest (ms)", w = "w4", t = "tether_lateness",
    key = "late_max_ms", digits = 2, tether_only = true },
  { label = "W4 early wake-ups (count)", w = "w4", t = "tether_lateness", key = "early",
    digits = 0, max = 0, tether_only = true },
  { label = "W5 signal round trip (µs)", w = "w5", t = "tether", key = "ns_per_op",
    scale = 1e-3, digits = 2, floor_ratio = 1.2 },
  { label = "W6 idle blocked task, RSS growth (B)", w = "w6", t = "tether",
    key = "rss_bytes_per_task", digits = 0, max = 1400 },
  { label = "W6 idle blocked task, Lua heap growth (B)", w = "w6", t = "tether",
    key = "gc_bytes_per_task", digits = 0, max = 1400 },
  { label = "W8 idle TCP connection with its task, RSS growth (B)", w = "w8", t = "tether",
    key = "rss_bytes_per_conn", digits = 0, max = 5120, tether_only = true },
  { label = "W8 idle TCP connection with its task, Lua heap growth (B)", w = "w8",
    t = "tether", key = "gc_bytes_per_conn", digits = 0, tether_only = true },
  { label = "W10 start /bin/true and wait, one at a time (µs); floor = luv uv.spawn",
    w = "w10", t = "tether", floor = "luv_spawn", key = "us_per_process", digits = 0,
    floor_ratio = 1.2 },
  { label = "W10 the same, 50 at a time (µs per process); floor = luv", w = "w10",
    t = "tether_50", floor = "luv_spawn_50", key = "us_per_process", digits = 0,
    floor_ratio = 1.2 },
  { label = "W10 run_process defaults (output captured), one at a time (µs)", w = "w10",
    t = "tether_run", floor = "luv_spawn", key = "us_per_process", digits = 0 },
  { label = "W10 Python asyncio create_subprocess_exec, one at a time (µs)", w = "w10",
    t = "asyncio", key = "us_per_process", digits = 0, tether_only = true },
  { label = "W10 Python asyncio, 50 at a time (µs per process)", w = "w10",
    t = "asyncio_50", key = "us_per_process", digits = 0, tether_only = true },
  { label = "W10 100 MB through a pipe, read and dropped (s); floor = cat", w = "w10",
    t = "tether_drain", floor = "cat_pipe", key = "seconds", digits = 2, floor_ratio = 1.25 },
  { label = "W10 100 MB captured by run_process (s); floor = cat to /dev/null", w = "w10",
    t = "tether_capture", floor = "cat_pipe", key = "seconds", digits = 2,
    floor_ratio = 1.25 },
  { label = "W10 100 MB captured (s); floor = Lua io.popen():read(\"a\")", w = "w10",
    t = "tether_capture", floor = "lua_popen", key = "seconds", digits = 2 },
  { label = "W13 read a 100 MB file in 64 KiB chunks, floor = Lua's io (ms)", w = "w13",
    t = "tether_big", floor = "io_big", key = "s", scale = 1e3, digits = 1,
    floor_ratio = 1.25 },
  { label = "W13 1000 small files, fs.read_file concurrently, floor = an io.open loop (ms)",
    w = "w13", t = "tether_small", floor = "io_small", key = "s", scale = 1e3, digits = 1,
    floor_ratio = 1 },
  { label = "W14 sleep(0) through one tether.coroutine, floor = in the task (ns)",
    w = "w14", t = "tether", key = "ns_per_op", digits = 0, floor_ratio = 2 },
  { label = "W14 the same, three coroutines deep (ns)", w = "w14", t = "tether_deep",
    key = "ns_per_op", digits = 0 },
  { label = "W11 to_thread round trip, floor = luv uv.new_work (µs)", w = "w11",
    t = "tether", key = "ns_per_op", scale = 1e-3, digits = 1, floor_ratio = 1.2 },
  { label = "W12 speed-up of 2 workers over 1, CPU-bound (×)", w = "w12", t = "tether",
    key = "speedup", digits = 2, min = 1.8, tether_only = true },
  { label = "W12 CPU seconds per wall second, 1 worker", w = "w12", t = "tether",
    key = "cpu_per_wall_1", digits = 2, tether_only = true },
  { label = "W12 CPU seconds per wall second, 2 workers", w = "w12", t = "tether",
    key = "cpu_per_wall_2", digits = 2, tether_only = true },
  { label = "W12 CPU seconds, 2 workers ÷ 1 worker", w = "w12", t = "tether",
    key = "cpu_ratio", digits = 2, tether_only = true },
}

local function target_text(row)
  local parts = {}
  if row.floor_ratio then parts[#parts + 1] = ("≤ %g× floor"):format(row.floor_ratio) end
  if row.peer_factor then parts[#parts + 1] = ("≥ %g× best peer"):format(row.peer_factor) end
  if row.max then parts[#parts + 1] = ("≤ %g"):format(row.max) end
  if row.min then parts[#parts + 1] = ("≥ %g"):format(row.min) end
  return table.concat(parts, ", ")
end

local header = { "workload", "tether", "floor", "cqueues", "luv", "tether/floor",
  "best-peer/tether", "target met?" }
local add, lines = common.markdown_table(header)

local met_all = true
for _, row in ipairs(ROWS) do
  if samples[row.w] then
    local s = { tether = stat(row.w, row.t, row.key, row.scale) }
    if not row.tether_only then
      s.floor = stat(row.w, row.floor or "floor", row.key, row.scale)
      s.cqueues = stat(row.w, "cqueues", row.key, row.scale)
      s.luv = stat(row.w, "luv", row.key, row.scale)
    end
    local function ok(x) return x and x.median end
    local tm = ok(s.tether)
    local ratio_floor, ratio_peer = "—", "—"
    local verdicts = {}
    local usable = function(d)
      return d and (not row.no_ratio_below or math.abs(d) >= row.no_ratio_below)
    end
    if tm and ok(s.floor) and usable(s.floor.median) and usable(tm) then
      local r = tm / s.floor.median
      ratio_floor = ("%.2f×"):format(r)
      if row.floor_ratio then
        verdicts[#verdicts + 1] = r <= row.floor_ratio
      end
    elseif row.floor_ratio then
      verdicts[#verdicts + 1] = false
    end
    local best
    for _, p in ipairs { "cqueues", "luv" } do
      if ok(s[p]) and (best == nil or s[p].median < best) then best = s[p].median end
    end
    if tm and best and usable(best) and usable(tm) then
      local r = best / tm
      ratio_peer = ("%.2f×"):format(r)
      if row.peer_factor then verdicts[#verdicts + 1] = r >= row.peer_factor end
    elseif row.peer_factor then
      verdicts[#verdicts + 1] = false
    end
    if row.max then verdicts[#verdicts + 1] = tm ~= nil and tm <= row.max end
    if row.min then verdicts[#verdicts + 1] = tm ~= nil and tm >= row.min end
    local met = #verdicts > 0
    for _, v in ipairs(verdicts) do met = met and v end
    local verdict = "— (context)"
    if #verdicts > 0 then
      met_all = met_all and met
      verdict = (met and "yes" or "**no**") .. " (" .. target_text(row) .. ")"
    end
    add { row.label, cell(s.tether, row.digits), cell(s.floor, row.digits),
      cell(s.cqueues, row.digits), cell(s.luv, row.digits), ratio_floor, ratio_peer, verdict }
  end
end

local table_text = table.concat(lines, "\n")
if #selected > 0 then
  print(table_text)
  print(("\n%d rounds; every cell: median [min–max] of the rounds, one process each. "
    .. "Total run time %.0f s. All targets met: %s."):format(REPEAT, elapsed,
    met_all and "yes" or "no"))
end
if w7_text then print("\n" .. w7_text) end
if w9_text then print("\n" .. w9_text) end

-- }======================================================================

-- {======================================================================
-- bench/results.md
-- =======================================================================

local function trim(s) return (s or ""):gsub("^%s+", ""):gsub("%s+$", "") end

local function machine()
  local cpuinfo = io.open("/proc/cpuinfo", "r")
  local model = "unknown"
  if cpuinfo then
    model = cpuinfo:read("a"):match("model name%s*:%s*([^\n]+)") or model
    cpuinfo:close()
  end
  local versions = sh(shell_quote(interp) .. [[ -e '
    io.write(_VERSION, "\n")
    local ok, uv = pcall(require, "luv")
    io.write(ok and uv.version_string() or "?", "\n")
    local okc, cq = pcall(require, "cqueues")
    io.write(okc and tostring(cq.VERSION) or "?", "\n")
    local okt, t = pcall(require, "tether")
    io.write(okt and tostring(t._VERSION) or "?", "\n")' 2>/dev/null]])
  local lua_v, uv_v, cq_v, tether_v = versions:match("([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)")
  return {
    nproc = trim(sh("nproc 2>/dev/null")),
    cpu = trim(model),
    kernel = trim(sh("uname -sr 2>/dev/null")),
    lua = trim(sh(shell_quote(interp) .. " -v 2>&1")):match("^Lua [%d.]+") or lua_v,
    libuv = uv_v or "?",
    cqueues = (cq_v or "?") .. ", Debian lua-cqueues "
      .. trim(sh("dpkg-query -W -f='${Version}' lua-cqueues 2>/dev/null")),
    luv = trim(sh("dpkg-query -W -f='${Version}' lua-luv 2>/dev/null")),
    tether = tether_v or "?",
    date = os.date("!%Y-%m-%d %H:%M UTC"),
    commit = trim(sh("cd " .. shell_quote(here .. "/..")
      .. " && git describe --always --dirty=' plus uncommitted changes' 2>/dev/null"))
      :gsub("^$", "unknown commit"),
  }
end

if ONLY then
  io.stderr:write("bench: BENCH_ONLY set, bench/results.md not written\n")
  return
end

local m = machine()
local f = assert(io.open(here .. "/results.md", "w"))
f:write(([[
# Benchmark results

Written by `make bench` (bench/run.lua) on %s, tether at %s. Do not edit by hand:
rerun it.

Machine: %s CPU(s), %s, %s. Interpreter: %s (`%s`). libuv %s (luv's and tether's, the
same Debian library). cqueues %s; lua-luv %s; tether %s.

%s

%d rounds; every cell is the median [min–max] over the rounds, each a separate process
(variants interleaved and rotated between rounds). Lower is better in every column except
best-peer/tether (how many times faster tether is than the faster of cqueues and luv).
Total run time %.0f s. All targets met: %s.

Variants (details at the top of each bench/w*.lua):
- floor: W1–W3 plain Lua coroutines (W1 creates all 100k, then resumes each to its end;
  its `sequential_ns_per_op`, one coroutine at a time, is in the raw output), W4 raw luv
  timers (W4's second row: the time to start 100k plain coroutines that read the clock,
  the soonest the last sleeper can begin its sleep when a sleep counts from the current
  time, as tether.sleep does), W5 raw luv `uv.new_signal` callback that sends the next
  signal, W6 suspended coroutines.
- cqueues: Debian's lua-cqueues (`cq:wrap`, `cqueues.condition`, W2 uses
  `cqueues.poll()`, `cqueues.signal.listen` with SIGUSR1 blocked; it has no `kill`, so it uses
  `signal.raise`).
- luv: Debian's lua-luv with bench/luv_sched.lua, a small coroutine scheduler (run queue
  drained one batch per loop iteration by a uv_idle_t, a uv timer per sleep, Event,
  unbuffered Channel, signal receiver).
- W1: each process runs one cold round (heap growing, first-touch page faults, which are
  slow on this VM) and 5 warm rounds (memory of earlier rounds reused); a cell is the
  median over processes of each process's median warm round. The cold rounds
  (`cold_ns_per_op`) and the spread of warm rounds are in the raw output.
- W4 lateness rows (`tether_lateness`, a separate process running the same sleepers):
  each sleeper reads the clock just before `tether.sleep(d)` and just after it; the
  wake-up is late by the difference minus d (never less than its real lateness, as the
  deadline is taken a little later), early if it is negative. Median, 99th percentile
  and largest over the 100k sleepers, per process; the cells are medians over processes.
- W6 rows: growth after a full collection, divided by the 10k tasks: RSS (includes C
  allocations, e.g. tether's task records) and Lua heap (collectgarbage "count").
]]):format(m.date, m.commit, m.nproc, m.cpu, m.kernel, m.lua, interp, m.libuv, m.cqueues,
  m.luv, m.tether,
  table_text, REPEAT, elapsed, met_all and "yes" or "no"))
if w7_text then
  f:write("\n## W7: TCP echo\n\n", w7_text, "\n\n", [[
Higher is better for round trips/s, lower for system calls and instructions. The
client is bench/echo/client.c (epoll, ping-pong per connection); the C libuv server is
the floor (read callback, uv_try_write, uv_write for the rest). Instructions per round
trip (valgrind) come from `make bench-w7-instructions`; see docs/performance.md.
]])
end
if w9_text then
  f:write("\n## W9: Redis protocol\n\n", w9_text, "\n\n", [[
Higher is better. The tether server is examples/resp_server.lua (a task per
connection, the replies to the requests already buffered sent in one write);
redis-server is Debian's (C, single-threaded event loop, no persistence here).
]])
end
f:write("\n## Raw results\n\nOne line per process, in the order they ran.\n\n```\n",
  table.concat(raw, "\n"), "\n```\n")
f:close()
io.stderr:write("bench: wrote " .. here .. "/results.md\n")

-- }======================================================================
