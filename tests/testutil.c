/* SPDX-License-Identifier: MIT */
/* tests/testutil.c: bounded event-loop drivers, the event-base fixture and
 * counted task results for the suites. */
#include "testutil.h"

#include <event2/event.h>
#include <stdlib.h>

#include "clock.h"
#include "task.h"
#include "xmalloc.h"

struct event_base *
test_base_new(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;

    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

bool
run_until(struct event_base *base, const bool *flag, int timeout_ms)
{
    bool expired = false;
    struct event *deadline = evtimer_new(base, deadline_cb, &expired);
    struct timeval tv = aq_clock_tv((int64_t)timeout_ms * 1000);

    evtimer_add(deadline, &tv);
    while (!*flag && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(deadline);
    return *flag;
}

void
run_for(struct event_base *base, int ms)
{
    bool never = false;

    run_until(base, &never, ms);
}

void
test_base_free(struct event_base *base)
{
    run_for(base, 10);
    event_base_free(base);
}

TCase *
test_tcase_new(const char *name)
{
    TCase *tc = tcase_create(name);

    tcase_set_timeout(tc, 10);
    return tc;
}

struct event_base *test_base;

void
test_base_setup(void)
{
    test_base = test_base_new();
    ck_assert_ptr_nonnull(test_base);
}

void
test_base_teardown(void)
{
    test_base_free(test_base);
    test_base = NULL;
}

TCase *
test_tcase_with_base(const char *name)
{
    TCase *tc = test_tcase_new(name);

    tcase_add_checked_fixture(tc, test_base_setup, test_base_teardown);
    return tc;
}

struct result {
    int value;
    struct free_count *fc; /* borrowed; may be NULL */
};

void *
test_result_new(int value, struct free_count *fc)
{
    struct result *r = xmalloc(sizeof *r);

    r->value = value;
    r->fc = fc;
    return r;
}

void
test_result_free(void *result)
{
    struct result *r = result;

    if (r->fc != NULL) {
        r->fc->calls++;
        r->fc->freed = true;
    }
    free(r);
}

int
test_result_value(const struct aq_task *t)
{
    const struct result *r = aq_task_result(t);

    return r != NULL ? r->value : -1;
}
