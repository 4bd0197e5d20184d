/* SPDX-License-Identifier: MIT */
/*
 * bench/peer_bench.c: the load generator for asyncq's peers in
 * bench/compare, the same shape as tools/asyncq-bench: C producer
 * connections put N jobs of D bytes, each keeping P puts in flight
 * (pipelined) or at a fixed offered rate (--rate), and, for end to end,
 * consumer connections take and finish the jobs one at a time.
 *
 *   beanstalk  ingest: put 0 0 60 D (INSERTED replies)
 *              e2e:    consumers loop reserve, then delete <id>
 *   redis      ingest: RPUSH q <data>
 *              e2e:    consumers loop BLMOVE q processing LEFT LEFT 1, then
 *                      LREM processing 1 <data> (the reliable-queue pattern)
 *              e2e-blpop: consumers loop BLPOP q 1
 *   asyncq     ingest: put of an echo job {"p":"<data>"} to the default
 *              queue; so that bench/compare can time asyncqd with the very
 *              generator it times the peers with
 *              e2e:    remote workers (SPEC section 10) on the queue -q
 *                      names (kind remote): each consumer keeps one
 *                      get {max: --get-max, wait: 1} waiting and answers
 *                      every job it gets with a task_done notification
 *                      (no reply), sent together with its next get; with
 *                      --task-done call each task_done has an id and is
 *                      timed to its reply (put -> lease -> task_done); the
 *                      clock stops at a ping answered after the last one
 *
 * Each payload starts with its job's sequence number (15 digits), so Redis
 * values are distinct (LREM removes the right one) and a consumer can time
 * put -> done. Replies come in order on each connection, so they are matched
 * by position; RESP and beanstalkd's lines are parsed by hand. One thread,
 * one poll loop. Bounded by -n, --max-seconds and a 10 s stall check.
 *
 * --idle N: opens N connections that send nothing and holds them until a
 * signal, --max-seconds, or (when stdin is a pipe) stdin closing; prints
 * "connected N" once all are open. For memory per idle connection, against
 * any TCP server ("tcp"). With --ping, each connection first sends one
 * request and reads its reply (beanstalk: list-tube-used; redis: PING;
 * asyncq: ping), as a client that has been used and then sits idle.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define READ_CHUNK (256 * 1024)
#define ID_DIGITS 15
#define STALL_S 10.0

enum proto { BEANSTALK, REDIS, ASYNCQ, TCP }; /* TCP: --idle only */
enum mode { M_INGEST, M_E2E, M_E2E_BLPOP };
enum cstate { C_FETCH, C_FINISH }; /* consumer: waiting for which reply */

struct opts {
    enum proto proto;
    enum mode mode;
    const char *host;
    int port, producers, consumers, window, payload, get_max;
    const char *queue; /* asyncq e2e: the remote queue */
    bool td_call;      /* asyncq e2e: task_done with an id, timed */
    long total, idle;
    double rate, max_seconds;
    bool json, ping;
};

struct conn {
    int fd;
    bool consumer;
    long share, sent, acked; /* producer */
    long *ids;               /* producer: sequence numbers in send order */
    enum cstate state;       /* consumer */
    long cur_seq;            /* consumer: the job being finished */
    char *out;
    size_t out_len, out_off, out_cap;
    char *in;
    size_t in_len, in_cap;
};

struct run {
    const struct opts *o;
    struct conn *cs;
    int nconns;
    char *payload;
    double *sent_at; /* by sequence number 1..total */
    double *ack_lat, *done_lat;
    long n_ack, n_done, next_seq, acked, consumed, errors;
    long pongs;    /* asyncq e2e: final pings answered */
    bool flushing; /* asyncq e2e: the final pings are out */
    double last_progress;
};

static const char *const proto_names[] = {"beanstalk", "redis", "asyncq",
                                          "tcp"};

static volatile sig_atomic_t stop_idle;

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

    fprintf(stderr, "peer_bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(3);
}

