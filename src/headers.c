/* headers.c - turning a raw HTTP header block into a Lua table. Done only when needed
 * (errors, raw requests), so the common path builds no header table at all. */
#include <ctype.h>
#include <string.h>

#include "compat.h"
#include "flowmusic.h"

/* Header names longer than this are not reported to Lua (no real header is that long). */
#define FM_HEADER_NAME_MAX 128

/** core.parse_headers(head) -> { ["lower-case-name"] = "value", ... }
 * head is a completion's raw header block (the final response's only); repeated names are
 * joined with ", ". */
static int headers_parse(lua_State *L) {
    size_t len;
    const char *p = luaL_checklstring(L, 1, &len), *end = p + len;
    lua_newtable(L);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon != NULL && colon > p && colon - p <= FM_HEADER_NAME_MAX) {
            char name[FM_HEADER_NAME_MAX];
            const char *v = colon + 1, *v_end = line_end;
            size_t n = (size_t)(colon - p), i;
            for (i = 0; i < n; i++) name[i] = (char)tolower((unsigned char)p[i]);
            while (v < v_end && (*v == ' ' || *v == '\t')) v++;
            while (v_end > v && (v_end[-1] == '\r' || v_end[-1] == ' ' || v_end[-1] == '\t')) v_end--;
            lua_pushlstring(L, name, n);           /* headers, name */
            lua_pushvalue(L, -1);
            lua_rawget(L, -3);                     /* headers, name, old */
            if (lua_isstring(L, -1)) {
                lua_pushliteral(L, ", ");
                lua_pushlstring(L, v, (size_t)(v_end - v));
                lua_concat(L, 3);                  /* headers, name, old..", "..value */
            } else {
                lua_pop(L, 1);
                lua_pushlstring(L, v, (size_t)(v_end - v));
            }
            lua_rawset(L, -3);
        }
        p = line_end + 1;
    }
    return 1;
}

int fm_headers_open(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"parse_headers", headers_parse},
        {NULL, NULL},
    };
    fm_setfuncs(L, functions, 0);
    return 0;
}
