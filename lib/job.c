/* SPDX-License-Identifier: MIT */
/* lib/job.c: job allocation, names, and the job record. */
#include "job.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "jwrite.h"
#include "recarena.h"
#include "task.h"
#include "xmalloc.h"

static const char *const state_names[] = {
    [AQ_JOB_DELAYED] = "delayed",     [AQ_JOB_WAITING] = "waiting",
    [AQ_JOB_PENDING] = "pending",     [AQ_JOB_RUNNING] = "running",
    [AQ_JOB_DONE] = "done",           [AQ_JOB_FAILED] = "failed",
    [AQ_JOB_CANCELLED] = "cancelled",
};

const char *const aq_kind_names[] = {
    [AQ_KIND_EXEC] = "exec",     [AQ_KIND_HTTP] = "http",
    [AQ_KIND_SLEEP] = "sleep",   [AQ_KIND_ECHO] = "echo",
    [AQ_KIND_REMOTE] = "remote", NULL,
};

const char *const aq_after_policy_names[] = {
    [AQ_AFTER_DONE] = "done",
    [AQ_AFTER_FINISHED] = "finished",
    NULL,
};

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static size_t
deps_size(uint32_t nafter)
{
    return sizeof(struct aq_job_deps) + (size_t)nafter * sizeof(uint64_t);
}

struct aq_job_deps *
aq_job_deps_new(const uint64_t *after, size_t n, enum aq_after_policy policy)
{
    struct aq_job_deps *d = xcalloc(1, deps_size((uint32_t)n));
    uint64_t *sorted;
    bool *taken;

    d->policy = (uint8_t)policy;
    if (n == 0)
        return d;
    /* Duplicates count once, each id kept where it first came: a sorted
     * copy finds an id's run of equals, whose first entry marks it taken. */
    sorted = xreallocarray(NULL, n, sizeof *sorted);
    taken = xcalloc(n, sizeof *taken);
    memcpy(sorted, after, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_u64);
    for (size_t i = 0; i < n; i++) {
        uint64_t *hit = bsearch(&after[i], sorted, n, sizeof *sorted, cmp_u64);
        size_t k = (size_t)(hit - sorted);

        while (k > 0 && sorted[k - 1] == after[i])
            k--;
        if (taken[k])
            continue;
        taken[k] = true;
        d->after[d->nafter++] = after[i];
    }
    free(taken);
    free(sorted);
    return d;
}

/* The header's bytes: args start right after the last field, inside the
 * struct's tail padding. */
#define HEAD offsetof(struct aq_job, args)

/* Under AddressSanitizer jobs stay in malloc's heap, where it sees their
 * overflows, use after free and leaks. */
#if defined(__SANITIZE_ADDRESS__)
#define JOB_SLABS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JOB_SLABS 0
#endif
#endif
#ifndef JOB_SLABS
#define JOB_SLABS 1
#endif

/* An uninitialized block for a job with args_len bytes of args: a slab
 * block when one fits (in_slab set), else malloc's; the rest of the
 * header is the caller's to fill. Free with block_free. */
static struct aq_job *
block_new(size_t args_len)
{
    size_t n = HEAD + args_len + 1;
    struct aq_job *j = JOB_SLABS ? aq_slab_alloc(n) : NULL;
    bool in_slab = j != NULL;

    if (j == NULL)
        j = xmalloc(n);
    j->in_slab = in_slab;
    return j;
}

static void
block_free(struct aq_job *j)
{
    if (j->in_slab)
        aq_slab_release(j);
    else
        free(j);
}

struct aq_job *
aq_job_new(uint64_t id, enum aq_kind kind, const char *args, size_t args_len)
{
    struct aq_job *j = block_new(args_len);
    bool in_slab = j->in_slab;

    memset(j, 0, HEAD);
    j->in_slab = in_slab;
    j->id = id;
    j->kind = (uint8_t)kind;
    j->state = AQ_JOB_PENDING;
    j->args_len = (uint32_t)args_len;
    memcpy(j->args, args, args_len);
    j->args[args_len] = '\0';
    return j;
}

/* An unfinished future holds a reference on itself until settled: settle
 * it (nobody can settle it any more) so it can go. */
static void
future_drop(struct aq_task *future)
{
    if (future != NULL && !aq_task_is_finished(future))
        aq_task_set_cancelled(future);
    aq_task_unref(future);
}

void
aq_job_free(struct aq_job *j)
{
    if (j == NULL)
        return;
    if (j->is_packed) {
        future_drop(j->ext->future);
        aq_recarena_release(j);
        return;
    }
    if (j->ext != NULL) {
        free(j->ext->key);
        free(j->ext->name);
        free(j->ext->batch);
        free(j->ext->result);
        free(j->ext->err_code);
        free(j->ext->err_message);
        free(j->ext->err_traceback);
        future_drop(j->ext->future);
        if (j->ext->deps != NULL)
            free(j->ext->deps->dependents);
        free(j->ext->deps);
        free(j->ext);
    }
    block_free(j);
}

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)
#define NSTRS 7

