/* SPDX-License-Identifier: MIT */
/*
 * tests/test_ui.c: the dashboard as lib/ui.c serves it through the
 * metrics listener (a real event base, the test's own sockets): every
 * embedded file with its type, ETag and security headers, 304 on
 * If-None-Match, HEAD, 404 for an unknown file; and the sources under
 * ui/ checked for what the Content-Security-Policy would break or the
 * issue forbids: an external URL, an inline script or style, markup
 * built from strings.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>

#include "error.h"
#include "metrics.h"
#include "suites.h"
#include "testutil.h"
#include "ui.h"

#define DEADLINE_MS 5000
#define CSP                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; "                \
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "              \
    "form-action 'none'; frame-ancestors 'none'"

static struct aq_metrics *metrics;

static void
setup(void)
{
    struct aq_error err = {0};

    test_base_setup();
    metrics = aq_metrics_new(test_base, "127.0.0.1:0", NULL, NULL, NULL, &err);
    ck_assert_msg(metrics != NULL, "aq_metrics_new: %s", err.message);
    aq_metrics_set_health(metrics, AQ_HEALTH_READY);
}

static void
teardown(void)
{
    aq_metrics_free(metrics);
    test_base_teardown();
}

/* One exchange: the request sent with Connection: close, the reply read
 * to EOF from the loop. */
struct reply {
    int fd;
    struct event *ev;
    char *buf;
    size_t len, cap;
    bool is_closed;
    int status;
    char *head; /* status line and headers, in buf */
    char *body; /* in buf */
    size_t body_len;
};

static void
reply_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct reply *r = arg;
    ssize_t got;

    if (r->cap - r->len < 4096) {
        r->cap = r->cap * 2 + 65536;
        r->buf = realloc(r->buf, r->cap + 1);
    }
    got = recv(fd, r->buf + r->len, r->cap - r->len, MSG_DONTWAIT);
    if (got > 0) {
        r->len += (size_t)got;
        return;
    }
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    r->is_closed = true;
    event_del(r->ev);
}

/* Sends "METHOD PATH" with the extra header lines (each ending "\r\n")
 * and returns the parsed reply; fails the test on no whole reply. */
static void
exchange(const char *method, const char *path, const char *extra,
         struct reply *r)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    char req[1024];
    int n;
    char *sep;

    memset(r, 0, sizeof *r);
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(r->fd, 0);
    sin.sin_port = htons((uint16_t)aq_metrics_port(metrics));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(r->fd, (struct sockaddr *)&sin, sizeof sin) == 0,
                  "connect: %s", strerror(errno));
    n = snprintf(req, sizeof req,
                 "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n",
                 method, path, extra != NULL ? extra : "");
    ck_assert_int_eq(send(r->fd, req, (size_t)n, MSG_NOSIGNAL), n);
    r->ev = event_new(test_base, r->fd, EV_READ | EV_PERSIST, reply_read_cb, r);
    event_add(r->ev, NULL);
    ck_assert_msg(run_until(test_base, &r->is_closed, DEADLINE_MS),
                  "%s %s: no whole reply within %d ms", method, path,
                  DEADLINE_MS);
    ck_assert_msg(r->len > 0, "%s %s: closed without a reply", method, path);
    r->buf[r->len] = '\0';
    ck_assert_msg(sscanf(r->buf, "HTTP/1.1 %d", &r->status) == 1,
                  "%s %s: bad status line: %.40s", method, path, r->buf);
    sep = strstr(r->buf, "\r\n\r\n");
    ck_assert_msg(sep != NULL, "%s %s: no end of headers", method, path);
    sep[2] = '\0'; /* the head keeps its last "\r\n" */
    r->head = r->buf;
    r->body = sep + 4;
    r->body_len = r->len - (size_t)(r->body - r->buf);
}

static void
reply_free(struct reply *r)
{
    event_free(r->ev);
    close(r->fd);
    free(r->buf);
}

/* The value of header name, into out; false if it is missing. */
static bool
header(const struct reply *r, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);

    for (const char *p = strstr(r->head, "\r\n"); p != NULL && p[2] != '\0';
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2, *end = strstr(line, "\r\n");

        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;

            while (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)(end - v), v);
            return true;
        }
    }
    return false;
}

