/* compat.c - bodies of the Lua 5.1 shims declared in compat.h. */
#include "compat.h"

#if LUA_VERSION_NUM < 502
/* Register l into the table below the nup upvalues on the stack, sharing those upvalues. */
void fm_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    luaL_checkstack(L, nup + 1, "too many upvalues");
    for (; l->name != NULL; l++) {
        int i;
        for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}

/* Return the userdata at i if its metatable is the registered tname, else NULL. */
void *fm_testudata(lua_State *L, int i, const char *tname) {
    void *p = lua_touserdata(L, i);
    if (p == NULL || !lua_getmetatable(L, i)) return NULL;
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2)) p = NULL;
    lua_pop(L, 2);
    return p;
}
#else
/* ISO C forbids an empty translation unit. */
typedef int fm_compat_unused;
#endif
