/* SPDX-License-Identifier: MIT */
/* stub: replaced by the real suite */
#include "bbsuites.h"

Suite *
bb_service_suite(void)
{
    return suite_create("bb_service");
}
