/* SPDX-License-Identifier: MIT */
/*
 * lib/config.h: asyncqd's JSON configuration (spec section 4). Parsing fills
 * every field with its default first; unknown fields and wrong types are
 * errors naming the field path ("queues.default.consumers: expected integer
 * >= 0"). The struct is plain data, read by the daemon: it is public.
 * Durations are seconds (double); 0 means "none" where the spec says so.
 */
#ifndef AQ_CONFIG_H
#define AQ_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

struct aq_error;

enum aq_fsync {
    AQ_FSYNC_BATCH,
    AQ_FSYNC_ALWAYS,
    AQ_FSYNC_EVERYSEC,
    AQ_FSYNC_NEVER
};
/* The names of enum aq_fsync and enum aq_order in enum order, then NULL:
 * what journal.fsync and a queue's order take. */
extern const char *const aq_fsync_names[];

/* Where jobs are kept: the local journal (journal.*), or PostgreSQL. */
enum aq_store_kind { AQ_STORE_JOURNAL, AQ_STORE_POSTGRES };
extern const char *const aq_store_kind_names[]; /* then NULL */
enum aq_order { AQ_ORDER_PRIORITY, AQ_ORDER_LIFO };
extern const char *const aq_order_names[];

struct aq_queue_config {
    char *name;          /* the key under "queues" */
    char *kind;          /* "exec" (default), "http", "sleep", "echo" */
    unsigned kinds;      /* "kinds": bit 1 << enum aq_kind of each kind a
                            put may use besides kind (which is always
                            allowed, listed or not); default 0 */
    int consumers;       /* >= 0; default 4 */
    size_t maxsize;      /* >= 0, 0 = unbounded; default 10000 */
    enum aq_order order; /* "priority" (default) or "lifo" */
    double timeout;      /* s >= 0, 0 = none; default 300 */
    int retries;         /* >= 0; default 0 */
    struct {
        double initial; /* s >= 0; default 1 */
        double factor;  /* >= 1; default 2 */
        double max;     /* s >= 0; default 300 */
    } backoff;
    struct {
        double per_second; /* > 0; 0 = no rate limit (null, the default) */
        int burst;         /* >= 1; default max(1, ceil(per_second)) */
    } rate;
    struct {
        char **allow; /* absolute paths, or the single "*"; default ["*"] */
        size_t nallow;
        char *path;        /* default "/usr/local/bin:/usr/bin:/bin" */
        size_t capture;    /* bytes per stream; default 65536 */
        double kill_grace; /* s >= 0; default 5 */
    } exec;
    struct {
        size_t capture;            /* default 65536 */
        int max_per_host;          /* >= 1; default 8 */
        int max_redirects;         /* >= 0; default 5 */
        bool verify;               /* default true */
        size_t max_response_bytes; /* >= 1; default 64 MiB: a larger body
                                      fails the attempt */
        char **allow; /* host-name patterns and CIDRs (lib/netmatch.h);
                         default ["*"] */
        size_t nallow;
        char **deny; /* the same; default [] (link-local addresses and
                        the daemon's listeners are always refused) */
        size_t ndeny;
    } http;
};

/* "tls" (spec section 10): the certificate of tls:// listeners. Relative
 * paths are resolved against the config file's directory at load. */
struct aq_tls_config {
    char *cert;      /* PEM: the certificate, then its chain; required */
    char *key;       /* PEM private key of cert; required */
    char *client_ca; /* PEM CAs a client certificate must be signed by
                        (mutual TLS); NULL (default) = none asked */
    double handshake_timeout; /* s > 0; default 10 */
};

/* "schedules" (spec section 11): a job put by the daemon itself at the
 * times of cron (lib/cron.h). Checked at parse: cron, timezone, queue (a
 * configured one), kind (one that queue runs). */
struct aq_schedule_config {
    char *key;        /* the key under "schedules": the schedule's name */
    char *cron;       /* required */
    char *timezone;   /* tz database name; default "UTC" */
    char *queue;      /* default "default" */
    char *kind;       /* NULL (default) = the queue's */
    char *args;       /* compact JSON text of an object; default "{}" */
    char *name;       /* the jobs' name; NULL (default) = key */
    int32_t priority; /* default 0 */
    double timeout;   /* s, 0 to 1e9; < 0 (default) = the queue's */
    int retries;      /* 0 to 1000000; < 0 (default) = the queue's */
    bool is_overlap_allowed; /* overlap: "skip" (default, false) | "allow" */
    bool is_catch_up_none;   /* catch_up: "one" (default, false) | "none" */
};

