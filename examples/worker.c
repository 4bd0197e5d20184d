/* SPDX-License-Identifier: MIT */
/*
 * examples/worker.c: a remote worker for asyncqd built on libasyncq-client.
 * It takes jobs of a queue of kind "remote" (up to 16 at a time), runs
 * each through the handler its name picks, and answers with task_done,
 * pipelined. SIGTERM or SIGINT: it stops taking jobs, gives back (release)
 * those it holds and not yet ran, and exits 0.
 *
 *   cc -o worker worker.c $(pkg-config --cflags --libs asyncq-client)
 *   ./worker [-s tcp://HOST:PORT] QUEUE
 *
 * Handlers: "upper" returns {"text": args.text in upper case}, "sum"
 * returns {"sum": the sum of args.numbers}; any other name fails the job
 * with error code "unknown_name" and no retry.
 */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <asyncq/client.h>

#define BATCH 16   /* jobs leased per get */
#define WAIT_S 1.0 /* long poll; a stop is seen within this */

static volatile sig_atomic_t stopping;

static void
on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

/* The job's result (a new reference), or NULL with *code and *message set
 * for a failure. */
static json_t *
handle(const char *name, json_t *args, const char **code, const char **message)
{
    if (strcmp(name, "upper") == 0) {
        const char *text = json_string_value(json_object_get(args, "text"));
        char *up;
        json_t *r;

        if (text == NULL) {
            *code = "bad_args";
            *message = "upper: args.text: expected a string";
            return NULL;
        }
        up = strdup(text);
        for (char *p = up; *p != '\0'; p++)
            *p = (char)toupper((unsigned char)*p);
        r = json_pack("{s:s}", "text", up);
        free(up);
        return r;
    }
    if (strcmp(name, "sum") == 0) {
        json_t *v, *nums = json_object_get(args, "numbers");
        double sum = 0;
        size_t i;

        json_array_foreach (nums, i, v)
            sum += json_number_value(v);
        return json_pack("{s:f}", "sum", sum);
    }
    *code = "unknown_name";
    *message = "no handler for this name";
    return NULL;
}

int
main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART */
    struct aq_error err = {0};
    const char *server = NULL;
    struct aq_client *c;
    long done = 0;
    json_t *jobs, *pong;
    int opt;

    while ((opt = getopt(argc, argv, "s:")) != -1) {
        if (opt != 's')
            goto usage;
        server = optarg;
    }
    if (optind + 1 != argc)
        goto usage;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* Every reply within 10 s; a get's wait is on top of that. */
    c = aq_client_connect(server, 10000, &err);
    if (c == NULL || aq_client_auth(c, NULL, &err) < 0) {
        fprintf(stderr, "worker: %s\n", err.message);
        aq_client_free(c);
        return 1;
    }
    while (!stopping) {
        const char *queue = argv[optind];
        size_t i;
        json_t *job;

        jobs = aq_client_get(c, &queue, 1, BATCH, WAIT_S, 0, NULL, NULL, &err);
        if (jobs == NULL)
            goto fail;
        json_array_foreach (jobs, i, job) {
            json_int_t id = json_integer_value(json_object_get(job, "job"));
            const char *name = json_string_value(json_object_get(job, "name"));
            const char *code = NULL, *message = NULL;
            json_t *result;

            if (stopping) { /* give back what we have not started */
                json_decref(aq_client_release(c, id, 0, &err));
                continue;
            }
            result = handle(name != NULL ? name : "",
                            json_object_get(job, "args"), &code, &message);
            /* Not waiting for the reply: the next get is answered after
             * these are done. A job failed by its handler is not retried. */
            if (aq_client_task_done_nowait(c, id, result, code, message,
                                           result != NULL, &err) < 0) {
                json_decref(jobs);
                goto fail;
            }
            done++;
        }
        json_decref(jobs);
    }
    /* A reply to a request sent after them: every task_done has been run. */
    pong = aq_client_call(c, "ping", NULL, NULL, NULL, &err);
    if (pong == NULL)
        goto fail;
    json_decref(pong);
    aq_client_free(c);
    fprintf(stderr, "worker: %ld jobs done, stopped\n", done);
    return 0;
fail:
    fprintf(stderr, "worker: %s\n", err.message);
    aq_client_free(c);
    return 1;
usage:
    fprintf(stderr, "usage: worker [-s SERVER] QUEUE\n");
    return 2;
}
