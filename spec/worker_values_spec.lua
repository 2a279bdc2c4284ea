-- What crosses to a worker thread and back: copies of nil, booleans, integers and
-- floats (kept apart), strings and tables (cycles and shared tables kept,
-- metatables left behind); anything else raises at the call, naming the argument.

local tether = require "tether"
local helper = require "spec.helper"

local function echo(...)
  return ...
end

describe("values crossing to a worker", function()
  it("keep integers and floats apart, both ways", function()
    helper.run(function()
      local a, b, c, d = tether.to_thread(function(x, y)
        return math.type(x), math.type(y), 3, 3.0
      end, 1, 1.0)
      assert.same({ "integer", "float", "integer", "float" },
        { a, b, math.type(c), math.type(d) })
    end)
  end)

  it("keep strings byte for byte, booleans, nil and trailing nils", function()
    helper.run(function()
      local s = "a\0b\255" .. ("x"):rep(100000)
      local r = table.pack(tether.to_thread(echo, s, true, false, nil, nil))
      assert.equal(5, r.n)
      assert.equal(s, r[1])
      assert.same({ true, false }, { r[2], r[3] })
      assert.is_nil(r[4])
      assert.equal(0, select("#", tether.to_thread(echo)))
    end)
  end)

  it("copy tables deeply: a change in the worker does not reach the caller", function()
    helper.run(function()
      local t = { 1, 2, { deep = "yes" }, key = "v" }
      local r = tether.to_thread(function(x)
        x[1] = 99
        x[3].deep = "changed"
        return x
      end, t)
      assert.same({ 1, 2, { deep = "yes" }, key = "v" }, t)
      assert.same({ 99, 2, { deep = "changed" }, key = "v" }, r)
      assert.are_not.equal(t, r)
    end)
  end)

  it("keep cycles and tables reached twice", function()
    helper.run(function()
      local shared = { "s" }
      local t = { a = shared, b = shared }
      t.self = t
      local r, same_inside = tether.to_thread(function(x)
        return x, x.a == x.b and x.self == x
      end, t)
      assert.is_true(same_inside)
      assert.equal(r, r.self)
      assert.equal(r.a, r.b)
      assert.same({ "s" }, r.a)
    end)
  end)

  it("leave metatables behind", function()
    helper.run(function()
      local t = setmetatable({ 1 }, { __index = function() return "meta" end })
      local has_mt = tether.to_thread(function(x) return getmetatable(x) ~= nil end, t)
      assert.is_false(has_mt)
    end)
  end)

  it("refuse functions, userdata, threads and such values inside tables", function()
    helper.run(function()
      local err = helper.error_of(tether.to_thread, echo, 1, string.format)
      assert.matches("^tether.to_thread: argument 3 is a function", err)
      err = helper.error_of(tether.to_thread, echo, io.stdout)
      assert.matches("^tether.to_thread: argument 2 is a userdata", err)
      err = helper.error_of(tether.to_thread, echo, coroutine.create(string.format))
      assert.matches("^tether.to_thread: argument 2 is a thread", err)
      err = helper.error_of(tether.to_thread, echo, { { f = string.format } })
      assert.matches("^tether.to_thread: argument 2 holds a function in a table", err)
      err = helper.error_of(tether.to_thread, { cancel = "wait" }, echo, 1, string.format)
      assert.matches("^tether.to_thread: argument 4 is a function", err)
    end)
  end)

  it("turn a result that cannot cross into a WorkerError", function()
    helper.run(function()
      local err = helper.error_of(tether.to_thread, function() return 1, string.format end)
      assert.is_true(tether.is(err, tether.WorkerError))
      assert.matches("result 2 is a function", err.message)
    end)
  end)
end)

describe("the function given to tether.to_thread", function()
  it("may be a \"module.function\" name", function()
    helper.run(function()
      assert.equal("ababab", tether.to_thread("string.rep", "ab", 3))
    end)
  end)

  it("comes back as a WorkerError with message and traceback when it fails", function()
    helper.run(function()
      local err = helper.error_of(tether.to_thread, function() error("boom") end)
      assert.is_true(tether.is(err, tether.WorkerError))
      assert.matches("boom", err.message)
      assert.matches("stack traceback", err.traceback)
      err = helper.error_of(tether.to_thread, "no_such_module_anywhere.fn")
      assert.is_true(tether.is(err, tether.WorkerError))
      assert.matches("no_such_module_anywhere", err.message)
      err = helper.error_of(tether.to_thread, function() error({}) end)
      assert.matches("error object is a table", err.message)
    end)
  end)

  it("must be a Lua function without upvalues but _ENV, or a name", function()
    helper.run(function()
      local up = 1
      local err = helper.error_of(tether.to_thread, function() return up end)
      assert.matches("^tether.to_thread: argument 1 uses local variables", err)
      err = helper.error_of(tether.to_thread, string.format)
      assert.matches("^tether.to_thread: argument 1 is a C function", err)
      err = helper.error_of(tether.to_thread, "nodot")
      assert.matches("^tether.to_thread: argument 1 must name a function", err)
      err = helper.error_of(tether.to_thread, 42)
      assert.matches("^tether.to_thread: argument 1 must be a function", err)
      err = helper.error_of(tether.to_thread, { cancel = "never" }, echo)
      assert.matches('^tether.to_thread: opts.cancel must be "interrupt"', err)
      err = helper.error_of(tether.to_thread, { limiter = {} }, echo)
      assert.matches("^tether.to_thread: opts.limiter must be a tether.CapacityLimiter", err)
      err = helper.error_of(tether.to_thread, { colour = 1 }, echo)
      assert.matches("^tether.to_thread: unknown option colour", err)
    end)
  end)

  it("cannot run outside tether.run", function()
    local err = helper.error_of(tether.to_thread, echo)
    assert.matches("tether", tostring(err))
  end)
end)
