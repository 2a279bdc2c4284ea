-- busted output handler: busted's plainTerminal output, then one closing line
--   N passed, N failed, N skipped
-- alone on a line (failures and errors both count as failed), for CI log parsers.
-- Use: busted -o spec/support/summary.lua (the Makefile and .busted do).
return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.plainTerminal"(options)

  -- Subscribed after plainTerminal's own suite-end handler, so this line comes last.
  busted.subscribe({ "suite", "end" }, function()
    local failed = handler.failuresCount + handler.errorsCount
    io.write(("%d passed, %d failed, %d skipped\n"):format(
      handler.successesCount, failed, handler.pendingsCount))
    -- Flush now: a LeakSanitizer report ends the process with _exit, and anything
    -- still buffered would be lost.
    io.flush()
    return nil, true
  end)

  return handler
end
