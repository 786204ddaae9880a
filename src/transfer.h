/* transfer.h - one HTTP exchange on a reusable libcurl easy handle.
 * A transfer and everything it points to is owned by a session userdata, so a Lua error
 * (longjmp) at any point can never leak it: the session's __gc frees whatever it holds. */
#ifndef FLOWMUSIC_TRANSFER_H
#define FLOWMUSIC_TRANSFER_H

#include <curl/curl.h>
#include <lua.h>

#include "buffer.h"

/* Internal to the module whatever the build system: only luaopen_flowmusic_core is exported. */
#pragma GCC visibility push(hidden)

/* Per-client settings every transfer of a session shares. Strings are owned by the session. */
typedef struct fm_settings {
    char *auth_header; /* "Authorization: Bearer <token>", wiped on free */
    char *ua_header;   /* "User-Agent: ...": a ready header line, so libcurl formats nothing */
    struct curl_slist *plain_headers; /* auth, user agent, accept: built once, shared */
    struct curl_slist *json_headers;  /* the same plus Content-Type: application/json */
    char *cainfo;      /* CA bundle file; NULL: libcurl's default CA store */
    char *capath;      /* CA directory (OpenSSL hashed names); NULL: libcurl's default */
    char *proxy;       /* NULL: no explicit proxy (libcurl still honours *_proxy variables) */
    long connect_timeout_ms;
    size_t max_response_bytes;
} fm_settings;

/* What a caller asks for; strings are borrowed for the duration of fm_transfer_setup only. */
typedef struct fm_request {
    const char *method;       /* one of the session's static method names */
    const char *url;
    const char *body;         /* NULL: no request body; else JSON */
    size_t body_len;
    int fresh_connection;     /* never reuse a pooled connection (no silent re-send by libcurl) */
    long timeout_ms;          /* whole attempt */
    int compressed;           /* offer gzip/deflate/br (for answers that can be large) */
    int want_head;            /* report the header block of a 2xx answer too */
    int decode;               /* hand a 2xx answer over decoded (a JSON object), not as text */
} fm_request;

typedef struct fm_transfer {
    CURL *easy;
    fm_buffer body;
    fm_buffer head;           /* header block of the last response only */
    size_t max_bytes;
    int too_large;            /* the cap stopped the transfer */
    int out_of_memory;        /* a buffer could not grow */
    int is_head;              /* HEAD: a Content-Length describes no body here */
    int interim;              /* inside a 1xx header block */
    int keep_head;            /* the current header block is copied into head */
    int json_type;            /* the kept block's Content-Type names JSON */
    int body_seen;            /* body bytes arrived: later headers are trailers */
    int sends;                /* times libcurl sent the request (its own re-sends included) */
    int want_head;            /* the caller reads headers of 2xx answers (raw requests) */
    int decode;               /* a 2xx answer is decoded as an object (see fm_request) */
    CURLcode result;
    long long id;             /* the caller's tag, echoed in the completion */
    char errbuf[CURL_ERROR_SIZE];
    /* Request options as last set on this easy handle: unchanged ones are not set again. */
    struct {
        const char *method;
        char *url;
        const struct curl_slist *headers;
        long timeout_ms;
        int fresh, pipewait, compressed, valid;
    } last;
    struct fm_transfer *next;
} fm_transfer;

/* Allocate an idle transfer with its easy handle, configured with the client's settings s;
 * NULL when out of memory. */
fm_transfer *fm_transfer_new(const fm_settings *s);
/* Prepare t for req; returns NULL or a static message saying what failed. */
const char *fm_transfer_setup(fm_transfer *t, const fm_settings *s, const fm_request *req);
/* Drop the last request's state, keeping the easy handle (its per-client options and
 * buffers) for reuse. */
void fm_transfer_recycle(fm_transfer *t);
void fm_transfer_free(fm_transfer *t);
/* Build the header lists of s from its auth_header; 0, or -1 when memory runs out. */
int fm_settings_build_headers(fm_settings *s);
/* The optional fields of a completion (see session:poll). */
enum {
    FM_FIELD_DOC = 1u << 0, FM_FIELD_DECODE_ERROR = 1u << 1, FM_FIELD_BODY = 1u << 2,
    FM_FIELD_SENT = 1u << 3, FM_FIELD_MESSAGE = 1u << 4, FM_FIELD_TOO_LARGE = 1u << 5,
    FM_FIELD_OUT_OF_MEMORY = 1u << 6, FM_FIELD_HEAD = 1u << 7, FM_FIELD_PROXY_STATUS = 1u << 8,
    FM_FIELD_ALL = (1u << 9) - 1
};

/* How a completion is written (see fm_transfer_push_result). */
typedef struct fm_completion_sink {
    int into;                 /* stack index of a table to write into, 0 for a new table */
    unsigned held;            /* in: optional fields `into` may hold (FM_FIELD_*), which are
                                 cleared unless set again; out: the ones it holds now */
    int null_index;           /* stack index of the value JSON null becomes, 0 for nil */
    size_t max_values;        /* bound on decoded values, 0 for none */
} fm_completion_sink;
/* Push the completion of a finished transfer (fields: see session:poll in session.c). May
 * raise (memory); t is left untouched. */
void fm_transfer_push_result(lua_State *L, fm_transfer *t, fm_completion_sink *sink);

#pragma GCC visibility pop

#endif
