/* SPDX-License-Identifier: MIT */
/*
 * tests/bbmain.c: runs the black-box suites (CK_RUN_SUITE picks one), each
 * test against a real asyncqd of its own.
 */
#include <signal.h>
#include <stdlib.h>

#include "bbsuites.h"

int
main(void)
{
    SRunner *sr = srunner_create(bb_protocol_suite());
    int failed;

    /* A daemon that closes a socket must fail a send, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    srunner_add_suite(sr, bb_methods_suite());
    srunner_add_suite(sr, bb_exec_suite());
    srunner_add_suite(sr, bb_procs_suite());
    srunner_add_suite(sr, bb_lifecycle_suite());
    srunner_add_suite(sr, bb_badinput_suite());
    srunner_add_suite(sr, bb_journal_suite());
    srunner_add_suite(sr, bb_pgstore_suite());
    srunner_add_suite(sr, bb_pgshare_suite());
    srunner_add_suite(sr, bb_faults_suite());
    srunner_add_suite(sr, bb_cli_suite());
    srunner_add_suite(sr, bb_cli_user_suite());
    srunner_add_suite(sr, bb_cli_manage_suite());
    srunner_add_suite(sr, bb_service_suite());
    srunner_add_suite(sr, bb_http_suite());
    srunner_add_suite(sr, bb_conformance_suite());
    srunner_add_suite(sr, bb_fuzz_suite());
    srunner_add_suite(sr, bb_broker_suite());
    srunner_add_suite(sr, bb_records_suite());
    srunner_add_suite(sr, bb_list_suite());
    srunner_add_suite(sr, bb_batch_suite());
    srunner_add_suite(sr, bb_workers_suite());
    srunner_add_suite(sr, bb_tls_suite());
    srunner_add_suite(sr, bb_rpc_suite());
    srunner_add_suite(sr, bb_rate_suite());
    srunner_add_suite(sr, bb_after_suite());
    srunner_add_suite(sr, bb_schedules_suite());
    srunner_add_suite(sr, bb_pg_suite());
    srunner_add_suite(sr, bb_pgremote_suite());
    srunner_add_suite(sr, bb_pgcluster_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