static void
usage(void)
{
    fputs("usage: peer_bench beanstalk|redis|asyncq [-h HOST] [-p PORT] "
          "[-c PRODUCERS] [-C CONSUMERS]\n"
          "                  [-P WINDOW] [-n TOTAL] [-d BYTES] "
          "[--mode ingest|e2e|e2e-blpop]\n"
          "                  [--rate R] [--max-seconds S] [--json]\n"
          "                  asyncq --mode e2e: -q QUEUE [--get-max N] "
          "[--task-done notify|call]\n"
          "       peer_bench beanstalk|redis|asyncq|tcp --idle N [--ping] "
          "[-h HOST] -p PORT\n"
          "                  [--max-seconds S]\n"
          "  ingest     producers put N jobs (no consumer); rate = puts "
          "acknowledged/s\n"
          "  e2e        producers put while consumers take and finish "
          "(beanstalk: reserve +\n"
          "             delete; redis: BLMOVE + LREM); rate = jobs finished/s\n"
          "  e2e-blpop  redis only: consumers BLPOP\n"
          "  asyncq     ingest: echo jobs on the default queue; e2e: remote "
          "workers (get +\n"
          "             task_done) on the remote queue -q QUEUE\n"
          "  --rate R   offer R puts/s in all (open loop), for put->ack "
          "latency\n"
          "  --idle N   hold N idle connections until a signal (memory per "
          "connection)\n"
          "  --ping     with --idle: one request and its reply on each first "
          "(not tcp)\n"
          "Defaults: -c 4 -C 4 -P 64 -n 100000 -d 100 --mode ingest "
          "--max-seconds 300;\n"
          "port 11300 (beanstalk) or 6379 (redis). Exit 1 if stalled or on "
          "error replies.\n",
          stderr);
    exit(2);
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
    if (argc < 2)
        usage();
    if (strcmp(argv[1], "beanstalk") == 0)
        o->proto = BEANSTALK;
    else if (strcmp(argv[1], "redis") == 0)
        o->proto = REDIS;
    else if (strcmp(argv[1], "asyncq") == 0)
        o->proto = ASYNCQ;
    else if (strcmp(argv[1], "tcp") == 0)
        o->proto = TCP;
    else
        usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--json") == 0)
            o->json = true;
        else if (strcmp(a, "--ping") == 0)
            o->ping = true;
        else if (v == NULL)
            usage();
        else if (++i, strcmp(a, "-h") == 0)
            o->host = v;
        else if (strcmp(a, "-p") == 0)
            o->port = atoi(v);
        else if (strcmp(a, "-c") == 0)
            o->producers = atoi(v);
        else if (strcmp(a, "-C") == 0)
            o->consumers = atoi(v);
        else if (strcmp(a, "-P") == 0)
            o->window = atoi(v);
        else if (strcmp(a, "-n") == 0)
            o->total = atol(v);
        else if (strcmp(a, "-d") == 0)
            o->payload = atoi(v);
        else if (strcmp(a, "--rate") == 0)
            o->rate = atof(v);
        else if (strcmp(a, "--max-seconds") == 0)
            o->max_seconds = atof(v);
        else if (strcmp(a, "-q") == 0)
            o->queue = v;
        else if (strcmp(a, "--get-max") == 0)
            o->get_max = atoi(v);
        else if (strcmp(a, "--task-done") == 0) {
            if (strcmp(v, "call") != 0 && strcmp(v, "notify") != 0)
                usage();
            o->td_call = strcmp(v, "call") == 0;
        } else if (strcmp(a, "--idle") == 0)
            o->idle = atol(v);
        else if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "ingest") == 0)
                o->mode = M_INGEST;
            else if (strcmp(v, "e2e") == 0)
                o->mode = M_E2E;
            else if (strcmp(v, "e2e-blpop") == 0)
                o->mode = M_E2E_BLPOP;
            else
                usage();
        } else
            usage();
    }
    if (o->port == 0)
        o->port = o->proto == BEANSTALK ? 11300 : o->proto == REDIS ? 6379 : 7878;
    if (o->consumers < 0)
        o->consumers = o->mode == M_INGEST ? 0 : 4;
    if (o->mode == M_INGEST)
        o->consumers = 0;
    if (o->port < 1 || o->port > 65535 || o->producers < 1 ||
        o->consumers < 0 || o->producers + o->consumers > MAX_CONNS ||
        o->window < 1 || o->total < 1 || o->payload < 1 ||
        o->payload > 1000000 || o->rate < 0 || o->max_seconds <= 0 ||
        o->idle < 0 || o->get_max < 1 || o->get_max > 1000)
        usage();
    if (o->proto == TCP && o->idle == 0)
        die("tcp is for --idle only");
    if (o->proto == ASYNCQ && o->idle == 0 && o->mode == M_E2E_BLPOP)
        die("asyncq is for --mode ingest or e2e (and --idle)");
    if (o->proto == ASYNCQ && o->mode == M_E2E && o->queue == NULL)
        die("asyncq --mode e2e needs -q QUEUE (a queue of kind remote)");
    if (o->ping && (o->idle == 0 || o->proto == TCP))
        die("--ping is for --idle with beanstalk, redis or asyncq");
    if (o->mode == M_E2E_BLPOP && o->proto != REDIS)
        die("--mode e2e-blpop is for redis only");
    if (o->mode != M_INGEST && o->consumers < 1)
        die("--mode e2e needs -C >= 1");
}

