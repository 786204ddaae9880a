/* session.c - the "flowmusic.session" userdata: one libcurl multi handle (whose connection
 * pool gives keep-alive across calls), the shared settings, and the transfers in flight.
 *
 * Lua drives it: start() queues a request, poll() runs libcurl until something finishes and
 * returns plain completion tables. Scheduling, retries and decoding live in the Lua layer.
 * Every C resource hangs off the userdata, so __gc frees it whatever Lua error happens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "flowmusic.h"
#include "transfer.h"

#define FM_SESSION_MT "flowmusic.session"
#define FM_IDLE_KEEP 64 /* idle easy handles kept for reuse */

typedef struct fm_session {
    CURLM *multi;          /* created lazily, and again after a fork */
    fm_settings settings;
    fm_transfer *active;   /* added to the multi handle */
    fm_transfer *done;     /* finished, not yet handed to Lua */
    fm_transfer *idle;     /* ready for reuse */
    int idle_count;
    const void *last_into; /* the table poll last wrote a completion into, and the optional */
    unsigned last_held;    /* fields it holds since (FM_FIELD_*): only those need clearing */
    pid_t pid;             /* process that owns multi and the transfers */
    int closed;
} fm_session;

static char *dup_string(const char *s) {
    size_t n;
    char *p;
    if (s == NULL) return NULL;
    n = strlen(s) + 1;
    p = malloc(n);
    if (p != NULL) memcpy(p, s, n);
    return p;
}

/* The token must not linger in freed memory. */
static void wipe_free(char *s) {
    if (s == NULL) return;
    {
        volatile char *v = s;
        while (*v) *v++ = 0;
    }
    free(s);
}

static void free_list(fm_transfer *t) {
    while (t != NULL) {
        fm_transfer *next = t->next;
        fm_transfer_free(t);
        t = next;
    }
}

/* Release every C resource; safe to call twice. */
static void session_release(fm_session *s) {
    fm_transfer *t;
    if (s->multi != NULL)
        for (t = s->active; t != NULL; t = t->next) curl_multi_remove_handle(s->multi, t->easy);
    free_list(s->active);
    free_list(s->done);
    free_list(s->idle);
    s->active = s->done = s->idle = NULL;
    s->idle_count = 0;
    if (s->multi != NULL) curl_multi_cleanup(s->multi);
    s->multi = NULL;
    curl_slist_free_all(s->settings.plain_headers);
    curl_slist_free_all(s->settings.json_headers);
    wipe_free(s->settings.auth_header);
    free(s->settings.ua_header);
    free(s->settings.cainfo);
    free(s->settings.capath);
    wipe_free(s->settings.proxy); /* it may hold proxy credentials */
    memset(&s->settings, 0, sizeof s->settings);
    s->closed = 1;
}

/* After fork the child must not touch the parent's connections (a TLS close_notify or a
 * reused socket would corrupt the parent's stream): abandon them and start afresh. */
static void forget_parent_handles(fm_session *s) {
    s->multi = NULL;  /* deliberately leaked in the child */
    s->active = NULL;
    s->done = NULL;
    free_list(s->idle); /* idle easy handles hold no connection of their own */
    s->idle = NULL;
    s->idle_count = 0;
    s->pid = getpid();
}

/* The session at idx, for methods whose upvalue 1 is the session metatable: comparing with it
 * spares luaL_checkudata's registry lookup on every call. */
static fm_session *check_session(lua_State *L, int idx) {
    fm_session *s = lua_touserdata(L, idx);
    int ok = 0;
    if (s != NULL && lua_getmetatable(L, idx)) {
        ok = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
    }
    if (!ok) luaL_argerror(L, idx, "flowmusic.session expected");
    if (s->closed) luaL_error(L, "flowmusic: attempt to use a closed client");
    if (s->pid != getpid()) forget_parent_handles(s);
    return s;
}

static void put_idle(fm_session *s, fm_transfer *t) {
    if (s->idle_count >= FM_IDLE_KEEP) { fm_transfer_free(t); return; }
    fm_transfer_recycle(t);
    t->next = s->idle;
    s->idle = t;
    s->idle_count++;
}

/* Optional string field of the config table, or NULL. Raises on a wrong type. */
static const char *opt_field(lua_State *L, int cfg, const char *name) {
    const char *v;
    lua_getfield(L, cfg, name);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); return NULL; }
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "flowmusic: session option '%s' must be a string", name);
    v = lua_tostring(L, -1);
    lua_pop(L, 1); /* the string stays alive: the config table still holds it */
    return v;
}

