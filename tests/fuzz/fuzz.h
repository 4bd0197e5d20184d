/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz.h: the libFuzzer entry points each target defines, and
 * helpers they share (a scratch directory under $TMPDIR, removed at exit).
 */
#ifndef AQ_FUZZ_H
#define AQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* ASan's defaults for the targets (ASAN_OPTIONS still overrides them). */
const char *__asan_default_options(void);

struct aq_config;

/* Once, from LLVMFuzzerInitialize: routes the libraries' allocations
 * through xmalloc, logs errors only, and parses config_text (NULL: none)
 * as asyncqd's config, taking its log level; aborts if it is refused.
 * Returns the config (kept until exit) or NULL. */
struct aq_config *fuzz_setup(const char *config_text);
/* A new directory for this process ("/tmp/asyncq-fuzz.XXXXXX" under
 * $TMPDIR), emptied and removed at exit; aborts if it cannot be made.
 * Borrowed, static storage. */
const char *fuzz_scratch_dir(void);
/* Writes len bytes to path (created or truncated); aborts on failure. */
void fuzz_write_file(const char *path, const void *data, size_t len);
/* Removes every file in dir (not dir itself). */
void fuzz_empty_dir(const char *dir);

#endif
