--- The reference entries of `tether`.
--
-- This file is never loaded: it holds the LDoc comments for every public name
-- of `tether`, as a program calls it (`tether.Lock`, not the module that
-- implements it). The functions come from the C core (csrc/) and from
-- lua/tether/; when one changes, change its entry here. This reference is the
-- contract; docs/guide.md is the tour.
-- @module tether

--- Running.
-- The event loop, the clock, sleeping and checkpoints. `tether._VERSION` is
-- the version, e.g. `"0.1.0"`.
--
-- Rules that hold for every entry of this reference:
--
-- * A **checkpoint** yields to other tasks and raises `Cancelled` if the
--   task is cancelled. Every blocking call is a checkpoint: when it returns it
--   has yielded and checked for cancellation; when it raises `Cancelled` it
--   had no effect. Calls that never block (`event:set`, `lock:release`, the
--   `*_nowait` calls, `close`, `scope:cancel`, `tg:start_soon`) are not
--   checkpoints and never raise `Cancelled`.
-- * Entering a task group or a cancel scope is not a checkpoint. Leaving a
--   task group that has no children left is a schedule point (other tasks
--   run) but not a cancel point.
-- * Misuse (a wrong argument, a closed object, a negative delay) raises a
--   string that starts with the function's name and says what to do, e.g.
--   `tether.sleep: delay must be >= 0, got -1`.
-- * A blocking call made outside `tether.run`, from a plain coroutine inside a
--   task (a `coroutine.wrap` of your own), or across a C-call boundary (a
--   metamethod such as `__tostring` or `__gc`, a `table.sort` comparator, a
--   `string.gsub` callback, `require`) raises a string naming the call and
--   the cause, e.g. `tether.sleep: called outside tether.run; run the program
--   as tether.run(main) and call it from a task`.
-- * Only tether resumes a task's coroutine: a `coroutine.resume` of it
--   returns `true` and a message, and the task goes on waiting.
--
-- A C program can run tether on a libuv loop it owns and drives, start tasks
-- from C, post work from other threads and shut down with every handle
-- closed: `csrc/tether.h` is the header, docs/embedding.md explains it, and
-- `make install` installs the header, `libtether.a` and `tether.pc`.
-- @section running

--- Runs `fn(...)` as the main task of a new event loop.
-- Returns once every task has finished and every handle is closed. Calling it
-- inside a running loop of the same Lua state raises; start more tasks with
-- `task_group` instead.
--
-- **Ctrl+C.** While `run` runs and no receiver for `SIGINT` is open, the first
-- SIGINT cancels every task (shields are honoured, so shielded cleanup runs)
-- and, once all tasks have finished, `run` raises `tether.Interrupted`, even
-- if the main task swallowed its `Cancelled` and returned normally. A second
-- SIGINT before that ends the process at once, as an unhandled SIGINT does (a
-- shell reports status 130). The interruption is prompt even when every task
-- is blocked, but it reaches a task only at a checkpoint. While a receiver for
-- `SIGINT` is open, deliveries go to it instead. If SIGINT is ignored when
-- `run` starts (a background job), it stays ignored; when `run` returns,
-- SIGINT's disposition is what it was before.
-- @function run
-- @tparam function fn the main task (a callable table is accepted)
-- @param ... arguments passed to `fn`
-- @return the results of `fn`
-- @raise the main task's error, unchanged (an `ErrorGroup` only if it came out
-- of a task group); `tether.Interrupted` after a Ctrl+C, even if the main task
-- returned normally; `tether.run: a loop is already running in this Lua state;
-- ...` when nested; `tether.run: expected a function to run, got ...`.
-- When no `pcall` or `xpcall` is above `run` (the main chunk of
-- `lua5.4 prog.lua`), nothing can catch the error, and `lua5.4` would print
-- only the stack of `run`'s caller: there `run` raises the error's text
-- followed by the main task's own traceback, down to the line that raised.
-- `tether.run: TETHER_DUMP_SIGNAL: ...` when that variable names no signal
-- (see `task_tree`).
-- @usage
-- local tether = require "tether"
-- print(tether.run(function(x) tether.sleep(0.1); return x * 2 end, 21)) --> 42

--- Monotonic clock in seconds (a float), read afresh at each call.
-- Only differences are meaningful. Works outside `tether.run` too.
-- @function current_time
-- @treturn number seconds

--- Blocks the task for `seconds`. `sleep(0)` is a checkpoint;
-- `sleep(math.huge)` blocks until cancelled.
-- @function sleep
-- @tparam number seconds a delay >= 0
-- @raise `Cancelled`; `tether.sleep: delay must be >= 0, got ...` (also for NaN
-- or a non-number)
-- @see sleep_until

--- Blocks until `current_time() >= deadline`. A past deadline is a checkpoint.
-- @function sleep_until
-- @tparam number deadline in `current_time()` units (not NaN)
-- @raise `Cancelled`; misuse for NaN or a non-number

--- Blocks until the task is cancelled.
-- @function sleep_forever
-- @raise `Cancelled`, always (that is how it returns)

--- Yields to other tasks, then raises `Cancelled` if the task is cancelled.
-- Put one in a long computation so that it can be cancelled and other tasks run.
-- @function checkpoint
-- @raise `Cancelled`

--- Raises `Cancelled` if the task is cancelled; otherwise returns at once
-- without yielding.
-- @function checkpoint_if_cancelled
-- @raise `Cancelled`

--- Yields to other tasks; never raises `Cancelled`.
-- @function cancel_shielded_checkpoint

--- The running task.
-- Not a checkpoint.
-- @function current_task
-- @treturn table `{id = integer, name = string, parent_id = integer or nil}`;
-- `name` is the one given to `start_soon`/`start`, or `"source:line"` of the
-- task function; the main task has no `parent_id`
-- @raise outside `tether.run` and from a plain coroutine inside a task, with
-- the messages of a blocking call (it works across C-call boundaries)

--- Every live task, as records like `current_task`'s (tether's own internal
-- tasks, if any, may appear too). Not a checkpoint.
-- @function get_running_tasks
-- @treturn {table,...}
-- @raise `tether.get_running_tasks: called outside tether.run`

--- Returns once every other task is blocked: waiting on something that
-- only another task, a signal or the clock can end. A checkpoint.
--
-- A test helper: start tasks, call it, and they have all run up to the point
-- where they wait, so a test can check what happened so far without sleeping
-- "long enough".
-- @function wait_all_tasks_blocked
-- @raise `Cancelled`
-- @usage
-- tether.task_group(function(tg)
--   tg:start_soon(function() lock:acquire() end)
--   tether.wait_all_tasks_blocked()
--   assert(lock:locked())
-- end)

--- Task groups.
-- @section groups

--- Opens a task group in the current task, calls `fn(tg, ...)`, then waits for
-- every child. Entering is not a checkpoint.
--
-- If the body or a child raises, the group's scope is cancelled, every child
-- is waited for, and the errors (never `Cancelled`) come out as one
-- `tether.ErrorGroup`, in the order they happened, even for a single error.
-- If only cancellation happened, `Cancelled` propagates as itself; a group
-- cancelled through `tg.cancel_scope` exits quietly.
--
-- Starting a task in a group that has exited raises; starting one in a
-- cancelled group is allowed (it runs until its first checkpoint).
-- @function task_group
-- @tparam function fn the body, called as `fn(tg, ...)`
-- @param ... extra arguments for `fn`
-- @return the results of `fn`
-- @raise `ErrorGroup`; `Cancelled`; `tether.task_group: expected a function as
-- the group's body, got ...`
-- @usage
-- local a, b = tether.task_group(function(tg, ...)
--   tg:start_soon(worker, 1)            -- child task: worker(1)
--   tg:start_soon("reader", reader, s)  -- optional leading string = task name
--   local port = tg:start(server)       -- waits for task_status:started(port)
--   return "body results", "are returned"
-- end, ...)

--- Cancel scopes and timeouts.
-- A scope is entered by `CancelScope:run` and runs once. Cancellation is
-- level-triggered: every checkpoint inside a cancelled scope raises
-- `Cancelled` again until the task leaves that scope, so a `pcall` that
-- swallows one cannot hide it for long. The scope that catches a `Cancelled`
-- is the outermost cancelled scope below the nearest shield, decided when the
-- scope exits. Scopes exit in LIFO order within the task that entered them;
-- `scope:run` guarantees that.
--
-- A `Cancelled` error's message carries the cause: the `cancel(reason)`
-- text, or "deadline exceeded" when the deadline expired; the first cause
-- wins. Delays and deadlines are checked when the scope is created (negative
-- or NaN raises then), while `move_on_after`/`fail_after` compute the absolute
-- deadline when `run` enters the scope.
--
-- Why blocks are functions: Lua's `<close>` runs cleanup (and may block) but
-- cannot stop an error from propagating, so a construct that must *catch* its
-- own cancellation (a cancel scope, a task group) takes the block as a
-- function. Things that only need releasing (signal receivers, lock guards,
-- stream handles) are to-be-closed values.
-- @usage
-- local scope = tether.move_on_after(5)
-- local body = scope:run(fetch, url)       -- fetch(url), cancelled after 5 s
-- if scope.cancelled_caught then print("gave up") end
--
-- tether.fail_after(2):run(function() ... end)   -- raises tether.TimeoutError on expiry
-- @section scopes

--- Creates an unentered cancel scope.
-- @function CancelScope
-- @tparam[opt] table opts `{deadline = number, shield = boolean}`, both optional
-- (`deadline` is absolute, in `current_time()` units; default `math.huge`)
-- @treturn CancelScope
-- @raise `tether.CancelScope: deadline must not be NaN`, `... shield must be a
-- boolean, got ...`, `... expected an options table {deadline =, shield =} or
-- nothing, got ...`

--- A scope that moves on (its `run` returns nothing) `delay` seconds after it
-- is entered.
-- @function move_on_after
-- @tparam number|nil delay >= 0; `nil` or `math.huge` = no deadline; computed
-- into a deadline when `run` enters the scope
-- @tparam[opt] table opts `{shield = boolean}`
-- @treturn CancelScope
-- @raise `tether.move_on_after: delay must be >= 0, got ...` (checked at
-- creation; also NaN or a non-number)

