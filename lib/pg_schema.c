/* SPDX-License-Identifier: MIT */
/*
 * lib/pg_schema.c: the postgres store's schema versions (lib/pg_schema.h).
 * A version's statements never change once released: a change is a new
 * version appended to the list.
 *
 * jobs.state: 0 delayed, 1 waiting, 2 pending, 3 running, 4 done, 5
 * failed, 6 cancelled (docs/durability.md). Times are timestamptz (NULL =
 * never); durations bigint microseconds. Columns follow struct aq_jrec.
 */
#include "pg_schema.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "xmalloc.h"

static const char *const v1[] = {
    "CREATE SEQUENCE @S.job_seq",
    "CREATE TABLE @S.jobs ("
    "id bigint PRIMARY KEY, "
    "queue text NOT NULL, "
    "kind smallint NOT NULL, "
    "state smallint NOT NULL, "
    "priority integer NOT NULL, "
    "seq bigint NOT NULL DEFAULT nextval('@S.job_seq'), "
    "due timestamptz, "
    "attempts integer NOT NULL, "
    "retries integer NOT NULL, "
    "retried integer NOT NULL, "
    "timeout_us bigint NOT NULL, "
    "created timestamptz NOT NULL, "
    "started timestamptz, "
    "finished timestamptz, "
    "node text, "
    "lease_deadline timestamptz, "
    "key text, "
    "name text, "
    "batch text, "
    "after bigint[], "
    "after_policy smallint, "
    "args text NOT NULL, "
    "result text, "
    "error_code text, "
    "error_message text)",
    "CREATE INDEX jobs_ready ON @S.jobs (queue, priority, seq) "
    "WHERE state = 2",
    "CREATE INDEX jobs_due ON @S.jobs (due) WHERE state = 0",
    "CREATE INDEX jobs_queue_state ON @S.jobs (queue, state, id)",
    "CREATE INDEX jobs_finished ON @S.jobs (finished) WHERE state >= 4",
    "CREATE INDEX jobs_lease ON @S.jobs (lease_deadline) WHERE state = 3",
    /* The broker's keys name one live job across every queue. */
    "CREATE UNIQUE INDEX jobs_key ON @S.jobs (key) "
    "WHERE key IS NOT NULL AND state < 4",
    "CREATE TABLE @S.schedules ("
    "name text PRIMARY KEY, "
    "last_fire timestamptz NOT NULL, "
    "last_job bigint NOT NULL)",
    "CREATE TABLE @S.nodes ("
    "node text PRIMARY KEY, "
    "started timestamptz, "
    "seen timestamptz)",
    /* One row: the highest job id reserved, ahead of the ids given, in
     * blocks (ids are never given twice, even once their rows are gone). */
    "CREATE TABLE @S.ids (last_id bigint NOT NULL)",
    "INSERT INTO @S.ids (last_id) VALUES (0)",
    NULL,
};

/* Several active nodes share the jobs: a row is held by the node named
 * (node), or in the pool (node NULL) for any node to claim; pauses are
 * shared. */
static const char *const v2[] = {
    "DROP INDEX @S.jobs_ready",
    "CREATE INDEX jobs_pool ON @S.jobs (queue, priority, seq) "
    "WHERE state = 2 AND node IS NULL",
    "CREATE INDEX jobs_held ON @S.jobs (node, state) "
    "WHERE state < 4 AND node IS NOT NULL",
    "CREATE TABLE @S.queues (name text PRIMARY KEY, "
    "paused boolean NOT NULL DEFAULT false)",
    NULL,
};

const struct aq_pg_migration aq_pg_migrations[] = {
    {1, v1},
    {2, v2},
};
const size_t aq_pg_nmigrations =
    sizeof aq_pg_migrations / sizeof aq_pg_migrations[0];

int
aq_pg_schema_latest(void)
{
    return aq_pg_migrations[aq_pg_nmigrations - 1].version;
}

