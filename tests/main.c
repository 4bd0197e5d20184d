/* SPDX-License-Identifier: MIT */
/*
 * tests/main.c: runs every Check suite, or the one named by CK_RUN_SUITE
 * (Check's own variable), so ctest can list one test per suite.
 */
#include <stdlib.h>

#include "suites.h"

int
main(void)
{
    SRunner *sr = srunner_create(queue_suite());
    int failed;

    srunner_add_suite(sr, task_suite());
    srunner_add_suite(sr, config_suite());
    srunner_add_suite(sr, crc32c_suite());
    srunner_add_suite(sr, pg_schema_suite());
    srunner_add_suite(sr, http_suite());
    srunner_add_suite(sr, journal_suite());
    srunner_add_suite(sr, jscan_suite());
    srunner_add_suite(sr, netmatch_suite());
    srunner_add_suite(sr, metrics_suite());
    srunner_add_suite(sr, proc_suite());
    srunner_add_suite(sr, pstat_suite());
    srunner_add_suite(sr, recarena_suite());
    srunner_add_suite(sr, rpc_suite());
    srunner_add_suite(sr, wait_suite());
    srunner_add_suite(sr, batch_suite());
    srunner_add_suite(sr, broker_suite());
    srunner_add_suite(sr, clock_suite());
    srunner_add_suite(sr, cron_suite());
    srunner_add_suite(sr, client_suite());
    srunner_add_suite(sr, hist_suite());
    srunner_add_suite(sr, rate_suite());
    srunner_add_suite(sr, history_suite());
    srunner_add_suite(sr, idmap_suite());
    srunner_add_suite(sr, idset_suite());
    srunner_add_suite(sr, job_suite());
    srunner_add_suite(sr, log_suite());
    srunner_add_suite(sr, sd_suite());
    srunner_add_suite(sr, secret_suite());
    srunner_add_suite(sr, server_suite());
    srunner_add_suite(sr, params_suite());
    srunner_add_suite(sr, methods_suite());
    srunner_add_suite(sr, listen_suite());
    srunner_add_suite(sr, ui_suite());
    srunner_add_suite(sr, pgconn_suite());
    srunner_add_suite(sr, store_pg_suite());
    srunner_add_suite(sr, pgremote_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