--- A scope that moves on at the absolute `deadline`.
-- @function move_on_at
-- @tparam number|nil deadline in `current_time()` units; `nil` or `math.huge` =
-- none; a past one cancels at entry
-- @tparam[opt] table opts `{shield = boolean}`
-- @treturn CancelScope

--- Like `move_on_after`, but `run` raises `tether.TimeoutError` when the scope
-- caught a cancellation caused by its deadline. An explicit `cancel()` never
-- becomes a `TimeoutError`.
-- @function fail_after
-- @tparam number|nil delay >= 0
-- @tparam[opt] table opts `{shield = boolean, reason = string}`; `reason` is
-- the `TimeoutError`'s message (default `"deadline exceeded"`)
-- @treturn CancelScope
-- @raise (from `run`) `TimeoutError`

--- Like `move_on_at`, raising `tether.TimeoutError` as `fail_after` does.
-- @function fail_at
-- @tparam number|nil deadline
-- @tparam[opt] table opts `{shield = boolean, reason = string}`
-- @treturn CancelScope

--- The earliest deadline in force for the current task, stopping at the
-- nearest shield. Not a checkpoint.
-- @function current_effective_deadline
-- @treturn number the deadline; `-math.huge` if the task is cancelled;
-- `math.huge` if there is none
-- @raise outside `tether.run` and from a plain coroutine inside a task

--- Signals.
-- Receivers for OS signals. Signals are numbers; the module has the
-- platform's constants `tether.SIGHUP`, `SIGINT`, `SIGQUIT`, `SIGILL`,
-- `SIGTRAP`, `SIGABRT`, `SIGBUS`, `SIGFPE`, `SIGKILL`, `SIGUSR1`, `SIGSEGV`,
-- `SIGUSR2`, `SIGPIPE`, `SIGALRM`, `SIGTERM`, `SIGCHLD`, `SIGCONT`, `SIGSTOP`,
-- `SIGTSTP`, `SIGTTIN`, `SIGTTOU`, `SIGURG`, `SIGXCPU`, `SIGXFSZ`, `SIGVTALRM`,
-- `SIGPROF`, `SIGWINCH`, `SIGIO` and `SIGSYS`. Where a signal is expected, a
-- name such as `"SIGTERM"` or `"TERM"` works too.
--
-- * **Fan-out:** every open receiver that lists a signal gets each delivery
--   of it.
-- * **Coalescing:** per receiver, pending signals form an ordered set: a
--   repeat of a pending signal adds to its count and keeps its place; distinct
--   signals come out in first-arrival order; nothing is lost and memory stays
--   bounded.
-- * **Threads:** a receiver works in a loop running on any thread.
-- @usage
-- -- Reload on SIGHUP, exit on SIGTERM.
-- local tether = require "tether"
--
-- tether.run(function()
--   local signals <close> = tether.open_signal_receiver(tether.SIGTERM, tether.SIGHUP)
--   for signum in signals do
--     if signum == tether.SIGTERM then
--       return
--     elseif signum == tether.SIGHUP then
--       print("Reloading configuration")
--     end
--   end
-- end)
-- @section signals

--- Opens a receiver for one or more signals. The OS handler is installed at
-- once, so signals that arrive before the first read are kept. Duplicates
-- count once.
--
-- It returns the receiver four times over in the shape of a generic `for`
-- (iterator, nil, nil, closing value), so
-- `for signum, count in tether.open_signal_receiver(...) do` closes it when
-- the loop ends by `break`, `return` or error.
--
-- When the last receiver of a signal closes, the disposition that was in
-- place before the first one opened is restored exactly (a handler, `SIG_IGN`
-- or `SIG_DFL`); signals it left unread are raised again once, to that
-- disposition. While a `SIGINT` receiver is open, Ctrl+C goes to it instead of
-- cancelling the run.
-- @function open_signal_receiver
-- @param ... signal numbers or names
-- @treturn SignalReceiver the receiver
-- @return nil
-- @return nil
-- @treturn SignalReceiver the receiver again, as the `for` loop's closing value
-- @raise `tether.open_signal_receiver: no signals were given`, `... unknown
-- signal name 'X'`, `... unknown signal number N`, `... SIGKILL cannot be
-- caught, blocked or ignored`, `... called outside tether.run; open receivers
-- inside a task`; nothing stays installed after an error
-- @usage
-- local signals <close> = tether.open_signal_receiver(tether.SIGTERM, "HUP")
-- for signum, count in signals do
--   if signum == tether.SIGTERM then return end
--   print("reload", count)
-- end

--- The name of a signal.
-- @function signal_name
-- @tparam number|string signum
-- @treturn string|nil `"SIGTERM"`, or nil for a valid number without a name
-- @raise for an unknown name or a number out of range

--- Sends a signal to a process. Signal 0 only checks that the process exists.
-- @function kill
-- @tparam integer pid
-- @tparam number|string signum
-- @return `true`, or `nil`, a message such as `"ESRCH: no such process"` and
-- the error's name (`"ESRCH"`)

--- This process's id.
-- @function getpid
-- @treturn integer

--- Synchronisation and streams.
-- Rules for every object of this section:
--
-- * Every wait is FIFO with direct hand-off: a released resource goes to the
--   longest waiter at release time, so a `*_nowait` call in between cannot
--   barge in.
-- * Every blocking call is a checkpoint, and a call that raised `Cancelled`
--   had no effect (a cancelled `acquire` took nothing, a cancelled `receive`
--   consumed nothing, a cancelled `send` sent nothing). A waiter that was
--   already woken returns normally even if it is cancelled before it runs.
-- * Objects may be created and inspected outside any run; they belong to the
--   loop that first blocks on them.
-- * `acquire()` returns a to-be-closed guard, so
--   `local _ <close> = lock:acquire()` releases at the end of the block, also
--   when it ends by an error.
-- @section primitives

--- Creates a one-shot event: once set it stays set (there is no `clear`).
-- @function Event
-- @treturn Event

