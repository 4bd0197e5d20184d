/* SPDX-License-Identifier: MIT */
/*
 * tools/asyncq-bench.c: the redis-benchmark of asyncq. C connections put N
 * jobs of D-byte payloads, each keeping P requests in flight (pipelined),
 * or at a fixed offered rate (--rate); then a join waits until every job is
 * done. Reports ingest (puts acknowledged per second), end to end (first
 * put to join answered), put->ack and put->done latency percentiles (a
 * sample of puts carry "wait":true, answered when the job is done), and the
 * daemon's RSS before and after when it runs on this machine. With
 * --args, every put carries that JSON object as its args (an http job's
 * URL, say) instead of the generated {"p":"xxx..."} payload.
 * Replies are matched by id without parsing JSON, so the generator stays
 * cheaper than the server it measures. Bounded by -n and --max-seconds.
 */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define MAX_CONNS 1024
#define RECV_CHUNK (256 * 1024)

struct opts {
    const char *server, *queue, *kind;
    char *args; /* --args, compact JSON (an object); NULL: the payload */
    int conns, window, payload, sample_done;
    long total;
    double rate, max_seconds;
    bool json, notify, no_join, durable_check;
};

struct client {
    int fd;
    long share, sent, answered;
    char *out;
    size_t out_len, out_off, out_cap;
    char *in;
    size_t in_len, in_cap;
};

struct run {
    const struct opts *o;
    struct client *cl;
    double *sent_at; /* by request id (1..total): monotonic seconds */
    bool *acked;     /* by id: put acknowledged without error */
    long *job_of;    /* by id: the job id the reply named */
    double *ack_lat, *done_lat;
    long n_ack, n_done, errors, answered;
    long next_id;
    char *payload;
};

/* Releases what main allocated: everything is freed, so that the
 * sanitizers' leak check can run on the tool like on the rest. */
static void
run_free(struct run *r, char *buf, int ctl)
{
    for (int i = 0; i < r->o->conns; i++) {
        if (r->cl[i].fd >= 0)
            close(r->cl[i].fd);
        free(r->cl[i].out);
        free(r->cl[i].in);
    }
    free(r->cl);
    free(r->sent_at);
    free(r->acked);
    free(r->job_of);
    free(r->ack_lat);
    free(r->done_lat);
    free(r->payload);
    free(buf);
    close(ctl);
    free(r->o->args);
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "asyncq-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(3);
}

static int
dial(const char *server)
{
    const char *hp = strncmp(server, "tcp://", 6) == 0 ? server + 6 : server;
    int fd, one = 1;

    if (strncmp(server, "unix:", 5) == 0) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};

        snprintf(sun.sun_path, sizeof sun.sun_path, "%s", server + 5);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0)
            die("connect %s failed", server);
        return fd;
    }
    const char *colon = strrchr(hp, ':');
    char host[256];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;

    if (colon == NULL || (size_t)(colon - hp) >= sizeof host)
        die("%s: expected HOST:PORT, tcp://HOST:PORT or unix:PATH", server);
    snprintf(host, sizeof host, "%.*s", (int)(colon - hp), hp);
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        die("%s: cannot resolve", server);
    fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0)
        die("connect %s failed", server);
    freeaddrinfo(res);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* One request and its reply on a blocking socket; returns the reply line
 * (a static buffer) or NULL. */
static const char *
rpc(int fd, const char *req)
{
    static char buf[1 << 20];
    size_t len = 0;

    if (write(fd, req, strlen(req)) < 0)
        return NULL;
    while (len < sizeof buf - 1) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);

        if (n <= 0)
            return NULL;
        len += (size_t)n;
        buf[len] = '\0';
        if (memchr(buf, '\n', len) != NULL)
            return buf;
    }
    return buf;
}

/* The daemon's RSS in kB, through its pid from stats, when it runs here. */
static long
daemon_rss_kb(int fd)
{
    const char *r = rpc(fd, "{\"id\":1,\"method\":\"stats\"}\n");
    const char *p = r != NULL ? strstr(r, "\"pid\":") : NULL;
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    if (p == NULL)
        return -1;
    snprintf(path, sizeof path, "/proc/%ld/status", strtol(p + 6, NULL, 10));
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    return kb;
}