struct aq_config {
    char **listen; /* "tcp://host:port", "tcp://[v6]:port", "unix:/path",
                      "tls://host:port" (needs tls);
                      default ["tcp://127.0.0.1:7878"] */
    size_t nlisten;
    char *metrics; /* "host:port" or NULL (null in JSON); default
                      "127.0.0.1:7879" */
    struct {
        int max;                  /* >= 1; default 1024 */
        int window;               /* >= 1; default 1024 */
        size_t max_request_bytes; /* >= 2; default 1048576 */
        double idle_timeout;      /* s >= 0, 0 = never; default 300 */
    } producers;
    struct {
        char *path;           /* NULL = memory only; default "asyncq.journal" */
        enum aq_fsync fsync;  /* default batch */
        size_t segment_bytes; /* >= 4096; default 64 MiB: a segment file is
                                 closed past this size */
    } journal;
    struct {
        enum aq_store_kind kind; /* default journal */
        char *conninfo;          /* libpq's; required with postgres */
        char *schema;            /* ^[a-z_][a-z0-9_]{0,62}$; default "asyncq" */
        char *node;              /* 1..64 of [A-Za-z0-9._-]; NULL (default) =
                                    the host name */
    } store;
    struct {
        double ttl;        /* s >= 0: done records; default 3600 */
        size_t max;        /* >= 0: done records; default 100000 */
        double failed_ttl; /* s >= 0: failed and cancelled records;
                              default 604800 (7 days) */
        size_t failed_max; /* >= 0: failed and cancelled; default 10000 */
        size_t max_bytes;  /* >= 0: all records; default 268435456 */
    } results;
    struct {
        double grace; /* s >= 0; default 10 */
        bool drain;   /* default false */
    } shutdown;
    struct aq_tls_config *tls;     /* NULL (default) = none */
    char *auth_token_file;         /* NULL (default) = no auth */
    enum aq_log_level log_level;   /* "error" "warn" "info" (default) "debug" */
    enum aq_log_format log_format; /* "text" (default) "json" */
    struct aq_queue_config *queues; /* default: one queue "default" */
    size_t nqueues;
    struct aq_schedule_config *schedules; /* in key order; default none */
    size_t nschedules;
};

/* Parses len bytes of JSON text. Returns a new config (the caller's, free
 * with aq_config_free) or NULL with err naming the field (code
 * AQ_ERR_INVALID_PARAMS) and, for a syntax error, the line and column. */
struct aq_config *aq_config_parse(const char *text, size_t len,
                                  struct aq_error *err);
/* Reads and parses path; errors start with the path. */
struct aq_config *aq_config_load(const char *path, struct aq_error *err);
/* A config holding only defaults (as parsing "{}"). */
struct aq_config *aq_config_default(void);
void aq_config_free(struct aq_config *cfg); /* NULL is fine */

/* The queue named name, borrowed from cfg, or NULL. */
const struct aq_queue_config *aq_config_queue(const struct aq_config *cfg,
                                              const char *name);
/* Fills qc with the defaults of a queue named name (strings are qc's to
 * release with aq_queue_config_clear). */
void aq_queue_config_defaults(struct aq_queue_config *qc, const char *name);
void aq_queue_config_clear(struct aq_queue_config *qc);
/* Deep copy of src into dst (dst's own strings). */
void aq_queue_config_copy(struct aq_queue_config *dst,
                          const struct aq_queue_config *src);

/* The schedule keyed key, borrowed from cfg, or NULL. */
const struct aq_schedule_config *aq_config_schedule(const struct aq_config *cfg,
                                                    const char *key);
void aq_schedule_config_clear(struct aq_schedule_config *sc);
/* Whether a and b are the same schedule (every field equal). */
bool aq_schedule_config_equal(const struct aq_schedule_config *a,
                              const struct aq_schedule_config *b);

#endif
