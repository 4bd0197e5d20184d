/* SPDX-License-Identifier: MIT */
/*
 * lib/netmatch.c: the http allow/deny policy (see netmatch.h). Entries are
 * parsed once into names (lower case) and networks (masked bytes);
 * addresses are compared in one normal form: IPv4 as 4 bytes (IPv4-mapped
 * IPv6 included), IPv6 as 16, the port beside them.
 */
#include "netmatch.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "xmalloc.h"

#define NAME_MAX_LEN 253
#define LABEL_MAX_LEN 63

/* An address in normal form. */
struct addr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t b[16];
    int port; /* 0 when it does not matter */
};

enum entry_type {
    ENTRY_ANY,    /* "*" */
    ENTRY_NAME,   /* "example.com" */
    ENTRY_SUFFIX, /* "*.example.com", kept as ".example.com" */
    ENTRY_NET,    /* "10.0.0.0/8", "192.0.2.7" */
    ENTRY_BAD     /* not an entry (the config refuses those) */
};

struct entry {
    enum entry_type type;
    char *text;      /* owned: as configured, for messages */
    char *name;      /* owned: NAME and SUFFIX, lower case */
    struct addr net; /* NET: masked to prefix bits */
    int prefix;
};

struct aq_netmatch {
    struct entry *allow, *deny; /* owned */
    size_t nallow, ndeny;
    struct addr *own; /* owned: the daemon's listeners, with ports */
    size_t nown;
};

/* ---- addresses ---- */

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int
addr_len(const struct addr *a)
{
    return a->family == AF_INET ? 4 : 16;
}

/* Stores 16 IPv6 bytes, as IPv4 when they are an IPv4-mapped address. */
static void
addr_set6(struct addr *a, const uint8_t *b16)
{
    memset(a->b, 0, sizeof a->b);
    if (memcmp(b16, v4_mapped, sizeof v4_mapped) == 0) {
        a->family = AF_INET;
        memcpy(a->b, b16 + 12, 4);
    } else {
        a->family = AF_INET6;
        memcpy(a->b, b16, 16);
    }
}

/* sa in normal form; false when it is not IPv4 or IPv6. */
static bool
addr_from_sockaddr(const struct sockaddr *sa, struct addr *a)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        a->family = AF_INET;
        memcpy(a->b, &in->sin_addr, 4);
        a->port = ntohs(in->sin_port);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        addr_set6(a, in6->sin6_addr.s6_addr);
        a->port = ntohs(in6->sin6_port);
        return true;
    }
    return false;
}

/* An address literal ("192.0.2.7", "::1"); false for anything else. */
static bool
addr_parse(const char *s, struct addr *a)
{
    uint8_t b[16];

    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, s, b) == 1) {
        a->family = AF_INET;
        memcpy(a->b, b, 4);
        return true;
    }
    if (inet_pton(AF_INET6, s, b) == 1) {
        addr_set6(a, b);
        return true;
    }
    return false;
}

static bool
addr_is_zero(const struct addr *a)
{
    static const uint8_t zero[16];

    return memcmp(a->b, zero, (size_t)addr_len(a)) == 0;
}

static bool
addr_eq(const struct addr *a, const struct addr *b)
{
    return a->family == b->family &&
           memcmp(a->b, b->b, (size_t)addr_len(a)) == 0;
}

