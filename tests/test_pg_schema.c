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
#include "pg_schema.h"
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
                     "INSERT INTO q1.schema_version (version) VALUES (1)");
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(strstr(v[i], "@S") == NULL, "%s", v[i]);
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
    ck_assert_int_eq(aq_pg_node_lock_key("asyncq"),
                     aq_pg_node_lock_key("asyncq"));
    ck_assert_int_ne(aq_pg_node_lock_key("asyncq"),
                     aq_pg_node_lock_key("asyncq2"));
    ck_assert_int_ne(aq_pg_node_lock_key("asyncq"),
                     aq_pg_migrate_lock_key("asyncq"));
}
END_TEST

Suite *
pg_schema_suite(void)
{
    Suite *s = suite_create("pg_schema");
    TCase *tc = test_tcase_new("migrations");

    tcase_add_test(tc, versions_ascend_from_one_without_gaps);
    tcase_add_test(tc, plan_from_nothing_creates_every_version_and_records_it);
    tcase_add_test(tc, plan_at_the_latest_version_is_empty);
    tcase_add_test(tc, newer_schema_is_refused_naming_both_versions);
    tcase_add_test(tc, prelude_locks_creates_and_reads_the_version_last);
    tcase_add_test(tc, sql_replaces_every_schema_mark);
    tcase_add_test(tc, lock_keys_are_stable_and_distinct);
    suite_add_tcase(s, tc);
    return s;
}
