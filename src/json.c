/* json.c - JSON through a private lua-cjson instance (cjson.new()), so the host program's
 * own `require "cjson"` settings are never read nor changed. Decoded documents are
 * normalised for Lua: JSON null becomes nil (or a caller-chosen sentinel) and integral
 * numbers become Lua integers on 5.3+ (cjson 2.1 returns every number as a float). */
#include <math.h>
#include <string.h>

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

/* What a pre-scan of the text found. */
typedef struct fm_scan {
    size_t skip;      /* bytes of a leading UTF-8 byte order mark */
    int too_deep;     /* nested deeper than FM_JSON_MAX_DEPTH */
    size_t values;    /* upper bound of the number of JSON values */
    char first;       /* first significant character */
} fm_scan;

/* One pass over the text before cjson sees it: skip a BOM, find the first significant
 * character, and bound the number of values (every value but the first follows a ',' or
 * opens after '[' / '{'), so a small body of nested empty arrays can't decode into gigabytes
 * of tables. String contents are skipped with memchr. */
static void scan(const char *p, size_t len, fm_scan *out) {
    const char *end = p + len, *q;
    size_t values = 1;
    int depth = 0;
    out->too_deep = 0;
    out->skip = (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    q = p + out->skip;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
    out->first = q < end ? *q : '\0';
    while (q < end) {
        char c = *q++;
        if (c == ',') values++;
        else if (c == '[' || c == '{') {
            values++;
            if (++depth > FM_JSON_MAX_DEPTH) { out->too_deep = 1; break; }
        } else if (c == ']' || c == '}') depth--;
        else if (c == '"') {
            for (;;) { /* to the closing quote: one not preceded by an odd run of backslashes */
                const char *close = memchr(q, '"', (size_t)(end - q)), *b;
                if (close == NULL) { q = end; break; }
                for (b = close; b > q && b[-1] == '\\'; b--) {}
                q = close + 1;
                if (((size_t)(close - b) & 1u) == 0) break;
            }
        }
    }
    out->values = values;
}

/* Replace the value on top of the stack by its normalised form. repl: stack index of the
 * null replacement, or 0 for nil. Returns 0, or -1 with the offending key pushed above the
 * value when a number is not finite (1e400 decodes to inf). */
static int normalise_value(lua_State *L, int repl, int depth);

static int normalise_table(lua_State *L, int repl, int depth) {
    int t = lua_gettop(L);
    luaL_checkstack(L, 4, "flowmusic: JSON too deep");
    lua_pushnil(L);
    while (lua_next(L, t)) {                      /* t, k, v */
        int type = lua_type(L, -1);
        if (type == LUA_TLIGHTUSERDATA || type == LUA_TTABLE || type == LUA_TNUMBER) {
            if (normalise_value(L, repl, depth + 1) != 0) return -1; /* t, k, v', key */
            lua_pushvalue(L, -2);
            lua_insert(L, -2);                    /* t, k, k, v' */
            lua_rawset(L, t);                     /* t, k  (assigning an existing key is allowed) */
        } else {
            lua_pop(L, 1);
        }
    }
    return 0;
}

static int normalise_value(lua_State *L, int repl, int depth) {
    int type = lua_type(L, -1);
    if (depth > FM_JSON_MAX_DEPTH + 1) return 0; /* cannot happen: cjson enforced the depth */
    if (type == LUA_TNUMBER) {
        lua_Number x = lua_tonumber(L, -1);
        if (!isfinite(x)) {
            lua_pushvalue(L, -2); /* the key this number was found at */
            return -1;
        }
#if LUA_VERSION_NUM >= 503
        if (!lua_isinteger(L, -1)) {
            lua_Integer i;
            if (lua_numbertointeger(x, &i) && (lua_Number)i == x) {
                lua_pop(L, 1);
                lua_pushinteger(L, i);
            }
        }
#endif
    } else if (is_json_null(L, -1)) {
        lua_pop(L, 1);
        if (repl) lua_pushvalue(L, repl); else lua_pushnil(L);
    } else if (type == LUA_TTABLE) {
        return normalise_table(L, repl, depth);
    }
    return 0;
}

/* Push nil, message, kind and return 3. */
static int decode_failure(lua_State *L, const char *kind) {
    lua_pushnil(L);
    lua_insert(L, -2); /* nil, message */
    lua_pushstring(L, kind);
    return 3;
}

/** core.json_decode(text [, null_value [, max_values [, want_object]]]) -> value
 *   | nil, message, kind
 * null_value (when given and not nil) stands for JSON null; otherwise null becomes nil. A
 * leading UTF-8 BOM is skipped. kind is "too_large" past max_values values (0: no bound),
 * "shape" for a non-object with want_object or a number that is not finite, else "syntax". */
static int json_decode(lua_State *L) {
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    lua_Integer max_values = luaL_optinteger(L, 3, 0);
    int want_object = lua_toboolean(L, 4);
    int repl;
    fm_scan sc;
    lua_settop(L, 2);
    repl = lua_isnil(L, 2) ? 0 : 2;
    scan(text, len, &sc);
    if (sc.too_deep) {
        lua_pushfstring(L, "nested deeper than %d levels", FM_JSON_MAX_DEPTH);
        return decode_failure(L, "syntax");
    }
    if (max_values > 0 && sc.values > (size_t)max_values) {
        lua_pushfstring(L, "more than %d JSON values (the bound for max_response_bytes)", (int)max_values);
        return decode_failure(L, "too_large");
    }
    if (want_object && sc.first != '{' && (sc.first == '[' || sc.first == '"' || sc.first == '-' ||
                                           (sc.first >= '0' && sc.first <= '9') || sc.first == 't' ||
                                           sc.first == 'f' || sc.first == 'n')) {
        lua_pushstring(L, sc.first == '[' ? "expected a JSON object, got an array" : "expected a JSON object");
        return decode_failure(L, "shape");
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    if (sc.skip) lua_pushlstring(L, text + sc.skip, len - sc.skip);
    else lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 1, 0) != 0) return decode_failure(L, "syntax");
    if (normalise_value(L, repl, 0) != 0) {            /* ..., key */
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (key != NULL && strlen(key) <= 64) lua_pushfstring(L, "number at '%s' is not finite", key);
        else lua_pushliteral(L, "a number is not finite");
        return decode_failure(L, "shape");
    }
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
