/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_util.c: what the fuzz targets share: their set-up, and
 * a scratch directory. Files a target writes live there for one input;
 * the directory goes at exit, so a long run leaves nothing in $TMPDIR.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "xmalloc.h"

static char scratch[256];

/* A 16 MiB quarantine, not 256: every input allocates afresh, and cycling
 * through 256 MiB of cold pages made the targets three times slower. An
 * input's own frees still stay poisoned for its whole run. */
const char *
__asan_default_options(void)
{
    return "quarantine_size_mb=16";
}

static void
scratch_remove(void)
{
    fuzz_empty_dir(scratch);
    rmdir(scratch);
}

struct aq_config *
fuzz_setup(const char *config_text)
{
    struct aq_error err = {0};
    struct aq_config *cfg;

    aq_xmalloc_hook_libs();
    aq_log_set_level(AQ_LOG_ERROR);
    if (config_text == NULL)
        return NULL;
    cfg = aq_config_parse(config_text, strlen(config_text), &err);
    if (cfg == NULL) {
        fprintf(stderr, "fuzz: config: %s\n", err.message);
        abort();
    }
    aq_log_set_level(cfg->log_level);
    return cfg;
}

const char *
fuzz_scratch_dir(void)
{
    const char *tmp = getenv("TMPDIR");

    if (scratch[0] != '\0')
        return scratch;
    snprintf(scratch, sizeof scratch, "%s/asyncq-fuzz.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(scratch) == NULL) {
        fprintf(stderr, "fuzz: mkdtemp %s: %s\n", scratch, strerror(errno));
        abort();
    }
    atexit(scratch_remove);
    return scratch;
}

void
fuzz_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const char *p = data;

    if (fd < 0)
        goto fail;
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        p += n;
        len -= (size_t)n;
    }
    close(fd);
    return;
fail:
    fprintf(stderr, "fuzz: write %s: %s\n", path, strerror(errno));
    abort();
}

void
fuzz_empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}
