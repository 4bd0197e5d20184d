/* SPDX-License-Identifier: MIT */
/*
 * daemon/main.c: asyncqd. Parses flags, loads the config, builds the event
 * base, the process reaper, the broker, the methods, the server and its
 * listeners (listen -> server -> methods -> broker), handles signals
 * (SIGTERM/SIGINT graceful stop, a second one skips the grace; SIGHUP
 * reload), runs the loop, then frees in reverse order.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "cgroup.h"
#include "clock.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "listen.h"
#include "methods.h"
#include "pgremote.h"
#include "history.h"
#include "metrics.h"
#include "pgcluster.h"
#include "proc.h"
#include "runfile.h"
#include "sd.h"
#include "server.h"
#include "store.h"
#include "tls.h"
#include "xmalloc.h"

#define DEFAULT_CONFIG "/etc/asyncq/asyncqd.json"
#define CLOSE_TIMEOUT_MS 2000
#define MAX_LISTEN_FDS 64
#define TOKEN_MAX 4096
#define KILL_ALL_TIMEOUT_US 2000000
#define LEFTOVER_TIMEOUT_US 5000000 /* for an earlier run's processes */
#define CLUSTER_START_MS 10000      /* reading the queues paused elsewhere */

struct daemon {
    const char *config_path;
    bool repair;        /* --repair: mend the journal, then exit */
    char *journal_path; /* owned; NULL = memory only */
    /* the broker's store's journal, for metrics; NULL = none */
    struct aq_journal *journal;
    struct aq_store *store; /* the broker's, for metrics */
    struct aq_config *cfg;  /* owned: the config in force */
    struct event_base *base;
    struct aq_cgroup *cgroup;   /* owned: the jobs' cgroups; NULL = none */
    struct aq_runfile *runfile; /* owned: the jobs' processes; NULL = none */
    struct aq_procs *procs;
    struct aq_broker *broker;
    struct aq_methods *methods;
    /* Methods on jobs other nodes hold (postgres store); NULL = none. */
    struct aq_pgremote *pgremote;
    struct aq_server *server;
    struct aq_listen *listen; /* hands accepted sockets to server */
    struct aq_tls *tls;       /* tls:// sockets' handshakes, then to server;
                                 NULL without a tls section */
    struct aq_metrics *metrics;
    struct aq_history *history; /* per-second done/failed, for history */
    /* owned: schedules, pause and maxsize across nodes (store postgres) */
    struct aq_pgcluster *cluster;
    struct event *sigterm_ev, *sigint_ev, *sighup_ev;
    struct event *status_ev;   /* STATUS= for systemd, every second */
    struct event *watchdog_ev; /* WATCHDOG=1 at half of WatchdogSec */
    char last_status[160];
    int stop_signals;
};

/* libevent's own messages (an http job's refused connect, say) into our
 * log: its warnings are per-request noise the job's error already says. */
static void
libevent_log_cb(int severity, const char *msg)
{
    aq_log(severity >= EVENT_LOG_ERR ? AQ_LOG_WARN : AQ_LOG_DEBUG,
           "libevent: %s", msg);
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: asyncqd [--config FILE] [--check-config | --repair]\n"
            "       asyncqd --version | --help\n"
            "\n"
            "  -c, --config FILE   the JSON config (default %s)\n"
            "  --check-config      validate the config and exit (0 valid, 1 "
            "not)\n"
            "  --repair            cut the journal at its first damaged "
            "record,\n"
            "                      keeping what precedes it, and exit\n"
            "  -V, --version       print the version\n"
            "  -h, --help          this help\n"
            "\n"
            "asyncqd runs in the foreground; SIGTERM or SIGINT stop it "
            "gracefully,\na second one skips the grace, SIGHUP reloads the "
            "config.\n",
            DEFAULT_CONFIG);
}

/* The auth token: the first line of token_file. Returns a new string, or
 * NULL with err. */
static char *
read_token(const char *path, struct aq_error *err)
{
    FILE *f = fopen(path, "r");
    char buf[TOKEN_MAX];
    size_t n;

    if (f == NULL) {
        aq_error_set(err, AQ_ERR_INTERNAL, "auth: %s: %s", path,
                     strerror(errno));
        return NULL;
    }
    if (fgets(buf, sizeof buf, f) == NULL)
        buf[0] = '\0';
    fclose(f);
    n = strcspn(buf, "\r\n");
    buf[n] = '\0';
    if (n == 0) {
        aq_error_set(err, AQ_ERR_INTERNAL, "auth: %s: empty token", path);
        return NULL;
    }
    return xstrdup(buf);
}

