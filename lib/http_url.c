/* SPDX-License-Identifier: MIT */
/*
 * lib/http_url.c: the URLs the http client accepts (http:// and https://,
 * no credentials), split into the parts it connects with, and the checks
 * config and methods run on a job's URL before it is queued.
 */
#include "http.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

#include "error.h"
#include "http-internal.h"
#include "netmatch.h"
#include "xmalloc.h"

/* The parts of url the client needs (new strings, the caller's). 0, or -1
 * with why (static text). */
int
http_url_split(const char *url, char **scheme, char **hostname, int *port,
               char **target, const char **why)
{
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
    const char *s, *host, *path, *query;
    size_t hlen;

    *why = NULL;
    if (u == NULL) {
        *why = "not a valid URL";
        return -1;
    }
    s = evhttp_uri_get_scheme(u);
    host = evhttp_uri_get_host(u);
    if (s == NULL ||
        (strcasecmp(s, "http") != 0 && strcasecmp(s, "https") != 0))
        *why = "expected an http:// or https:// URL";
    else if (strcasecmp(s, "https") == 0 && !aq_http_has_tls())
        *why = "https is not available in this build (built without OpenSSL)";
    else if (host == NULL || host[0] == '\0')
        *why = "no host";
    else if (evhttp_uri_get_userinfo(u) != NULL)
        *why = "credentials in the URL are not supported (send an "
               "Authorization header)";
    else if (evhttp_uri_get_port(u) == 0)
        *why = "bad port";
    if (*why != NULL) {
        evhttp_uri_free(u);
        return -1;
    }
    *scheme = xstrdup(strcasecmp(s, "https") == 0 ? "https" : "http");
    hlen = strlen(host);
    if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']')
        *hostname = xasprintf("%.*s", (int)(hlen - 2), host + 1);
    else
        *hostname = xstrdup(host);
    *port = evhttp_uri_get_port(u);
    if (*port < 0)
        *port = strcmp(*scheme, "https") == 0 ? 443 : 80;
    path = evhttp_uri_get_path(u);
    query = evhttp_uri_get_query(u);
    if (path == NULL || path[0] == '\0')
        path = "/";
    *target = xasprintf("%s%s%s", path, query != NULL ? "?" : "",
                        query != NULL ? query : "");
    evhttp_uri_free(u);
    return 0;
}

int
aq_http_check_url(const char *url, const char *field, struct aq_error *err)
{
    char *scheme, *hostname, *target;
    const char *why;
    int port;

    if (http_url_split(url, &scheme, &hostname, &port, &target, &why) < 0) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "%s: %s: \"%.200s\"", field,
                     why, url);
        return -1;
    }
    free(scheme);
    free(hostname);
    free(target);
    return 0;
}

int
aq_http_check_target(const char *url, const struct aq_netmatch *policy,
                     const char *field, struct aq_error *err)
{
    char *scheme, *hostname, *target;
    const char *bad;
    char why[160];
    int port, rc = 0;

    if (http_url_split(url, &scheme, &hostname, &port, &target, &bad) < 0)
        return 0; /* aq_http_check_url says what is wrong */
    if (!aq_netmatch_may_allow(policy, hostname, port, why, sizeof why)) {
        aq_error_set(err, AQ_ERR_NOT_ALLOWED,
                     "%s: %.200s port %d is not allowed (%s)", field, hostname,
                     port, why);
        rc = -1;
    }
    free(scheme);
    free(hostname);
    free(target);
    return rc;
}

bool
aq_http_has_tls(void)
{
#ifdef AQ_HAVE_TLS
    return true;
#else
    return false;
#endif
}
