/* SPDX-License-Identifier: MIT */
/*
 * tests/test_netmatch.c: the contract of lib/netmatch.h, the http
 * allow/deny policy, and of queues.*.http.allow / http.deny in the config.
 * Targets are tables: lists, the URL's host, the address it resolved to,
 * the port, and the verdict with the rule named when refused.
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <check.h>

#include "config.h"
#include "error.h"
#include "netmatch.h"
#include "suites.h"
#include "testutil.h"

#define LIST_MAX 4

/* addr (a literal) and port as a socket address. */
static struct sockaddr_storage
sockaddr_of(const char *addr, int port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

    if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
    } else {
        ck_assert_msg(inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1,
                      "not an address: %s", addr);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
    }
    return ss;
}

static size_t
list_len(const char *const *v)
{
    size_t n = 0;

    while (n < LIST_MAX && v[n] != NULL)
        n++;
    return n;
}

static struct aq_netmatch *
policy(const char *const *allow, const char *const *deny,
       const struct sockaddr_storage *own, size_t nown)
{
    return aq_netmatch_new((char *const *)allow, list_len(allow),
                           (char *const *)deny, list_len(deny), own, nown);
}

static const char *const allow_all[LIST_MAX] = {"*"};
static const char *const deny_none[LIST_MAX] = {NULL};

/* ---- entries ---- */

static const char *const good_entries[] = {
    "*",         "example.com", "*.example.com", "localhost",
    "a-b_c.d9",  "EXAMPLE.Com", "10.0.0.0/8",    "10.1.2.3/8",
    "0.0.0.0/0", "192.0.2.7",   "192.0.2.7/32",  "::1",
    "::/0",      "fe80::/10",   "2001:db8::/32", "::ffff:10.0.0.0/104",
};

static const char *const bad_entries[] = {
    "",
    "*.",
    "**",
    "*.*.example.com",
    "a*.example.com",
    ".example.com",
    "example..com",
    "example.com.",
    "ex ample.com",
    "http://example.com",
    "example.com:80",
    "example.com/8",
    "10.0.0.0/33",
    "10.0.0.0/",
    "10.0.0.0/-1",
    "10.0.0.0/+8",
    "10.0.0.0/8/8",
    "::/129",
    "10.0.0/8",
    "10.0.0",
    "a.123",
    "/8",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
};

START_TEST(entries_valid_are_accepted)
{
    ck_assert_msg(aq_netmatch_entry_ok(good_entries[_i]), "refused: \"%s\"",
                  good_entries[_i]);
}
END_TEST

START_TEST(entries_invalid_are_refused)
{
    ck_assert_msg(!aq_netmatch_entry_ok(bad_entries[_i]), "accepted: \"%s\"",
                  bad_entries[_i]);
}
END_TEST

/* ---- targets ---- */

struct target_case {
    const char *allow[LIST_MAX];
    const char *deny[LIST_MAX];
    const char *host; /* the URL's host */
    const char *addr; /* what it resolved to (port 80) */
    bool ok;
    const char *why; /* a part of the reason when refused */
};

#define ALL                                                                    \
    {                                                                          \
        "*"                                                                    \
    }
#define NONE                                                                   \
    {                                                                          \
        NULL                                                                   \
    }
#define LINK "link-local"
#define NOT_ALLOWED "not in http.allow"

