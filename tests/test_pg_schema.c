/* SPDX-License-Identifier: MIT */
/*
 * tests/test_pg_schema.c: the postgres store's migrations (lib/pg_schema.h)
 * without a server: versions ascend from 1, a plan from any known version
 * runs exactly the later ones and records each, a newer database is
 * refused with the message operators see, every name is qualified by the
 * schema.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "error.h"
#include "job.h"
#include "pg_schema.h"
#include "store-internal.h"
#include "suites.h"
#include "testutil.h"

START_TEST(versions_ascend_from_one_without_gaps)
{
    ck_assert_uint_gt(aq_pg_nmigrations, 0);
    for (size_t i = 0; i < aq_pg_nmigrations; i++) {
        ck_assert_int_eq(aq_pg_migrations[i].version, (int)i + 1);
        ck_assert_ptr_nonnull(aq_pg_migrations[i].statements[0]);
    }
    ck_assert_int_eq(aq_pg_schema_latest(),
                     aq_pg_migrations[aq_pg_nmigrations - 1].version);
}
END_TEST

static size_t
count_statements(int from)
{
    size_t n = 0;

    for (size_t i = 0; i < aq_pg_nmigrations; i++) {
        if (aq_pg_migrations[i].version <= from)
            continue;
        for (size_t k = 0; aq_pg_migrations[i].statements[k] != NULL; k++)
            n++;
        n++; /* its schema_version row */
    }
    return n;
}

START_TEST(plan_from_nothing_creates_every_version_and_records_it)
{
    struct aq_error err;
    size_t n;
    char **v;

    ck_assert_int_eq(aq_pg_schema_plan("q1", 0, &v, &n, &err), 0);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(n, count_statements(0));
    ck_assert_str_eq(v[0], "CREATE SEQUENCE q1.job_seq");
    ck_assert_ptr_nonnull(strstr(v[1], "CREATE TABLE q1.jobs ("));
    ck_assert_ptr_nonnull(strstr(v[1], "nextval('q1.job_seq')"));
    ck_assert_str_eq(v[n - 1],
                     "INSERT INTO q1.schema_version (version) VALUES (2)");
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(strstr(v[i], "@S") == NULL, "%s", v[i]);
    aq_pg_sql_free(v, n);
}
END_TEST

/* Version 2 (nodes share the jobs): the pool's index replaces the ready
 * one, held rows are found by node, pauses get a table. */
START_TEST(plan_from_one_makes_the_pool_of_version_two)
{
    struct aq_error err;
    size_t n;
    char **v;

    ck_assert_int_ge(aq_pg_schema_latest(), 2);
    ck_assert_int_eq(aq_pg_schema_plan("q1", 1, &v, &n, &err), 0);
    ck_assert_uint_eq(n, count_statements(1));
    ck_assert_str_eq(v[0], "DROP INDEX q1.jobs_ready");
    ck_assert_str_eq(v[1], "CREATE INDEX jobs_pool ON q1.jobs (queue, "
                           "priority, seq) WHERE state = 2 AND node IS NULL");
    ck_assert_str_eq(v[2], "CREATE INDEX jobs_held ON q1.jobs (node, state) "
                           "WHERE state < 4 AND node IS NOT NULL");
    ck_assert_str_eq(v[3], "CREATE TABLE q1.queues (name text PRIMARY KEY, "
                           "paused boolean NOT NULL DEFAULT false)");
    ck_assert_str_eq(v[4],
                     "INSERT INTO q1.schema_version (version) VALUES (2)");
    aq_pg_sql_free(v, n);
}
END_TEST

