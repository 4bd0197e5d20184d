/* SPDX-License-Identifier: MIT */
/*
 * tools/asyncq_sched.c: the schedules verb: the daemon's schedules (spec
 * section 11) as a table: name, cron, time zone, queue, the next and the
 * last fire time (local time of this machine), and the last job.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "asyncq.h"

/* "12-06 14:00:00" (local time; the year is left out to fit 80
 * columns, --json has it) or "-" for an absent time. */
static const char *
fmt_when(const json_t *t, char *buf, size_t size)
{
    time_t secs;
    struct tm tm;

    if (!json_is_number(t))
        return "-";
    secs = (time_t)floor(json_number_value(t));
    localtime_r(&secs, &tm);
    strftime(buf, size, "%m-%d %H:%M:%S", &tm);
    return buf;
}

/* A cell of width w, then the space between columns. */
static void
cell(const char *s, int w)
{
    print_cell(s, w, false, false);
    putchar(' ');
}

static void
print_table(const json_t *list)
{
    static const int w[] = {12, 12, 13, 8, 14, 14};
    size_t i;
    const json_t *s;

    cell("NAME", w[0]);
    cell("CRON", w[1]);
    cell("TZ", w[2]);
    cell("QUEUE", w[3]);
    cell("NEXT", w[4]);
    cell("LAST", w[5]);
    print_cell("LAST JOB", -1, false, true);
    putchar('\n');
    json_array_foreach (list, i, s) {
        char next[32], last[32], job[24] = "-";
        const json_t *id = json_object_get(s, "last_job");

        if (json_is_integer(id))
            snprintf(job, sizeof job, "%lld",
                     (long long)json_integer_value(id));
        cell(str_of(s, "name"), w[0]);
        cell(str_of(s, "cron"), w[1]);
        cell(str_of(s, "timezone"), w[2]);
        cell(str_of(s, "queue"), w[3]);
        cell(fmt_when(json_object_get(s, "next"), next, sizeof next), w[4]);
        cell(fmt_when(json_object_get(s, "last"), last, sizeof last), w[5]);
        print_cell(job, -1, false, true);
        putchar('\n');
    }
}

int
v_schedules(struct cli *cli)
{
    const char *name = NULL;
    json_t *params = json_object(), *res;
    int rc;

    for (int k = 0; k < cli->argc; k++) {
        if (name == NULL && cli->argv[k][0] != '-')
            name = cli->argv[k];
        else {
            json_decref(params);
            return usage_error(cli, "%s: unexpected argument", cli->argv[k]);
        }
    }
    if (name != NULL)
        json_object_set_new(params, "name", json_string(name));
    if ((rc = connect_cli(cli)) != 0) {
        json_decref(params);
        return rc;
    }
    if ((res = call(cli, "schedules", params, false, &rc)) == NULL)
        return rc;
    if (cli->json)
        print_json(res);
    else if (json_array_size(json_object_get(res, "schedules")) == 0)
        printf("no schedules (see \"schedules\" in the daemon's config)\n");
    else
        print_table(json_object_get(res, "schedules"));
    json_decref(res);
    return 0;
}
