/* buffer.c - growable byte buffer used for response bodies and header blocks. */
#include "buffer.h"

#include <stdlib.h>
#include <string.h>

/* An idle client keeps at most this much per buffer, so one 20 MB answer is not held forever. */
#define FM_BUFFER_KEEP (256u * 1024u)

int fm_buffer_reserve(fm_buffer *b, size_t want) {
    size_t cap;
    char *p;
    if (want <= b->cap) return 0;
    cap = b->cap ? b->cap : 1024;
    while (cap < want) {
        if (cap > (size_t)-1 / 2) { cap = want; break; }
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int fm_buffer_append(fm_buffer *b, const char *p, size_t n) {
    if (n > (size_t)-1 - b->len) return -1;
    if (fm_buffer_reserve(b, b->len + n) != 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void fm_buffer_clear(fm_buffer *b) {
    b->len = 0;
    if (b->cap > FM_BUFFER_KEEP) fm_buffer_free(b);
}

void fm_buffer_free(fm_buffer *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
