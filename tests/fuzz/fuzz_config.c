/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_config.c: the config loader (lib/config.h) on arbitrary
 * bytes, as asyncqd reads its --config file. A config that parses is
 * copied queue by queue as a reload does; one that does not must say why
 * with the config error code.
 */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "error.h"
#include "fuzz.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_setup(NULL);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct aq_error err = {0};
    struct aq_config *cfg = aq_config_parse((const char *)data, size, &err);

    if (cfg == NULL) {
        if (err.code != AQ_ERR_INVALID_PARAMS || err.message[0] == '\0') {
            fprintf(stderr, "config refused without a reason: %d \"%s\"\n",
                    err.code, err.message);
            abort();
        }
        return 0;
    }
    for (size_t i = 0; i < cfg->nqueues; i++) {
        struct aq_queue_config copy;

        aq_queue_config_copy(&copy, &cfg->queues[i]);
        if (aq_config_queue(cfg, cfg->queues[i].name) == NULL) {
            fprintf(stderr, "queue %s not found by name\n",
                    cfg->queues[i].name);
            abort();
        }
        aq_queue_config_clear(&copy);
    }
    aq_config_free(cfg);
    return 0;
}
