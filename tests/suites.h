/* SPDX-License-Identifier: MIT */
/*
 * tests/suites.h: a Check suite per lib module with logic, named after it;
 * tests/main.c runs them. A family shares its module's suite (journal*.c,
 * proc*.c, http*.c, config*.c; call.c in server's; consumer.c, records.c,
 * store.c and store_journal.c in broker's; store_pg.c has its own, with a
 * server), and a helper module is tested
 * with the one it serves: jwrite in rpc's, fastput in jscan's, cgroup and
 * runfile in proc's and pstat's.
 * The handlers run in the broker's suite and the black-box exec and http
 * suites; error.c and xmalloc.c only wrap libc.
 */
#ifndef AQ_TEST_SUITES_H
#define AQ_TEST_SUITES_H

#include <check.h>

Suite *broker_suite(void);
Suite *client_suite(void);
Suite *clock_suite(void);
Suite *cron_suite(void);
Suite *config_suite(void);
Suite *crc32c_suite(void);
Suite *pg_schema_suite(void);
Suite *hist_suite(void);
Suite *rate_suite(void);
Suite *history_suite(void);
Suite *http_suite(void);
Suite *idmap_suite(void);
Suite *batch_suite(void);
Suite *idset_suite(void);
Suite *job_suite(void);
Suite *pgconn_suite(void);
Suite *journal_suite(void);
Suite *jscan_suite(void);
Suite *listen_suite(void);
Suite *log_suite(void);
Suite *netmatch_suite(void);
Suite *methods_suite(void);
Suite *metrics_suite(void);
Suite *params_suite(void);
Suite *proc_suite(void);
Suite *pstat_suite(void);
Suite *queue_suite(void);
Suite *recarena_suite(void);
Suite *rpc_suite(void);
Suite *sd_suite(void);
Suite *secret_suite(void);
Suite *server_suite(void);
Suite *store_pg_suite(void);
Suite *pgremote_suite(void);
Suite *task_suite(void);
Suite *ui_suite(void);
Suite *wait_suite(void);

#endif
