/* SPDX-License-Identifier: MIT */
/*
 * tests/httpd.h: an HTTP(S) server for tests, on 127.0.0.1:0, with its own
 * event_base (evhttp) in a thread of its own, so that a test may block
 * while the server answers. Endpoints (path and query):
 *   /ok                  200 "hello", header X-Test: yes
 *   /status/N            status N, body "status N"
 *   /slow?ms=N           200 "slow" after N ms (a timer, nothing sleeps);
 *                        a client closing meanwhile closes the connection
 *   /big?n=N             200, N bytes of 'x'
 *   /redirect/N          302 Location: /redirect/N-1; /redirect/0: 200 "done"
 *   /redirect-abs/N      the same with an absolute Location
 *   /see-other           303 Location: /echo
 *   /to?url=U            302 Location: U (U percent-encoded)
 *   /echo                200 application/json {"method","uri","headers",
 *                        "body"} (a repeated header joined with ", ")
 *   /flaky?key=K&fail=N  500 for the first N requests with key K, then 200;
 *                        &status=S answers S instead of 500, and
 *                        &retry_after=V adds the header Retry-After: V
 *   /reset               a chunked 200 cut off after "partial": the
 *                        connection closes without the last chunk
 *   anything else        404
 * Every function fails the test (ck_abort_msg) on error.
 */
#ifndef AQ_HTTPD_H
#define AQ_HTTPD_H

#include <stdbool.h>

struct httpd;

/* Starts a server on 127.0.0.1:0 in a thread with its own event_base.
 * tls: https, with a certificate signed by a CA made here at start
 * (EC P-256, valid from an hour ago to a day from now), SubjectAltName
 * DNS:localhost and IP:127.0.0.1; fails the test when built without TLS
 * (AQ_HAVE_TLS). The caller's; free with httpd_stop. */
struct httpd *httpd_start(bool tls);
int httpd_port(const struct httpd *s);
/* tls: the path of the CA certificate (PEM), for SSL_CERT_FILE; a file in
 * a mkdtemp dir that httpd_stop removes. NULL for plain http. */
const char *httpd_ca_file(const struct httpd *s);
int httpd_max_open(struct httpd *s); /* most client connections open at once */
int httpd_open(struct httpd *s);     /* client connections open now */
int httpd_accepted(struct httpd *s); /* connections accepted so far */
int httpd_requests(struct httpd *s); /* requests received so far */
/* Stops the thread, closes every connection and frees s. NULL is fine. */
void httpd_stop(struct httpd *s);

#endif
