/* private_files.c - the files that hold fleet state (alert state, history, locks): private to
 * the user (created 0600 whatever the umask), never written through a symbolic link, replaced
 * atomically or appended whole, and locked so that two runs can't interleave.
 *
 * Locks are flock(2) locks: the kernel drops one when its holder dies, so a lock left by a
 * killed process is simply free again; the holder writes its pid into the lock file so that
 * a run that finds the lock taken can say who has it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "flowmusic.h"

#define FM_LOCK_MT "flowmusic.lock"

typedef struct {
    int fd; /* -1 once released */
} fm_lock;

/* The pid written in the lock file by its holder, or 0 when there is none. */
static long holder_pid(int fd) {
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

/* Record our pid for runs that find the lock taken. */
static void write_pid(int fd) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0 && n > 0) {
        ssize_t w = pwrite(fd, buf, (size_t)n, 0);
        (void)w; /* the pid is only a hint for messages */
    }
}

/** core.lock_file(path, wait) -> lock | nil, message, holder_pid
 * Opens (creating, mode 0600, never through a symbolic link) path and takes an exclusive lock
 * on it, trying for up to wait seconds (0: once). The lock is held until lock:unlock(), the
 * lock is collected, or the process ends. When the lock stays taken: nil, "locked", and the
 * holder's pid (0 if unknown). */
static int lock_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    double wait = luaL_optnumber(L, 2, 0);
    double deadline = fm_now_seconds() + (wait > 0 ? wait : 0);
    fm_lock *lk;
    struct stat st;
    int fd;
    lua_settop(L, 2);
    lk = lua_newuserdata(L, sizeof *lk); /* owned before the descriptor exists */
    lk->fd = -1;
    fm_setmetatable(L, FM_LOCK_MT);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot open lock file: %s", strerror(errno));
        return 2;
    }
    lk->fd = fd;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        lua_pushnil(L);
        lua_pushliteral(L, "the lock file is not a regular file");
        return 2; /* __gc closes fd */
    }
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            lua_pushnil(L);
            lua_pushfstring(L, "cannot lock: %s", strerror(errno));
            return 2;
        }
        if (fm_now_seconds() >= deadline) {
            lua_pushnil(L);
            lua_pushliteral(L, "locked");
            lua_pushinteger(L, (lua_Integer)holder_pid(fd));
            return 3;
        }
        {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    write_pid(fd);
    return 1; /* the lock */
}

/* Write all of buf to fd; 0 on success, else errno. */
static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Push nil, "what: strerror(e)"; returns 2. */
static int fail(lua_State *L, const char *what, int e) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(e));
    return 2;
}

/** core.write_private(path, text) -> true | nil, message
 * Replaces path atomically: text goes to a new file beside it (mode 0600, created
 * exclusively), is flushed to disk, then renamed over path. On any failure the temporary file
 * is removed and path is as it was. A path that is a symbolic link is replaced, never
 * followed. */
static int write_private(lua_State *L) {
    size_t plen, len;
    const char *path = luaL_checklstring(L, 1, &plen);
    const char *text = luaL_checklstring(L, 2, &len);
    luaL_Buffer b;
    const char *tmp;
    int fd, e;
    /* <path>.tmp.<pid>: one writer per process at a time (callers hold the lock). */
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, path, plen);
    lua_pushfstring(L, ".tmp.%d", (int)getpid());
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    tmp = lua_tostring(L, -1);
    unlink(tmp); /* a leftover of a killed run of this pid */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return fail(L, "cannot create the temporary file", errno);
    e = write_all(fd, text, len);
    if (e == 0 && fsync(fd) != 0) e = errno;
    if (close(fd) != 0 && e == 0) e = errno;
    if (e == 0 && rename(tmp, path) != 0) e = errno;
    if (e != 0) {
        unlink(tmp);
        return fail(L, "cannot write", e);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/** core.append_private(path, text) -> true | nil, message
 * Appends text to path in one write (creating it with mode 0600; never through a symbolic
 * link), so concurrent appenders never interleave within a record. */
static int append_private(lua_State *L) {
    size_t len;
    const char *path = luaL_checkstring(L, 1);
    const char *text = luaL_checklstring(L, 2, &len);
    struct stat st;
    int fd, e;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return fail(L, "cannot open", errno);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        lua_pushnil(L);
        lua_pushliteral(L, "not a regular file");
        return 2;
    }
    e = write_all(fd, text, len);
    if (close(fd) != 0 && e == 0) e = errno;
    if (e != 0) return fail(L, "cannot append", e);
    lua_pushboolean(L, 1);
    return 1;
}

