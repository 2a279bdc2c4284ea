--- W8: memory per idle TCP connection. N connections (default 10000) from a
-- child process; the server accepts each and gives it a task blocked in
-- `receive`. After a full collection the growth of the resident set (VmRSS:
-- Lua objects, tether's C side and libuv's handles) and of the Lua heap is
-- divided by N. The read buffers of idle connections must not count: they are
-- allocated only when bytes arrive.
--
--   tether   listen_tcp on 127.0.0.1, `for conn in listener` starting a task
--            per connection that calls conn:receive(); measured once
--            tether.wait_all_tasks_blocked() returns with every connection in

package.path = ((arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;") .. package.path
local common = require "common"

local W = "w8"
local variant = common.variant("w8_idle_conns", { "tether" })
local N = tonumber(os.getenv("BENCH_W8_N")) or 10000

-- The client: opens W8_N connections to W8_PORT, and holds them until its
-- standard input ends.
local CLIENT = [[
local tether = require "tether"
local port, n = tonumber(os.getenv("W8_PORT")), tonumber(os.getenv("W8_N"))
tether.run(function()
  local conns = {}
  for i = 1, n do conns[i] = tether.connect_tcp("127.0.0.1", port) end
  io.read("a")
  for _, c in ipairs(conns) do c:close() end
end)
]]

local shell_quote = common.shell_quote

local run = {}

function run.tether()
  local tether = require "tether"
  local gc0, rss0, gc1, rss1
  tether.run(function()
    local listener <close> = tether.listen_tcp { host = "127.0.0.1", backlog = 4096 }
    tether.task_group(function(tg)
      common.full_gc()
      gc0, rss0 = collectgarbage("count"), common.rss_kb()
      local client = assert(io.popen(("W8_PORT=%d W8_N=%d exec %s -e %s"):format(
        listener.port, N, shell_quote(common.interpreter()), shell_quote(CLIENT)), "w"))
      local accepted = 0
      for conn in listener do
        tg:start_soon(function()
          local _ <close> = conn
          for _ in conn do end -- idle until the client closes
        end)
        accepted = accepted + 1
        if accepted == N then break end
      end
      tether.wait_all_tasks_blocked()
      common.full_gc()
      gc1, rss1 = collectgarbage("count"), common.rss_kb()
      client:close() -- its stdin ends: it closes every connection and exits
    end)
  end)
  common.result(W, variant, {
    { "rss_bytes_per_conn", (rss1 - rss0) * 1024 / N },
    { "gc_bytes_per_conn", (gc1 - gc0) * 1024 / N },
    { "n", N },
  })
end

run[variant]()
