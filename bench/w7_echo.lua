--- W7: TCP echo over loopback. Each server in SERVERS runs in its own process
-- (pinned to CPU 1 when there are 2 or more CPUs and taskset exists); the C
-- client bench/echo/client.c (pinned to CPU 0) keeps N connections doing
-- ping-pong: send a message of S bytes, wait until all S bytes came back,
-- repeat.
--
--   lua5.4 bench/w7_echo.lua                 round trips per second and system
--                                            calls per round trip (make bench)
--   lua5.4 bench/w7_echo.lua --instructions  user-space instructions per round
--                                            trip of the server, under valgrind
--                                            (make bench-w7-instructions)
--
-- What is measured:
-- - Round trips per second at 1 KiB × 10 connections, 10 KiB × 10 and 100 KiB × 1
--   (BENCH_W7_SECONDS each, default 1, after 0.2 s of warm-up), BENCH_REPEAT
--   rounds (default 5), a new server process per server and round, the
--   servers' order rotated between rounds; cells are medians [min–max].
-- - System calls per round trip of the server process, counted by
--   `perf stat` on the syscall tracepoints while the client does a fixed number
--   of round trips (one count per server and message size: the counts do not
--   depend on the machine's load, except the number of epoll_wait calls, which
--   falls as more connections are ready at once).
-- - Instructions per round trip (--instructions): the server under
--   `valgrind --tool=cachegrind --cache-sim=no`, the client doing COUNT and
--   3 × COUNT round trips per connection at 1 KiB × 10 in two server processes;
--   the difference of the two totals over the difference of the round trips
--   cancels start-up and exit. Median of BENCH_W7_IREPEAT (default 3) pairs.
--
-- Environment: BENCH_BIN (directory of echo_client and uv_echo_server, default
-- build/bench), BENCH_W7_PIN=0 (do not pin), BENCH_W7_ONLY=floor,luv_cb (a
-- subset of the servers), BENCH_W7_INSTRUCTIONS=1 (also count instructions in
-- the default mode). Prints markdown tables and one RESULT line per
-- measurement.

