/* SPDX-License-Identifier: MIT */
/* stub: replaced by the real suite */
#include "suites.h"

Suite *
jscan_suite(void)
{
    return suite_create("jscan");
}
