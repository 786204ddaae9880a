/* transfer.c - one HTTP exchange on a reusable libcurl easy handle: setup, the libcurl
 * callbacks (plain C, never the Lua API), and the completion table built afterwards. */
#include "transfer.h"

#include <lauxlib.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* A Content-Length up to this sizes the body buffer at once; a larger claim (it may be a lie)
 * lets the buffer grow with what really arrives. */
#define FM_PRESIZE_MAX (16u * 1024u * 1024u)

/* Header names longer than this are not reported to Lua (no real header is that long). */
#define FM_HEADER_NAME_MAX 128

/* "Content-Length: n" seen early: refuse oversize answers before reading them, and size the
 * body buffer once so a 5 MB document is not copied through a dozen reallocations. */
static void note_content_length(fm_transfer *t, const char *line, size_t len) {
    static const char name[] = "content-length:";
    const size_t n = sizeof(name) - 1;
    unsigned long long value = 0;
    size_t i;
    if (len <= n) return;
    for (i = 0; i < n; i++)
        if (tolower((unsigned char)line[i]) != name[i]) return;
    for (i = n; i < len && (line[i] == ' ' || line[i] == '\t'); i++) {}
    for (; i < len && line[i] >= '0' && line[i] <= '9'; i++) {
        if (value > (~0ull - 9) / 10) { value = ~0ull; break; }
        value = value * 10 + (unsigned)(line[i] - '0');
    }
    if (value > t->max_bytes) t->too_large = 1;
    else if (value <= FM_PRESIZE_MAX) (void)fm_buffer_reserve(&t->body, (size_t)value);
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
    fm_transfer *t = ud;
    size_t len = size * nmemb;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) t->head.len = 0; /* interim (1xx) blocks are dropped */
    note_content_length(t, p, len);
    if (t->too_large) return 0;
    if (fm_buffer_append(&t->head, p, len) != 0) { t->out_of_memory = 1; return 0; }
    return len;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
    fm_transfer *t = ud;
    size_t len = size * nmemb;
    if (len > t->max_bytes - t->body.len) { t->too_large = 1; return 0; }
    if (fm_buffer_append(&t->body, p, len) != 0) { t->out_of_memory = 1; return 0; }
    return len;
}

void fm_transfer_recycle(fm_transfer *t) {
    /* No curl_easy_reset: the per-client options stay set; setup overwrites the rest. */
    fm_buffer_clear(&t->body);
    fm_buffer_clear(&t->head);
    t->too_large = t->out_of_memory = 0;
    t->result = CURLE_OK;
    t->errbuf[0] = '\0';
    t->next = NULL;
}

void fm_transfer_free(fm_transfer *t) {
    if (t == NULL) return;
    if (t->easy != NULL) curl_easy_cleanup(t->easy);
    fm_buffer_free(&t->body);
    fm_buffer_free(&t->head);
    free(t);
}

/* Append line to *list; 0 on success (on failure *list is unchanged). */
static int add_header(struct curl_slist **list, const char *line) {
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l == NULL) return -1;
    *list = l;
    return 0;
}

int fm_settings_build_headers(fm_settings *s) {
    /* "Expect:" stops libcurl from waiting for 100-continue on larger POST bodies. */
    static const char *const common[] = {"Accept: application/json", "Expect:", NULL};
    int i;
    if (add_header(&s->plain_headers, s->auth_header) || add_header(&s->json_headers, s->auth_header))
        return -1;
    for (i = 0; common[i] != NULL; i++)
        if (add_header(&s->plain_headers, common[i]) || add_header(&s->json_headers, common[i])) return -1;
    return add_header(&s->json_headers, "Content-Type: application/json");
}

#define SET(opt, val) \
    do { if (curl_easy_setopt(e, (opt), (val)) != CURLE_OK) return "libcurl refused option " #opt; } while (0)

/* Options that are the same for every request of a client: set once per easy handle. */
static const char *configure_handle(fm_transfer *t, const fm_settings *s) {
    CURL *e = t->easy;
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L); /* the token must never travel to another host */
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_NOSIGNAL, 1L);       /* safe in threads (nginx thread pools) */
    SET(CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, t);
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    SET(CURLOPT_PRIVATE, t);
    if (s->user_agent) SET(CURLOPT_USERAGENT, s->user_agent);
    if (s->cainfo) SET(CURLOPT_CAINFO, s->cainfo);
    if (s->proxy) SET(CURLOPT_PROXY, s->proxy);
    return NULL;
}

fm_transfer *fm_transfer_new(const fm_settings *s) {
    fm_transfer *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    t->easy = curl_easy_init();
    if (t->easy == NULL || configure_handle(t, s) != NULL) {
        fm_transfer_free(t);
        return NULL;
    }
    return t;
}

/* The handle keeps the previous request's method options: set every one explicitly. */
static const char *set_method(fm_transfer *t, const fm_request *req) {
    CURL *e = t->easy;
    int post = strcmp(req->method, "POST") == 0;
    SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
    SET(CURLOPT_HTTPGET, 1L); /* back to a plain GET: no body, not HEAD */
    if (strcmp(req->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
        return NULL;
    }
    if (!post && strcmp(req->method, "GET") != 0) SET(CURLOPT_CUSTOMREQUEST, req->method);
    if (req->body != NULL || post) {
        /* COPYPOSTFIELDS: libcurl owns the copy, so the Lua string may be collected. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
        SET(CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
    }
    return NULL;
}

const char *fm_transfer_setup(fm_transfer *t, const fm_settings *s, const fm_request *req) {
    CURL *e = t->easy;
    const char *err;
    t->max_bytes = s->max_response_bytes;
    if ((err = set_method(t, req)) != NULL) return err;
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_HTTPHEADER, req->body ? s->json_headers : s->plain_headers);
    SET(CURLOPT_TIMEOUT_MS, req->timeout_ms);
    SET(CURLOPT_FRESH_CONNECT, req->fresh_connection ? 1L : 0L);
    /* Compression only where answers can be large: negotiating it costs more than it saves
     * on small account records. The size cap applies to the decoded bytes. */
    SET(CURLOPT_ACCEPT_ENCODING, req->compressed ? "" : (char *)NULL);
    return NULL;
}

#undef SET

/** core.parse_headers(head) -> { ["lower-case-name"] = "value", ... }
 * head is a completion's raw header block; repeated names are joined with ", ". Parsed only
 * when needed (errors, raw requests), so the common path builds no header table. */
int fm_parse_headers(lua_State *L) {
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

void fm_transfer_push_result(lua_State *L, fm_transfer *t) {
    long status = 0, request_size = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &request_size);
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, (lua_Integer)t->id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, -2, "status");
    lua_pushinteger(L, (lua_Integer)t->result);
    lua_setfield(L, -2, "code");
    if (t->result != CURLE_OK) {
        lua_pushstring(L, t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
        lua_setfield(L, -2, "message");
    }
    lua_pushboolean(L, request_size > 0);
    lua_setfield(L, -2, "sent");
    if (t->too_large) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "too_large");
    }
    if (t->out_of_memory) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "out_of_memory");
    }
    lua_pushlstring(L, t->body.data ? t->body.data : "", t->body.len);
    lua_setfield(L, -2, "body");
    lua_pushlstring(L, t->head.data ? t->head.data : "", t->head.len);
    lua_setfield(L, -2, "head");
}
