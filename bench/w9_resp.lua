--- W9: a Redis-protocol server under redis-benchmark. examples/resp_server.lua
-- (tether) and, when it is installed, redis-server itself (Debian's
-- redis-server package: the same protocol, written in C) each run in their own
-- process (pinned to CPU 1 when there are 2 or more CPUs and taskset exists);
-- redis-benchmark (pinned to CPU 0) runs `-t ping,set,get -c 50 -n N`, one
-- request at a time per connection and pipelined (`-P 16`).
--
--   lua5.4 bench/w9_resp.lua        (make bench runs it after W7)
--
-- Requests per second per test (PING_INLINE, PING_MBULK, SET, GET) and
-- pipeline depth: BENCH_REPEAT rounds (default 5), a new server process per
-- server and round, the servers' order rotated between rounds; cells are
-- medians [min–max], and the ratio is tether's median over redis-server's.
--
-- Environment: BENCH_W9_REQUESTS (N, default 200000), BENCH_W9_PIN=0 (do not
-- pin). Prints a markdown table and one RESULT line per measurement.

local here = (debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$")) or "."
local root = here .. "/.."

local REPEAT = tonumber(os.getenv("BENCH_REPEAT") or "") or 5
local REQUESTS = tonumber(os.getenv("BENCH_W9_REQUESTS") or "") or 200000
local CLIENTS = 50
local PIPELINES = { 1, 16 }
local TESTS = { "PING_INLINE", "PING_MBULK", "SET", "GET" }
local START_TIMEOUT = 20 -- seconds for a server to answer PING

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"
local interp = common.interpreter()

local q = common.shell_quote

local sh = common.sh

local function have(program) return os.execute("command -v " .. program .. " >/dev/null 2>&1") end

local function log(fmt, ...) io.stderr:write(fmt:format(...)) end

local PIN = os.getenv("BENCH_W9_PIN") ~= "0"
  and (tonumber(sh("nproc 2>/dev/null")) or 1) >= 2
  and have("taskset")
local function pinned(cpu, cmd) return PIN and ("taskset -c " .. cpu .. " " .. cmd) or cmd end

if not have("redis-benchmark") or not have("redis-cli") then
  print("W9 skipped: redis-benchmark and redis-cli are needed (apt-get install redis-tools)")
  print("ERROR w9 no redis-benchmark")
  os.exit(0)
end

local tmp = sh("mktemp -d /tmp/tether-w9.XXXXXX"):gsub("%s+$", "")
assert(tmp ~= "", "w9_resp: mktemp failed")

-- A port nobody listens on now (redis-server cannot pick one itself).
local function free_port()
  local tether = require "tether"
  return tether.run(function()
    local listener <close> = tether.listen_tcp { host = "127.0.0.1" }
    return listener.port
  end)
end

local function pings(port)
  return sh(("timeout 2 redis-cli -p %d ping 2>/dev/null"):format(port)):match("PONG") ~= nil
end

-- Each server: `command(port)` is its shell command; the port is chosen here.
local SERVERS = {
  { id = "tether", command = function(port)
    return ("%s %s %d"):format(q(interp), q(root .. "/examples/resp_server.lua"), port)
  end },
  { id = "redis", name = "redis-server", command = function(port)
    return ("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no "
      .. "--logfile /dev/null --dir %s"):format(port, q(tmp))
  end },
}

--- Starts `server`; returns its pid and port once it answers PING, or nil.
local function start(server)
  local port = free_port()
  local err = tmp .. "/" .. server.id .. ".err"
  local pid = tonumber(sh(("%s >/dev/null 2>%s & echo $!")
    :format(pinned(1, server.command(port)), q(err))))
  for _ = 1, START_TIMEOUT * 20 do
    if pings(port) then return pid, port end
    os.execute("sleep 0.05")
  end
  os.execute("kill -9 " .. pid .. " 2>/dev/null")
  return nil, sh("cat " .. q(err))
end

local function stop(pid)
  os.execute(("kill %d 2>/dev/null; while kill -0 %d 2>/dev/null; do sleep 0.05; done")
    :format(pid, pid))
end

--- redis-benchmark's requests per second by test, or nil and its output.
local function benchmark(port, pipeline)
  local out = sh(("timeout 600 %s -p %d -t ping,set,get -c %d -n %d -P %d --csv 2>&1")
    :format(pinned(0, "redis-benchmark"), port, CLIENTS, REQUESTS, pipeline))
  local rps = {}
  for test, value in out:gmatch('"([%u_]+)","([%d.]+)"') do rps[test] = tonumber(value) end
  for _, test in ipairs(TESTS) do
    if not rps[test] then return nil, (out:gsub("%s+", " "):sub(1, 300)) end
  end
  return rps
end

-- {======================================================================
-- Measurements
-- =======================================================================

local servers = {}
for _, s in ipairs(SERVERS) do
  if s.id ~= "redis" or have("redis-server") then
    servers[#servers + 1] = s
  else
    log("w9: redis-server skipped: not installed (apt-get install redis-server)\n")
  end
end

-- samples[server id][pipeline][test] = list of requests per second
local samples, failed = {}, {}
for _, s in ipairs(servers) do
  samples[s.id] = {}
  for _, p in ipairs(PIPELINES) do samples[s.id][p] = {} end
end

for round = 1, REPEAT do
  log("w9: round %d/%d:", round, REPEAT)
  for k = 0, #servers - 1 do
    local server = servers[(k + round - 1) % #servers + 1]
    log(" %s", server.id)
    local pid, port = start(server)
    if not pid then
      failed[server.id] = "did not start: " .. tostring(port)
      print(("ERROR w9 %s %s"):format(server.id, failed[server.id]:gsub("%s+", " ")))
    else
      for _, pipeline in ipairs(PIPELINES) do
        local rps, err = benchmark(port, pipeline)
        if rps then
          local parts = { ("RESULT w9 %s pipeline=%d"):format(server.id, pipeline) }
          for _, test in ipairs(TESTS) do
            local list = samples[server.id][pipeline]
            list[test] = list[test] or {}
            table.insert(list[test], rps[test])
            parts[#parts + 1] = ("%s=%.0f"):format(test, rps[test])
          end
          print(table.concat(parts, " "))
        else
          failed[server.id] = err
          print(("ERROR w9 %s pipeline=%d %s"):format(server.id, pipeline, err))
        end
      end
      stop(pid)
    end
  end
  log("\n")
end
os.execute("rm -rf " .. q(tmp))

-- }======================================================================

-- {======================================================================
-- The table
-- =======================================================================

local function median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function cell(list)
  if not list or #list == 0 then return "n/a" end
  local lo, hi = math.min(table.unpack(list)), math.max(table.unpack(list))
  return ("%.0f [%.0f–%.0f]"):format(median(list), lo, hi)
end

local with_redis = samples.redis ~= nil
local header = "| test | pipeline | tether (requests/s) |"
local rule = "|---|---|---|"
if with_redis then
  header = header .. " redis-server (requests/s) | tether / redis-server |"
  rule = rule .. "---|---|"
end
print(("W9: redis-benchmark -t ping,set,get -c %d -n %d, %d rounds, median [min–max]")
  :format(CLIENTS, REQUESTS, REPEAT))
print()
print(header)
print(rule)
for _, pipeline in ipairs(PIPELINES) do
  for _, test in ipairs(TESTS) do
    local t = samples.tether[pipeline][test]
    local row = ("| %s | %d | %s |"):format(test, pipeline, cell(t))
    if with_redis then
      local r = samples.redis[pipeline][test]
      local ratio = (t and r and #t > 0 and #r > 0)
        and ("%.2f"):format(median(t) / median(r)) or "n/a"
      row = row .. (" %s | %s |"):format(cell(r), ratio)
    end
    print(row)
  end
end
for id, err in pairs(failed) do print(("\n%s failed: %s"):format(id, err)) end
os.exit(next(failed) and 1 or 0)
