/* signals.c - opt-in SIGINT/SIGTERM catching for programs that must stop cleanly (the CLI).
 * The handler only counts: the scheduler reads the count between polls and decides what to
 * do (stop starting, give transfers a grace period, abort), and session:poll returns early
 * when the count changes. Nothing is installed unless a program calls catch(). */
#include <signal.h>
#include <string.h>

#include "compat.h"
#include "flowmusic.h"

static volatile sig_atomic_t caught_count = 0;
static volatile sig_atomic_t caught_last = 0;

static const int watched[] = {SIGINT, SIGTERM};
#define FM_WATCHED (sizeof watched / sizeof watched[0])
static struct sigaction previous[FM_WATCHED];
static int installed = 0;

static void on_signal(int signo) {
    caught_last = signo;
    if (caught_count < 1000) caught_count++;
}

int fm_signal_count(void) { return (int)caught_count; }

/** core.signals_catch() -> true. Counts SIGINT and SIGTERM from now on instead of letting
 * them end the process (or raise "interrupted!" in the lua interpreter). Idempotent. */
static int signals_catch(lua_State *L) {
    size_t i;
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0; /* no SA_RESTART: a blocking poll returns at once */
        for (i = 0; i < FM_WATCHED; i++) sigaction(watched[i], &sa, &previous[i]);
        installed = 1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/** core.signals_caught() -> count, last signal number (0 when none). */
static int signals_caught(lua_State *L) {
    lua_pushinteger(L, caught_count);
    lua_pushinteger(L, caught_last);
    return 2;
}

/** core.signals_release() -> restores the handlers catch() replaced and clears the count. */
static int signals_release(lua_State *L) {
    size_t i;
    (void)L;
    if (installed) {
        for (i = 0; i < FM_WATCHED; i++) sigaction(watched[i], &previous[i], NULL);
        installed = 0;
    }
    caught_count = 0;
    caught_last = 0;
    return 0;
}

int fm_signals_open(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"signals_catch", signals_catch},
        {"signals_caught", signals_caught},
        {"signals_release", signals_release},
        {NULL, NULL},
    };
    fm_setfuncs(L, functions, 0);
    lua_pushinteger(L, SIGINT);
    lua_setfield(L, -2, "SIGINT");
    lua_pushinteger(L, SIGTERM);
    lua_setfield(L, -2, "SIGTERM");
    return 0;
}
