/* codes.c - the libcurl result codes the Lua layer interprets, exported by name
 * (core.CURLE.OPERATION_TIMEDOUT == 28), so no Lua file keys on bare numbers. */
#include <curl/curl.h>

#include "compat.h"
#include "flowmusic.h"

#define FM_CODES(X) \
    X(OK) X(UNSUPPORTED_PROTOCOL) X(URL_MALFORMAT) X(COULDNT_RESOLVE_PROXY) \
    X(COULDNT_RESOLVE_HOST) X(COULDNT_CONNECT) X(WEIRD_SERVER_REPLY) X(HTTP2) \
    X(PARTIAL_FILE) X(OPERATION_TIMEDOUT) X(SSL_CONNECT_ERROR) X(TOO_MANY_REDIRECTS) \
    X(GOT_NOTHING) X(SEND_ERROR) X(RECV_ERROR) X(SSL_CERTPROBLEM) X(PEER_FAILED_VERIFICATION) \
    X(BAD_CONTENT_ENCODING) X(SSL_CACERT_BADFILE) X(SSL_ISSUER_ERROR) X(SSL_PINNEDPUBKEYNOTMATCH) \
    X(SSL_INVALIDCERTSTATUS) X(HTTP2_STREAM) X(WRITE_ERROR) X(OUT_OF_MEMORY) X(ABORTED_BY_CALLBACK) \
    X(PROXY)

int fm_codes_open(lua_State *L) {
    lua_newtable(L);
#define FM_PUSH_CODE(name) lua_pushinteger(L, CURLE_##name); lua_setfield(L, -2, #name);
    FM_CODES(FM_PUSH_CODE)
#undef FM_PUSH_CODE
    lua_setfield(L, -2, "CURLE");
    return 0;
}
