/* SPDX-License-Identifier: MIT */
/*
 * tests/testconn.h: a client of a struct aq_server inside the test: a
 * socketpair whose one end goes to aq_server_accept, the other read on
 * the test's event base. Every wait runs the loop with a deadline
 * (TEST_CONN_WAIT_MS) and fails the test when it passes.
 */
#ifndef AQ_TESTCONN_H
#define AQ_TESTCONN_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Within the suites' 10 s, slow runs (valgrind) included. */
#define TEST_CONN_WAIT_MS 8000

struct event;
struct event_base;
struct aq_server;

struct test_conn {
    struct event_base *base;
    int fd;            /* the client's end; -1 once dropped */
    struct event *rev; /* reads into in while added */
    char *in;          /* what the server sent and was not taken yet */
    size_t in_len, in_cap;
    bool is_eof; /* the server closed (or the read failed: error) */
    int error;
};

/* Runs base until pred(arg) or timeout_ms pass; returns pred(arg). */
bool test_run_until(struct event_base *base, bool (*pred)(void *arg), void *arg,
                    int timeout_ms);

/* A new connection to s; free with test_conn_free (NULL is fine). */
struct test_conn *test_conn_new(struct event_base *base, struct aq_server *s);
void test_conn_free(struct test_conn *c);

/* Stops reading (the server's output fills up), or reads again. */
void test_conn_pause(struct test_conn *c, bool paused);
/* Closes the client's end at once. */
void test_conn_drop(struct test_conn *c);

void test_conn_send(struct test_conn *c, const char *text);
void test_conn_send_n(struct test_conn *c, const char *text, size_t len);

/* Waits for a whole line from the server: its text (with the '\n') is
 * c->in[0..*len), still not taken. */
const char *test_conn_peek(struct test_conn *c, size_t *len);
/* Takes the line test_conn_peek showed (n bytes). */
void test_conn_take(struct test_conn *c, size_t n);
/* The next message, parsed and taken (a new reference). */
json_t *test_conn_next(struct test_conn *c);
/* The next message is the reply to id (JSON text) with result equal to
 * result (JSON text). */
void test_conn_expect(struct test_conn *c, const char *id, const char *result);
/* The next message is the reply to id with error code; with message not
 * NULL, that message too. */
void test_conn_expect_error(struct test_conn *c, const char *id, int code,
                            const char *message);
/* Nothing arrives while the loop runs for ms. */
void test_conn_expect_silence(struct test_conn *c, int ms);
/* The server closes cleanly (end of file, no reset), nothing unread. */
void test_conn_expect_eof(struct test_conn *c);

#endif
