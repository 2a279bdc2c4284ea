-- Specs for the task lifecycle: start order, first run, names, ids, parents, scale,
-- deep trees, pcall and <close> inside tasks.

local tether = require "tether"
local helper = require "spec.helper"

-- Slow runners (valgrind, ASan) stretch every time limit by this factor.
local SCALE = helper.time_scale or 1

local function closer(fn)
  return setmetatable({}, { __close = fn })
end

local function default_name(fn)
  local info = debug.getinfo(fn, "S")
  return info.short_src .. ":" .. info.linedefined
end

describe("task start", function()
  it("start_soon children first run in FIFO order", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        for i = 1, 20 do
          tg:start_soon(function() log[#log + 1] = i end)
        end
      end)
    end)
    local expected = {}
    for i = 1, 20 do expected[i] = i end
    assert.same(expected, log)
  end)

  it("a child first runs at the caller's next schedule point, not before", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function() log[#log + 1] = "child 1" end)
        log[#log + 1] = "spawned"
        -- None of these is a schedule point.
        tether.checkpoint_if_cancelled()
        tether.current_time()
        tether.current_task()
        tether.get_running_tasks()
        tether.current_effective_deadline()
        tether.CancelScope{}:run(function() log[#log + 1] = "in scope" end)
        tg:start_soon(function() log[#log + 1] = "child 2" end)
        log[#log + 1] = "before checkpoint"
        tether.checkpoint()
        log[#log + 1] = "after checkpoint"
      end)
    end)
    assert.same({ "spawned", "in scope", "before checkpoint", "child 1", "child 2",
                  "after checkpoint" }, log)
  end)

  it("a task spawned by another child first runs at that child's next schedule point", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          tg:start_soon(function() log[#log + 1] = "B runs" end)
          log[#log + 1] = "A after spawn"
          tether.checkpoint()
          log[#log + 1] = "A after checkpoint"
        end)
      end)
    end)
    assert.same({ "A after spawn", "B runs", "A after checkpoint" }, log)
  end)

  it("passes the extra arguments, nils included", function()
    local got
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function(...) got = table.pack(...) end, 1, nil, "three", nil)
      end)
    end)
    assert.same({ n = 4, 1, nil, "three", nil }, got)
  end)

  -- Tasks wait for their first run with their arguments set aside (task.c's stage
  -- table); those spawned in one batch, named or not, with or without arguments, must
  -- each get exactly theirs, also when some of them start their own tasks first.
  it("gives every task of a burst its own function, name and arguments", function()
    local got, want = {}, {}
    helper.run(function()
      tether.task_group(function(tg)
        for i = 1, 300 do
          local args = table.pack(i, (i % 3 == 0) and nil or -i, i % 5 == 0 and "five" or nil)
          args.n = i % 4 -- 0 to 3 arguments
          local name = i % 2 == 0 and ("task-" .. i) or nil
          local function body(...)
            if i % 7 == 0 then -- spawns more while the burst still waits
              tg:start_soon(function(x) got["child-" .. i] = x end, i * 10)
              want["child-" .. i] = i * 10
            end
            got[i] = { table.pack(...), name and tether.current_task().name }
          end
          want[i] = { { n = args.n, table.unpack(args, 1, args.n) }, name }
          if name then
            tg:start_soon(name, body, table.unpack(args, 1, args.n))
          else
            tg:start_soon(body, table.unpack(args, 1, args.n))
          end
        end
      end)
    end)
    assert.same(want, got)
  end)

  -- docs/guide.md §1 tells users that coroutines are reused; what one task set on its
  -- coroutine must not reach the next.
  it("runs a later task on a finished task's coroutine, with its hook cleared", function()
    local first, second, hook
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          first = coroutine.running()
          debug.sethook(function() end, "", 1e6)
        end)
      end)
      tether.task_group(function(tg)
        tg:start_soon(function()
          second = coroutine.running()
          hook = debug.gethook()
        end)
      end)
    end)
    assert.equal(first, second)
    assert.is_nil(hook)
  end)

  it("accepts a callable table as the task function", function()
    local got
    helper.run(function()
      local callable = {}
      setmetatable(callable, {
        __call = function(self, x)
          tether.checkpoint()
          got = { same_self = rawequal(self, callable), x = x }
        end,
      })
      tether.task_group(function(tg) tg:start_soon(callable, "arg") end)
    end)
    assert.same({ same_self = true, x = "arg" }, got)
  end)
end)

describe("task names", function()
  it("default to <short_src>:<linedefined> of the task function", function()
    local names = {}
    local function first_worker() names[#names + 1] = tether.current_task().name end
    local function second_worker(tag)
      tether.checkpoint()
      names[#names + 1] = tag .. "=" .. tether.current_task().name
    end
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(first_worker)
        tg:start_soon(second_worker, "x")
      end)
    end)
    assert.same({ default_name(first_worker), "x=" .. default_name(second_worker) }, names)
    assert.not_equal(default_name(first_worker), default_name(second_worker))
  end)

  it("take a leading string as an explicit name, which is not passed to the function", function()
    local got = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon("worker-1", function(...)
          got[#got + 1] = { name = tether.current_task().name, args = table.pack(...) }
        end, "a", "b")
        tg:start_soon("path-like:12", function(...)
          got[#got + 1] = { name = tether.current_task().name, args = table.pack(...) }
        end)
      end)
    end)
    assert.same({
      { name = "worker-1", args = { n = 2, "a", "b" } },
      { name = "path-like:12", args = { n = 0 } },
    }, got)
  end)

  it("apply to tg:start too (default and explicit)", function()
    local names = {}
    local function server(task_status)
      names[#names + 1] = tether.current_task().name
      task_status:started()
    end
    helper.run(function()
      tether.task_group(function(tg)
        tg:start(server)
        tg:start("named server", server)
      end)
    end)
    assert.same({ default_name(server), "named server" }, names)
  end)
end)

describe("task ids and parents", function()
  it("parent_id is the group host's id, whoever spawned the task", function()
    local rec = {}
    helper.run(function()
      rec.main = tether.current_task()
      tether.task_group(function(tg)
        tg:start_soon(function()
          rec.a = tether.current_task()
          tg:start_soon(function()
            rec.b = tether.current_task() -- spawned by child a
            tg:start_soon(function() rec.c = tether.current_task() end) -- by grandchild b
          end)
          tether.task_group(function(inner)
            inner:start_soon(function()
              rec.d = tether.current_task() -- host of inner is a
              tg:start_soon(function() rec.e = tether.current_task() end) -- outer group
            end)
          end)
        end)
      end)
    end)
    assert.is_nil(rec.main.parent_id)
    assert.same({
      a = rec.main.id, b = rec.main.id, c = rec.main.id, d = rec.a.id, e = rec.main.id,
    }, {
      a = rec.a.parent_id, b = rec.b.parent_id, c = rec.c.parent_id, d = rec.d.parent_id,
      e = rec.e.parent_id,
    })
  end)

  it("ids are integers, unique within a run and never reused", function()
    local ids = {}
    helper.run(function()
      ids[#ids + 1] = tether.current_task().id
      -- Short-lived tasks, one after another.
      for _ = 1, 100 do
        tether.task_group(function(tg)
          tg:start_soon(function() ids[#ids + 1] = tether.current_task().id end)
        end)
      end
      -- Concurrent ones.
      tether.task_group(function(tg)
        for _ = 1, 100 do
          tg:start_soon(function()
            ids[#ids + 1] = tether.current_task().id
            tether.sleep(0)
          end)
        end
      end)
    end)
    assert.equal(201, #ids)
    local seen, dups, non_int = {}, {}, {}
    for _, id in ipairs(ids) do
      if math.type(id) ~= "integer" then non_int[#non_int + 1] = id end
      if seen[id] then dups[#dups + 1] = id end
      seen[id] = true
    end
    assert.same({}, non_int)
    assert.same({}, dups)
  end)

  it("get_running_tasks lists every live task", function()
    helper.run(function()
      local main_id = tether.current_task().id
      local child_ids = {}
      local function ids_of(list)
        local set = {}
        for _, rec in ipairs(list) do
          assert.equal("integer", math.type(rec.id))
          assert.equal("string", type(rec.name))
          set[rec.id] = true
        end
        return set
      end
      tether.task_group(function(tg)
        for i = 1, 50 do
          tg:start_soon(function()
            child_ids[i] = tether.current_task().id
            tether.sleep_forever()
          end)
        end
        tether.wait_all_tasks_blocked()
        local live = ids_of(tether.get_running_tasks())
        assert.is_true(live[main_id])
        local missing = {}
        for i = 1, 50 do
          if not live[child_ids[i]] then missing[#missing + 1] = i end
        end
        assert.same({}, missing)
        tg.cancel_scope:cancel()
      end)
      local live = ids_of(tether.get_running_tasks())
      local lingering = {}
      for i = 1, 50 do
        if live[child_ids[i]] then lingering[#lingering + 1] = i end
      end
      assert.same({}, lingering)
    end)
  end)
end)

describe("scale", function()
  local N = 100000

  it("runs 100 000 concurrent tasks blocked in sleep_forever, then cancels them #scale", function()
    local started, closed = 0, 0
    local close_mt = { __close = function() closed = closed + 1 end }
    local function worker()
      started = started + 1
      local _ <close> = setmetatable({}, close_mt)
      tether.sleep_forever()
    end
    local t0 = tether.current_time()
    helper.run_within(30, function()
      tether.task_group(function(tg)
        for _ = 1, N do tg:start_soon(worker) end
        tether.wait_all_tasks_blocked()
        assert.equal(N, started)
        assert.is_true(#tether.get_running_tasks() >= N + 1)
        tg.cancel_scope:cancel()
      end)
    end)
    assert.equal(N, closed)
    assert.is_true(tether.current_time() - t0 < 20 * SCALE)
  end)

  it("runs 100 000 concurrent tasks doing sleep(0) three times each, fairly #scale", function()
    local steps, finished = 0, 0
    local steps_at_first_finish
    local function worker()
      for _ = 1, 3 do
        steps = steps + 1
        tether.sleep(0)
      end
      finished = finished + 1
      if finished == 1 then steps_at_first_finish = steps end
    end
    helper.run_within(30, function()
      tether.task_group(function(tg)
        for _ = 1, N do tg:start_soon(worker) end
      end)
    end)
    assert.equal(N, finished)
    assert.equal(3 * N, steps)
    -- FIFO run queue: every task took its third step before the first one finished.
    assert.equal(3 * N, steps_at_first_finish)
  end)

  it("runs 100 000 concurrent timed sleeps, each waking at or after its deadline #scale", function()
    local early, woke = 0, 0
    local function worker(delay)
      local deadline = tether.current_time() + delay
      tether.sleep_until(deadline)
      if tether.current_time() < deadline then early = early + 1 end
      woke = woke + 1
    end
    helper.run_within(30, function()
      tether.task_group(function(tg)
        for i = 1, N do tg:start_soon(worker, (i % 10 + 1) * 0.001) end
      end)
    end)
    assert.equal(N, woke)
    assert.equal(0, early)
  end)

  it("finishes a 300-level tree of nested groups cancelled from the top", function()
    local depth = 300
    local ids, parents, closes = {}, {}, {}
    local main_id
    local function level(k)
      local me = tether.current_task()
      ids[k], parents[k] = me.id, me.parent_id
      local _ <close> = closer(function() closes[#closes + 1] = k end)
      if k == depth then
        tether.sleep_forever()
      else
        tether.task_group(function(tg) tg:start_soon(level, k + 1) end)
      end
    end
    helper.run(function()
      main_id = tether.current_task().id
      tether.task_group(function(tg)
        tg:start_soon(level, 1)
        tether.wait_all_tasks_blocked()
        tg.cancel_scope:cancel()
      end)
    end)
    assert.equal(depth, #ids)
    assert.equal(main_id, parents[1])
    local bad_parent = {}
    for k = 2, depth do
      if parents[k] ~= ids[k - 1] then bad_parent[#bad_parent + 1] = k end
    end
    assert.same({}, bad_parent)
    local expected = {}
    for k = depth, 1, -1 do expected[#expected + 1] = k end
    assert.same(expected, closes)
  end)

  it("an error at the bottom of a 300-level tree comes out as 300 nested ErrorGroups", function()
    local depth = 300
    local function level(k)
      if k == depth then error("bottom", 0) end
      tether.task_group(function(tg) tg:start_soon("level-" .. (k + 1), level, k + 1) end)
    end
    local err = helper.error_of(helper.run, function()
      tether.task_group(function(tg) tg:start_soon("level-1", level, 1) end)
    end)
    local eg = err
    local bad = {}
    for i = 1, depth do
      if not (tether.is(eg, tether.ErrorGroup) and #eg.errors == 1
              and eg.tasks[1] == "level-" .. i) then
        bad[#bad + 1] = i
        break
      end
      eg = eg.errors[1]
    end
    assert.same({}, bad)
    assert.equal("bottom", eg)
  end)
end)

describe("pcall inside tasks", function()
  it("works across yields", function()
    helper.run(function()
      local r = table.pack(pcall(function()
        tether.sleep(0.001)
        tether.checkpoint()
        return 1, nil, 3
      end))
      assert.same({ n = 4, true, 1, nil, 3 }, r)
      local ok, msg = xpcall(function()
        tether.sleep(0)
        error("after a yield", 0)
      end, function(e) return "handled: " .. e end)
      assert.is_false(ok)
      assert.equal("handled: after a yield", msg)
    end)
  end)

  it("catches Cancelled in a cancelled task, and the next checkpoint raises it again", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          local ok, err = pcall(tether.sleep_forever)
          log[#log + 1] = "sleep_forever: " .. tostring(ok) .. " "
                          .. tostring(tether.is(err, tether.Cancelled))
          ok, err = pcall(tether.sleep, 0)
          log[#log + 1] = "sleep(0): " .. tostring(ok) .. " "
                          .. tostring(tether.is(err, tether.Cancelled))
          local handled
          ok, handled = xpcall(tether.checkpoint, function(e)
            return tether.is(e, tether.Cancelled) and "handler saw Cancelled" or "other"
          end)
          log[#log + 1] = tostring(ok) .. " " .. handled
          -- Code without checkpoints keeps running normally.
          local r = table.pack(pcall(function() return "plain", "values" end))
          log[#log + 1] = table.concat({ tostring(r[1]), r[2], r[3] }, " ")
          -- A shielded scope can still block.
          tether.CancelScope{ shield = true }:run(function()
            tether.sleep(0.001)
            log[#log + 1] = "shielded sleep done"
          end)
          tether.checkpoint()
          log[#log + 1] = "unreachable"
        end)
        tether.wait_all_tasks_blocked()
        tg.cancel_scope:cancel()
      end)
    end)
    assert.same({
      "sleep_forever: false true",
      "sleep(0): false true",
      "false handler saw Cancelled",
      "true plain values",
      "shielded sleep done",
    }, log)
  end)
end)

describe("<close> variables in tasks", function()
  it("run, innermost first, when a task raises, and see the error", function()
    local log = {}
    local boom = {}
    local err = helper.error_of(helper.run, function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          local _ <close> = closer(function(_, e)
            log[#log + 1] = "outer " .. tostring(rawequal(e, boom))
          end)
          local _ <close> = closer(function(_, e)
            log[#log + 1] = "inner " .. tostring(rawequal(e, boom))
          end)
          tether.sleep(0)
          error(boom)
        end)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.is_true(rawequal(boom, err.errors[1]))
    assert.same({ "inner true", "outer true" }, log)
  end)

  it("run when a task is cancelled, and see the Cancelled error", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          local _ <close> = closer(function(_, e)
            log[#log + 1] = "outer " .. tostring(tether.is(e, tether.Cancelled))
          end)
          local _ <close> = closer(function(_, e)
            log[#log + 1] = "inner " .. tostring(tether.is(e, tether.Cancelled))
          end)
          tether.sleep_forever()
        end)
        tether.wait_all_tasks_blocked()
        tg.cancel_scope:cancel()
      end)
      log[#log + 1] = "group exited"
    end)
    assert.same({ "inner true", "outer true", "group exited" }, log)
  end)

  it("may block under a shield while a task is being cancelled; the group waits", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          local _ <close> = closer(function()
            local ok, err = pcall(tether.checkpoint) -- unshielded: still cancelled
            log[#log + 1] = "unshielded checkpoint: " .. tostring(ok) .. " "
                            .. tostring(tether.is(err, tether.Cancelled))
            tether.CancelScope{ shield = true }:run(function()
              tether.sleep(0.005)
              log[#log + 1] = "shielded cleanup done"
            end)
          end)
          tether.sleep_forever()
        end)
        tether.wait_all_tasks_blocked()
        tg.cancel_scope:cancel()
      end)
      log[#log + 1] = "group exited"
    end)
    assert.same({ "unshielded checkpoint: false true", "shielded cleanup done", "group exited" },
                log)
  end)

  it("may block under a shield while an error unwinds a task", function()
    local log = {}
    local err = helper.error_of(helper.run, function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          local _ <close> = closer(function()
            tether.CancelScope{ shield = true }:run(function()
              tether.sleep(0.005)
              log[#log + 1] = "shielded cleanup done"
            end)
          end)
          tether.checkpoint()
          error("unwinding", 0)
        end)
      end)
      log[#log + 1] = "unreachable"
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "unwinding" }, err.errors)
    assert.same({ "shielded cleanup done" }, log)
  end)

  it("run in the main task on error", function()
    local log = {}
    local err = helper.error_of(helper.run, function()
      local _ <close> = closer(function(_, e) log[#log + 1] = "closed with " .. tostring(e) end)
      tether.sleep(0)
      error("main failed", 0)
    end)
    assert.equal("main failed", err)
    assert.same({ "closed with main failed" }, log)
  end)
end)

describe("a million tasks", function()
  -- About 1.5 GB and several seconds natively; far too slow under ASan or
  -- valgrind (time scale > 1), where the 100 000-task tests above stand in.
  local run_it = helper.time_scale == 1 and it or pending

  run_it("block at once, then wake by their deadlines, and leave nothing behind #scale",
    function()
      local N = 1000000
      local woken, early = 0, 0
      local go, base = tether.Event(), nil
      helper.run_within(120, function()
        tether.task_group(function(tg)
          for i = 1, N do
            tg:start_soon(function()
              go:wait()
              local deadline = base + (i % 1000) * 1e-4
              tether.sleep_until(deadline)
              woken = woken + 1
              if tether.current_time() < deadline then early = early + 1 end
            end)
          end
          tether.wait_all_tasks_blocked()
          assert.equal(N + 1, #tether.get_running_tasks())
          base = tether.current_time() + 0.2
          go:set()
        end)
      end)
      assert.equal(N, woken)
      assert.equal(0, early) -- no task woke before its deadline
    end)
end)

-- A task's coroutine can be taken with coroutine.running() and resumed by hand. Doing
-- so must not run the task (its scheduler state would no longer match its coroutine):
-- the resume returns true and a message, the task goes on waiting, and it later ends
-- with what it would have got anyway.
describe("coroutine.resume of a task's coroutine from another task", function()
  local WAITS = {
    { "sleeping", function() tether.sleep(0.01) return "slept" end, function() end,
      "slept" },
    { "waiting on an Event", function(w) w.event:wait() return "set" end,
      function(w) w.event:set() end, "set" },
    { "receiving from a stream", function(w) return w.receive:receive() end,
      function(w) w.send:send("item") end, "item" },
    { "sending on a stream", function(w) w.send:send("sent") return "done" end,
      function(w) assert(w.receive:receive() == "sent") end, "done" },
    { "acquiring a held Lock", function(w) w.lock:acquire() w.lock:release() return "got it" end,
      function(w) w.lock:release() end, "got it" },
    { "waiting for its group's children", function(w)
        tether.task_group(function(tg) tg:start_soon(function() w.event:wait() end) end)
        return "joined"
      end, function(w) w.event:set() end, "joined" },
    { "reading a signal receiver", function()
        local signals <close> = tether.open_signal_receiver("SIGURG")
        return (signals:receive())
      end, function() tether.kill(tether.getpid(), "SIGURG") end, tether.SIGURG },
  }

  -- Runs a task that blocks as `case` says; once it is parked, calls meddle(co) with
  -- its coroutine, then releases it.  Returns what the task's wait returned and what
  -- meddle returned, packed.
  local function meddle_with_parked(case, meddle)
    local block, release = case[2], case[3]
    local meddled, got
    helper.run(function()
      local w = { event = tether.Event(), lock = tether.Lock() }
      w.send, w.receive = tether.create_memory_object_stream(0)
      w.lock:acquire()
      tether.task_group(function(tg)
        local co
        tg:start_soon(function()
          co = coroutine.running()
          got = table.pack(block(w))
        end)
        tether.wait_all_tasks_blocked() -- the task is parked in its wait
        meddled = table.pack(meddle(co))
        assert.equal("suspended", coroutine.status(co))
        release(w)
      end)
    end)
    return got, meddled
  end

  for _, case in ipairs(WAITS) do
    it("leaves a task " .. case[1] .. " waiting, and it ends as it would have", function()
      local got, resumed = meddle_with_parked(case, function(co)
        return coroutine.resume(co, "junk", "more junk")
      end)
      assert.same({ n = 1, case[4] }, got)
      assert.equal(2, resumed.n)
      assert.is_true(resumed[1])
      assert.matches("^coroutine%.resume: this coroutine runs a tether task", resumed[2])
    end)
  end

  -- coroutine.close of that coroutine would unwind the task behind the scheduler's
  -- back (its scopes and groups live on its stack): it raises instead, and the task
  -- goes on as if nothing happened.
  for _, case in ipairs(WAITS) do
    it("refuses coroutine.close of a task " .. case[1] .. ", which then ends as it would "
      .. "have", function()
      local got, closed = meddle_with_parked(case, function(co)
        return pcall(coroutine.close, co)
      end)
      assert.same({ n = 1, case[4] }, got)
      assert.is_false(closed[1])
      assert.matches("^coroutine%.close: this coroutine runs a tether task", closed[2])
    end)
  end

  it("still closes ordinary coroutines, inside and outside tasks, with their <close> "
    .. "variables", function()
    local log = {}
    local function generator(name)
      return coroutine.create(function()
        local guard <close> = setmetatable({}, { __close = function() log[#log + 1] = name end })
        coroutine.yield(guard)
        coroutine.yield(guard)
      end)
    end
    local outside = generator("outside")
    assert(coroutine.resume(outside))
    assert.same({ true }, { coroutine.close(outside) })
    helper.run(function()
      local inside = generator("inside")
      assert(coroutine.resume(inside))
      assert.same({ true }, { coroutine.close(inside) })
      local failing = coroutine.create(function()
        local _ <close> = setmetatable({}, { __close = function() error("in __close") end })
        coroutine.yield()
      end)
      coroutine.resume(failing)
      local ok, err = coroutine.close(failing)
      assert.is_false(ok)
      assert.matches("in __close", err)
      local dead = coroutine.create(function() end)
      coroutine.resume(dead)
      assert.same({ true }, { coroutine.close(dead) })
    end)
    assert.same({ "outside", "inside" }, log)
  end)

  -- The two states in which the task is not parked: on the run queue after a
  -- checkpoint, and woken with a value already handed to it.
  it("leaves a task on the run queue to run from its checkpoint", function()
    local log, resumed = {}, nil
    helper.run(function()
      tether.task_group(function(tg)
        local co
        tg:start_soon(function()
          co = coroutine.running()
          tether.checkpoint()
          log[#log + 1] = "task after checkpoint"
        end)
        tether.checkpoint() -- the task runs, then waits on the run queue behind us
        resumed = table.pack(coroutine.resume(co, "junk"))
        log[#log + 1] = "main resumed it"
      end)
    end)
    assert.same({ "main resumed it", "task after checkpoint" }, log)
    assert.is_true(resumed[1])
    assert.matches("^coroutine%.resume: ", resumed[2])
  end)

  it("keeps the value a stream already handed to the task", function()
    local got
    helper.run(function()
      local send, receive = tether.create_memory_object_stream(0)
      tether.task_group(function(tg)
        local co
        tg:start_soon(function()
          co = coroutine.running()
          got = table.pack(receive:receive())
        end)
        tether.wait_all_tasks_blocked()
        send:send_nowait("handed") -- the task is now ready with the item
        assert(coroutine.resume(co, "junk", "more junk"))
      end)
    end)
    assert.same({ n = 1, "handed" }, got)
  end)
end)
