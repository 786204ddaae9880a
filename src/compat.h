/* compat.h - the few Lua 5.2+ API calls flowmusic uses, shimmed for Lua 5.1 / LuaJIT.
 * Every shim carries the fm_ prefix: LuaJIT already defines some luaL_* names. */
#ifndef FLOWMUSIC_COMPAT_H
#define FLOWMUSIC_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

/* Internal to the module whatever the build system: only luaopen_flowmusic_core is exported. */
#pragma GCC visibility push(hidden)

#if LUA_VERSION_NUM >= 502
#define fm_setfuncs(L, l, nup) luaL_setfuncs((L), (l), (nup))
#define fm_testudata(L, i, tn) luaL_testudata((L), (i), (tn))
#define fm_setmetatable(L, tn) luaL_setmetatable((L), (tn))
#else
void fm_setfuncs(lua_State *L, const luaL_Reg *l, int nup);
void *fm_testudata(lua_State *L, int i, const char *tname);
#define fm_setmetatable(L, tn) (luaL_getmetatable((L), (tn)), lua_setmetatable((L), -2))
#endif

/* Build a fresh table holding the functions of l (luaL_newlib without the version check). */
#define fm_newlib(L, l) (lua_createtable((L), 0, (int)(sizeof(l) / sizeof((l)[0]) - 1)), fm_setfuncs((L), (l), 0))

#pragma GCC visibility pop

#endif
