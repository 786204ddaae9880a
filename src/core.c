/* core.c - luaopen_flowmusic_core: composes the per-concern parts into one module table.
 * The only symbol this library exports. (The version lives in lua/flowmusic/defaults.lua.) */
#include <pthread.h>

#include <curl/curl.h>

#include "compat.h"
#include "flowmusic.h"

static pthread_once_t global_init_once = PTHREAD_ONCE_INIT;
static CURLcode global_init_result = CURLE_OK;

/* curl_global_init is not thread-safe before libcurl 7.84, and nginx thread pools may load
 * this module from several threads: run it exactly once per process. */
static void global_init(void) {
    global_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/** core.curl_version() -> libcurl's version string (e.g. for a User-Agent). */
static int core_curl_version(lua_State *L) {
    lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
    return 1;
}

__attribute__((visibility("default"))) int luaopen_flowmusic_core(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"curl_version", core_curl_version},
        {NULL, NULL},
    };
    pthread_once(&global_init_once, global_init);
    if (global_init_result != CURLE_OK)
        return luaL_error(L, "flowmusic: curl_global_init failed: %s", curl_easy_strerror(global_init_result));
    fm_newlib(L, functions);
    fm_clock_open(L);
    fm_codes_open(L);
    fm_headers_open(L);
    fm_json_open(L);
    fm_private_files_open(L);
    fm_session_open(L);
    fm_sha256_open(L);
    fm_signals_open(L);
    return 1;
}
