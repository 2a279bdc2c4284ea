-- oom_host program: files and tether.fs: whole files (atomic too), a File read with
-- several formats and written, stat, mkdir with parents, dir, a watcher that sees a
-- change, a read cancelled while it waits, and a recursive remove.
local tether = require "tether"
local fs = tether.fs

local got = tether.run(function()
  local dir = ("/tmp/tether-oom-files-%d"):format(tether.getpid())
  if fs.exists(dir) then fs.remove(dir, { recursive = true }) end
  fs.mkdir(dir .. "/sub/deeper", { parents = true })
  local out = {}
  local watcher <close> = fs.watch(dir)
  fs.write_file(dir .. "/a.txt", "one\ntwo\n3 4\n", { atomic = true })
  -- (no string.rep past 1 KiB: a luaL_Buffer that large needs Lua's "_UBOX*"
  -- metatable, which lauxlib leaves without __close when memory fails as it makes it)
  local kib = ("x"):rep(1000)
  fs.write_file(dir .. "/b.txt", kib .. kib .. kib)
  local event = watcher:receive() -- (a change that found no memory is dropped)
  assert(event == "rename" or event == "change", event)
  out[#out + 1] = fs.read_file(dir .. "/a.txt")
  out[#out + 1] = fs.stat(dir .. "/b.txt").size
  do
    local f <close> = tether.open_file(dir .. "/a.txt", "r+")
    out[#out + 1] = f:read("l")
    local second, number = f:read("L", "n")
    out[#out + 1] = second .. number
    f:seek("end")
    f:write("five", 6, "\n")
    f:seek("set", 0)
    for line in f:lines() do out[#out + 1] = line end
  end
  local names = {}
  for name, kind in fs.dir(dir) do names[#names + 1] = name .. ":" .. kind end
  table.sort(names)
  out[#out + 1] = table.concat(names, ",")
  tether.task_group(function(tg)
    tg:start_soon(function()
      local f <close> = tether.open_file(dir .. "/b.txt")
      tether.move_on_after(0):run(function() f:read("a") end)
      out[#out + 1] = #f:read("a")
    end)
  end)
  local ok, err = pcall(fs.read_file, dir .. "/missing")
  if not tether.is(err, tether.OSError) then error(err, 0) end -- out of memory
  out[#out + 1] = not ok and err.code
  fs.remove(dir, { recursive = true })
  return table.concat(out, "|")
end)
assert(got == "one\ntwo\n3 4\n|3000|one|two\n3|one|two|3 4|five6"
  .. "|a.txt:file,b.txt:file,sub:dir|3000|ENOENT", got)
