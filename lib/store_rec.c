/* SPDX-License-Identifier: MIT */
/*
 * lib/store_rec.c: a job <-> its whole record (lib/store-internal.h), the
 * mapping the journal's PUT and END records and the postgres store's rows
 * share.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "store-internal.h"
#include "xmalloc.h"

const uint8_t store_state_of[] = {
    [AQ_JOB_DELAYED] = STORE_DELAYED,     [AQ_JOB_WAITING] = STORE_WAITING,
    [AQ_JOB_PENDING] = STORE_PENDING,     [AQ_JOB_RUNNING] = STORE_RUNNING,
    [AQ_JOB_DONE] = STORE_DONE,           [AQ_JOB_FAILED] = STORE_FAILED,
    [AQ_JOB_CANCELLED] = STORE_CANCELLED,
};

const uint8_t store_state_from[STORE_NSTATES] = {
    [STORE_DELAYED] = AQ_JOB_DELAYED, [STORE_PENDING] = AQ_JOB_PENDING,
    [STORE_RUNNING] = AQ_JOB_RUNNING, [STORE_DONE] = AQ_JOB_DONE,
    [STORE_FAILED] = AQ_JOB_FAILED,   [STORE_CANCELLED] = AQ_JOB_CANCELLED,
    [STORE_WAITING] = AQ_JOB_WAITING,
};

static struct aq_jstr
jstr(const char *s)
{
    return (struct aq_jstr){s, s != NULL ? (uint32_t)strlen(s) : 0};
}

int64_t
store_job_due_wall_us(const struct aq_job *j)
{
    int64_t due = aq_queue_item_due_us(&j->qi);

    if (j->state == AQ_JOB_WAITING) /* out of its queue: kept in ext */
        return j->ext->due_us;

    return due == 0 ? 0 : aq_clock_wall_us() + (due - aq_clock_mono_us());
}

void
store_job_whole(const struct aq_job *j, const char *queue, struct aq_jrec *r,
                unsigned char **afterp)
{
    const struct aq_job_ext *x = j->ext;
    unsigned char *after = NULL;

    *r = (struct aq_jrec){
        .type = aq_job_is_finished(j) ? AQ_JREC_END : AQ_JREC_PUT,
        .id = j->id,
        .kind = j->kind,
        .state = store_state_of[j->state],
        .attempts = j->attempts,
        .priority = j->qi.priority,
        .retries = x != NULL ? x->retries : -1,
        .timeout_us = x != NULL ? x->timeout_us : -1,
        .created_us = j->created_us,
        .started_us = x != NULL ? x->started_us : 0,
        .finished_us = x != NULL ? x->finished_us : 0,
        .queue = jstr(queue),
    };
    /* A record keeps its args too (format 3), unless they were never
     * kept (a record of an older journal): then they stay absent. */
    if (r->type == AQ_JREC_PUT || j->args_len > 0)
        r->args = (struct aq_jstr){j->args, j->args_len};
    if (r->type == AQ_JREC_PUT)
        r->due_us = store_job_due_wall_us(j);
    if (x != NULL) {
        r->retried = x->retried;
        r->name = jstr(x->name);
        r->batch = jstr(x->batch);
        r->key = jstr(x->key);
        r->result = jstr(x->result);
        r->err_code = jstr(x->err_code);
        r->err_message = jstr(x->err_message);
        if (x->deps != NULL && x->deps->nafter > 0) {
            after = xmalloc((size_t)x->deps->nafter * 8);
            for (uint32_t i = 0; i < x->deps->nafter; i++)
                for (int k = 0; k < 8; k++)
                    after[i * 8 + k] =
                        (unsigned char)(x->deps->after[i] >> (8 * k));
            r->after =
                (struct aq_jstr){(const char *)after, x->deps->nafter * 8};
            r->after_policy = x->deps->policy;
        }
    }
    *afterp = after;
}

void
store_ext_str(char **dst, struct aq_jstr s)
{
    free(*dst);
    *dst = NULL;
    if (s.p != NULL) {
        *dst = xmalloc(s.len + 1);
        memcpy(*dst, s.p, s.len);
        (*dst)[s.len] = '\0';
    }
}