static void
out_add(struct client *c, const char *s, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

/* Queues one put on c; with an id unless --notify. */
static void
send_put(struct run *r, struct client *c)
{
    const struct opts *o = r->o;
    long id = ++r->next_id;
    bool wait = !o->notify && o->sample_done > 0 && id % o->sample_done == 0;
    char head[320];
    int n;

    if (o->notify)
        n = snprintf(head, sizeof head,
                     "{\"method\":\"put\",\"params\":{\"queue\":\"%s\","
                     "\"kind\":\"%s\",\"args\":",
                     o->queue, o->kind);
    else
        n = snprintf(head, sizeof head,
                     "{\"id\":%ld,\"method\":\"put\",\"params\":{\"queue\":"
                     "\"%s\",\"kind\":\"%s\",%s\"args\":",
                     id, o->queue, o->kind, wait ? "\"wait\":true," : "");
    out_add(c, head, (size_t)n);
    if (o->args != NULL) {
        out_add(c, o->args, strlen(o->args));
    } else {
        out_add(c, "{\"p\":\"", 6);
        out_add(c, r->payload, (size_t)o->payload);
        out_add(c, "\"}", 2);
    }
    out_add(c, "}}\n", 3);
    r->sent_at[id] = now_s();
    c->sent++;
}

/* Handles the complete reply lines of c. */
static void
read_replies(struct run *r, struct client *c)
{
    char *p = c->in, *end = c->in + c->in_len, *nl;
    double t = now_s();

    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        char *id_at = memmem(p, (size_t)(nl - p), "\"id\":", 5);
        long id = id_at != NULL ? strtol(id_at + 5, NULL, 10) : 0;
        bool is_err = memmem(p, (size_t)(nl - p), "\"error\"", 7) != NULL;
        bool is_record = memmem(p, (size_t)(nl - p), "\"queue\"", 7) != NULL;

        if (id > 0 && id <= r->o->total) {
            double lat = t - r->sent_at[id];

            char *job_at = memmem(p, (size_t)(nl - p), "\"job\":", 6);

            if (is_err)
                r->errors++;
            else
                r->acked[id] = true;
            if (job_at != NULL)
                r->job_of[id] = strtol(job_at + 6, NULL, 10);
            if (!is_err && is_record)
                r->done_lat[r->n_done++] = lat; /* a "wait" reply */
            else if (!is_err)
                r->ack_lat[r->n_ack++] = lat;
            c->answered++;
            r->answered++;
        }
        p = nl + 1;
    }
    c->in_len = (size_t)(end - p);
    memmove(c->in, p, c->in_len);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double
percentile(double *v, long n, double q)
{
    long i;

    if (n == 0)
        return 0;
    i = (long)(q * (double)n);
    return v[i < n ? i : n - 1];
}

static void
usage(void)
{
    fputs(
        "usage: asyncq-bench [-s SERVER] [-c CONNS] [-P WINDOW] [-n TOTAL]\n"
        "                    [-d PAYLOAD_BYTES | -a JSON] [-q QUEUE] "
        "[-k KIND]\n"
        "                    [--notify] [--rate JOBS_PER_S] [--no-join]\n"
        "                    [--sample-done K] [--durable-check]\n"
        "                    [--max-seconds S] [--json]\n"
        "  SERVER: HOST:PORT, tcp://HOST:PORT or unix:PATH "
        "(default $ASYNCQ_SERVER or 127.0.0.1:7878)\n"
        "  -a, --args JSON the args object of every put, instead of "
        "{\"p\":\"xxx...\"} of -d\n"
        "                  bytes: -k http -a "
        "'{\"url\":\"http://127.0.0.1:8080/\"}'\n"
        "  --notify        fire-and-forget puts (no id, no reply)\n"
        "  --rate R        offer R puts/s in all (for latency), not as fast "
        "as possible\n"
        "  --sample-done K every K-th put carries \"wait\":true, for put->done "
        "latency (0: none; default 100, 0 with --no-join)\n"
        "  --durable-check after the join, check that every acknowledged "
        "job exists\n",
        stderr);
    exit(2);
}

/* --args: must be a JSON object; kept compact for send_put. Exits 2
 * otherwise, as a usage error. */
static void
load_args(struct opts *o, const char *v)
{
    json_error_t jerr;
    json_t *args = json_loads(v, JSON_REJECT_DUPLICATES, &jerr);

    if (args == NULL) {
        fprintf(stderr, "asyncq-bench: --args: invalid JSON: %s (column %d)\n",
                jerr.text, jerr.column);
        exit(2);
    }
    if (!json_is_object(args)) {
        fprintf(stderr, "asyncq-bench: --args: expected a JSON object\n");
        exit(2);
    }
    free(o->args);
    o->args = json_dumps(args, JSON_COMPACT);
    json_decref(args);
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--json") == 0)
            o->json = true;
        else if (strcmp(a, "--notify") == 0)
            o->notify = true;
        else if (strcmp(a, "--no-join") == 0)
            o->no_join = true;
        else if (strcmp(a, "--durable-check") == 0)
            o->durable_check = true;
        else if (strcmp(a, "--e2e") == 0)
            o->no_join = false; /* the default: kept for scripts */
        else if (v == NULL)
            usage();
        else if (++i, strcmp(a, "-s") == 0)
            o->server = v;
        else if (strcmp(a, "-c") == 0)
            o->conns = atoi(v);
        else if (strcmp(a, "-P") == 0)
            o->window = atoi(v);
        else if (strcmp(a, "-n") == 0)
            o->total = atol(v);
        else if (strcmp(a, "-d") == 0)
            o->payload = atoi(v);
        else if (strcmp(a, "-q") == 0)
            o->queue = v;
        else if (strcmp(a, "-k") == 0)
            o->kind = v;
        else if (strcmp(a, "-a") == 0 || strcmp(a, "--args") == 0)
            load_args(o, v);
        else if (strcmp(a, "--rate") == 0)
            o->rate = atof(v);
        else if (strcmp(a, "--sample-done") == 0) {
            o->sample_done = atoi(v);
            if (o->sample_done < 0)
                usage();
        } else if (strcmp(a, "--max-seconds") == 0)
            o->max_seconds = atof(v);
        else
            usage();
    }
    if (o->conns < 1 || o->conns > MAX_CONNS || o->window < 1 || o->total < 1 ||
        o->payload < 0 || o->payload > 1000000 || o->rate < 0 ||
        o->max_seconds <= 0)
        usage();
    /* Without a join nothing says consumers run: a put that waits for its
     * job could wait for ever and hold a window slot, so none unless
     * asked for. */
    if (o->sample_done < 0)
        o->sample_done = o->no_join ? 0 : 100;
}

