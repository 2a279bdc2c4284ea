--- C hosts for the specs: a shell runner, and a compiler of test programs written in C
--- against the build's libtether.a (spec/embed_spec.lua, signal_spec.lua, oom_spec.lua).
--
--   local chost = require "spec.support.chost"
--   chost.quote(s)                  s quoted for sh
--   chost.shell(script)             output (stderr merged), exit status
--   chost.root                      the project's directory (absolute)
--   chost.compile(dir, programs)    nil, or what went wrong building libtether.a
local chost = {}

--- `s` quoted for sh.
function chost.quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end
local q = chost.quote

--- Runs a shell script without LD_PRELOAD (LeakSanitizer fails uninstrumented tools)
--- and without the make variables of an enclosing `make test` (the inner makes are
--- independent).  Returns the output (stderr merged) and the exit status (128 + N
--- when signal N killed it).
function chost.shell(script)
  local p = assert(io.popen(
      "exec env -u LD_PRELOAD -u MAKEFLAGS -u MFLAGS -u MAKELEVEL sh -c " .. q(script)
      .. " 2>&1", "r"))
  local out = p:read("a")
  local _, how, code = p:close()
  return out, how == "signal" and 128 + code or code
end

local spec_dir = (debug.getinfo(1, "S").source:match("^@(.*)/support/[^/]*$")) or "spec"
chost.root = (chost.shell("cd " .. q(spec_dir .. "/..") .. " && pwd -P"):gsub("\n$", ""))

local BUILDDIR = os.getenv("BUILDDIR") or "build"

--- Builds libtether.a (`make staticlib`), then compiles every program at once into
--- `dir`.  A program is {name = "x", source = path (default spec/support/x.c),
--- pc = pkg-config packages (default "lua5.4 libuv"), flags = extra link flags}.
--- Returns nil when make succeeded, else its output; a program that did not compile
--- has no binary dir/<name>, and the compiler's output is in dir/<name>.log.
function chost.compile(dir, programs)
  local lines = {
    ("cd %s && make -s --no-print-directory staticlib >%s/make.log 2>&1 || exit 1")
        :format(q(chost.root), q(dir)),
  }
  for _, prog in ipairs(programs) do
    local pc = prog.pc or "lua5.4 libuv"
    lines[#lines + 1] = table.concat({
      "cc -std=c99 -D_POSIX_C_SOURCE=200809L -g -O1 -Wall -Wextra",
      "-I" .. q(chost.root .. "/csrc"), "-I" .. q(chost.root .. "/spec/support"),
      "$(pkg-config --cflags " .. pc .. ")",
      "-o", q(dir .. "/" .. prog.name),
      q(prog.source or (chost.root .. "/spec/support/" .. prog.name .. ".c")),
      q(chost.root .. "/" .. BUILDDIR .. "/libtether.a"),
      "$(pkg-config --libs " .. pc .. ") -lpthread -lm", prog.flags or "",
      ">" .. q(dir .. "/" .. prog.name .. ".log") .. " 2>&1 &",
    }, " ")
  end
  lines[#lines + 1] = "wait"
  local out, status = chost.shell(table.concat(lines, "\n"))
  if status == 0 then return nil end
  local f = io.open(dir .. "/make.log")
  local log = f and f:read("a") or ""
  if f then f:close() end
  return "make staticlib failed: " .. out .. log
end

--- The compiler's output for program `name` built into `dir`.
function chost.log(dir, name)
  local f = io.open(dir .. "/" .. name .. ".log")
  local text = f and f:read("a") or "(no log)"
  if f then f:close() end
  return text
end

return chost
