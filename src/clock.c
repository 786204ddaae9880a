/* clock.c - the monotonic clock: elapsed times, deadlines and retry schedules. */
#include <time.h>

#include "compat.h"
#include "flowmusic.h"

double fm_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/** core.now() -> seconds on a monotonic clock, shared by every thread of the process (so a
 * deadline computed in one Lua VM holds in another, e.g. an nginx worker thread's). */
static int clock_now(lua_State *L) {
    lua_pushnumber(L, fm_now_seconds());
    return 1;
}

int fm_clock_open(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"now", clock_now},
        {NULL, NULL},
    };
    fm_setfuncs(L, functions, 0);
    return 0;
}
