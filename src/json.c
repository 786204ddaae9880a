/* json.c - JSON through a private lua-cjson instance (cjson.new()), so the host program's
 * own `require "cjson"` settings are never read nor changed. Decoded documents are
 * normalised for Lua: JSON null becomes nil (or a caller-chosen sentinel) and integral
 * numbers become Lua integers on 5.3+ (cjson 2.1 returns every number as a float). */
#include "compat.h"
#include "flowmusic.h"

/* Deep enough for any API document, shallow enough to bound the normalising recursion. */
#define FM_JSON_MAX_DEPTH 128

/* Call cjson_instance[name](arg) for its side effect on the instance's settings. */
static void configure(lua_State *L, int instance, const char *name, int arg) {
    lua_getfield(L, instance, name);
    lua_pushinteger(L, arg);
    lua_call(L, 1, 0);
}

static int is_json_null(lua_State *L, int idx) {
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL;
}

/* Replace the value on top of the stack by its normalised form. repl: stack index of the
 * null replacement, or 0 for nil. */
static void normalise_value(lua_State *L, int repl, int depth);

static void normalise_table(lua_State *L, int repl, int depth) {
    int t = lua_gettop(L);
    luaL_checkstack(L, 4, "flowmusic: JSON too deep");
    lua_pushnil(L);
    while (lua_next(L, t)) {                      /* t, k, v */
        int type = lua_type(L, -1);
        if (type == LUA_TLIGHTUSERDATA || type == LUA_TTABLE || type == LUA_TNUMBER) {
            normalise_value(L, repl, depth + 1);  /* t, k, v' */
            lua_pushvalue(L, -2);
            lua_insert(L, -2);                    /* t, k, k, v' */
            lua_rawset(L, t);                     /* t, k  (assigning an existing key is allowed) */
        } else {
            lua_pop(L, 1);
        }
    }
}

static void normalise_value(lua_State *L, int repl, int depth) {
    if (depth > FM_JSON_MAX_DEPTH + 1) return; /* cannot happen: cjson enforced the depth */
    if (is_json_null(L, -1)) {
        lua_pop(L, 1);
        if (repl) lua_pushvalue(L, repl); else lua_pushnil(L);
    } else if (lua_type(L, -1) == LUA_TTABLE) {
        normalise_table(L, repl, depth);
    }
#if LUA_VERSION_NUM >= 503
    else if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
        lua_Integer i;
        if (lua_numbertointeger(lua_tonumber(L, -1), &i) && (lua_Number)i == lua_tonumber(L, -1)) {
            lua_pop(L, 1);
            lua_pushinteger(L, i);
        }
    }
#endif
}

/** core.json_decode(text [, null_value]) -> value | nil, message
 * null_value (when given and not nil) stands for JSON null; otherwise null becomes nil. */
static int json_decode(lua_State *L) {
    int repl;
    luaL_checkstring(L, 1);
    lua_settop(L, 2);
    repl = lua_isnil(L, 2) ? 0 : 2;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        lua_pushnil(L);
        lua_insert(L, -2); /* nil, message */
        return 2;
    }
    normalise_value(L, repl, 0);
    return 1;
}

/** core.json_encode(value) -> text | nil, message */
static int json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    return 1;
}

int fm_json_open(lua_State *L) {
    int instance;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);                    /* module, cjson */
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);                    /* module, cjson, instance */
    instance = lua_gettop(L);
    configure(L, instance, "decode_max_depth", FM_JSON_MAX_DEPTH);
    configure(L, instance, "encode_max_depth", FM_JSON_MAX_DEPTH);
    lua_getfield(L, instance, "decode_invalid_numbers");
    lua_pushboolean(L, 0);                /* NaN / Infinity in a document are an error */
    lua_call(L, 1, 0);
    lua_getfield(L, instance, "null");
    lua_setfield(L, -4, "null");          /* core.null: the sentinel JSON null maps to */
    lua_getfield(L, instance, "decode");
    lua_getfield(L, instance, "encode");  /* module, cjson, instance, decode, encode */
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, json_decode, 2);
    lua_setfield(L, -6, "json_decode");
    lua_pushcclosure(L, json_encode, 2);
    lua_setfield(L, -4, "json_encode");   /* module, cjson, instance */
    lua_pop(L, 2);
    return 0;
}