/* Required integer field of the config table (the defaults live in lua/flowmusic/defaults.lua). */
static lua_Integer int_field(lua_State *L, int cfg, const char *name) {
    lua_Integer v;
    lua_getfield(L, cfg, name);
    if (!lua_isnumber(L, -1)) return luaL_error(L, "flowmusic: session option '%s' must be a number", name);
    v = (lua_Integer)lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/** core.session(cfg) -> session. cfg: connect_timeout_ms, max_response_bytes (required),
 * token (sent as a Bearer Authorization header; none without it, e.g. for a webhook),
 * user_agent, cainfo, capath, proxy. Validation of values is the Lua layer's job;
 * this only refuses wrong types. Raises on misuse or when memory runs out. */
static int session_new(lua_State *L) {
    const char *token, *ua, *cainfo, *capath, *proxy;
    lua_Integer connect_ms, max_bytes;
    fm_session *s;
    size_t n;
    luaL_checktype(L, 1, LUA_TTABLE);
    token = opt_field(L, 1, "token");
    ua = opt_field(L, 1, "user_agent");
    cainfo = opt_field(L, 1, "cainfo");
    capath = opt_field(L, 1, "capath");
    proxy = opt_field(L, 1, "proxy");
    connect_ms = int_field(L, 1, "connect_timeout_ms");
    max_bytes = int_field(L, 1, "max_response_bytes");
    if (connect_ms < 1 || max_bytes < 1) return luaL_error(L, "flowmusic: bad session limits");

    /* Userdata first, zeroed and with its metatable, then the resources it owns. */
    s = lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    fm_setmetatable(L, FM_SESSION_MT);
    s->pid = getpid();
    s->settings.connect_timeout_ms = (long)connect_ms;
    s->settings.max_response_bytes = (size_t)max_bytes;
    if (token != NULL) {
        n = strlen(token) + sizeof("Authorization: Bearer ");
        if ((s->settings.auth_header = malloc(n)) != NULL)
            snprintf(s->settings.auth_header, n, "Authorization: Bearer %s", token);
    }
    if (ua != NULL) {
        n = strlen(ua) + sizeof("User-Agent: ");
        if ((s->settings.ua_header = malloc(n)) != NULL) snprintf(s->settings.ua_header, n, "User-Agent: %s", ua);
    }
    s->settings.cainfo = dup_string(cainfo);
    s->settings.capath = dup_string(capath);
    s->settings.proxy = dup_string(proxy);
    if ((token && !s->settings.auth_header) || (ua && !s->settings.ua_header) ||
        (cainfo && !s->settings.cainfo) || (capath && !s->settings.capath) || (proxy && !s->settings.proxy) ||
        fm_settings_build_headers(&s->settings) != 0)
        return luaL_error(L, "flowmusic: out of memory"); /* __gc frees what was made */
    return 1;
}

static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", NULL};

/* String field of the request table at idx, or NULL when absent. Raises on a wrong type. */
static const char *req_string(lua_State *L, int idx, const char *name, size_t *len) {
    const char *v;
    lua_getfield(L, idx, name);
    v = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, len);
    lua_pop(L, 1); /* the string stays alive: the request table holds it */
    return v;
}

