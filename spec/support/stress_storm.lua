--- A signal storm, for spec/stress_spec.lua: another process sends thousands of signals
--- to this one while receivers open and close and tasks blocked in receive() are
--- cancelled.  Used in the test runner itself (with SIGURG/SIGWINCH only, whose default
--- action is to ignore) and inside a child lua5.4 (with SIGUSR1/SIGUSR2 too).
--
--   local storm = require "spec.support.stress_storm"
--   -- inside tether.run:
--   local report = storm.scenario { storm = { tether.SIGURG }, sentinel = tether.SIGWINCH,
--     per_signal = 4000, seed = 1, lua = "/usr/bin/lua5.4", scale = 1 }
--   -- report.problems: list of strings (empty: all held); report.steady_a, .steady_b:
--   -- {[signum] = sum of counts}; report.sent: per storm signal; plus counters.
--
-- What can be checked exactly, and why:
--
-- * A standard signal sent by another process while the same signal is still pending
--   here is delivered once (the kernel merges them), so how many deliveries arrive is
--   unknown: for a receiver open during the whole storm only 1 <= sum of counts <= sent
--   holds per signal.
-- * Fan-out is exact: two receivers ("steady A" and "steady B") open during the whole
--   storm see every delivery, so their sums must be equal -- once both have read
--   everything.  To know that, the scenario waits for the sender to exit (a file it
--   writes after its last kill), then sends this process a *sentinel* signal (one that
--   is not part of the storm).  Every storm signal was pending here before that kill()
--   call and is delivered no later than it returns, and a self-sent signal is
--   delivered before kill() returns, so the sentinel comes after every storm delivery;
--   pending signals leave a receiver in first-arrival order, so a reader that got the
--   sentinel has read every storm delivery.
-- * A "quiet" receiver lists only the sentinel and its reads are cancelled again and
--   again during the storm; a cancelled read consumes nothing, so it must still get
--   the sentinel at the end (count 1 when nobody else sends that signal).
local tether = require "tether"
local stress = require "spec.support.stress_program"

local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

