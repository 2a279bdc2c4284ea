-- File (tether.open_file): every read format compared byte for byte with Lua's own io
-- on the same files, lines, write, seek, errors, cancellation, misuse, descriptors.

local tether = require "tether"
local helper = require "spec.helper"

do
  local before, after = helper.descriptor_check("the file specs")
  setup(before)
  teardown(after)
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))

local function put(name, data)
  return helper.write_file(dir .. "/" .. name, data)
end

local slurp = helper.read_file

-- A 10 MB text: lines from 0 to ~300 bytes, a few of 1.5 MB (longer than the largest
-- read-ahead block), \r\n here and there.
local function big_text()
  local parts, size, i = {}, 0, 0
  while size < 10 * 1024 * 1024 do
    i = i + 1
    local line
    if i % 5000 == 0 then
      line = ("x"):rep(1536 * 1024)
    else
      line = ("%d "):format(i) .. ("abcdefghij"):rep(i % 31) .. (i % 7 == 0 and "\r" or "")
    end
    parts[#parts + 1] = line
    size = size + #line + 1
  end
  return table.concat(parts, "\n") .. "\n"
end

local function binary()
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  return table.concat(bytes):rep(20) .. "\0\n\0"
end

local files = {
  empty = put("empty", ""),
  no_final_newline = put("no_final_newline", "one\ntwo\n\nthree"),
  crlf = put("crlf", "one\r\ntwo\r\n\r\nthree\r\n"),
  binary = put("binary", binary()),
  numbers = put("numbers", "  12 0x1F -3.5e2\n 7.25 +4 0x1p4 .5 1e 99abc 12"),
}
local big = put("big", big_text())

-- Reads the whole file with formats `fmts` (repeated) through both APIs; the two
-- sequences of results must be equal.
local function compare(path, fmts, max_steps)
  local expected, got = {}, {}
  local f = assert(io.open(path, "rb"))
  for step = 1, max_steps do
    local r = table.pack(f:read(table.unpack(fmts)))
    expected[step] = r
    if r[r.n] == nil or (fmts[1] == "a" and r[1] == "") then break end
  end
  f:close()
  local tf <close> = tether.open_file(path)
  for step = 1, #expected do
    got[step] = table.pack(tf:read(table.unpack(fmts)))
  end
  assert.equal(#expected, #got)
  for step = 1, #expected do
    local e, g = expected[step], got[step]
    assert(e.n == g.n, ("step %d: %d results from io, %d from tether"):format(step, e.n, g.n))
    for i = 1, e.n do
      if e[i] ~= g[i] or math.type(e[i]) ~= math.type(g[i]) then
        error(("%s with %s, step %d, result %d: io read %q, tether read %q"):format(
          path, table.concat(fmts, ","), step, i, tostring(e[i]), tostring(g[i])))
      end
    end
  end
end

local FORMATS = {
  { "l" }, { "L" }, { "a" }, { "n" }, { 0 }, { 1 }, { 7 }, { 4096 }, { 65536 },
  { "l", "L" }, { 3, "l", 0 }, { "n", "l" }, { "*l" }, { "L", 5, "n" },
}

describe("file:read", function()
  it("reads every format as Lua's io does, on small files", function()
    helper.run_within(60, function()
      for name, path in pairs(files) do
        for _, fmts in ipairs(FORMATS) do
          -- (read(0) consumes nothing: it returns "" until the end, for ever)
          local ok, err = pcall(compare, path, fmts, fmts[1] == 0 and 50 or 20000)
          if not ok then error(name .. ": " .. tostring(err), 0) end
        end
      end
    end)
  end)

  it("reads a 10 MB file as Lua's io does", function()
    helper.run_within(120, function()
      for _, fmts in ipairs { { "l" }, { "L" }, { "a" }, { 65536 }, { 4096, "l" }, { 1000000 } } do
        compare(big, fmts, 1000000)
      end
    end)
  end)

  it("reads the default format 'l' without arguments", function()
    helper.run(function()
      local f <close> = tether.open_file(files.no_final_newline)
      assert.same({ "one", "two", "", "three" }, { f:read(), f:read(), f:read(), f:read() })
      assert.is_nil(f:read())
    end)
  end)

  it("iterates lines with formats as Lua's io does", function()
    helper.run(function()
      for _, fmts in ipairs { {}, { "L" }, { 2 }, { "l", "n" } } do
        for _, path in pairs(files) do
          local expected, got = {}, {}
          local f = assert(io.open(path, "rb"))
          for a, b in f:lines(table.unpack(fmts)) do expected[#expected + 1] = { a, b } end
          f:close()
          local tf <close> = tether.open_file(path)
          for a, b in tf:lines(table.unpack(fmts)) do got[#got + 1] = { a, b } end
          assert.same(expected, got)
        end
      end
    end)
  end)
end)

describe("file:seek", function()
  it("moves and tells the position as Lua's io does", function()
    helper.run(function()
      local f = assert(io.open(files.binary, "rb"))
      local tf <close> = tether.open_file(files.binary, "rb")
      local moves = {
        { "cur" }, { "set", 10 }, { "cur", 5 }, { "cur", -3 }, { "end" }, { "end", -100 },
        { "set" }, { "set", 5120 }, { "cur", 1000 },
      }
      for _, m in ipairs(moves) do
        assert.equal(f:seek(m[1], m[2]), tf:seek(m[1], m[2]))
        assert.equal(f:read(17), tf:read(17))
        assert.equal(f:seek(), tf:seek())
      end
      f:close()
    end)
  end)

  it("raises OSError EINVAL before the start of the file", function()
    helper.run(function()
      local f <close> = tether.open_file(files.crlf)
      local err = helper.error_of(f.seek, f, "set", -1)
      assert.is_true(tether.is(err, tether.OSError))
      assert.equal("EINVAL", err.code)
      assert.equal(0, f:seek())
    end)
  end)
end)

describe("file:write", function()
  it("writes strings and numbers as Lua's io does, and returns the file", function()
    helper.run(function()
      local expected_path, path = dir .. "/w_io", dir .. "/w_tether"
      local f = assert(io.open(expected_path, "w"))
      f:write("a", 1, 2.5, -0.0, 1e100, math.maxinteger, 2^53, "\n", "", "\0z")
      f:close()
      local tf <close> = tether.open_file(path, "w")
      assert.equal(tf, tf:write("a", 1, 2.5, -0.0, 1e100, math.maxinteger, 2^53, "\n"))
      assert.equal(tf, tf:write("", "\0z"))
      assert.is_true(tf:flush())
      tf:close()
      assert.equal(slurp(expected_path), slurp(path))
    end)
  end)

  it("writes at the position in r+ mode and appends in a mode", function()
    helper.run(function()
      local path = put("rw", "0123456789")
      local f <close> = tether.open_file(path, "r+")
      assert.equal("012", f:read(3))
      f:write("abc")
      assert.equal(6, f:seek())
      assert.equal("6789", f:read("a"))
      f:close()
      assert.equal("012abc6789", slurp(path))
      local a <close> = tether.open_file(path, "a+")
      a:write("XY")
      assert.equal(12, a:seek())
      a:seek("set", 0)
      assert.equal("012abc6789XY", a:read("a"))
      a:close()
      local w <close> = tether.open_file(path, "w+")
      assert.is_nil(w:read("l"))
      w:write("new\nfile")
      w:seek("set")
      assert.same({ "new", "file" }, { w:read("l", "l") })
    end)
  end)

  it("has no effect when its task is already cancelled", function()
    helper.run(function()
      local path = put("cancelled_write", "")
      local f <close> = tether.open_file(path, "w")
      assert.equal("Cancelled", helper.outcome_when_cancelled(function() f:write("x") end))
      f:close()
      assert.equal("", slurp(path))
    end)
  end)
end)

describe("tether.open_file errors", function()
  it("raise OSError with code, errno, op and target", function()
    helper.run(function()
      local missing = dir .. "/no/such/file"
      local err = helper.error_of(tether.open_file, missing)
      assert.is_true(tether.is(err, tether.OSError))
      assert.equal("ENOENT", err.code)
      assert.equal(2, err.errno)
      assert.equal("open", err.op)
      assert.equal(missing, err.target)
      assert.matches("^tether.OSError: open .*: ENOENT: ", tostring(err))
      err = helper.error_of(tether.open_file, dir, "w")
      assert.equal("EISDIR", err.code)
    end)
  end)

  it("raise OSError EACCES for a file the process may not read", function()
    local id = io.popen("id -u")
    local uid = id:read("l")
    id:close()
    if uid == "0" then
      pending("running as root: permissions do not stop root from opening files")
      return
    end
    helper.run(function()
      local path = put("secret", "s")
      assert(os.execute("chmod 000 " .. path))
      local err = helper.error_of(tether.open_file, path)
      assert.equal("EACCES", err.code)
      assert.equal(path, err.target)
    end)
  end)

  it("reading a write-only file raises OSError EBADF", function()
    helper.run(function()
      local f <close> = tether.open_file(dir .. "/wo", "w")
      local err = helper.error_of(f.read, f, "l")
      assert.equal("EBADF", err.code)
      assert.equal("read", err.op)
    end)
  end)
end)

describe("File misuse", function()
  it("raises errors naming the function", function()
    helper.run(function()
      helper.misuse("^tether.open_file: path must be a string", tether.open_file, 1)
      helper.misuse("^tether.open_file: path must not contain NUL bytes", tether.open_file,
        "/etc/hosts\0.bak")
      helper.misuse("^tether.open_file: invalid mode 'rw'", tether.open_file, files.crlf, "rw")
      helper.misuse("^tether.open_file: mode must be a string", tether.open_file, files.crlf, 1)
      local f = tether.open_file(files.crlf)
      helper.misuse("^file:read: argument #1: invalid format", f.read, f, "x")
      helper.misuse("^file:read: argument #2: a count must be", f.read, f, "l", -1)
      helper.misuse("^file:lines: argument #1: invalid format", f.lines, f, {})
      helper.misuse("^file:write: argument #2 must be a string or a number", f.write, f, "a", {})
      helper.misuse("^file:seek: whence must be", f.seek, f, "middle")
      helper.misuse("^file:seek: offset must be an integer", f.seek, f, "set", 1.5)
      helper.misuse("^file:read: expected a tether.File as self", f.read, "x")
      assert.is_true(f:close())
      assert.matches("closed", tostring(f))
      helper.raises("ClosedResourceError", f.read, f)
      helper.raises("ClosedResourceError", f.write, f, "x")
      helper.raises("ClosedResourceError", f.close, f)
      helper.assert_task_still_works()
    end)
    helper.misuse("^tether.open_file: called outside tether.run", tether.open_file, files.crlf)
  end)

  it("lets one task at a time wait on a file", function()
    helper.run(function()
      local f <close> = tether.open_file(big)
      tether.task_group(function(tg)
        tg:start_soon(function() f:read(4096) end)
        tether.checkpoint() -- the reader is now waiting
        helper.raises("BusyResourceError", f.read, f, 1)
      end)
    end)
  end)
end)

describe("A cancelled read", function()
  it("leaves the position and the data as they were", function()
    helper.run_within(60, function()
      local expected = slurp(big)
      local cancelled, returned = 0, 0
      local f <close> = tether.open_file(big)
      local pos = 0
      -- Reads from the page cache never wait: the file leaves the cache before each
      -- read, so that the read waits for the disk in the thread pool.
      local uncache = "dd if=" .. big .. " iflag=nocache count=0 status=none"
      for _ = 1, 100 do
        if cancelled >= 5 then break end
        assert(os.execute(uncache))
        local scope = tether.CancelScope {}
        local data
        tether.task_group(function(tg)
          tg:start_soon(function()
            scope:run(function() data = f:read(600000) end)
          end)
          tether.wait_all_tasks_blocked()
          scope:cancel()
        end)
        if scope.cancelled_caught then
          cancelled = cancelled + 1
          assert.equal(pos, f:seek())
        else
          returned = returned + 1
          assert.equal(expected:sub(pos + 1, pos + 600000), data)
          pos = pos + #data
          if pos >= #expected then pos = f:seek("set", 0) end
        end
      end
      assert.is_true(cancelled > 0, "no read was cancelled while it waited")
      assert.equal(expected:sub(pos + 1, pos + 10), f:read(10))
    end)
  end)

  it("raises Cancelled at once in a cancelled scope and reads nothing", function()
    helper.run(function()
      local f <close> = tether.open_file(files.crlf)
      assert.equal("Cancelled", helper.outcome_when_cancelled(function() f:read("l") end))
      assert.equal("one\r", f:read("l"))
    end)
  end)
end)

describe("A File", function()
  it("closes with <close>, with close(), and when collected", function()
    local open = helper.open_descriptors()
    helper.run(function()
      do
        local _f <close> = tether.open_file(files.crlf)
      end
      tether.open_file(files.crlf):close()
      local _ = tether.open_file(files.crlf)
    end)
    assert.equal(open, helper.open_descriptors())
  end)

  it("reads a pipe in order (no positions)", function()
    helper.run(function()
      local fifo = dir .. "/fifo"
      assert(os.execute("mkfifo " .. fifo))
      tether.task_group(function(tg)
        tg:start_soon(function()
          local w <close> = tether.open_file(fifo, "w")
          w:write("line 1\nline 2\n")
        end)
        local r <close> = tether.open_file(fifo)
        assert.same({ "line 1", "line 2" }, { r:read("l", "l") })
        assert.is_nil(r:read("l"))
        assert.equal("ESPIPE", helper.error_of(r.seek, r, "set", 0).code)
      end)
      os.remove(fifo)
    end)
  end)
end)

teardown(function()
  os.execute("rm -rf " .. dir)
end)