/* Each producer connection is a descriptor: allow as many as the hard limit
 * (systemd's LimitNOFILE=) permits, instead of the usual soft 1024. */
static void
raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        aq_log(AQ_LOG_DEBUG, "asyncqd: open files limit raised to %llu",
               (unsigned long long)rl.rlim_cur);
}

/* ---- stop ---- */

static void
closed_cb(void *arg)
{
    struct daemon *d = arg;

    aq_log(AQ_LOG_INFO, "asyncqd: stopped");
    event_base_loopexit(d->base, NULL);
}

static void
broker_stopped_cb(void *arg)
{
    struct daemon *d = arg;

    aq_server_close_all(d->server, CLOSE_TIMEOUT_MS, closed_cb, d);
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;

    if (d->stop_signals++ == 0) {
        aq_sd_notify("STOPPING=1");
        if (d->metrics != NULL)
            aq_metrics_set_health(d->metrics, AQ_HEALTH_STOPPING);
        aq_log(AQ_LOG_INFO,
               "asyncqd: %s: stopping (drain %s, grace %g s); again to skip "
               "the grace",
               strsignal((int)sig), d->cfg->shutdown.drain ? "on" : "off",
               d->cfg->shutdown.grace);
        aq_listen_close(d->listen);
        aq_tls_stop(d->tls);
        aq_broker_stop(d->broker, d->cfg->shutdown.drain,
                       d->cfg->shutdown.grace, broker_stopped_cb, d);
        return;
    }
    aq_log(AQ_LOG_INFO, "asyncqd: %s again: skipping the grace",
           strsignal((int)sig));
    aq_broker_stop_now(d->broker);
}

/* ---- reload ---- */

static bool
str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && !strcmp(a, b));
}

static void
warn_restart_only(const struct aq_config *old, const struct aq_config *cfg)
{
    bool listen_same = old->nlisten == cfg->nlisten;

    for (size_t i = 0; listen_same && i < cfg->nlisten; i++)
        listen_same = str_eq(old->listen[i], cfg->listen[i]);
    if (!listen_same)
        aq_log(AQ_LOG_WARN, "reload: listen changes at restart");
    if (!str_eq(old->metrics, cfg->metrics))
        aq_log(AQ_LOG_WARN, "reload: metrics changes at restart");
    if (!str_eq(old->journal.path, cfg->journal.path) ||
        old->journal.fsync != cfg->journal.fsync ||
        old->journal.segment_bytes != cfg->journal.segment_bytes)
        aq_log(AQ_LOG_WARN, "reload: journal changes at restart");
    if (old->store.kind != cfg->store.kind ||
        !str_eq(old->store.conninfo, cfg->store.conninfo) ||
        !str_eq(old->store.schema, cfg->store.schema) ||
        !str_eq(old->store.node, cfg->store.node))
        aq_log(AQ_LOG_WARN, "reload: store changes at restart");
    if (!str_eq(old->auth_token_file, cfg->auth_token_file))
        aq_log(AQ_LOG_WARN, "reload: auth changes at restart");
    if ((old->tls == NULL) != (cfg->tls == NULL))
        aq_log(AQ_LOG_WARN, "reload: tls on or off changes at restart");
    if (old->shutdown.grace != cfg->shutdown.grace ||
        old->shutdown.drain != cfg->shutdown.drain)
        aq_log(AQ_LOG_INFO, "reload: shutdown settings applied");
}

static void
reload_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    struct aq_error err;
    struct aq_config *cfg;

    aq_sd_notify("RELOADING=1");
    if ((cfg = aq_config_load(d->config_path, &err)) == NULL) {
        aq_log(AQ_LOG_ERROR, "reload: %s; keeping the running config",
               err.message);
        aq_sd_notify("READY=1");
        return;
    }
    warn_restart_only(d->cfg, cfg);
    aq_log_set_level(cfg->log_level);
    aq_log_set_format(cfg->log_format);
    aq_server_reconfigure(d->server, cfg);
    if (d->metrics != NULL)
        aq_metrics_set_rpc(d->metrics, NULL, cfg->producers.max_request_bytes);
    aq_broker_reconfigure(d->broker, cfg);
    /* Renewed certificate files: new connections get them. */
    if (d->tls != NULL && cfg->tls != NULL &&
        aq_tls_reload(d->tls, cfg, &err) < 0)
        aq_log(AQ_LOG_ERROR,
               "reload: %s; new connections keep the running certificate",
               err.message);
    aq_config_free(d->cfg);
    d->cfg = cfg;
    aq_log(AQ_LOG_INFO, "reload: %s applied", d->config_path);
    aq_sd_notify("READY=1");
}

