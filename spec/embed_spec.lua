-- Specs for embedding tether in a C host (API.md §8, csrc/tether.h): the example host
-- built against a staged `make install` through pkg-config, and small C programs in
-- spec/support/embed_*.c, each checking one set of rules and printing a transcript:
--
--   embed_threads.c   two loops on two threads, a process-directed signal fans out
--   embed_close.c     tether_shutdown and lua_close with tasks suspended
--   embed_misuse.c    error codes for misuse, never a crash
--   embed_step.c      a host without uv_run: poll(2) + tether_step
--   embed_luv.c       luv and tether on one loop
--
-- and the host of docs/embedding.md ("A complete host"), compiled from the document.
--
-- The programs are compiled once per run, in parallel, against the build's
-- libtether.a.  When TETHER_TEST_TIME_SCALE >= 6 (`make valgrind`) every program runs
-- under valgrind as well.  Under ASan (`make asan-test`, LD_PRELOAD set) the build tools
-- run without LD_PRELOAD and the test programs keep it, so LeakSanitizer checks them.

local helper = require "spec.helper"
local chost = require "spec.support.chost"

local SCALE = helper.time_scale or 1
local VALGRIND = SCALE >= 6
local TIMEOUT = math.ceil(30 * SCALE) -- seconds per program, then it is killed
local PRELOAD = os.getenv("LD_PRELOAD")

local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
local BUILDDIR = os.getenv("BUILDDIR") or "build"

local VALGRIND_CMD = "valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect"
    .. " --error-exitcode=99 --keep-debuginfo=yes"

local DOC = SPEC_DIR .. "/../docs/embedding.md"

local PROGRAMS = {
  doc_host = { pc = "lua5.4 libuv", from_doc = true },
  embed_threads = { pc = "lua5.4 libuv" },
  embed_close = { pc = "lua5.4 libuv" },
  embed_misuse = { pc = "lua5.4 libuv" },
  embed_step = { pc = "lua5.4 libuv" },
  embed_luv = { pc = "lua5.4-luv lua5.4 libuv", optional = "lua5.4-luv" },
  embed_workers = { pc = "lua5.4 libuv" },
}

---------------------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------------------

local q, shell, ROOT = chost.quote, chost.shell, chost.root
local TMP -- per run: binaries, the staged install

local function tmpdir()
  if not TMP then
    local out, status = shell("mktemp -d")
    assert(status == 0, out)
    TMP = out:gsub("\n$", "")
  end
  return TMP
end

-- The command that runs a test program: bounded in time, under valgrind on the
-- valgrind run, with the sanitizer runtime on the ASan run.
local function runner(use_valgrind)
  local cmd = ("timeout -k 5 %d "):format(TIMEOUT)
  if use_valgrind then
    return cmd .. VALGRIND_CMD .. " "
  elseif PRELOAD then
    return cmd .. "env LD_PRELOAD=" .. q(PRELOAD) .. " "
  end
  return cmd
end

-- Which optional pkg-config packages are missing (memoized).
local missing_pc = {}
local function pc_missing(name)
  if missing_pc[name] == nil then
    local _, status = shell("pkg-config --exists " .. q(name))
    missing_pc[name] = status ~= 0
  end
  return missing_pc[name]
end

-- The first C block of the section "## A complete host" of docs/embedding.md.
local function doc_host_source()
  local f = assert(io.open(DOC))
  local text = f:read("a")
  f:close()
  local section = text:match("\n## A complete host\n(.-)\n## ") or ""
  return section:match("```c\n(.-\n)```")
end