--- Creates a memory object stream (Trio's memory channel): a send end and a
-- receive end. Items go straight from a sender to the longest-waiting receiver,
-- or through a buffer of at most `max_buffer_size` items.
-- @function create_memory_object_stream
-- @tparam[opt=0] integer|number max_buffer_size an integer >= 0, or `math.huge`
-- for an unbounded buffer; 0 makes every `send` wait for a receiver
-- @treturn MemoryObjectSendStream send
-- @treturn MemoryObjectReceiveStream receive
-- @raise `tether.create_memory_object_stream: max_buffer_size must be an
-- integer >= 0 or math.huge, got ...`
-- @usage
-- local send, receive = tether.create_memory_object_stream(10)
-- tether.task_group(function(tg)
--   tg:start_soon(function()
--     local _ <close> = send          -- closing it ends the loop below
--     for i = 1, 3 do send:send(i) end
--   end)
--   for item in receive do print(item) end
-- end)

--- Creates a non-reentrant lock, owned by the task that acquired it.
-- @function Lock
-- @treturn Lock
-- @usage
-- local lock = tether.Lock()
-- do
--   local _ <close> = lock:acquire()
--   -- only one task at a time runs here, even across checkpoints
-- end

--- Creates a counting semaphore. Any task may release it.
-- @function Semaphore
-- @tparam integer initial the number of free slots, >= 0
-- @tparam[opt] integer max_value `release()` beyond this raises (default: no
-- limit)
-- @treturn Semaphore
-- @raise `tether.Semaphore: initial value must be an integer >= 0, got ...`;
-- `... max_value must be an integer or nil, got ...`; `... max_value (M) must
-- be >= the initial value (N)`

--- Creates a condition variable over a `Lock`.
-- @function Condition
-- @tparam[opt] Lock lock the lock to use (shared with other code); a new one
-- when omitted
-- @treturn Condition
-- @raise `tether.Condition: expected a tether.Lock or nothing, got ...`
-- @usage
-- local cond, queue = tether.Condition(), {}
-- -- consumer
-- local _ <close> = cond:acquire()
-- local n = cond:wait_for(function() return #queue >= 3 and #queue end)
-- -- producer
-- local _ <close> = cond:acquire()
-- queue[#queue + 1] = item
-- cond:notify_all()

--- Creates a capacity limiter: at most `total` tasks hold one of its tokens
-- at once, and each task holds at most one. Only the holder gives a token
-- back.
-- @function CapacityLimiter
-- @tparam integer|number total an integer >= 0, or `math.huge` for no limit;
-- 0 lets nobody through until `total_tokens` is raised
-- @treturn CapacityLimiter
-- @raise `tether.CapacityLimiter: total_tokens must be an integer >= 0 or
-- math.huge, got ...`

--- Like Lua's `pcall`, but `Cancelled` and `Interrupted` propagate: code that
-- catches "every error" cannot swallow a cancellation by accident.
-- @function pcall
-- @tparam function f
-- @param ... arguments for `f`
-- @return `true` and the results of `f`, or `false` and the error (never a
-- `Cancelled` or `Interrupted`: those are raised again)
-- @usage
-- local ok, err = tether.pcall(risky_call)
-- if not ok then log(err) end   -- a cancellation did not end up here

--- Byte streams.
-- A `Stream` carries bytes over an operating-system descriptor (a socket, a
-- pipe) without blocking the loop. Rules for every stream:
--
-- * One reader and one writer at a time (full duplex): a second task reading
--   (or sending) while another waits raises `BusyResourceError`.
-- * Every blocking call is a checkpoint, and a call that raised `Cancelled`
--   had no effect: a cancelled read consumed nothing (a read scans what is
--   buffered and consumes only when it is complete), a cancelled `send`
--   committed nothing (it waits for room before it commits, then commits all
--   of its data at once).
-- * Reading from the OS pauses while `read_ahead` bytes are buffered (a slow
--   reader pushes back on the peer), unless a waiting read needs more.
-- * Errors from the OS raise `OSError`; a peer reset or a broken pipe raises
--   `BrokenResourceError` with `code = "ECONNRESET"` or `"EPIPE"`, from the
--   next call on. While `tether.run` has streams, `SIGPIPE` does not kill the
--   process (its disposition comes back when `run` returns; an embedding
--   host that attaches tether to its own loop keeps its own `SIGPIPE`
--   setting and should ignore the signal itself).
-- * Streams still open when `tether.run` returns are closed then.
-- @section streams

--- Two connected streams over a UNIX socket pair (full duplex).
-- @function socketpair
-- @treturn Stream
-- @treturn Stream
-- @raise `tether.socketpair: called outside tether.run; make streams inside
-- a task`; `OSError` (`op = "socketpair"`) when the system refuses
-- @usage
-- local a, b = tether.socketpair()
-- a:send("ping\n")
-- print(b:read_line())   --> ping

--- An OS pipe as two streams: its read end and its write end. Reading the
-- write end or writing the read end raises a misuse error; `send_eof` on
-- the write end closes it (after the queued bytes), which the read end sees
-- as the end of input.
-- @function open_pipe
-- @treturn Stream the read end
-- @treturn Stream the write end
-- @raise as `socketpair`, with `op = "pipe"`

--- A stream over a descriptor the program already has: a pipe, a socket, a
-- terminal or a regular file (a regular file is read and written directly,
-- since the kernel never makes such calls wait). The stream takes the
-- descriptor over and closes it, unless `opts.dup` asks for a duplicate.
-- @function wrap_fd
-- @tparam integer fd
-- @tparam[opt] table opts `dup` (boolean)
-- @treturn Stream
-- @raise `tether.wrap_fd: descriptor N is not an open pipe, socket, terminal
-- or regular file`; misuse errors for a bad fd or option

--- The process's standard input as a Stream, whatever it is (a terminal, a
-- pipe, a socket or a regular file); reading it never blocks the loop. The
-- same stream while it is open. It works on a duplicate: closing it (or the
-- end of `tether.run`, which closes it) leaves descriptor 0 open, and its
-- blocking mode as it was. A terminal stream has `set_mode` and `winsize`.
-- @function stdin
-- @treturn Stream

--- The process's standard output as a Stream (as `stdin`).
-- @function stdout
-- @treturn Stream

--- The process's standard error as a Stream (as `stdin`).
-- @function stderr
-- @treturn Stream

--- TCP.
-- @section tcp

--- Connects to `host`:`port`. A name is resolved first (`getaddrinfo`), and
-- all its addresses are tried with Happy Eyeballs (RFC 8305 style): the next
-- attempt starts after `happy_eyeballs_delay` or as soon as the previous one
-- failed; the first to connect wins and the others are closed. A checkpoint;
-- a cancelled connect leaves no socket behind.
-- @function connect_tcp
-- @tparam string host a name or an IPv4/IPv6 address
-- @tparam integer port 1..65535
-- @tparam[opt] table opts `local_host`, `local_port` (bind the local end),
-- `family` (`"inet"`, `"inet6"`, or nil for any), `happy_eyeballs_delay`
-- (seconds, default 0.25)
-- @treturn Stream a TCP stream (`nodelay` on)
-- @raise `OSError` with `op = "connect"`, `target = "host:port"` and
-- `attempts` (the `OSError` of each address tried); misuse errors for a bad
-- host, port or option
-- @usage
-- local conn <close> = tether.connect_tcp("127.0.0.1", 6379)
-- conn:send("PING\r\n")
-- print(conn:read_line())

--- Listens for TCP connections. Bind errors raise at once.
-- @function listen_tcp
-- @tparam[opt] table opts `host` (nil: every interface, IPv6 and IPv4, through
-- one dual-stack socket), `port` (default 0: a free port, the same on every
-- address), `backlog` (default 511), `reuse_port`, `family`
-- @treturn Listener
-- @raise `OSError` (`op = "listen"`, e.g. `EADDRINUSE`)

--- `listen_tcp` and `Listener:serve` in one call. Under `tg:start` (which
-- passes a task status first) the listener is passed to
-- `task_status:started`, so `tg:start(tether.serve_tcp, handler, 0)` returns it.
-- @function serve_tcp
-- @tparam function handler called with each connection, in a task of its own
-- @tparam integer port
-- @tparam[opt] table opts `listen_tcp`'s and `serve`'s options together
-- @usage
-- local listener = tg:start(tether.serve_tcp, function(conn)
--   for chunk in conn do conn:send(chunk) end
-- end, 0, { host = "127.0.0.1" })
-- print(listener.port)

--- Resolves a host name. Numeric addresses are answered at once; names are
-- looked up off the loop. A checkpoint: cancelling it returns at once (the
-- lookup finishes in the background and is discarded).
-- @function getaddrinfo
-- @tparam string host
-- @tparam integer port
-- @tparam[opt] string family `"inet"`, `"inet6"` or nil for any
-- @treturn {table,...} `{host =, port =, family =}` per address
-- @raise `OSError` (`op = "getaddrinfo"`, e.g. `EAI_NONAME`)

--- The name of a numeric address, looked up off the loop (reverse DNS,
-- `/etc/hosts`). A checkpoint: cancelling it returns at once (the lookup
-- finishes in the background and is discarded).
-- @function getnameinfo
-- @tparam string host a numeric IPv4 or IPv6 address
-- @tparam integer port
-- @treturn string the host's name (its numeric form when it has none)
-- @treturn string the port's service name (or its number)
-- @raise `OSError` (`op = "getnameinfo"`); misuse errors for a host that is
-- not a numeric address
-- @usage
-- print(tether.getnameinfo("127.0.0.1", 80))   --> localhost  http

--- UDP.
-- @section udp

--- A UDP socket, bound at once and receiving from then on: datagrams are
-- queued as they arrive, up to `opts.queue`; further ones, while nobody reads,
-- are dropped and counted in `UdpSocket.dropped`. A host may be a name: it
-- is looked up first (off the loop; a checkpoint, and a cancelled lookup
-- did nothing) and its first address of the socket's family is used.
-- @function open_udp
-- @tparam[opt] table opts `host` (the address or name to bind; default any
-- address of the family), `port` (default 0: any free port), `family`
-- (`"inet"` or `"inet6"`; default `"inet6"` for an IPv6 `host`, else
-- `"inet"`, names included),
-- `reuse_addr` (boolean), `broadcast` (boolean: may send to broadcast
-- addresses), `queue` (datagrams kept while nobody reads, default 256)
-- @treturn UdpSocket
-- @raise `OSError` (`op = "bind"`, e.g. `EADDRINUSE`; `op = "getaddrinfo"`
-- with the name as `target` when it has no address of the family); misuse
-- errors for bad options, or outside `tether.run`
-- @usage
-- local u <close> = tether.open_udp { host = "127.0.0.1" }
-- u:send("ping", "127.0.0.1", 9999)
-- local data, host, port = u:receive()

--- UNIX sockets.
-- @section unix

--- Connects to the UNIX socket at `path`. A checkpoint; a cancelled connect
-- leaves no socket behind.
-- @function connect_unix
-- @tparam string path the socket file (shorter than 108 bytes)
-- @treturn Stream a UNIX stream; its `remote_address` is `{path = path}`
-- @raise `OSError` with `op = "connect"` and `target = path` (`ENOENT`: no
-- such file, `ECONNREFUSED`: nobody listens); misuse errors for a bad path
-- @usage
-- local conn <close> = tether.connect_unix("/run/app.sock")
-- conn:send("status\n")
-- print(conn:read_line())

--- Listens for connections on the UNIX socket file `path`. A stale socket
-- file there (nobody listens on it any more) is replaced; closing the
-- listener removes the file, unless another one replaced it meanwhile.
-- Telling a stale file from a live one takes a connection attempt: a server
-- listening there sees a connection that closes at once.
-- @function listen_unix
-- @tparam string path the socket file (shorter than 108 bytes)
-- @tparam[opt] table opts `mode` (the file's permissions, such as
-- `tonumber("600", 8)`), `backlog` (default 511)
-- @treturn Listener its `port` is nil, its `addresses` `{{path = path}}`
-- @raise `OSError` with `op = "listen"` and `target = path` (`EADDRINUSE`:
-- someone listens there, or the file is not a socket); misuse errors for a
-- bad path or option

--- `listen_unix` and `Listener:serve` in one call; under `tg:start` it
-- passes the listener to `task_status:started`, as `serve_tcp` does.
-- @function serve_unix
-- @tparam function handler called with each connection, in a task of its own
-- @tparam string path
-- @tparam[opt] table opts `listen_unix`'s and `serve`'s options together
-- @usage
-- local listener = tg:start(tether.serve_unix, function(conn)
--   for chunk in conn do conn:send(chunk) end
-- end, "/tmp/echo.sock", { mode = tonumber("600", 8) })

--- Child processes. A child process belongs to the block or task group that
-- started it: when its owner is cancelled or fails, the process is
-- terminated by the *ladder* (by default SIGTERM, 5 seconds' grace, SIGKILL,
-- sent to its whole process group), reaped, and its pipes are closed, before
-- the owner goes on. No zombie and no orphan is left, Ctrl+C included.
--
-- Options (`opts`) shared by `run_process` and `open_process`:
--
-- * `stdin`, `stdout`, `stderr`: `"pipe"` (a Stream on `p.stdin`/`p.stdout`/
--   `p.stderr`), `"capture"` (stdout/stderr of `run_process` only: the output
--   comes back as a string), `"inherit"`, `"null"` (/dev/null), `"stdout"`
--   (stderr only: the same as stdout), a Stream (its descriptor is handed to
--   the child; reading it meanwhile is unspecified), or for stdin any other
--   string: input fed to the child.
-- * `cwd`; `env`, a table merged over this process's environment (a value of
--   `false` removes a variable); `clear_env = true` starts from an empty one.
-- * `check`: raise `ProcessError` when the exit code is not 0 or a signal
--   ended the process.
-- * `max_output`: bytes per captured stream (default 16 MiB); more kills the
--   process and raises `LimitExceeded`.
-- * `terminate`: the ladder, `{signal, grace, signal, grace, ..., signal}`
--   (signals as numbers or names, grace periods in seconds), default
--   `{"SIGTERM", 5, "SIGKILL"}`. Each signal is sent unless nothing of the
--   process is left; each grace period ends early when it is gone. If the
--   process is still there after the last step, SIGKILL follows; if even that
--   does not end it within 5 seconds (a process in uninterruptible sleep), the
--   owner gets a `ProcessError` instead of hanging, and a thread of tether's
--   reaps the process whenever it ends.
-- * `group` (default true): the child runs in a new session and leads its
--   own process group, so the ladder reaches its children too (and the
--   terminal's Ctrl+C does not reach it: tether's own Ctrl+C handling
--   terminates it). It has no controlling terminal then; use `group = false`
--   for a program that opens `/dev/tty`. With false, the ladder reaches the
--   direct child only.
-- * `shell = true`: `cmd` is a string run by `/bin/sh -c`.
--
-- A program that cannot be started raises `OSError` with `op = "spawn"` and
-- the program as `target` (`ENOENT`: not found, or `cwd` does not exist;
-- `EACCES`: not executable), and leaves nothing behind. Receivers for
-- SIGCHLD keep working while processes run, and SIGCHLD's disposition is
-- back to what it was when `run` returns. If `tether.run` ends while a child
-- that nobody owns still runs (an `open_process` result never closed), the
-- child is killed and reaped.
-- @section processes

--- Runs `cmd` to completion. Without `stdout`/`stderr` options both are
-- captured (read concurrently, so that no pipe fills up); stdin is empty
-- input unless `opts.stdin` says otherwise. After the process exits, its
-- captured output is read until the pipes close, for at most 1 second more
-- (a background grandchild holding them open does not keep the caller
-- waiting). A cancelled `run_process` terminates the process by the ladder
-- and raises `Cancelled` (not `ProcessError`).
--
-- Under `tg:start` (which passes a task status first), the live Process is
-- passed to `task_status:started` and the group owns it: cancelling the
-- group terminates it. Its `"pipe"` streams are the caller's then: they stay
-- open after a normal exit, so that the caller can read them to the end
-- (close them when done; the end of `tether.run` closes what is left).
-- @function run_process
-- @tparam table|string cmd `{program, arg...}` (the program is looked up in
-- `PATH`); a string only with `opts.shell = true`
-- @tparam[opt] table opts see the section; `check` defaults to true
-- @treturn table `{code =, signal =, stdout =, stderr =, pid =}`: `code` is nil
-- when a signal ended the process (`signal` is then its number); `stdout`
-- and `stderr` are strings when captured, else nil
-- @raise `ProcessError` (`check`); `LimitExceeded` (`max_output`);
-- `OSError` (`op = "spawn"`); `Cancelled`; misuse errors for a bad `cmd` or
-- option
-- @usage
-- local r = tether.run_process({"git", "rev-parse", "HEAD"})
-- print(r.stdout)
--
-- tether.task_group(function(tg)
--   local p = tg:start(tether.run_process, {"server", "--port=0"}, {stdout = "pipe"})
--   print(p.stdout:read_line())
--   tg.cancel_scope:cancel()        -- the server is terminated and reaped
-- end)

--- Starts `cmd` and returns its Process, a to-be-closed value: closing it
-- at the end of its block closes its stdin and waits for it to exit (with
-- `check = true`, a failure then raises `ProcessError`); closing it because
-- of an error, or a cancelled wait there, terminates it by the ladder. Its
-- pipes are closed either way. Defaults: stdin, stdout and stderr
-- `"inherit"`, `check = false`. A string `opts.stdin` is written to the
-- child in the background.
-- @function open_process
-- @tparam table|string cmd as for `run_process`
-- @tparam[opt] table opts see the section (`"capture"` is not allowed)
-- @treturn Process
-- @raise `OSError` (`op = "spawn"`); misuse errors for a bad `cmd` or option
-- @usage
-- do
--   local p <close> = tether.open_process({"sort"}, {stdin = "pipe", stdout = "pipe"})
--   p.stdin:send("b\na\n"); p.stdin:close()
--   for line in p.stdout:lines() do print(line) end
-- end                                  -- waits for exit; an error or cancel kills it

--- Coroutines, callbacks and luv.
-- A program that loads luv (`require "luv"`) before `tether.run` can use it
-- inside the run: tether watches luv's loop from its own (its descriptor and
-- its next timeout, and a run of it before every poll), so luv's timers,
-- handles and callbacks run while tasks run, with no polling task and no added
-- latency. Open luv handles do not keep `run` from returning; a later
-- `uv.run()` goes on with them. luv's callbacks run between tasks: they may
-- wake tasks (`event:set()`, a `wait_callback`'s `done`), not block. A
-- `tether.run` called from inside a luv callback leaves luv's loop alone (it
-- is running already).
-- @section coroutines

