-- tether.task_tree, tether.format_task_tree and TETHER_DUMP_SIGNAL: what every task
-- of a running program is doing.
local tether = require "tether"
local helper = require "spec.helper"

local SCALE = helper.time_scale

-- "task_tree_spec.lua:N" for the line after the caller's: where the next call is.
local function next_line()
  local info = debug.getinfo(2, "Sl")
  return ("%s:%d"):format(info.short_src, info.currentline + 1)
end

-- Every task node of a tree, by name.
local function tasks_by_name(tree)
  local found = {}
  local function walk(node)
    if node.kind == "task" then
      found[node.name] = node
    else
      for _, child in ipairs(node.children) do walk(child) end
    end
  end
  walk(tree)
  return found
end

-- Starts blocking(mark) as a task named `name`; returns what it marked before blocking.
local function blocked_task(tg, name, blocking)
  local mark = {}
  tg:start_soon(name, blocking, mark)
  tether.wait_all_tasks_blocked()
  return mark.where
end

describe("tether.task_tree", function()
  it("nests scopes and groups with their fields, and lists each task under its innermost "
    .. "scope", function()
    local tree = helper.run(function()
      local result
      local outer = tether.CancelScope{ deadline = math.huge, shield = true }
      outer:run(function()
        tether.task_group(function(tg)
          tg:start_soon("child", function()
            tether.move_on_after(100):run(tether.sleep_forever)
          end)
          tether.wait_all_tasks_blocked()
          result = tether.task_tree()
          tg.cancel_scope:cancel()
        end)
      end)
      return result
    end)
    assert.equal("run", tree.kind)
    assert.equal(1, #tree.children)
    local scope = tree.children[1]
    assert.equal("scope", scope.kind)
    assert.equal(math.huge, scope.deadline)
    assert.is_true(scope.shield)
    assert.is_false(scope.cancel_called)
    local group = scope.children[1]
    assert.equal("group", group.kind)
    assert.is_false(group.cancel_called)
    local main, inner = group.children[1], group.children[2]
    assert.equal("task", main.kind)
    assert.equal("running", main.state)
    assert.is_nil(main.waiting_on)
    assert.is_number(main.id)
    assert.equal("scope", inner.kind)
    assert.is_true(inner.deadline < math.huge)
    local child = inner.children[1]
    assert.equal("child", child.name)
    assert.equal("blocked", child.state)
    assert.equal("sleep_forever", child.waiting_on)
  end)

  it("shows a task that has not run yet as ready, and a cancelled scope", function()
    local nodes = helper.run(function()
      local result
      tether.task_group(function(tg)
        tg:start_soon("not yet", function() end)
        tg.cancel_scope:cancel()
        result = tether.task_tree().children[1]
      end)
      return result
    end)
    assert.equal("group", nodes.kind)
    assert.is_true(nodes.cancel_called)
    local task = tasks_by_name(nodes)["not yet"]
    assert.equal("ready", task.state)
    assert.is_nil(task.waiting_on)
  end)

  it("says what each blocked task waits on, and where, for each kind of wait", function()
    local seen, expected = {}, {}
    helper.run(function()
      local send, receive = tether.create_memory_object_stream()
      local full_send = tether.create_memory_object_stream()
      local a = tether.socketpair()
      local listener = tether.listen_tcp{ host = "127.0.0.1" }
      local udp = tether.open_udp{ host = "127.0.0.1" }
      local signals <close> = tether.open_signal_receiver("SIGUSR2")
      local event, lock = tether.Event(), tether.Lock()
      local semaphore = tether.Semaphore(0)
      local limiter = tether.CapacityLimiter(1)
      local condition = tether.Condition()
      limiter:acquire_nowait()
      lock:acquire()
      local cases = {
        { "Event", "Event", function() event:wait() end },
        { "Lock", "Lock", function() lock:acquire() end },
        { "Semaphore", "Semaphore", function() semaphore:acquire() end },
        { "CapacityLimiter", "CapacityLimiter", function() limiter:acquire() end },
        { "memory receive", "memory stream receive", function() receive:receive() end },
        { "memory send", "memory stream send", function() full_send:send(1) end },
        { "byte read", "byte stream read", function() a:receive() end },
        { "signals", "signal receiver", function() signals:receive() end },
        { "accept", "accept", function() listener:accept() end },
        { "udp", "UDP receive", function() udp:receive() end },
        { "sleep", "^sleep until [%d.]+ %(in [%d.]+ s%)$", function() tether.sleep(1000) end },
        { "group exit", "the end of its task group's children", function()
          tether.task_group(function(tg) tg:start_soon(tether.sleep_forever) end)
        end },
      }
      tether.task_group(function(tg)
        for _, case in ipairs(cases) do
          local name, what, fn = case[1], case[2], case[3]
          local info = debug.getinfo(fn, "S") -- one-line functions: they block there
          expected[name] = { what = what, where = info.short_src .. ":" .. info.linedefined }
          tg:start_soon(name, fn)
        end
        tg:start_soon("condition", function()
          local _guard <close> = condition:acquire()
          expected.condition = { what = "Condition", where = next_line() }
          condition:wait()
        end)
        tether.wait_all_tasks_blocked()
        for name, node in pairs(tasks_by_name(tether.task_tree())) do seen[name] = node end
        tg.cancel_scope:cancel()
      end)
      lock:release()
      send:close()
      a:close()
      listener:close()
      udp:close()
    end)
    for name, want in pairs(expected) do
      local node = seen[name]
      assert.is_table(node, "no task " .. name)
      assert.equal("blocked", node.state, name)
      if want.what:sub(1, 1) == "^" then
        assert.matches(want.what, node.waiting_on, nil, false, name)
      else
        assert.equal(want.what, node.waiting_on, name)
      end
    end
    -- where: the line of the user's call, not a line of tether's own Lua files
    for _, name in ipairs { "Event", "Lock", "memory receive", "byte read", "condition" } do
      local where = expected[name].where
      assert.equal(where:match "[^/]*$", seen[name].where:match "[^/]*$", name)
      assert.is_truthy(seen[name].traceback:find(seen[name].where, 1, true), name)
    end
  end)

  it("shows tg:start waiting for its child, and wait_all_tasks_blocked", function()
    local seen = helper.run(function()
      local result
      local started = tether.Event()
      tether.task_group(function(tg)
        tg:start_soon("starter", function()
          tg:start(function(task_status)
            started:wait()
            task_status:started()
          end)
        end)
        tg:start_soon("waiter", tether.wait_all_tasks_blocked)
        tether.checkpoint() -- both block; the waiter waits for this task too
        tether.checkpoint()
        result = tasks_by_name(tether.task_tree())
        started:set()
      end)
      return result
    end)
    assert.matches("^tg:start", seen.starter.waiting_on)
    assert.equal("wait_all_tasks_blocked", seen.waiter.waiting_on)
  end)

  it("raises outside tether.run", function()
    helper.misuse("^tether.task_tree: called outside tether.run", tether.task_tree)
  end)
end)

describe("tether.format_task_tree", function()
  it("renders scopes, groups and each task's name, state, wait and where", function()
    local text, where = helper.run(function()
      local result, line
      tether.task_group(function(tg)
        line = blocked_task(tg, "sleeper", function(mark)
          mark.where = next_line()
          tether.sleep(50)
        end)
        tether.move_on_after(10):run(function()
          result = tether.format_task_tree()
        end)
        tg.cancel_scope:cancel()
      end)
      return result, line
    end)
    assert.matches("^run\n", text)
    assert.is_truthy(text:find("\n  task group\n", 1, true), text)
    assert.matches('task %d+ "sleeper": blocked on sleep until [%d.]+ %(in [%d.]+ s%) at ', text)
    assert.is_truthy(text:find(where, 1, true), text)
    assert.matches("cancel scope, deadline [%d.]+ %(in [%d.]+ s%)", text)
    assert.matches(': running', text)
  end)

  it("refuses a value that is not a tree", function()
    helper.misuse("^tether.format_task_tree: expected a tree", tether.format_task_tree, 5)
  end)
end)

describe("TETHER_DUMP_SIGNAL", function()
  local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end
  -- Under ASan the specs run with LD_PRELOAD set to the sanitizer runtime: only lua5.4
  -- keeps it (LeakSanitizer fails uninstrumented tools such as mktemp and grep).
  local preload = os.getenv("LD_PRELOAD")
  local LUA = (preload and ("LD_PRELOAD=" .. q(preload) .. " ") or "") .. q(helper.lua5_4)

  -- The child: two named tasks block; SIGUSR1 ends it after the parent saw the dump.
  local CHILD = [[
local tether = require "tether"
tether.run(function()
  local usr1 <close> = tether.open_signal_receiver("SIGUSR1")
  tether.task_group(function(tg)
    tg:start_soon("stuck-on-event", function()
      tether.Event():wait()
    end)
    tg:start_soon("stuck-sleeping", function()
      tether.sleep(3600)
    end)
    tether.wait_all_tasks_blocked()
    io.stdout:write("all blocked in ", tether.getpid(), "\n") io.stdout:flush()
    usr1:receive()
    io.stdout:write("still running after the dump\n") io.stdout:flush()
    tg.cancel_scope:cancel()
  end)
end)
io.stdout:write("run returned\n") io.stdout:flush()
]]

  -- Runs CHILD with `env` (shell assignments) after `prefix`; once it says "all
  -- blocked" sends SIGQUIT, waits for `wait_for` in its output (nil: none), then
  -- sends SIGUSR1. Returns the output and exit status.
  local function dump_child(env, prefix, wait_for)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    assert(f:write(CHILD))
    assert(f:close())
    local polls = math.ceil(20 * SCALE / 0.02)
    local script = table.concat({
      'out=$(mktemp) || exit 99',
      'trap \'rm -f "$out"\' EXIT',
      -- timeout resets what it catches, SIGQUIT too: the prefix runs inside it
      ('env LUA_PATH_5_4=%s LUA_CPATH_5_4=%s %s timeout -k 5 %d sh -c %s >"$out" 2>&1 &'):format(
        q(package.path), q(package.cpath), env, math.ceil(60 * SCALE),
        q(("%s; exec env %s %s"):format(prefix or ":", LUA, q(path)))),
      'pid=$!',
      'wait_for() {',
      '  n=0',
      '  until grep -qF -- "$1" "$out"; do',
      '    n=$((n + 1))',
      ('    if [ $n -gt %d ]; then echo "[gave up waiting for $1]"; return 1; fi'):format(polls),
      '    sleep 0.02',
      '  done',
      '}',
      'wait_for "all blocked" && child=$(sed -n "s/^all blocked in //p" "$out")',
      'kill -QUIT $child',
      wait_for and ('wait_for %s'):format(q(wait_for)) or ':',
      'kill -USR1 $child',
      'wait $pid; status=$?',
      'cat "$out"',
      'echo "[exit status $status]"',
    }, "\n")
    local p = assert(io.popen("exec env -u LD_PRELOAD sh -c " .. q(script), "r"))
    local output = p:read("a")
    p:close()
    os.remove(path)
    return output, tonumber(output:match("%[exit status (%d+)%]%s*$"))
  end

  it("prints the blocked tasks' names and file:line to stderr, and the program goes on",
    function()
      local output, status = dump_child("TETHER_DUMP_SIGNAL=SIGQUIT", nil, "stuck-sleeping")
      assert.equal(0, status, output)
      assert.is_truthy(output:find("task tree (TETHER_DUMP_SIGNAL)", 1, true), output)
      assert.matches('"stuck%-on%-event": blocked on Event at [^\n]*:6\n', output)
      assert.matches('"stuck%-sleeping": blocked on sleep until [^\n]* at [^\n]*:9\n', output)
      assert.is_truthy(output:find("still running after the dump\nrun returned", 1, true),
        output)
    end)

  it("takes QUIT and a number too", function()
    for _, value in ipairs { "QUIT", "3" } do
      local output, status = dump_child("TETHER_DUMP_SIGNAL=" .. value, nil, "stuck-sleeping")
      assert.equal(0, status, output)
      assert.matches('"stuck%-on%-event": blocked on Event', output)
    end
  end)

  it("leaves a signal that was ignored when run started ignored", function()
    local output, status = dump_child("TETHER_DUMP_SIGNAL=SIGQUIT", "trap '' QUIT", nil)
    assert.equal(0, status, output)
    assert.is_falsy(output:find("task tree", 1, true), output)
    assert.is_truthy(output:find("still running after the dump", 1, true), output)
  end)

  -- Runs code in a child lua5.4 with `env` (shell assignments); returns its output
  -- (stdout and stderr) and status (128 + N when signal N ended it).
  local function run_child(env, code)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    assert(f:write(code))
    assert(f:close())
    local p = assert(io.popen(("exec env -u LD_PRELOAD sh -c %s </dev/null 2>&1"):format(q(
      ("ulimit -c 0; exec env LUA_PATH_5_4=%s LUA_CPATH_5_4=%s %s timeout -k 5 %d env %s %s")
        :format(q(package.path), q(package.cpath), env, math.ceil(60 * SCALE), LUA, q(path)))),
      "r"))
    local output = p:read("a")
    local _, how, n = p:close()
    os.remove(path)
    return output, how == "signal" and 128 + n or n
  end

  it("gives the signal its disposition back when run returns", function()
    local output, status = run_child("TETHER_DUMP_SIGNAL=SIGQUIT", [[
      local tether = require "tether"
      tether.run(function() end)
      io.stdout:write("after run\n") io.stdout:flush()
      tether.kill(tether.getpid(), "SIGQUIT") -- the default action ends the process
      tether.run(function() tether.sleep(0.01) end)
      io.stdout:write("survived\n")
    ]])
    assert.equal(128 + tether.SIGQUIT, status, output)
    assert.is_truthy(output:find("after run", 1, true), output)
    assert.is_falsy(output:find("survived", 1, true), output)
  end)

  it("makes run refuse a value that names no signal tether can watch", function()
    for value, message in pairs {
      NOPE = "tether.run: TETHER_DUMP_SIGNAL: unknown signal name 'NOPE'",
      SIGINT = "tether.run: TETHER_DUMP_SIGNAL: SIGINT is Ctrl+C; choose another signal",
      KILL = "tether.run: TETHER_DUMP_SIGNAL: SIGKILL cannot be caught",
      ["999"] = "tether.run: TETHER_DUMP_SIGNAL: unknown signal number 999",
    } do
      local output, status = run_child("TETHER_DUMP_SIGNAL=" .. value, [[
        local tether = require "tether"
        local ok, err = pcall(tether.run, function() print("the main task ran") end)
        print(ok, err)
      ]])
      assert.equal(0, status, output)
      assert.is_truthy(output:find("false\t" .. message, 1, true), output)
      assert.is_falsy(output:find("the main task ran", 1, true), output)
    end
  end)

  it("has no effect when unset or empty", function()
    local output, status = run_child("TETHER_DUMP_SIGNAL=", [[
      local tether = require "tether"
      print(tether.run(function() return "ok" end))
    ]])
    assert.equal(0, status, output)
    assert.equal("ok\n", output)
  end)
end)