START_TEST(plan_at_the_latest_version_is_empty)
{
    struct aq_error err;
    size_t n = 99;
    char **v;

    ck_assert_int_eq(
        aq_pg_schema_plan("asyncq", aq_pg_schema_latest(), &v, &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(v);
    aq_pg_sql_free(v, n);
}
END_TEST

START_TEST(newer_schema_is_refused_naming_both_versions)
{
    struct aq_error err;
    size_t n;
    char want[200];

    char **v;

    ck_assert_int_eq(
        aq_pg_schema_plan("asyncq", aq_pg_schema_latest() + 1, &v, &n, &err),
        -1);
    ck_assert_int_eq(err.code, AQ_ERR_INTERNAL);
    snprintf(want, sizeof want,
             "store: postgres: schema asyncq is at version %d, this asyncqd "
             "knows up to %d: upgrade asyncqd",
             aq_pg_schema_latest() + 1, aq_pg_schema_latest());
    ck_assert_str_eq(err.message, want);
}
END_TEST

START_TEST(prelude_locks_creates_and_reads_the_version_last)
{
    size_t n;
    char **v = aq_pg_schema_prelude("s_2", &n);
    char lock[80];

    ck_assert_uint_eq(n, 4);
    snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(%lld)",
             (long long)aq_pg_migrate_lock_key("s_2"));
    ck_assert_str_eq(v[0], lock);
    ck_assert_str_eq(v[1], "CREATE SCHEMA IF NOT EXISTS s_2");
    ck_assert_ptr_nonnull(
        strstr(v[2], "CREATE TABLE IF NOT EXISTS s_2.schema_version"));
    ck_assert_str_eq(
        v[3], "SELECT coalesce(max(version), 0) FROM s_2.schema_version");
    aq_pg_sql_free(v, n);
}
END_TEST

START_TEST(sql_replaces_every_schema_mark)
{
    char *s = aq_pg_sql("@S.a @S.b @S", "xy");

    ck_assert_str_eq(s, "xy.a xy.b xy");
    free(s);
    s = aq_pg_sql("no mark @", "xy");
    ck_assert_str_eq(s, "no mark @");
    free(s);
}
END_TEST

START_TEST(lock_keys_are_stable_and_distinct)
{
    /* The values other nodes (of any build) compute: never change them. */
    ck_assert_int_eq(aq_pg_node_lock_key("asyncq", "n1"),
                     aq_pg_node_lock_key("asyncq", "n1"));
    ck_assert_int_ne(aq_pg_node_lock_key("asyncq", "n1"),
                     aq_pg_node_lock_key("asyncq2", "n1"));
    /* one lock per node name: nodes of other names run beside it */
    ck_assert_int_ne(aq_pg_node_lock_key("asyncq", "n1"),
                     aq_pg_node_lock_key("asyncq", "n2"));
    ck_assert_int_ne(aq_pg_node_lock_key("asyncq", "n1"),
                     aq_pg_migrate_lock_key("asyncq"));
}
END_TEST

/* ---- the job <-> whole record mapping the stores share ---- */

START_TEST(finished_job_round_trips_through_its_whole_record)
{
    struct aq_job *j = aq_job_new(42, AQ_KIND_ECHO, "{\"a\":1}", 7), *back;
    struct aq_job_ext *x = aq_job_ext(j);
    static const uint64_t after[] = {7, 9};
    unsigned char *abuf;
    struct aq_jrec r;

    j->state = AQ_JOB_FAILED;
    j->attempts = 3;
    j->qi.priority = -5;
    j->created_us = 1000;
    x->started_us = 2000;
    x->finished_us = 3000;
    x->retries = 2;
    x->timeout_us = 4000000;
    x->retried = 1;
    x->name = strdup("nm");
    x->batch = strdup("b1");
    x->err_code = strdup("exit");
    x->err_message = strdup("status 1");
    x->deps = aq_job_deps_new(after, 2, AQ_AFTER_FINISHED);
    store_job_whole(j, "q", &r, &abuf);
    ck_assert_int_eq(r.type, AQ_JREC_END);
    ck_assert_int_eq(r.state, STORE_FAILED);
    ck_assert_uint_eq(r.after.len, 16);
    ck_assert(store_jrec_whole_fits(&r));
    ck_assert(!store_jrec_clamp(&r));
    back = aq_job_new(42, AQ_KIND_ECHO, r.args.p, r.args.len);
    store_job_fill(NULL, back, &r); /* no key: the broker is not asked */
    free(abuf);
    ck_assert_int_eq(back->state, AQ_JOB_FAILED);
    ck_assert_int_eq(back->attempts, 3);
    ck_assert_int_eq(back->qi.priority, -5);
    ck_assert_int_eq(back->created_us, 1000);
    ck_assert_int_eq(back->ext->started_us, 2000);
    ck_assert_int_eq(back->ext->finished_us, 3000);
    ck_assert_uint_eq(back->ext->retried, 1);
    ck_assert_str_eq(back->ext->name, "nm");
    ck_assert_str_eq(back->ext->batch, "b1");
    ck_assert_str_eq(back->ext->err_code, "exit");
    ck_assert_str_eq(back->ext->err_message, "status 1");
    ck_assert_ptr_null(back->ext->key);
    ck_assert_uint_eq(back->ext->deps->nafter, 2);
    ck_assert_uint_eq(back->ext->deps->after[1], 9);
    ck_assert_int_eq(back->ext->deps->policy, AQ_AFTER_FINISHED);
    ck_assert_str_eq(back->args, "{\"a\":1}");
    aq_job_free(j);
    aq_job_free(back);
}
END_TEST

START_TEST(record_values_out_of_range_are_clamped)
{
    struct aq_jrec r = {.type = AQ_JREC_PUT,
                        .state = STORE_PENDING,
                        .created_us = -5,
                        .timeout_us = -7,
                        .retries = -3};

    ck_assert(store_jrec_clamp(&r));
    ck_assert_int_eq(r.created_us, 0);
    ck_assert_int_eq(r.timeout_us, -1);
    ck_assert_int_eq(r.retries, -1);
    r.state = STORE_DONE; /* a PUT holds an unfinished job */
    ck_assert(!store_jrec_whole_fits(&r));
    r.state = STORE_NSTATES;
    ck_assert(!store_jrec_whole_fits(&r));
}
END_TEST

Suite *
pg_schema_suite(void)
{
    Suite *s = suite_create("pg_schema");
    TCase *tc = test_tcase_new("migrations");

    tcase_add_test(tc, versions_ascend_from_one_without_gaps);
    tcase_add_test(tc, plan_from_nothing_creates_every_version_and_records_it);
    tcase_add_test(tc, plan_from_one_makes_the_pool_of_version_two);
    tcase_add_test(tc, plan_at_the_latest_version_is_empty);
    tcase_add_test(tc, newer_schema_is_refused_naming_both_versions);
    tcase_add_test(tc, prelude_locks_creates_and_reads_the_version_last);
    tcase_add_test(tc, sql_replaces_every_schema_mark);
    tcase_add_test(tc, lock_keys_are_stable_and_distinct);
    suite_add_tcase(s, tc);
    tc = test_tcase_new("rows");
    tcase_add_test(tc, finished_job_round_trips_through_its_whole_record);
    tcase_add_test(tc, record_values_out_of_range_are_clamped);
    suite_add_tcase(s, tc);
    return s;
}
