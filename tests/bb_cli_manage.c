/* SPDX-License-Identifier: MIT */
/* placeholder, filled below */
#include "bbsuites.h"
Suite *
bb_cli_manage_suite(void)
{
    return suite_create("bb_cli_manage");
}
