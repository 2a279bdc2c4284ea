-- Standard streams and wrap_fd: stdin/stdout/stderr over whatever descriptors 0-2 are
-- (a pipe, a regular file, a terminal through a pty), which stay open and blocking
-- after the run; wrap_fd over a descriptor the program has.

local tether = require "tether"
local helper = require "spec.helper"

do
  local before, after = helper.descriptor_check("the standard stream specs")
  setup(before)
  teardown(after)
end

-- Runs `code` in a child lua5.4 with the shell redirections `redirect` (e.g.
-- "< in.txt"); returns its output (stdout and stderr) and exit status.
local function child(code, redirect)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local cmd = ("LUA_PATH_5_4='%s' LUA_CPATH_5_4='%s' timeout 60 '%s' %s %s 2>&1")
      :format(package.path, package.cpath, helper.lua5_4, path, redirect or "")
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local _, _, status = p:close()
  os.remove(path)
  return out, status
end

local function temp_file(contents)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(contents)
  f:close()
  return path
end

local ECHO_LINES = [[
local tether = require "tether"
tether.run(function()
  local out, inp = tether.stdout(), tether.stdin()
  assert(out == tether.stdout(), "one stream per descriptor while it is open")
  out:send(("kind %s\n"):format(tostring(inp):match("%((%a+),")))
  for line in inp:lines() do out:send("got " .. line .. "\n") end
  out:send("end\n")
end)
io.write("io after the run\n")
]]

describe("tether.stdin and tether.stdout", function()
  it("read and write regular files", function()
    local input = temp_file("alpha\nbeta\r\ngamma")
    local output = os.tmpname()
    local out, status = child(ECHO_LINES, ("< %s > %s"):format(input, output))
    assert.equal(0, status, out)
    local f = assert(io.open(output))
    local text = f:read("a")
    f:close()
    os.remove(input)
    os.remove(output)
    assert.equal("kind file\ngot alpha\ngot beta\ngot gamma\nend\nio after the run\n", text)
  end)

  it("work on pipes, and leave descriptors 0-2 open and blocking after the run", function()
    local code = temp_file(ECHO_LINES .. [[
-- a blocking stdout takes a burst larger than the pipe's buffer
io.write(string.rep("z", 300000), "\n")
io.write("after the burst\n")
]])
    local p = assert(io.popen(("printf 'x\\ny\\n' | LUA_PATH_5_4='%s' LUA_CPATH_5_4='%s' "
      .. "timeout 60 '%s' %s | (sleep 0.2; cat)"):format(package.path, package.cpath,
      helper.lua5_4, code)))
    local out = p:read("a")
    p:close()
    os.remove(code)
    assert.matches("^kind pipe\ngot x\ngot y\nend\nio after the run\n", out)
    assert.matches("z\nafter the burst\n$", out)
  end)

  it("make a terminal stream on a pty: winsize, and raw mode undone when run returns",
    function()
      if os.execute("command -v script >/dev/null 2>&1") ~= true then
        pending("script (bsdutils) is not installed")
        return
      end
      local code = temp_file([[
local tether = require "tether"
tether.run(function()
  local tty = tether.stdin()
  local w, h = tty:winsize()
  print("tty", tostring(tty):match("%((%a+),"), math.type(w), math.type(h))
  tty:set_mode("raw")
end)
]])
      local p = assert(io.popen(("LUA_PATH_5_4='%s' LUA_CPATH_5_4='%s' script -qec "
        .. "\"'%s' %s; stty -a\" /dev/null </dev/null 2>&1"):format(package.path,
        package.cpath, helper.lua5_4, code)))
      local out = p:read("a"):gsub("\r", "")
      p:close()
      os.remove(code)
      assert.matches("tty\ttty\tinteger\tinteger\n", out)
      assert.matches("[^-]icanon", out) -- canonical mode is back
    end)
end)

describe("tether.wrap_fd", function()
  it("wraps a duplicate of a descriptor, which stays open after the stream closes",
    function()
      local out, status = child([[
local tether = require "tether"
tether.run(function()
  local s = tether.wrap_fd(1, { dup = true })
  s:send("through the stream\n")
  s:close()
end)
io.write("descriptor 1 still works\n")
]])
      assert.equal(0, status, out)
      assert.equal("through the stream\ndescriptor 1 still works\n", out)
    end)

  it("refuses bad input with errors naming it", function()
    helper.run(function()
      for _, case in ipairs {
        { "^tether.wrap_fd: fd must be a descriptor", -1 },
        { "^tether.wrap_fd: fd must be a descriptor", "1" },
        { "^tether.wrap_fd: descriptor 987 is not an open", 987 },
        { "^tether.wrap_fd: unknown option", 1, { copy = true } },
      } do
        local err = helper.error_of(tether.wrap_fd, case[2], case[3])
        assert.matches(case[1], err)
      end
    end)
    assert.matches("^tether.stdin: called outside tether.run",
      helper.error_of(tether.stdin))
  end)
end)
