/* clock.c - the clocks: the monotonic one for elapsed times, deadlines and retry schedules;
 * the wall clock, to the millisecond, for times a server names (a 429's retryAfter). */
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

/** core.wall_time() -> seconds since the Unix epoch, with their fraction (os.time has none). */
static int clock_wall_time(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return 1;
}

/** core.sleep(seconds): sleep that long (at most 10^6 s); a signal ends it early, so callers
 * polling for a stop request see it at once. */
static int clock_sleep(lua_State *L) {
    double s = luaL_checknumber(L, 1);
    struct timespec ts;
    if (!(s > 0)) return 0; /* NaN too */
    if (s > 1e6) s = 1e6;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
    return 0;
}

int fm_clock_open(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"now", clock_now},
        {"wall_time", clock_wall_time},
        {"sleep", clock_sleep},
        {NULL, NULL},
    };
    fm_setfuncs(L, functions, 0);
    return 0;
}