static int
dial(const struct opts *o)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)o->port)};
    int fd, one = 1;

    if (inet_pton(AF_INET, o->host, &sin.sin_addr) != 1)
        die("-h %s: expected a dotted IPv4 address", o->host);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
        die("connect %s:%d: %s", o->host, o->port, strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void
out_add(struct conn *c, const void *s, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
        if (c->out == NULL)
            die("out of memory");
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

static void
out_fmt(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
out_fmt(struct conn *c, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    out_add(c, buf, (size_t)n);
}

/* ---- requests ---- */

static void
send_put(struct run *r, struct conn *c)
{
    const struct opts *o = r->o;
    long seq = ++r->next_seq;

    if (o->payload >= ID_DIGITS) {
        long v = seq;

        for (int k = ID_DIGITS - 1; k >= 0; k--, v /= 10)
            r->payload[k] = (char)('0' + v % 10);
    }
    if (o->proto == ASYNCQ) {
        if (o->queue != NULL)
            out_fmt(c, "{\"id\":%ld,\"method\":\"put\",\"params\":{"
                       "\"queue\":\"%s\",\"args\":{\"p\":\"", seq, o->queue);
        else
            out_fmt(c, "{\"id\":%ld,\"method\":\"put\",\"params\":{"
                       "\"kind\":\"echo\",\"args\":{\"p\":\"", seq);
        out_add(c, r->payload, (size_t)o->payload);
        out_add(c, "\"}}}\n", 5);
        c->ids[c->sent++] = seq;
        r->sent_at[seq] = now_s();
        return;
    }
    if (o->proto == BEANSTALK)
        out_fmt(c, "put 0 0 60 %d\r\n", o->payload);
    else
        out_fmt(c, "*3\r\n$5\r\nRPUSH\r\n$1\r\nq\r\n$%d\r\n", o->payload);
    out_add(c, r->payload, (size_t)o->payload);
    out_add(c, "\r\n", 2);
    c->ids[c->sent++] = seq;
    r->sent_at[seq] = now_s();
}

static void
send_fetch(const struct run *r, struct conn *c)
{
    static const char blmove[] = "*6\r\n$6\r\nBLMOVE\r\n$1\r\nq\r\n"
                                 "$10\r\nprocessing\r\n$4\r\nLEFT\r\n"
                                 "$4\r\nLEFT\r\n$1\r\n1\r\n";
    static const char blpop[] = "*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n1\r\n";

    if (r->o->proto == ASYNCQ)
        out_fmt(c,
                "{\"id\":0,\"method\":\"get\",\"params\":{\"queue\":\"%s\","
                "\"max\":%d,\"wait\":1}}\n",
                r->o->queue, r->o->get_max);
    else if (r->o->proto == BEANSTALK)
        out_add(c, "reserve\r\n", 9);
    else if (r->o->mode == M_E2E_BLPOP)
        out_add(c, blpop, sizeof blpop - 1);
    else
        out_add(c, blmove, sizeof blmove - 1);
    c->state = C_FETCH;
}

/* ---- replies ---- */

/* One RESP reply at p; returns its length, 0 if incomplete, -1 if not RESP.
 * For an array, str/len are its last bulk string. */
struct resp {
    char type;
    long num;
    const char *str;
    size_t len;
};

static long
resp_parse(const char *p, size_t n, struct resp *r)
{
    const char *nl = n > 0 ? memmem(p, n, "\r\n", 2) : NULL;
    size_t head;

    if (nl == NULL)
        return 0;
    head = (size_t)(nl - p) + 2;
    r->type = p[0];
    r->str = NULL;
    r->len = 0;
    switch (p[0]) {
    case '+':
    case '-':
        r->str = p + 1;
        r->len = (size_t)(nl - p - 1);
        return (long)head;
    case ':':
        r->num = strtol(p + 1, NULL, 10);
        return (long)head;
    case '$':
        r->num = strtol(p + 1, NULL, 10);
        if (r->num < 0)
            return (long)head;
        if (n < head + (size_t)r->num + 2)
            return 0;
        r->str = p + head;
        r->len = (size_t)r->num;
        return (long)(head + (size_t)r->num + 2);
    case '*': {
        size_t off = head;

        r->num = strtol(p + 1, NULL, 10);
        for (long i = 0; i < r->num; i++) {
            struct resp e;
            long k = resp_parse(p + off, n - off, &e);

            if (k <= 0)
                return k;
            off += (size_t)k;
            if (e.type == '$' && e.str != NULL) {
                r->str = e.str;
                r->len = e.len;
            }
        }
        return (long)off;
    }
    default:
        return -1;
    }
}

static void
reply_error(struct run *r, const char *p, size_t n)
{
    if (r->errors++ < 5)
        fprintf(stderr, "peer_bench: unexpected reply: %.*s\n",
                (int)(n > 120 ? 120 : n), p);
}

static long
seq_of(const struct run *r, const char *data, size_t len)
{
    char buf[ID_DIGITS + 1];

    if (r->o->payload < ID_DIGITS || len < ID_DIGITS)
        return 0;
    memcpy(buf, data, ID_DIGITS);
    buf[ID_DIGITS] = '\0';
    return strtol(buf, NULL, 10);
}

static void
producer_ack(struct run *r, struct conn *c, double t)
{
    long seq = c->ids[c->acked++];

    r->ack_lat[r->n_ack++] = t - r->sent_at[seq];
    r->acked++;
}

static void
consumer_done(struct run *r, struct conn *c, double t)
{
    if (c->cur_seq >= 1 && c->cur_seq <= r->o->total)
        r->done_lat[r->n_done++] = t - r->sent_at[c->cur_seq];
    r->consumed++;
}

/* Handles the complete replies in c->in; returns the bytes used. */
static size_t
handle_beanstalk(struct run *r, struct conn *c, double t)
{
    char *p = c->in, *end = c->in + c->in_len, *nl;

    while ((nl = memmem(p, (size_t)(end - p), "\r\n", 2)) != NULL) {
        size_t line = (size_t)(nl - p);
        char *next = nl + 2;

        if (!c->consumer) {
            if (c->acked >= c->sent) {
                reply_error(r, p, line);
            } else {
                if (line < 9 || memcmp(p, "INSERTED ", 9) != 0)
                    reply_error(r, p, line);
                producer_ack(r, c, t);
            }
        } else if (c->state == C_FETCH) {
            if (line > 9 && memcmp(p, "RESERVED ", 9) == 0) {
                char *q;
                long job = strtol(p + 9, &q, 10);
                long bytes = strtol(q, NULL, 10);

                if ((size_t)(end - next) < (size_t)bytes + 2)
                    break; /* body not all here yet */
                c->cur_seq = seq_of(r, next, (size_t)bytes);
                next += bytes + 2;
                out_fmt(c, "delete %ld\r\n", job);
                c->state = C_FINISH;
            } else if ((line == 9 && memcmp(p, "TIMED_OUT", 9) == 0) ||
                       (line == 13 && memcmp(p, "DEADLINE_SOON", 13) == 0)) {
                send_fetch(r, c);
            } else {
                reply_error(r, p, line);
                send_fetch(r, c);
            }
        } else {
            if (line == 7 && memcmp(p, "DELETED", 7) == 0)
                consumer_done(r, c, t);
            else
                reply_error(r, p, line);
            send_fetch(r, c);
        }
        p = next;
    }
    return (size_t)(p - c->in);
}

/* asyncq: one reply line per put, in order; an acknowledgement is a
 * result (an error reply has "error" where "result" would be). */
static size_t
handle_asyncq(struct run *r, struct conn *c, double t)
{
    char *p = c->in, *end = c->in + c->in_len, *nl;

    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        size_t line = (size_t)(nl - p);

        if (c->acked >= c->sent || memmem(p, line, "\"result\"", 8) == NULL)
            reply_error(r, p, line);
        if (c->acked < c->sent)
            producer_ack(r, c, t);
        p = nl + 1;
    }
    return (size_t)(p - c->in);
}

/* asyncq remote workers: a get's reply ("result":[jobs]) is answered
 * with a task_done per job and the next get; with --task-done call, a
 * task_done's reply ("result":{...}, its id the job's sequence number)
 * ends the job's put -> done time; the final ping's reply ("pong") marks
 * the connection flushed. */
static void
asyncq_worker_line(struct run *r, struct conn *c, char *p, size_t line,
                   double t)
{
    char *res = memmem(p, line, "\"result\":", 9), *end = p + line, *q;

    if (res == NULL) {
        reply_error(r, p, line);
        if (!r->flushing)
            send_fetch(r, c);
        return;
    }
    res += 9;
    if (*res == '"') { /* "pong" */
        r->pongs++;
        return;
    }
    if (*res == '{') { /* a task_done's reply: its id is the job's seq */
        q = memmem(p, line, "\"id\":", 5);
        c->cur_seq = q != NULL ? strtol(q + 5, NULL, 10) : 0;
        consumer_done(r, c, t);
        return;
    }
    /* A get's jobs: the i-th "job": and the i-th "p":" are one job's. */
    for (q = res; (q = memmem(q, (size_t)(end - q), "\"job\":", 6)) != NULL;) {
        long job = strtol(q + 6, &q, 10);
        char *a = memmem(q, (size_t)(end - q), "\"p\":\"", 5);
        long seq = a != NULL ? seq_of(r, a + 5, (size_t)(end - a - 5)) : 0;

        if (r->o->td_call) {
            out_fmt(c,
                    "{\"id\":%ld,\"method\":\"task_done\",\"params\":{"
                    "\"job\":%ld,\"result\":true}}\n",
                    seq, job);
        } else {
            out_fmt(c,
                    "{\"method\":\"task_done\",\"params\":{\"job\":%ld,"
                    "\"result\":true}}\n",
                    job);
            c->cur_seq = seq;
            consumer_done(r, c, t); /* put -> lease: no reply to time */
        }
    }
    if (!r->flushing)
        send_fetch(r, c);
}

static size_t
handle_asyncq_worker(struct run *r, struct conn *c, double t)
{
    char *p = c->in, *end = c->in + c->in_len, *nl;

    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        asyncq_worker_line(r, c, p, (size_t)(nl - p), t);
        p = nl + 1;
    }
    return (size_t)(p - c->in);
}

static size_t
handle_redis(struct run *r, struct conn *c, double t)
{
    size_t off = 0;

    for (;;) {
        struct resp rep;
        long k = resp_parse(c->in + off, c->in_len - off, &rep);

        if (k == 0)
            break;
        if (k < 0)
            die("not a RESP reply: %.40s", c->in + off);
        if (!c->consumer) {
            if (c->acked >= c->sent) {
                reply_error(r, c->in + off, (size_t)k);
            } else {
                if (rep.type != ':')
                    reply_error(r, c->in + off, (size_t)k);
                producer_ack(r, c, t);
            }
        } else if (c->state == C_FETCH) {
            if ((rep.type == '$' || rep.type == '*') && rep.num < 0) {
                send_fetch(r, c); /* timed out: ask again */
            } else if (rep.type == '$' && rep.str != NULL) {
                /* BLMOVE gave a value: finish it with LREM. */
                c->cur_seq = seq_of(r, rep.str, rep.len);
                out_fmt(c,
                        "*4\r\n$4\r\nLREM\r\n$10\r\nprocessing\r\n$1\r\n1\r\n"
                        "$%zu\r\n",
                        rep.len);
                out_add(c, rep.str, rep.len);
                out_add(c, "\r\n", 2);
                c->state = C_FINISH;
            } else if (rep.type == '*' && rep.num == 2 && rep.str != NULL) {
                /* BLPOP: [key, value]; taking it finishes it. */
                c->cur_seq = seq_of(r, rep.str, rep.len);
                consumer_done(r, c, t);
                send_fetch(r, c);
            } else {
                reply_error(r, c->in + off, (size_t)k);
                send_fetch(r, c);
            }
        } else {
            if (rep.type == ':' && rep.num == 1)
                consumer_done(r, c, t);
            else
                reply_error(r, c->in + off, (size_t)k);
            send_fetch(r, c);
        }
        off += (size_t)k;
    }
    return off;
}

/* ---- results ---- */

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double
percentile(const double *v, long n, double q)
{
    long i = (long)(q * (double)n);

    if (n == 0)
        return 0;
    return v[i < n ? i : n - 1];
}

static void
on_signal(int sig)
{
    (void)sig;
    stop_idle = 1;
}

/* --ping: one request on fd and its reply line, blocking. */
static void
ping_once(const struct opts *o, int fd)
{
    static const char *req[] = {[BEANSTALK] = "list-tube-used\r\n",
                                [REDIS] = "PING\r\n",
                                [ASYNCQ] = "{\"id\":1,\"method\":\"ping\"}\n"};
    char buf[512];
    size_t len = 0;

    if (write(fd, req[o->proto], strlen(req[o->proto])) < 0)
        die("--ping: write: %s", strerror(errno));
    while (len == 0 || memchr(buf, '\n', len) == NULL) {
        ssize_t n = read(fd, buf + len, sizeof buf - len);

        if (n <= 0)
            die("--ping: no reply");
        len += (size_t)n;
        if (len == sizeof buf)
            break;
    }
}

/* --idle N: hold N connections that send nothing (or one ping). */
static int
run_idle(const struct opts *o)
{
    int *fds = calloc((size_t)o->idle, sizeof *fds);
    double deadline = now_s() + o->max_seconds;
    struct stat st;
    bool watch_stdin = fstat(STDIN_FILENO, &st) == 0 && S_ISFIFO(st.st_mode);
    struct sigaction sa = {.sa_handler = on_signal};

    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    for (long i = 0; i < o->idle; i++) {
        fds[i] = dial(o);
        if (o->ping)
            ping_once(o, fds[i]);
        if (now_s() > deadline)
            die("--idle: only %ld of %ld connected by --max-seconds", i + 1,
                o->idle);
    }
    printf("connected %ld\n", o->idle);
    fflush(stdout);
    while (!stop_idle && now_s() < deadline) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};

        if (watch_stdin) {
            if (poll(&pfd, 1, 200) > 0) {
                char b[256];

                if (read(STDIN_FILENO, b, sizeof b) <= 0)
                    break;
            }
        } else {
            poll(NULL, 0, 200);
        }
    }
    for (long i = 0; i < o->idle; i++)
        close(fds[i]);
    free(fds);
    return 0;
}

