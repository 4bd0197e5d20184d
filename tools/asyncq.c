/* SPDX-License-Identifier: MIT */
/*
 * tools/asyncq.c: the asyncq command-line client (spec sections 8 and 9),
 * on the client API of lib/client.h: the global options, the verb table
 * with each verb's usage, and how errors map to exit statuses. Human
 * output by default, --json for scripts. Exit status: 0 success, 1 a job
 * failed (or was cancelled), 2 usage error, 3 cannot reach the server
 * (connect, transport, no reply in time), 4 the server answered an error.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "asyncq.h"

typedef int verb_fn(struct cli *cli);

static const struct verb {
    const char *name;
    verb_fn *fn;
    const char *usage; /* the synopsis lines, then a blank line, then help */
} verbs[] = {
    {"put", v_put,
     "put [-q QUEUE] [-p PRIO] [--delay D | --at TIME] [--timeout D]\n"
     "    [--retries N] [--key K] [--batch B] [--after ID,ID...\n"
     "    [--after-policy P]] [--nowait] [--wait] [--] CMD ARG...\n"
     "put -k KIND --args JSON [options]\n"
     "put -f FILE.ndjson [options]\n"
     "\n"
     "Puts a job: an exec job running CMD with its arguments (no shell), or\n"
     "a job of KIND with JSON args, or one job per line of FILE (- for\n"
     "stdin: a JSON object of put params a line; the options fill in what a\n"
     "line leaves out), pipelined, with a progress bar on a terminal. A\n"
     "full queue holds the put back until it has room, unless --nowait.\n"
     "--wait waits for the job: an exec job's output is passed through and\n"
     "its exit status becomes asyncq's (128+N if killed by signal N).\n"
     "--batch B labels the job (with -f: each line's, unless the line has\n"
     "its own); join --batch and stats --batch follow a batch.\n"
     "Durations D take units: 90, 90s, 5m, 1.5h, 2d. --at TIME runs it at\n"
     "an RFC 3339 time (2026-12-06T14:00:00Z, with an offset) or at HH:MM,\n"
     "the next time the local clock shows it (today, else tomorrow).\n"
     "--after waits until those jobs have finished: with --after-policy\n"
     "done (the default) it is cancelled if one failed or was cancelled,\n"
     "with finished it runs anyway.\n"},
    {"status", v_status,
     "status ID\n"
     "\n"
     "Shows a job: state, queue, command, times, attempts, error and its\n"
     "result (an exec job's stdout and stderr as text). Exit 1 if it failed\n"
     "or was cancelled.\n"},
    {"wait", v_wait,
     "wait ID... [--any] [--timeout D] [--cancel-on-timeout]\n"
     "\n"
     "Waits until every job (--any: the first) has finished. Exit 1 if one\n"
     "failed, 3 at the timeout.\n"},
    {"list", v_list,
     "list [-q QUEUE] [-s STATE]... [--name N] [--batch B] [-n N]\n"
     "     [--after ID | --before ID] [--desc] [--wide]\n"
     "\n"
     "Lists jobs, oldest first (--desc: newest first), N a page (default\n"
     "100, at most 1000), as a table that fits 80 columns (--wide: in full).\n"
     "STATE is delayed, waiting, pending, running, done, failed or\n"
     "cancelled; -s may be repeated or take a comma-separated list. The\n"
     "footer says how to get the next page.\n"},
    {"retry", v_retry,
     "retry ID... [--delay D]\n"
     "retry -q QUEUE --failed|--cancelled [--delay D]\n"
     "\n"
     "Runs finished jobs again: they keep their id and args, their attempts\n"
     "start again at 0. With -q, every failed (or cancelled) job of QUEUE.\n"},
    {"delete", v_delete,
     "delete ID...\n"
     "delete -q QUEUE --failed|--done|--cancelled\n"
     "\n"
     "Deletes the records of finished jobs (a live job must be cancelled\n"
     "first). With -q, every record of QUEUE in the given states.\n"},
    {"cancel", v_cancel,
     "cancel ID...\n"
     "cancel -q QUEUE --all [--running]\n"
     "\n"
     "Cancels jobs: a pending one is removed, a running one interrupted.\n"
     "With -q QUEUE --all, every delayed, waiting and pending job of QUEUE;\n"
     "with --running too, the running ones.\n"},
    {"join", v_join,
     "join [QUEUE] [--timeout D]\n"
     "join --batch B [--timeout D]\n"
     "\n"
     "Waits until every job put on QUEUE (default: all queues), or every\n"
     "job of batch B, has finished, with a progress bar on a terminal.\n"},
    {"stats", v_stats,
     "stats [QUEUE] [--watch] [--interval D] [--wide]\n"
     "stats --batch B [--watch] [--interval D]\n"
     "\n"
     "Shows the queues' counters in a table that fits 80 columns (--wide:\n"
     "every column), or the jobs of batch B by state. --watch redraws it\n"
     "every D (default 1s) until ^C, reconnecting if the server restarts.\n"},
    {"schedules", v_schedules,
     "schedules [NAME]\n"
     "\n"
     "Shows the daemon's schedules (the \"schedules\" of its config): name,\n"
     "cron, time zone, queue, the next and the last fire time (local time),\n"
     "and the job the last fire put. NAME: that schedule only.\n"},
    {"scale", v_scale,
     "scale QUEUE N\n"
     "\n"
     "Sets QUEUE's consumer count to N (0 stops it taking jobs).\n"},
    {"pause", v_pause,
     "pause QUEUE\n"
     "\n"
     "Stops QUEUE's consumers taking jobs; running jobs go on.\n"},
    {"resume", v_resume,
     "resume QUEUE\n"
     "\n"
     "Lets QUEUE's consumers take jobs again.\n"},
    {"ping", v_ping,
     "ping\n"
     "\n"
     "Checks the server answers, and how fast.\n"},
    {"help", NULL,
     "help [VERB]\n"
     "\n"
     "Shows the usage of every verb, or of one.\n"},
};

