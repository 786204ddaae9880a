/* flowmusic.h - the parts of flowmusic.core that src/core.c composes. Each *_open adds its
 * functions to the module table on top of the stack and leaves the stack as it found it. */
#ifndef FLOWMUSIC_H
#define FLOWMUSIC_H

#include <lua.h>

/* Internal to the module whatever the build system: only luaopen_flowmusic_core is exported. */
#pragma GCC visibility push(hidden)

#define FM_VERSION "0.1.0"

double fm_now_seconds(void);     /* monotonic clock */
int fm_session_open(lua_State *L); /* core.session */
int fm_json_open(lua_State *L);    /* core.json_decode, core.json_encode, core.null */

#pragma GCC visibility pop

#endif
