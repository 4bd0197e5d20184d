/* SPDX-License-Identifier: MIT */
/*
 * lib/ui.c: serves the embedded dashboard files (lib/ui.h) over evhttp.
 * The files change only with the binary, so each carries a content hash
 * as its ETag and "no-cache": a browser revalidates on every load and
 * gets a bodiless 304 while the daemon is the same build.
 */
#include "ui.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

/* docs/operations.md explains each; the page needs nothing else: its
 * scripts and styles are files of its own origin, its only requests
 * POST /rpc on the same origin. */
#define UI_CSP                                                                 \
    "default-src 'none'; script-src 'self'; style-src 'self'; "                \
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "              \
    "form-action 'none'; frame-ancestors 'none'"

const struct aq_ui_file *
aq_ui_find(const char *name)
{
    for (size_t i = 0; i < aq_ui_nfiles; i++) {
        if (strcmp(aq_ui_files[i].name, name) == 0)
            return &aq_ui_files[i];
    }
    return NULL;
}

/* Whether the If-None-Match list names etag (or is "*"); a weak W/ form
 * matches too (RFC 9110 13.1.2: weak comparison). */
static bool
etag_matches(const char *list, const char *etag)
{
    size_t n = strlen(etag);

    for (const char *p = list; *p != '\0';) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, etag, n) == 0 &&
            (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
            return true;
        while (*p != '\0' && *p != ',')
            p++;
    }
    return false;
}

static void
add_common_headers(struct evkeyvalq *h)
{
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "Content-Security-Policy", UI_CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
}

/* An error as plain text, with the headers kept (evhttp_send_error
 * would drop Allow and the policy). */
static void
send_status(struct evhttp_request *req, int code, const char *reason)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();

    add_common_headers(h);
    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    evbuffer_add_printf(out, "%d %s\n", code, reason);
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static void
send_file(struct evhttp_request *req, const struct aq_ui_file *f)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(req),
                                         "If-None-Match");
    struct evbuffer *out;
    char len[32];

    add_common_headers(h);
    evhttp_add_header(h, "ETag", f->etag);
    if (inm != NULL && etag_matches(inm, f->etag)) {
        evhttp_send_reply(req, 304, "Not Modified", NULL);
        return;
    }
    evhttp_add_header(h, "Content-Type", f->type);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* evhttp sends no body for HEAD, nor a length: say it here. */
        snprintf(len, sizeof len, "%zu", f->len);
        evhttp_add_header(h, "Content-Length", len);
        evhttp_send_reply(req, 200, "OK", NULL);
        return;
    }
    out = evbuffer_new();
    /* The bytes are static: referenced, not copied. */
    evbuffer_add_reference(out, f->data, f->len, NULL, NULL);
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

bool
aq_ui_serve(struct evhttp_request *req)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct aq_ui_file *f;

    if (path == NULL)
        return false;
    if (strcmp(path, "/") == 0)
        f = aq_ui_find("index.html");
    else if (strncmp(path, "/ui/", 4) == 0)
        f = aq_ui_find(path + 4);
    else
        return false;
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "GET, HEAD");
        send_status(req, 405, "Method Not Allowed");
    } else if (f == NULL)
        send_status(req, 404, "Not Found");
    else
        send_file(req, f);
    return true;
}
