/* raw_libcurl.c - the peer flowmusic is measured against: N sequential GETs of one URL on one
 * reused easy handle (keep-alive), body kept in memory, nothing else.
 * usage: raw_libcurl URL TOKEN N [gzip]  -> prints "<seconds> <bytes of the last body>"
 * With "gzip" it offers compression, as flowmusic does for usage documents. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct body { char *data; size_t len, cap; };

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    struct body *b = ud;
    size_t len = size * n;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    return len;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "gzip") == 0)) {
        fprintf(stderr, "usage: %s URL TOKEN N [gzip]\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[3]);
    char auth[512];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[2]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *e = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, "Accept: application/json");
    struct body b = {0};
    curl_easy_setopt(e, CURLOPT_URL, argv[1]);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    if (argc == 5) curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    double t0 = now();
    for (int i = 0; i < n; i++) {
        b.len = 0;
        CURLcode rc = curl_easy_perform(e);
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK || status != 200) {
            fprintf(stderr, "request %d failed: %s, status %ld\n", i, curl_easy_strerror(rc), status);
            return 1;
        }
    }
    printf("%.6f %zu\n", now() - t0, b.len);
    free(b.data);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    curl_global_cleanup();
    return 0;
}