-- The sender: a lua5.4 that kills `pid` with each signal of `signums`, `n` rounds,
-- sleeping 1 ms every `pace` rounds; then writes "done <rounds>" to `done_file`.
local SENDER = [[
local tether = require "tether"
local pid, list, n, pace, done_file =
  tonumber(arg[1]), arg[2], tonumber(arg[3]), tonumber(arg[4]), arg[5]
local signums = {}
for s in list:gmatch("%d+") do signums[#signums + 1] = tonumber(s) end
local rounds = 0
tether.run(function()
  for i = 1, n do
    for _, s in ipairs(signums) do tether.kill(pid, s) end
    rounds = i
    if i % pace == 0 then tether.sleep(0.001) end
  end
end)
local f = assert(io.open(done_file, "w"))
f:write("done ", rounds, "\n")
f:close()
]]

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

--- This process's signal masks from /proc/self/status (nil where there is no /proc).
function M.masks()
  local text = read_file("/proc/self/status")
  if not text then return nil end
  return { caught = text:match("SigCgt:%s*(%x+)"), ignored = text:match("SigIgn:%s*(%x+)") }
end

--- Starts the sender process: `n` rounds of kill(pid, s) for each s in `signums`,
--- sleeping 1 ms every `pace` rounds.  Returns a handle for sender_done/finish_sender.
function M.start_sender(lua, pid, signums, n, pace)
  local s = { script = os.tmpname(), done_file = os.tmpname() }
  os.remove(s.done_file)
  local f = assert(io.open(s.script, "w"))
  f:write(SENDER)
  f:close()
  local cmd = ("exec %s %s %d %s %d %d %s 2>&1"):format(shell_quote(lua),
    shell_quote(s.script), pid, table.concat(signums, ","), n, pace or 10,
    shell_quote(s.done_file))
  s.pipe = assert(io.popen(cmd, "r"))
  return s
end

--- Whether the sender has sent everything (it may still be exiting).
function M.sender_done(s)
  return read_file(s.done_file) ~= nil
end

--- Waits for the sender to exit; returns true, or false and what went wrong.
function M.finish_sender(s)
  local output = s.pipe:read("a")
  local _, how, code = s.pipe:close()
  local done = read_file(s.done_file)
  os.remove(s.script)
  os.remove(s.done_file)
  if how ~= "exit" or code ~= 0 or not done then
    return false, ("sender failed (%s %s): %s"):format(tostring(how), tostring(code), output)
  end
  return true
end

--- Whether bit `signum` is set in the hex mask `hex`.
function M.bit(hex, signum)
  local pos = #hex - (signum - 1) // 4
  return (tonumber(hex:sub(pos, pos), 16) >> ((signum - 1) % 4)) & 1 == 1
end

local function add(totals, signum, count)
  totals[signum] = (totals[signum] or 0) + count
end

--- Runs the storm scenario in the running tether task; see the file's header.
-- opts: storm (list of signums), sentinel (signum), per_signal (sends of each storm
-- signal), seed, lua (interpreter path), scale (time scale, >= 1), churners, victims.
function M.scenario(opts)
  local r = stress.new_rng(opts.seed or 1)
  local scale = opts.scale or 1
  local storm, sentinel = opts.storm, opts.sentinel
  local all = { table.unpack(storm) }
  all[#all + 1] = sentinel
  local report = {
    problems = {}, steady_a = {}, steady_b = {}, quiet = {}, sent = {},
    churn_opens = 0, churn_reads = 0, victim_cancels = 0, quiet_cancels = 0,
  }
  local function problem(fmt, ...) report.problems[#report.problems + 1] = fmt:format(...) end

  local steady_a <close> = tether.open_signal_receiver(table.unpack(all))
  local steady_b <close> = tether.open_signal_receiver(table.unpack(all))
  local quiet <close> = tether.open_signal_receiver(sentinel)

  local sender = M.start_sender(opts.lua, tether.getpid(), storm, opts.per_signal, opts.pace)
  for _, s in ipairs(storm) do report.sent[s] = opts.per_signal end

  local storm_done, sentinel_sent = false, false
  local limit = 60 * scale -- seconds for the whole scenario; a hang is a bug

  local function reader(rx, totals, slow)
    while true do
      local s, c = rx:receive()
      add(totals, s, c)
      if s == sentinel then return end
      if slow and r.chance(0.3) then tether.sleep(r.int(0, 2) / 1000) end
    end
  end

  local guard = tether.fail_after(limit, { reason = "storm scenario timed out" })
  local ok, err = pcall(guard.run, guard, function()
    tether.task_group(function(tg)
      tg:start_soon("steady A", reader, steady_a, report.steady_a, false)
      tg:start_soon("steady B", reader, steady_b, report.steady_b, true)

      -- The quiet receiver: reads cancelled by short deadlines until the sentinel is
      -- sent, then one read that must return it.
      tg:start_soon("quiet", function()
        while not sentinel_sent do
          local scope = tether.move_on_after(r.int(0, 3) / 1000)
          scope:run(function()
            local s, c = quiet:receive()
            add(report.quiet, s, c)
          end)
          if scope.cancelled_caught then report.quiet_cancels = report.quiet_cancels + 1 end
        end
        while (report.quiet[sentinel] or 0) == 0 do
          local s, c = quiet:receive()
          add(report.quiet, s, c)
        end
      end)

      -- Churners: receivers opened and closed in every way, read or not.
      local churn_signals = opts.churn_signals or all
      for i = 1, opts.churners or 3 do
        tg:start_soon("churner " .. i, function()
          while not storm_done do
            local picked = {}
            for _, s in ipairs(churn_signals) do
              if r.chance(0.6) then picked[#picked + 1] = s end
            end
            if #picked == 0 then picked[1] = r.pick(churn_signals) end
            if r.chance(0.2) then picked[#picked + 1] = tether.signal_name(picked[1]) end
            report.churn_opens = report.churn_opens + 1
            local how = r.int(1, 4)
            if how == 1 then -- read a few under a deadline; <close> closes
              local rx <close> = tether.open_signal_receiver(table.unpack(picked))
              tether.move_on_after(r.int(0, 4) / 1000):run(function()
                for _ = 1, r.int(1, 5) do
                  rx:receive()
                  report.churn_reads = report.churn_reads + 1
                end
              end)
            elseif how == 2 then -- a for loop that breaks (closes the receiver)
              local want, n = r.int(1, 5), 0
              tether.move_on_after(r.int(0, 4) / 1000):run(function()
                for _ in tether.open_signal_receiver(table.unpack(picked)) do
                  n = n + 1
                  report.churn_reads = report.churn_reads + 1
                  if n >= want then break end
                end
              end)
            elseif how == 3 then -- closed at once; reading it then is an error
              local rx = tether.open_signal_receiver(table.unpack(picked))
              rx:close()
              local rok, e = pcall(rx.receive, rx)
              if rok or not tether.is(e, tether.ClosedResourceError) then
                problem("receive on a closed receiver: %s", rok and "returned" or tostring(e))
              end
              rx:close()
              tether.checkpoint()
            else -- opened, never read, closed while deliveries are pending
              local _rx <close> = tether.open_signal_receiver(table.unpack(picked))
              tether.sleep(r.int(0, 3) / 1000)
            end
          end
        end)
      end

      -- Victims: tasks blocked in receive(), cancelled by another task.
      for i = 1, opts.victims or 2 do
        tg:start_soon("victim " .. i, function()
          while not storm_done do
            local scope = tether.CancelScope {}
            tether.task_group(function(vtg)
              vtg:start_soon("canceller " .. i, function()
                tether.sleep(r.int(0, 3) / 1000)
                scope:cancel("victim cancelled")
              end)
              scope:run(function()
                local rx <close> = tether.open_signal_receiver(r.pick(storm))
                while true do rx:receive() end
              end)
            end)
            if not scope.cancelled_caught then
              problem("victim %d: its scope did not catch the cancellation", i)
            end
            report.victim_cancels = report.victim_cancels + 1
          end
        end)
      end

      -- The controller: waits for the sender to finish, then sends the sentinel.
      tg:start_soon("controller", function()
        while not M.sender_done(sender) do tether.sleep(0.005) end
        storm_done = true
        tether.kill(tether.getpid(), sentinel)
        sentinel_sent = true
      end)
    end)
  end)
  if not ok then problem("scenario raised: %s", tostring(err)) end

  local sent_ok, sender_problem = M.finish_sender(sender)
  if not sent_ok then problem("%s", sender_problem) end

  -- Counts of the receivers open during the whole storm.
  for _, s in ipairs(storm) do
    local a, b = report.steady_a[s] or 0, report.steady_b[s] or 0
    if a ~= b then
      problem("%s: steady receivers disagree (A %d, B %d deliveries)",
        tether.signal_name(s), a, b)
    end
    if a < 1 or a > opts.per_signal then
      problem("%s: steady A got %d deliveries, want 1..%d", tether.signal_name(s), a,
        opts.per_signal)
    end
  end
  for name, totals in pairs { A = report.steady_a, B = report.steady_b, quiet = report.quiet } do
    local n = totals[sentinel] or 0
    if n < 1 or (opts.sentinel_exact and n ~= 1) then
      problem("%s got the sentinel %s %d times", name, tether.signal_name(sentinel), n)
    end
  end
  for s in pairs(report.quiet) do
    if s ~= sentinel then problem("quiet got %s, which it does not list", tether.signal_name(s)) end
  end
  return report
end

--- One line for logs.
function M.summary(report)
  local parts = {}
  local signums = {}
  for s in pairs(report.sent) do signums[#signums + 1] = s end
  table.sort(signums)
  for _, s in ipairs(signums) do
    parts[#parts + 1] = ("%s sent %d, steady %d/%d"):format(tether.signal_name(s),
      report.sent[s], report.steady_a[s] or 0, report.steady_b[s] or 0)
  end
  return ("%s; churn: %d receivers opened, %d reads; %d victims cancelled, "
    .. "%d quiet reads cancelled"):format(table.concat(parts, "; "), report.churn_opens,
      report.churn_reads, report.victim_cancels, report.quiet_cancels)
end

return M