static const struct target_case target_cases[] = {
    /* defaults: anything but link-local */
    {ALL, NONE, "example.com", "93.184.216.34", true, NULL},
    {ALL, NONE, "127.0.0.1", "127.0.0.1", true, NULL},
    {ALL, NONE, "169.254.169.254", "169.254.169.254", false, LINK},
    {ALL, NONE, "metadata.example", "169.254.169.254", false, LINK},
    {ALL, NONE, "169.254.0.0", "169.254.0.0", false, LINK},
    {ALL, NONE, "169.254.255.255", "169.254.255.255", false, LINK},
    {ALL, NONE, "169.253.255.255", "169.253.255.255", true, NULL},
    {ALL, NONE, "169.255.0.0", "169.255.0.0", true, NULL},
    {ALL, NONE, "fe80::1", "fe80::1", false, LINK},
    {ALL, NONE, "febf:ffff::1", "febf:ffff::1", false, LINK},
    {ALL, NONE, "fec0::1", "fec0::1", true, NULL},
    {ALL, NONE, "x", "::ffff:169.254.169.254", false, LINK},
    /* an explicit allow does not lift the built-in deny */
    {{"169.254.0.0/16"}, NONE, "x", "169.254.169.254", false, LINK},
    /* host-name patterns match names, case and a final dot aside */
    {{"*.example.com"}, NONE, "a.example.com", "192.0.2.1", true, NULL},
    {{"*.example.com"}, NONE, "a.b.example.com", "192.0.2.1", true, NULL},
    {{"*.example.com"}, NONE, "A.Example.COM.", "192.0.2.1", true, NULL},
    {{"*.example.com"}, NONE, "example.com", "192.0.2.1", false, NOT_ALLOWED},
    {{"*.example.com"}, NONE, "xexample.com", "192.0.2.1", false, NOT_ALLOWED},
    {{"example.com"}, NONE, "example.com", "192.0.2.1", true, NULL},
    {{"example.com"}, NONE, "w.example.com", "192.0.2.1", false, NOT_ALLOWED},
    /* a name pattern never matches an address literal */
    {{"localhost"}, NONE, "127.0.0.1", "127.0.0.1", false, NOT_ALLOWED},
    {{"localhost"}, NONE, "localhost", "127.0.0.1", true, NULL},
    /* CIDRs match the resolved address */
    {{"10.0.0.0/8"}, NONE, "db.internal", "10.1.2.3", true, NULL},
    {{"10.0.0.0/8"}, NONE, "db.internal", "11.0.0.1", false, NOT_ALLOWED},
    {{"10.0.0.0/8"}, NONE, "db.internal", "::ffff:10.9.9.9", true, NULL},
    {{"2001:db8::/32"}, NONE, "v6.example", "2001:db8:1::1", true, NULL},
    {{"2001:db8::/32"}, NONE, "v6.example", "2001:db9::1", false, NOT_ALLOWED},
    /* deny wins over allow */
    {ALL, {"10.0.0.0/8"}, "x", "10.255.255.255", false, "deny[0] \"10.0."},
    {ALL, {"10.0.0.0/8"}, "x", "11.0.0.0", true, NULL},
    {ALL, {"192.0.2.9", "*.in"}, "a.in", "192.0.2.1", false, "deny[1]"},
    {{"*.ex.com"}, {"a.ex.com"}, "a.ex.com", "192.0.2.1", false, "deny[0]"},
    {{"10.0.0.0/8"}, {"10.1.0.0/16"}, "x", "10.1.2.3", false, "http.deny[0]"},
    {ALL, {"*"}, "example.com", "192.0.2.1", false, "http.deny[0] \"*\""},
    /* prefixes not on a byte boundary; host bits are dropped */
    {ALL, {"172.16.0.0/12"}, "x", "172.31.255.255", false, "http.deny"},
    {ALL, {"172.16.0.0/12"}, "x", "172.32.0.0", true, NULL},
    {ALL, {"172.16.0.0/12"}, "x", "172.15.255.255", true, NULL},
    {ALL, {"10.1.2.3/8"}, "x", "10.200.0.1", false, "http.deny"},
    {ALL, {"192.0.2.7"}, "x", "192.0.2.7", false, "http.deny"},
    {ALL, {"192.0.2.7"}, "x", "192.0.2.8", true, NULL},
    /* families: IPv4 networks match IPv4 and IPv4-mapped addresses */
    {ALL, {"0.0.0.0/0"}, "x", "203.0.113.5", false, "http.deny"},
    {ALL, {"0.0.0.0/0"}, "x", "::ffff:203.0.113.5", false, "http.deny"},
    {ALL, {"0.0.0.0/0"}, "x", "2001:db8::1", true, NULL},
    {ALL, {"::/0"}, "x", "2001:db8::1", false, "http.deny"},
    {ALL, {"::/0"}, "x", "203.0.113.5", true, NULL},
    {ALL, {"::ffff:10.0.0.0/104"}, "x", "10.3.3.3", false, "http.deny"},
    {ALL, {"::1"}, "x", "::1", false, "http.deny"},
    /* 0.0.0.0 and :: reach loopback, and are judged so */
    {ALL, {"127.0.0.0/8"}, "0.0.0.0", "0.0.0.0", false, "http.deny"},
    {ALL, {"::1"}, "x", "::", false, "http.deny"},
    {{"127.0.0.1"}, NONE, "x", "0.0.0.0", true, NULL},
    {ALL, {"fd00::/8"}, "x", "fd12::1", false, "http.deny"},
};

