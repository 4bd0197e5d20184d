/* SPDX-License-Identifier: MIT */
/*
 * tests/bb.h: the black-box harness. It starts the real asyncqd (the
 * binary CMake built) on a socket the test bound to 127.0.0.1:0 and hands
 * over as LISTEN_FDS=1 (as systemd does), with a config in a mkdtemp dir,
 * and talks to it over TCP with blocking sockets and deadlines: nothing
 * sleeps, nothing guesses a port. Every call is bounded in time; a test
 * that times out fails with a message naming what it waited for.
 */
#ifndef AQ_BB_H
#define AQ_BB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define BB_TIMEOUT_MS 10000 /* default deadline for one reply */

/* The error codes of the wire (SPEC.md section 1), written out here rather
 * than taken from lib/error.h: a black-box test checks the daemon against
 * the spec, not against itself. */
enum {
    PARSE_ERROR = -32700,
    INVALID_REQUEST = -32600,
    METHOD_NOT_FOUND = -32601,
    INVALID_PARAMS = -32602,
    INTERNAL_ERROR = -32603,
    QUEUE_FULL = -32000,
    UNAUTHORIZED = -32001,
    NO_SUCH_QUEUE = -32002,
    NO_SUCH_JOB = -32004,
    NOT_ALLOWED = -32005,
    TIMED_OUT = -32008,
    ALREADY_FINISHED = -32009,
    SHUTTING_DOWN = -32010,
    TOO_MANY_CONNECTIONS = -32011,
    NOT_FINISHED = -32012,
    NOT_YOUR_LEASE = -32014,
};

struct bb_daemon;
struct bb_conn;

/* Starts asyncqd with the config given as JSON text (a printf format).
 * Top-level fields the test leaves out get test defaults: journal.path
 * null, metrics null, log.level "info". Waits until a ping is answered;
 * fails the test if it is not within the start deadline.
 * $ASYNCQD_WRAPPER (e.g. "valgrind -q --error-exitcode=99") prefixes the
 * command. */
