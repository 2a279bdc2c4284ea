-- Subprocesses: run_process and open_process with real programs. A process belongs to
-- its owner: cancelled or failed owners terminate it (the ladder), reap it and close
-- its pipes; after every test this process has no zombie child and no descriptor more.

local tether = require "tether"
local helper = require "spec.helper"

local run = helper.run
local SCALE = helper.time_scale

-- On the ASan run, LD_PRELOAD carries the sanitizer runtime into this process; the
-- children (sh and coreutils, not instrumented, whose leaks LeakSanitizer would
-- report by aborting them) start without it.
local function plain_child(opts)
  if not os.getenv("LD_PRELOAD") or (opts ~= nil and type(opts) ~= "table")
    or (opts and opts.env ~= nil and type(opts.env) ~= "table") then
    return opts -- bad input, for the misuse specs
  end
  local copy = { env = { LD_PRELOAD = false } }
  for k, v in pairs(opts or {}) do copy[k] = v end
  for k, v in pairs(opts and opts.env or {}) do copy.env[k] = v end
  return copy
end

local function run_process(...)
  if type((...)) == "userdata" then
    local status, cmd, opts = ...
    return tether.run_process(status, cmd, plain_child(opts))
  end
  local cmd, opts = ...
  return tether.run_process(cmd, plain_child(opts))
end

local function open_process(cmd, opts)
  return tether.open_process(cmd, plain_child(opts))
end

-- Within `seconds` (scaled for slow runs), or TimeoutError.
local function within(seconds, fn, ...)
  return tether.fail_after(seconds * SCALE):run(fn, ...)
end

-- /proc/PID/stat fields: state, ppid, pgrp (nil once PID is gone).
local function proc_stat(pid)
  local f = io.open(("/proc/%d/stat"):format(pid))
  if not f then return nil end
  local text = f:read("a")
  f:close()
  if not text then return nil end -- it has just gone
  local state, ppid, pgrp = text:match("%) (%a) (%d+) (%d+)")
  return state, tonumber(ppid), tonumber(pgrp)
end

