/* core.c - luaopen_flowmusic_core: composes the per-concern parts into one module table.
 * The only symbol this library exports. */
#include <pthread.h>
#include <time.h>

#include <curl/curl.h>

#include "compat.h"
#include "flowmusic.h"
#include "transfer.h"

static pthread_once_t global_init_once = PTHREAD_ONCE_INIT;
static CURLcode global_init_result = CURLE_OK;

/* curl_global_init is not thread-safe before libcurl 7.84, and nginx thread pools may load
 * this module from several threads: run it exactly once per process. */
static void global_init(void) {
    global_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

double fm_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/** core.now() -> seconds on a monotonic clock (for elapsed times and retry schedules). */
static int core_now(lua_State *L) {
    lua_pushnumber(L, fm_now_seconds());
    return 1;
}

/** core.curl_version() -> libcurl's version string (e.g. for a User-Agent). */
static int core_curl_version(lua_State *L) {
    lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
    return 1;
}

__attribute__((visibility("default"))) int luaopen_flowmusic_core(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"curl_version", core_curl_version},
        {"now", core_now},
        {"parse_headers", fm_parse_headers},
        {NULL, NULL},
    };
    pthread_once(&global_init_once, global_init);
    if (global_init_result != CURLE_OK)
        return luaL_error(L, "flowmusic: curl_global_init failed: %s", curl_easy_strerror(global_init_result));
    fm_newlib(L, functions);
    lua_pushliteral(L, FM_VERSION);
    lua_setfield(L, -2, "_VERSION");
    fm_session_open(L);
    fm_json_open(L);
    return 1;
}
