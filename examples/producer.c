/* SPDX-License-Identifier: MIT */
/*
 * examples/producer.c: puts N jobs on a queue of asyncqd, pipelined: up to
 * WINDOW puts in flight on one connection, each reply matched by its id.
 * The jobs are named "upper" with args {"text":"job I"}, for
 * examples/worker.c.
 *
 *   cc -o producer producer.c $(pkg-config --cflags --libs asyncq-client)
 *   ./producer [-s tcp://HOST:PORT] [-n N] [-w WINDOW] QUEUE
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <asyncq/client.h>

int
main(int argc, char **argv)
{
    struct aq_error err = {0};
    const char *server = NULL;
    long n = 1000, window = 64, sent = 0, acked = 0, failed = 0;
    struct aq_client *c;
    int opt;

    while ((opt = getopt(argc, argv, "s:n:w:")) != -1) {
        if (opt == 's')
            server = optarg;
        else if (opt == 'n')
            n = atol(optarg);
        else if (opt == 'w')
            window = atol(optarg);
        else
            goto usage;
    }
    if (optind + 1 != argc || n < 0 || window < 1)
        goto usage;
    c = aq_client_connect(server, 10000, &err);
    if (c == NULL || aq_client_auth(c, NULL, &err) < 0)
        goto fail;
    while (acked < n) {
        json_t *reply;
        int64_t id;

        while (sent < n && sent - acked < window) {
            char text[32];

            snprintf(text, sizeof text, "job %ld", sent);
            if (aq_client_send(c, "put",
                               json_pack("{s:s,s:s,s:{s:s}}", "queue",
                                         argv[optind], "name", "upper", "args",
                                         "text", text),
                               &err) < 0)
                goto fail;
            sent++;
        }
        if ((reply = aq_client_recv(c, &id, NULL, &err)) == NULL)
            goto fail;
        if (id >= 0) { /* not a notification */
            acked++;
            if (json_object_get(reply, "error") != NULL && failed++ == 0)
                fprintf(stderr, "producer: put: %s\n",
                        json_string_value(json_object_get(
                            json_object_get(reply, "error"), "message")));
        }
        json_decref(reply);
    }
    aq_client_free(c);
    printf("producer: %ld jobs put, %ld refused\n", acked - failed, failed);
    return failed == 0 ? 0 : 1;
fail:
    fprintf(stderr, "producer: %s\n", err.message);
    aq_client_free(c);
    return 1;
usage:
    fprintf(stderr, "usage: producer [-s SERVER] [-n N] [-w WINDOW] QUEUE\n");
    return 2;
}