#define N_VERBS (sizeof verbs / sizeof verbs[0])

static const char global_usage[] =
    "usage: asyncq [--server URL] [--json] [--token-file FILE]\n"
    "              [--ca FILE] [--cert FILE] [--key FILE] VERB ...\n"
    "       asyncq help [VERB] | VERB --help | --version\n";

static const char global_notes[] =
    "The server is --server, else $ASYNCQ_SERVER, else tcp://127.0.0.1:7878\n"
    "(unix:/PATH for a Unix socket, tls://HOST:PORT for TLS). The auth token\n"
    "is the first line of --token-file, else $ASYNCQ_TOKEN. --json prints the\n"
    "raw results. For tls://, --ca (else $ASYNCQ_CA, else the system's CAs)\n"
    "names the PEM CAs the server's certificate must be signed by; --cert and\n"
    "--key (else $ASYNCQ_CERT, $ASYNCQ_KEY) a client certificate and its key\n"
    "for a server that asks for one (--key before the verb put: after it,\n"
    "--key is the job's key).\n"
    "Exit status: 0 success, 1 a job failed, 2 usage error, 3 cannot reach\n"
    "the server (connect, transport, timeout, shutting down), 4 the server\n"
    "answered with an error.\n";

static const struct verb *
find_verb(const char *name)
{
    for (size_t k = 0; k < N_VERBS; k++)
        if (strcmp(verbs[k].name, name) == 0)
            return &verbs[k];
    return NULL;
}

/* Prints the synopsis lines of v (up to its blank line): the first after
 * prefix, the other forms after as many spaces and "asyncq ", and their
 * continuation lines (which start with spaces) under them. */
static void
print_synopsis(FILE *f, const struct verb *v, const char *prefix)
{
    const char *p = v->usage, *nl;
    int pad = (int)strlen(prefix);

    for (int k = 0; (nl = strchr(p, '\n')) != NULL && nl != p; k++) {
        if (k == 0)
            fputs(prefix, f);
        else if (*p == ' ')
            fprintf(f, "%*s", pad, "");
        else
            fprintf(f, "%*sasyncq ", pad - 7, "");
        fprintf(f, "%.*s\n", (int)(nl - p), p);
        p = nl + 1;
    }
}

int
print_usage(FILE *f, const char *verb)
{
    const struct verb *v;

    if (verb == NULL) {
        fputs(global_usage, f);
        fputs("\nVerbs:\n", f);
        for (size_t k = 0; k < N_VERBS; k++)
            print_synopsis(f, &verbs[k], "  asyncq ");
        fputs("\n", f);
        fputs(global_notes, f);
        fputs("asyncq help VERB tells more of one verb; see also asyncq(1).\n",
              f);
        return 0;
    }
    if ((v = find_verb(verb)) == NULL)
        return -1;
    print_synopsis(f, v, "usage: asyncq ");
    fputs(strstr(v->usage, "\n\n") + 1, f);
    return 0;
}

bool
is_help(const char *s)
{
    return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0;
}

int
usage_error(const struct cli *cli, const char *fmt, ...)
{
    const struct verb *v = cli->verb != NULL ? find_verb(cli->verb) : NULL;
    va_list ap;

    fputs("asyncq: ", stderr);
    if (cli->verb != NULL)
        fprintf(stderr, "%s: ", cli->verb);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    if (v != NULL) {
        print_synopsis(stderr, v, "usage: asyncq ");
        fprintf(stderr, "(asyncq help %s tells more)\n", v->name);
    } else
        fputs("(asyncq help lists the verbs and their options)\n", stderr);
    return EXIT_USAGE;
}

int
error_status(const struct aq_error *err)
{
    /* A retry wrapper tells "try again later" (3) from "the server said
     * no" (4): a wait that ran out, a daemon stopping and a daemon with
     * no room for the connection are the first kind. */
    if (!aq_client_is_server_error(err) || err->code == AQ_ERR_TIMEOUT ||
        err->code == AQ_ERR_SHUTTING_DOWN ||
        err->code == AQ_ERR_TOO_MANY_CONNECTIONS)
        return EXIT_UNREACHABLE;
    return EXIT_SERVER;
}

