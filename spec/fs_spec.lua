-- tether.fs: whole files, stat and friends, directories, links, permissions, dir and
-- watch, their errors and misuse; every call compared with what the system says.

local tether = require "tether"
local helper = require "spec.helper"
local fs = tether.fs

do
  local before, after = helper.descriptor_check("the fs specs")
  setup(before)
  teardown(after)
end

local root = os.tmpname()
os.remove(root)
assert(os.execute("mkdir -p " .. root))

local put, slurp = helper.write_file, helper.read_file

-- The names in a directory, as `ls -A` lists them, sorted.
local function ls(path)
  local p = assert(io.popen("ls -A " .. path))
  local names = {}
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  table.sort(names)
  return names
end

local counter = 0
local function fresh_dir()
  counter = counter + 1
  local path = root .. "/d" .. counter
  assert(os.execute("mkdir " .. path))
  return path
end

describe("fs.read_file", function()
  it("reads files byte for byte", function()
    helper.run(function()
      local d = fresh_dir()
      local bin = {}
      for i = 0, 255 do bin[#bin + 1] = string.char(i) end
      for name, data in pairs { empty = "", text = "a\nb", bin = table.concat(bin):rep(4000) } do
        assert.equal(data, fs.read_file(put(d .. "/" .. name, data)))
      end
      -- /proc says size 0: read until the end anyway
      assert.equal("Name:", fs.read_file("/proc/self/status"):match("^Name:"))
    end)
  end)

  it("raises LimitExceeded over max, OSError for a missing file", function()
    helper.run(function()
      local path = put(fresh_dir() .. "/f", ("x"):rep(100))
      assert.equal(100, #fs.read_file(path, 100))
      local err = helper.error_of(fs.read_file, path, 99)
      assert.is_true(tether.is(err, tether.LimitExceeded))
      assert.equal(99, err.limit)
      err = helper.error_of(fs.read_file, path .. ".missing")
      assert.is_true(tether.is(err, tether.OSError))
      assert.same({ "ENOENT", "open", path .. ".missing" }, { err.code, err.op, err.target })
    end)
  end)

  it("reads many files concurrently", function()
    helper.run(function()
      local d = fresh_dir()
      for i = 1, 200 do put(d .. "/" .. i, ("%d\n"):format(i):rep(i)) end
      local got = {}
      tether.task_group(function(tg)
        for i = 1, 200 do
          tg:start_soon(function() got[i] = fs.read_file(d .. "/" .. i) end)
        end
      end)
      for i = 1, 200 do assert.equal(("%d\n"):format(i):rep(i), got[i]) end
    end)
  end)
end)

describe("fs.write_file", function()
  it("writes, replaces, and with atomic leaves no temporary file", function()
    helper.run(function()
      local d = fresh_dir()
      local path = d .. "/out"
      fs.write_file(path, "first")
      assert.equal("first", slurp(path))
      fs.write_file(path, "second\0", { atomic = true })
      assert.equal("second\0", slurp(path))
      assert.same({ "out" }, ls(d))
      fs.chmod(path, tonumber("640", 8))
      fs.write_file(path, "third", { atomic = true })
      assert.equal(tonumber("640", 8), fs.stat(path).mode)
      assert.same({ "out" }, ls(d))
    end)
  end)

  it("leaves nothing behind when it fails or is cancelled", function()
    helper.run(function()
      local d = fresh_dir()
      local err = helper.error_of(fs.write_file, d .. "/no/dir/file", "x", { atomic = true })
      assert.same({ "ENOENT", "open" }, { err.code, err.op })
      err = helper.error_of(fs.write_file, d, "x", { atomic = true })
      assert.same({ "EISDIR", "rename" }, { err.code, err.op })
      assert.equal("Cancelled", helper.outcome_when_cancelled(function()
        fs.write_file(d .. "/cancelled", "x", { atomic = true })
      end))
      assert.same({}, ls(d))
    end)
  end)

  it("under concurrent atomic writes, readers see one whole content", function()
    helper.run_within(60, function()
      local path = fresh_dir() .. "/shared"
      local a, b = ("a"):rep(200000), ("b"):rep(200000)
      fs.write_file(path, a)
      tether.task_group(function(tg)
        for i = 1, 20 do
          tg:start_soon(function()
            fs.write_file(path, i % 2 == 0 and a or b, { atomic = true })
          end)
          tg:start_soon(function()
            local data = fs.read_file(path)
            assert.is_true(data == a or data == b)
          end)
        end
      end)
    end)
  end)
end)

describe("fs.stat, lstat and exists", function()
  it("describe files, directories and links", function()
    helper.run(function()
      local d = fresh_dir()
      local path = put(d .. "/f", "12345")
      assert(os.execute(("chmod 604 %s && ln -s f %s/l && ln -s nowhere %s/dangling")
        :format(path, d, d)))
      local st = fs.stat(path)
      assert.equal("file", st.type)
      assert.equal(5, st.size)
      assert.equal(tonumber("604", 8), st.mode)
      assert.equal(1, st.nlink)
      assert.is_true(math.abs(st.mtime - os.time()) < 60)
      assert.equal("float", math.type(st.mtime))
      for _, k in ipairs { "atime", "ctime" } do assert.equal("float", math.type(st[k])) end
      for _, k in ipairs { "ino", "dev", "uid", "gid" } do
        assert.equal("integer", math.type(st[k]))
      end
      assert.equal("dir", fs.stat(d).type)
      assert.equal("file", fs.stat(d .. "/l").type)
      assert.equal("link", fs.lstat(d .. "/l").type)
      assert.equal(st.ino, fs.stat(d .. "/l").ino)
      assert.is_true(fs.exists(path))
      assert.is_true(fs.exists(d .. "/l"))
      assert.is_false(fs.exists(d .. "/dangling"))
      assert.is_false(fs.exists(d .. "/missing"))
      assert.is_false(fs.exists(path .. "/below_a_file"))
      local err = helper.error_of(fs.stat, d .. "/missing")
      assert.same({ "ENOENT", "stat", d .. "/missing" }, { err.code, err.op, err.target })
    end)
  end)
end)

describe("fs.mkdir and fs.remove", function()
  it("make directories, with parents", function()
    helper.run(function()
      local d = fresh_dir()
      fs.mkdir(d .. "/a")
      assert.equal("dir", fs.stat(d .. "/a").type)
      assert.equal("EEXIST", helper.error_of(fs.mkdir, d .. "/a").code)
      fs.mkdir(d .. "/a", { parents = true })
      fs.mkdir(d .. "/b/c/d/", { parents = true })
      assert.equal("dir", fs.stat(d .. "/b/c/d").type)
      assert.equal("ENOENT", helper.error_of(fs.mkdir, d .. "/x/y").code)
      put(d .. "/file", "")
      assert.equal("EEXIST", helper.error_of(fs.mkdir, d .. "/file", { parents = true }).code)
      assert.equal("ENOTDIR", helper.error_of(fs.mkdir, d .. "/file/x", { parents = true }).code)
      fs.mkdir(d .. "/m", { mode = tonumber("700", 8) })
      assert.equal(tonumber("700", 8), fs.stat(d .. "/m").mode)
    end)
  end)

  it("remove files, empty directories, and trees with recursive", function()
    helper.run(function()
      local d = fresh_dir()
      fs.mkdir(d .. "/t/u/v", { parents = true })
      for i = 1, 100 do put(d .. "/t/u/" .. i, "x") end
      assert(os.execute(("ln -s %s %s/t/link_out"):format(root, d)))
      put(d .. "/f", "")
      fs.remove(d .. "/f")
      assert.equal("ENOTEMPTY", helper.error_of(fs.remove, d .. "/t").code)
      fs.remove(d .. "/t", { recursive = true })
      assert.same({}, ls(d))
      assert.is_true(fs.exists(root)) -- the link was removed, not followed
      assert.equal("ENOENT", helper.error_of(fs.remove, d .. "/t").code)
    end)
  end)
end)

describe("fs.rename, copy, symlink, readlink, realpath, chmod", function()
  it("do what their system calls do", function()
    helper.run(function()
      local d = fresh_dir()
      put(d .. "/a", "data")
      fs.rename(d .. "/a", d .. "/b")
      assert.same({ "b" }, ls(d))
      fs.copy(d .. "/b", d .. "/c")
      assert.equal("data", slurp(d .. "/c"))
      fs.symlink("c", d .. "/l")
      assert.equal("c", fs.readlink(d .. "/l"))
      assert.equal(fs.realpath(d) .. "/c", fs.realpath(d .. "/./l"))
      fs.chmod(d .. "/c", tonumber("600", 8))
      assert.equal(tonumber("600", 8), fs.stat(d .. "/c").mode)
      local err = helper.error_of(fs.rename, d .. "/missing", d .. "/x")
      assert.same({ "ENOENT", "rename", d .. "/missing" }, { err.code, err.op, err.target })
      assert.equal("EEXIST", helper.error_of(fs.symlink, "c", d .. "/b").code)
      assert.equal("EINVAL", helper.error_of(fs.readlink, d .. "/b").code)
      assert.equal("ENOENT", helper.error_of(fs.copy, d .. "/missing", d .. "/y").code)
    end)
  end)
end)

describe("fs.dir", function()
  it("lists exactly what is in a directory, with kinds", function()
    helper.run(function()
      local d = fresh_dir()
      local expected = {}
      for i = 1, 150 do
        put(("%s/f%03d"):format(d, i), "")
        expected[("f%03d"):format(i)] = "file"
      end
      fs.mkdir(d .. "/sub"); expected.sub = "dir"
      fs.symlink("f001", d .. "/link"); expected.link = "link"
      local got = {}
      for name, kind in fs.dir(d) do
        assert.is_nil(got[name])
        got[name] = kind
      end
      assert.same(expected, got)
      for _ in fs.dir(fresh_dir()) do error("an empty directory has no entries") end
    end)
  end)

  it("closes the directory on break, on error and with <close>", function()
    helper.run(function()
      local d = fresh_dir()
      for i = 1, 100 do put(d .. "/" .. i, "") end
      local open = helper.open_descriptors()
      for _ = 1, 20 do
        for _ in fs.dir(d) do break end -- luacheck: ignore 512
        pcall(function() for _ in fs.dir(d) do error("stop") end end)
        local entries <close> = fs.dir(d)
        assert.is_string(entries:next())
      end
      local entries = fs.dir(d)
      entries:close()
      assert.is_nil(entries:next())
      assert.equal(open, helper.open_descriptors())
    end)
  end)

  it("raises OSError for a missing directory", function()
    helper.run(function()
      local err = helper.error_of(fs.dir, root .. "/missing")
      assert.same({ "ENOENT", "opendir", root .. "/missing" }, { err.code, err.op, err.target })
    end)
  end)
end)

describe("fs.watch", function()
  it("sees changes in a directory, including those before the first read", function()
    helper.run(function()
      local d = fresh_dir()
      local w <close> = fs.watch(d)
      put(d .. "/new", "x")
      local seen = {}
      local scope = tether.move_on_after(10 * helper.time_scale)
      scope:run(function()
        for event, name in w do
          assert.is_true(event == "rename" or event == "change")
          if name == "new" then seen[event] = true end
          if seen.rename and seen.change then break end
        end
      end)
      assert.is_false(scope.cancelled_caught)
      assert.equal(0, w.dropped)
    end)
  end)

  it("is a signal-receiver-like object: close wakes a reader, for loops close it", function()
    helper.run(function()
      local d = fresh_dir()
      local w = fs.watch(d)
      tether.task_group(function(tg)
        tg:start_soon(function() helper.raises("ClosedResourceError", w.receive, w) end)
        tether.wait_all_tasks_blocked()
        w:close()
      end)
      helper.raises("ClosedResourceError", w.receive, w)
      assert.equal("Cancelled", helper.outcome_when_cancelled(function()
        for _ in fs.watch(d) do end
      end))
      local err = helper.error_of(fs.watch, d .. "/missing")
      assert.same({ "ENOENT", "watch" }, { err.code, err.op })
    end)
  end)
end)

describe("tether.fs misuse", function()
  it("raises errors naming the function", function()
    helper.run(function()
      helper.misuse("^tether.fs.read_file: path must be a string", fs.read_file, nil)
      helper.misuse("^tether.fs.read_file: max must be an integer", fs.read_file, "x", -1)
      helper.misuse("^tether.fs.write_file: data must be a string", fs.write_file, "x", 1)
      helper.misuse("^tether.fs.write_file: unknown option atomc", fs.write_file, "x", "",
        { atomc = 1 })
      helper.misuse("^tether.fs.stat: argument #1 must be a string, got table", fs.stat, {})
      helper.misuse("^tether.fs.chmod: argument #2 must be an integer mode", fs.chmod, "x", "755")
      helper.misuse("^tether.fs.mkdir: options must be a table", fs.mkdir, "x", true)
      helper.misuse("^tether.fs.remove: path must be a string", fs.remove, 1)
      helper.misuse("^tether.fs.dir: path must be a string", fs.dir, 1)
      helper.misuse("^tether.fs.watch: path must be a string", fs.watch, 1)
      -- libuv takes C strings: a path with a NUL byte would name another file
      helper.misuse("^tether.fs.read_file: path must not contain NUL bytes", fs.read_file,
        root .. "/x\0y")
      helper.misuse("^tether.fs.stat: argument #1 must not contain NUL bytes", fs.stat, "/\0")
      helper.misuse("^tether.fs.rename: argument #2 must not contain NUL bytes", fs.rename,
        root .. "/a", root .. "/b\0")
      helper.misuse("^tether.fs.dir: path must not contain NUL bytes", fs.dir, "/\0")
      helper.misuse("^tether.fs.rename: argument #2 must be a string, got nil", fs.rename, "a", nil)
      helper.assert_task_still_works()
    end)
    helper.misuse("^tether.fs.stat: called outside tether.run", fs.stat, "/")
  end)

  it("every call is a checkpoint", function()
    helper.run(function()
      local d = fresh_dir()
      put(d .. "/f", "x")
      for _, call in ipairs {
        function() fs.stat(d) end, function() fs.exists(d) end,
        function() fs.read_file(d .. "/f") end,
        function() fs.mkdir(d .. "/never") end, function() fs.dir(d) end,
        function() fs.watch(d) end, function() fs.remove(d .. "/f") end,
      } do
        assert.equal("Cancelled", helper.outcome_when_cancelled(call))
      end
      assert.same({ "f" }, ls(d))
    end)
  end)
end)

teardown(function()
  os.execute("rm -rf " .. root)
end)