--- Lua's `coroutine` library for coroutines that may block. A blocking tether
-- call inside a coroutine resumed with `tether.coroutine.resume` (or called
-- through a function of `tether.coroutine.wrap`) from a task suspends the
-- whole task, and the coroutine goes on where it was once the call returns;
-- its own `yield`s still go to its resumer, nested to any depth. Errors,
-- `Cancelled` included, come out of `resume` as `false, err` and out of a
-- `wrap` function as an error, as in Lua (a `wrap` function closes the
-- coroutine's to-be-closed variables first; after `resume`, `close` does).
-- `create`, `yield`, `status`, `running`, `isyieldable` and `close` are the
-- coroutine library's own, so they answer as for plain coroutines.
-- A coroutine cannot `yield` from inside a cancel scope or task group it
-- opened (the error is raised inside it, at the yield); while it waits inside
-- tether, only its task resumes it (`resume` from elsewhere returns `true` and
-- a message, `close` raises). Resumed outside a task, or from a plain
-- coroutine, it is a plain coroutine: blocking in it raises.
-- @table coroutine
-- @field create `coroutine.create`
-- @field resume `resume(co, ...)`: like `coroutine.resume`
-- @field wrap `wrap(fn)`: like `coroutine.wrap`
-- @field yield `coroutine.yield`
-- @field status `coroutine.status`
-- @field running `coroutine.running`
-- @field isyieldable `coroutine.isyieldable`
-- @field close `coroutine.close`
-- @usage
-- local lines = tether.coroutine.wrap(function()
--   for chunk in stream do          -- blocks the task, not the caller's loop
--     for line in chunk:gmatch("[^\n]+") do tether.coroutine.yield(line) end
--   end
-- end)
-- for line in lines do print(line) end

--- Calls `fn(done)` and blocks until `done(...)` is called, from any callback
-- on this loop (a luv callback, another task, `fn` itself), then returns
-- `done`'s arguments. A second call of `done` is ignored. Cancellation returns
-- at once (raising `Cancelled`), and a later `done` is then ignored; in a
-- cancelled scope it raises `Cancelled` without calling `fn`. A checkpoint.
-- @function wait_callback
-- @tparam function fn called with `done`
-- @return the arguments of the first `done` call
-- @raise `Cancelled`; what `fn` raises; misuse errors outside a task or for a
-- `fn` that is not callable
-- @usage
-- local uv = require "luv"
-- local err, stat = tether.wait_callback(function(done)
--   uv.fs_stat("/etc/hosts", done)
-- end)

--- Worker threads.
-- Lua code runs in parallel on a pool of tether's own OS threads (never
-- libuv's thread pool, which name lookups use), each with a `lua_State` of
-- its own that lives as long as the thread: the standard libraries, the
-- caller's `package.path` and `package.cpath`, and a `tether` module of its
-- own (`tether.worker.check_cancelled`, `tether.worker.call`,
-- `tether.Cancelled`, `tether.WorkerError`). Threads start when a call finds
-- none idle, are reused, and end after idling for 10 seconds; `tether.run`
-- returns only after every worker it started has finished.
--
-- Values cross by copy: nil, booleans, integers and floats (kept apart),
-- strings, and tables of these, deep-copied; a table reached twice (or in a
-- cycle) arrives as one table; metatables stay behind; trailing nils are
-- kept.
-- @section workers

--- Runs `fn(...)` in a worker thread and returns its results. A checkpoint.
-- `fn` is a Lua function whose only upvalue, if any, is `_ENV` (it is moved
-- with `string.dump`: it sees the worker's globals, not the caller's), or a
-- string `"module.function"`: the worker `require`s `"module"` and calls its
-- field `function` (`"a.b.fn"` requires `"a.b"`).
--
-- `opts.cancel` says what cancelling the caller does:
--
-- * `"interrupt"` (the default): the worker raises `Cancelled` at its next
-- Lua instruction; its `<close>` variables run, and a `Cancelled` it
-- swallows with `pcall` comes back at the next instruction. The caller
-- raises `Cancelled` once the worker has stopped. A worker blocked in C
-- (a long `os.execute`, a C library call) is interrupted when it returns to
-- Lua, and waited for meanwhile.
-- * `"wait"`: the worker is not interrupted (`check_cancelled` raises in
-- it); the caller waits for it, shielded, returns its results, and raises
-- `Cancelled` at its next checkpoint.
-- * `"abandon"`: the caller raises `Cancelled` at once; the worker's results
-- are discarded, and its limiter token is released only when it really
-- ends.
-- @function to_thread
-- @tparam[opt] table opts `limiter` (a `CapacityLimiter`; default one limiter
-- of 16 tokens shared by every call without one), `cancel` (`"interrupt"`,
-- `"wait"` or `"abandon"`)
-- @tparam function|string fn
-- @param ... arguments (copied)
-- @return fn's results (copied)
-- @raise `WorkerError` when `fn` raises in the worker (its `message` and
-- `traceback`), or a result cannot cross; `Cancelled`; a misuse error
-- (`tether.to_thread: argument 2 is a function ...`) when `fn` or an
-- argument cannot cross, or outside `tether.run`
-- @usage
-- local digest = tether.to_thread(function(path)
--   local f = assert(io.open(path, "rb"))
--   local data = f:read("a")
--   f:close()
--   return #data, data:sub(1, 16)
-- end, "/etc/hostname")
-- local n = tether.to_thread({ cancel = "wait" }, "string.rep", "ab", 3)

--- Makes `fn` callable from the workers of this run as
-- `tether.worker.call(name, ...)`. The call runs `fn` in the loop, as part
-- of the `to_thread` caller's task (in its cancel scope: `fn` may block and
-- is cancelled with the caller), and copies its results back to the worker.
-- Exposed functions belong to the current run.
-- @function worker.expose
-- @tparam string name
-- @tparam function fn
-- @raise misuse errors for a bad name or function, or outside `tether.run`
-- @usage
-- tether.worker.expose("log", function(line) logfile:send(line .. "\n") end)
-- tether.to_thread(function()
--   require("tether").worker.call("log", "hello from a worker")
-- end)

