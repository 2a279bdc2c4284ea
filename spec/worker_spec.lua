-- Worker threads: tether.to_thread runs Lua in parallel on tether's own threads,
-- keeps the loop responsive, and honours its limiter; a run waits for its workers;
-- many small calls leave no thread, state or memory behind.

local tether = require "tether"
local core = require "tether.core"
local helper = require "spec.helper"

-- A file name no other test uses.
local function temp_path(tag)
  local path = os.tmpname()
  os.remove(path)
  return path .. "." .. tag
end

-- Threads of this process (from /proc, so a popen's child is not counted).
local function thread_count()
  local f = assert(io.open("/proc/" .. tether.getpid() .. "/status"))
  local text = f:read("a")
  f:close()
  return tonumber(text:match("Threads:%s*(%d+)"))
end

-- Resident memory of this process, in KiB.
local function rss_kib()
  local f = assert(io.open("/proc/" .. tether.getpid() .. "/status"))
  local text = f:read("a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)"))
end

-- An Event set when a worker calls tether.worker.call("started").
local function started_event()
  local started = tether.Event()
  tether.worker.expose("started", function() started:set() end)
  return started
end

local function touch(path)
  local f = assert(io.open(path, "w"))
  f:close()
end

describe("tether.to_thread", function()
  it("runs a function in a worker and returns its results", function()
    helper.run(function()
      assert.same({ 3, "integer" },
        { tether.to_thread(function(a, b) return a + b, math.type(a + b) end, 1, 2) })
    end)
  end)

  it("runs workers in parallel: a rendezvous that deadlocks when run one after the other",
    function()
      local a, b = temp_path("a"), temp_path("b")
      local results = {}
      helper.run_within(30, function()
        tether.task_group(function(tg)
          -- Each creates its file and spins until the other's exists: only two
          -- workers running at the same time both return true.
          local function meet(mine, theirs)
            local f = assert(io.open(mine, "w"))
            f:close()
            local start = os.time()
            while os.time() - start < 10 do
              local g = io.open(theirs)
              if g then
                g:close()
                return true
              end
            end
            return false
          end
          tg:start_soon(function() results[1] = tether.to_thread(meet, a, b) end)
          tg:start_soon(function() results[2] = tether.to_thread(meet, b, a) end)
        end)
      end)
      os.remove(a)
      os.remove(b)
      assert.same({ true, true }, results)
    end)

  it("keeps the loop responsive while workers spin", function()
    local worst = 0
    helper.run_within(30, function()
      tether.task_group(function(tg)
        for _ = 1, 2 do
          tg:start_soon(tether.to_thread, function()
            while true do end -- until interrupted
          end)
        end
        for _ = 1, 20 do
          local start = tether.current_time()
          tether.sleep(0.005)
          worst = math.max(worst, tether.current_time() - start)
        end
        tg.cancel_scope:cancel()
      end)
    end)
    -- valgrind runs one thread at a time: two spinning workers take turns with the
    -- loop in its time slices, which says nothing of tether (5.8 s seen once)
    if not os.getenv("TETHER_TEST_VALGRIND") then
      assert.is_true(worst < 0.5 * helper.time_scale, "a 5 ms sleep took " .. worst .. " s")
    end
  end)

  it("interrupts a spinning worker on cancellation and runs its <close> variables", function()
    local closed = temp_path("closed")
    helper.run_within(30, function()
      local started = started_event()
      local scope = tether.CancelScope()
      scope:run(function()
        tether.task_group(function(tg)
          tg:start_soon(function()
            tether.to_thread(function(path)
              local _ <close> = setmetatable({}, { __close = function()
                local f = assert(io.open(path, "w"))
                f:close()
              end })
              require("tether").worker.call("started")
              while true do end
            end, closed)
          end)
          started:wait()
          scope:cancel()
        end)
      end)
      assert.is_true(scope.cancelled_caught)
    end)
    local f = io.open(closed)
    assert.is_truthy(f, "the worker's <close> did not run")
    f:close()
    os.remove(closed)
  end)

  it("interrupts again when the worker swallows Cancelled with pcall", function()
    helper.run_within(30, function()
      local scope = tether.move_on_after(0.05)
      scope:run(tether.to_thread, function()
        for _ = 1, 3 do pcall(function() while true do end end) end
        while true do end
      end)
      assert.is_true(scope.cancelled_caught)
    end)
  end)

  it("under cancel = \"wait\" returns the worker's results; the next checkpoint raises",
    function()
      helper.run_within(30, function()
        local flag = temp_path("wait")
        local got, raised
        local scope = tether.CancelScope()
        scope:run(function()
          tether.task_group(function(tg)
            tg:start_soon(function()
              got = tether.to_thread({ cancel = "wait" }, function(path)
                local start = os.time()
                while os.time() - start < 10 do
                  local f = io.open(path)
                  if f then f:close() return "finished" end
                end
                return "gave up"
              end, flag)
              raised = not pcall(tether.checkpoint)
            end)
            tether.wait_all_tasks_blocked()
            scope:cancel()
            touch(flag)
          end)
        end)
        os.remove(flag)
        assert.equal("finished", got)
        assert.is_true(raised)
      end)
    end)

  it("lets tether.worker.check_cancelled raise in the worker", function()
    helper.run_within(30, function()
      local scope = tether.move_on_after(0.05)
      scope:run(tether.to_thread, { cancel = "wait" }, function()
        local tw = require "tether"
        while true do tw.worker.check_cancelled() end
      end)
      assert.is_true(scope.cancelled_caught)
    end)
  end)

  it("under cancel = \"abandon\" returns at once and holds the token until the worker ends",
    function()
      local flag = temp_path("abandon")
      helper.run_within(30, function()
        local started = started_event()
        local limiter = tether.CapacityLimiter(1)
        local scope = tether.CancelScope()
        scope:run(function()
          tether.task_group(function(tg)
            tg:start_soon(tether.to_thread, { cancel = "abandon", limiter = limiter },
              function(path)
                require("tether").worker.call("started")
                local start = os.time()
                while os.time() - start < 20 do
                  local f = io.open(path)
                  if f then f:close() return end
                end
              end, flag)
            started:wait()
            scope:cancel()
          end)
        end)
        assert.is_true(scope.cancelled_caught)
        assert.equal(1, limiter.borrowed_tokens)
        touch(flag)
        -- The next call waits for the token the abandoned worker holds.
        assert.equal("next", tether.to_thread({ limiter = limiter }, function()
          return "next"
        end))
        assert.equal(0, limiter.borrowed_tokens)
      end)
      os.remove(flag)
    end)

  it("makes tether.run wait for an abandoned worker", function()
    local flag, done = temp_path("release"), temp_path("done")
    helper.run_within(30, function()
      local started = started_event()
      local scope = tether.CancelScope()
      scope:run(function()
        tether.task_group(function(tg)
          tg:start_soon(tether.to_thread, { cancel = "abandon" }, function(release, finished)
              require("tether").worker.call("started")
              local start = os.time()
              while os.time() - start < 10 do
                local f = io.open(release)
                if f then f:close() break end
              end
              local g = assert(io.open(finished, "w"))
              g:close()
            end, flag, done)
          started:wait()
          scope:cancel()
        end)
      end)
      touch(flag)
    end)
    local f = io.open(done)
    assert.is_truthy(f, "tether.run returned before its worker ended")
    f:close()
    os.remove(flag)
    os.remove(done)
  end)

  it("waits for a worker blocked in C after Ctrl+C; a second Ctrl+C ends the process #ctrl_c",
    function()
      local out, status = helper.run_script([[
        local tether = require "tether"
        local ok, err = pcall(tether.run, function()
          tether.to_thread(function(pid)
            -- Both SIGINTs arrive while the worker is blocked in C (a read of a
            -- pipe; not os.execute, whose system() ignores SIGINT meanwhile).
            local p = io.popen(("exec 2>/dev/null; kill -INT %d; sleep 0.2; "
              .. "kill -INT %d; sleep 10"):format(pid, pid))
            p:read("a")
          end, tether.getpid())
        end)
        io.stdout:write("run returned: ", tostring(err), "\n")
      ]])
      assert.equal(130, status, out)
      assert.is_nil(out:find("run returned", 1, true), out)
    end)

  it("runs one worker at a time with a limiter of one token", function()
    local inside, most = 0, 0
    helper.run_within(30, function()
      tether.worker.expose("enter", function()
        inside = inside + 1
        most = math.max(most, inside)
        tether.sleep(0.001)
      end)
      tether.worker.expose("leave", function() inside = inside - 1 end)
      local limiter = tether.CapacityLimiter(1)
      tether.task_group(function(tg)
        for _ = 1, 4 do
          tg:start_soon(tether.to_thread, { limiter = limiter }, function()
            local tw = require "tether"
            tw.worker.call("enter")
            tw.worker.call("leave")
          end)
        end
      end)
    end)
    assert.equal(1, most)
  end)

  it("leaves no thread, state or memory behind after 10 000 small calls #burst", function()
    local base_threads = thread_count()
    local before, after
    local old = core.worker_idle_seconds()
    helper.run_within(120, function()
      local function burst(n)
        tether.task_group(function(tg)
          for _ = 1, 4 do
            tg:start_soon(function()
              for i = 1, n // 4 do
                assert(tether.to_thread(function(x) return x + 1 end, i) == i + 1)
              end
            end)
          end
        end)
      end
      burst(2000)
      collectgarbage("collect")
      before = rss_kib()
      burst(10000)
      collectgarbage("collect")
      after = rss_kib()
      core.worker_idle_seconds(0.01)
      local deadline = tether.current_time() + 10 * helper.time_scale
      while core.worker_threads() > 0 and tether.current_time() < deadline do
        tether.sleep(0.01)
      end
      assert.equal(0, core.worker_threads())
    end)
    core.worker_idle_seconds(old)
    assert.equal(base_threads, thread_count())
    -- (The sanitizers and valgrind keep freed memory in quarantine.) Under busted,
    -- malloc's arenas move RSS by about 2 MiB either way; a leaked state or thread
    -- per call would be tens of KiB each, hundreds of MiB in all.
    assert.is_true(helper.time_scale > 1 or after - before < 4096,
      ("RSS grew by %d KiB over 10 000 calls"):format(after - before))
  end)
end)
