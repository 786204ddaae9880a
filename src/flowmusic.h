/* flowmusic.h - the parts of flowmusic.core that src/core.c composes. Each *_open adds its
 * functions to the module table on top of the stack and leaves the stack as it found it. */
#ifndef FLOWMUSIC_H
#define FLOWMUSIC_H

#include <lua.h>

/* Internal to the module whatever the build system: only luaopen_flowmusic_core is exported. */
#pragma GCC visibility push(hidden)

double fm_now_seconds(void);        /* monotonic clock (clock.c) */
int fm_signal_count(void);          /* signals caught so far (signals.c) */
/* Decode JSON text (json.c): returns 1 with the value pushed, or 0 with a message and a kind
 * ("syntax", "shape", "too_large") pushed. null_index: stack index of the value JSON null
 * becomes, 0 for nil; max_values: 0 for no bound. Raises only when memory runs out. */
int fm_json_decode(lua_State *L, const char *text, size_t len, int null_index, size_t max_values, int want_object);

int fm_clock_open(lua_State *L);    /* core.now, core.wall_time, core.sleep */
int fm_codes_open(lua_State *L);    /* core.CURLE */
int fm_headers_open(lua_State *L);  /* core.parse_headers */
int fm_json_open(lua_State *L);     /* core.json_decode, core.null */
int fm_private_files_open(lua_State *L); /* core.lock_file, write_private, append_private,
                                            file_mode, make_private_dir */
int fm_session_open(lua_State *L);  /* core.session */
int fm_sha256_open(lua_State *L);   /* core.sha256 */
int fm_signals_open(lua_State *L);  /* core.signals_catch, signals_caught, signals_release */

#pragma GCC visibility pop

#endif