/* Case i's verdict on what: ok as want_ok, and when refused, why naming
 * want_why. */
static void
assert_verdict(int i, const char *what, bool ok, const char *why, bool want_ok,
               const char *want_why)
{
    ck_assert_msg(ok == want_ok, "case %d: %s: %s%s", i, what,
                  ok ? "allowed" : "refused: ", why);
    if (!ok)
        ck_assert_msg(strstr(why, want_why) != NULL,
                      "case %d: the reason \"%s\" does not say \"%s\"", i, why,
                      want_why);
}

START_TEST(targets_are_judged_by_allow_deny_and_link_local)
{
    const struct target_case *t = &target_cases[_i];
    struct aq_netmatch *m = policy(t->allow, t->deny, NULL, 0);
    struct sockaddr_storage ss = sockaddr_of(t->addr, 80);
    char why[200] = "";
    bool ok =
        aq_netmatch_allows(m, t->host, (struct sockaddr *)&ss, why, sizeof why);

    assert_verdict(_i, t->addr, ok, why, t->ok, t->why);
    aq_netmatch_free(m);
}
END_TEST

/* ---- before resolution ---- */

struct precheck_case {
    const char *allow[LIST_MAX];
    const char *deny[LIST_MAX];
    const char *host;
    bool ok;
    const char *why;
};

static const struct precheck_case precheck_cases[] = {
    {ALL, NONE, "example.com", true, NULL},
    {ALL, NONE, "127.0.0.1", true, NULL},
    {ALL, NONE, "169.254.169.254", false, LINK},
    {ALL, NONE, "fe80::1", false, LINK},
    {ALL, {"10.0.0.0/8"}, "10.0.0.1", false, "http.deny[0]"},
    /* a name: refused only when no address could change the answer */
    {ALL, {"10.0.0.0/8"}, "db.internal", true, NULL},
    {ALL, {"*.internal"}, "db.internal", false, "http.deny[0]"},
    {{"*.example.com"}, NONE, "other.org", false, NOT_ALLOWED},
    {{"*.example.com"}, NONE, "api.example.com", true, NULL},
    {{"*.example.com", "10.0.0.0/8"}, NONE, "other.org", true, NULL},
    {{"localhost"}, NONE, "127.0.0.1", false, NOT_ALLOWED},
};

START_TEST(prechecks_refuse_what_needs_no_dns)
{
    const struct precheck_case *t = &precheck_cases[_i];
    struct aq_netmatch *m = policy(t->allow, t->deny, NULL, 0);
    char why[200] = "";
    bool ok = aq_netmatch_may_allow(m, t->host, 80, why, sizeof why);

    assert_verdict(_i, t->host, ok, why, t->ok, t->why);
    aq_netmatch_free(m);
}
END_TEST

/* ---- the daemon's own listeners ---- */

struct own_case {
    const char *own; /* the listener's address */
    int own_port;
    const char *addr; /* the target's */
    int port;
    bool ok;
};

static const struct own_case own_cases[] = {
    {"127.0.0.1", 7879, "127.0.0.1", 7879, false},
    {"127.0.0.1", 7879, "127.0.0.1", 7880, true},
    {"127.0.0.1", 7879, "127.0.0.2", 7879, true},
    {"127.0.0.1", 7879, "0.0.0.0", 7879, false}, /* 0.0.0.0 is loopback */
    {"127.0.0.1", 7879, "::ffff:127.0.0.1", 7879, false},
    {"::1", 9000, "::1", 9000, false},
    {"::1", 9000, "::", 9000, false},
    {"::1", 9000, "127.0.0.1", 9000, true},
    /* 0.0.0.0: every local IPv4 address on the port */
    {"0.0.0.0", 7878, "127.0.0.5", 7878, false},
    {"0.0.0.0", 7878, "0.0.0.0", 7878, false},
    {"0.0.0.0", 7878, "192.0.2.1", 7878, true},
    {"0.0.0.0", 7878, "::1", 7878, true},
    {"0.0.0.0", 7878, "127.0.0.1", 7877, true},
    /* :: also every local IPv4 address (dual-stack) */
    {"::", 7878, "::1", 7878, false},
    {"::", 7878, "127.0.0.1", 7878, false},
    {"::", 7878, "2001:db8::1", 7878, true},
};