static void
assert_header(const struct reply *r, const char *name, const char *want)
{
    char got[512];

    ck_assert_msg(header(r, name, got, sizeof got), "no %s header in:\n%s",
                  name, r->head);
    ck_assert_msg(strcmp(got, want) == 0, "%s: \"%s\", expected \"%s\"", name,
                  got, want);
}

/* The headers every dashboard reply carries. */
static void
assert_security_headers(const struct reply *r)
{
    char v[512];

    assert_header(r, "Cache-Control", "no-cache");
    assert_header(r, "Content-Security-Policy", CSP);
    assert_header(r, "X-Content-Type-Options", "nosniff");
    assert_header(r, "Referrer-Policy", "no-referrer");
    /* No CORS, ever: another origin cannot read the page or call it. */
    ck_assert_msg(!header(r, "Access-Control-Allow-Origin", v, sizeof v),
                  "a CORS header: %s", v);
}

static const char *
type_of(const char *name)
{
    const char *dot = strrchr(name, '.');

    if (strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    return "image/svg+xml";
}

START_TEST(root_is_the_page_with_every_header)
{
    const struct aq_ui_file *f = aq_ui_find("index.html");
    struct reply r;

    ck_assert_ptr_nonnull(f);
    exchange("GET", "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    assert_header(&r, "Content-Type", "text/html; charset=utf-8");
    assert_header(&r, "ETag", f->etag);
    assert_security_headers(&r);
    ck_assert_uint_eq(r.body_len, f->len);
    ck_assert(memcmp(r.body, f->data, f->len) == 0);
    ck_assert_ptr_nonnull(strstr(r.body, "/ui/app.js"));
    reply_free(&r);
    /* A query string is the page too (the hash never reaches us). */
    exchange("GET", "/?x=1", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, f->len);
    reply_free(&r);
}
END_TEST

/* Each embedded file under /ui/, with its own type and ETag; the ETag is
 * a hash of the content: distinct files, distinct tags. */
START_TEST(every_file_is_served_with_its_type_and_etag)
{
    ck_assert_uint_ge(aq_ui_nfiles, 3);
    for (size_t i = 0; i < aq_ui_nfiles; i++) {
        const struct aq_ui_file *f = &aq_ui_files[i];
        char path[256];
        struct reply r;

        snprintf(path, sizeof path, "/ui/%s", f->name);
        exchange("GET", path, NULL, &r);
        ck_assert_msg(r.status == 200, "GET %s: %d", path, r.status);
        assert_header(&r, "Content-Type", type_of(f->name));
        assert_header(&r, "ETag", f->etag);
        assert_security_headers(&r);
        ck_assert_msg(r.body_len == f->len &&
                          memcmp(r.body, f->data, f->len) == 0,
                      "GET %s: body of %zu bytes, not the file's %zu", path,
                      r.body_len, f->len);
        reply_free(&r);
        ck_assert_msg(f->etag[0] == '"' && strlen(f->etag) == 18,
                      "%s: ETag %s is not a quoted 16-digit hash", f->name,
                      f->etag);
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(aq_ui_files[j].etag, f->etag) != 0,
                          "%s and %s share ETag %s", aq_ui_files[j].name,
                          f->name, f->etag);
    }
    ck_assert_ptr_nonnull(aq_ui_find("app.js"));
    ck_assert_ptr_nonnull(aq_ui_find("style.css"));
}
END_TEST

/* If-None-Match forms: the tag, a list holding it, its weak form, "*":
 * 304 with no body, the ETag and the cache headers again. */
static const struct {
    const char *before; /* then the file's tag, if has_tag */
    bool has_tag;
} matching[] = {
    {"", true},
    {"\"0000000000000000\", ", true},
    {"W/", true},
    {"*", false},
};

START_TEST(if_none_match_answers_304_without_a_body)
{
    const struct aq_ui_file *f = aq_ui_find("app.js");
    char line[256];
    struct reply r;

    snprintf(line, sizeof line, "If-None-Match: %s%s\r\n", matching[_i].before,
             matching[_i].has_tag ? f->etag : "");
    exchange("GET", "/ui/app.js", line, &r);
    ck_assert_msg(r.status == 304, "%s: %d", line, r.status);
    ck_assert_uint_eq(r.body_len, 0);
    assert_header(&r, "ETag", f->etag);
    assert_security_headers(&r);
    reply_free(&r);
}
END_TEST

START_TEST(another_etag_gets_the_file)
{
    const struct aq_ui_file *f = aq_ui_find("index.html");
    struct reply r;

    exchange("GET", "/", "If-None-Match: \"0123456789abcdef\"\r\n", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, f->len);
    reply_free(&r);
}
END_TEST

START_TEST(head_has_the_length_and_no_body)
{
    const struct aq_ui_file *f = aq_ui_find("style.css");
    char want[32];
    struct reply r;

    exchange("HEAD", "/ui/style.css", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    snprintf(want, sizeof want, "%zu", f->len);
    assert_header(&r, "Content-Length", want);
    assert_header(&r, "Content-Type", "text/css; charset=utf-8");
    assert_header(&r, "ETag", f->etag);
    assert_security_headers(&r);
    ck_assert_uint_eq(r.body_len, 0);
    reply_free(&r);
}
END_TEST

/* Nothing outside the table is served, however the name is spelled. */
static const char *const unknown[] = {
    "/ui/nope.js",   "/ui/",        "/ui",         "/ui/../lib/ui.c",
    "/ui/README.md", "/ui/app.js/", "/index.html", "/ui/%61pp.js",
};

START_TEST(an_unknown_file_is_404)
{
    struct reply r;

    exchange("GET", unknown[_i], NULL, &r);
    ck_assert_msg(r.status == 404, "GET %s: %d", unknown[_i], r.status);
    if (strncmp(unknown[_i], "/ui/", 4) == 0) /* else the listener's 404 */
        assert_security_headers(&r);
    reply_free(&r);
}
END_TEST

/* The page is only read: POST, PUT, DELETE get 405 naming GET and HEAD
 * (the listener refuses what it does not know with 501 or 405). */
static const char *const writes[] = {"POST", "PUT", "DELETE"};

START_TEST(another_method_is_refused)
{
    char allow[64];
    struct reply r;

    exchange(writes[_i], "/", "Content-Length: 0\r\n", &r);
    ck_assert_msg(r.status == 405 || r.status == 501, "%s /: %d", writes[_i],
                  r.status);
    if (r.status == 405) {
        ck_assert_msg(header(&r, "Allow", allow, sizeof allow),
                      "%s /: 405 without Allow", writes[_i]);
        ck_assert_str_eq(allow, "GET, HEAD");
    }
    reply_free(&r);
}
END_TEST

START_TEST(metrics_and_healthz_are_still_theirs)
{
    struct reply r;

    exchange("GET", "/healthz", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    exchange("GET", "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "asyncq_build_info"));
    reply_free(&r);
}
END_TEST

/* ---- the sources ---- */

static char *
slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *text;
    long n;

    ck_assert_msg(fp != NULL, "open %s: %s", path, strerror(errno));
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    rewind(fp);
    text = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(text, 1, (size_t)n, fp), (size_t)n);
    text[n] = '\0';
    fclose(fp);
    return text;
}

/* Blanks what lies between open and close (comments), in place. */
static void
blank_between(char *text, const char *open, const char *close)
{
    char *p = text, *end;

    while ((p = strstr(p, open)) != NULL) {
        end = strstr(p + strlen(open), close);
        end = end != NULL ? end + strlen(close) : p + strlen(p);
        memset(p, ' ', (size_t)(end - p));
        p = end;
    }
}

/* Blanks // comments: a "//" at a line's start or after a blank (so that
 * "https://..." in code stays, to be found). */
static void
blank_line_comments(char *text)
{
    for (char *p = text; (p = strstr(p, "//")) != NULL;) {
        if (p == text || isspace((unsigned char)p[-1])) {
            while (*p != '\0' && *p != '\n')
                *p++ = ' ';
        } else
            p += 2;
    }
}

/* What a check found: why, and where (a pointer into the text). */
struct violation {
    const char *why;
    const char *at;
};

/* Records needle as a violation (the first one found wins). */
static bool
absent(struct violation *v, const char *text, const char *needle,
       const char *why)
{
    const char *at = strcasestr(text, needle);

    if (at == NULL || v->why != NULL)
        return at == NULL;
    v->why = why;
    v->at = at;
    return false;
}

/* No URL of another origin: "http:" or "https:" outside comments, but
 * for the SVG namespace (a name, never fetched). */
static void
no_external_url(struct violation *v, char *text)
{
    static const char svg_ns[] = "http://www.w3.org/2000/svg";

    for (char *p = text; (p = strcasestr(p, svg_ns)) != NULL;)
        memset(p, ' ', sizeof svg_ns - 1);
    absent(v, text, "http:", "an external URL");
    absent(v, text, "https:", "an external URL");
    absent(v, text, "\"//", "a protocol-relative URL");
    absent(v, text, "'//", "a protocol-relative URL");
    absent(v, text, "url(//", "a protocol-relative URL");
}

static void
check_html(struct violation *v, char *text)
{
    blank_between(text, "<!--", "-->");
    no_external_url(v, text);
    absent(v, text, "<style", "an inline style sheet");
    absent(v, text, " style=", "an inline style");
    absent(v, text, "javascript:", "an inline script");
    /* Every <script> loads a file of ours: it has a src. */
    for (const char *p = text; (p = strcasestr(p, "<script")) != NULL; p++) {
        const char *end = strchr(p, '>');

        if (v->why == NULL &&
            (end == NULL ||
             memmem(p, (size_t)(end - p), " src=\"/ui/", 10) == NULL)) {
            v->why = "an inline script";
            v->at = p;
        }
    }
    /* No onclick=...: handlers are set from the modules. */
    for (const char *p = text; (p = strstr(p, " on")) != NULL; p++) {
        const char *q = p + 3;

        while (isalpha((unsigned char)*q))
            q++;
        if (v->why == NULL && q != p + 3 && *q == '=') {
            v->why = "an inline event handler";
            v->at = p;
        }
    }
}

static void
check_js(struct violation *v, char *text)
{
    blank_between(text, "/*", "*/");
    blank_line_comments(text);
    no_external_url(v, text);
    absent(v, text, "innerHTML", "markup from a string");
    absent(v, text, "outerHTML", "markup from a string");
    absent(v, text, "insertAdjacentHTML", "markup from a string");
    absent(v, text, "document.write", "markup from a string");
    absent(v, text, "eval(", "code from a string");
    absent(v, text, "new Function", "code from a string");
    absent(v, text, "\"style\"", "an inline style");
    absent(v, text, "import(", "a dynamic import");
    absent(v, text, "localStorage", "a token kept beyond the tab");
}

static void
check_css(struct violation *v, char *text)
{
    blank_between(text, "/*", "*/");
    no_external_url(v, text);
    absent(v, text, "@import", "another style sheet");
    for (const char *p = text; (p = strcasestr(p, "url(")) != NULL; p++) {
        if (v->why == NULL && strncmp(p, "url(data:", 9) != 0 &&
            strncmp(p, "url(\"data:", 10) != 0) {
            v->why = "a url() not data:";
            v->at = p;
        }
    }
}

/* Checks text (changed in place: comments blanked) as a file of kind
 * "html", "js" or "css". */
static struct violation
check(const char *kind, char *text)
{
    struct violation v = {NULL, NULL};

    if (strcmp(kind, "html") == 0 || strcmp(kind, "svg") == 0)
        check_html(&v, text);
    else if (strcmp(kind, "js") == 0)
        check_js(&v, text);
    else
        check_css(&v, text);
    return v;
}

/* Every page file under ui/ is embedded, and keeps to the rules above. */
START_TEST(sources_make_no_external_request_and_nothing_inline)
{
    DIR *dir = opendir(AQ_UI_SOURCE_DIR);
    struct dirent *de;
    size_t checked = 0;

    ck_assert_msg(dir != NULL, "opendir %s: %s", AQ_UI_SOURCE_DIR,
                  strerror(errno));
    while ((de = readdir(dir)) != NULL) {
        const char *dot = strrchr(de->d_name, '.');
        char path[1024];
        struct violation v;
        char *text;

        if (dot == NULL ||
            (strcmp(dot, ".html") != 0 && strcmp(dot, ".js") != 0 &&
             strcmp(dot, ".css") != 0 && strcmp(dot, ".svg") != 0))
            continue;
        ck_assert_msg(aq_ui_find(de->d_name) != NULL,
                      "ui/%s is not embedded: re-run cmake", de->d_name);
        snprintf(path, sizeof path, "%s/%s", AQ_UI_SOURCE_DIR, de->d_name);
        text = slurp(path);
        v = check(dot + 1, text);
        ck_assert_msg(v.why == NULL, "ui/%s: %s at: %.60s", de->d_name, v.why,
                      v.at);
        free(text);
        checked++;
    }
    closedir(dir);
    ck_assert_uint_eq(checked, aq_ui_nfiles);
}
END_TEST

/* The checks above catch what they are meant to: a sample of each. */
static const struct {
    const char *kind, *text;
} bad[] = {
    {"js", "fetch(\"https://cdn.example/x\");"},
    {"js", "a = 1; // fine\nimport x from 'http://cdn/x.js';"},
    {"js", "el.innerHTML = data;"},
    {"js", "el.setAttribute(\"style\", s);"},
    {"html", "<script>alert(1)</script>"},
    {"html", "<script type=\"module\" src=\"/ui/a.js\"></script><style>"},
    {"html", "<button onclick=\"x()\">"},
    {"html", "<img src=\"//cdn.example/x.png\">"},
    {"css", "body { background: url(https://x/y.png) }"},
    {"css", "@import \"a.css\";"},
};

START_TEST(the_source_checks_catch_a_violation)
{
    char *text = strdup(bad[_i].text);
    struct violation v = check(bad[_i].kind, text);

    ck_assert_msg(v.why != NULL, "%s sample passed: %s", bad[_i].kind,
                  bad[_i].text);
    free(text);
}
END_TEST

/* And comments may name URLs: the checks skip them. */
START_TEST(the_source_checks_skip_comments)
{
    char js[] = "// see https://example.org\n/* http://x */ a = \"b\";";
    char css[] = "/* https://example.org */ a { color: red }";
    char html[] = "<!-- https://example.org --><p>x</p>";

    ck_assert_ptr_null(check("js", js).why);
    ck_assert_ptr_null(check("css", css).why);
    ck_assert_ptr_null(check("html", html).why);
}
END_TEST

Suite *
ui_suite(void)
{
    Suite *s = suite_create("ui");
    TCase *tc = test_tcase_new("serve");
    TCase *src = test_tcase_new("sources");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, root_is_the_page_with_every_header);
    tcase_add_test(tc, every_file_is_served_with_its_type_and_etag);
    tcase_add_loop_test(tc, if_none_match_answers_304_without_a_body, 0,
                        sizeof matching / sizeof matching[0]);
    tcase_add_test(tc, another_etag_gets_the_file);
    tcase_add_test(tc, head_has_the_length_and_no_body);
    tcase_add_loop_test(tc, an_unknown_file_is_404, 0,
                        sizeof unknown / sizeof unknown[0]);
    tcase_add_loop_test(tc, another_method_is_refused, 0,
                        sizeof writes / sizeof writes[0]);
    tcase_add_test(tc, metrics_and_healthz_are_still_theirs);
    suite_add_tcase(s, tc);
    tcase_add_test(src, sources_make_no_external_request_and_nothing_inline);
    tcase_add_loop_test(src, the_source_checks_catch_a_violation, 0,
                        sizeof bad / sizeof bad[0]);
    tcase_add_test(src, the_source_checks_skip_comments);
    suite_add_tcase(s, src);
    return s;
}