--- In a worker: runs the function the main program exposed as `name` and
-- returns its results. Outside a worker it raises a misuse error.
-- @function worker.call
-- @tparam string name
-- @param ... arguments (copied)
-- @return the exposed function's results (copied)
-- @raise `WorkerError` (in the worker) when the exposed function raises;
-- `Cancelled` when the caller is cancelled meanwhile; an error for an
-- unknown name or a value that cannot cross

--- In a worker: raises `Cancelled` if the caller of `to_thread` was
-- cancelled (in every mode). Outside a worker it raises a misuse error.
-- @function worker.check_cancelled

--- Errors.
-- Every error tether raises on purpose is a table whose metatable is one of
-- these classes; `tostring` of one reads `tether.Name: message`, which is also
-- what `lua5.4` prints when one is uncaught. Test an error with `tether.is`.
-- Misuse raises a plain string instead (see Running).
--
-- Every instance also has `where`: the `file:line` of the program's code that
-- raised it (or called `Class.new`), skipping tether's own Lua files, e.g.
-- `"server.lua:42"` for a `TimeoutError` of a `fail_after` whose body waited
-- there.
-- @section errors

--- Whether `err` is an instance of the error class `cls`.
-- @function is
-- @param err any error value
-- @tparam table cls one of the classes below, e.g. `tether.Cancelled`
-- @treturn boolean
-- @usage
-- local ok, err = pcall(tether.sleep, 1)
-- if not ok and tether.is(err, tether.Cancelled) then error(err, 0) end

--- The task is cancelled: raised by checkpoints, caught by the scope that was
-- cancelled. The message is the cause: the `cancel(reason)` text, or a
-- description such as `"cancelled"`, `"deadline exceeded"`, `"cancelled because
-- a task in the group raised an error"` or `"interrupted by SIGINT"`.
-- Swallowing one does not help for long: the next checkpoint raises it again
-- (see `tether.pcall`).
-- @table Cancelled
-- @field message

--- Ctrl+C (SIGINT) ended the run: `tether.run` raises it once every task has
-- finished. Message: `"interrupted by Ctrl+C (SIGINT)"`.
-- @table Interrupted
-- @field message

--- A `fail_after`/`fail_at` deadline expired. Message: `opts.reason`, or
-- `"deadline exceeded"`.
-- @table TimeoutError
-- @field message

--- The errors of a task group, in the order they happened. `tostring` shows
-- each error with its task and traceback.
-- @table ErrorGroup
-- @field message `"N error(s) raised in a task group"`
-- @field errors the original error values (strings stay strings)
-- @field tracebacks one per error, captured where it was raised
-- @field tasks the names of the tasks that raised them

--- A `*_nowait` call could not proceed without blocking.
-- @table WouldBlock
-- @field message

--- Every send end of a stream is closed and everything was received.
-- @table EndOfStream
-- @field message

--- The object was closed by this side (a stream handle, a signal receiver).
-- @table ClosedResourceError
-- @field message

--- The resource can no longer be used: every receive end of the stream is
-- closed, or the lock's owner task finished without releasing it.
-- @table BrokenResourceError
-- @field message

--- Another task is already reading this signal receiver.
-- @table BusyResourceError
-- @field message

--- A read's `max` was exceeded before its delimiter (or the end of input)
-- came; the buffered bytes are left as they were.
-- @table LimitExceeded
-- @field message
-- @field limit the `max` that was exceeded

--- Input ended before a read got what it needed.
-- @table IncompleteRead
-- @field message
-- @field partial the bytes that did arrive (consumed by the read)

--- An operating-system error. `tostring` gives
-- `tether.OSError: connect 127.0.0.1:80: ECONNREFUSED: connection refused`.
-- @table OSError
-- @field code the error's name, such as `"ECONNREFUSED"`
-- @field errno its number
-- @field op the operation, such as `"connect"`
-- @field target what it was applied to (an address, a path), if any
-- @field message the system's description

--- A child process run with `check` failed: it exited with a code other than
-- 0 or was ended by a signal.
-- @table ProcessError
-- @field message
-- @field cmd the command as given
-- @field code the exit code (nil if a signal ended it)
-- @field signal the number of the signal that ended it, or nil
-- @field stdout the captured standard output, if it was captured
-- @field stderr the captured standard error, if it was captured

--- A function run in a worker thread raised an error.
-- @table WorkerError
-- @field message the worker's error, as a string
-- @field traceback the worker's traceback where it raised

--- Testing and debugging.
-- Virtual time for tests, and a view of what every task is doing.
-- @section debugging

--- `run` with options. Unknown options raise.
-- @function run_with
-- @tparam table opts `clock`: a `MockClock` that `current_time()`, every
-- deadline and every sleep of this run read instead of the monotonic clock
-- @tparam function fn the main task
-- @param ... arguments passed to `fn`
-- @return the results of `fn`
-- @raise as `run`; `tether.run_with: unknown option 'x' (the only option is
-- clock)`; `tether.run_with: clock must be a tether.MockClock, got ...`
-- @usage
-- local clock = tether.MockClock{autojump_threshold = 0}
-- tether.run_with({clock = clock}, function()
--   tether.sleep(3600) -- returns at once: the clock jumps an hour
-- end)

--- A virtual clock for tests (Trio's `MockClock`). Its time starts at 0 and
-- advances `rate` virtual seconds per real second (0: it stands still) and
-- when `jump` moves it. With `autojump_threshold = t`, whenever every task
-- of the run has been blocked for `t` real seconds (none ready to run, and no
-- `wait_all_tasks_blocked` caller left to wake), the clock jumps to the next
-- deadline, so a test of a one-hour timeout runs in milliseconds; `0` jumps
-- as soon as every task is blocked. A task that keeps running (a loop of
-- checkpoints) is never jumped past. Fields `rate` and `autojump_threshold`
-- are readable and writable; changes take effect at once.
-- @function MockClock
-- @tparam[opt] table opts `rate` (a finite number >= 0, default 0) and
-- `autojump_threshold` (seconds >= 0, default `math.huge`: never)
-- @treturn MockClock
-- @raise `tether.MockClock: unknown option ...`, or a bad `rate` or threshold

--- A snapshot of the running program: nested tables of cancel scopes,
-- task groups and tasks. The root is `{kind = "run", children = {...}}`.
-- A node of kind `"scope"` or `"group"` has `deadline`, `shield`,
-- `cancel_called` and `children`; a task is listed under its innermost
-- scope. A node of kind `"task"` has `id`, `name` and `state` (`"running"`,
-- `"ready"` or `"blocked"`); a blocked task also has `waiting_on` (what it
-- waits on: `"Event"`, `"Lock"`, `"memory stream receive"`, `"byte stream
-- read"`, `"signal receiver"`, `"sleep until T (in S s)"`, `"accept"`,
-- `"connect"`, `"DNS lookup (getaddrinfo)"`, `"the end of its task group's
-- children"`, ...), and a task that has run has `where` (the `file:line` of
-- the program's call it waits in, skipping tether's own files) and
-- `traceback`.
--
-- **TETHER_DUMP_SIGNAL.** When the environment variable names a signal
-- (`SIGQUIT`, `QUIT` or a number) as `run` starts, that signal prints
-- `format_task_tree()` to stderr while `run` runs, and the program goes on;
-- its disposition comes back when `run` returns. A signal ignored when `run`
-- starts stays ignored; unset, it has no effect.
-- @function task_tree
-- @treturn table
-- @raise `tether.task_tree: called outside tether.run`
-- @usage
-- -- TETHER_DUMP_SIGNAL=SIGQUIT lua5.4 server.lua, then: kill -QUIT <pid>

--- The task tree as indented text: each scope and group, each task with its
-- state, what it waits on, where, and its traceback.
-- @function format_task_tree
-- @tparam[opt] table tree from `task_tree` (default: a snapshot taken now)
-- @treturn string
-- @raise as `task_tree`

--- Task group: the `tg` passed to the body of `tether.task_group`.
-- @type TaskGroup

--- The group's `CancelScope`. Cancelling it cancels the body and every child,
-- and the group then exits quietly.
-- @field cancel_scope

--- Starts `fn(...)` as a child task. It first runs after the caller's next
-- schedule point; children start in FIFO order. Not a checkpoint. Starting a
-- task in a cancelled group is allowed (it runs until its first checkpoint).
-- @function TaskGroup:start_soon
-- @tparam[opt] string name the task's name (default: `"source:line"` of `fn`)
-- @tparam function fn the task function (a callable table is accepted)
-- @param ... arguments for `fn`
-- @raise `tg:start_soon: this task group has exited; ...`; a name without a
-- function: `tg:start_soon: expected a function (or callable) after the task
-- name "worker", got no value; call it as tg:start_soon("worker", fn, ...)`;
-- neither: `tg:start_soon: expected a function (or callable) to run, or a
-- task name and then one, got ...`
-- @usage
-- tg:start_soon(worker, 1)                 -- named after worker's source:line
-- tg:start_soon("reader", reader, stream)  -- named "reader"

--- Starts `fn(task_status, ...)` as a child and blocks until it calls
-- `task_status:started(value)`. Until then the child runs in the caller's
-- scopes; afterwards it belongs to the group. A checkpoint.
-- @function TaskGroup:start
-- @tparam[opt] string name
-- @tparam function fn called as `fn(task_status, ...)`
-- @param ...
-- @return the value passed to `task_status:started`
-- @raise the child's error if it raised before `started`, unwrapped (the group
-- is not affected); `tg:start: the task returned without calling
-- task_status:started()`; `Cancelled`; bad arguments as for `start_soon`
-- @usage
-- local function server(task_status, port)
--   local listener = listen(port)
--   task_status:started(listener.port)   -- tg:start returns this
--   serve(listener)
-- end
-- local port = tg:start(server, 0)

--- What `TaskGroup:start` passes to its task as first argument.
-- @type TaskStatus

