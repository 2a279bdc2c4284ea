/*
** tether.h
** Public header of tether, structured concurrency for Lua 5.4 on libuv.
** This is the only header a host application includes.
*/

#ifndef TETHER_H
#define TETHER_H

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TETHER_VERSION_MAJOR 0
#define TETHER_VERSION_MINOR 1
#define TETHER_VERSION_PATCH 0
#define TETHER_VERSION       "0.1.0"

#if defined(__GNUC__)
#define TETHER_API __attribute__((visibility("default")))
#else
#define TETHER_API
#endif

/* Opens the C core (module "tether.core"); pushes its table. */
TETHER_API int luaopen_tether_core (lua_State *L);

/*
** Registers "tether", its Lua modules and "tether.core" in package.preload,
** so that require "tether" works with no file on disk. Defined in the static
** library (libtether.a), which has the Lua facade compiled in.
*/
TETHER_API void tether_openlibs (lua_State *L);

/*
** The embedding API. All functions but tether_post run on the loop's
** thread. Errors are negative libuv-style codes (UV_EINVAL, UV_EBUSY, ...).
*/

/* What other threads hold to post work into the loop (tether_post). */
typedef struct tether_loop tether_t; /* opaque */

/*
** Runs tether on the host's loop: tasks progress while the host runs it
** (uv_run), and tether's handles never keep it alive. Call before any
** tether.run in this state; tether.run then refuses to run. Opens the
** module if needed. Returns 0, UV_EBUSY (attached already, or inside
** tether.run) or UV_ENOMEM.
*/
TETHER_API int tether_attach (lua_State *L, uv_loop_t *loop);

/* The handle for tether_post, or NULL when not attached. */
TETHER_API tether_t *tether_get (lua_State *L);

/*
** Called when a task started by tether_spawn finishes. On success the
** thread 'L' holds the task's 'n' results; on failure (ok == 0) it holds
** the error value and a traceback string. Do not yield; may call tether_spawn.
*/
typedef void (*tether_done_cb)(lua_State *L, int ok, int n, void *ud);

/*
** Pops a function and its 'nargs' arguments from L's stack and starts
** fn(args...) as a task; 'done' (may be NULL) gets its outcome. Returns 0,
** UV_EINVAL (not attached, or not a function), UV_ESHUTDOWN or UV_ENOMEM.
** On error the function and arguments are popped too.
*/
TETHER_API int tether_spawn (lua_State *L, int nargs, tether_done_cb done,
                             void *ud);

/* Called on the loop's thread with the state's main thread. */
typedef void (*tether_post_cb)(lua_State *L, void *ud);

/*
** From any thread: runs cb(L, ud) on the loop's thread soon (FIFO). Returns
** 0, or UV_ESHUTDOWN once tether_shutdown began (cb will not run), or
** UV_ENOMEM. Valid until lua_close of the state.
*/
TETHER_API int tether_post (tether_t *t, tether_post_cb cb, void *ud);

/*
** For hosts that do not run libuv themselves: tether_step runs what is
** ready without blocking; poll tether_backend_fd for readability with the
** timeout (ms, -1 for none) of tether_backend_timeout between steps.
*/
TETHER_API int tether_step (lua_State *L);
TETHER_API int tether_backend_fd (lua_State *L);
TETHER_API int tether_backend_timeout (lua_State *L);

/*
** Cancels every task, runs the loop until they finished (so their cleanup
** runs), closes tether's handles and detaches. Afterwards the host can
** close its loop. Call it outside uv_run. Returns 0 or UV_EINVAL.
*/
TETHER_API int tether_shutdown (lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
