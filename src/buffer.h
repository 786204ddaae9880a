/* buffer.h - a growable byte buffer with a hard size cap, owned by C (never by Lua). */
#ifndef FLOWMUSIC_BUFFER_H
#define FLOWMUSIC_BUFFER_H

#include <stddef.h>

/* Internal to the module whatever the build system: only luaopen_flowmusic_core is exported. */
#pragma GCC visibility push(hidden)

typedef struct fm_buffer {
    char *data;
    size_t len;
    size_t cap; /* bytes allocated */
} fm_buffer;

/* Append n bytes; returns 0, or -1 when memory runs out (the buffer is left as it was). */
int fm_buffer_append(fm_buffer *b, const char *p, size_t n);
/* Make room for at least want bytes in total; same return convention. */
int fm_buffer_reserve(fm_buffer *b, size_t want);
/* Forget the content; keep small allocations for reuse, release big ones. */
void fm_buffer_clear(fm_buffer *b);
void fm_buffer_free(fm_buffer *b);

#pragma GCC visibility pop

#endif
