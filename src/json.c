/* json.c - the JSON decoder: a single-pass, bounded decoder that builds Lua values directly.
 * API answers are small objects read on every call, and building them straight from the text
 * costs a fraction of decoding with lua-cjson and then normalising its floats and nulls (the
 * session decodes from its receive buffer). Request bodies are written in Lua
 * (flowmusic.format.json: exact numbers, the bytes of strings kept); core.null equals
 * lua-cjson's cjson.null.
 *
 * What decoding gives: objects and arrays become tables, integral numbers become Lua integers
 * on 5.3+ (others, and every number on 5.1, floats), JSON null becomes nil or a caller-chosen
 * sentinel. Strings are taken byte for byte (no UTF-8 check, as lua-cjson); escapes, numbers
 * and the rest of the grammar follow RFC 8259. The bounds (depth, number of values) hold
 * while decoding, and a large body is counted before anything is built. */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "flowmusic.h"

/* Deep enough for any API document, shallow enough to bound the C recursion. */
#define FM_JSON_MAX_DEPTH 128
/* Members (pairs) or elements held on the Lua stack before they go into their table: a table
 * made from them gets its final size at once instead of growing by rehashing. */
#define FM_JSON_CHUNK 32
/* Longest number text converted through strtod (longer ones can't come from a JSON encoder). */
#define FM_JSON_MAX_NUMBER 200
/* The member-name cache: slots, and the longest name kept. */
#define FM_NAME_SLOTS 256
#define FM_NAME_MAX 32

/* Member names repeat across documents ("email", "maxJobs", ...): a name found here is pushed
 * as the Lua string already made for it, without hashing and interning it again. Slot i holds
 * the bytes of the string at index i + 1 of the cache's Lua table. Only names of letters,
 * digits and '_' are kept: never a token or any other value. One per Lua state (both live in
 * its registry), so nginx threads share nothing. */
typedef struct name_cache {
    unsigned char len[FM_NAME_SLOTS]; /* 0: empty */
    char text[FM_NAME_SLOTS][FM_NAME_MAX];
} name_cache;

typedef struct decoder {
    lua_State *L;
    const char *start, *p, *end;
    int null_index;        /* stack index of the value JSON null maps to; 0: nil */
    int depth;
    size_t values;         /* values counted so far (see count_value) */
    size_t max_values;     /* 0: no bound */
    int key_index;         /* stack index of the member name of the value being decoded (for
                              messages), 0 in an array */
    name_cache *names;
    int strings;           /* stack index of the table of the cached names' strings */
    const char *kind;      /* set on failure: "syntax", "shape" or "too_large" */
    char message[160];
} decoder;

/* Record a failure; returns -1 for the callers to pass up. */
static int fail(decoder *d, const char *kind, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
    d->kind = kind;
    return -1;
}

/* Byte offset (1-based) of p, for messages. */
static unsigned long offset_of(const decoder *d, const char *p) {
    return (unsigned long)(p - d->start) + 1;
}

/* "unexpected 'x' at byte N", never echoing more than one byte of the text. */
static int unexpected(decoder *d, const char *what) {
    unsigned char c;
    if (d->p >= d->end)
        return fail(d, "syntax", "unexpected end of text at byte %lu, expected %s", offset_of(d, d->p), what);
    c = (unsigned char)*d->p;
    if (c > 0x20 && c < 0x7f)
        return fail(d, "syntax", "unexpected '%c' at byte %lu, expected %s", c, offset_of(d, d->p), what);
    return fail(d, "syntax", "unexpected byte 0x%02x at byte %lu, expected %s", c, offset_of(d, d->p), what);
}

static void skip_space(decoder *d) {
    const char *p = d->p, *end = d->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    d->p = p;
}

/* Every value but the first opens a container's first slot or follows a ',': counting those
 * bounds the values before they are built (an empty container counts one too many, which
 * only makes a body of nested empty arrays reach the bound sooner). */
static int count_value(decoder *d) {
    if (++d->values > d->max_values && d->max_values > 0)
        return fail(d, "too_large", "more than %lu JSON values (the bound for max_response_bytes)",
                    (unsigned long)d->max_values);
    return 0;
}