int
report_error(const struct aq_error *err)
{
    if (aq_client_is_server_error(err))
        fprintf(stderr, "asyncq: error %d: %s\n", err->code, err->message);
    else
        fprintf(stderr, "asyncq: %s\n", err->message);
    return error_status(err);
}

struct aq_client *
connect_again(const struct cli *cli, struct aq_error *err)
{
    struct aq_client *c =
        aq_client_connect_tls(cli->server, CALL_TIMEOUT_MS, &cli->tls, err);

    if (c != NULL && aq_client_auth(c, cli->token_file, err) < 0) {
        aq_client_free(c);
        c = NULL;
    }
    return c;
}

int
connect_cli(struct cli *cli)
{
    struct aq_error err;

    if ((cli->client = connect_again(cli, &err)) == NULL)
        return report_error(&err);
    return 0;
}

json_t *
call(struct cli *cli, const char *method, json_t *params, bool wait_long,
     int *rc)
{
    struct aq_error err;
    json_t *r;

    aq_client_set_timeout(cli->client, wait_long ? -1 : CALL_TIMEOUT_MS);
    r = aq_client_call(cli->client, method, params, NULL, NULL, &err);
    if (r == NULL)
        *rc = report_error(&err);
    return r;
}

/* asyncq help [VERB] */
static int
help(struct cli *cli)
{
    if (cli->argc == 0)
        return print_usage(stdout, NULL);
    if (cli->argc > 1 || print_usage(stdout, cli->argv[0]) < 0)
        return usage_error(cli, "%s: no such verb", cli->argv[0]);
    return 0;
}

/* Whether the verb's arguments ask for its help: --help or -h before a
 * "--" (put's command may hold its own --help: put reads it itself). */
static bool
wants_help(const struct cli *cli)
{
    if (strcmp(cli->verb, "put") == 0)
        return cli->argc > 0 && is_help(cli->argv[0]);
    for (int k = 0; k < cli->argc && strcmp(cli->argv[k], "--") != 0; k++)
        if (is_help(cli->argv[k]))
            return true;
    return false;
}

/* --ca, --cert or --key FILE at argv[*i]: into cli->tls, *i past it.
 * After the verb put, --key is put's own (the job's key). */
static bool
tls_option(struct cli *cli, int argc, char **argv, int *i)
{
    const char **slot = NULL;

    if (*i + 1 >= argc)
        return false;
    if (strcmp(argv[*i], "--ca") == 0)
        slot = &cli->tls.ca_file;
    else if (strcmp(argv[*i], "--cert") == 0)
        slot = &cli->tls.cert_file;
    else if (strcmp(argv[*i], "--key") == 0 &&
             (cli->verb == NULL || strcmp(cli->verb, "put") != 0))
        slot = &cli->tls.key_file;
    if (slot == NULL)
        return false;
    *slot = argv[++*i];
    return true;
}

/* Moves the global options that follow the verb into cli (before a
 * "--"); the rest become the verb's arguments. */
static void
split_args(struct cli *cli, int argc, char **argv, int first)
{
    cli->argv = calloc((size_t)argc + 1, sizeof *cli->argv);
    for (int j = first; j < argc; j++) {
        if (strcmp(argv[j], "--") == 0) {
            for (; j < argc; j++)
                cli->argv[cli->argc++] = argv[j];
            break;
        }
        if (strcmp(argv[j], "--json") == 0)
            cli->json = true;
        else if (strcmp(argv[j], "--server") == 0 && j + 1 < argc)
            cli->server = argv[++j];
        else if (strcmp(argv[j], "--token-file") == 0 && j + 1 < argc)
            cli->token_file = argv[++j];
        else if (tls_option(cli, argc, argv, &j))
            continue;
        else
            cli->argv[cli->argc++] = argv[j];
    }
}

int
main(int argc, char **argv)
{
    struct cli cli = {0};
    const struct verb *v;
    int i, rc;

    signal(SIGPIPE, SIG_IGN);
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--json") == 0)
            cli.json = true;
        else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
            cli.server = argv[++i];
        else if (strcmp(argv[i], "--token-file") == 0 && i + 1 < argc)
            cli.token_file = argv[++i];
        else if (tls_option(&cli, argc, argv, &i))
            continue;
        else if (is_help(argv[i]))
            return print_usage(stdout, NULL);
        else if (strcmp(argv[i], "--version") == 0 ||
                 strcmp(argv[i], "-V") == 0) {
            printf("asyncq %s\n", ASYNCQ_VERSION);
            return 0;
        } else
            return usage_error(&cli, "unknown option %s", argv[i]);
    }
    if (i == argc) {
        fputs("asyncq: no verb given\n", stderr);
        print_usage(stderr, NULL);
        return EXIT_USAGE;
    }
    if ((v = find_verb(argv[i])) == NULL)
        return usage_error(&cli, "unknown verb %s", argv[i]);
    cli.verb = v->name;
    split_args(&cli, argc, argv, i + 1);
    if (wants_help(&cli))
        rc = print_usage(stdout, v->name);
    else if (v->fn == NULL)
        rc = help(&cli);
    else
        rc = v->fn(&cli);
    aq_client_free(cli.client);
    free(cli.argv);
    return rc;
}
