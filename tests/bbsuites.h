/* SPDX-License-Identifier: MIT */
/* tests/bbsuites.h: the black-box suites, run by tests/bbmain.c. */
#ifndef AQ_BBSUITES_H
#define AQ_BBSUITES_H

#include <check.h>

Suite *bb_protocol_suite(void);
Suite *bb_methods_suite(void);
Suite *bb_exec_suite(void);
Suite *bb_procs_suite(void);
Suite *bb_lifecycle_suite(void);
Suite *bb_badinput_suite(void);
Suite *bb_journal_suite(void);
Suite *bb_pgstore_suite(void);
Suite *bb_pgremote_suite(void);
Suite *bb_pgshare_suite(void);
Suite *bb_records_suite(void);
Suite *bb_after_suite(void);
Suite *bb_faults_suite(void);
Suite *bb_cli_suite(void);
Suite *bb_cli_user_suite(void);
Suite *bb_cli_manage_suite(void);
Suite *bb_service_suite(void);
Suite *bb_http_suite(void);
Suite *bb_conformance_suite(void);
Suite *bb_fuzz_suite(void);
Suite *bb_broker_suite(void);
Suite *bb_list_suite(void);
Suite *bb_batch_suite(void);
Suite *bb_workers_suite(void);
Suite *bb_tls_suite(void);
Suite *bb_rpc_suite(void);
Suite *bb_rate_suite(void);
Suite *bb_schedules_suite(void);
Suite *bb_pg_suite(void);
Suite *bb_pgcluster_suite(void);

#endif