/* ---- systemd ---- */

static void
status_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    size_t unfinished, running;
    char status[sizeof d->last_status];

    aq_broker_counts(d->broker, &unfinished, &running);
    snprintf(status, sizeof status,
             "%zu jobs unfinished, %zu running, %zu connections%s", unfinished,
             running, aq_server_connections(d->server),
             d->stop_signals > 0 ? ", stopping" : "");
    if (strcmp(status, d->last_status) != 0) {
        aq_sd_notify("STATUS=%s", status);
        strcpy(d->last_status, status);
    }
}

static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    aq_sd_notify("WATCHDOG=1");
}

/* READY=1 once the journal is replayed and the listeners are polled; then
 * STATUS= once a second when it changes, and the watchdog's pings. */
static void
systemd_ready_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    struct timeval second = {1, 0};
    int64_t watchdog_us = aq_sd_watchdog_us();

    aq_sd_notify("READY=1");
    d->status_ev = event_new(d->base, -1, EV_PERSIST, status_cb, d);
    event_add(d->status_ev, &second);
    status_cb(-1, 0, d);
    if (watchdog_us > 0) {
        struct timeval half = aq_clock_tv(watchdog_us / 2);

        d->watchdog_ev = event_new(d->base, -1, EV_PERSIST, watchdog_cb, d);
        event_add(d->watchdog_ev, &half);
        aq_log(AQ_LOG_INFO, "systemd watchdog: pinging every %.1f s",
               (double)watchdog_us / 2e6);
    }
}

/* ---- the store ---- */

/* journal.path, relative ones resolved against $STATE_DIRECTORY (the
 * first, when systemd gives several), else the working directory. */
static char *
journal_path(const struct aq_config *cfg)
{
    const char *state = getenv("STATE_DIRECTORY");

    if (cfg->journal.path == NULL)
        return NULL;
    if (cfg->journal.path[0] == '/' || state == NULL || *state == '\0')
        return xstrdup(cfg->journal.path);
    return xasprintf("%.*s/%s", (int)strcspn(state, ":"), state,
                     cfg->journal.path);
}

/* The store by store.kind: PostgreSQL, the journal at journal.path, or
 * none (jobs in memory only). The broker takes it and restores the jobs it
 * holds. Returns 0, 1 on an error (err set), 2 when the journal is damaged
 * (err says how), 3 when a signal stopped the daemon while the store was
 * still connecting. */
static int
store_open(struct daemon *d, struct aq_error *err)
{
    const struct aq_config *cfg = d->cfg;
    struct aq_store *store;
    bool damaged = false;

    if (cfg->store.kind == AQ_STORE_POSTGRES) {
        store = aq_store_pg_open(d->base, cfg->store.conninfo,
                                 cfg->store.schema, cfg->store.node, err);
        if (store == NULL)
            return 1;
        /* The methods' session across nodes connects while the store
         * restores: ready once clients are served. */
        d->pgremote = aq_pgremote_new(d->base, cfg->store.conninfo,
                                      cfg->store.schema, cfg->store.node, err);
        if (d->pgremote == NULL) {
            aq_store_close(store);
            return 1;
        }
        if (aq_broker_restore(d->broker, store, &damaged, err) < 0)
            return err->code == AQ_ERR_SHUTTING_DOWN ? 3 : 1;
        d->store = store;
        return 0;
    }
    if (d->journal_path == NULL) {
        aq_log(AQ_LOG_WARN, "journal: path null: jobs are kept in memory "
                            "only and lost at exit");
        return 0;
    }
    store =
        aq_store_journal_open(d->base, d->journal_path, d->cfg->journal.fsync,
                              d->cfg->journal.segment_bytes, err);
    if (store == NULL)
        return 1;
    if (aq_broker_restore(d->broker, store, &damaged, err) < 0)
        return damaged ? 2 : 1;
    d->journal = aq_store_journal(store);
    return 0;
}

/* --repair: replays the journal, cutting it at the first damage. */
static int
journal_repair(struct daemon *d)
{
    struct aq_error err;
    uint64_t last_id = 0;
    size_t records;

    if (aq_store_journal_repair(d->base, d->journal_path, &records, &last_id,
                                &err) < 0) {
        fprintf(stderr, "asyncqd: %s\n", err.message);
        return 1;
    }
    printf("asyncqd: journal %s: %zu records kept, last job id %llu\n",
           d->journal_path, records, (unsigned long long)last_id);
    return 0;
}