char *
aq_pg_sql(const char *tmpl, const char *schema)
{
    size_t n = 0, slen = strlen(schema), len = 0;
    const char *p;
    char *out;

    for (p = tmpl; (p = strstr(p, "@S")) != NULL; p += 2)
        n++;
    out = xmalloc(strlen(tmpl) + n * slen + 1);
    for (p = tmpl; *p != '\0';) {
        if (p[0] == '@' && p[1] == 'S') {
            memcpy(out + len, schema, slen);
            len += slen;
            p += 2;
        } else
            out[len++] = *p++;
    }
    out[len] = '\0';
    return out;
}

static void
push(char ***v, size_t *n, char *sql)
{
    *v = xreallocarray(*v, *n + 1, sizeof **v);
    (*v)[(*n)++] = sql;
}

char **
aq_pg_schema_prelude(const char *schema, size_t *n)
{
    char **v = NULL;

    *n = 0;
    push(&v, n,
         xasprintf("SELECT pg_advisory_xact_lock(%" PRId64 ")",
                   aq_pg_migrate_lock_key(schema)));
    push(&v, n, aq_pg_sql("CREATE SCHEMA IF NOT EXISTS @S", schema));
    push(&v, n,
         aq_pg_sql("CREATE TABLE IF NOT EXISTS @S.schema_version ("
                   "version integer NOT NULL, "
                   "applied_at timestamptz NOT NULL DEFAULT now())",
                   schema));
    push(&v, n,
         aq_pg_sql("SELECT coalesce(max(version), 0) FROM @S.schema_version",
                   schema));
    return v;
}

int
aq_pg_schema_plan(const char *schema, int current, char ***out, size_t *n,
                  struct aq_error *err)
{
    char **v = NULL;

    *n = 0;
    *out = NULL;
    if (current > aq_pg_schema_latest()) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "store: postgres: schema %s is at version %d, this "
                     "asyncqd knows up to %d: upgrade asyncqd",
                     schema, current, aq_pg_schema_latest());
        return -1;
    }
    for (size_t i = 0; i < aq_pg_nmigrations; i++) {
        const struct aq_pg_migration *m = &aq_pg_migrations[i];

        if (m->version <= current)
            continue;
        for (size_t k = 0; m->statements[k] != NULL; k++)
            push(&v, n, aq_pg_sql(m->statements[k], schema));
        push(&v, n,
             xasprintf("INSERT INTO %s.schema_version (version) VALUES (%d)",
                       schema, m->version));
    }
    *out = v;
    return 0;
}

void
aq_pg_sql_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* FNV-1a, 64 bits, of prefix then name. */
static int64_t
lock_key(const char *prefix, const char *name)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (const char *p = prefix; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * UINT64_C(1099511628211);
    for (const char *p = name; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * UINT64_C(1099511628211);
    return (int64_t)h;
}

int64_t
aq_pg_node_lock_key(const char *schema, const char *node)
{
    char *name = xasprintf("%s/%s", schema, node);
    int64_t key = lock_key("asyncq node:", name);

    free(name);
    return key;
}

int64_t
aq_pg_migrate_lock_key(const char *schema)
{
    return lock_key("asyncq migrate:", schema);
}

int64_t
aq_pg_schedules_lock_key(const char *schema)
{
    return lock_key("asyncq schedules:", schema);
}

long
aq_pg_env_ms(const char *name, long dflt)
{
    const char *v = getenv(name);
    char *end;
    long ms;

    if (v == NULL)
        return dflt;
    ms = strtol(v, &end, 10);
    return end != v && *end == '\0' && ms >= 10 && ms <= 3600000 ? ms : dflt;
}

char *
aq_pg_node_name(const char *node)
{
    char host[256];

    if (node != NULL)
        return xstrdup(node);
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[64] = '\0'; /* also ends a name gethostname truncated */
    return xstrdup(host);
}