static int req_flag(lua_State *L, int idx, const char *name) {
    int v;
    lua_getfield(L, idx, name);
    v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/** session:start(id, request, timeout) -> true | nil, err
 * Queues one request; it runs during poll(). id is echoed in its completion; timeout: seconds
 * for the whole attempt (rounded up to a millisecond). request is a
 * table: method ("GET", "POST", ...), url, body (JSON text, optional), fresh (never reuse a
 * pooled connection), compressed (offer gzip/deflate/br), answer ("object": a 2xx answer is
 * handed over decoded, as `doc`; "raw": the header block is reported even for a 2xx answer). */
static int session_start(lua_State *L) {
    fm_session *s = check_session(L, 1);
    fm_request req;
    fm_transfer *t;
    const char *err, *answer;
    double timeout;
    lua_Integer id = luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    memset(&req, 0, sizeof req);
    lua_getfield(L, 3, "method");
    req.method = methods[luaL_checkoption(L, -1, NULL, methods)];
    lua_pop(L, 1);
    req.url = req_string(L, 3, "url", NULL);
    if (req.url == NULL) return luaL_argerror(L, 3, "request has no url");
    req.body = req_string(L, 3, "body", &req.body_len);
    req.fresh_connection = req_flag(L, 3, "fresh");
    req.compressed = req_flag(L, 3, "compressed");
    lua_getfield(L, 3, "answer");
    answer = lua_tostring(L, -1);
    req.want_head = answer != NULL && strcmp(answer, "raw") == 0;
    req.decode = answer != NULL && strcmp(answer, "object") == 0;
    lua_pop(L, 1);
    timeout = luaL_checknumber(L, 4) * 1000;
    if (!(timeout >= 1)) req.timeout_ms = 1; /* NaN too */
    else if (timeout >= 2e9) req.timeout_ms = 2000000000L;
    else req.timeout_ms = (long)timeout + ((double)(long)timeout < timeout); /* rounded up */

    /* From here on no Lua call may raise until the transfer is linked into the session. */
    if (s->multi == NULL && (s->multi = curl_multi_init()) == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "out of memory (curl_multi_init)");
        return 2;
    }
    if (s->idle != NULL) {
        t = s->idle;
        s->idle = t->next;
        s->idle_count--;
        t->next = NULL;
    } else if ((t = fm_transfer_new(&s->settings)) == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "out of memory (curl_easy_init)");
        return 2;
    }
    t->id = (long long)id;
    err = fm_transfer_setup(t, &s->settings, &req);
    if (err == NULL && curl_multi_add_handle(s->multi, t->easy) != CURLM_OK) err = "curl_multi_add_handle failed";
    if (err != NULL) {
        put_idle(s, t);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    t->next = s->active;
    s->active = t;
    lua_pushboolean(L, 1);
    return 1;
}

/* Move every finished transfer from active to done. */
static void collect_finished(fm_session *s) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
        fm_transfer **pp, *t = NULL;
        if (msg->msg != CURLMSG_DONE) continue;
        for (pp = &s->active; *pp != NULL; pp = &(*pp)->next)
            if ((*pp)->easy == msg->easy_handle) { t = *pp; *pp = t->next; break; }
        if (t == NULL) continue;
        t->result = msg->data.result;
        curl_multi_remove_handle(s->multi, t->easy);
        t->next = s->done;
        s->done = t;
    }
}


/** session:poll([timeout_seconds [, into [, null [, max_values]]]]) -> completion, more | nil
 * Runs transfers until one finishes, the timeout passes (0: just one step) or a caught signal
 * arrives, and returns the completion of one finished transfer, and whether more finished ones
 * wait (call again with 0 for them: they are handed out without running libcurl again). With
 * nothing in flight it sleeps for the timeout.
 *
 * A completion has id, status, code (libcurl's CURLcode; 0 only for a complete exchange:
 * never for an answer over max_response_bytes) and sends (libcurl's own re-sends counted).
 * Then, for a complete exchange, what the body holds (the one home of the decoding rule):
 * - a 2xx to a request with answer "object": `doc`, the answer decoded (JSON null as `null`,
 *   at most max_values values), or when it is not a JSON object `decode_error` and
 *   `decode_kind` (as core.json_decode: "syntax", "shape", "too_large");
 * - a 2xx to answer "raw" whose Content-Type names JSON, and any other status whose
 *   Content-Type names JSON or whose body starts with `{` or `[`: `doc` (any JSON value; a
 *   top-level null is core.null) or `decode_error`/`decode_kind`, beside `body`;
 * - otherwise `body`, the text.
 * Unless it is the usual case (a 2xx to a request other than "raw"), also: sent, message
 * (libcurl's, when code is not 0), proxy_status (a proxy's refusal of CONNECT), too_large
 * and out_of_memory (when true), head (the raw header block of the final response, see
 * core.parse_headers); body is empty unless code is 0.
 * The completion is written into the table `into` when given (a reusable one): fields an
 * earlier completion left there and this one does not have are cleared. */
