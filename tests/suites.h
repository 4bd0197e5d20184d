/* SPDX-License-Identifier: MIT */
/* tests/suites.h: one Check suite per lib module; tests/main.c runs them. */
#ifndef AQ_TEST_SUITES_H
#define AQ_TEST_SUITES_H

#include <check.h>

Suite *broker_suite(void);
Suite *config_suite(void);
Suite *http_suite(void);
Suite *journal_suite(void);
Suite *jscan_suite(void);
Suite *listen_suite(void);
Suite *netmatch_suite(void);
Suite *methods_suite(void);
Suite *metrics_suite(void);
Suite *params_suite(void);
Suite *proc_suite(void);
Suite *pstat_suite(void);
Suite *queue_suite(void);
Suite *recarena_suite(void);
Suite *rpc_suite(void);
Suite *server_suite(void);
Suite *task_suite(void);
Suite *wait_suite(void);

#endif