/* The strings of x a packed record holds after its ext, in this order. */
static void
ext_strs(struct aq_job_ext *x, char **out[NSTRS])
{
    out[0] = &x->key;
    out[1] = &x->name;
    out[2] = &x->batch;
    out[3] = &x->result;
    out[4] = &x->err_code;
    out[5] = &x->err_message;
    out[6] = &x->err_traceback;
}

/* Where ext goes in j's block (after its header and args), and the
 * block's size. */
static size_t
packed_ext_off(const struct aq_job *j)
{
    return ALIGN16(HEAD + j->args_len + 1);
}

/* A record's deps, if any, follow its ext (8-aligned: ext's size is a
 * multiple of 8 from a 16-aligned offset), before the strings. */
static size_t
packed_deps_size(const struct aq_job_ext *x)
{
    return x->deps != NULL ? deps_size(x->deps->nafter) : 0;
}

static size_t
packed_size(const struct aq_job *j)
{
    char **strs[NSTRS];
    size_t n = packed_ext_off(j) + sizeof *j->ext + packed_deps_size(j->ext);

    ext_strs(j->ext, strs);
    for (size_t i = 0; i < NSTRS; i++)
        n += *strs[i] != NULL ? strlen(*strs[i]) + 1 : 0;
    return n;
}

struct aq_job *
aq_job_pack(struct aq_job *j, struct aq_recarena *a)
{
    struct aq_job_ext *x = j->ext, *nx;
    size_t n, ext_off;
    struct aq_job *nj;
    char **src[NSTRS], **dst[NSTRS];
    char *p;

    if (j->is_packed || x == NULL)
        return j;
    if ((p = aq_recarena_alloc(a, packed_size(j))) == NULL)
        return j;
    ext_off = packed_ext_off(j);
    nj = (struct aq_job *)p;
    memcpy(nj, j, HEAD + j->args_len + 1); /* the header and args */
    nj->is_packed = 1;
    nj->in_slab = 0;
    nx = (struct aq_job_ext *)(p + ext_off);
    *nx = *x; /* the future reference moves with it */
    nj->ext = nx;
    ext_strs(x, src);
    ext_strs(nx, dst);
    n = ext_off + sizeof *x;
    if (x->deps != NULL) {
        /* A finished job handed its dependents over (job_finish). */
        nx->deps = (struct aq_job_deps *)(p + n);
        memcpy(nx->deps, x->deps, packed_deps_size(x));
        nx->deps->dependents = NULL;
        nx->deps->ndependents = nx->deps->cap = 0;
        n += packed_deps_size(x);
        free(x->deps->dependents);
        free(x->deps);
    }
    for (size_t i = 0; i < NSTRS; i++) {
        if (*src[i] == NULL)
            continue;
        size_t len = strlen(*src[i]) + 1;

        memcpy(p + n, *src[i], len);
        *dst[i] = p + n;
        n += len;
        free(*src[i]);
    }
    free(x);
    block_free(j);
    return nj;
}

struct aq_job *
aq_job_unpack(struct aq_job *j)
{
    size_t head = HEAD + j->args_len + 1;
    struct aq_job *nj;
    char **strs[NSTRS];
    bool in_slab;

    if (!j->is_packed)
        return j;
    nj = block_new(j->args_len);
    in_slab = nj->in_slab;
    memcpy(nj, j, head);
    nj->is_packed = 0;
    nj->in_slab = in_slab;
    nj->ext = xmalloc(sizeof *nj->ext);
    *nj->ext = *j->ext; /* the future reference moves with it */
    if (j->ext->deps != NULL) {
        size_t n = packed_deps_size(j->ext);

        nj->ext->deps = xmalloc(n);
        memcpy(nj->ext->deps, j->ext->deps, n);
    }
    ext_strs(nj->ext, strs);
    for (size_t i = 0; i < NSTRS; i++) {
        if (*strs[i] != NULL)
            *strs[i] = xstrdup(*strs[i]);
    }
    aq_recarena_release(j);
    return nj;
}

/* A heap block of n bytes as glibc's malloc lays it out: an 8-byte
 * header, rounded up to 16. */
static size_t
heap_bytes(size_t n)
{
    return ALIGN16(n + 8) < 32 ? 32 : ALIGN16(n + 8);
}

size_t
aq_job_bytes(const struct aq_job *j)
{
    char **strs[NSTRS];
    size_t n;

    if (j->is_packed)
        return ALIGN16(packed_size(j));
    n = j->in_slab ? aq_slab_block_size(j) : heap_bytes(HEAD + j->args_len + 1);
    if (j->ext == NULL)
        return n;
    n += heap_bytes(sizeof *j->ext);
    if (j->ext->deps != NULL)
        n += heap_bytes(packed_deps_size(j->ext)) +
             (j->ext->deps->cap > 0
                  ? heap_bytes(j->ext->deps->cap * sizeof(uint64_t))
                  : 0);
    ext_strs(j->ext, strs);
    for (size_t i = 0; i < NSTRS; i++)
        n += *strs[i] != NULL ? heap_bytes(strlen(*strs[i]) + 1) : 0;
    return n;
}