--- Tells the starter that the task is ready: `tg:start` returns `value`.
-- @function TaskStatus:started
-- @param[opt] value
-- @raise `task_status:started: called twice for the same task; report
-- readiness once`

--- A cancel scope, made by `tether.CancelScope`, `move_on_after`,
-- `move_on_at`, `fail_after` or `fail_at`.
-- @type CancelScope

--- Absolute deadline, read/write; `math.huge` = none. Moving it takes effect
-- at once (into the past: cancels now). NaN or nil raises.
-- @field deadline

--- Read/write boolean: shields the inside from cancellation outside the scope
-- (not from its own `cancel` or deadline).
-- @field shield

--- True once the scope was cancelled, explicitly or by its deadline (a passed
-- deadline counts even before the timer fired). Read-only.
-- @field cancel_called

--- True if the scope caught a `Cancelled` when it exited. Read-only.
-- @field cancelled_caught

--- Enters the scope in the current task, calls `fn(...)` and exits. Entering is
-- not a checkpoint. A scope runs once.
-- @function CancelScope:run
-- @tparam function fn
-- @param ... arguments for `fn`
-- @return the results of `fn`, or nothing if the scope caught its
-- cancellation
-- @raise `TimeoutError` (`fail_after`/`fail_at` scopes whose deadline expired);
-- any error of `fn`, unchanged; `scope:run: this CancelScope was already used
-- and exited; a scope runs once, create a new one for each block`

--- Cancels the scope: every checkpoint inside raises `Cancelled` until the
-- task leaves it, and blocked tasks inside wake at once. Idempotent; allowed
-- from any task, before entry and after exit. Not a checkpoint.
-- @function CancelScope:cancel
-- @tparam[opt] string reason the `Cancelled` message (the first cause wins)

--- A signal receiver, from `tether.open_signal_receiver`. Pending signals
-- form an ordered set: a repeat of a pending signal adds to its count and keeps
-- its place. A to-be-closed value; calling it (as a `for` loop does) is
-- `receive`.
-- @type SignalReceiver

--- Waits for the next signal. A checkpoint, even when a signal is pending; a
-- cancelled read consumes nothing.
-- @function SignalReceiver:receive
-- @treturn integer the signal number
-- @treturn integer how many deliveries of it were coalesced into this read
-- @raise `ClosedResourceError` (closed, also while waiting);
-- `BusyResourceError` (another task is reading); `Cancelled`

--- Closes the receiver; idempotent, not a checkpoint. A task blocked in
-- `receive` gets `ClosedResourceError`.
-- @function SignalReceiver:close

--- A one-shot event, from `tether.Event`.
-- @type Event

--- Sets the event and wakes every waiter. Idempotent; not a checkpoint.
-- @function Event:set

--- Whether the event is set.
-- @function Event:is_set
-- @treturn boolean

--- Waits until the event is set. A checkpoint, also when it is set already.
-- @function Event:wait
-- @raise `Cancelled`

--- A lock, from `tether.Lock`. Non-reentrant: the owner acquiring it again
-- raises, and only the owner may release it. The lock is also a to-be-closed
-- value whose close releases it.
-- @type Lock

--- Waits for the lock (FIFO) and takes it. A checkpoint, also when the lock
-- is free (a free lock is not taken in a cancelled scope).
-- @function Lock:acquire
-- @return the lock, as a to-be-closed guard that releases it
-- @raise `Cancelled`; `lock:acquire: the lock is already held by this task
-- (locks are not reentrant)`; `BrokenResourceError` (`lock:acquire: the lock
-- is held by task N, which finished without releasing it; ...`: nobody could
-- ever release it). A task already waiting when the owner finishes keeps
-- waiting. Release with a `<close>` guard and none of this can happen.

--- Takes the lock if it is free. Not a checkpoint.
-- @function Lock:acquire_nowait
-- @return the lock, as a to-be-closed guard
-- @raise `WouldBlock` (`lock:acquire_nowait: the lock is held by another
-- task`); `BrokenResourceError` and the reentrancy error, as `acquire`

--- Releases the lock, handing it to the longest waiter if any. Not a
-- checkpoint.
-- @function Lock:release
-- @raise `lock:release: the lock is not locked`; `lock:release: the lock is
-- held by another task; only its owner may release it`

--- Whether some task holds the lock.
-- @function Lock:locked
-- @treturn boolean

--- A counting semaphore, from `tether.Semaphore`. Also a to-be-closed value
-- whose close releases one slot.
-- @type Semaphore

--- The number of free slots. Read-only.
-- @field value

--- The limit given at creation, or nil. Read-only.
-- @field max_value

--- Waits for a free slot (FIFO) and takes it. A checkpoint, also when a slot
-- is free.
-- @function Semaphore:acquire
-- @return the semaphore, as a to-be-closed guard that releases the slot
-- @raise `Cancelled`

--- Takes a slot if one is free. Not a checkpoint.
-- @function Semaphore:acquire_nowait
-- @return the semaphore, as a to-be-closed guard
-- @raise `WouldBlock` (`semaphore:acquire_nowait: the semaphore's value is 0`)

--- Frees a slot: hands it to the longest waiter, or adds one to `value`. Any
-- task may call it. Not a checkpoint.
-- @function Semaphore:release
-- @raise `semaphore:release: released too many times (value would exceed
-- max_value N)`

