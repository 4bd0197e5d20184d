/* SPDX-License-Identifier: MIT */
/*
 * lib/netmatch.h: where an http job may connect (spec section 4,
 * queues.*.http.allow / http.deny). A target is the URL's host (a name or
 * an address literal) with one address it resolved to and the port. It is
 * allowed when it matches an allow entry, matches no deny entry, is not
 * link-local (169.254.0.0/16, fe80::/10: always refused) and is not one of
 * the daemon's own listening sockets. Entries are "*" (anything), host-name
 * patterns ("example.com", "*.example.com": one or more labels before
 * ".example.com"), matched against the name, and CIDRs or single addresses
 * ("10.0.0.0/8", "fe80::/10", "192.0.2.7"), matched against the address.
 * IPv4-mapped IPv6 addresses are matched as IPv4. Pure, except that a
 * listener on 0.0.0.0 or :: reads the interface addresses (getifaddrs).
 */
#ifndef AQ_NETMATCH_H
#define AQ_NETMATCH_H

#include <stdbool.h>
#include <stddef.h>

struct sockaddr;
struct sockaddr_storage;
struct aq_netmatch;

/* Whether s is an allow/deny entry: "*", a host-name pattern or a CIDR. */
bool aq_netmatch_entry_ok(const char *s);

/* A policy from the allow and deny lists (copied; an invalid entry never
 * allows and always denies) and the daemon's own listening addresses
 * (copied; only AF_INET and AF_INET6 count; an unspecified address stands
 * for every local address on its port). The caller's; free with
 * aq_netmatch_free. */
struct aq_netmatch *aq_netmatch_new(char *const *allow, size_t nallow,
                                    char *const *deny, size_t ndeny,
                                    const struct sockaddr_storage *own,
                                    size_t nown);
void aq_netmatch_free(struct aq_netmatch *m); /* NULL is fine */

/* Whether a connection to sa (address and port), for the URL host host
 * (a name, or an address literal without brackets), is allowed. If not,
 * why (len bytes) names the rule: "http.deny[1] \"10.0.0.0/8\"",
 * "not in http.allow", "link-local address", "the daemon's own listener". */
bool aq_netmatch_allows(const struct aq_netmatch *m, const char *host,
                        const struct sockaddr *sa, char *why, size_t len);

/* The check before resolving host: false (with why) when host is refused
 * whatever it resolves to: an address literal refused on port, a name
 * matching a deny pattern, or a name no allow entry can match. true when
 * a literal is allowed, or a name still has to be checked per address. */
bool aq_netmatch_may_allow(const struct aq_netmatch *m, const char *host,
                           int port, char *why, size_t len);

#endif