local here = (debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$")) or "."
local root = here .. "/.."

-- {======================================================================
-- The servers
-- =======================================================================

-- Each server is a Lua file (run by this interpreter) or a C program in
-- BENCH_BIN. `needs` = { module, field }: the row is skipped, with the reason
-- shown, unless `require(module)` works (and has `field`, if given). Each
-- server takes the port as its argument (0: any free one) and prints
-- "PORT <n>" on stdout once it listens.
local SERVERS = {
  { id = "tether", lua = "echo/tether_server.lua", needs = { "tether", "serve_tcp" } },
  { id = "floor", name = "C libuv", bin = "uv_echo_server" },
  { id = "luv_cb", name = "luv callbacks", lua = "echo/luv_server.lua", needs = { "luv" } },
  { id = "luv_coro", name = "luv coroutines", lua = "echo/luv_coro_server.lua",
    needs = { "luv" } },
  { id = "cqueues", lua = "echo/cqueues_server.lua", needs = { "cqueues.socket" } },
}

-- The message sizes and connection counts; `key` names the result fields.
local CONFIGS = {
  { key = "1k", size = 1024, conns = 10, label = "1 KiB × 10 connections" },
  { key = "10k", size = 10240, conns = 10, label = "10 KiB × 10 connections" },
  { key = "100k", size = 102400, conns = 1, label = "100 KiB × 1 connection" },
}

-- Round trips per connection for the system-call counts.
local SYSCALL_COUNT = { ["1k"] = 1000, ["10k"] = 500, ["100k"] = 500 }

-- }======================================================================

local REPEAT = tonumber(os.getenv("BENCH_REPEAT") or "") or 5
local SECONDS = tonumber(os.getenv("BENCH_W7_SECONDS") or "") or 1
local IREPEAT = tonumber(os.getenv("BENCH_W7_IREPEAT") or "") or 3
local ICOUNT = tonumber(os.getenv("BENCH_W7_ICOUNT") or "") or 1000
local BIN = os.getenv("BENCH_BIN") or (root .. "/build/bench")
local ONLY = os.getenv("BENCH_W7_ONLY")
local INSTRUCTIONS = arg[1] == "--instructions"
local WITH_INSTRUCTIONS = INSTRUCTIONS or os.getenv("BENCH_W7_INSTRUCTIONS") == "1"
if arg[1] and not INSTRUCTIONS then
  io.stderr:write("usage: lua5.4 bench/w7_echo.lua [--instructions]\n")
  os.exit(2)
end

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"
local interp = common.interpreter()

local q = common.shell_quote

local sh = common.sh

local function sleep(s) os.execute("sleep " .. s) end

local tmp = sh("mktemp -d /tmp/tether-w7.XXXXXX"):gsub("%s+$", "")
assert(tmp ~= "", "w7_echo: mktemp failed")

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local PIN = os.getenv("BENCH_W7_PIN") ~= "0"
  and (tonumber(sh("nproc 2>/dev/null")) or 1) >= 2
  and os.execute("command -v taskset >/dev/null 2>&1")
local function pinned(cpu, cmd) return PIN and ("taskset -c " .. cpu .. " " .. cmd) or cmd end

-- {======================================================================
-- Running a server and the client
-- =======================================================================

--- Why `server` cannot run here, or nil.
local function unavailable(server)
  if server.bin then
    if not os.execute("test -x " .. q(BIN .. "/" .. server.bin)) then
      return "no " .. BIN .. "/" .. server.bin .. " (make bench builds it)"
    end
    return nil
  end
  local module, field = server.needs[1], server.needs[2]
  local probe = ("local ok, m = pcall(require, %q) if not ok then os.exit(3) end "
    .. "if %s and m[%q] == nil then os.exit(4) end"):format(module, field and "true" or "false",
    field or "")
  local _, _, code = os.execute(q(interp) .. " -e " .. q(probe) .. " 2>/dev/null")
  if code == 3 then return "cannot require " .. module end
  if code == 4 then return module .. "." .. field .. " does not exist yet" end
  return nil
end

--- Starts `server` (under `wrapper`, a command prefix, if given) and returns
-- { pid, port, out, err } once it listens, or nil and a message.
local function start(server, wrapper)
  local cmd = server.bin and q(BIN .. "/" .. server.bin)
    or (q(interp) .. " " .. q(here .. "/" .. server.lua))
  local err = tmp .. "/" .. server.id .. ".err"
  local p = io.popen(("echo $$; exec %s 0 2>%s"):format(pinned(1, (wrapper or "") .. cmd), q(err)),
    "r")
  local pid = tonumber(p:read("l"))
  local line = p:read("l")
  local port = line and tonumber(line:match("^PORT (%d+)$"))
  if not (pid and port) then
    p:close()
    return nil, ("%s did not start: %s"):format(server.id, read_file(err):gsub("%s+", " "))
  end
  return { pid = pid, port = port, out = p, err = err }
end

--- Ends a server started by start() and waits for it.
local function stop(proc)
  os.execute("kill " .. proc.pid .. " 2>/dev/null")
  proc.out:close()
end

--- Runs the client against `port`; `args` are its options. Returns the fields
-- of its result line, or nil and its output.
local function client(port, args)
  local out = sh(pinned(0, q(BIN .. "/echo_client")) .. " -p " .. port .. " " .. args .. " 2>&1")
  local r = {}
  for k, v in out:gmatch("(%w+)=(%S+)") do r[k] = tonumber(v) end
  if not r.rps then return nil, (out:gsub("%s+", " ")) end
  return r
end

local function log(fmt, ...) io.stderr:write(fmt:format(...)) end

-- }======================================================================

-- {======================================================================
-- Measurements
-- =======================================================================

local servers, skipped = {}, {}
for _, s in ipairs(SERVERS) do
  if not ONLY or ("," .. ONLY .. ","):find("," .. s.id .. ",", 1, true) then
    local why = unavailable(s)
    if why then
      skipped[s.id] = why
      log("w7: %s skipped: %s\n", s.id, why)
    end
    servers[#servers + 1] = s
  end
end

-- samples[server id][field] = list of numbers; errors[server id] = text
local samples, errors = {}, {}
for _, s in ipairs(servers) do samples[s.id] = {} end
local function add(id, field, v)
  local list = samples[id][field] or {}
  samples[id][field] = list
  list[#list + 1] = v
end

local function result(id, fields)
  local parts = { "RESULT w7 " .. id }
  for _, kv in ipairs(fields) do parts[#parts + 1] = ("%s=%.6g"):format(kv[1], kv[2]) end
  print(table.concat(parts, " "))
end

local function fail(id, msg)
  errors[id] = msg
  log("\nw7: %s failed: %s\n", id, msg)
  print(("ERROR w7 %s %s"):format(id, msg))
end

local runnable = {}
for _, s in ipairs(servers) do
  if not skipped[s.id] then runnable[#runnable + 1] = s end
end

-- Round trips per second.
local function throughput_round(round)
  local n = #runnable
  for k = 0, n - 1 do
    local s = runnable[(k + round - 1) % n + 1]
    local proc, err = start(s)
    if not proc then
      fail(s.id, err)
    else
      local fields = {}
      for _, c in ipairs(CONFIGS) do
        local r, cerr = client(proc.port, ("-c %d -s %d -d %g -w 0.2"):format(c.conns, c.size,
          SECONDS))
        if r then
          add(s.id, "rps_" .. c.key, r.rps)
          fields[#fields + 1] = { "rps_" .. c.key, r.rps }
        else
          fail(s.id, c.key .. ": " .. cerr .. " " .. read_file(proc.err):gsub("%s+", " "))
        end
      end
      stop(proc)
      result(s.id, fields)
    end
  end
end

-- The syscall tracepoints perf counts, grouped.
local SYSCALL_GROUPS = {
  read = { "read", "readv", "recvfrom", "recvmsg" },
  write = { "write", "writev", "sendto", "sendmsg" },
  poll = { "epoll_wait", "epoll_pwait" },
}

local function perf_usable()
  return os.execute("perf stat -e raw_syscalls:sys_enter -o /dev/null true >/dev/null 2>&1")
end

-- System calls per round trip, one count per server and message size.
local function count_syscalls()
  local events = { "raw_syscalls:sys_enter" }
  for _, group in pairs(SYSCALL_GROUPS) do
    for _, name in ipairs(group) do events[#events + 1] = "syscalls:sys_enter_" .. name end
  end
  for _, s in ipairs(runnable) do
    local proc, err = start(s)
    if not proc then
      fail(s.id, err)
    else
      local fields = {}
      for _, c in ipairs(CONFIGS) do
        local out = tmp .. "/perf." .. s.id
        local perf_pid = tonumber(sh(("perf stat -x, -o %s -e %s -p %d >/dev/null 2>&1 & echo $!")
          :format(q(out), table.concat(events, ","), proc.pid)))
        sleep(0.3) -- perf attaches; an idle server makes no system call meanwhile
        local r, cerr = client(proc.port, ("-c %d -s %d -n %d"):format(c.conns, c.size,
          SYSCALL_COUNT[c.key]))
        os.execute(("kill -INT %d; while kill -0 %d 2>/dev/null; do sleep 0.05; done")
          :format(perf_pid, perf_pid))
        local counts = {}
        for line in read_file(out):gmatch("[^\n]+") do
          local v, ev = line:match("^(%d+),[^,]*,([%w_:]+)")
          if v then counts[ev:match(":sys_enter_(.*)$") or "all"] = tonumber(v) end
        end
        if not r then
          fail(s.id, "syscalls " .. c.key .. ": " .. cerr)
        elseif not counts.all then
          fail(s.id, "perf counted nothing: " .. read_file(out):gsub("%s+", " "))
        else
          local trips = r.roundtrips
          for gname, group in pairs(SYSCALL_GROUPS) do
            local sum = 0
            for _, name in ipairs(group) do sum = sum + (counts[name] or 0) end
            local key = "sys_" .. gname .. "_" .. c.key
            add(s.id, key, sum / trips)
            fields[#fields + 1] = { key, sum / trips }
          end
          add(s.id, "sys_all_" .. c.key, counts.all / trips)
          fields[#fields + 1] = { "sys_all_" .. c.key, counts.all / trips }
        end
      end
      stop(proc)
      result(s.id, fields)
    end
  end
end

-- Instructions per round trip at 1 KiB × 10.
local function count_instructions()
  local function total(s, per_conn)
    local out = tmp .. "/cg." .. s.id
    os.remove(out)
    local proc, err = start(s, ("valgrind --tool=cachegrind --cache-sim=no "
      .. "--cachegrind-out-file=%s "):format(q(out)))
    if not proc then return nil, err end
    local r, cerr = client(proc.port, ("-c 10 -s 1024 -n %d"):format(per_conn))
    stop(proc)
    if not r then return nil, cerr end
    local ir = tonumber(read_file(out):match("\nsummary: (%d+)"))
    if not ir then return nil, "no cachegrind summary: " .. read_file(proc.err):sub(-300) end
    return ir, r.roundtrips
  end
  for round = 1, IREPEAT do
    log("w7: instructions, pair %d/%d:", round, IREPEAT)
    for _, s in ipairs(runnable) do
      log(" %s", s.id)
      local i1, n1 = total(s, ICOUNT)
      local i3, n3 = total(s, 3 * ICOUNT)
      if not i1 or not i3 then
        fail(s.id, "instructions: " .. (i1 and n3 or n1))
      else
        local per = (i3 - i1) / (n3 - n1)
        add(s.id, "ir_1k", per)
        result(s.id, { { "ir_1k", per } })
      end
    end
    log("\n")
  end
end

local started = os.time()
if not INSTRUCTIONS then
  for round = 1, REPEAT do
    log("w7: round %d/%d\n", round, REPEAT)
    throughput_round(round)
  end
  if perf_usable() then
    log("w7: system calls\n")
    count_syscalls()
  else
    for _, s in ipairs(runnable) do
      skipped[s.id .. "/syscalls"] = "perf cannot count syscall tracepoints"
    end
    log("w7: perf cannot count syscall tracepoints here: no system-call counts\n")
  end
end
if WITH_INSTRUCTIONS then
  if os.execute("command -v valgrind >/dev/null 2>&1") then
    count_instructions()
  else
    log("w7: no valgrind: no instruction counts\n")
  end
end
os.execute("rm -rf " .. q(tmp))

-- }======================================================================

-- {======================================================================
-- The table
-- =======================================================================

local function stat(id, field)
  local xs = samples[id] and samples[id][field]
  if not xs or #xs == 0 then return nil end
  table.sort(xs)
  local n = #xs
  local median = n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
  return { median = median, min = xs[1], max = xs[n], n = n }
end

local function num(x, digits)
  if digits then return ("%." .. digits .. "f"):format(x) end
  return ("%.0f"):format(x)
end

-- Higher is better for `rps` rows, lower for the others. `targets` compare
-- tether's median with a peer's: { peer, factor } means tether ≥ factor × peer
-- (higher is better) or tether ≤ factor × peer (lower); `exact` = tether's
-- median must equal it (within 0.05).
local ROWS = {
  { label = "1 KiB × 10: round trips/s", field = "rps_1k", higher = true,
    targets = { { "luv_cb", 0.8 }, { "cqueues", 1.3 } } },
  { label = "10 KiB × 10: round trips/s", field = "rps_10k", higher = true },
  { label = "100 KiB × 1: round trips/s", field = "rps_100k", higher = true,
    targets = { { "floor", 0.8 } } },
  { label = "1 KiB × 10: instructions/round trip", field = "ir_1k",
    targets = { { "luv_cb", 1.3 } }, instructions = true },
  { label = "1 KiB × 10: read calls/round trip", field = "sys_read_1k", digits = 2,
    exact = 1 },
  { label = "1 KiB × 10: write calls/round trip", field = "sys_write_1k", digits = 2,
    exact = 1 },
  { label = "1 KiB × 10: epoll_wait calls/round trip", field = "sys_poll_1k", digits = 2 },
  { label = "1 KiB × 10: all system calls/round trip", field = "sys_all_1k", digits = 2 },
  { label = "10 KiB × 10: all system calls/round trip", field = "sys_all_10k", digits = 2 },
  { label = "100 KiB × 1: all system calls/round trip", field = "sys_all_100k", digits = 2 },
}

local function name(s) return s.name or s.id end

local header = { "W7 TCP echo" }
for _, s in ipairs(servers) do header[#header + 1] = name(s) end
for _, h in ipairs { "tether/luv callbacks", "tether/floor", "target met?" } do
  header[#header + 1] = h
end
local row, lines = common.markdown_table(header)

local met_all = true
for _, r in ipairs(ROWS) do
  local present = false
  for _, s in ipairs(servers) do present = present or stat(s.id, r.field) ~= nil end
  if present then
    local cols = { r.label }
    for _, s in ipairs(servers) do
      local st = stat(s.id, r.field)
      if skipped[s.id] then
        cols[#cols + 1] = "n/a: " .. skipped[s.id]
      elseif not st then
        cols[#cols + 1] = errors[s.id] and "error" or "—"
      elseif st.n == 1 then
        cols[#cols + 1] = num(st.median, r.digits)
      else
        cols[#cols + 1] = ("%s [%s–%s]"):format(num(st.median, r.digits), num(st.min, r.digits),
          num(st.max, r.digits))
      end
    end
    local t = stat("tether", r.field)
    for _, peer in ipairs { "luv_cb", "floor" } do
      local p = stat(peer, r.field)
      cols[#cols + 1] = (t and p) and ("%.2f×"):format(t.median / p.median) or "—"
    end
    local verdicts, texts = {}, {}
    for _, tg in ipairs(r.targets or {}) do
      local p = stat(tg[1], r.field)
      local peer_name = tg[1] == "luv_cb" and "luv callbacks" or tg[1]
      texts[#texts + 1] = ("%s %g× %s"):format(r.higher and "≥" or "≤", tg[2], peer_name)
      if t and p then
        verdicts[#verdicts + 1] = r.higher and t.median >= tg[2] * p.median
          or (not r.higher and t.median <= tg[2] * p.median)
      else
        verdicts[#verdicts + 1] = false
      end
    end
    if r.exact then
      texts[#texts + 1] = ("= %g"):format(r.exact)
      verdicts[#verdicts + 1] = t ~= nil and math.abs(t.median - r.exact) <= 0.05
    end
    if #verdicts == 0 then
      cols[#cols + 1] = "— (context)"
    elseif not t then
      cols[#cols + 1] = "no tether row (" .. table.concat(texts, ", ") .. ")"
    else
      local met = true
      for _, v in ipairs(verdicts) do met = met and v end
      met_all = met_all and met
      cols[#cols + 1] = (met and "yes" or "**no**") .. " (" .. table.concat(texts, ", ") .. ")"
    end
    row(cols)
  end
end

print(table.concat(lines, "\n"))
local parts = {}
for _, s in ipairs(servers) do
  parts[#parts + 1] = name(s) .. " = " .. (s.lua and "bench/" .. s.lua or "bench/echo/uv_server.c")
end
local notes = { table.concat(parts, ", ") }
if not INSTRUCTIONS then
  notes[#notes + 1] = ("round trips/s: median [min–max] of %d rounds of %g s each, %s")
    :format(REPEAT, SECONDS, PIN and "client on CPU 0 and server on CPU 1 (taskset)"
      or "not pinned (no taskset or 1 CPU)")
  notes[#notes + 1] = ("system calls: one count of %d/%d/%d round trips per connection")
    :format(SYSCALL_COUNT["1k"], SYSCALL_COUNT["10k"], SYSCALL_COUNT["100k"])
end
notes[#notes + 1] = WITH_INSTRUCTIONS
  and ("instructions: median of %d cachegrind pairs (%d and %d round trips per connection)")
    :format(IREPEAT, ICOUNT, 3 * ICOUNT)
  or "instructions: make bench-w7-instructions"
print(("\nW7: %s. %d s.%s"):format(table.concat(notes, "; "), os.time() - started,
  (skipped.tether or not samples.tether) and ""
    or (" All tether targets met: " .. (met_all and "yes" or "no") .. ".")))
if next(errors) then os.exit(1) end

-- }======================================================================