--- A condition variable, from `tether.Condition`. Hold its lock (`acquire`)
-- to call `wait`, `wait_for`, `notify` and `notify_all`; without it they
-- raise `condition:wait: the current task must hold the condition's lock`
-- (with the method's name). Also a to-be-closed value whose close releases
-- the lock.
-- @type Condition

--- Acquires the underlying lock, as `Lock:acquire` (errors name
-- `condition:acquire`).
-- @function Condition:acquire
-- @return the condition, as a to-be-closed guard that releases the lock
-- @raise as `Lock:acquire`

--- Acquires the underlying lock if it is free, as `Lock:acquire_nowait`.
-- @function Condition:acquire_nowait
-- @return the condition, as a to-be-closed guard
-- @raise as `Lock:acquire_nowait`

--- Releases the underlying lock, as `Lock:release`.
-- @function Condition:release
-- @raise as `Lock:release`

--- Whether the underlying lock is held.
-- @function Condition:locked
-- @treturn boolean

--- Releases the lock, waits for a notification, and holds the lock again
-- before it returns **or raises**: after a cancelled wait, or any other
-- error while it waited, the caller still holds the lock, so its guard
-- releases it normally and the error comes out unchanged. A checkpoint.
-- @function Condition:wait
-- @raise `Cancelled` (with the lock held again); misuse without the lock

--- Waits (as `wait`) until `predicate()` returns a true value, and returns
-- that value. The predicate is called with the lock held, first before any
-- wait: a predicate already true returns at once.
-- @function Condition:wait_for
-- @tparam function predicate a function or callable table
-- @return the predicate's true value
-- @raise `condition:wait_for: predicate must be callable, got ...`; as `wait`

--- Wakes up to `n` of the longest waiters (FIFO). A notified waiter that is
-- cancelled before it runs still returns normally. Not a checkpoint.
-- @function Condition:notify
-- @tparam[opt=1] integer n >= 0
-- @raise `condition:notify: n must be an integer >= 0, got ...`

--- Wakes every waiter. Not a checkpoint.
-- @function Condition:notify_all

--- A capacity limiter, from `tether.CapacityLimiter`. Also a to-be-closed
-- value whose close releases this task's token.
-- @type CapacityLimiter

--- The number of tokens, read/write. Raising it grants tokens to waiters at
-- once (FIFO); lowering it never takes tokens back (`available_tokens` may
-- go negative) and new acquirers wait until `borrowed_tokens` is below it.
-- A value that is not an integer >= 0 or `math.huge` raises
-- (`limiter.total_tokens: ...`), as does setting any other field.
-- @field total_tokens

--- How many tokens are held. Read-only.
-- @field borrowed_tokens

--- `total_tokens - borrowed_tokens`. Read-only.
-- @field available_tokens

--- Waits for a token (FIFO) and takes it for this task. A checkpoint, also
-- when a token is free.
-- @function CapacityLimiter:acquire
-- @return the limiter, as a to-be-closed guard that releases the token
-- @raise `Cancelled`; `limiter:acquire: this task already holds one of this
-- limiter's tokens`

--- Takes a token for this task if one is free and nobody waits. Not a
-- checkpoint.
-- @function CapacityLimiter:acquire_nowait
-- @return the limiter, as a to-be-closed guard
-- @raise `WouldBlock` (`limiter:acquire_nowait: no token is available`); the
-- misuse of `acquire`

--- Gives this task's token back, handing it to the longest waiter if any.
-- Not a checkpoint.
-- @function CapacityLimiter:release
-- @raise `limiter:release: this task does not hold any of this limiter's
-- tokens`

--- The send end of a memory object stream. A to-be-closed value; it is also
-- closed when collected.
-- @type MemoryObjectSendStream

--- Sends `item`, waiting (FIFO) until a receiver or the buffer takes it. A
-- checkpoint; a cancelled send sent nothing.
-- @function MemoryObjectSendStream:send
-- @param item any value but nil
-- @raise `BrokenResourceError` (every receive end is closed);
-- `ClosedResourceError` (this handle is closed); `Cancelled`;
-- `send:send: cannot send nil (nil ends iteration)`

--- Sends `item` if a receiver is waiting or the buffer has room. Not a
-- checkpoint.
-- @function MemoryObjectSendStream:send_nowait
-- @param item any value but nil
-- @raise `WouldBlock`; `BrokenResourceError`; `ClosedResourceError`

--- A new handle on the send end; the end stays open until every clone is
-- closed.
-- @function MemoryObjectSendStream:clone
-- @treturn MemoryObjectSendStream

--- Closes this handle; idempotent, not a checkpoint. Senders blocked through it
-- get `ClosedResourceError`; when the last send handle closes, receivers get
-- the end of the stream once the buffer is drained.
-- @function MemoryObjectSendStream:close

--- The stream's counters (the same from both ends).
-- @function MemoryObjectSendStream:statistics
-- @treturn table `current_buffer_used`, `max_buffer_size`,
-- `open_send_streams`, `open_receive_streams`, `tasks_waiting_send`,
-- `tasks_waiting_receive`

--- The receive end of a memory object stream. A to-be-closed value; it is also
-- closed when collected. Calling it (as `for item in receive do` does) is
-- `receive`, except that the end of the stream ends the loop instead of
-- raising.
-- @type MemoryObjectReceiveStream

--- The next item, waiting (FIFO) for one. A checkpoint; a cancelled receive
-- consumed nothing.
-- @function MemoryObjectReceiveStream:receive
-- @return the item
-- @raise `EndOfStream` (every send end is closed and the buffer is empty);
-- `ClosedResourceError`; `Cancelled`

--- The next item if one is ready. Not a checkpoint.
-- @function MemoryObjectReceiveStream:receive_nowait
-- @return the item
-- @raise `WouldBlock`; `EndOfStream`; `ClosedResourceError`

--- A new handle on the receive end.
-- @function MemoryObjectReceiveStream:clone
-- @treturn MemoryObjectReceiveStream

--- Closes this handle; idempotent, not a checkpoint. Receivers blocked through
-- it get `ClosedResourceError`; when the last receive handle closes, senders
-- get `BrokenResourceError`.
-- @function MemoryObjectReceiveStream:close

--- The stream's counters, as `MemoryObjectSendStream:statistics`.
-- @function MemoryObjectReceiveStream:statistics
-- @treturn table

--- A byte stream. A to-be-closed value; it is also closed when collected.
-- Calling it (as `for chunk in s do` does) is `receive`, except that the
-- end of input ends the loop instead of raising.
--
-- Fields: `read_ahead` (default 65536), `high_water` (default 65536),
-- `linger` (seconds, default 5), set with `set_option`; `keepalive` and
-- `nodelay` (TCP options: `false` and `nil` here); `local_address` and
-- `remote_address` (`{host =, port =, family =}` for TCP, `{path =}` for a
-- UNIX socket's named end, `nil` for an unnamed one, socket pairs and pipes).
-- @type Stream

--- The next 1..`max` bytes, buffered ones first. A checkpoint.
-- @function Stream:receive
-- @tparam[opt=65536] integer max
-- @treturn string
-- @raise `EndOfStream` at the end of input; `ClosedResourceError`;
-- `BusyResourceError`; `Cancelled`; `OSError`/`BrokenResourceError`

--- Reads like Lua's `file:read`: each format is `"l"` (a line without its
-- newline), `"L"` (with it), `"a"` (everything until the end of input) or a
-- byte count `n` (`n` bytes, fewer only at the end of input); none means
-- `"l"`. Returns `nil` at the end of input (`""` for `"a"`), and stops at
-- the first `nil`. All formats are satisfied before anything is consumed.
-- `"l"`/`"L"` take `read_line`'s limit, `"a"` `read_all`'s.
-- @function Stream:read
-- @param ... formats
-- @return one value per format
-- @raise `LimitExceeded`; as `receive`

--- One line, without its `"\n"` (and without a `"\r"` before it). The last,
-- unterminated line is returned as it is; `nil` at the end of input.
-- @function Stream:read_line
-- @tparam[opt=65536] integer max the longest line
-- @treturn string|nil
-- @raise `LimitExceeded` (field `limit`) as soon as more than `max` bytes
-- came without a newline, leaving them buffered; as `receive`

--- An iterator over lines, for `for line in s:lines() do`: each step is
-- `read_line(max)`; the end of input ends the loop. Does not close `s`.
-- @function Stream:lines
-- @tparam[opt=65536] integer max
-- @return an iterator, and `s`

--- The bytes before `delim`, which is consumed too.
-- @function Stream:read_until
-- @tparam string delim a non-empty string
-- @tparam integer max the most bytes before it
-- @treturn string
-- @raise `LimitExceeded` (the buffer left intact); `IncompleteRead` (field
-- `partial`: what arrived, now consumed) when input ends first; as `receive`

--- Exactly `n` bytes.
-- @function Stream:read_exactly
-- @tparam integer n
-- @treturn string
-- @raise `IncompleteRead` when input ends first (`partial = ""` if nothing
-- was buffered); as `receive`

--- Everything until the end of input (`""` if nothing came).
-- @function Stream:read_all
-- @tparam[opt=16777216] integer max
-- @treturn string
-- @raise `LimitExceeded` as soon as more than `max` bytes are buffered; as
-- `receive`

--- Puts bytes back in front of the buffer: the next read returns them first.
-- Not a checkpoint.
-- @function Stream:unread
-- @tparam string data

--- Waits until the write queue is below `high_water`, then commits all of
-- `data` (a string, or an array of strings written as one gather write) and
-- returns. What the kernel does not take at once is queued and delivered in
-- order unless the stream breaks. A checkpoint.
-- @function Stream:send
-- @tparam string|{string,...} data
-- @raise `ClosedResourceError` (closed, or after `send_eof`);
-- `BrokenResourceError` (`code = "EPIPE"`/`"ECONNRESET"`); `BusyResourceError`;
-- `Cancelled` (nothing was committed)

--- Commits `data` at once, or raises `WouldBlock` when the write queue is at
-- `high_water`. Not a checkpoint.
-- @function Stream:send_nowait
-- @tparam string|{string,...} data
-- @raise `WouldBlock`; `BusyResourceError` (another task is blocked in
-- `send`); as `send`

--- Waits until everything committed has been handed to the kernel. A
-- checkpoint.
-- @function Stream:flush
-- @raise the delivery error, if a write failed; `ClosedResourceError`

--- Half-close: the peer sees the end of input after the queued data; this
-- side can still receive. Idempotent; a later `send` raises
-- `ClosedResourceError`. On a pipe's write end it closes the pipe.
-- @function Stream:send_eof

--- Closes the stream: never blocks, not a checkpoint, idempotent. Tasks
-- blocked on it get `ClosedResourceError`; queued data is still flushed in
-- the background, for at most `linger` seconds. Fields and `stats` stay
-- readable; every other call raises `ClosedResourceError`.
-- @function Stream:close

--- Closes at once, dropping the queued data.
-- @function Stream:abort

--- Counters.
-- @function Stream:stats
-- @treturn table `{bytes_sent, bytes_received, write_queue, read_buffer}`:
-- bytes handed to the kernel, bytes read from it, bytes queued, bytes
-- buffered

--- A terminal's mode: `"raw"` (no line editing, no echo, no signals from
-- keys) or `"normal"`. `tether.run` restores the terminal's mode when it
-- returns.
-- @function Stream:set_mode
-- @tparam string mode
-- @raise `stream:set_mode: this stream is not a terminal`

--- A terminal's size.
-- @function Stream:winsize
-- @treturn integer width
-- @treturn integer height
-- @raise `stream:winsize: this stream is not a terminal`

--- Sets an option: `read_ahead` and `high_water` (integers > 0), `linger`
-- (seconds >= 0); `nodelay` and `keepalive` belong to TCP streams.
-- @function Stream:set_option
-- @tparam string name
-- @param value

--- A UDP socket, made by `open_udp`. A to-be-closed value; it is also closed
-- when collected, and at the end of `tether.run`. Calling it (as
-- `for data, host, port in u do` does) is `receive`.
--
-- Fields: `local_address` (`{host, port, family}`; nil once closed) and
-- `dropped` (datagrams dropped because the queue was full).
-- @type UdpSocket

--- Sends one datagram to `host`:`port` (to the connected peer, without them).
-- A checkpoint; a cancelled send sent nothing. When the system's buffer is
-- full the datagram is queued in the background; an error reported for it
-- is raised by the next send.
-- @function UdpSocket:send
-- @tparam string data at most 65488 bytes
-- @tparam[opt] string host an address of the socket's family, or a name
-- (looked up each time: see `open_udp`)
-- @tparam[opt] integer port
-- @raise `ClosedResourceError`; `OSError` (`op = "send"`, or `op =
-- "getaddrinfo"` for a name); `Cancelled`

--- The next datagram. A checkpoint; a cancelled receive leaves the datagram
-- queued for the next one.
-- @function UdpSocket:receive
-- @treturn string data
-- @treturn string the sender's host
-- @treturn integer the sender's port
-- @raise `ClosedResourceError` (closed, also while waiting);
-- `BusyResourceError` (another task is receiving); `OSError` (`op =
-- "recv"`); `Cancelled`

--- Connects the socket to one peer: then `send(data)` goes there and
-- `receive` returns only its datagrams (queued ones from others are
-- discarded). Once only. Not a checkpoint for an address; a name is looked
-- up first (a checkpoint: a cancelled lookup connected nothing).
-- @function UdpSocket:connect
-- @tparam string host an address of the socket's family, or a name
-- @tparam integer port
-- @raise `ClosedResourceError`; `OSError` (`op = "connect"`, or `op =
-- "getaddrinfo"` for a name); `Cancelled` (while looking a name up)

--- Closes the socket, dropping what is queued. Idempotent, not a
-- checkpoint; a blocked `receive` or `send` raises `ClosedResourceError`.
-- @function UdpSocket:close

--- A TCP or UNIX socket listener. A to-be-closed value; it is also closed
-- when collected. Calling it (as `for conn in listener do` does) is
-- `accept`.
--
-- Fields: `port` (the bound port; nil for a UNIX listener) and `addresses`
-- (a list of `{host, port, family}`, or `{{path =}}` for a UNIX listener).
-- @type Listener

--- The next connection, as a Stream. A checkpoint; a cancelled accept leaves
-- the connection queued for the next one.
-- @function Listener:accept
-- @treturn Stream
-- @raise `ClosedResourceError` (closed, also while waiting);
-- `BusyResourceError` (another task is accepting); `OSError` (`op =
-- "accept"`); `Cancelled`

--- Stops listening (a UNIX listener removes its socket file). Idempotent,
-- not a checkpoint; a blocked `accept` raises `ClosedResourceError`.
-- @function Listener:close

--- Accepts forever, running `handler(conn)` as a task per connection (in
-- `opts.group` if given, else a group of its own). Each `conn` is closed when
-- its handler returns or fails. A handler's error fails the group, unless
-- `opts.handler_errors = "log"`, which prints it to stderr with its traceback
-- and keeps serving. Out of descriptors or memory while accepting, it waits
-- 0.1 s and tries again. The listener is closed when serving ends.
-- @function Listener:serve
-- @tparam function handler
-- @tparam[opt] table opts `group`, `handler_errors`

