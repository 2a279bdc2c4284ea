--- tether.coroutine: Lua's coroutine library for coroutines that may block.
-- A coroutine resumed with `resume` (or called through a `wrap` function) from a
-- task may call tether's blocking functions: the whole task waits, and the
-- coroutine goes on where it was when the wait ends. Its own `yield`s still go
-- to its resumer. `create`, `yield`, `status`, `running`, `isyieldable` and
-- `close` are the coroutine library's own.
local core = require "tether.core"

return {
  create = coroutine.create,
  resume = core.coroutine_resume,
  wrap = core.coroutine_wrap,
  yield = coroutine.yield,
  status = coroutine.status,
  running = coroutine.running,
  isyieldable = coroutine.isyieldable,
  close = coroutine.close,
}
