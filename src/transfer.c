/* transfer.c - one HTTP exchange on a reusable libcurl easy handle: setup, the libcurl
 * callbacks (plain C, never the Lua API), and the completion table built afterwards. */
#include "transfer.h"
#include "flowmusic.h"

#include <lauxlib.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* A Content-Length up to this sizes the body buffer at once; a larger claim (it may be a lie)
 * lets the buffer grow with what really arrives. */
#define FM_PRESIZE_MAX (16u * 1024u * 1024u)

/* Where the value of header `name` (lowercase, with its colon) starts in a header line, or 0
 * when the line is another header. */
static size_t header_value(const char *line, size_t len, const char *name, size_t n) {
    size_t i;
    if (len <= n) return 0;
    for (i = 0; i < n; i++)
        if (tolower((unsigned char)line[i]) != name[i]) return 0;
    for (; i < len && (line[i] == ' ' || line[i] == '\t'); i++) {}
    return i;
}

/* "Content-Length: n" of the final response: refuse oversize answers before reading them, and
 * size the body buffer once so a 5 MB document is not copied through a dozen reallocations.
 * Only the final header section counts: not a 1xx block, not trailers, not a HEAD answer. */
static void note_content_length(fm_transfer *t, const char *line, size_t len) {
    static const char name[] = "content-length:";
    unsigned long long value = 0;
    size_t i;
    if (t->interim || t->body_seen || t->is_head) return;
    if ((i = header_value(line, len, name, sizeof(name) - 1)) == 0) return;
    for (; i < len && line[i] >= '0' && line[i] <= '9'; i++) {
        if (value > (~0ull - 9) / 10) { value = ~0ull; break; }
        value = value * 10 + (unsigned)(line[i] - '0');
    }
    if (value > t->max_bytes) t->too_large = 1;
    else if (value <= FM_PRESIZE_MAX) (void)fm_buffer_reserve(&t->body, (size_t)value);
}

/* Does a header line say the body is JSON ("Content-Type: application/json", "...+json")?
 * Only kept blocks are looked at: the usual 2xx answer of a typed call is decoded anyway. */
static int names_json_type(const char *line, size_t len) {
    static const char name[] = "content-type:";
    size_t i = header_value(line, len, name, sizeof(name) - 1);
    if (i == 0) return 0;
    for (; i + 4 <= len; i++)
        if (tolower((unsigned char)line[i]) == 'j' && tolower((unsigned char)line[i + 1]) == 's'
            && tolower((unsigned char)line[i + 2]) == 'o' && tolower((unsigned char)line[i + 3]) == 'n')
            return 1;
    return 0;
}

/* The status class digit of a status line ("HTTP/1.1 204 ..." -> '2'), or 0. */
static char status_class(const char *p, size_t len) {
    const char *sp = memchr(p, ' ', len);
    return sp != NULL && (size_t)(sp - p) + 1 < len ? sp[1] : 0;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
    fm_transfer *t = ud;
    size_t len = size * nmemb;
    if (t->body_seen) return len; /* trailers: not part of the final header section */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        char class = status_class(p, len);
        t->head.len = 0; /* a new block: earlier (1xx) blocks are dropped */
        t->interim = class == '1';
        /* Lua reads the block of a 2xx answer only when it asked for it: don't copy it */
        t->keep_head = t->want_head || class != '2';
        t->json_type = 0;
    }
    note_content_length(t, p, len);
    if (t->too_large) return 0;
    if (t->keep_head) {
        if (fm_buffer_append(&t->head, p, len) != 0) { t->out_of_memory = 1; return 0; }
        if (!t->json_type) t->json_type = names_json_type(p, len);
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
    fm_transfer *t = ud;
    size_t len = size * nmemb;
    t->body_seen = 1;
    if (len > t->max_bytes - t->body.len) { t->too_large = 1; return 0; }
    if (fm_buffer_append(&t->body, p, len) != 0) { t->out_of_memory = 1; return 0; }
    return len;
}

/* Called each time libcurl is about to send the request on a connection: its own silent
 * re-sends on a dead pooled connection are counted too, so attempts never under-count. */
static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port) {
    fm_transfer *t = ud;
    (void)primary_ip; (void)local_ip; (void)primary_port; (void)local_port;
    t->sends++;
    return CURL_PREREQFUNC_OK;
}

void fm_transfer_recycle(fm_transfer *t) {
    /* No curl_easy_reset: the per-client options stay set; setup changes what differs. */
    fm_buffer_clear(&t->body);
    fm_buffer_clear(&t->head);
    t->too_large = t->out_of_memory = 0;
    t->is_head = t->interim = t->keep_head = t->json_type = t->body_seen = t->sends = 0;
    t->result = CURLE_OK;
    t->errbuf[0] = '\0';
    t->next = NULL;
}