static int session_poll(lua_State *L) {
    fm_session *s = check_session(L, 1);
    double timeout = luaL_optnumber(L, 2, 0);
    lua_Integer max_values = luaL_optinteger(L, 5, 0);
    fm_completion_sink sink;
    double until = fm_now_seconds() + (timeout > 0 ? timeout : 0);
    int running = 0;
    fm_transfer *t;
    if (s->multi == NULL && (s->multi = curl_multi_init()) == NULL)
        return luaL_error(L, "flowmusic: out of memory (curl_multi_init)");
    {
        int signals = fm_signal_count();
        while (s->done == NULL) {
            double left;
            if (curl_multi_perform(s->multi, &running) != CURLM_OK) break;
            collect_finished(s);
            left = until - fm_now_seconds();
            /* A caught signal (see signals.c) hands control back to the scheduler at once. */
            if (s->done != NULL || left <= 0 || fm_signal_count() != signals) break;
            /* With nothing running this simply sleeps: the caller is waiting for a retry time. */
            if (curl_multi_poll(s->multi, NULL, 0, (int)(left * 1000) + 1, NULL) != CURLM_OK) break;
        }
    }
    if ((t = s->done) == NULL) return 0;
    sink.into = lua_istable(L, 3) ? 3 : 0;
    /* Another table than last time may hold any field (a new one holds none: no harm). */
    sink.held = sink.into && lua_topointer(L, 3) == s->last_into ? s->last_held : FM_FIELD_ALL;
    sink.null_index = lua_isnoneornil(L, 4) ? 0 : 4;
    sink.max_values = max_values > 0 ? (size_t)max_values : 0;
    s->last_into = NULL; /* unknown until the write below is done */
    fm_transfer_push_result(L, t, &sink); /* may raise: t is still on the done list then */
    if (sink.into) {
        s->last_into = lua_topointer(L, 3);
        s->last_held = sink.held;
    }
    s->done = t->next;
    put_idle(s, t);
    lua_pushboolean(L, s->done != NULL);
    return 2;
}

/** session:cancel(id) -> true when the request with this id was in flight and is now dropped
 * (its completion will never be reported), false otherwise. */
static int session_cancel(lua_State *L) {
    fm_session *s = check_session(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    fm_transfer **pp;
    for (pp = &s->active; *pp != NULL; pp = &(*pp)->next) {
        fm_transfer *t = *pp;
        if (t->id == (long long)id) {
            *pp = t->next;
            curl_multi_remove_handle(s->multi, t->easy);
            put_idle(s, t);
            lua_pushboolean(L, 1);
            return 1;
        }
    }
    lua_pushboolean(L, 0);
    return 1;
}

/** session:abort() -> stops every request in flight; their completions are dropped. */
static int session_abort(lua_State *L) {
    fm_session *s = luaL_checkudata(L, 1, FM_SESSION_MT);
    if (s->active == NULL && s->done == NULL && !s->closed) return 0; /* the usual case: no syscall */
    s = check_session(L, 1);
    while (s->active != NULL) {
        fm_transfer *t = s->active;
        s->active = t->next;
        curl_multi_remove_handle(s->multi, t->easy);
        put_idle(s, t);
    }
    while (s->done != NULL) {
        fm_transfer *t = s->done;
        s->done = t->next;
        put_idle(s, t);
    }
    return 0;
}

/** session:close() -> releases the handles; idempotent. Also __gc and __close. */
static int session_close(lua_State *L) {
    fm_session *s = luaL_checkudata(L, 1, FM_SESSION_MT);
    if (!s->closed) {
        if (s->pid != getpid()) forget_parent_handles(s);
        session_release(s);
    }
    return 0;
}

/* Never shows the token. */
static int session_tostring(lua_State *L) {
    fm_session *s = luaL_checkudata(L, 1, FM_SESSION_MT);
    lua_pushfstring(L, "flowmusic.session (%s)", s->closed ? "closed" : "open");
    return 1;
}

int fm_session_open(lua_State *L) {
    static const luaL_Reg meta[] = {
        {"__gc", session_close},
        {"__close", session_close},
        {"__tostring", session_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg methods_reg[] = {
        {"start", session_start}, {"poll", session_poll},   {"cancel", session_cancel},
        {"abort", session_abort}, {"close", session_close},
        {NULL, NULL},
    };
    luaL_newmetatable(L, FM_SESSION_MT);
    fm_setfuncs(L, meta, 0);
    lua_createtable(L, 0, (int)(sizeof methods_reg / sizeof methods_reg[0]) - 1);
    lua_pushvalue(L, -2);
    fm_setfuncs(L, methods_reg, 1);       /* metatable, methods (each with the metatable) */
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    lua_pushcfunction(L, session_new); /* module, session */
    lua_setfield(L, -2, "session");
    return 0;
}