static int decode_value(decoder *d);

/* Push null as the caller wants it. */
static void push_null(decoder *d) {
    if (d->null_index) lua_pushvalue(d->L, d->null_index);
    else lua_pushnil(d->L);
}

/* 4 hex digits at p, or -1. */
static long hex4(const char *p) {
    long v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    return v;
}

/* The escape at d->p ('\\' ...) into b; surrogate pairs become one UTF-8 sequence. */
static int decode_escape(decoder *d, luaL_Buffer *b) {
    const char *esc = d->p;
    long cp, low;
    char utf8[4];
    if (d->end - esc < 2) return fail(d, "syntax", "unterminated string at byte %lu", offset_of(d, esc));
    switch (esc[1]) {
    case '"': luaL_addchar(b, '"'); break;
    case '\\': luaL_addchar(b, '\\'); break;
    case '/': luaL_addchar(b, '/'); break;
    case 'b': luaL_addchar(b, '\b'); break;
    case 'f': luaL_addchar(b, '\f'); break;
    case 'n': luaL_addchar(b, '\n'); break;
    case 'r': luaL_addchar(b, '\r'); break;
    case 't': luaL_addchar(b, '\t'); break;
    case 'u':
        if (d->end - esc < 6 || (cp = hex4(esc + 2)) < 0) goto bad;
        if (cp >= 0xDC00 && cp <= 0xDFFF) goto bad;             /* a lone low surrogate */
        if (cp >= 0xD800 && cp <= 0xDBFF) {                      /* needs its low half */
            if (d->end - esc < 12 || esc[6] != '\\' || esc[7] != 'u' || (low = hex4(esc + 8)) < 0 ||
                low < 0xDC00 || low > 0xDFFF)
                goto bad;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            d->p += 6;
        }
        if (cp < 0x80) {
            luaL_addchar(b, (char)cp);
        } else if (cp < 0x800) {
            utf8[0] = (char)(0xC0 | (cp >> 6));
            utf8[1] = (char)(0x80 | (cp & 0x3F));
            luaL_addlstring(b, utf8, 2);
        } else if (cp < 0x10000) {
            utf8[0] = (char)(0xE0 | (cp >> 12));
            utf8[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            utf8[2] = (char)(0x80 | (cp & 0x3F));
            luaL_addlstring(b, utf8, 3);
        } else {
            utf8[0] = (char)(0xF0 | (cp >> 18));
            utf8[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            utf8[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
            utf8[3] = (char)(0x80 | (cp & 0x3F));
            luaL_addlstring(b, utf8, 4);
        }
        d->p += 6;
        return 0;
    default:
        goto bad;
    }
    d->p += 2;
    return 0;
bad:
    return fail(d, "syntax", "invalid escape in a string at byte %lu", offset_of(d, esc));
}

/* A byte that ends a run of plain string bytes: the closing quote, an escape, or a control
 * character (RFC 8259 section 7: U+0000-U+001F must be escaped). */
#define ENDS_RUN(c) ((c) == '"' || (c) == '\\' || (unsigned char)(c) < 0x20)

/* Does any of the 8 bytes of w end a run? Exact, not an estimate: "has a byte below 0x20" and
 * "has a zero byte after xor with backslashes" (the usual bit tricks). Lets the common string,
 * with no escape, be checked a word at a time. */
static int word_ends_run(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t x = w ^ (ones * (unsigned char)'\\');
    return (((w - ones * 0x20) & ~w) | ((x - ones) & ~x)) & highs ? 1 : 0;
}

/* The string at d->p (its opening quote) onto the stack. Without escapes it is pushed straight
 * from the text. */
static int decode_string(decoder *d) {
    const char *s = ++d->p, *p, *end = d->end;
    luaL_Buffer b;
    /* memchr scans many bytes per step: find the closing quote, then check the bytes before */
    const char *quote = memchr(s, '"', (size_t)(end - s));
    if (quote != NULL) {
        for (p = s; quote - p >= 8; p += 8) {
            uint64_t w;
            memcpy(&w, p, sizeof w);
            if (word_ends_run(w)) break;
        }
        for (; p < quote && !ENDS_RUN(*p); p++) {}
        if (p == quote) {
            lua_pushlstring(d->L, s, (size_t)(quote - s));
            d->p = quote + 1;
            return 0;
        }
    } else {
        p = s;
        while (p < end && !ENDS_RUN(*p)) p++;
    }
    luaL_buffinit(d->L, &b);
    for (;;) {
        luaL_addlstring(&b, s, (size_t)(p - s));
        if (p >= end) {
            luaL_pushresult(&b);
            return fail(d, "syntax", "unterminated string at byte %lu", offset_of(d, s - 1));
        }
        if (*p == '"') break;
        if (*p != '\\') {
            luaL_pushresult(&b);
            return fail(d, "syntax", "unescaped control character 0x%02x in a string at byte %lu",
                        (unsigned)(unsigned char)*p, offset_of(d, p));
        }
        d->p = p;
        if (decode_escape(d, &b) != 0) {
            luaL_pushresult(&b);
            return -1;
        }
        s = p = d->p;
        while (p < end && !ENDS_RUN(*p)) p++;
    }
    luaL_pushresult(&b);
    d->p = p + 1;
    return 0;
}

/* Is this a plain name (letters, digits, '_'): one that may be cached or shown. */
static int is_plain_name(const char *s, size_t len) {
    size_t i;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return 0;
    }
    return 1;
}

/* A float that is integral and fits becomes an integer (5.3+), as an API's counts should. */
static void push_float(lua_State *L, lua_Number x) {
#if LUA_VERSION_NUM >= 503
    lua_Integer i;
    if (lua_numbertointeger(x, &i) && (lua_Number)i == x) {
        lua_pushinteger(L, i);
        return;
    }
#endif
    lua_pushnumber(L, x);
}

/* strtod on the number text [s, e), reading '.' whatever the C locale says. */
static int to_double(const char *s, const char *e, double *out) {
    char buf[FM_JSON_MAX_NUMBER + 1], *stop;
    size_t len = (size_t)(e - s);
    const char *point = localeconv()->decimal_point;
    char *dot;
    if (len > FM_JSON_MAX_NUMBER) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (point[0] != '.' && point[0] != '\0' && (dot = strchr(buf, '.')) != NULL) *dot = point[0];
    *out = strtod(buf, &stop);
    return stop == buf + len ? 0 : -1;
}

static int decode_number(decoder *d) {
    const char *s = d->p, *p = s, *end = d->end;
    int negative = 0, integral = 1, digits = 0;
    long long v = 0;
    double x;
    if (*p == '-') { negative = 1; p++; }
    if (p < end && *p == '0') {
        p++;
        digits = 1;
    } else if (p < end && *p >= '1' && *p <= '9') {
        for (; p < end && *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 18) v = v * 10 + (*p - '0'); /* past 18 digits strtod reads it */
    } else {
        d->p = p;
        return unexpected(d, "a digit");
    }
    if (p < end && *p == '.') {
        integral = 0;
        if (++p >= end || *p < '0' || *p > '9') { d->p = p; return unexpected(d, "a digit"); }
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        if (++p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') { d->p = p; return unexpected(d, "a digit"); }
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    d->p = p;
    if (integral && digits <= 18) { /* exact in a 64-bit integer */
#if LUA_VERSION_NUM >= 503 && LUA_MAXINTEGER >= 999999999999999999LL
        lua_pushinteger(d->L, (lua_Integer)(negative ? -v : v));
#else
        /* 5.1 (where -0 stays -0.0), or a lua_Integer too small for 18 digits */
        push_float(d->L, negative ? -(lua_Number)v : (lua_Number)v);
#endif
        return 0;
    }
    if (to_double(s, p, &x) != 0) return fail(d, "syntax", "unreadable number at byte %lu", offset_of(d, s));
    if (!isfinite(x)) {
        size_t len = 0;
        const char *key = d->key_index ? lua_tolstring(d->L, d->key_index, &len) : NULL;
        /* the member is named only when its name is plain: never echo anything else */
        if (key != NULL && len <= 64 && is_plain_name(key, len))
            return fail(d, "shape", "number at '%s' is not finite", key);
        return fail(d, "shape", "a number is not finite");
    }
    push_float(d->L, x);
    return 0;
}

static int decode_literal(decoder *d, const char *word, size_t len) {
    if ((size_t)(d->end - d->p) < len || memcmp(d->p, word, len) != 0) return unexpected(d, "a JSON value");
    d->p += len;
    return 0;
}

/* Move the n pending members above the table slot t into the table (made now if it is still
 * nil), first to last, so a repeated name keeps its last value. */
static void flush_members(lua_State *L, int t, int n) {
    int i;
    if (lua_isnil(L, t)) {
        lua_createtable(L, 0, n);
        lua_replace(L, t);
    }
    for (i = 0; i < n; i++) {
        lua_pushvalue(L, t + 1 + 2 * i);
        lua_pushvalue(L, t + 2 + 2 * i);
        lua_rawset(L, t);
    }
    lua_settop(L, t);
}

/* Move the n pending elements above the table slot t into the table as elements
 * first_index ... first_index + n - 1 (nils stay holes). */
static void flush_elements(lua_State *L, int t, int n, int first_index) {
    int i;
    if (lua_isnil(L, t)) {
        lua_createtable(L, n, 0);
        lua_replace(L, t);
    }
    for (i = first_index + n - 1; i >= first_index; i--) { /* from the top down */
        if (lua_isnil(L, -1)) lua_pop(L, 1);
        else lua_rawseti(L, t, i);
    }
}

/* Enter a container at d->p ('{' or '['): depth and value bound, the table slot pushed. */
static int open_container(decoder *d) {
    if (++d->depth > FM_JSON_MAX_DEPTH)
        return fail(d, "syntax", "nested deeper than %d levels", FM_JSON_MAX_DEPTH);
    if (count_value(d) != 0) return -1;
    /* the pending members, a name and a value, and what a luaL_Buffer may use */
    luaL_checkstack(d->L, 2 * FM_JSON_CHUNK + 24, "flowmusic: JSON decoding");
    lua_pushnil(d->L); /* the table slot, filled when the first chunk is flushed */
    d->p++;
    skip_space(d);
    return 0;
}

/* The cache slot of the len bytes at s: a hash of the length and four bytes (names differ
 * early or late; a collision only costs a miss). */
static unsigned name_slot(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned h = (unsigned)len * 2654435761u;
    h ^= u[0] | (unsigned)u[len / 2] << 8 | (unsigned)u[len - 1] << 16 | (unsigned)u[len > 1 ? len - 2 : 0] << 24;
    h *= 2246822519u;
    return (h >> 16) % FM_NAME_SLOTS;
}

/* The member name at d->p (its opening quote) onto the stack, through the name cache. */
static int decode_name(decoder *d) {
    const char *s = d->p + 1;
    const char *quote = memchr(s, '"', (size_t)(d->end - s));
    size_t len;
    unsigned slot;
    name_cache *c = d->names;
    if (quote == NULL || (len = (size_t)(quote - s)) == 0 || len > FM_NAME_MAX) return decode_string(d);
    slot = name_slot(s, len);
    if (c->len[slot] == len && memcmp(c->text[slot], s, len) == 0) { /* cached: no escapes */
        d->p = quote + 1;
        lua_rawgeti(d->L, d->strings, (int)slot + 1);
        return 0;
    }
    if (!is_plain_name(s, len)) return decode_string(d); /* also every name with an escape */
    d->p = quote + 1;
    lua_pushlstring(d->L, s, len);
    lua_pushvalue(d->L, -1);
    lua_rawseti(d->L, d->strings, (int)slot + 1);
    memcpy(c->text[slot], s, len);
    c->len[slot] = (unsigned char)len;
    return 0;
}

/* After a member or an element: 1 when a ',' follows (counted; spaces skipped), 0 when the
 * container's closing byte does (consumed), -1 on anything else. */
static int next_item(decoder *d, char close, const char *expected) {
    skip_space(d);
    if (d->p < d->end && *d->p == ',') {
        d->p++;
        if (count_value(d) != 0) return -1;
        skip_space(d);
        return 1;
    }
    if (d->p < d->end && *d->p == close) {
        d->p++;
        return 0;
    }
    return unexpected(d, expected);
}

static int decode_object(decoder *d) {
    lua_State *L = d->L;
    int t, pending = 0, more;
    if (open_container(d) != 0) return -1;
    t = lua_gettop(L);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
    } else {
        for (;;) {
            if (d->p >= d->end || *d->p != '"') return unexpected(d, "a member name");
            if (decode_name(d) != 0) return -1;                         /* t, ..., name */
            skip_space(d);
            if (d->p >= d->end || *d->p != ':') return unexpected(d, "':'");
            d->p++;
            skip_space(d);
            d->key_index = lua_gettop(L);
            if (decode_value(d) != 0) return -1;                        /* t, ..., name, value */
            if (lua_isnil(L, -1)) lua_pop(L, 2);                        /* null as nil: absent */
            else if (++pending == FM_JSON_CHUNK) {
                flush_members(L, t, pending);
                pending = 0;
            }
            if ((more = next_item(d, '}', "',' or '}'")) < 0) return -1;
            if (!more) break;
        }
    }
    flush_members(L, t, pending);
    d->depth--;
    return 0;
}

static int decode_array(decoder *d) {
    lua_State *L = d->L;
    int t, pending = 0, stored = 0, more;
    if (open_container(d) != 0) return -1;
    t = lua_gettop(L);
    d->key_index = 0;
    if (d->p < d->end && *d->p == ']') {
        d->p++;
    } else {
        for (;;) {
            if (decode_value(d) != 0) return -1;                        /* t, ..., value */
            if (++pending == FM_JSON_CHUNK) {
                flush_elements(L, t, pending, stored + 1);
                stored += pending;
                pending = 0;
            }
            if ((more = next_item(d, ']', "',' or ']'")) < 0) return -1;
            if (!more) break;
            d->key_index = 0; /* (a nested object set it) */
        }
    }
    flush_elements(L, t, pending, stored + 1);
    d->depth--;
    return 0;
}

/* The value at d->p (no leading space) onto the stack. */
static int decode_value(decoder *d) {
    if (d->p >= d->end) return unexpected(d, "a JSON value");
    switch (*d->p) {
    case '{': return decode_object(d);
    case '[': return decode_array(d);
    case '"': return decode_string(d);
    case 't':
        if (decode_literal(d, "true", 4) != 0) return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (decode_literal(d, "false", 5) != 0) return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (decode_literal(d, "null", 4) != 0) return -1;
        push_null(d);
        return 0;
    default:
        if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) return decode_number(d);
        return unexpected(d, "a JSON value");
    }
}

/* A large body is counted before anything is built: nested empty arrays spend 2-3 bytes per
 * value, so near max_response_bytes decoding would build millions of tables before the
 * running count stopped it. Counting is a memchr walk, cheap beside decoding. */
#define FM_JSON_PRECOUNT_MIN (64u * 1024u)

/* Would decoding text count more than max_values values (as count_value does: one, plus
 * every '[', '{' and ',' outside strings), or nest deeper than the limit? Sets the failure. */
static int precount(decoder *d) {
    const char *q = d->p, *end = d->end;
    size_t values = 1;
    int depth = 0;
    while (q < end) {
        char c = *q++;
        if (c == ',' || c == '[' || c == '{') {
            if (++values > d->max_values) {
                d->values = values - 1;
                return count_value(d);
            }
            if (c != ',' && ++depth > FM_JSON_MAX_DEPTH)
                return fail(d, "syntax", "nested deeper than %d levels", FM_JSON_MAX_DEPTH);
        } else if (c == ']' || c == '}') {
            depth--;
        } else if (c == '"') {
            for (;;) { /* to the closing quote: one not preceded by an odd run of backslashes */
                const char *close = memchr(q, '"', (size_t)(end - q)), *b;
                if (close == NULL) return 0; /* unterminated: decoding says where */
                for (b = close; b > q && b[-1] == '\\'; b--) {}
                q = close + 1;
                if (((size_t)(close - b) & 1u) == 0) break;
            }
        }
    }
    return 0;
}

/* Registry keys (their addresses) of the member-name cache and of its strings. */
static const char name_cache_key = 'n', name_strings_key = 's';

/* What a top-level value that starts with byte c is, for messages. */
static const char *top_level_name(char c) {
    switch (c) {
    case '[': return "an array";
    case '"': return "a string";
    case 't': case 'f': return "a boolean";
    case 'n': return "null";
    default: return "a number";
    }
}

int fm_json_decode(lua_State *L, const char *text, size_t len, int null_index, size_t max_values, int want_object) {
    const char *not_object;
    decoder d;
    int base = lua_gettop(L);
    lua_pushlightuserdata(L, (void *)&name_cache_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    d.names = lua_touserdata(L, -1);
    lua_pop(L, 1); /* the registry keeps it */
    lua_pushlightuserdata(L, (void *)&name_strings_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    d.strings = lua_gettop(L);
    d.L = L;
    d.start = text;
    d.p = text;
    d.end = text + len;
    d.null_index = null_index;
    d.depth = 0;
    d.values = 1;
    d.max_values = max_values;
    d.key_index = 0;
    d.kind = NULL;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) d.p += 3;
    skip_space(&d);
    /* Any other value is valid JSON but no answer: said once the whole text is known to parse
     * (an empty or broken text is a syntax error, whatever its first byte). */
    not_object = want_object && d.p < d.end && *d.p != '{' ? top_level_name(*d.p) : NULL;
    if ((len < FM_JSON_PRECOUNT_MIN || max_values == 0 || precount(&d) == 0) && decode_value(&d) == 0) {
        skip_space(&d);
        if (d.p == d.end && not_object != NULL) {
            lua_settop(L, base);
            lua_pushfstring(L, "expected a JSON object, got %s", not_object);
            lua_pushliteral(L, "shape");
            return 0;
        }
        if (d.p == d.end) {
            lua_remove(L, d.strings);
            return 1;
        }
        unexpected(&d, "the end of the text");
    }
    lua_settop(L, base);
    lua_pushstring(L, d.message);
    lua_pushstring(L, d.kind);
    return 0;
}

/** core.json_decode(text [, null_value [, max_values [, want_object]]]) -> value
 *   | nil, message, kind
 * null_value (when given and not nil) stands for JSON null; otherwise null becomes nil (a
 * member that is null is absent, an element a hole). A leading UTF-8 BOM is skipped. kind is
 * "too_large" past max_values values (0: no bound), "shape" for a non-object with want_object
 * or a number that is not finite, else "syntax". Raises only when memory runs out. */
static int json_decode(lua_State *L) {
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    lua_Integer max_values = luaL_optinteger(L, 3, 0);
    int want_object = lua_toboolean(L, 4);
    lua_settop(L, 2);
    if (fm_json_decode(L, text, len, lua_isnil(L, 2) ? 0 : 2, max_values > 0 ? (size_t)max_values : 0, want_object))
        return 1;
    lua_pushnil(L);
    lua_insert(L, -3);
    return 3;
}

int fm_json_open(lua_State *L) {
    /* core.null, the sentinel for JSON null: the NULL light userdata, which is also what
     * lua-cjson's cjson.null is, so the two compare equal */
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushlightuserdata(L, (void *)&name_cache_key);
    memset(lua_newuserdata(L, sizeof(name_cache)), 0, sizeof(name_cache));
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, (void *)&name_strings_key);
    lua_createtable(L, FM_NAME_SLOTS, 0);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushcfunction(L, json_decode);
    lua_setfield(L, -2, "json_decode");
    return 0;
}