/* A whole record's after (the broker links dependents at restore). */
static void
fill_deps(struct aq_job_ext *x, const struct aq_jrec *r)
{
    const unsigned char *p = (const unsigned char *)r->after.p;
    uint32_t n = r->after.len / 8, kept = 0;
    uint64_t *ids;

    if (x->deps != NULL)
        free(x->deps->dependents);
    free(x->deps);
    x->deps = NULL;
    if (p == NULL)
        return;
    ids = xreallocarray(NULL, n, sizeof *ids);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id = 0;

        for (int k = 0; k < 8; k++)
            id |= (uint64_t)p[i * 8 + k] << (8 * k);
        if (id != 0) /* never an id: dropped, not trusted */
            ids[kept++] = id;
    }
    x->deps =
        aq_job_deps_new(ids, kept,
                        r->after_policy == AQ_AFTER_FINISHED ? AQ_AFTER_FINISHED
                                                             : AQ_AFTER_DONE);
    free(ids);
}

void
store_job_fill(struct aq_broker *b, struct aq_job *j, const struct aq_jrec *r)
{
    struct aq_job_ext *x = aq_job_ext(j);

    j->state = store_state_from[r->state]; /* checked: whole_fits */
    j->attempts = r->attempts;
    j->qi.priority = r->priority;
    j->created_us = r->created_us;
    x->started_us = r->started_us;
    x->finished_us = r->finished_us;
    x->due_us = r->due_us;
    if (r->type == AQ_JREC_PUT) {
        x->retries = r->retries;
        x->timeout_us = r->timeout_us;
    }
    x->retried = r->retried;
    store_ext_str(&x->name, r->name);
    store_ext_str(&x->batch, r->batch);
    store_ext_str(&x->key, r->key);
    store_ext_str(&x->result, r->result);
    store_ext_str(&x->err_code, r->err_code);
    store_ext_str(&x->err_message, r->err_message);
    if (x->key != NULL)
        aq_broker_restore_key(b, j);
    fill_deps(x, r);
}

/* What put takes for retries (lib/methods.c), so retries + 1 cannot
 * overflow. */
#define RETRIES_MAX 1000000

/* Wall-clock times a record may hold: anything later is clamped, so that
 * differences of two of them (run and wait times) cannot overflow. */
#define WALL_MAX_US (INT64_C(1) << 60)

static bool
clamp_i64(int64_t *v, int64_t lo, int64_t hi)
{
    int64_t was = *v;

    *v = was < lo ? lo : was > hi ? hi : was;
    return *v != was;
}

/* Never trusts a value a put could not have made (a journal from an
 * older version, a row edited by hand, or a bug): durations and times are
 * clamped into what the daemon accepts, states into those the record
 * type carries. */
bool
store_jrec_clamp(struct aq_jrec *r)
{
    bool changed = false;
    int64_t now_us = aq_clock_wall_us();

    changed |= clamp_i64(&r->created_us, 0, WALL_MAX_US);
    changed |= clamp_i64(&r->started_us, 0, WALL_MAX_US);
    changed |= clamp_i64(&r->finished_us, 0, WALL_MAX_US);
    changed |=
        clamp_i64(&r->due_us, 0, aq_clock_add_us(now_us, AQ_DURATION_MAX_US));
    changed |= clamp_i64(&r->timeout_us, -1, AQ_DURATION_MAX_US);
    if (r->retries < -1 || r->retries > RETRIES_MAX) {
        r->retries = r->retries < -1 ? -1 : RETRIES_MAX;
        changed = true;
    }
    if (r->type == AQ_JREC_REQUEUE && r->state != STORE_DELAYED &&
        r->state != STORE_PENDING) {
        r->state = STORE_PENDING;
        changed = true;
    }
    return changed;
}

/* A PUT holds an unfinished job (delayed, waiting, pending, or running
 * when it was rehomed), an END a finished one. */
bool
store_jrec_whole_fits(const struct aq_jrec *r)
{
    if (r->state >= STORE_NSTATES)
        return false;
    return aq_job_state_is_finished(store_state_from[r->state]) ==
           (r->type == AQ_JREC_END);
}