struct bb_daemon *bb_start(const char *config_fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* bb_start with the config written with ' for " ("{'queues':{}}"), so
 * that it may hold no apostrophe. */
struct bb_daemon *bb_startq(const char *config_fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* bb_startq without waiting for the daemon to answer: for a daemon that
 * may not serve yet. */
struct bb_daemon *bb_spawnq(const char *config_fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* Whether the daemon answers a ping within timeout_ms; fails the test if
 * it exits meanwhile. */
bool bb_await_up(struct bb_daemon *d, int timeout_ms);
/* SIGTERM, then waits (deadline 60 s) and returns the exit status (0-255,
 * or 128+signal); frees d. Tests assert it is 0: every test covers a
 * graceful shutdown. */
int bb_stop(struct bb_daemon *d);
/* Stops the daemon (SIGTERM, asserting exit 0) and starts it again on the
 * same config, directory and port, for clients that reconnect; waits
 * until it answers a ping. */
void bb_restart(struct bb_daemon *d);
/* Sends sig without waiting. */
void bb_signal(struct bb_daemon *d, int sig);
/* Waits up to timeout_ms for the daemon to exit; returns its status as
 * bb_stop does, or -1 on timeout (the daemon is then left running). */
int bb_wait_exit(struct bb_daemon *d, int timeout_ms);
/* Frees d after the daemon exited (bb_wait_exit), or kills it first. */
void bb_free(struct bb_daemon *d);

pid_t bb_pid(const struct bb_daemon *d);
/* The daemon's resident memory in kB, from /proc (under $ASYNCQD_WRAPPER
 * it is the wrapper's). */
long bb_rss_kb(const struct bb_daemon *d);
/* Whether the daemon's RSS tells its own use of memory: not under a
 * wrapper (valgrind) or a sanitizer (ASan's shadow and quarantine). */
bool bb_rss_is_meaningful(void);
int bb_port(const struct bb_daemon *d);
const char *bb_dir(const struct bb_daemon *d); /* the temp dir, for files */
/* Rewrites the config file (for SIGHUP tests) with JSON text. */
void bb_write_config(struct bb_daemon *d, const char *config_fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* bb_write_config with ' for ", as bb_startq. */
void bb_write_configq(struct bb_daemon *d, const char *config_fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The daemon's stderr so far (a new string, the caller's to free). */
char *bb_log(const struct bb_daemon *d);
/* The metrics listener's port, from the log line "metrics on
 * http://HOST:PORT/...", waited for up to 5 s. */
int bb_metrics_port(const struct bb_daemon *d);
/* Whether the log holds needle now. */
bool bb_log_has(const struct bb_daemon *d, const char *needle);
/* Polls the log until it contains needle or timeout_ms passes. */
bool bb_log_wait(const struct bb_daemon *d, const char *needle, int timeout_ms);

/* A blocking TCP socket connected to the daemon (the caller's to close),
 * or -1 if the connect failed: for probing a daemon that may refuse. */
int bb_dial(const struct bb_daemon *d);
/* A TCP connection to the daemon (the caller's, for bb_close); fails the
 * test if the connect fails. */
struct bb_conn *bb_connect(const struct bb_daemon *d);
void bb_close(struct bb_conn *c); /* NULL is fine */
int bb_fd(const struct bb_conn *c);

/* Sends bytes as they are (no newline added); false if the write failed. */
bool bb_send_raw(struct bb_conn *c, const void *buf, size_t len);
/* Sends a line: text plus "\n". */
bool bb_send_line(struct bb_conn *c, const char *text);
/* The next JSON message from the daemon (reply or notification), or NULL
 * if none arrived within timeout_ms or the connection closed. New ref. */
json_t *bb_recv(struct bb_conn *c, int timeout_ms);
/* The next line from the daemon as the text it sent (without its '\n'; a
 * new string, the caller's), or NULL if none arrived within timeout_ms or
 * the connection closed. For replies jansson cannot read back exactly. */
char *bb_recv_text(struct bb_conn *c, int timeout_ms);
/* True if the daemon closed the connection within timeout_ms (EOF or
 * reset), after any data still in flight. */
bool bb_wait_closed(struct bb_conn *c, int timeout_ms);

/* Sends {"jsonrpc":"2.0","id":N,"method":method,"params":params} with a
 * fresh id (params reference taken; NULL = none) and returns that id. */
json_int_t bb_send_call(struct bb_conn *c, const char *method, json_t *params);
/* The response with this id, within timeout_ms; other messages that
 * arrive first are kept for later bb_recv/bb_wait_reply. NULL on timeout. */
json_t *bb_wait_reply(struct bb_conn *c, json_int_t id, int timeout_ms);
/* bb_send_call + bb_wait_reply(timeout_ms): the reply (new ref); fails the
 * test on timeout. */
json_t *bb_call_within(struct bb_conn *c, const char *method, json_t *params,
                       int timeout_ms);
/* bb_call_within(BB_TIMEOUT_MS). */
json_t *bb_call(struct bb_conn *c, const char *method, json_t *params);
/* The "result" of a successful call within timeout_ms (new ref); fails the
 * test on timeout or if the reply is an error, naming it. */
json_t *bb_result_within(struct bb_conn *c, const char *method, json_t *params,
                         int timeout_ms);
/* bb_result_within(BB_TIMEOUT_MS). */
json_t *bb_result(struct bb_conn *c, const char *method, json_t *params);
/* The error code of a call expected to fail; fails the test on success. */
int bb_error(struct bb_conn *c, const char *method, json_t *params);

/* The error code of msg (taken), a reply to id (JSON text), after checking
 * its shape: jsonrpc "2.0", the id echoed, an error object with an
 * integer code and a non-empty message. Fails the test otherwise. */
int bb_error_reply_code(json_t *msg, const char *id);

/* Builds JSON from text (json_loads), failing the test if it is invalid.
 * New ref. */
json_t *bb_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* bb_json with ' for " ("{'job':%lld}"); the text may hold no apostrophe. */
json_t *bb_jsonq(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Puts a job (params taken) and returns its id; fails the test unless
 * the put succeeds within timeout_ms. */
json_int_t bb_put_job(struct bb_conn *c, json_t *params, int timeout_ms);
/* The status record of job id (new ref); fails the test on an error. */
json_t *bb_job_status(struct bb_conn *c, json_int_t id);
/* Polls the status of job id until its state is state; fails the test if
 * it is not within timeout_ms. A status reply may take the longer of
 * timeout_ms and BB_TIMEOUT_MS. */
void bb_await_state(struct bb_conn *c, json_int_t id, const char *state,
                    int timeout_ms);
/* The integer name of stats, or of stats.queues.<queue> if queue is not
 * NULL; fails the test if there is none. */
json_int_t bb_stat_int(struct bb_conn *c, const char *queue, const char *name);
/* Polls bb_stat_int(c, queue, name) until it is want; fails the test if
 * it is not within timeout_ms. */
void bb_await_stat(struct bb_conn *c, const char *queue, const char *name,
                   json_int_t want, int timeout_ms);
/* Waits until stats.connections is want (c among them); fails the test if
 * it is not within timeout_ms. */
void bb_await_connections(struct bb_conn *c, json_int_t want, int timeout_ms);

/* The monotonic clock, in milliseconds and in seconds. */
int64_t bb_now_ms(void);
double bb_now_s(void);

/* Polls fn(arg) every 10 ms until it is true or timeout_ms passes. */
bool bb_poll(bool (*fn)(void *arg), void *arg, int timeout_ms);
/* Removes dir and everything under it (as rm -rf), naming on stderr what
 * it could not remove; whether dir is gone. */
bool bb_remove_dir(const char *dir);
/* Whether process pid exists (and is not a zombie). */
bool bb_pid_alive(pid_t pid);

#endif