START_TEST(own_listeners_are_refused_on_their_port)
{
    const struct own_case *t = &own_cases[_i];
    struct sockaddr_storage own = sockaddr_of(t->own, t->own_port);
    struct sockaddr_storage ss = sockaddr_of(t->addr, t->port);
    struct aq_netmatch *m = policy(allow_all, deny_none, &own, 1);
    char why[200] = "";
    bool ok =
        aq_netmatch_allows(m, t->addr, (struct sockaddr *)&ss, why, sizeof why);

    ck_assert_msg(ok == t->ok, "case %d: listener %s:%d, target %s:%d: %s%s",
                  _i, t->own, t->own_port, t->addr, t->port,
                  ok ? "allowed" : "refused: ", why);
    if (!ok)
        ck_assert_str_eq(why, "the daemon's own listener");
    aq_netmatch_free(m);
}
END_TEST

/* A listener on 0.0.0.0 covers this machine's interface addresses too,
 * not only loopback. */
START_TEST(wildcard_listener_covers_every_interface_address)
{
    struct sockaddr_storage own = sockaddr_of("0.0.0.0", 7878);
    struct sockaddr_storage ss6 = sockaddr_of("::", 7878);
    struct aq_netmatch *m4 = policy(allow_all, deny_none, &own, 1);
    struct aq_netmatch *m6 = policy(allow_all, deny_none, &ss6, 1);
    struct ifaddrs *ifs, *i;
    char why[200];
    int checked = 0;

    ck_assert_int_eq(getifaddrs(&ifs), 0);
    for (i = ifs; i != NULL; i = i->ifa_next) {
        struct sockaddr_storage ss = {0};
        int fam = i->ifa_addr != NULL ? i->ifa_addr->sa_family : 0;

        if (fam != AF_INET && fam != AF_INET6)
            continue;
        memcpy(&ss, i->ifa_addr,
               fam == AF_INET ? sizeof(struct sockaddr_in)
                              : sizeof(struct sockaddr_in6));
        if (fam == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_port = htons(7878);
        else
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons(7878);
        if (fam == AF_INET)
            ck_assert(!aq_netmatch_allows(m4, "h", (struct sockaddr *)&ss, why,
                                          sizeof why));
        /* :: takes both families. */
        ck_assert(!aq_netmatch_allows(m6, "h", (struct sockaddr *)&ss, why,
                                      sizeof why));
        checked++;
    }
    freeifaddrs(ifs);
    ck_assert_int_gt(checked, 0);
    aq_netmatch_free(m4);
    aq_netmatch_free(m6);
}
END_TEST

START_TEST(addresses_that_are_not_ip_are_refused)
{
    struct aq_netmatch *m = policy(allow_all, deny_none, NULL, 0);
    struct sockaddr_storage ss = {.ss_family = AF_UNIX};
    char why[200];

    ck_assert(
        !aq_netmatch_allows(m, "h", (struct sockaddr *)&ss, why, sizeof why));
    aq_netmatch_free(m);
    aq_netmatch_free(NULL);
}
END_TEST

/* ---- the config ---- */

static struct aq_config *
parse(const char *text, struct aq_error *err)
{
    return aq_config_parse(text, strlen(text), err);
}

START_TEST(config_http_allow_and_deny_default_and_parse)
{
    struct aq_error err = {0};
    struct aq_config *cfg = parse("{}", &err);
    const struct aq_queue_config *qc;
    struct aq_queue_config copy;

    ck_assert_ptr_nonnull(cfg);
    qc = aq_config_queue(cfg, "default");
    ck_assert_uint_eq(qc->http.nallow, 1);
    ck_assert_str_eq(qc->http.allow[0], "*");
    ck_assert_uint_eq(qc->http.ndeny, 0);
    aq_config_free(cfg);

    cfg = parse("{\"queues\":{\"web\":{\"kind\":\"http\",\"http\":{"
                "\"allow\":[\"*.example.com\",\"10.0.0.0/8\"],"
                "\"deny\":[\"a.example.com\",\"fd00::/8\",\"192.0.2.7\"]}}}}",
                &err);
    ck_assert_msg(cfg != NULL, "%s", err.message);
    qc = aq_config_queue(cfg, "web");
    ck_assert_uint_eq(qc->http.nallow, 2);
    ck_assert_str_eq(qc->http.allow[1], "10.0.0.0/8");
    ck_assert_uint_eq(qc->http.ndeny, 3);
    ck_assert_str_eq(qc->http.deny[2], "192.0.2.7");
    /* A copy owns its lists (the broker keeps one per queue). */
    aq_queue_config_copy(&copy, qc);
    aq_config_free(cfg);
    ck_assert_str_eq(copy.http.allow[0], "*.example.com");
    ck_assert_str_eq(copy.http.deny[1], "fd00::/8");
    aq_queue_config_clear(&copy);

    /* Empty lists: nothing is allowed; nothing more is denied. */
    cfg = parse("{\"queues\":{\"web\":{\"http\":{\"allow\":[],\"deny\":[]}}}}",
                &err);
    ck_assert_msg(cfg != NULL, "%s", err.message);
    ck_assert_uint_eq(aq_config_queue(cfg, "web")->http.nallow, 0);
    aq_config_free(cfg);
}
END_TEST

struct config_error_case {
    const char *text;
    const char *message;
};

static const struct config_error_case config_errors[] = {
    {"{\"queues\":{\"web\":{\"http\":{\"deny\":[\"a.b\",\"10.0.0.0/8\","
     "\"10.0.0.0/99\"]}}}}",
     "queues.web.http.deny[2]: expected a host name pattern or CIDR"},
    {"{\"queues\":{\"web\":{\"http\":{\"allow\":[\"http://x\"]}}}}",
     "queues.web.http.allow[0]: expected a host name pattern or CIDR"},
    {"{\"queues\":{\"web\":{\"http\":{\"allow\":[1]}}}}",
     "queues.web.http.allow[0]: expected a host name pattern or CIDR"},
    {"{\"queues\":{\"web\":{\"http\":{\"allow\":\"*\"}}}}",
     "queues.web.http.allow: expected array of host name patterns and "
     "CIDRs"},
    {"{\"queues\":{\"web\":{\"http\":{\"deny\":null}}}}",
     "queues.web.http.deny: expected array of host name patterns and CIDRs"},
};

START_TEST(config_http_allow_and_deny_errors_name_the_entry)
{
    struct aq_error err = {0};
    struct aq_config *cfg = parse(config_errors[_i].text, &err);

    ck_assert_ptr_null(cfg);
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_str_eq(err.message, config_errors[_i].message);
}
END_TEST

#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

Suite *
netmatch_suite(void)
{
    Suite *s = suite_create("netmatch");
    TCase *tc = test_tcase_new("netmatch");

    tcase_add_loop_test(tc, entries_valid_are_accepted, 0, COUNT(good_entries));
    tcase_add_loop_test(tc, entries_invalid_are_refused, 0, COUNT(bad_entries));
    tcase_add_loop_test(tc, targets_are_judged_by_allow_deny_and_link_local, 0,
                        COUNT(target_cases));
    tcase_add_loop_test(tc, prechecks_refuse_what_needs_no_dns, 0,
                        COUNT(precheck_cases));
    tcase_add_loop_test(tc, own_listeners_are_refused_on_their_port, 0,
                        COUNT(own_cases));
    tcase_add_test(tc, wildcard_listener_covers_every_interface_address);
    tcase_add_test(tc, addresses_that_are_not_ip_are_refused);
    tcase_add_test(tc, config_http_allow_and_deny_default_and_parse);
    tcase_add_loop_test(tc, config_http_allow_and_deny_errors_name_the_entry, 0,
                        COUNT(config_errors));
    suite_add_tcase(s, tc);
    return s;
}