/* Whether a is in net/prefix (same family). */
static bool
addr_in(const struct addr *a, const struct addr *net, int prefix)
{
    int whole = prefix / 8, rest = prefix % 8;

    if (a->family != net->family)
        return false;
    if (memcmp(a->b, net->b, (size_t)whole) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((a->b[whole] ^ net->b[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* Whether a is an address of this machine: loopback, or an interface's. */
static bool
addr_is_local(const struct addr *a)
{
    static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                    0, 0, 0, 0, 0, 0, 0, 1};
    struct ifaddrs *ifs, *i;
    bool found = false;

    if ((a->family == AF_INET && a->b[0] == 127) ||
        (a->family == AF_INET6 && memcmp(a->b, lo6, 16) == 0))
        return true;
    /* Netlink, answered by the kernel: it does not block. If it fails,
     * no other address is known to be local. */
    if (getifaddrs(&ifs) != 0)
        return false;
    for (i = ifs; i != NULL && !found; i = i->ifa_next) {
        struct addr ia;

        if (i->ifa_addr != NULL && addr_from_sockaddr(i->ifa_addr, &ia))
            found = addr_eq(&ia, a);
    }
    freeifaddrs(ifs);
    return found;
}

/* ---- entries ---- */

/* A host-name pattern: "*." then, or only, dot-separated labels of
 * letters, digits, '-' and '_'; the last label is not all digits (that
 * would be a mistyped address). */
static bool
is_name_pattern(const char *s)
{
    size_t len, label = 0;
    bool all_digits = true;

    if (strncmp(s, "*.", 2) == 0)
        s += 2;
    len = strlen(s);
    if (len == 0 || len > NAME_MAX_LEN)
        return false;
    for (; *s != '\0'; s++) {
        if (*s == '.') {
            if (label == 0)
                return false;
            label = 0;
            all_digits = true;
            continue;
        }
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return false;
        if (++label > LABEL_MAX_LEN)
            return false;
        all_digits = all_digits && isdigit((unsigned char)*s);
    }
    return label > 0 && !all_digits;
}

/* "ADDR/PREFIX" or "ADDR" into e (NET); false if s is neither. */
static bool
net_parse(const char *s, struct entry *e)
{
    const char *slash = strchr(s, '/');
    char host[INET6_ADDRSTRLEN];
    size_t hlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    int prefix = -1, whole, rest;
    uint8_t b[16];
    const char *p;

    if (hlen == 0 || hlen >= sizeof host)
        return false;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (slash != NULL) {
        p = slash + 1;
        if (*p == '\0' || strlen(p) > 3 || strspn(p, "0123456789") != strlen(p))
            return false;
        prefix = atoi(p);
    }
    memset(&e->net, 0, sizeof e->net);
    if (inet_pton(AF_INET6, host, b) == 1) {
        if (prefix > 128)
            return false;
        if (prefix < 0)
            prefix = 128;
        /* An IPv4-mapped network of 96 bits or more is that IPv4 one. */
        if (prefix >= 96 && memcmp(b, v4_mapped, sizeof v4_mapped) == 0) {
            e->net.family = AF_INET;
            memcpy(e->net.b, b + 12, 4);
            prefix -= 96;
        } else {
            e->net.family = AF_INET6;
            memcpy(e->net.b, b, 16);
        }
    } else if (inet_pton(AF_INET, host, b) == 1) {
        if (prefix > 32)
            return false;
        if (prefix < 0)
            prefix = 32;
        e->net.family = AF_INET;
        memcpy(e->net.b, b, 4);
    } else
        return false;
    /* Host bits are dropped: "10.1.2.3/8" is 10.0.0.0/8. */
    whole = prefix / 8;
    rest = prefix % 8;
    if (whole < 16) {
        if (rest != 0)
            e->net.b[whole++] &= (uint8_t)(0xff << (8 - rest));
        memset(e->net.b + whole, 0, (size_t)(16 - whole));
    }
    e->prefix = prefix;
    e->type = ENTRY_NET;
    return true;
}

static void
entry_parse(const char *s, struct entry *e)
{
    memset(e, 0, sizeof *e);
    e->text = xstrdup(s);
    if (strcmp(s, "*") == 0)
        e->type = ENTRY_ANY;
    else if (net_parse(s, e))
        e->type = ENTRY_NET;
    else if (is_name_pattern(s)) {
        e->type = s[0] == '*' ? ENTRY_SUFFIX : ENTRY_NAME;
        e->name = xstrdup(s[0] == '*' ? s + 1 : s);
        for (char *p = e->name; *p != '\0'; p++)
            *p = (char)tolower((unsigned char)*p);
    } else
        e->type = ENTRY_BAD;
}

bool
aq_netmatch_entry_ok(const char *s)
{
    struct entry e;
    bool ok;

    entry_parse(s, &e);
    ok = e.type != ENTRY_BAD;
    free(e.text);
    free(e.name);
    return ok;
}

/* Whether the URL host name (lower case, no final dot) matches e. */
static bool
name_matches(const struct entry *e, const char *name)
{
    size_t n = strlen(name), sn;

    if (e->type == ENTRY_NAME)
        return strcmp(name, e->name) == 0;
    sn = strlen(e->name);
    return n > sn && strcmp(name + n - sn, e->name) == 0;
}

/* Whether e matches a target: name is the URL's host name (NULL for an
 * address literal), a its address (NULL before resolution). bad is what
 * an invalid entry counts as. */
static bool
entry_matches(const struct entry *e, const char *name, const struct addr *a,
              bool bad)
{
    switch (e->type) {
    case ENTRY_ANY:
        return true;
    case ENTRY_NAME:
    case ENTRY_SUFFIX:
        return name != NULL && name_matches(e, name);
    case ENTRY_NET:
        return a != NULL && addr_in(a, &e->net, e->prefix);
    case ENTRY_BAD:
        break;
    }
    return bad;
}

/* The index of the first entry of v matching, or -1. */
static long
list_match(const struct entry *v, size_t n, const char *name,
           const struct addr *a, bool bad)
{
    for (size_t i = 0; i < n; i++) {
        if (entry_matches(&v[i], name, a, bad))
            return (long)i;
    }
    return -1;
}

/* ---- the policy ---- */

static struct entry *
entries_new(char *const *v, size_t n)
{
    struct entry *e = xcalloc(n > 0 ? n : 1, sizeof *e);

    for (size_t i = 0; i < n; i++)
        entry_parse(v[i], &e[i]);
    return e;
}

static void
entries_free(struct entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].text);
        free(e[i].name);
    }
    free(e);
}

struct aq_netmatch *
aq_netmatch_new(char *const *allow, size_t nallow, char *const *deny,
                size_t ndeny, const struct sockaddr_storage *own, size_t nown)
{
    struct aq_netmatch *m = xcalloc(1, sizeof *m);

    m->allow = entries_new(allow, nallow);
    m->nallow = nallow;
    m->deny = entries_new(deny, ndeny);
    m->ndeny = ndeny;
    m->own = xcalloc(nown > 0 ? nown : 1, sizeof *m->own);
    for (size_t i = 0; i < nown; i++) {
        if (addr_from_sockaddr((const struct sockaddr *)&own[i],
                               &m->own[m->nown]))
            m->nown++;
    }
    return m;
}

void
aq_netmatch_free(struct aq_netmatch *m)
{
    if (m == NULL)
        return;
    entries_free(m->allow, m->nallow);
    entries_free(m->deny, m->ndeny);
    free(m->own);
    free(m);
}

/* Whether a (with its port) reaches one of the daemon's listeners. */
static bool
is_own(const struct aq_netmatch *m, const struct addr *a)
{
    for (size_t i = 0; i < m->nown; i++) {
        const struct addr *o = &m->own[i];

        if (o->port != a->port)
            continue;
        if (addr_eq(o, a))
            return true;
        /* A listener on 0.0.0.0 takes every local IPv4 address; one on
         * :: every local address (dual-stack unless IPV6_V6ONLY, which
         * cannot be told from here: the safe side). */
        if (addr_is_zero(o) &&
            (o->family == AF_INET6 || a->family == AF_INET) && addr_is_local(a))
            return true;
    }
    return false;
}

static bool
is_link_local(const struct addr *a)
{
    return (a->family == AF_INET && a->b[0] == 169 && a->b[1] == 254) ||
           (a->family == AF_INET6 && a->b[0] == 0xfe &&
            (a->b[1] & 0xc0) == 0x80);
}

/* The host name in the form patterns compare (lower case, no final dot),
 * in buf; NULL for an address literal. */
static const char *
host_name(const char *host, char *buf, size_t len)
{
    struct addr a;
    size_t n;

    if (addr_parse(host, &a))
        return NULL;
    snprintf(buf, len, "%s", host);
    n = strlen(buf);
    if (n > 1 && buf[n - 1] == '.')
        buf[n - 1] = '\0';
    for (char *p = buf; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return buf;
}

/* The check of one target; name NULL for a literal. */
static bool
check(const struct aq_netmatch *m, const char *name, const struct addr *target,
      char *why, size_t len)
{
    struct addr loop = *target;
    const struct addr *a = target;
    long i;

    /* A connection to 0.0.0.0 or :: reaches loopback: it is judged as
     * 127.0.0.1 or ::1. */
    if (addr_is_zero(target)) {
        loop.b[0] = loop.family == AF_INET ? 127 : 0;
        loop.b[addr_len(&loop) - 1] = 1;
        a = &loop;
    }

    if ((i = list_match(m->deny, m->ndeny, name, a, true)) >= 0) {
        snprintf(why, len, "http.deny[%ld] \"%.100s\"", i, m->deny[i].text);
        return false;
    }
    if (is_link_local(a)) {
        snprintf(why, len, "link-local address");
        return false;
    }
    if (is_own(m, a)) {
        snprintf(why, len, "the daemon's own listener");
        return false;
    }
    if (list_match(m->allow, m->nallow, name, a, false) < 0) {
        snprintf(why, len, "not in http.allow");
        return false;
    }
    return true;
}

bool
aq_netmatch_allows(const struct aq_netmatch *m, const char *host,
                   const struct sockaddr *sa, char *why, size_t len)
{
    char buf[NAME_MAX_LEN + 2];
    struct addr a;

    if (!addr_from_sockaddr(sa, &a)) {
        snprintf(why, len, "not an IP address");
        return false;
    }
    return check(m, host_name(host, buf, sizeof buf), &a, why, len);
}

bool
aq_netmatch_may_allow(const struct aq_netmatch *m, const char *host, int port,
                      char *why, size_t len)
{
    char buf[NAME_MAX_LEN + 2];
    const char *name = host_name(host, buf, sizeof buf);
    struct addr a;
    long i;

    if (name == NULL) {
        addr_parse(host, &a);
        a.port = port;
        return check(m, NULL, &a, why, len);
    }
    /* Only the name is known: the entries that need no address. */
    if ((i = list_match(m->deny, m->ndeny, name, NULL, true)) >= 0) {
        snprintf(why, len, "http.deny[%ld] \"%.100s\"", i, m->deny[i].text);
        return false;
    }
    for (size_t j = 0; j < m->nallow; j++) {
        if (m->allow[j].type == ENTRY_NET ||
            entry_matches(&m->allow[j], name, NULL, false))
            return true;
    }
    snprintf(why, len, "not in http.allow");
    return false;
}