-- The processes of this machine matching `keep(pid, state, ppid, pgrp)`.
local function processes(keep)
  local found = {}
  local p = assert(io.popen("exec env -u LD_PRELOAD ls /proc"))
  local listing = p:read("a")
  p:close() -- first: until then ls is a child of ours
  for name in listing:gmatch("%S+") do
    local pid = tonumber(name)
    if pid then
      local state, ppid, pgrp = proc_stat(pid)
      if state and keep(pid, state, ppid, pgrp) then found[#found + 1] = pid end
    end
  end
  return found
end

local SELF = tether.getpid()

local function zombie_children()
  return processes(function(_, state, ppid) return ppid == SELF and state == "Z" end)
end

local function children()
  return processes(function(_, _, ppid) return ppid == SELF end)
end

-- Live (not zombie) members of process group `pgid`.
local function live_in_group(pgid)
  return processes(function(_, state, _, pgrp) return pgrp == pgid and state ~= "Z" end)
end

local function alive(pid)
  local state = proc_stat(pid)
  return state ~= nil and state ~= "Z"
end

local function temp_dir()
  local p = assert(io.popen("exec env -u LD_PRELOAD mktemp -d"))
  local dir = p:read("l")
  p:close()
  return dir
end

local fd_setup, fd_teardown = helper.descriptor_check("process_spec.lua")

describe("processes", function()
  local base_children
  before_each(function()
    base_children = #children()
  end)
  after_each(function()
    assert.same({}, zombie_children())
    assert.equal(base_children, #children(), "a child process was left running")
  end)
  setup(fd_setup)
  teardown(fd_teardown)

  describe("run_process", function()
    it("captures stdout and stderr apart and returns the exit code and pid", function()
      run(function()
        local r = run_process({ "sh", "-c", "echo out; echo err >&2" })
        assert.same({ code = 0, stdout = "out\n", stderr = "err\n" },
          { code = r.code, stdout = r.stdout, stderr = r.stderr })
        assert.is_nil(r.signal)
        assert.is_true(math.type(r.pid) == "integer" and r.pid > 0)
      end)
    end)

    it("looks the program up in PATH and passes arguments unchanged", function()
      run(function()
        local r = run_process({ "printf", "%s|", "a b", "", "$HOME", "'q'" })
        assert.equal("a b||$HOME|'q'|", r.stdout)
      end)
    end)

    it("raises ProcessError with the command, code and output on failure (check)", function()
      run(function()
        local cmd = { "sh", "-c", "echo partial; echo oops >&2; exit 3" }
        local err = helper.error_of(run_process, cmd)
        assert.is_true(tether.is(err, tether.ProcessError))
        assert.equal(cmd, err.cmd)
        assert.equal(3, err.code)
        assert.is_nil(err.signal)
        assert.equal("partial\n", err.stdout)
        assert.equal("oops\n", err.stderr)
        assert.matches("exited with code 3", tostring(err))
        local r = run_process(cmd, { check = false })
        assert.equal(3, r.code)
      end)
    end)

    it("reports a process ended by a signal with code nil and the signal", function()
      run(function()
        local r = run_process({ "sh", "-c", "kill -TERM $$" }, { check = false })
        assert.is_nil(r.code)
        assert.equal(tether.SIGTERM, r.signal)
        local err = helper.error_of(run_process, { "sh", "-c", "kill -KILL $$" })
        assert.is_true(tether.is(err, tether.ProcessError))
        assert.equal(tether.SIGKILL, err.signal)
        assert.matches("SIGKILL", tostring(err))
      end)
    end)

    it("feeds a string to stdin while reading the output (no pipe deadlock)", function()
      run(function()
        local input = {}
        for i = 1, 40000 do input[i] = ("line %d of the input\n"):format(i) end
        input = table.concat(input) -- ~900 KiB: far more than a pipe holds
        local r = run_process({ "cat" }, { stdin = input })
        assert.equal(#input, #r.stdout)
        assert.is_true(r.stdout == input)
        local err = run_process({ "sh", "-c", "cat >&2" }, { stdin = input }).stderr
        assert.is_true(err == input)
      end)
    end)

    it("gives empty input by default, and the child may stop reading early", function()
      run(function()
        assert.equal("0\n", run_process({ "sh", "-c", "wc -c" }).stdout:gsub(" ", ""))
        local big = ("x"):rep(1024 * 1024)
        local r = run_process({ "head", "-c", "3" }, { stdin = big })
        assert.equal("xxx", r.stdout)
      end)
    end)

    it("captures a large output whole", function()
      run(function()
        local r = run_process({ "head", "-c", "5000000", "/dev/zero" })
        assert.equal(5000000, #r.stdout)
      end)
    end)

    it("kills the process and raises LimitExceeded when output exceeds max_output",
      function()
        run(function()
          local err = helper.error_of(run_process, { "cat", "/dev/zero" },
            { max_output = 100000 })
          assert.is_true(tether.is(err, tether.LimitExceeded))
          assert.equal(100000, err.limit)
        end)
      end)

    it("returns when the process exits even if a grandchild holds its output open",
      function()
        run(function()
          local t0 = tether.current_time()
          local r = within(10, run_process,
            { "sh", "-c", "echo started; sleep 30 & echo $!" })
          assert.is_true(tether.current_time() - t0 < 5 * SCALE)
          local grandchild = tonumber(r.stdout:match("started\n(%d+)"))
          assert.is_truthy(grandchild, r.stdout)
          tether.kill(grandchild, "SIGKILL")
        end)
      end)

    it("passes stdout, stderr = \"stdout\", \"null\" and \"inherit\" as asked", function()
      run(function()
        local r = run_process({ "sh", "-c", "echo a; echo b >&2; echo c" },
          { stderr = "stdout" })
        assert.equal("a\nb\nc\n", r.stdout)
        assert.is_nil(r.stderr)
        r = run_process({ "sh", "-c", "echo a; echo b >&2" }, { stdout = "null" })
        assert.is_nil(r.stdout)
        assert.equal("b\n", r.stderr)
        r = run_process({ "sh", "-c", "test -t 0 || read x || echo eof" },
          { stdin = "null" })
        assert.equal("eof\n", r.stdout)
      end)
    end)

    it("hands a Stream's descriptor to the child", function()
      run(function()
        local a, b = tether.socketpair()
        run_process({ "sh", "-c", "echo through the socket" }, { stdout = b })
        b:close()
        assert.equal("through the socket\n", within(5, a.read_all, a))
        a:close()
      end)
    end)

    it("runs in cwd, with env merged over ours, or clear_env", function()
      run(function()
        local dir = temp_dir()
        local r = run_process({ "pwd" }, { cwd = dir })
        assert.equal(dir, (r.stdout:gsub("\n$", "")))
        r = run_process({ "sh", "-c", 'echo "$TETHER_A|$TETHER_B|${HOME:+home}"' },
          { env = { TETHER_A = "one", TETHER_B = 2 } })
        assert.equal("one|2|home\n", r.stdout)
        r = run_process({ "/usr/bin/env" }, { env = { ONLY = "this" }, clear_env = true })
        assert.equal("ONLY=this\n", r.stdout)
        r = run_process({ "sh", "-c", 'echo "${HOME-unset}"' }, { env = { HOME = false } })
        assert.equal("unset\n", r.stdout)
        os.remove(dir)
      end)
    end)

    it("runs a string through /bin/sh only with shell = true", function()
      run(function()
        assert.equal("2\n", run_process("echo $((1 + 1))", { shell = true }).stdout)
        helper.misuse("^tether.run_process: .*shell = true", run_process, "echo hi")
      end)
    end)
  end)

  describe("spawn failures", function()
    it("raise OSError with op spawn and the program as target, leaving nothing", function()
      run(function()
        local err = helper.error_of(run_process, { "tether-no-such-program" })
        assert.is_true(tether.is(err, tether.OSError))
        assert.same({ "ENOENT", "spawn", "tether-no-such-program" },
          { err.code, err.op, err.target })
        local dir = temp_dir()
        local script = dir .. "/not-executable"
        local f = assert(io.open(script, "w"))
        f:write("#!/bin/sh\necho hi\n")
        f:close()
        err = helper.error_of(run_process, { script })
        assert.is_true(tether.is(err, tether.OSError))
        assert.equal("EACCES", err.code)
        err = helper.error_of(open_process, { "true" }, { cwd = dir .. "/missing" })
        assert.is_true(tether.is(err, tether.OSError))
        assert.equal("ENOENT", err.code)
        os.remove(script)
        os.remove(dir)
      end)
    end)
  end)

  describe("open_process", function()
    it("talks to a child through pipes, line by line", function()
      run(function()
        local p <close> = open_process({ "cat" }, { stdin = "pipe", stdout = "pipe" })
        for i = 1, 50 do
          p.stdin:send(("message %d\n"):format(i))
          assert.equal(("message %d"):format(i), within(5, p.stdout.read_line, p.stdout))
        end
        p.stdin:close()
        assert.is_nil(within(5, p.stdout.read_line, p.stdout))
        assert.same({ 0 }, { within(5, p.wait, p) })
        assert.equal(0, p.code)
        assert.is_nil(p.signal)
      end)
    end)

    it("sorts what it is sent (the reference example)", function()
      run(function()
        local lines = {}
        do
          local p <close> = open_process({ "sort" }, { stdin = "pipe", stdout = "pipe" })
          p.stdin:send("b\na\n")
          p.stdin:close()
          for line in p.stdout:lines() do lines[#lines + 1] = line end
        end
        assert.same({ "a", "b" }, lines)
      end)
    end)

    it("waits for the exit when its block ends, with any number of waiters", function()
      run(function()
        local events, record = helper.recorder()
        local p = open_process({ "sh", "-c", "read x; exit 5" }, { stdin = "pipe" })
        tether.task_group(function(tg)
          for i = 1, 3 do
            tg:start_soon(function() record(("waiter %d: %s"):format(i, p:wait())) end)
          end
          tether.wait_all_tasks_blocked()
          assert.is_nil(p.code)
          record("closing stdin")
          p.stdin:send("go\n")
        end)
        assert.same({ "closing stdin", "waiter 1: 5", "waiter 2: 5", "waiter 3: 5" }, events)
        assert.equal(5, p.code)
        p:__close()
      end)
    end)

    it("with check = true, raises ProcessError when closed after a failure", function()
      run(function()
        local err = helper.error_of(function()
          local p <close> = open_process({ "false" }, { check = true })
          p:wait()
        end)
        assert.is_true(tether.is(err, tether.ProcessError))
        assert.equal(1, err.code)
      end)
    end)

    it("leaves the process alone when a wait is cancelled", function()
      run(function()
        local p <close> = open_process({ "sh", "-c", "read x; exit 7" },
          { stdin = "pipe" })
        local scope = tether.move_on_after(0.05)
        scope:run(p.wait, p)
        assert.is_true(scope.cancelled_caught)
        assert.is_true(alive(p.pid))
        p.stdin:send("x\n")
        assert.equal(7, within(5, p.wait, p))
      end)
    end)

    it("writes a string stdin in the background", function()
      run(function()
        local data = ("z"):rep(300000)
        local p <close> = open_process({ "wc", "-c" }, { stdin = data, stdout = "pipe" })
        assert.equal("300000", within(5, p.stdout.read_all, p.stdout):match("%d+"))
      end)
    end)

    it("sends signals: send_signal, terminate, kill", function()
      run(function()
        for _, case in ipairs {
          { function(p) return p:send_signal("SIGUSR1") end, tether.SIGUSR1 },
          { function(p) return p:send_signal(tether.SIGHUP) end, tether.SIGHUP },
          { function(p) return p:terminate() end, tether.SIGTERM },
          { function(p) return p:kill() end, tether.SIGKILL },
        } do
          local p <close> = open_process({ "sleep", "30" })
          assert.is_true(case[1](p))
          assert.same({ nil, case[2] }, { within(5, p.wait, p) })
          assert.equal(case[2], p.signal)
          assert.is_false(p:send_signal("SIGTERM")) -- exited: nothing to signal
        end
      end)
    end)

    it("raises EPIPE for writes to a child that closed its stdin, and lives on", function()
      run(function()
        local p <close> = open_process({ "true" }, { stdin = "pipe" })
        within(5, p.wait, p)
        local err = helper.error_of(function()
          for _ = 1, 100 do p.stdin:send(("x"):rep(65536)) end
          p.stdin:flush()
        end)
        assert.is_true(tether.is(err, tether.BrokenResourceError))
        assert.equal("EPIPE", err.code)
      end)
    end)

    it("wakes a task reading its stdout when the stream is closed", function()
      run(function()
        local p <close> = open_process({ "sleep", "30" }, { stdout = "pipe" })
        local outcome
        tether.task_group(function(tg)
          tg:start_soon(function() outcome = helper.outcome(p.stdout.receive, p.stdout) end)
          tether.wait_all_tasks_blocked()
          p.stdout:close()
        end)
        assert.equal("ClosedResourceError", outcome)
        p:kill()
      end)
    end)

    it("returns from wait when the process exits while a grandchild keeps stdout", function()
      run(function()
        local p <close> = open_process({ "sh", "-c", "sleep 30 & echo $!" },
          { stdout = "pipe" })
        local grandchild = tonumber(within(5, p.stdout.read_line, p.stdout))
        assert.equal(0, within(5, p.wait, p))
        assert.is_true(alive(grandchild))
        tether.kill(grandchild, "SIGKILL")
      end)
    end)
  end)

  describe("owned by their scope", function()
    it("are terminated by the ladder when the owner is cancelled, grandchildren too",
      function()
        run(function()
          local p
          local t0 = tether.current_time()
          tether.move_on_after(0.1):run(function()
            p = open_process({ "sh", "-c", "sleep 100 & sleep 100" })
            local _ <close> = p
            tether.sleep_forever()
          end)
          assert.is_true(tether.current_time() - t0 < 4 * SCALE, "SIGTERM was enough")
          assert.equal(tether.SIGTERM, p.signal)
          assert.same({}, live_in_group(p.pid))
        end)
      end)

    it("a cancelled run_process raises Cancelled, not ProcessError", function()
      run(function()
        local scope = tether.move_on_after(0.1)
        local outcome
        scope:run(function()
          outcome = helper.outcome(run_process, { "sleep", "100" })
        end)
        assert.equal("Cancelled", outcome)
      end)
    end)

    it("SIGKILL a child that ignores SIGTERM after the grace period", function()
      run(function()
        local p
        local t0
        local owner = tether.CancelScope {}
        owner:run(function()
          p = open_process({ "sh", "-c", "trap '' TERM; echo ready; sleep 100 & wait" },
            { stdout = "pipe", terminate = { "SIGTERM", 0.5, "SIGKILL" } })
          local _ <close> = p
          assert.equal("ready", within(5, p.stdout.read_line, p.stdout))
          t0 = tether.current_time()
          owner:cancel()
          tether.sleep_forever()
        end)
        local took = tether.current_time() - t0
        assert.equal(tether.SIGKILL, p.signal)
        assert.is_true(took >= 0.45, took)
        assert.same({}, live_in_group(p.pid))
      end)
    end)

    it("follow a custom ladder, which stops once the process is gone", function()
      run(function()
        local p
        local owner = tether.CancelScope {}
        owner:run(function()
          p = open_process(
            { "sh", "-c", "trap 'exit 9' USR1; echo ready; while :; do sleep 0.02; done" },
            { stdout = "pipe", stderr = "null", terminate = { "USR1", 5, "SIGKILL" } })
          local _ <close> = p
          assert.equal("ready", within(5, p.stdout.read_line, p.stdout))
          owner:cancel()
          tether.sleep_forever()
        end)
        assert.equal(9, p.code)
      end)
    end)

    it("with group = false, the ladder reaches only the direct child", function()
      run(function()
        local p, grandchild
        local owner = tether.CancelScope {}
        owner:run(function()
          p = open_process({ "sh", "-c", "sleep 30 & echo $!; wait" },
            { stdout = "pipe", group = false })
          local _ <close> = p
          grandchild = tonumber(within(5, p.stdout.read_line, p.stdout))
          owner:cancel()
          tether.sleep_forever()
        end)
        assert.equal(tether.SIGTERM, p.signal)
        assert.is_true(alive(grandchild))
        tether.kill(grandchild, "SIGKILL")
        within(5, function()
          while alive(grandchild) do tether.sleep(0.01) end
        end)
      end)
    end)

    -- A process that SIGKILL does not end at once: a tracer (perl calling ptrace
    -- PTRACE_SEIZE, x86-64's system call 101) that never waits is told of the child's
    -- death instead of us, as long as it lives, as the owner of a child stuck in the
    -- kernel would wait.
    it("get the owner a ProcessError when even SIGKILL does not end them, and are "
      .. "reaped later", function()
      local machine = io.popen("uname -m")
      local x86_64 = machine:read("l") == "x86_64"
      machine:close()
      if not x86_64 then return pending("the tracer uses x86-64's ptrace number") end
      local seized
      run(function()
        local p, tracer
        local t0 = tether.current_time()
        local ok, err = pcall(function()
          local owner = tether.CancelScope {}
          owner:run(function()
            p = open_process({ "sleep", "100" },
              { stdout = "pipe", terminate = { "SIGTERM", 0.1, "SIGKILL" } })
            local _ <close> = p
            tracer = open_process({ "perl", "-e", "syscall(101, 0x4206, $ARGV[0] + 0, 0, 0) "
              .. "== 0 or die qq(ptrace: $!\\n); $| = 1; print qq(seized\\n); sleep 100",
              tostring(p.pid) }, { stdout = "pipe", stderr = "null" })
            seized = within(5, tracer.stdout.read_line, tracer.stdout) == "seized"
            owner:cancel()
            tether.sleep_forever() -- the ladder runs as p closes
          end)
        end)
        tracer:kill() -- the kernel now tells us of the child's death
        tracer:__close()
        if not seized then return end
        assert.is_false(ok)
        assert.is_true(tether.is(err, tether.ProcessError), tostring(err))
        assert.matches("did not exit 5 s after SIGKILL", err.message)
        assert.is_true(tether.current_time() - t0 >= 5)
        assert.has_error(function() p:wait() end)
        helper.raises("ClosedResourceError", p.stdout.receive, p.stdout) -- closed all the same
        within(5, function() -- the tracer is gone: the reaper gets the child
          while proc_stat(p.pid) do tether.sleep(0.01) end
        end)
      end)
      if not seized then pending("ptrace is not permitted here") end
    end)

    it("are terminated when the owner's block fails", function()
      run(function()
        local p
        local err = helper.error_of(function()
          p = open_process({ "sleep", "100" })
          local _ <close> = p
          error("owner failed")
        end)
        assert.matches("owner failed", err)
        assert.equal(tether.SIGTERM, p.signal)
      end)
    end)

    it("belong to a task group under tg:start, which passes the live Process", function()
      run(function()
        local p
        tether.task_group(function(tg)
          p = tg:start(run_process,
            { "sh", "-c", "echo listening; exec sleep 100" }, { stdout = "pipe" })
          assert.is_true(alive(p.pid))
          assert.equal("listening", within(5, p.stdout.read_line, p.stdout))
          tg.cancel_scope:cancel()
        end)
        assert.equal(tether.SIGTERM, p.signal)
        assert.is_false(alive(p.pid))
      end)
    end)

    it("under tg:start, leave the pipes handed over open after a normal exit", function()
      run(function()
        local lines = {}
        tether.task_group(function(tg)
          local p = tg:start(run_process, { "sh", "-c", "echo a; echo b" }, { stdout = "pipe" })
          assert.equal(0, within(5, p.wait, p))
          tether.sleep(0.05) -- run_process has returned meanwhile
          for line in p.stdout:lines() do lines[#lines + 1] = line end
          p.stdout:close()
        end)
        assert.same({ "a", "b" }, lines)
      end)
    end)

    it("200 processes started and cancelled at once leave nothing behind", function()
      run(function()
        local procs = {}
        tether.move_on_after(0.5 * SCALE):run(function()
          tether.task_group(function(tg)
            for i = 1, 200 do
              tg:start_soon(function()
                local p <close> = open_process({ "sh", "-c", "sleep 100 & sleep 100" })
                procs[i] = p
                tether.sleep_forever()
              end)
            end
          end)
        end)
        assert.equal(200, #procs)
        for _, p in ipairs(procs) do
          assert.equal(tether.SIGTERM, p.signal)
          assert.same({}, live_in_group(p.pid))
        end
      end)
    end)

    it("are killed and reaped when tether.run ends while they run unowned", function()
      local pid
      run(function()
        pid = open_process({ "sleep", "100" }).pid -- nobody closes it
      end)
      local deadline = os.time() + 10 * SCALE
      while alive(pid) and os.time() < deadline do os.execute("sleep 0.01") end
      assert.is_false(alive(pid))
      while proc_stat(pid) and os.time() < deadline do os.execute("sleep 0.01") end
      assert.is_nil(proc_stat(pid), "reaped")
    end)
  end)

  describe("bad input", function()
    it("raises errors naming the function and leaves nothing behind", function()
      run(function()
        local rp, op = run_process, open_process
        helper.misuse("^tether.run_process: cmd must be a table", rp, 42)
        helper.misuse("^tether.run_process: cmd is empty", rp, {})
        helper.misuse("^tether.run_process: cmd%[2%] must be a string", rp, { "echo", 1 })
        helper.misuse("^tether.open_process: cmd%[1%] %(the program%) is empty", op, { "" })
        helper.misuse("^tether.open_process: unknown option colour", op, { "true" },
          { colour = 1 })
        helper.misuse("^tether.open_process: opts must be a table", op, { "true" }, "x")
        helper.misuse("^tether.open_process: opts.stdout cannot be \"capture\"", op, { "true" },
          { stdout = "capture" })
        helper.misuse("^tether.run_process: opts.stderr must be", rp, { "true" },
          { stderr = "somewhere" })
        helper.misuse("^tether.run_process: opts.terminate%[1%] must be a signal", rp,
          { "true" }, { terminate = { "SIGNOPE" } })
        helper.misuse("^tether.run_process: opts.terminate%[2%] must be a grace", rp,
          { "true" }, { terminate = { "SIGTERM", -1 } })
        helper.misuse("^tether.run_process: opts.env must be a table", rp, { "true" },
          { env = "A=1" })
        helper.misuse("^tether.run_process: opts.env.A must be a string", rp, { "true" },
          { env = { A = {} } })
        helper.misuse("^tether.run_process: opts.max_output must be an integer > 0", rp,
          { "true" }, { max_output = 0 })
        helper.misuse("^tether.run_process: opts.cwd must be a string", rp, { "true" },
          { cwd = 1 })
        helper.misuse("^tether.run_process: with opts.shell, cmd must be a string", rp,
          { "true" }, { shell = true })
        local p <close> = op({ "true" })
        helper.misuse("^process:send_signal: sig must be a signal", p.send_signal, p, "NOPE")
        helper.assert_task_still_works()
      end)
    end)

    it("outside tether.run", function()
      helper.misuse("^tether.spawn: called outside tether.run", open_process, { "true" })
    end)
  end)

  describe("signals", function()
    it("a SIGCHLD receiver keeps working while processes run", function()
      run(function()
        local signals <close> = tether.open_signal_receiver("SIGCHLD")
        for _ = 1, 3 do
          assert.equal(0, run_process({ "true" }).code)
          local signum = within(5, signals.receive, signals)
          assert.equal(tether.SIGCHLD, signum)
        end
      end)
    end)
  end)
end)