/* ---- producers ---- */

static void
accept_cb(void *arg, int fd, const char *peer)
{
    aq_server_accept(arg, fd, peer);
}

/* A tls:// connection whose handshake is done. */
static void
tls_ready_cb(void *arg, struct bufferevent *bev, const char *peer)
{
    aq_server_accept_bev(arg, bev, peer);
}

/* The sockets systemd handed over, else the config's listen addresses;
 * tls:// ones in any case (handed-over sockets are plain). */
static int
listen_all(struct daemon *d, const int *fds, size_t nfds, struct aq_error *err)
{
    for (size_t i = 0; i < nfds; i++)
        aq_listen_add_fd(d->listen, fds[i]);
    for (size_t i = 0; i < d->cfg->nlisten; i++) {
        if (nfds > 0 && strncmp(d->cfg->listen[i], "tls://", 6) != 0)
            continue;
        if (aq_listen_add(d->listen, d->cfg->listen[i], err) < 0)
            return -1;
    }
    return 0;
}

/* http jobs may not reach asyncqd itself: the real addresses of its
 * listeners (ports the system picked, sockets systemd handed over). */
static void
set_own_addresses(struct daemon *d, size_t nfds)
{
    size_t max = nfds + d->cfg->nlisten + 1, n;
    struct sockaddr_storage *addrs = xcalloc(max, sizeof *addrs);

    n = aq_listen_addresses(d->listen, addrs, max - 1);
    if (d->metrics != NULL && aq_metrics_address(d->metrics, &addrs[n]))
        n++;
    aq_broker_set_own_addresses(d->broker, addrs, n);
    free(addrs);
}

/* ---- jobs' processes ---- */

/* Where the processes of running jobs are recorded: the journal's
 * directory, else $RUNTIME_DIRECTORY, else nowhere (a new string, or
 * NULL). */
static char *
runfile_path(const struct daemon *d)
{
    /* With the postgres store journal.path is not used: no directory. */
    const char *dir =
        d->cfg->store.kind == AQ_STORE_JOURNAL ? d->journal_path : NULL;

    if (dir == NULL)
        dir = getenv("RUNTIME_DIRECTORY");
    if (dir == NULL || *dir == '\0')
        return NULL;
    return xasprintf("%.*s/" AQ_RUNFILE_NAME, (int)strcspn(dir, ":"), dir);
}

/* Runs the jobs in cgroups of their own when asyncqd has a delegated
 * cgroup v2; it is a child subreaper in any case. */
