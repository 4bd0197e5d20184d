/* SPDX-License-Identifier: MIT */
/*
 * tests/test_job.c: the contract of lib/job.h: kind and state names, the
 * job record of spec section 2 (what it shows and leaves out, the result
 * exactly as stored), and packing a finished job into a record arena
 * (args included) without changing its record, and back (a retry).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "job.h"
#include "jwrite.h"
#include "recarena.h"
#include "suites.h"
#include "testutil.h"

/* The record of j as compact text (a new string). */
static char *
record_text(const struct aq_job *j)
{
    json_t *rec = aq_job_record(j, "default");
    char *text = aq_jwrite_string(rec, NULL);

    json_decref(rec);
    return text;
}

/* A finished job with every string an ext holds. */
static struct aq_job *
finished_job(uint64_t id)
{
    struct aq_job *j = aq_job_new(id, AQ_KIND_EXEC, "{\"argv\":[\"true\"]}",
                                  strlen("{\"argv\":[\"true\"]}"));
    struct aq_job_ext *x = aq_job_ext(j);

    j->state = AQ_JOB_FAILED;
    j->attempts = 2;
    j->qi.priority = -3;
    j->created_us = 1700000000000000;
    x->started_us = 1700000001000000;
    x->finished_us = 1700000002500000;
    x->key = strdup("order-7");
    x->result = strdup("{\"exit_code\":3,\"x\":[1.50,2]}");
    aq_job_set_error(j, "exit", "exited with 3");
    return j;
}

START_TEST(kind_names_parse_back_to_their_kind)
{
    enum aq_kind k;
    int n = 0;

    for (; aq_kind_names[n] != NULL; n++) {
        ck_assert_int_eq(aq_kind_parse(aq_kind_names[n], &k), 0);
        ck_assert_int_eq(k, n);
        ck_assert_str_eq(aq_kind_name(k), aq_kind_names[n]);
    }
    ck_assert_int_eq(n, AQ_KIND_REMOTE + 1);
    ck_assert_int_eq(aq_kind_parse("teleport", &k), -1);
    ck_assert_int_eq(aq_kind_parse("", &k), -1);
    ck_assert_str_eq(aq_kind_name((enum aq_kind)99), "unknown");
    ck_assert_str_eq(aq_job_state_name(AQ_JOB_DELAYED), "delayed");
    ck_assert_str_eq(aq_job_state_name(AQ_JOB_CANCELLED), "cancelled");
    ck_assert_str_eq(aq_job_state_name((enum aq_job_state)99), "unknown");
}
END_TEST

START_TEST(new_job_is_pending_with_a_copy_of_its_args_and_no_extras)
{
    char args[] = "{\"n\":1}";
    struct aq_job *j = aq_job_new(42, AQ_KIND_ECHO, args, 7);
    char *text;

    args[0] = 'X'; /* the job's copy is its own */
    ck_assert_str_eq(j->args, "{\"n\":1}");
    ck_assert_uint_eq(j->args_len, 7);
    ck_assert_int_eq(j->state, AQ_JOB_PENDING);
    ck_assert(!aq_job_is_finished(j));
    ck_assert_ptr_null(j->ext);
    j->created_us = 1500000;
    text = record_text(j);
    ck_assert_str_eq(text,
                     "{\"job\":42,\"queue\":\"default\",\"kind\":\"echo\","
                     "\"state\":\"pending\",\"priority\":0,"
                     "\"attempts\":0,\"created\":1.5,\"args\":{\"n\":1}}");
    free(text);
    aq_job_free(j);
    aq_job_free(NULL);
}
END_TEST

START_TEST(ext_starts_with_the_queues_timeout_and_retries)
{
    struct aq_job *j = aq_job_new(1, AQ_KIND_SLEEP, "{}", 2);
    struct aq_job_ext *x = aq_job_ext(j);

    ck_assert_ptr_eq(aq_job_ext(j), x);
    ck_assert_int_eq(x->timeout_us, -1);
    ck_assert_int_eq(x->retries, -1);
    aq_job_set_error(j, "timeout", "ran past 1 s");
    ck_assert_str_eq(x->err_code, "timeout");
    ck_assert_str_eq(x->err_message, "ran past 1 s");
    aq_job_set_error(j, NULL, NULL);
    ck_assert_ptr_null(x->err_code);
    ck_assert_ptr_null(x->err_message);
    aq_job_free(j);
}
END_TEST

START_TEST(finished_record_shows_key_times_result_as_stored_and_error)
{
    struct aq_job *j = finished_job(9);
    char *text = record_text(j);

    ck_assert(aq_job_is_finished(j));
    ck_assert_str_eq(text,
                     "{\"job\":9,\"queue\":\"default\",\"kind\":\"exec\","
                     "\"state\":\"failed\",\"priority\":-3,\"attempts\":2,"
                     "\"created\":1700000000.0,"
                     "\"args\":{\"argv\":[\"true\"]},\"key\":\"order-7\","
                     "\"started\":1700000001.0,\"finished\":1700000002.5,"
                     "\"result\":{\"exit_code\":3,\"x\":[1.50,2]},"
                     "\"error\":{\"code\":\"exit\",\"message\":\"exited with "
                     "3\"}}");
    free(text);
    aq_job_free(j);
}
END_TEST