struct aq_job_ext *
aq_job_ext(struct aq_job *j)
{
    if (j->ext == NULL) {
        j->ext = xcalloc(1, sizeof *j->ext);
        j->ext->timeout_us = -1;
        j->ext->retries = -1;
    }
    return j->ext;
}

bool
aq_job_state_is_finished(enum aq_job_state st)
{
    return st >= AQ_JOB_DONE;
}

bool
aq_job_is_finished(const struct aq_job *j)
{
    return aq_job_state_is_finished((enum aq_job_state)j->state);
}

const char *
aq_job_state_name(enum aq_job_state st)
{
    if ((unsigned)st >= sizeof state_names / sizeof state_names[0])
        return "unknown";
    return state_names[st];
}

const char *
aq_kind_name(enum aq_kind kind)
{
    if ((unsigned)kind > AQ_KIND_REMOTE)
        return "unknown";
    return aq_kind_names[kind];
}

int
aq_kind_parse(const char *name, enum aq_kind *out)
{
    for (size_t i = 0; aq_kind_names[i] != NULL; i++) {
        if (strcmp(name, aq_kind_names[i]) == 0) {
            *out = (enum aq_kind)i;
            return 0;
        }
    }
    return -1;
}

void
aq_job_set_error(struct aq_job *j, const char *code, const char *message)
{
    struct aq_job_ext *x = aq_job_ext(j);

    free(x->err_code);
    free(x->err_message);
    free(x->err_traceback);
    x->err_traceback = NULL;
    x->err_code = code != NULL ? xstrdup(code) : NULL;
    x->err_message = code != NULL ? xstrdup(message) : NULL;
}

static json_t *
wall_seconds(int64_t us)
{
    return json_real((double)us / 1e6);
}

json_t *
aq_job_record(const struct aq_job *j, const char *queue_name)
{
    json_t *rec = json_object();
    const struct aq_job_ext *x = j->ext;

    json_object_set_new(rec, "job", json_integer((json_int_t)j->id));
    json_object_set_new(rec, "queue", json_string(queue_name));
    json_object_set_new(rec, "kind", json_string(aq_kind_name(j->kind)));
    json_object_set_new(rec, "state", json_string(aq_job_state_name(j->state)));
    json_object_set_new(rec, "priority", json_integer(j->qi.priority));
    json_object_set_new(rec, "attempts", json_integer(j->attempts));
    json_object_set_new(rec, "created", wall_seconds(j->created_us));
    if (j->args_len > 0) /* as put: numbers keep their spelling */
        json_object_set_new(rec, "args", aq_jraw(j->args, j->args_len));
    if (j->state == AQ_JOB_DELAYED && aq_queue_item_is_delayed(&j->qi)) {
        int64_t due_us = aq_clock_wall_us() +
                         (aq_queue_item_due_us(&j->qi) - aq_clock_mono_us());

        json_object_set_new(rec, "due", wall_seconds(due_us));
    }
    if (x == NULL)
        return rec;
    if (x->name != NULL)
        json_object_set_new(rec, "name", json_string(x->name));
    if (x->batch != NULL)
        json_object_set_new(rec, "batch", json_string(x->batch));
    if (x->retried > 0)
        json_object_set_new(rec, "retried", json_integer(x->retried));
    if (x->key != NULL)
        json_object_set_new(rec, "key", json_string(x->key));
    if (j->state == AQ_JOB_WAITING && x->due_us != 0)
        json_object_set_new(rec, "due", wall_seconds(x->due_us));
    if (x->deps != NULL && x->deps->nafter > 0) {
        json_t *after = json_array();

        for (uint32_t i = 0; i < x->deps->nafter; i++)
            json_array_append_new(after,
                                  json_integer((json_int_t)x->deps->after[i]));
        json_object_set_new(rec, "after", after);
        json_object_set_new(
            rec, "after_policy",
            json_string(aq_after_policy_names[x->deps->policy]));
    }
    if (x->started_us != 0)
        json_object_set_new(rec, "started", wall_seconds(x->started_us));
    if (x->finished_us != 0)
        json_object_set_new(rec, "finished", wall_seconds(x->finished_us));
    if (x->result != NULL) /* exactly as stored: echo's args unchanged */
        json_object_set_new(rec, "result",
                            aq_jraw(x->result, strlen(x->result)));
    if (x->err_code != NULL) {
        json_t *e = json_pack("{s:s,s:s}", "code", x->err_code, "message",
                              x->err_message);

        if (x->err_traceback != NULL)
            json_object_set_new(e, "traceback", json_string(x->err_traceback));
        json_object_set_new(rec, "error", e);
    }
    return rec;
}
