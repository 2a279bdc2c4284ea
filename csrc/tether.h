/*
** tether.h
** Public header of tether, structured concurrency for Lua 5.4 on libuv.
** This is the only header a host application includes.
*/

#ifndef TETHER_H
#define TETHER_H

#include <lua.h>

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

#ifdef __cplusplus
}
#endif

#endif
