-- The documentation stands alone: README.md, docs/, the Lua sources (whose LDoc comments
-- make the reference) and examples/ never send readers to files they do not have, and
-- the reference (docs/api.lua, built by `make docs`) has an entry for every public name
-- of `tether` and of the objects it returns, and only for names that exist.
local tether = require "tether"
local helper = require "spec.helper"

local function read(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("a")
  file:close()
  return text
end

-- Every regular file under the given paths, relative to the repository root. (find
-- runs without the sanitizer runtime that `make check` preloads: its leak check would
-- abort find at exit, perhaps before it listed everything.)
local function files_under(...)
  local list = {}
  local pipe = assert(io.popen("env -u LD_PRELOAD find " .. table.concat({ ... }, " ")
    .. " -type f"))
  for path in pipe:lines() do list[#list + 1] = path end
  assert(pipe:close(), "find failed")
  table.sort(list)
  return list
end

-- Project-internal documents that are not part of what users get, and issue numbers of
-- a tracker they cannot see.
local FORBIDDEN = {
  "API%.md", "STYLE%.md", "SEMANTICS%.md", "DESIGN%.md", "CONTRACT%.md",
  "[Ii]ssue #?%d",
}

describe("the documentation", function()
  it("never refers to the project's internal documents or issue numbers", function()
    local files = files_under("README.md", "CHANGELOG.md", "config.ld", "docs", "lua",
      "examples")
    assert.is_true(#files > 10, "found only " .. #files .. " files")
    local found = {}
    for _, path in ipairs(files) do
      local n = 0
      for line in (read(path) .. "\n"):gmatch("(.-)\n") do
        n = n + 1
        for _, pattern in ipairs(FORBIDDEN) do
          if line:find(pattern) then
            found[#found + 1] = ("%s:%d: %s"):format(path, n, line)
          end
        end
      end
    end
    assert.same({}, found)
  end)
end)

describe("the reference (docs/api.lua)", function()
  local api = read("docs/api.lua")
  local documented = {}   -- "name" or "Class:method" -> true
  for name in api:gmatch("@function ([%w_:]+)") do documented[name] = true end
  for name in api:gmatch("@table ([%w_]+)") do documented[name] = true end

  it("has an entry for every name of the tether module, and none for a missing one",
    function()
      local missing, stale = {}, {}
      for name, value in pairs(tether) do
        if name:match("^SIG%w+$") then
          if not api:find(name, 1, true) then missing[#missing + 1] = name end
        elseif name ~= "_VERSION" and not documented[name] then
          missing[#missing + 1] = name .. " (" .. type(value) .. ")"
        end
      end
      for name in pairs(documented) do
        if not name:find(":", 1, true) and tether[name] == nil then
          stale[#stale + 1] = name
        end
      end
      table.sort(missing)
      table.sort(stale)
      assert.same({}, missing)
      assert.same({}, stale)
    end)

  it("has an entry for every method of the objects tether makes, and none for a missing "
    .. "one", function()
    local objects = {}
    helper.run(function()
      tether.task_group(function(tg)
        objects.TaskGroup = tg
        tg:start(function(task_status)
          objects.TaskStatus = task_status
          task_status:started()
        end)
      end)
      objects.CancelScope = tether.CancelScope{}
      objects.MockClock = tether.MockClock{}
      objects.Event = tether.Event()
      objects.Lock = tether.Lock()
      objects.Semaphore = tether.Semaphore(1)
      objects.Condition = tether.Condition()
      objects.CapacityLimiter = tether.CapacityLimiter(1)
      objects.MemoryObjectSendStream, objects.MemoryObjectReceiveStream =
        tether.create_memory_object_stream()
      objects.Stream = tether.socketpair()
      objects.Listener = tether.listen_tcp { host = "127.0.0.1" }
      objects.Listener:close()
      objects.UdpSocket = tether.open_udp { host = "127.0.0.1" }
      objects.UdpSocket:close()
      objects.File = tether.open_file("README.md")
      objects.File:close()
      objects.Dir = tether.fs.dir("docs")
      objects.Dir:close()
      objects.Watcher = tether.fs.watch("docs")
      objects.Watcher:close()
      local receiver <close> = tether.open_signal_receiver("SIGUSR1")
      objects.SignalReceiver = receiver
      objects.Process = tether.open_process({ "true" })
      objects.Process:__close()
      objects.Stream:close()
      objects.MemoryObjectSendStream:close()
      objects.MemoryObjectReceiveStream:close()
    end)
    local missing, stale = {}, {}
    for class, object in pairs(objects) do
      local index = getmetatable(object).__index
      -- Classes whose __index is a function (computed fields) are checked one way only.
      if type(index) == "table" then
        for method, value in pairs(index) do
          if type(value) == "function" and not method:match("^_")
            and not documented[class .. ":" .. method] then
            missing[#missing + 1] = class .. ":" .. method
          end
        end
      end
    end
    for name in pairs(documented) do
      local class, method = name:match("^([%w_]+):([%w_]+)$")
      if class then
        local object = objects[class]
        if object == nil or type(object[method]) ~= "function" then
          stale[#stale + 1] = name
        end
      end
    end
    table.sort(missing)
    table.sort(stale)
    assert.same({}, missing)
    assert.same({}, stale)
  end)
end)