/* After the join: every acknowledged id must exist and be done. */
static long
durable_check(struct run *r, int fd)
{
    long missing = 0;
    char req[128];

    for (long id = 1; id <= r->o->total; id++) {
        const char *rep;

        if (!r->acked[id])
            continue;
        snprintf(req, sizeof req,
                 "{\"id\":1,\"method\":\"status\",\"params\":{\"job\":%ld}}\n",
                 r->job_of[id]);
        rep = rpc(fd, req);
        if (rep == NULL || strstr(rep, "\"state\":\"done\"") == NULL)
            missing++;
    }
    return missing;
}

int
main(int argc, char **argv)
{
    const char *env = getenv("ASYNCQ_SERVER");
    struct opts o = {.server = env != NULL && *env ? env : "127.0.0.1:7878",
                     .queue = "default",
                     .kind = "echo",
                     .conns = 4,
                     .window = 64,
                     .payload = 100,
                     .sample_done = -1, /* 100, or 0 with --no-join */
                     .total = 100000,
                     .max_seconds = 600};
    struct run r = {.o = &o};
    struct pollfd pfd[MAX_CONNS];
    char *buf = malloc(RECV_CHUNK);
    double start, ingest_s, e2e_s, deadline;
    long rss_before, rss_after, sent_total = 0, missing = -1;
    int ctl;

    parse_args(argc, argv, &o);
    if (o.notify)
        o.sample_done = 0;
    r.payload = malloc((size_t)o.payload + 1);
    memset(r.payload, 'x', (size_t)o.payload);
    r.sent_at = calloc((size_t)o.total + 1, sizeof *r.sent_at);
    r.acked = calloc((size_t)o.total + 1, sizeof *r.acked);
    r.job_of = calloc((size_t)o.total + 1, sizeof *r.job_of);
    r.ack_lat = calloc((size_t)o.total + 1, sizeof *r.ack_lat);
    r.done_lat = calloc((size_t)o.total + 1, sizeof *r.done_lat);
    r.cl = calloc((size_t)o.conns, sizeof *r.cl);
    ctl = dial(o.server);
    rss_before = daemon_rss_kb(ctl);
    for (int i = 0; i < o.conns; i++) {
        r.cl[i].fd = dial(o.server);
        r.cl[i].share = o.total / o.conns + (i < o.total % o.conns);
        r.cl[i].in = malloc(RECV_CHUNK);
        r.cl[i].in_cap = RECV_CHUNK;
    }

    start = now_s();
    deadline = start + o.max_seconds;
    for (;;) {
        bool all_sent = sent_total == o.total;
        bool all_answered = o.notify || r.answered == o.total;
        int wait_ms = 1000;

        if (all_sent && all_answered) {
            bool flushed = true;

            for (int i = 0; i < o.conns; i++)
                flushed = flushed && r.cl[i].out_off == r.cl[i].out_len;
            if (flushed)
                break;
        }
        if (now_s() > deadline) {
            fprintf(stderr,
                    "asyncq-bench: stopped at --max-seconds with %ld "
                    "of %ld answered\n",
                    r.answered, o.total);
            return 1;
        }
        for (int i = 0; i < o.conns; i++) {
            struct client *c = &r.cl[i];

            if (o.rate > 0) {
                /* Open loop: what the schedule says is due by now. */
                double due = (now_s() - start) * o.rate / o.conns;

                while (c->sent < c->share && (double)c->sent < due &&
                       (o.notify || c->sent - c->answered < o.window)) {
                    send_put(&r, c);
                    sent_total++;
                }
                wait_ms = 1;
            } else {
                while (c->sent < c->share &&
                       (o.notify || c->sent - c->answered < o.window)) {
                    send_put(&r, c);
                    sent_total++;
                }
            }
            pfd[i].fd = c->fd;
            pfd[i].events = (o.notify ? 0 : POLLIN) |
                            (c->out_off < c->out_len ? POLLOUT : 0);
        }
        if (poll(pfd, (nfds_t)o.conns, wait_ms) < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        for (int i = 0; i < o.conns; i++) {
            struct client *c = &r.cl[i];

            if (pfd[i].revents & POLLOUT) {
                ssize_t n =
                    write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

                if (n > 0 && (c->out_off += (size_t)n) == c->out_len)
                    c->out_off = c->out_len = 0;
            }
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t n = read(c->fd, buf, RECV_CHUNK);

                if (n <= 0)
                    die("%s closed a connection", o.server);
                if (c->in_len + (size_t)n > c->in_cap) {
                    c->in_cap = (c->in_len + (size_t)n) * 2;
                    c->in = realloc(c->in, c->in_cap);
                }
                memcpy(c->in + c->in_len, buf, (size_t)n);
                c->in_len += (size_t)n;
                read_replies(&r, c);
            }
        }
    }
    ingest_s = now_s() - start;
    if (!o.no_join) {
        char join[256];
        const char *rep;

        snprintf(join, sizeof join,
                 "{\"id\":1,\"method\":\"join\",\"params\":{\"queue\":\"%s\"}}"
                 "\n",
                 o.queue);
        rep = rpc(ctl, join);
        if (rep == NULL || strstr(rep, "\"error\"") != NULL)
            die("join failed: %s", rep != NULL ? rep : "no reply");
    }
    e2e_s = now_s() - start;
    if (o.durable_check && !o.notify)
        missing = durable_check(&r, ctl);
    rss_after = daemon_rss_kb(ctl);
    qsort(r.ack_lat, (size_t)r.n_ack, sizeof *r.ack_lat, cmp_double);
    qsort(r.done_lat, (size_t)r.n_done, sizeof *r.done_lat, cmp_double);

#define US(v) ((v)*1e6)
    if (o.json) {
        printf("{\"jobs\":%ld,\"connections\":%d,\"window\":%d,\"payload\":%d,"
               "\"kind\":\"%s\",\"notify\":%s,\"rate\":%.0f,\"errors\":%ld,"
               "\"ingest_jobs_per_s\":%.0f,\"e2e_jobs_per_s\":%.0f,"
               "\"ack_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f},"
               "\"done_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f},"
               "\"rss_kb_before\":%ld,\"rss_kb_after\":%ld,\"args\":%s",
               o.total, o.conns, o.window, o.payload, o.kind,
               o.notify ? "true" : "false", o.rate, r.errors,
               (double)o.total / ingest_s,
               o.no_join ? 0 : (double)o.total / e2e_s,
               US(percentile(r.ack_lat, r.n_ack, 0.50)),
               US(percentile(r.ack_lat, r.n_ack, 0.99)),
               US(percentile(r.ack_lat, r.n_ack, 0.999)),
               US(percentile(r.done_lat, r.n_done, 0.50)),
               US(percentile(r.done_lat, r.n_done, 0.99)),
               US(percentile(r.done_lat, r.n_done, 0.999)), rss_before,
               rss_after, o.args != NULL ? o.args : "null");
        if (missing >= 0)
            printf(",\"missing\":%ld", missing);
        printf("}\n");
    } else {
        printf("%ld %s jobs, %d connections, %s, ", o.total, o.kind, o.conns,
               o.rate > 0 ? "fixed rate" : "pipelined");
        if (o.args != NULL)
            printf("args %s", o.args);
        else
            printf("%d-byte payload", o.payload);
        printf("%s\n", o.notify ? ", notifications" : "");
        if (o.rate > 0)
            printf("  offered:     %.0f jobs/s\n", o.rate);
        else
            printf("  window:      %d\n", o.window);
        printf("  ingest:      %.0f jobs/s\n", (double)o.total / ingest_s);
        if (!o.no_join)
            printf("  end to end:  %.0f jobs/s (%.2f s)\n",
                   (double)o.total / e2e_s, e2e_s);
        if (r.n_ack > 0)
            printf("  put->ack:    p50 %.0f us, p99 %.0f us, p999 %.0f us\n",
                   US(percentile(r.ack_lat, r.n_ack, 0.50)),
                   US(percentile(r.ack_lat, r.n_ack, 0.99)),
                   US(percentile(r.ack_lat, r.n_ack, 0.999)));
        if (r.n_done > 0)
            printf("  put->done:   p50 %.0f us, p99 %.0f us, p999 %.0f us "
                   "(%ld sampled)\n",
                   US(percentile(r.done_lat, r.n_done, 0.50)),
                   US(percentile(r.done_lat, r.n_done, 0.99)),
                   US(percentile(r.done_lat, r.n_done, 0.999)), r.n_done);
        if (rss_before >= 0)
            printf("  daemon RSS:  %ld kB before, %ld kB after\n", rss_before,
                   rss_after);
        printf("  errors:      %ld\n", r.errors);
        if (missing >= 0)
            printf("  durable check: %ld acknowledged jobs missing or not "
                   "done\n",
                   missing);
    }
    run_free(&r, buf, ctl);
    return r.errors == 0 && missing <= 0 ? 0 : 1;
}