void fm_transfer_free(fm_transfer *t) {
    if (t == NULL) return;
    if (t->easy != NULL) curl_easy_cleanup(t->easy);
    fm_buffer_free(&t->body);
    fm_buffer_free(&t->head);
    free(t->last.url);
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
    /* libcurl 7.88 formats every custom header byte by byte (about 100 instructions a byte),
     * so the lists hold only what is needed: the vendor's own examples send Authorization
     * alone (libcurl then adds its own Accept line, as curl does). "Expect:" stops libcurl
     * from waiting for 100-continue on larger POST bodies. */
    const char *const common[] = {s->auth_header, s->ua_header};
    size_t i;
    for (i = 0; i < sizeof common / sizeof common[0]; i++) {
        if (common[i] == NULL) continue; /* no token (a webhook) or no user agent */
        if (add_header(&s->plain_headers, common[i]) || add_header(&s->json_headers, common[i])) return -1;
    }
    return add_header(&s->json_headers, "Expect:") || add_header(&s->json_headers, "Content-Type: application/json");
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
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, t);
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    SET(CURLOPT_PRIVATE, t);
    if (s->cainfo) SET(CURLOPT_CAINFO, s->cainfo);
    if (s->capath) SET(CURLOPT_CAPATH, s->capath);
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
    if (t->is_head) {
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

/* Set CURLOPT_URL unless the handle already has this URL (a loop over one account). */
static const char *set_url(fm_transfer *t, const char *url) {
    CURL *e = t->easy;
    size_t n;
    if (t->last.url != NULL && strcmp(t->last.url, url) == 0) return NULL;
    free(t->last.url);
    t->last.url = NULL;
    SET(CURLOPT_URL, url);
    n = strlen(url) + 1;
    if ((t->last.url = malloc(n)) != NULL) memcpy(t->last.url, url, n); /* NULL: set next time */
    return NULL;
}

const char *fm_transfer_setup(fm_transfer *t, const fm_settings *s, const fm_request *req) {
    CURL *e = t->easy;
    const char *err;
    const struct curl_slist *headers = req->body ? s->json_headers : s->plain_headers;
    int bodyless_get = strcmp(req->method, "GET") == 0 && req->body == NULL;
    int pipewait;
    t->max_bytes = s->max_response_bytes;
    t->is_head = strcmp(req->method, "HEAD") == 0;
    t->want_head = req->want_head;
    t->decode = req->decode;
    /* A GET after a GET needs no method options at all; anything else sets them afresh. */
    if (!(t->last.valid && bodyless_get && t->last.method == req->method)) {
        if ((err = set_method(t, req)) != NULL) { t->last.valid = 0; return err; }
    }
    if ((err = set_url(t, req->url)) != NULL) { t->last.valid = 0; return err; }
    if (!t->last.valid || t->last.headers != headers) SET(CURLOPT_HTTPHEADER, headers);
    if (!t->last.valid || t->last.timeout_ms != req->timeout_ms) SET(CURLOPT_TIMEOUT_MS, req->timeout_ms);
    if (!t->last.valid || t->last.fresh != req->fresh_connection)
        SET(CURLOPT_FRESH_CONNECT, req->fresh_connection ? 1L : 0L);
    /* Over https (HTTP/2 once negotiated) a request that may share a connection waits for the
     * one being set up instead of opening its own: one handshake for a burst, not one each. */
    pipewait = !req->fresh_connection && strncmp(req->url, "https://", 8) == 0;
    if (!t->last.valid || t->last.pipewait != pipewait) SET(CURLOPT_PIPEWAIT, pipewait ? 1L : 0L);
    /* Compression only where answers can be large: negotiating it costs more than it saves
     * on small account records. The size cap applies to the decoded bytes. */
    if (!t->last.valid || t->last.compressed != req->compressed)
        SET(CURLOPT_ACCEPT_ENCODING, req->compressed ? "" : (char *)NULL);
    t->last.method = bodyless_get ? req->method : NULL;
    t->last.headers = headers;
    t->last.timeout_ms = req->timeout_ms;
    t->last.fresh = req->fresh_connection;
    t->last.pipewait = pipewait;
    t->last.compressed = req->compressed;
    t->last.valid = 1;
    return NULL;
}

#undef SET

/* Is a complete answer other than the usual one (a 2xx to a typed call) decoded? A raw
 * request's 2xx when its Content-Type names JSON; an error status also when the body starts
 * like a JSON document, as error bodies often come mislabelled. Never shape-checked. */
static int decode_rule(const fm_transfer *t, long status) {
    size_t i;
    if (t->body.len == 0) return 0;
    if (t->json_type) return 1;
    if (status >= 200 && status < 300) return 0;
    for (i = 0; i < t->body.len && (t->body.data[i] == ' ' || t->body.data[i] == '\t'
                                    || t->body.data[i] == '\r' || t->body.data[i] == '\n'); i++) {}
    return i < t->body.len && (t->body.data[i] == '{' || t->body.data[i] == '[');
}

/* Field names, in FM_FIELD_* bit order. */
static const char *const optional_fields[] = {"doc", "decode_error", "body", "sent", "message",
                                              "too_large", "out_of_memory", "head", "proxy_status"};

static void set_string(lua_State *L, const char *name, const char *s, size_t len) {
    lua_pushlstring(L, s, len);
    lua_setfield(L, -2, name);
}

void fm_transfer_push_result(lua_State *L, fm_transfer *t, fm_completion_sink *sink) {
    long status = 0, request_size = 0;
    const char *message;
    unsigned set = 0, stale, i;
    int decode, complete = t->result == CURLE_OK && !t->too_large && !t->out_of_memory;
    /* The usual completion: a complete 2xx exchange whose headers nobody reads. */
    int usual;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    usual = complete && status >= 200 && status < 300 && !t->want_head;
    if (sink->into) lua_pushvalue(L, sink->into);
    else lua_createtable(L, 0, usual ? 5 : 10);
    lua_pushinteger(L, (lua_Integer)t->id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, -2, "status");
    /* A complete exchange is code 0: an oversize or unstorable answer is never one. */
    lua_pushinteger(L, complete ? 0 : t->result != CURLE_OK ? (lua_Integer)t->result : (lua_Integer)CURLE_WRITE_ERROR);
    lua_setfield(L, -2, "code");
    lua_pushinteger(L, (lua_Integer)t->sends);
    lua_setfield(L, -2, "sends");
    decode = complete && (usual ? t->decode : decode_rule(t, status));
    if (decode) {
        const char *text = t->body.data ? t->body.data : "";
        if (fm_json_decode(L, text, t->body.len, sink->null_index, sink->max_values, usual)) {
            /* A top-level null is a value (the raw answer `null`), not "nothing decoded". */
            if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushlightuserdata(L, NULL); }
            lua_setfield(L, -2, "doc");
            set = FM_FIELD_DOC;
        } else {                                  /* completion, message, kind */
            lua_setfield(L, -3, "decode_kind");
            lua_setfield(L, -2, "decode_error");
            set = FM_FIELD_DECODE_ERROR;
        }
    }
    if (!usual || !decode) {
        /* A partial body is never copied into Lua: nothing reads it, and it may be huge. */
        set_string(L, "body", complete && t->body.data ? t->body.data : "", complete ? t->body.len : 0);
        set |= FM_FIELD_BODY;
    }
    if (!usual) {
        curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &request_size);
        lua_pushboolean(L, request_size > 0);
        lua_setfield(L, -2, "sent");
        set |= FM_FIELD_SENT;
        if (t->result != CURLE_OK) {
            long connect_status = 0;
            message = t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result);
            set_string(L, "message", message, strlen(message));
            set |= FM_FIELD_MESSAGE;
            /* A proxy's answer to CONNECT that opened no tunnel (403, 407...): the request
             * itself never left for the server. */
            curl_easy_getinfo(t->easy, CURLINFO_HTTP_CONNECTCODE, &connect_status);
            if (connect_status != 0 && (connect_status < 200 || connect_status >= 300)) {
                lua_pushinteger(L, (lua_Integer)connect_status);
                lua_setfield(L, -2, "proxy_status");
                set |= FM_FIELD_PROXY_STATUS;
            }
        }
        if (t->too_large) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "too_large");
            set |= FM_FIELD_TOO_LARGE;
        }
        if (t->out_of_memory) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "out_of_memory");
            set |= FM_FIELD_OUT_OF_MEMORY;
        }
        set_string(L, "head", t->head.data ? t->head.data : "", t->head.len);
        set |= FM_FIELD_HEAD;
    }
    /* What an earlier completion left in a reused table goes: every field is this one's. */
    stale = sink->into ? sink->held & ~set : 0;
    for (i = 0; stale != 0; i++, stale >>= 1) {
        if (!(stale & 1u)) continue;
        lua_pushnil(L);
        lua_setfield(L, -2, optional_fields[i]);
        if (i == 1) { /* decode_error comes with decode_kind */
            lua_pushnil(L);
            lua_setfield(L, -2, "decode_kind");
        }
    }
    sink->held = set;
}
