-- The rockspec parses, and its C module is built from exactly csrc/*.c.
local ROCKSPEC = "rockspec/tether-scm-1.rockspec"

local function load_rockspec()
  local env = {}
  local chunk, err = loadfile(ROCKSPEC, "t", env)
  assert(chunk, err)
  chunk()
  return env
end

local function list(pattern)
  local p = assert(io.popen("ls -1 " .. pattern .. " 2>/dev/null"))
  local files = {}
  for line in p:lines() do files[#files + 1] = line end
  p:close()
  table.sort(files)
  return files
end

describe("rockspec/tether-scm-1.rockspec", function()
  it("parses as Lua in an empty environment", function()
    local rs = load_rockspec()
    assert.equals("3.0", rs.rockspec_format)
    assert.equals("tether", rs.package)
    assert.equals("scm-1", rs.version)
    assert.same({ "lua >= 5.4, < 5.5" }, rs.dependencies)
    assert.equals("builtin", rs.build.type)
    assert.same({ header = "uv.h", library = "uv" }, rs.external_dependencies.LIBUV)
  end)

  it("builds tether.core from exactly csrc/*.c", function()
    local rs = load_rockspec()
    local listed = {}
    for i, src in ipairs(rs.build.modules["tether.core"].sources) do listed[i] = src end
    table.sort(listed)
    local present = list("csrc/*.c")
    assert.is_true(#present > 0, "no csrc/*.c files")
    assert.same(present, listed)
  end)

  it("installs every lua/tether/*.lua file as a module", function()
    local rs = load_rockspec()
    local listed = {}
    for _, src in pairs(rs.build.modules) do
      if type(src) == "string" then listed[#listed + 1] = src end
    end
    table.sort(listed)
    assert.same(list("lua/tether/*.lua"), listed)
  end)

  it("installs the Lua modules from files that exist", function()
    local rs = load_rockspec()
    for name, src in pairs(rs.build.modules) do
      if type(src) == "string" then
        local f = io.open(src, "r")
        assert.is_truthy(f, ("module %s: %s does not exist"):format(name, src))
        f:close()
      end
    end
  end)
end)