-- Compiles every spec/support/embed_*.c at once, in parallel, the first time one is
-- needed.  Returns the binary's path, or nil and the compiler's output.
local compiled
local function program(name)
  if not compiled then
    local dir, list = tmpdir(), {}
    for prog, info in pairs(PROGRAMS) do
      local source
      if info.from_doc then
        source = dir .. "/" .. prog .. ".c"
        local f = assert(io.open(source, "w"))
        f:write(doc_host_source() or "#error no C block under '## A complete host'\n")
        f:close()
      end
      if not (info.optional and pc_missing(info.optional)) then
        list[#list + 1] = { name = prog, source = source, pc = info.pc }
      end
    end
    compiled = { failure = chost.compile(dir, list) }
  end
  if compiled.failure then return nil, compiled.failure end
  local path = tmpdir() .. "/" .. name
  local f = io.open(path)
  if f then
    f:close()
    return path
  end
  return nil, "cannot compile spec/support/" .. name .. ".c:\n" .. chost.log(tmpdir(), name)
end

-- Runs a compiled test program (natively, and under valgrind on the valgrind run
-- unless opts.native).  Returns its output and exit status.
local function run(name, args, opts)
  opts = opts or {}
  local path, err = program(name)
  assert(path, err)
  local use_valgrind = VALGRIND and not opts.native
  return shell(("cd %s && %s%s %s"):format(q(tmpdir()), runner(use_valgrind), q(path),
                                           args or ""))
end

local function lines_of(text)
  local lines = {}
  for line in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local last = text:match("([^\n]+)$")
  if last then lines[#lines + 1] = last end
  return lines
end

-- The output must be exactly these lines: strings match literally, { pattern } as a
-- Lua pattern.
local function assert_transcript(out, status, expected, want_status)
  local got = lines_of(out)
  local ok = #got == #expected
  for i = 1, math.min(#got, #expected) do
    local e = expected[i]
    if type(e) == "table" then
      ok = ok and got[i]:match(e[1]) ~= nil
    else
      ok = ok and got[i] == e
    end
  end
  local want = {}
  for i, e in ipairs(expected) do
    want[i] = type(e) == "table" and ("<pattern> " .. e[1]) or e
  end
  assert(ok and status == (want_status or 0), ("exit status %s; output:\n%s\nwanted "
      .. "(exit status %d):\n%s"):format(tostring(status), out, want_status or 0,
                                          table.concat(want, "\n")))
end

-- The program passed: exit status 0 and "PASS" as its last line.  Returns the output.
local function assert_pass(out, status)
  local lines = lines_of(out)
  assert(status == 0 and lines[#lines] == "PASS",
         ("exit status %s; output:\n%s"):format(tostring(status), out))
  return out
end

local function assert_has(out, line)
  for _, l in ipairs(lines_of(out)) do
    if l == line then return end
  end
  error(("line %q not in the output:\n%s"):format(line, out), 2)
end

---------------------------------------------------------------------------------------
-- The specs
---------------------------------------------------------------------------------------

describe("embedding tether in a C host", function()
  teardown(function()
    if TMP then shell("rm -rf " .. q(TMP)) end
  end)

  it("builds examples/embed against a staged `make install` with pkg-config, and the "
     .. "host runs unattended with no .lua file on disk", function()
    local dir = tmpdir()
    local prefix = dir .. "/prefix"
    -- PCFILE: the staged tether.pc goes to the temporary directory, so build/tether.pc
    -- keeps the prefix of the last plain `make`.
    local out, status = shell(("cd %s && make -s --no-print-directory install PREFIX=%s "
        .. "PCFILE=%s"):format(q(ROOT), q(prefix), q(dir .. "/tether.pc")))
    assert(status == 0, "make install failed:\n" .. out)
    for _, file in ipairs {
      "include/tether.h", "lib/libtether.a", "lib/pkgconfig/tether.pc",
      "lib/lua/5.4/tether/core.so", "share/lua/5.4/tether/init.lua",
    } do
      local f = io.open(prefix .. "/" .. file)
      assert(f, "make install did not install " .. file)
      f:close()
    end

    local pkgconfig = prefix .. "/lib/pkgconfig"
    out, status = shell(("PKG_CONFIG_PATH=%s pkg-config --cflags --libs tether")
        :format(q(pkgconfig)))
    assert(status == 0, out)
    assert.truthy(out:find("-I" .. prefix .. "/include", 1, true), out)
    assert.truthy(out:find("-L" .. prefix .. "/lib", 1, true), out)
    assert.truthy(out:find("-ltether", 1, true), out)
    assert.truthy(out:find("-llua5.4", 1, true), out) -- Requires: lua5.4 libuv
    assert.truthy(out:find("-luv", 1, true), out)

    local host = dir .. "/host"
    out, status = shell(("make -s --no-print-directory -C %s HOST=%s PKG_CONFIG_PATH=%s")
        :format(q(ROOT .. "/examples/embed"), q(host), q(pkgconfig)))
    assert(status == 0, "make -C examples/embed failed:\n" .. out)

    -- From an empty directory, with Lua's search paths pointing nowhere: require
    -- "tether" can only come from tether_openlibs.
    out, status = shell(("mkdir -p %s/empty && cd %s/empty && LUA_PATH_5_4=%s "
        .. "LUA_CPATH_5_4=%s %s%s"):format(q(dir), q(dir), q("/nonexistent/?.lua"),
                                         q("/nonexistent/?.so"), runner(VALGRIND), q(host)))
    assert_transcript(out, status, {
      { "^host: tether %d+%.%d+%.%d+ attached to the host's loop$" },
      { "^host: echo server listening on 127%.0%.0%.1:%d+$" },
      "host: app task started",
      "app: 3 workers done: 1 4 9",
      "host: echo ok (\"hello through the host's echo server\")",
      "host: sending SIGUSR1 to itself",
      "app: signal SIGUSR1 received (1 so far)",
      "host: worker thread started",
      "host: work posted by the worker thread runs on the loop's thread",
      "host: posted task done: task got 500500 from the worker thread",
      "host: the host's own timer kept ticking beside tether",
      "host: shutting tether down",
      "app: signal task stopped after 1 signal(s)",
      { "^host: app task ended by the shutdown: .*Cancelled" },
      "host: loop closed cleanly",
      "host: all checks passed",
    })
  end)

  it("has a complete host of under 40 lines in docs/embedding.md that works", function()
    local source = doc_host_source()
    assert(source, "docs/embedding.md: no ```c block under '## A complete host'")
    local _, nlines = source:gsub("\n", "")
    assert(nlines < 40, ("the host in docs/embedding.md has %d lines"):format(nlines))
    local out, status = run("doc_host")
    assert_transcript(out, status, {
      "task 1", "task 2", "task 3", "ok: all tasks done",
    })
  end)

  it("runs two loops on two threads, each with its own state and SIGUSR2 receiver: "
     .. "one process-directed SIGUSR2 reaches both", function()
    local out, status = run("embed_threads")
    assert_transcript(out, status, {
      "2 loops on 2 threads, each with a SIGUSR2 receiver open",
      "main thread: kill(getpid(), SIGUSR2), once",
      "loop 1: received SIGUSR2, count 1",
      "loop 1: closed (uv_loop_close 0)",
      "loop 2: received SIGUSR2, count 1",
      "loop 2: closed (uv_loop_close 0)",
      "after both loops closed, SIGUSR2 reaches the host's handler",
      "PASS",
    })
  end)

  it("never re-raises a signal every loop read, even when libuv's handler runs on "
     .. "another thread and is preempted mid-delivery", function()
    -- Linux only; never under valgrind (it serialises threads).
    local out, status = run("embed_threads", "race", { native = true })
    if status == 77 then return pending(out) end
    assert_pass(out, status)
  end)

  it("lets tether_shutdown run the cleanup of suspended tasks, and lua_close a state "
     .. "with suspended tasks, after which the loop closes", function()
    local out, status = run("embed_close")
    assert_transcript(out, status, {
      "A: task blocked: sleeping",
      "A: task blocked: in a stream receive",
      "A: task blocked: waiting forever, with a shielded cleanup",
      "A: tether_shutdown",
      "A: cleanup started (shielded, sleeps 20 ms)",
      "A: cleanup finished",
      "A: tether_shutdown returned",
      "A: task 1: raised Cancelled",
      "A: task 2: raised Cancelled",
      "A: task 3: raised Cancelled",
      "B: task blocked: sleeping",
      "B: task blocked: in a stream receive",
      "B: task blocked: in a SIGUSR1 receiver",
      "B: task blocked: in an Event wait",
      "B: task blocked: in a group child (the parent waits in the exit)",
      "B: task blocked: inside a shielded cleanup, while unwinding",
      "B: 8 tasks suspended or ready",
      "B: lua_close without tether_shutdown",
      "B: SIGUSR1 reaches the host's handler after lua_close",
      "B: host loop ran until no handle was left (0 left)",
      "uv_loop_close: 0",
      "PASS",
    })
  end)

  it("runs worker threads on the host's loop, and ends them with tether_shutdown or "
     .. "lua_close while they spin", function()
    local out, status = run("embed_workers")
    assert_transcript(out, status, {
      "A: done 1, ok 1, result 41",
      "B: worker running",
      "B: done 1, ok 0",
      "C: worker running",
      "C: lua_close returned; done 0",
      "handles left: 0",
      "PASS",
    })
  end)

  it("returns error codes for misuse and never crashes", function()
    local out = assert_pass(run("embed_misuse"))
    for _, line in ipairs {
      "tether_spawn before tether_openlibs: -22 (EINVAL)",
      "tether_spawn before tether_attach: -22 (EINVAL)",
      "tether_attach(L, NULL): -22 (EINVAL)",
      "tether_attach again, same loop: -16 (EBUSY)",
      "tether_attach again, another loop: -16 (EBUSY)",
      "tether_spawn(a number): -22 (EINVAL)",
      "task results: ok=1 n=3 first=1",
      "task error: ok=0 n=2 error=boom traceback=yes",
      "a posted callback raised; the next one still ran: yes",
      "tether_post after tether_shutdown: -108 (ESHUTDOWN)",
      "tether_shutdown again: -22 (EINVAL)",
      "tether_attach after tether_shutdown: 0 (ok)",
      "tether_attach inside tether.run: -16 (EBUSY)",
      "tether_attach after tether.run returned: 0 (ok)",
    } do
      assert_has(out, line)
    end
    assert.truthy(out:find("\ntether%.run while attached: tether%.run: "), out)
    assert.truthy(out:find("\ntether: error in a posted callback: a posted callback "
        .. "raised this on purpose\n", 1, true), out)
  end)

  it("refuses tether_shutdown inside a posted callback (uv_run is not reentrant)",
     function()
    local out = assert_pass(run("embed_misuse", "shutdown-in-post"))
    assert_has(out, "tether_shutdown inside a posted callback: -16 (EBUSY)")
  end)

  it("refuses tether_shutdown inside a task instead of waiting for that task forever",
     function()
    local out = assert_pass(run("embed_misuse", "shutdown-in-task"))
    assert_has(out, "tether_shutdown inside a task: -16 (EBUSY)")
  end)

  it("runs tasks in a host that never calls uv_run: poll(2) on tether_backend_fd, "
     .. "tether_backend_timeout, tether_step", function()
    local out, status = run("embed_step")
    assert_transcript(out, status, {
      "host: no uv_run; poll(2) on tether_backend_fd",
      "task: slept 1 of 3",
      "task: slept 2 of 3",
      "task: slept 3 of 3",
      "host: task returned: done",
      { "^host: no busy loop %(%d+ polls%)$" },
      "host: uv_loop_close: 0",
      "PASS",
    })
  end)

  it("steps the same way when the host keeps a handle of its own on the loop", function()
    local out, status = run("embed_step", "host-handle")
    assert_transcript(out, status, {
      "host: no uv_run; poll(2) on tether_backend_fd (the host has a handle of its own "
          .. "on the loop)",
      "task: slept 1 of 3",
      "task: slept 2 of 3",
      "task: slept 3 of 3",
      "host: task returned: done",
      { "^host: no busy loop %(%d+ polls%)$" },
      "host: uv_loop_close: 0",
      "PASS",
    })
  end)

  it("shares the host's loop with luv: luv callbacks wake tasks, tasks await luv, "
     .. "luv's uv.run() drives both", function()
    if pc_missing("lua5.4-luv") then
      return pending("luv interop not checked: pkg-config finds no lua5.4-luv "
          .. "(Debian package lua-luv-dev)")
    end
    local out, status = run("embed_luv")
    assert_transcript(out, status, {
      "script: uv.run() starts",
      "task: luv timer tick 1",
      "task: luv timer tick 2",
      "task: luv timer tick 3",
      "task: stream closed by the luv callback",
      "task: awaited a luv timer",
      "task: awaited luv fs_stat: directory",
      "task: two child tasks awaited luv timers",
      "task: a cancelled luv wait closed its timer",
      "script: uv.run() returned",
      "host: done callback: 1 call(s), ok: task done",
      "host: uv_loop_close: 0",
      "PASS",
    })
  end)

  it("links into a host without name clashes: libtether.a defines no global symbol "
    .. "outside tether_*, tether__* and luaopen_tether*", function()
    local out, status = shell(("cd %s && make -s --no-print-directory staticlib >/dev/null 2>&1 "
      .. "&& nm -g --defined-only %s"):format(q(ROOT), q(BUILDDIR .. "/libtether.a")))
    assert.equals(0, status, out)
    local exported, strays = 0, {}
    for line in out:gmatch("[^\n]+") do
      local kind, name = line:match("^%x+ (%u) ([%w_]+)$")
      if kind and kind:match("[TDBR]") then
        exported = exported + 1
        if not (name:match("^tether_") or name:match("^luaopen_tether")) then
          strays[#strays + 1] = name
        end
      end
    end
    assert.is_true(exported >= 10, "nm listed almost nothing:\n" .. out)
    assert.same({}, strays)
  end)
end)