static void
procs_cgroup(struct daemon *d)
{
    struct aq_error err;

    /* Orphans of exec jobs re-parent to us, so the reaper finds them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    d->cgroup = aq_cgroup_open(NULL, &err);
    if (d->cgroup != NULL) {
        aq_procs_set_cgroup(d->procs, d->cgroup);
        aq_log(AQ_LOG_INFO,
               "cgroup: %s: each exec job runs in a cgroup of its own",
               aq_cgroup_path(d->cgroup));
    } else {
        aq_log(AQ_LOG_INFO,
               "%s; exec jobs' processes are tracked as a subreaper",
               err.message);
    }
}

/* Before any job runs again: ends what jobs of an earlier run left (that
 * run was killed, or crashed), so that no job runs twice at once. Returns
 * 0, or -1 with err. */
static int
procs_leftovers(struct daemon *d, struct aq_error *err)
{
    char *path = runfile_path(d);
    int n;

    if (path != NULL) {
        d->runfile = aq_runfile_open(path, err);
        free(path);
        if (d->runfile == NULL)
            return -1;
        n = aq_runfile_kill_leftovers(d->runfile, LEFTOVER_TIMEOUT_US);
        if (n > 0)
            aq_log(AQ_LOG_WARN,
                   "asyncqd: killed %d processes that jobs of an earlier run "
                   "left",
                   n);
        aq_procs_set_runfile(d->procs, d->runfile);
    }
    if (d->cgroup != NULL) {
        struct aq_error cerr;

        n = aq_cgroup_kill_leftovers(d->cgroup, LEFTOVER_TIMEOUT_US, &cerr);
        if (n < 0)
            aq_log(AQ_LOG_ERROR, "%s", cerr.message);
        else if (n > 0)
            aq_log(AQ_LOG_WARN,
                   "asyncqd: killed the processes of %d job cgroups of an "
                   "earlier run",
                   n);
    }
    return 0;
}

/* ---- main ---- */

static int
run(struct daemon *d)
{
    struct aq_error err;
    int fds[MAX_LISTEN_FDS];
    size_t nfds = aq_sd_listen_fds(fds, MAX_LISTEN_FDS);
    char *token = NULL;
    int rc = 1;

    d->journal_path = journal_path(d->cfg);
    if (d->repair && d->cfg->store.kind == AQ_STORE_POSTGRES) {
        aq_error_set(&err, AQ_ERR_INTERNAL,
                     "--repair: store.kind is postgres: there is no journal "
                     "to repair (the database is PostgreSQL's to repair)");
        goto fail;
    }
    if (d->repair && d->journal_path == NULL) {
        aq_error_set(&err, AQ_ERR_INTERNAL,
                     "--repair: journal.path is null: nothing to repair");
        goto fail;
    }
    if (d->cfg->auth_token_file != NULL &&
        (token = read_token(d->cfg->auth_token_file, &err)) == NULL)
        goto fail;
    raise_fd_limit();
    /* Precise timers: libevent's default coarse clock can fire a timer a
     * few milliseconds early, and a job's sleep or timeout must not. */
    event_set_log_callback(libevent_log_cb);
    struct event_config *ecfg = event_config_new();
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    /* Event changes made in one loop pass reach epoll as one epoll_ctl at
     * its end, or none when they cancel out: evhttp and bufferevents turn
     * read and write interest on and off several times per request (an
     * http job cost 6 epoll_ctl without this). No descriptor of ours is
     * dup()ed, the case libevent warns the changelist mishandles. */
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    d->base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    if (d->repair) {
        free(token);
        return journal_repair(d);
    }
    d->procs = aq_procs_new(d->base);
    procs_cgroup(d);
    d->broker = aq_broker_new(d->base, d->procs, d->cfg);
    if ((rc = store_open(d, &err)) != 0)
        goto fail;
    rc = 1; /* the failures below are ordinary ones */
    if (procs_leftovers(d, &err) < 0)
        goto fail;
    if (d->cfg->store.kind == AQ_STORE_POSTGRES &&
        (d->cluster = aq_pgcluster_new(
             d->base, d->broker, d->cfg->store.conninfo, d->cfg->store.schema,
             d->cfg->store.node, &err)) == NULL)
        goto fail;
    if (d->cluster != NULL &&
        aq_pgcluster_start(d->cluster, CLUSTER_START_MS, &err) < 0) {
        rc = 3; /* stopped by a signal */
        goto fail;
    }
    aq_broker_start(d->broker);
    d->methods = aq_methods_new(d->broker, token);
    if (d->cluster != NULL)
        aq_methods_set_pause_hook(d->methods, aq_pgcluster_paused, d->cluster);
    /* The dashboard's chart: done/failed per second, for 15 minutes. */
    d->history = aq_history_new(aq_clock_wall_us() / 1000000 - 1);
    aq_history_start(d->history, d->base, d->broker);
    aq_methods_set_history(d->methods, d->history);
    if (d->pgremote != NULL)
        aq_methods_set_remote(d->methods, d->pgremote);
    d->server = aq_server_new(d->base, d->cfg, &aq_methods_ops, d->methods);
    d->listen = aq_listen_new(d->base, accept_cb, d->server);
    if (d->cfg->tls != NULL) {
        d->tls = aq_tls_new(d->base, d->cfg, tls_ready_cb, d->server, &err);
        if (d->tls == NULL)
            goto fail;
        aq_listen_set_tls(d->listen, d->tls);
    }
    if (listen_all(d, fds, nfds, &err) < 0)
        goto fail;
    if (d->cfg->metrics != NULL &&
        (d->metrics = aq_metrics_new(d->base, d->cfg->metrics, d->broker,
                                     d->server, d->journal, &err)) == NULL)
        goto fail;
    if (d->metrics != NULL && d->store != NULL)
        aq_metrics_set_store(d->metrics, d->store);
    if (d->metrics != NULL)
        aq_metrics_set_rpc(d->metrics, token,
                           d->cfg->producers.max_request_bytes);
    set_own_addresses(d, nfds);
    d->sigterm_ev = evsignal_new(d->base, SIGTERM, stop_cb, d);
    d->sigint_ev = evsignal_new(d->base, SIGINT, stop_cb, d);
    d->sighup_ev = evsignal_new(d->base, SIGHUP, reload_cb, d);
    event_add(d->sigterm_ev, NULL);
    event_add(d->sigint_ev, NULL);
    event_add(d->sighup_ev, NULL);
    aq_log(AQ_LOG_INFO, "asyncqd %s: ready, %zu queues, pid %d", ASYNCQ_VERSION,
           d->cfg->nqueues, (int)getpid());
    if (d->metrics != NULL)
        aq_metrics_set_health(d->metrics, AQ_HEALTH_READY);
    /* From the loop's first pass: its epoll_wait is what puts the
     * listeners' changelisted events into epoll, and READY=1 promises a
     * client is served at once. */
    struct timeval now = {0, 0};
    event_base_once(d->base, -1, EV_TIMEOUT, systemd_ready_cb, d, &now);
    free(token);
    event_base_dispatch(d->base);
    return 0;
fail:
    free(token);
    if (rc == 3) { /* stopped by a signal while the store connected */
        aq_log(AQ_LOG_INFO, "%s", err.message);
        return 0;
    }
    fprintf(stderr, "asyncqd: %s\n", err.message);
    return rc;
}

static void
daemon_free(struct daemon *d)
{
    if (d->sigterm_ev != NULL) {
        event_free(d->sigterm_ev);
        event_free(d->sigint_ev);
        event_free(d->sighup_ev);
    }
    if (d->status_ev != NULL)
        event_free(d->status_ev);
    if (d->watchdog_ev != NULL)
        event_free(d->watchdog_ev);
    aq_metrics_free(d->metrics);
    aq_listen_free(d->listen);
    aq_tls_free(d->tls);
    aq_server_free(d->server);
    aq_methods_free(d->methods);
    aq_pgremote_free(d->pgremote); /* after the calls that asked it */
    aq_history_free(d->history);
    aq_pgcluster_free(d->cluster);
    aq_broker_free(d->broker); /* its store first: flushed and synced */
    aq_procs_free(d->procs);
    /* No child outlives the daemon, not even one that left its job's
     * process group (spec section 6). */
    if (d->base != NULL && aq_procs_kill_all(KILL_ALL_TIMEOUT_US) > 0)
        aq_log(AQ_LOG_INFO, "asyncqd: killed processes left by jobs");
    aq_runfile_free(d->runfile); /* all ended: nothing for the next run */
    aq_cgroup_free(d->cgroup);
    if (d->base != NULL)
        event_base_free(d->base);
    aq_config_free(d->cfg);
    free(d->journal_path);
}

int
main(int argc, char **argv)
{
    struct daemon d = {.config_path = DEFAULT_CONFIG};
    bool check_only = false;
    struct aq_error err;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if ((strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) &&
            i + 1 < argc)
            d.config_path = argv[++i];
        else if (strncmp(a, "--config=", 9) == 0)
            d.config_path = a + 9;
        else if (strcmp(a, "--check-config") == 0)
            check_only = true;
        else if (strcmp(a, "--repair") == 0)
            d.repair = true;
        else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            printf("asyncqd %s\n", ASYNCQ_VERSION);
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "asyncqd: unknown argument: %s\n", a);
            usage(stderr);
            return 1;
        }
    }
    aq_xmalloc_hook_libs();
    /* glibc gives the top of the heap back whenever 128 KiB of it is free:
     * with connections' read buffers coming and going that is a brk pair
     * per loop pass. The broker's malloc_trim after bursts returns memory
     * instead. */
    mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
    /* A client that goes away must not kill us: writes get EPIPE. */
    signal(SIGPIPE, SIG_IGN);
    /* Under systemd with output to the journal: "<N>" priorities. */
    aq_log_detect_journal();
    if ((d.cfg = aq_config_load(d.config_path, &err)) == NULL) {
        fprintf(stderr, "asyncqd: %s\n", err.message);
        return 1;
    }
    if (check_only && d.cfg->tls != NULL && aq_tls_check(d.cfg, &err) < 0) {
        fprintf(stderr, "asyncqd: %s: %s\n", d.config_path, err.message);
        aq_config_free(d.cfg);
        return 1;
    }
    if (check_only) {
        printf("asyncqd: %s: config OK (%zu queues)\n", d.config_path,
               d.cfg->nqueues);
        aq_config_free(d.cfg);
        return 0;
    }
    aq_log_set_level(d.cfg->log_level);
    aq_log_set_format(d.cfg->log_format);
    rc = run(&d);
    daemon_free(&d);
    return rc;
}
