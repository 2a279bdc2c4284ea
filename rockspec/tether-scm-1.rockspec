-- Development rockspec: builds the working tree.
--   luarocks --lua-version 5.4 make rockspec/tether-scm-1.rockspec
-- The C sources below must list exactly csrc/*.c (spec/rockspec_spec.lua checks it).
rockspec_format = "3.0"
package = "tether"
version = "scm-1"

source = {
  -- Placeholder until the project has a public repository; `luarocks make` builds the
  -- current directory and does not fetch this.
  url = "git+https://example.invalid/tether.git",
}

description = {
  summary = "Structured concurrency for Lua 5.4 on libuv, in the style of Trio and AnyIO",
  detailed = [[
tether runs Lua coroutines as tasks on a libuv event loop, with task groups,
cancel scopes with deadlines and shields, OS signal receivers that a plain `for`
loop iterates, and Trio-style synchronisation primitives and memory streams.
]],
  license = "MIT",
  labels = { "concurrency", "async", "libuv", "coroutines" },
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

external_dependencies = {
  LIBUV = {
    header = "uv.h",
    library = "uv",
  },
}

build = {
  type = "builtin",
  modules = {
    ["tether.core"] = {
      sources = {
        "csrc/bytestream.c",
        "csrc/clock.c",
        "csrc/connect.c",
        "csrc/core.c",
        "csrc/coroutine.c",
        "csrc/embed.c",
        "csrc/errors.c",
        "csrc/event.c",
        "csrc/file.c",
        "csrc/fs.c",
        "csrc/fsdir.c",
        "csrc/fsreq.c",
        "csrc/fswatch.c",
        "csrc/group.c",
        "csrc/invariants.c",
        "csrc/listener.c",
        "csrc/loop.c",
        "csrc/luv.c",
        "csrc/park.c",
        "csrc/process.c",
        "csrc/record.c",
        "csrc/scope.c",
        "csrc/signal.c",
        "csrc/sigstate.c",
        "csrc/stdio.c",
        "csrc/stream.c",
        "csrc/task.c",
        "csrc/tasktree.c",
        "csrc/tcp.c",
        "csrc/to_thread.c",
        "csrc/transfer.c",
        "csrc/udp.c",
        "csrc/uncaught.c",
        "csrc/unix.c",
        "csrc/wait.c",
        "csrc/wholefile.c",
        "csrc/where.c",
        "csrc/worker.c",
        "csrc/worker_state.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "csrc", "$(LIBUV_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)" },
      libraries = { "uv" },
    },
    ["tether"] = "lua/tether/init.lua",
    ["tether.errors"] = "lua/tether/errors.lua",
    ["tether.net"] = "lua/tether/net.lua",
    ["tether.process"] = "lua/tether/process.lua",
    ["tether.fs"] = "lua/tether/fs.lua",
    ["tether.sync"] = "lua/tether/sync.lua",
    ["tether.tasktree"] = "lua/tether/tasktree.lua",
    ["tether.coroutine"] = "lua/tether/coroutine.lua",
    ["tether.callback"] = "lua/tether/callback.lua",
    ["tether.udp"] = "lua/tether/udp.lua",
    ["tether.worker"] = "lua/tether/worker.lua",
  },
}

test = {
  type = "busted",
}