int
main(int argc, char **argv)
{
    struct opts o = {.host = "127.0.0.1",
                     .producers = 4,
                     .consumers = -1,
                     .window = 64,
                     .payload = 100,
                     .total = 100000,
                     .get_max = 64,
                     .max_seconds = 300,
                     .mode = M_INGEST};
    struct run r = {.o = &o};
    struct pollfd pfd[MAX_CONNS];
    double start, ingest_done = 0, end, deadline;
    long sent_total = 0;

    signal(SIGPIPE, SIG_IGN);
    parse_args(argc, argv, &o);
    if (o.idle > 0)
        return run_idle(&o);
    r.payload = malloc((size_t)o.payload);
    memset(r.payload, 'x', (size_t)o.payload);
    r.sent_at = calloc((size_t)o.total + 1, sizeof *r.sent_at);
    r.ack_lat = calloc((size_t)o.total + 1, sizeof *r.ack_lat);
    r.done_lat = calloc((size_t)o.total + 1, sizeof *r.done_lat);
    r.nconns = o.producers + o.consumers;
    r.cs = calloc((size_t)r.nconns, sizeof *r.cs);
    if (r.payload == NULL || r.sent_at == NULL || r.ack_lat == NULL ||
        r.done_lat == NULL || r.cs == NULL)
        die("out of memory");
    for (int i = 0; i < r.nconns; i++) {
        struct conn *c = &r.cs[i];

        c->fd = dial(&o);
        c->consumer = i >= o.producers;
        c->in_cap = READ_CHUNK * 2;
        c->in = malloc(c->in_cap);
        if (!c->consumer) {
            c->share = o.total / o.producers + (i < o.total % o.producers);
            c->ids = calloc((size_t)c->share + 1, sizeof *c->ids);
        }
    }

    start = now_s();
    deadline = start + o.max_seconds;
    r.last_progress = start;
    for (int i = o.producers; i < r.nconns; i++)
        send_fetch(&r, &r.cs[i]);
    for (;;) {
        bool puts_done = r.acked == o.total;
        int wait_ms = o.rate > 0 ? 1 : 1000;
        double t = now_s();

        if (puts_done && ingest_done == 0)
            ingest_done = t;
        if (puts_done && o.proto == ASYNCQ && o.mode == M_E2E &&
            r.consumed >= o.total && !r.flushing) {
            static const char ping[] = "{\"id\":0,\"method\":\"ping\"}\n";

            /* Notifications have no reply: a ping after them on each
             * worker connection is answered once they all ran. */
            r.flushing = true;
            for (int i = o.producers; i < r.nconns; i++)
                out_add(&r.cs[i], ping, sizeof ping - 1);
        }
        if (puts_done && (o.mode == M_INGEST || r.consumed >= o.total) &&
            (!r.flushing || r.pongs == o.consumers))
            break;
        if (t > deadline) {
            fprintf(stderr,
                    "peer_bench: stopped at --max-seconds: %ld of %ld put "
                    "acknowledged, %ld consumed\n",
                    r.acked, o.total, r.consumed);
            return 1;
        }
        if (t - r.last_progress > STALL_S) {
            fprintf(stderr,
                    "peer_bench: stalled for %.0f s: %ld of %ld put "
                    "acknowledged, %ld consumed\n",
                    STALL_S, r.acked, o.total, r.consumed);
            return 1;
        }
        for (int i = 0; i < r.nconns; i++) {
            struct conn *c = &r.cs[i];

            if (!c->consumer) {
                /* Open loop with --rate: what the schedule says is due. */
                double due = o.rate > 0 ? (t - start) * o.rate / o.producers
                                        : (double)c->share;

                while (c->sent < c->share && (double)c->sent < due &&
                       c->sent - c->acked < o.window) {
                    send_put(&r, c);
                    sent_total++;
                }
            }
            pfd[i].fd = c->fd;
            pfd[i].events = POLLIN | (c->out_off < c->out_len ? POLLOUT : 0);
        }
        if (poll(pfd, (nfds_t)r.nconns, wait_ms) < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        t = now_s();
        for (int i = 0; i < r.nconns; i++) {
            struct conn *c = &r.cs[i];

            if (pfd[i].revents & POLLOUT) {
                ssize_t n =
                    write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

                if (n < 0 && errno != EAGAIN && errno != EINTR)
                    die("write: %s", strerror(errno));
                if (n > 0 && (c->out_off += (size_t)n) == c->out_len)
                    c->out_off = c->out_len = 0;
            }
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t n;
                size_t used;

                if (c->in_cap - c->in_len < READ_CHUNK) {
                    c->in_cap = c->in_len + READ_CHUNK * 2;
                    c->in = realloc(c->in, c->in_cap);
                    if (c->in == NULL)
                        die("out of memory");
                }
                n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                    die("the server closed a connection (%ld of %ld put "
                        "acknowledged, %ld consumed)",
                        r.acked, o.total, r.consumed);
                if (n <= 0)
                    continue;
                c->in_len += (size_t)n;
                used = o.proto == BEANSTALK ? handle_beanstalk(&r, c, t)
                       : o.proto == ASYNCQ && c->consumer
                           ? handle_asyncq_worker(&r, c, t)
                       : o.proto == ASYNCQ ? handle_asyncq(&r, c, t)
                                           : handle_redis(&r, c, t);
                if (used > 0)
                    r.last_progress = t;
                c->in_len -= used;
                memmove(c->in, c->in + used, c->in_len);
            }
        }
    }
    end = now_s();
    (void)sent_total;
    qsort(r.ack_lat, (size_t)r.n_ack, sizeof *r.ack_lat, cmp_double);
    qsort(r.done_lat, (size_t)r.n_done, sizeof *r.done_lat, cmp_double);

    {
        static const char *modes[] = {"ingest", "e2e", "e2e-blpop"};
        double ingest_rate = (double)o.total / (ingest_done - start);
        double rate = o.mode == M_INGEST ? ingest_rate
                                         : (double)o.total / (end - start);

#define US(v) ((v)*1e6)
        if (o.json) {
            printf("{\"server\":\"%s\",\"mode\":\"%s\",\"jobs\":%ld,"
                   "\"producers\":%d,\"consumers\":%d,\"window\":%d,"
                   "\"payload\":%d,\"rate\":%.0f,\"errors\":%ld,"
                   "\"seconds\":%.3f,\"jobs_per_s\":%.0f,"
                   "\"ingest_jobs_per_s\":%.0f,"
                   "\"ack_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f},"
                   "\"done_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f}}\n",
                   proto_names[o.proto], modes[o.mode],
                   o.total, o.producers, o.consumers, o.window, o.payload,
                   o.rate, r.errors, end - start, rate, ingest_rate,
                   US(percentile(r.ack_lat, r.n_ack, 0.50)),
                   US(percentile(r.ack_lat, r.n_ack, 0.99)),
                   US(percentile(r.ack_lat, r.n_ack, 0.999)),
                   US(percentile(r.done_lat, r.n_done, 0.50)),
                   US(percentile(r.done_lat, r.n_done, 0.99)),
                   US(percentile(r.done_lat, r.n_done, 0.999)));
        } else {
            printf("%s %s: %ld jobs, %d producers, %d consumers, %s, "
                   "%d-byte payload\n",
                   proto_names[o.proto], modes[o.mode],
                   o.total, o.producers, o.consumers,
                   o.rate > 0 ? "fixed rate" : "pipelined", o.payload);
            if (o.rate > 0)
                printf("  offered:     %.0f jobs/s\n", o.rate);
            else
                printf("  window:      %d\n", o.window);
            printf("  ingest:      %.0f jobs/s\n", ingest_rate);
            if (o.mode != M_INGEST)
                printf("  end to end:  %.0f jobs/s (%.2f s)\n", rate,
                       end - start);
            printf("  put->ack:    p50 %.0f us, p99 %.0f us, p999 %.0f us\n",
                   US(percentile(r.ack_lat, r.n_ack, 0.50)),
                   US(percentile(r.ack_lat, r.n_ack, 0.99)),
                   US(percentile(r.ack_lat, r.n_ack, 0.999)));
            if (r.n_done > 0)
                printf("  put->done:   p50 %.0f us, p99 %.0f us, p999 %.0f "
                       "us\n",
                       US(percentile(r.done_lat, r.n_done, 0.50)),
                       US(percentile(r.done_lat, r.n_done, 0.99)),
                       US(percentile(r.done_lat, r.n_done, 0.999)));
            printf("  errors:      %ld\n", r.errors);
        }
    }
    return r.errors == 0 ? 0 : 1;
}
