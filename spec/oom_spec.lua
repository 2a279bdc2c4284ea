-- Memory exhaustion (spec/support/oom_host.c): each program of spec/support/oom_programs
-- runs with allocation N failing for a sample of N, in the modes "twice" (the request
-- fails) and "from" (every allocation from N on fails); the host checks the outcome
-- (success or "not enough memory"), that the state runs the program again, that no
-- task, loop, descriptor, signal disposition, signal mask or C memory was left.
-- `make oom` (run by `make check`) sweeps every N in four modes under ASan.
--
-- The host is built here against the build's libtether.a; under ASan (LD_PRELOAD set)
-- the build tools run without LD_PRELOAD and the host keeps it, so LeakSanitizer
-- checks it too.

local helper = require "spec.helper"
local chost = require "spec.support.chost"

local SCALE = helper.time_scale or 1
local PRELOAD = os.getenv("LD_PRELOAD")
local STRIDE = 7 -- every STRIDE-th allocation: a sample that keeps `make test` quick

local q, shell, ROOT = chost.quote, chost.shell, chost.root
local TMP

local function host()
  if TMP then return TMP .. "/oom_host" end
  TMP = (shell("mktemp -d"):gsub("\n$", ""))
  local failure = chost.compile(TMP, { {
    name = "oom_host",
    flags = "-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free",
  } })
  local binary = io.open(TMP .. "/oom_host")
  assert(not failure and binary, "cannot build the host:\n"
    .. (failure or chost.log(TMP, "oom_host")))
  binary:close()
  return TMP .. "/oom_host"
end

-- Runs the host; returns its stdout (stderr: tether's reports, dropped) and status.
local function sweep(args)
  local cmd = ("cd %s && timeout -k 5 %d %s%s %s 2>/dev/null"):format(
      q(ROOT), math.ceil(300 * SCALE), PRELOAD and ("env LD_PRELOAD=" .. q(PRELOAD) .. " ") or "",
      q(host()), args)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, how, code = p:close()
  return out, how == "signal" and 128 + code or code
end

describe("memory exhaustion", function()
  teardown(function()
    if TMP then shell("rm -rf " .. q(TMP)) end
  end)

  for _, name in ipairs { "open", "groups", "sync", "signal", "attached", "streams", "files",
                          "coroutine", "unix", "udp" } do
    it("spec/support/oom_programs/" .. name .. ".lua: any allocation may fail, and "
       .. "nothing is lost, leaked or left changed", function()
      local out, status = sweep(("--modes twice,from --stride %d %s"):format(
          STRIDE, q("spec/support/oom_programs/" .. name .. ".lua")))
      assert(status == 0 and out:match("\nPASS\n$"),
             ("exit status %s; output:\n%s"):format(tostring(status), out))
    end)
  end

  it("the host reports a program that turns a memory error into another error", function()
    local program = TMP and TMP .. "/swallow.lua" or os.tmpname()
    local f = assert(io.open(program, "w"))
    f:write([[
      local tether = require "tether"
      tether.run(function()
        local ok = pcall(function() return { tether.current_task() } end)
        if not ok then error("boom") end
      end)
    ]])
    f:close()
    local out, status = sweep("--modes twice " .. q(program))
    os.remove(program)
    assert.equal(1, status)
    assert.matches("unexpected error: [^\n]*boom", out)
    assert.matches("\nFAIL %(%d+ problems%)\n$", out)
  end)
end)