/** core.file_mode(path) -> permission bits, owner uid, kind | nil, message, "missing"
 * What path names, following symbolic links (the file read is the one that matters), without
 * opening it (opening a FIFO would block): its mode bits (0600 is the number 384), its owner,
 * and its kind: "file", "directory", "fifo", "device", "socket" or "other". A path that names
 * nothing gives nil, the reason and "missing". */
static int file_mode(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    const char *kind;
    if (stat(path, &st) != 0) {
        int e = errno;
        fail(L, "cannot stat", e);
        if (e != ENOENT && e != ENOTDIR) return 2;
        lua_pushliteral(L, "missing");
        return 3;
    }
    if (S_ISREG(st.st_mode)) kind = "file";
    else if (S_ISDIR(st.st_mode)) kind = "directory";
    else if (S_ISFIFO(st.st_mode)) kind = "fifo";
    else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) kind = "device";
    else if (S_ISSOCK(st.st_mode)) kind = "socket";
    else kind = "other";
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    lua_pushstring(L, kind);
    return 3;
}

/** core.make_private_dir(path) -> true | nil, message
 * Creates path and any missing parent directories, each new one with mode 0700 (whatever the
 * umask); directories that exist already are left as they are. */
static int make_private_dir(lua_State *L) {
    size_t len, i;
    const char *path = luaL_checklstring(L, 1, &len);
    char *copy;
    struct stat st;
    int e = 0;
    if (len == 0) return fail(L, "cannot create the directory", ENOENT);
    copy = lua_newuserdata(L, len + 1); /* freed by the collector, whatever happens */
    memcpy(copy, path, len + 1);
    for (i = 1; i <= len && e == 0; i++) {
        if (copy[i] != '/' && copy[i] != '\0') continue;
        copy[i] = '\0';
        if (mkdir(copy, 0700) == 0) {
            if (chmod(copy, 0700) != 0) e = errno; /* mkdir's mode went through the umask */
        } else if (errno != EEXIST) {
            e = errno;
        }
        if (i < len) copy[i] = '/';
    }
    if (e != 0) return fail(L, "cannot create the directory", e);
    if (stat(path, &st) != 0) return fail(L, "cannot create the directory", errno);
    if (!S_ISDIR(st.st_mode)) return fail(L, "cannot create the directory", ENOTDIR);
    lua_pushboolean(L, 1);
    return 1;
}

static int lock_unlock(lua_State *L) {
    fm_lock *lk = luaL_checkudata(L, 1, FM_LOCK_MT);
    if (lk->fd >= 0) {
        if (ftruncate(lk->fd, 0) != 0) { /* the pid is only a hint */ }
        close(lk->fd); /* releases the lock */
        lk->fd = -1;
    }
    return 0;
}

static int lock_tostring(lua_State *L) {
    fm_lock *lk = luaL_checkudata(L, 1, FM_LOCK_MT);
    lua_pushstring(L, lk->fd >= 0 ? "flowmusic.lock (held)" : "flowmusic.lock (released)");
    return 1;
}

int fm_private_files_open(lua_State *L) {
    static const luaL_Reg meta[] = {
        {"__gc", lock_unlock},
        {"__close", lock_unlock},
        {"__tostring", lock_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg methods_reg[] = {
        {"unlock", lock_unlock},
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"lock_file", lock_file},
        {"write_private", write_private},
        {"append_private", append_private},
        {"file_mode", file_mode},
        {"make_private_dir", make_private_dir},
        {NULL, NULL},
    };
    luaL_newmetatable(L, FM_LOCK_MT);
    fm_setfuncs(L, meta, 0);
    lua_createtable(L, 0, 1);
    fm_setfuncs(L, methods_reg, 0);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    fm_setfuncs(L, functions, 0);
    return 0;
}
