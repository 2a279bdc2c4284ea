-- luv in the same program: a plain lua5.4 script that loads luv sees luv's timers,
-- handles and callbacks run while tether.run runs its tasks, with no polling task.
local helper = require "spec.helper"

local has_luv = pcall(require, "luv")

-- Runs a child script (after a prelude that loads luv and tether); returns its output,
-- failing with it unless the child exited with 0.
local function script(code)
  local output, status = helper.run_script('local uv = require "luv"\n'
    .. 'local tether = require "tether"\n' .. code)
  assert(status == 0, output)
  return output
end

local function field(output, name)
  return output:match(name .. "=([^\n]*)")
end

describe("luv alongside tether.run", function()
  if not has_luv then
    it("is not checked: luv is not installed (Debian package lua-luv)", function()
      pending("luv missing")
    end)
    return
  end

  it("runs a luv timer, a luv TCP echo server and uv.spawn beside tether tasks", function()
    local output = script [[
      local ticks = 0
      tether.run(function()
        tether.task_group(function(tg)
          local ticking = tether.CancelScope{}
          tg:start_soon(function()
            ticking:run(function()
              while true do ticks = ticks + 1; tether.sleep(0.001) end
            end)
          end)

          -- a luv timer wakes a task through an Event
          local ev = tether.Event()
          local timer = uv.new_timer()
          timer:start(20, 0, function() timer:close(); ev:set() end)
          ev:wait()
          print("timer=fired")

          -- a luv TCP echo server, a tether client
          local server = uv.new_tcp()
          assert(server:bind("127.0.0.1", 0))
          assert(server:listen(16, function(err)
            assert(not err, err)
            local client = uv.new_tcp()
            server:accept(client)
            client:read_start(function(rerr, data)
              assert(not rerr, rerr)
              if data then client:write(data) else client:close() end
            end)
          end))
          local port = server:getsockname().port
          local stream = tether.connect_tcp("127.0.0.1", port)
          stream:send("hello luv\n")
          print("echo=" .. stream:receive())
          stream:close()

          -- a luv client, awaited with wait_callback
          local c = uv.new_tcp()
          assert(tether.wait_callback(function(done)
            c:connect("127.0.0.1", port, function(err) done(err == nil) end)
          end))
          c:write("again\n")
          print("luv_echo=" .. tether.wait_callback(function(done)
            c:read_start(function(_, data) c:read_stop(); done(data) end)
          end))
          c:close()
          server:close()

          -- uv.spawn: its output and exit code
          local out = uv.new_pipe(false)
          local chunks = {}
          local code = tether.wait_callback(function(done)
            local handle
            handle = uv.spawn("sh", { args = { "-c", "echo spawned; exit 3" },
                                      stdio = { nil, out, nil } },
              function(status) handle:close(); done(status) end)
            out:read_start(function(_, data)
              if data then chunks[#chunks + 1] = data else out:close() end
            end)
          end)
          print("spawn=" .. table.concat(chunks):gsub("\n", "") .. " " .. code)
          ticking:cancel()
        end)
      end)
      print("ticks=" .. ticks)
    ]]
    assert.equal("fired", field(output, "timer"), output)
    assert.equal("hello luv", field(output, "echo"), output)
    assert.equal("again", field(output, "luv_echo"), output)
    assert.equal("spawned 3", field(output, "spawn"), output)
    assert.is_true(tonumber(field(output, "ticks")) > 5, output)
  end)

  it("does not wait for open luv handles, and resumes with them after run", function()
    local output = script [[
      local t0 = uv.hrtime()
      local idle_timer = uv.new_timer()
      idle_timer:start(3600 * 1000, 0, function() end)
      local fired = false
      local later = uv.new_timer()
      tether.run(function()
        later:start(30, 0, function() fired = true; later:close() end)
        tether.sleep(0.01)
      end)
      print("returned_ms=" .. (uv.hrtime() - t0) / 1e6)
      idle_timer:close()
      uv.run()
      print("fired_later=" .. tostring(fired))
    ]]
    assert.is_true(tonumber(field(output, "returned_ms")) < 25 * helper.time_scale, output)
    assert.equal("true", field(output, "fired_later"), output)
  end)

  it("does not spin while luv's loop has nothing to do or only waits", function()
    local output = script [[
      local tcp = uv.new_tcp() -- open, not active
      local timer = uv.new_timer()
      timer:start(3600 * 1000, 0, function() end)
      local cpu = os.clock()
      tether.run(function() tether.sleep(0.2) end)
      print("cpu=" .. os.clock() - cpu)
      tcp:close(); timer:close()
      uv.run() -- their close callbacks (luv crashes at exit without them)
    ]]
    assert.is_true(tonumber(field(output, "cpu")) < 0.05 * helper.time_scale, output)
  end)

  it("fires a luv timer inside tether.run within 1 ms of when uv.run fires it", function()
    local output = script [[
      local ROUNDS, DELAY = 20, 10
      local function lateness(wait) -- the median, in ms
        local all = {}
        for _ = 1, ROUNDS do
          local timer = uv.new_timer()
          uv.update_time() -- the timer counts from luv's loop time: make it now
          local start = uv.hrtime()
          local late
          timer:start(DELAY, 0, function()
            late = (uv.hrtime() - start) / 1e6 - DELAY
            timer:close()
          end)
          wait(function() return late ~= nil end)
          all[#all + 1] = late
        end
        table.sort(all)
        return all[ROUNDS // 2]
      end
      local plain = lateness(function() uv.run() end)
      local inside
      tether.run(function()
        inside = lateness(function(fired)
          local ev = tether.Event()
          local poll = uv.new_check()
          poll:start(function() if fired() then poll:close(); ev:set() end end)
          ev:wait()
        end)
      end)
      print("plain=" .. plain)
      print("inside=" .. inside)
    ]]
    local plain, inside = tonumber(field(output, "plain")), tonumber(field(output, "inside"))
    assert.is_true(math.abs(inside - plain) <= 1 * helper.time_scale, output)
  end)

  it("leaves luv's loop alone when tether.run is called from a luv callback", function()
    local output = script [[
      local timer = uv.new_timer()
      timer:start(1, 0, function()
        timer:close()
        print("inner=" .. tostring(tether.run(function()
          tether.sleep(0.01)
          return "ran"
        end)))
      end)
      uv.run()
      print("outer=done")
    ]]
    assert.equal("ran", field(output, "inner"), output)
    assert.equal("done", field(output, "outer"), output)
  end)

  it("awaits a luv timer with wait_callback", function()
    local output = script [[
      tether.run(function()
        local ok = tether.wait_callback(function(done)
          local timer = uv.new_timer()
          timer:start(1, 0, function()
            timer:close()
            done(true)
          end)
        end)
        print("awaited=" .. tostring(ok))
      end)
    ]]
    assert.equal("true", field(output, "awaited"), output)
  end)
end)
