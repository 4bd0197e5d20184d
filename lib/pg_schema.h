/* SPDX-License-Identifier: MIT */
/*
 * lib/pg_schema.h: the postgres store's tables in schema S, versioned.
 * asyncqd creates and migrates them itself: in one transaction under
 * pg_advisory_xact_lock it runs the prelude (the schema and its version
 * table), reads the version, then the plan from there to the latest. A
 * database at a version newer than this binary knows is refused. Builds
 * SQL text, runs nothing; also the settings the pg modules share (the
 * environment's intervals, the default node name).
 */
#ifndef AQ_PG_SCHEMA_H
#define AQ_PG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

struct aq_error;

/* One version: the statements that take the schema from the version
 * before to this one; "@S" stands for the schema's name. */
struct aq_pg_migration {
    int version;
    const char *const *statements; /* then NULL */
};
extern const struct aq_pg_migration aq_pg_migrations[]; /* versions 1.. */
extern const size_t aq_pg_nmigrations;

/* The latest version this binary knows. */
int aq_pg_schema_latest(void);

/* tmpl with every "@S" replaced by schema (the caller's to free). */
char *aq_pg_sql(const char *tmpl, const char *schema);

/* What runs first, in the migration's transaction: the lock, then the
 * schema and its version table if missing; the last statement selects
 * the version (0 when none). *n statements; free with aq_pg_sql_free. */
char **aq_pg_schema_prelude(const char *schema, size_t *n);
/* *out: the statements taking schema from version current to the latest,
 * each version's then its row in schema_version (*n = 0, *out NULL:
 * nothing to do); free with aq_pg_sql_free. 0, or -1 with err (-32603)
 * when current is newer than the latest: "store: postgres: schema S is at
 * version N, this asyncqd knows up to M: upgrade asyncqd". */
int aq_pg_schema_plan(const char *schema, int current, char ***out, size_t *n,
                      struct aq_error *err);
void aq_pg_sql_free(char **v, size_t n); /* NULL is fine */

/* The advisory lock keys of schema: the one node holds for its whole
 * session (one asyncqd per node name and schema), and the migration's.
 * Stable across versions and machines (FNV-1a of the names). */
int64_t aq_pg_node_lock_key(const char *schema, const char *node);
int64_t aq_pg_migrate_lock_key(const char *schema);
/* Held by the node whose schedules fire (lib/pgcluster.c). */
int64_t aq_pg_schedules_lock_key(const char *schema);

/* The environment variable name as a number of milliseconds from 10 to
 * 3600000 (ASYNCQ_PG_POLL_MS, ASYNCQ_PG_LEASE_RENEW_MS), else dflt (also
 * when unset or not a number). */
long aq_pg_env_ms(const char *name, long dflt);
/* node, or when NULL the store's default: the host name cut to 64 bytes
 * ("localhost" if gethostname fails). The caller's to free. */
char *aq_pg_node_name(const char *node);

#endif
