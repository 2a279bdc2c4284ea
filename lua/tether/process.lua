--- Child processes owned by the scope that started them.
-- `run_process` runs a command to completion (capturing its output by
-- default); `open_process` returns a live Process, a to-be-closed value.
-- Whoever owns a process waits for it: when the owner is cancelled or
-- fails, the process is terminated by the ladder (`terminate`, by default
-- SIGTERM, 5 seconds' grace, SIGKILL; sent to its whole process group),
-- reaped, and its pipes closed, before the owner goes on.
-- @module tether.process

local core = require "tether.core"
local errors = require "tether.errors"

local process = {}

local is = errors.is
local LimitExceeded, OSError, ProcessError =
  errors.LimitExceeded, errors.OSError, errors.ProcessError

-- After the ladder's last step, how long the process may take to go before
-- its owner gets an error (a process in uninterruptible sleep).
local KILL_BOUND = 5
-- After the process exited, how long its captured output may take to end
-- (a background grandchild may hold the pipes open forever).
local DRAIN_BOUND = 1
-- How often the ladder looks whether the rest of a process group is gone.
local GROUP_POLL = 0.01
local DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024

local function misuse(fname, fmt, ...)
  error(fname .. ": " .. fmt:format(...), 0)
end

-- {======================================================================
-- Options
-- =======================================================================

local OPTIONS = {
  stdin = true, stdout = true, stderr = true, cwd = true, env = true,
  clear_env = true, check = true, max_output = true, terminate = true,
  group = true, shell = true,
}

local STDIO_WORDS = { pipe = true, capture = true, inherit = true, null = true, stdout = true }

-- The signal `sig` (a number or a name such as "SIGTERM" or "TERM").
local function check_signal(fname, sig, what)
  if math.type(sig) == "integer" and sig >= 1 and sig <= 64 then return sig end
  if type(sig) == "string" then
    local n = core[sig] or core["SIG" .. sig]
    if math.type(n) == "integer" and sig:match("^%u+%d*$") then return n end
  end
  misuse(fname, "%s must be a signal (a number or a name such as \"SIGTERM\"), got %s",
    what, tostring(sig))
end

-- {sig, grace, sig, grace, sig, ...} with signals as numbers.
local function check_ladder(fname, ladder)
  if type(ladder) ~= "table" or #ladder == 0 then
    misuse(fname, "opts.terminate must be a list {signal, seconds, signal, ...}, got %s",
      type(ladder))
  end
  local steps = {}
  for i = 1, #ladder do
    if i % 2 == 1 then
      steps[i] = check_signal(fname, ladder[i], ("opts.terminate[%d]"):format(i))
    else
      local grace = ladder[i]
      if type(grace) ~= "number" or grace ~= grace or grace < 0 then
        misuse(fname, "opts.terminate[%d] must be a grace period in seconds (>= 0), got %s",
          i, tostring(grace))
      end
      steps[i] = grace
    end
  end
  return steps
end

-- argv for `cmd`: {program, args...} or, with `shell`, a string for /bin/sh -c.
local function check_cmd(fname, cmd, shell)
  if shell then
    if type(cmd) ~= "string" then
      misuse(fname, "with opts.shell, cmd must be a string, got %s", type(cmd))
    end
    return { "/bin/sh", "-c", cmd }
  end
  if type(cmd) == "string" then
    misuse(fname, "cmd must be a table {program, args...}; a string is run by the shell "
      .. "only with opts.shell = true")
  end
  if type(cmd) ~= "table" then
    misuse(fname, "cmd must be a table {program, args...}, got %s", type(cmd))
  end
  if cmd[1] == nil then misuse(fname, "cmd is empty: it needs at least a program") end
  local argv = {}
  for i = 1, #cmd do
    if type(cmd[i]) ~= "string" then
      misuse(fname, "cmd[%d] must be a string, got %s", i, type(cmd[i]))
    end
    argv[i] = cmd[i]
  end
  if cmd[1] == "" then misuse(fname, "cmd[1] (the program) is empty") end
  return argv
end

-- The child's environment as an array of "NAME=value", or nil for ours.
local function check_env(fname, env, clear)
  if env ~= nil and type(env) ~= "table" then
    misuse(fname, "opts.env must be a table {NAME = value}, got %s", type(env))
  end
  if env == nil and not clear then return nil end
  local merged = clear and {} or core.environ()
  for name, value in pairs(env or {}) do
    if type(name) ~= "string" or name == "" or name:find("=", 1, true) then
      misuse(fname, "opts.env: %s is not a variable name", tostring(name))
    end
    if value == false then
      merged[name] = nil
    elseif type(value) == "string" or type(value) == "number" then
      merged[name] = tostring(value)
    else
      misuse(fname, "opts.env.%s must be a string (or false to remove it), got %s",
        name, type(value))
    end
  end
  local list = {}
  for name, value in pairs(merged) do list[#list + 1] = name .. "=" .. value end
  table.sort(list)
  return list
end

-- One of stdin/stdout/stderr: a keyword or a Stream (or for stdin, input).
local function check_stdio(fname, key, value, allowed)
  if type(value) == "userdata" then return value end
  if type(value) == "string" and STDIO_WORDS[value] then
    if not allowed[value] then
      misuse(fname, "opts.%s cannot be \"%s\" here", key, value)
    end
    return value
  end
  if key == "stdin" and type(value) == "string" then return value end
  misuse(fname, "opts.%s must be \"pipe\", %s\"inherit\", \"null\"%s or a Stream, got %s",
    key, allowed.capture and "\"capture\", " or "", allowed.stdout and ", \"stdout\"" or "",
    tostring(value))
end

-- What to start, checked: argv, spawn options and the policy.
local function prepare(fname, cmd, opts, defaults)
  if opts ~= nil and type(opts) ~= "table" then
    misuse(fname, "opts must be a table, got %s", type(opts))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then misuse(fname, "unknown option %s", tostring(k)) end
  end
  local function opt(k)
    if opts[k] == nil then return defaults[k] end
    return opts[k]
  end
  local capture = defaults.capture
  local spec = {
    argv = check_cmd(fname, cmd, opts.shell),
    cmd = cmd,
    stdin = check_stdio(fname, "stdin", opt("stdin"), { pipe = true, inherit = true, null = true }),
    stdout = check_stdio(fname, "stdout", opt("stdout"),
      { pipe = true, inherit = true, null = true, capture = capture }),
    stderr = check_stdio(fname, "stderr", opt("stderr"),
      { pipe = true, inherit = true, null = true, capture = capture, stdout = true }),
    env = check_env(fname, opts.env, opts.clear_env),
    cwd = opts.cwd,
    check = opt("check"),
    max_output = opt("max_output"),
    terminate = check_ladder(fname, opt("terminate")),
    group = opt("group"),
  }
  if spec.cwd ~= nil and type(spec.cwd) ~= "string" then
    misuse(fname, "opts.cwd must be a string, got %s", type(spec.cwd))
  end
  local max = spec.max_output
  if math.type(max) ~= "integer" or max < 1 then
    misuse(fname, "opts.max_output must be an integer > 0, got %s", tostring(max))
  end
  if type(spec.group) ~= "boolean" then
    misuse(fname, "opts.group must be a boolean, got %s", type(spec.group))
  end
  return spec
end

-- }======================================================================

-- {======================================================================
-- Process
-- =======================================================================

--- A running (or finished) child process.
-- @type Process
local Process = {}

local FIELDS = { code = 2, signal = 3 }

function Process.__index(p, key)
  local field = FIELDS[key]
  if field then return select(field, p._handle:status()) end
  return Process[key]
end

function Process.__tostring(p)
  local exited, code, sig = p._handle:status()
  local state = not exited and "running"
    or code and ("exited with %d"):format(code)
    or ("ended by %s"):format(core.signal_name(sig) or sig)
  return ("tether.Process (pid %d, %s)"):format(p.pid, state)
end

--- Waits until the process exits: `code, signal` (`code` is nil when a
-- signal ended it). A checkpoint; cancelling it leaves the process alone.
function Process:wait()
  return self._handle:wait()
end

--- Sends signal `sig` (a number or a name) to the process, if it still
-- runs. Returns true if it was sent.
function Process:send_signal(sig)
  return self._handle:signal(check_signal("process:send_signal", sig, "sig"))
end

--- Sends SIGTERM, to the process group when the process leads one.
function Process:terminate()
  return self._handle:signal(core.SIGTERM, true)
end

--- Sends SIGKILL, to the process group when the process leads one.
function Process:kill()
  return self._handle:signal(core.SIGKILL, true)
end

-- Whether anything of the process is left: itself, or with a group of its
-- own, a live member of that group.
local function lingers(p)
  return not p._handle:status() or p._handle:group_alive()
end

-- Waits until nothing of the process is left (see lingers).
local function wait_gone(p)
  p._handle:wait()
  while p._handle:group_alive() do core.sleep(GROUP_POLL) end
end

local function close_pipes(p)
  for _, name in ipairs { "stdin", "stdout", "stderr" } do
    local s = rawget(p, name)
    if s then s:close() end
  end
end

local function ladder_failed(p)
  return setmetatable({
    message = ("process %d did not exit %g s after SIGKILL; tether stopped waiting "
      .. "(a thread of its own reaps it when it goes)"):format(p.pid, KILL_BOUND),
    cmd = p._cmd,
  }, ProcessError)
end

-- The termination ladder, shielded: each signal of `terminate` (to the
-- group), each grace period waited out unless the process is gone before;
-- then SIGKILL, and at most KILL_BOUND more seconds. The pipes close
-- whatever the outcome.
local function terminate_owned(p)
  local h = p._handle
  local shielded = core.CancelScope { shield = true }
  local ok, err = pcall(shielded.run, shielded, function()
    local steps = p._terminate
    for i = 1, #steps, 2 do
      if not lingers(p) then break end
      h:signal(steps[i], true)
      if steps[i + 1] then core.move_on_after(steps[i + 1]):run(wait_gone, p) end
    end
    if lingers(p) then
      h:signal(core.SIGKILL, true)
      core.move_on_after(KILL_BOUND):run(h.wait, h)
      if not h:status() then
        h:abandon()
        error(ladder_failed(p), 0)
      end
    end
  end)
  close_pipes(p)
  if not ok then error(err, 0) end
end

local function process_error(cmd, code, sig, out, err)
  local how = code and ("exited with code %d"):format(code)
    or ("was ended by %s"):format(core.signal_name(sig) or tostring(sig))
  local name = type(cmd) == "table" and tostring(cmd[1]) or tostring(cmd)
  return setmetatable({
    message = ("command %s %s"):format(name, how),
    cmd = cmd, code = code, signal = sig, stdout = out, stderr = err,
  }, ProcessError)
end

--- Closing a process (`<close>`): on a normal exit from its block, closes
-- its stdin and waits for it (with `check`, a failure raises ProcessError);
-- on an error, or when that wait is cancelled, terminates it by the ladder.
-- Its pipes are closed either way.
function Process:__close(err)
  if err ~= nil then return terminate_owned(self) end
  local stdin = rawget(self, "stdin")
  if stdin then stdin:close() end
  local ok, code, sig = pcall(self._handle.wait, self._handle)
  if not ok then
    terminate_owned(self)
    error(code, 0)
  end
  if not self._handed_over then close_pipes(self) end
  if self._check and code ~= 0 then
    error(process_error(self._cmd, code, sig), 0)
  end
end

-- Starts `spec`: a Process. Spawn failures raise OSError with the program
-- as target.
local function start(spec)
  local function mode(value)
    if value == "capture" then return "pipe" end
    if type(value) == "string" and not STDIO_WORDS[value] then return "pipe" end -- input
    return value
  end
  local ok, h, stdin, stdout, stderr = pcall(core.spawn, spec.argv, {
    stdio = { mode(spec.stdin), mode(spec.stdout), mode(spec.stderr) },
    env = spec.env, cwd = spec.cwd, group = spec.group,
  })
  if not ok then
    if is(h, OSError) then h.target = spec.argv[1] end
    error(h, 0)
  end
  return setmetatable({
    pid = h.pid, stdin = stdin, stdout = stdout, stderr = stderr,
    _handle = h, _cmd = spec.cmd, _check = spec.check, _terminate = spec.terminate,
  }, Process)
end

-- }======================================================================

-- {======================================================================
-- Running
-- =======================================================================

-- Feeds `data` to the child's stdin and closes it. A child that stops
-- reading early is not an error.
local function feed(stdin, data)
  local ok, err = pcall(stdin.send, stdin, data)
  if not ok and not is(err, errors.BrokenResourceError)
    and not is(err, errors.ClosedResourceError) then
    error(err, 0)
  end
  stdin:close()
end

-- Reads `stream` into `into` until it ends; more than `max` bytes kill the
-- process and mark `into.exceeded`. The last collector to finish sets
-- `drained`.
local function collect(p, stream, into, max, drained)
  local total = 0
  for chunk in stream do
    total = total + #chunk
    if total > max then
      into.exceeded = true
      p:kill()
      break
    end
    into[#into + 1] = chunk
  end
  stream:close()
  drained.left = drained.left - 1
  if drained.left == 0 then drained.event:set() end
end

local RUN_DEFAULTS = {
  stdin = "null", stdout = "capture", stderr = "capture", check = true,
  max_output = DEFAULT_MAX_OUTPUT, terminate = { "SIGTERM", 5, "SIGKILL" }, group = true,
  capture = true,
}

local OPEN_DEFAULTS = {
  stdin = "inherit", stdout = "inherit", stderr = "inherit", check = false,
  max_output = DEFAULT_MAX_OUTPUT, terminate = { "SIGTERM", 5, "SIGKILL" }, group = true,
  capture = false,
}

--- Runs `cmd` to completion: `{code =, signal =, stdout =, stderr =, pid =}`.
-- Without `stdout`/`stderr` options both are captured (read concurrently,
-- so no pipe fills up); `opts.stdin` may be a string to feed. With `check`
-- (the default), a failure raises `ProcessError`. Under `tg:start`, the
-- live Process goes to `task_status:started`, and the group owns it.
function process.run_process(...)
  local fname = "tether.run_process"
  local status, cmd, opts
  if type((...)) == "userdata" then status, cmd, opts = ... else cmd, opts = ... end
  local spec = prepare(fname, cmd, opts, RUN_DEFAULTS)
  local out = spec.stdout == "capture" and {} or nil
  local err = spec.stderr == "capture" and {} or nil
  local p <close> = start(spec)
  p._check = false -- checked below, with the output
  -- Under tg:start the caller reads the pipes it asked for, maybe after the
  -- exit: they stay open then (closed by the caller, or the end of the run).
  p._handed_over = status ~= nil
  local drained = { left = (out and 1 or 0) + (err and 1 or 0), event = core.Event() }
  core.task_group(function(tg)
    if type(spec.stdin) == "string" and not STDIO_WORDS[spec.stdin] then
      tg:start_soon(feed, p.stdin, spec.stdin)
    end
    if out then tg:start_soon(collect, p, p.stdout, out, spec.max_output, drained) end
    if err then tg:start_soon(collect, p, p.stderr, err, spec.max_output, drained) end
    if status then status:started(p) end
    p:wait()
    if drained.left > 0 then
      core.move_on_after(DRAIN_BOUND):run(drained.event.wait, drained.event)
    end
    tg.cancel_scope:cancel()
  end)
  local code, sig = p:wait()
  for _, captured in ipairs { out or {}, err or {} } do
    if captured.exceeded then
      error(setmetatable({
        message = ("tether.run_process: the output exceeded max_output (%d bytes); the "
          .. "process was killed"):format(spec.max_output),
        limit = spec.max_output,
      }, LimitExceeded), 0)
    end
  end
  local result = {
    code = code, signal = sig, pid = p.pid,
    stdout = out and table.concat(out), stderr = err and table.concat(err),
  }
  if spec.check and code ~= 0 then
    error(process_error(spec.cmd, code, sig, result.stdout, result.stderr), 0)
  end
  return result
end

--- Starts `cmd` and returns its Process, a to-be-closed value (close it with
-- `<close>`: see `Process:__close`). Defaults: stdin, stdout and stderr
-- inherited, `check = false`. A string `opts.stdin` is written to the
-- child's stdin in the background.
function process.open_process(cmd, opts)
  local fname = "tether.open_process"
  local spec = prepare(fname, cmd, opts, OPEN_DEFAULTS)
  local p = start(spec)
  if type(spec.stdin) == "string" and not STDIO_WORDS[spec.stdin] then
    local stdin, data = p.stdin, spec.stdin
    stdin:set_option("high_water", math.max(#data, stdin.high_water))
    stdin:set_option("linger", math.huge)
    stdin:send_nowait(data)
    stdin:close()
    p.stdin = nil
  end
  return p
end

-- }======================================================================

return process
