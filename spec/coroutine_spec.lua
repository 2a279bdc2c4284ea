-- tether.coroutine: coroutines whose code may block. A blocking call inside suspends the
-- whole task and the coroutine goes on where it was; its own yields still go to its
-- resumer; errors and cancellation behave as in Lua's coroutines.
local tether = require "tether"
local helper = require "spec.helper"

local tc = tether.coroutine

-- A generator of 1..n that blocks with `block` before each value.
local function generator(n, block)
  return tc.wrap(function()
    for i = 1, n do
      block()
      tc.yield(i)
    end
  end)
end

local function collect(iterator)
  local values = {}
  for value in iterator do values[#values + 1] = value end
  return values
end

describe("tether.coroutine", function()
  it("has the coroutine library's names", function()
    for name in pairs(coroutine) do
      assert.is_function(tc[name], name)
    end
    assert.equal(coroutine.create, tc.create)
    assert.equal(coroutine.yield, tc.yield)
  end)

  it("runs a generator that sleeps between its values", function()
    helper.run(function()
      local start = tether.current_time()
      assert.same({ 1, 2, 3 }, collect(generator(3, function() tether.sleep(0.01) end)))
      assert.is_true(tether.current_time() - start >= 0.03)
    end)
  end)

  it("runs a generator that reads a stream, while another task writes it", function()
    helper.run(function()
      local left, right = tether.socketpair()
      local lines = tc.wrap(function()
        local buffer = ""
        while true do
          local line, rest = buffer:match("^(.-)\n(.*)$")
          if line then
            buffer = rest
            tc.yield(line)
          else
            local ok, chunk = pcall(right.receive, right)
            if not ok then return end -- EndOfStream
            buffer = buffer .. chunk
          end
        end
      end)
      tether.task_group(function(tg)
        tg:start_soon(function()
          for _, piece in ipairs { "one\ntw", "o\n", "three\n" } do
            left:send(piece)
            tether.sleep(0.005)
          end
          left:close()
        end)
        assert.same({ "one", "two", "three" }, collect(lines))
      end)
      right:close()
    end)
  end)

  it("runs a generator that waits on an Event another task sets", function()
    helper.run(function()
      local ev = tether.Event()
      local gen = tc.wrap(function()
        tc.yield("before")
        ev:wait()
        tc.yield("after")
      end)
      tether.task_group(function(tg)
        assert.equal("before", gen())
        tg:start_soon(function()
          tether.wait_all_tasks_blocked()
          ev:set()
        end)
        assert.equal("after", gen())
      end)
    end)
  end)

  it("nests three deep: each level blocks, and each yield goes to its own resumer",
    function()
      helper.run(function()
        local log = {}
        local innermost = tc.wrap(function()
          for i = 1, 2 do
            tether.sleep(0.001)
            tc.yield("c" .. i)
          end
        end)
        local middle = tc.wrap(function()
          for value in innermost do
            tether.checkpoint()
            log[#log + 1] = "middle got " .. value
            tc.yield("b(" .. value .. ")")
          end
        end)
        local outer = tc.wrap(function()
          for value in middle do
            local ev = tether.Event()
            ev:set()
            ev:wait()
            log[#log + 1] = "outer got " .. value
            tc.yield("a(" .. value .. ")")
          end
        end)
        assert.same({ "a(b(c1))", "a(b(c2))" }, collect(outer))
        assert.same({ "middle got c1", "outer got b(c1)", "middle got c2",
                      "outer got b(c2)" }, log)
      end)
    end)

  it("keeps other tasks running while a coroutine waits", function()
    helper.run(function()
      local ticks = 0
      tether.task_group(function(tg)
        local scope = tether.CancelScope{}
        tg:start_soon(function()
          scope:run(function()
            while true do
              ticks = ticks + 1
              tether.sleep(0.001)
            end
          end)
        end)
        assert.same({ 1, 2 }, collect(generator(2, function() tether.sleep(0.02) end)))
        scope:cancel()
      end)
      assert.is_true(ticks >= 2, "ticks: " .. ticks)
    end)
  end)

  it("delivers cancellation inside the inner coroutine: its <close> runs, and wrap raises "
    .. "Cancelled", function()
      helper.run(function()
        local log = {}
        local scope = tether.move_on_after(0.01)
        scope:run(function()
          local outer = tc.wrap(function()
            local inner = tc.wrap(function()
              local _ <close> = setmetatable({}, { __close = function(_, err)
                log[#log + 1] = "inner closed: " .. helper.kind(err)
              end })
              tc.yield("ready")
              tether.sleep_forever()
            end)
            tc.yield(inner())
            local ok, err = pcall(inner)
            log[#log + 1] = "outer saw: " .. (ok and "no error" or helper.kind(err))
            error(err, 0)
          end)
          assert.equal("ready", outer())
          outer()
        end)
        assert.is_true(scope.cancelled_caught)
        assert.same({ "inner closed: Cancelled", "outer saw: Cancelled" }, log)
      end)
    end)

  it("returns a Cancelled raised inside from resume as false, err, as Lua returns errors",
    function()
      helper.run(function()
        local closed = false
        local scope = tether.move_on_after(0.01)
        scope:run(function()
          local co = tc.create(function()
            local _ <close> = setmetatable({}, { __close = function() closed = true end })
            tether.sleep_forever()
          end)
          local ok, err = tc.resume(co)
          assert.is_false(ok)
          assert.equal("Cancelled", helper.kind(err))
          assert.equal("dead", tc.status(co))
          assert.is_false(closed) -- as in Lua: close runs them
          assert.same({ false, err }, { tc.close(co) })
          assert.is_true(closed)
          tether.checkpoint() -- still cancelled: raises again
        end)
        assert.is_true(scope.cancelled_caught)
      end)
    end)

  it("closes a coroutine suspended at its own yield with coroutine.close", function()
    helper.run(function()
      local closed = false
      local co = tc.create(function()
        local _ <close> = setmetatable({}, { __close = function() closed = true end })
        tether.sleep(0.001)
        tc.yield(1)
        error("not reached")
      end)
      assert.same({ true, 1 }, { tc.resume(co) })
      assert.same({ true }, { coroutine.close(co) })
      assert.is_true(closed)
      assert.equal("dead", tc.status(co))
    end)
  end)

  it("passes errors out: resume returns false and the error, wrap raises it with the "
    .. "caller's position", function()
      helper.run(function()
        local co = tc.create(function(x)
          tether.sleep(0.001)
          error({ code = x })
        end)
        local ok, err = tc.resume(co, 42)
        assert.is_false(ok)
        assert.same({ code = 42 }, err)
        assert.same({ false, "cannot resume dead coroutine" }, { tc.resume(co) })

        local gen = tc.wrap(function()
          tether.checkpoint()
          error("broken generator")
        end)
        local line = debug.getinfo(1, "l").currentline + 1
        local message = helper.error_of(function() return gen() end)
        assert.matches("coroutine_spec.lua:" .. line .. ": .*coroutine_spec.lua:%d+: "
          .. "broken generator$", message)

        -- a tether error raised inside crosses two levels unchanged
        local left, right = tether.socketpair()
        right:close()
        local outer = tc.wrap(function()
          local inner = tc.wrap(function() return right:receive() end)
          return inner()
        end)
        assert.equal("ClosedResourceError", helper.kind(helper.error_of(outer)))
        left:close()
      end)
    end)

  it("passes values and errors in: resume's arguments come out of yield, and the "
    .. "resumer's error does not reach a suspended coroutine", function()
      helper.run(function()
        local co = tc.create(function(a)
          tether.sleep(0.001)
          local b, c = tc.yield(a * 2)
          tether.checkpoint()
          return b + c
        end)
        assert.same({ true, 6 }, { tc.resume(co, 3) })
        local ok = pcall(function()
          tether.checkpoint()
          error("the resumer fails")
        end)
        assert.is_false(ok)
        assert.equal("suspended", tc.status(co))
        assert.same({ true, 30 }, { tc.resume(co, 10, 20) })
      end)
    end)

  it("answers status, running and isyieldable as Lua does for the same coroutines",
    function()
      -- The same nesting twice: with Lua's coroutine library inside a plain coroutine
      -- (no blocking), and with tether.coroutine inside a task (blocking everywhere).
      local function probe(lib, block)
        local answers, names = {}, {}
        local function name(co) return names[co] or tostring(co) end
        local function note(what, ...)
          local parts = { what }
          for i = 1, select("#", ...) do
            local v = select(i, ...)
            parts[#parts + 1] = type(v) == "thread" and name(v) or tostring(v)
          end
          answers[#answers + 1] = table.concat(parts, " ")
        end
        local base = lib.running()
        names[base] = "base"
        local outer, inner
        inner = lib.create(function()
          block()
          note("inner running", lib.running())
          note("inner yieldable", lib.isyieldable())
          note("inner sees", lib.status(outer), lib.status(inner), lib.status(base))
          lib.yield()
          block()
          note("inner again", lib.status(outer), lib.status(inner))
        end)
        outer = lib.create(function()
          note("outer running", lib.running())
          block()
          note("outer yieldable", lib.isyieldable())
          note("resume inner", lib.resume(inner))
          note("outer sees", lib.status(outer), lib.status(inner), lib.status(base))
          block()
          note("resume inner", lib.resume(inner))
          note("resume dead", lib.resume(inner))
        end)
        names[outer], names[inner] = "outer", "inner"
        note("before", lib.status(outer), lib.status(inner))
        note("resume outer", lib.resume(outer))
        note("after", lib.status(outer), lib.status(inner))
        note("base yieldable", lib.isyieldable())
        return answers
      end
      local plain
      local co = coroutine.create(function()
        plain = probe(coroutine, function() end)
      end)
      assert(coroutine.resume(co))
      local with_tether = helper.run(function()
        return probe(tc, function() tether.sleep(0.001) end)
      end)
      assert.same(plain, with_tether)
    end)

  it("makes a yield from inside a cancel scope or task group the coroutine opened an "
    .. "error inside it, which closes them", function()
      helper.run(function()
        local closed = false
        local gen = tc.wrap(function()
          tether.move_on_after(10):run(function()
            local _ <close> = setmetatable({}, { __close = function() closed = true end })
            tether.sleep(0.001)
            tc.yield(1)
          end)
        end)
        assert.matches("cannot yield from inside a cancel scope or task group it opened",
          helper.error_of(gen))
        assert.is_true(closed)
        local co = tc.create(function()
          local ok, err = pcall(tether.task_group, function(tg)
            tg:start_soon(tether.sleep, 0.001)
            tc.yield("inside")
          end)
          tc.yield(ok, helper.kind(err)) -- allowed: the group closed
          return "end"
        end)
        local _, ok, kind = tc.resume(co)
        assert.is_false(ok)
        assert.equal("ErrorGroup", kind)
        assert.same({ true, "end" }, { tc.resume(co) })
        helper.assert_task_still_works()
      end)
    end)

  it("refuses a resume of a waiting coroutine from elsewhere; the task goes on waiting",
    function()
      helper.run(function()
        local ev = tether.Event()
        local waiting, middle
        local result
        tether.task_group(function(tg)
          tg:start_soon(function()
            local inner = tc.create(function()
              waiting = tc.running()
              ev:wait()
              return "woken"
            end)
            middle = tc.create(function() return select(2, tc.resume(inner)) end)
            result = select(2, tc.resume(middle))
          end)
          tether.wait_all_tasks_blocked()
          for _, co in ipairs { waiting, middle } do
            for _, resume in ipairs { coroutine.resume, tc.resume } do
              local ok, message = resume(co, "intruder")
              assert.is_true(ok)
              assert.matches("only tether resumes", message)
            end
            helper.misuse("^coroutine.close: this coroutine waits inside a tether task",
              coroutine.close, co)
            assert.equal("suspended", tc.status(co))
          end
          ev:set()
        end)
        assert.equal("woken", result)
      end)
    end)

  it("raises clear errors for bad arguments, and resumes dead coroutines as Lua does",
    function()
      helper.run(function()
        helper.misuse("^tether.coroutine.resume: argument 1 must be a coroutine, got no value",
          tc.resume)
        helper.misuse("^tether.coroutine.wrap: argument 1 must be a function, got number",
          tc.wrap, 1)
        assert.same({ false, "cannot resume non-suspended coroutine" },
          { tc.resume(tc.running()) })
        local gen = tc.wrap(function() end)
        gen()
        assert.matches("cannot resume dead coroutine", helper.error_of(gen))
      end)
    end)

  it("works as Lua's coroutines outside tether.run and in plain coroutines", function()
    local gen = tc.wrap(function() tc.yield(1); tc.yield(2) end)
    assert.same({ 1, 2 }, collect(gen))
    helper.run(function()
      local co = coroutine.wrap(function()
        local inner = tc.wrap(function() tether.sleep(0.001) end)
        return helper.error_of(inner)
      end)
      assert.matches("tether.sleep: called at .* from a coroutine that is not a tether task",
        co())
    end)
  end)

  it("leaves a blocking call in a plain coroutine an error that names the line that "
    .. "blocked", function()
      helper.run(function()
        local line = debug.getinfo(1, "l").currentline + 2
        local gen = coroutine.wrap(function()
          tether.sleep(0.001)
          coroutine.yield(1)
        end)
        local message = helper.error_of(function()
          for _ in gen do end
        end)
        assert.matches("tether.sleep: called at [^ ]*coroutine_spec.lua:" .. line
          .. " from a coroutine that is not a tether task", message)
        assert.matches("tether.coroutine.wrap", message, 1, true)
        helper.assert_task_still_works()
      end)
    end)
end)