--- Files.
-- @section files

--- Opens a file. Its reads and writes run off the loop (in libuv's thread
-- pool; a read the page cache can answer is done at once without waiting
-- for a disk), so other tasks keep running while a disk is slow. A
-- checkpoint; opening to read (`"r"`, `"r+"`) is cancellable, opening to
-- create or truncate (`"w"`, `"a"` and their `+` forms) completes once
-- started.
-- @function open_file
-- @tparam string path
-- @tparam[opt="r"] string mode as Lua's `io.open`: `"r"`, `"w"`, `"a"`,
-- `"r+"`, `"w+"`, `"a+"`, each with an optional `"b"` (ignored)
-- @treturn File
-- @raise `OSError` (`op = "open"`, `target = path`; `code` such as
-- `"ENOENT"`, `"EACCES"`, `"EISDIR"`); misuse errors for a bad path or mode,
-- or outside `tether.run`
-- @usage
-- local f <close> = tether.open_file("/etc/hosts")
-- for line in f:lines() do print(line) end

--- Files and directories by path, each call one operation off the loop
-- (libuv's thread pool) and a checkpoint. Calls that only look (`stat`,
-- `lstat`, `exists`, `readlink`, `realpath`, `read_file`, `dir`) are
-- cancellable; calls that change something (`mkdir`, `remove`, `rename`,
-- `copy`, `symlink`, `chmod`, `write_file`) complete once started, so one
-- that raised `Cancelled` changed nothing. Errors are `OSError`s with `code`
-- (such as `"ENOENT"`), `errno`, `op` (the system call, such as `"stat"`)
-- and `target` (the path).
--
-- - `fs.read_file(path[, max])` -> the file's bytes; over `max` bytes
--   raises `LimitExceeded` (its `limit` is `max`).
-- - `fs.write_file(path, data[, {atomic = true}])` replaces the file's
--   content. With `atomic`, `data` goes to a new file beside it, which is
--   synced and renamed over `path` (keeping the old file's permissions):
--   readers see the old or the new content, never a mix, and on an error or
--   a crash no temporary file is left (the file name ends in
--   `.tmp-<pid>-<hex>` while it exists).
-- - `fs.stat(path)`, `fs.lstat(path)` (a link itself) -> `{type, size,
--   mode, mtime, atime, ctime, ino, dev, nlink, uid, gid}`: `type` is
--   `"file"`, `"dir"`, `"link"`, `"fifo"`, `"socket"`, `"char"`, `"block"`
--   or `"unknown"`; `mode` the permission bits (an integer); the times are
--   seconds (floats).
-- - `fs.exists(path)` -> boolean; follows links (a dangling link is false).
-- - `fs.mkdir(path[, {parents = true, mode = 511}])`: an existing directory
--   raises `EEXIST` unless `parents`, which also makes the missing parents.
-- - `fs.remove(path[, {recursive = true}])` removes a file, a link or an
--   empty directory; `recursive` removes a directory with what is in it
--   (links are removed, not followed).
-- - `fs.rename(from, to)`, `fs.copy(from, to)` (a file's content),
--   `fs.symlink(target, path)`, `fs.readlink(path)` -> the target,
--   `fs.realpath(path)` -> the absolute path without links,
--   `fs.chmod(path, mode)` (an integer, such as `tonumber("644", 8)`).
-- - `fs.dir(path)` -> a `Dir` of the directory's entries, for `for name,
--   kind in tether.fs.dir(path) do` (`kind` as `stat`'s `type`; no `"."`
--   and `".."`); the loop closes the directory however it ends.
-- - `fs.watch(path)` -> a `Watcher` of changes to a file or in a
--   directory, for `for event, name in tether.fs.watch(path) do` (`event`:
--   `"change"` or `"rename"`; `name`: the entry that changed, relative to
--   the watched directory). Watching starts at the call: changes that come
--   before the first read are kept.
-- @table fs
-- @usage
-- local fs = tether.fs
-- fs.mkdir("out/logs", { parents = true })
-- fs.write_file("out/state.json", encode(state), { atomic = true })
-- for name, kind in fs.dir("out") do print(name, kind) end

--- An open file, made by `open_file`: the methods of Lua's `file`, off the
-- loop. A to-be-closed value; it is also closed when collected. Its position
-- is its own: reads are positional and consume nothing until they have all
-- they return, so a cancelled read leaves the position and the data as they
-- were. Reading goes through a read-ahead block (64 KiB, growing to 1 MiB
-- while reading goes on in sequence), so reading lines is not one operation
-- per line. Writes are not buffered: each `write` is one operation, which
-- completes once started. One task at a time: a second task using a file
-- while a first one waits on it raises `BusyResourceError`. Pipes and other
-- files that cannot seek are read and written in order.
-- @type File

--- Reads, as Lua's `file:read`: for each format a string (or number), and
-- `nil` for the first one that finds the end of the file (the following
-- ones are not read). A checkpoint.
-- @function File:read
-- @param ... formats: `"l"` (a line without its newline; the default),
-- `"L"` (with it), `"a"` (the rest; `""` at the end), `"n"` (a numeral,
-- read as Lua's io reads one), or a byte count (`0`: `""` unless at the
-- end); a leading `"*"` is allowed
-- @return the values read
-- @raise `OSError` (`op = "read"`); `ClosedResourceError`;
-- `BusyResourceError`; `Cancelled`; misuse errors for a bad format

--- An iterator calling `read(...)` (default `"l"`) until it returns nil; the
-- file stays open at the end, as with Lua's `file:lines`.
-- @function File:lines
-- @param ... formats, as for `read`
-- @treturn function

--- Writes the values (strings, and numbers as Lua's io writes them) at the
-- position (at the end in append mode), in one operation that completes
-- once started: a write that raised `Cancelled` wrote nothing. A
-- checkpoint.
-- @function File:write
-- @param ... strings or numbers
-- @treturn File the file
-- @raise `OSError` (`op = "write"`); `ClosedResourceError`;
-- `BusyResourceError`; `Cancelled`

--- Sets and tells the position, as Lua's `file:seek`. A checkpoint.
-- @function File:seek
-- @tparam[opt="cur"] string whence `"set"`, `"cur"` or `"end"`
-- @tparam[opt=0] integer offset
-- @treturn integer the new position
-- @raise `OSError` (`EINVAL` before the start, `ESPIPE` for a pipe)

--- A checkpoint, for Lua's `file:flush`: writes are not buffered, so there is
-- nothing to flush.
-- @function File:flush
-- @treturn boolean true

--- Closes the file; a task waiting on it raises `ClosedResourceError`. A
-- checkpoint that completes once started. Closing a closed file raises
-- `ClosedResourceError`; closing by `<close>` or the collector is
-- idempotent.
-- @function File:close
-- @treturn boolean true
-- @raise `OSError` (`op = "close"`)

--- A directory being read, made by `fs.dir`: entries are read in batches
-- off the loop. A to-be-closed value; calling it (as a `for` loop does) is
-- `next`; it is also closed when collected.
-- @type Dir

--- The next entry. A checkpoint. At the end returns nothing and closes the
-- directory.
-- @function Dir:next
-- @treturn string name
-- @treturn string kind (as `stat`'s `type`)
-- @raise `OSError` (`op = "readdir"`); `BusyResourceError`; `Cancelled`

--- Closes the directory. Idempotent; then `next` returns nothing.
-- @function Dir:close

--- Change notifications, made by `fs.watch` (inotify on Linux). A
-- to-be-closed value; calling it (as a `for` loop does) is `receive`; it is
-- also closed when collected and at the end of `tether.run`. Changes are
-- kept until received, at most 1024 (the same change twice in a row is kept
-- once); more are counted in the field `dropped`.
-- @type Watcher

--- The next change. A checkpoint; a cancelled receive leaves the change
-- queued.
-- @function Watcher:receive
-- @treturn string event `"change"` (content or attributes) or `"rename"`
-- (an entry appeared, disappeared or was renamed)
-- @treturn string|nil name the entry, relative to the watched directory
-- @raise `ClosedResourceError` (closed, also while waiting);
-- `BusyResourceError`; `Cancelled`

--- Stops watching and drops the queued changes. Idempotent, not a
-- checkpoint; a blocked `receive` raises `ClosedResourceError`.
-- @function Watcher:close

--- A child process, from `open_process` or `tg:start(tether.run_process, ...)`.
-- A to-be-closed value (see `open_process`).
--
-- Fields: `pid`; `stdin`, `stdout`, `stderr` (Streams for `"pipe"`, else
-- nil); `code` and `signal` (nil while it runs; once it exited, `code` is
-- its exit code, or nil when a signal ended it and `signal` is that
-- signal's number).
-- @type Process

--- Waits until the process exits. A checkpoint, also when it already has;
-- any number of tasks may wait; cancelling a wait leaves the process alone.
-- @function Process:wait
-- @treturn integer|nil the exit code (nil if a signal ended it)
-- @treturn integer|nil the signal that ended it
-- @raise `Cancelled`; `ProcessError` when tether gave up on a process that
-- did not exit even after SIGKILL

--- Sends a signal to the process, if it still runs. Not a checkpoint.
-- @function Process:send_signal
-- @tparam integer|string sig a number or a name (`"SIGHUP"`, `"HUP"`)
-- @treturn boolean whether it was sent (false: it has exited)

--- Sends one SIGTERM, to the whole process group when the process leads one
-- (`group = true`). The ladder is for cancellation; this is a single signal.
-- @function Process:terminate
-- @treturn boolean whether it was sent

--- Sends SIGKILL, to the whole process group when the process leads one.
-- @function Process:kill
-- @treturn boolean whether it was sent

--- A virtual clock made by `tether.MockClock`. Fields: `rate` and
-- `autojump_threshold` (read and write).
-- @type MockClock

--- Moves the clock forward by `seconds`; deadlines that it passes expire.
-- @function MockClock:jump
-- @tparam number seconds >= 0
-- @raise `clock:jump: seconds must be >= 0 (time cannot go back), got ...`

--- The clock's time, in a run or outside one.
-- @function MockClock:current_time
-- @treturn number