START_TEST(packed_job_keeps_its_record)
{
    struct aq_recarena *a = aq_recarena_new();
    struct aq_job *j = finished_job(11), *p;
    char *before = record_text(j), *after;

    p = aq_job_pack(j, a);
    ck_assert(p != j);
    ck_assert(p->is_packed);
    ck_assert_uint_gt(aq_recarena_mapped(a), 0);
    ck_assert_ptr_eq(aq_job_pack(p, a), p); /* packed once only */
    after = record_text(p);
    ck_assert_str_eq(after, before);
    aq_job_free(p); /* back to the arena: no free() of p */
    free(before);
    free(after);
    aq_recarena_free(a);
}
END_TEST

/* What a record of issue 13 adds: args as put (a number keeps its
 * spelling), name, batch, retried; none of them when unset, and no args
 * when they were not kept (an old journal's record). */
START_TEST(record_shows_args_as_put_name_batch_and_retried)
{
    static const char args[] = "{\"n\":1e3,\"f\":0.30000000000000004}";
    struct aq_job *j = aq_job_new(5, AQ_KIND_ECHO, args, strlen(args));
    struct aq_job_ext *x = aq_job_ext(j);
    struct aq_job *old = aq_job_new(6, AQ_KIND_ECHO, "", 0);
    char *text;

    j->state = AQ_JOB_DONE;
    x->name = strdup("resize");
    x->batch = strdup("b-1");
    x->retried = 2;
    text = record_text(j);
    ck_assert_str_eq(text, "{\"job\":5,\"queue\":\"default\",\"kind\":\"echo\","
                           "\"state\":\"done\",\"priority\":0,"
                           "\"attempts\":0,\"created\":0.0,"
                           "\"args\":{\"n\":1e3,\"f\":0.30000000000000004},"
                           "\"name\":\"resize\",\"batch\":\"b-1\","
                           "\"retried\":2}");
    free(text);
    text = record_text(old);
    ck_assert_ptr_null(strstr(text, "\"args\""));
    free(text);
    aq_job_free(j);
    aq_job_free(old);
}
END_TEST

/* A record keeps args, name and batch when packed; unpacked again (a
 * retry) it is the same job in the heap, its block given back. */
START_TEST(packed_record_keeps_args_name_batch_and_unpacks_the_same)
{
    struct aq_recarena *a = aq_recarena_new();
    struct aq_job *j = finished_job(12), *p, *u;
    char *before, *after;
    size_t heap_bytes;

    j->ext->name = strdup("n");
    j->ext->batch = strdup("b");
    j->ext->retried = 1;
    before = record_text(j);
    heap_bytes = aq_job_bytes(j);
    p = aq_job_pack(j, a);
    ck_assert(p->is_packed);
    ck_assert_str_eq(p->args, "{\"argv\":[\"true\"]}");
    after = record_text(p);
    ck_assert_str_eq(after, before);
    free(after);
    /* what it occupies: its block, less than its heap allocations */
    ck_assert_uint_gt(aq_job_bytes(p), sizeof *p + p->args_len);
    ck_assert_uint_le(aq_job_bytes(p), heap_bytes);
    ck_assert_uint_eq(aq_job_bytes(p) % 16, 0);
    u = aq_job_unpack(p);
    ck_assert(!u->is_packed);
    ck_assert_ptr_eq(aq_job_unpack(u), u);
    after = record_text(u);
    ck_assert_str_eq(after, before);
    ck_assert_uint_eq(aq_job_bytes(u), heap_bytes);
    free(after);
    free(before);
    aq_job_free(u); /* heap strings: ASan sees a leak or a bad free */
    aq_recarena_free(a);
}
END_TEST

START_TEST(job_without_ext_or_too_big_for_a_chunk_stays_where_it_is)
{
    struct aq_recarena *a = aq_recarena_new();
    struct aq_job *plain = aq_job_new(1, AQ_KIND_ECHO, "{}", 2);
    struct aq_job *big = finished_job(2);
    size_t n = 128 * 1024;
    char *huge = malloc(n);

    ck_assert_ptr_eq(aq_job_pack(plain, a), plain);
    memset(huge, 'r', n - 1);
    huge[n - 1] = '\0';
    free(big->ext->result);
    big->ext->result = huge;
    ck_assert_ptr_eq(aq_job_pack(big, a), big);
    ck_assert(!big->is_packed);
    ck_assert_uint_eq(aq_recarena_mapped(a), 0);
    aq_job_free(plain);
    aq_job_free(big);
    aq_recarena_free(a);
}
END_TEST

Suite *
job_suite(void)
{
    Suite *s = suite_create("job");
    TCase *tc = test_tcase_new("job");

    tcase_add_test(tc, kind_names_parse_back_to_their_kind);
    tcase_add_test(tc,
                   new_job_is_pending_with_a_copy_of_its_args_and_no_extras);
    tcase_add_test(tc, ext_starts_with_the_queues_timeout_and_retries);
    tcase_add_test(tc,
                   finished_record_shows_key_times_result_as_stored_and_error);
    tcase_add_test(tc, packed_job_keeps_its_record);
    tcase_add_test(tc, record_shows_args_as_put_name_batch_and_retried);
    tcase_add_test(tc,
                   packed_record_keeps_args_name_batch_and_unpacks_the_same);
    tcase_add_test(tc,
                   job_without_ext_or_too_big_for_a_chunk_stays_where_it_is);
    suite_add_tcase(s, tc);
    return s;
}
