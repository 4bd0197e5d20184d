/* SPDX-License-Identifier: MIT */
/*
 * lib/proc_orphans.c: what a job's processes leave behind. A process
 * re-parented to us that we did not spawn is an orphan: it belongs to the
 * child whose session or group it is in (or, if it left both, to any
 * child running when it was first seen) and is killed, with whatever it
 * started, once no child that may own it runs. Also: signalling all of a
 * child's processes, and killing every child left at exit.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "cgroup.h"
#include "clock.h"
#include "proc-internal.h"
#include "pstat.h"
#include "runfile.h"
#include "xmalloc.h"

#define TREE_MAX 4096          /* processes signalled in one walk */
#define CHILDREN_MAX 4096      /* children of ours looked at in one scan */
#define SCAN_PERIOD_US 1000000 /* orphans are looked for at least this */

/* Signals the child's whole group. Only the leader may be left if it moved
 * itself to another group: then signal it alone. */
static void
group_signal(const struct aq_proc *p, int sig)
{
    if (kill(-p->pid, sig) == -1 && errno == ESRCH)
        kill(p->pid, sig);
}

/* Signals root's descendants, and root with its group if with_root. The
 * walk comes first, the signals after: a killed parent's children would
 * leave its children file before they are seen. */
static void
tree_signal(pid_t root, int sig, bool with_root)
{
    pid_t *set = xmalloc(TREE_MAX * sizeof *set);
    size_t n = 1;

    set[0] = root;
    aq_pstat_descendants(set, &n, TREE_MAX);
    for (size_t i = with_root ? 0 : 1; i < n; i++)
        kill(set[i], sig);
    if (with_root)
        kill(-root, sig); /* a group it leads, after a setsid */
    free(set);
}

/* ---- orphans ---- */

static struct orphan *
orphan_find(const struct aq_procs *ps, pid_t pid)
{
    struct orphan *o;

    LIST_FOREACH (o, &ps->orphans, link) {
        if (o->pid == pid)
            return o;
    }
    return NULL;
}

/* Whether a child with seq s (exactly, or up to s) still runs. */
static bool
seq_running(const struct aq_procs *ps, uint64_t s, bool up_to)
{
    struct aq_proc *p;

    LIST_FOREACH (p, &ps->running, link) {
        if (p->seq == s || (up_to && p->seq < s))
            return true;
    }
    return false;
}

/* Looks at our children for orphans not seen yet and files them: the
 * child whose session or group an orphan is in owns it; an orphan that
 * left both (setsid) may be any running child's. */
void
procs_scan(struct aq_procs *ps)
{
    pid_t *kids = xmalloc(CHILDREN_MAX * sizeof *kids);
    size_t n = aq_pstat_children(getpid(), kids, CHILDREN_MAX);

    for (size_t i = 0; i < n && i < CHILDREN_MAX; i++) {
        struct aq_pstat st;
        struct aq_proc *owner;
        struct orphan *o;

        if (procs_find(ps, kids[i]) != NULL || orphan_find(ps, kids[i]) != NULL)
            continue;
        if (aq_pstat_read(kids[i], &st) == -1 || st.state == 'Z')
            continue; /* gone: reaped soon, nothing to track */
        o = xcalloc(1, sizeof *o);
        o->pid = kids[i];
        o->start_ticks = st.start_ticks;
        if ((owner = procs_find(ps, st.sid)) != NULL ||
            (owner = procs_find(ps, st.pgid)) != NULL)
            o->owner_seq = owner->seq;
        else if (!LIST_EMPTY(&ps->running))
            o->seq_max = LIST_FIRST(&ps->running)->seq;
        LIST_INSERT_HEAD(&ps->orphans, o, link);
        ps->norphans++;
        if (ps->rf != NULL)
            aq_runfile_add(ps->rf, o->pid, o->start_ticks);
    }
    free(kids);
}

/* Kills the orphans no running child may own any more, with whatever
 * they started; keeps the scan timer on while there is something to see. */
void
procs_settle(struct aq_procs *ps)
{
    struct orphan *o;
    bool waiting = false;

    LIST_FOREACH (o, &ps->orphans, link) {
        if (o->is_killed)
            continue;
        if (o->owner_seq != 0 ? seq_running(ps, o->owner_seq, false)
                              : seq_running(ps, o->seq_max, true)) {
            waiting = true;
            continue;
        }
        if (aq_pstat_is_alive(o->pid, o->start_ticks))
            tree_signal(o->pid, SIGKILL, true);
        o->is_killed = true;
    }
    if (waiting || !LIST_EMPTY(&ps->running)) {
        struct timeval tv = aq_clock_tv(SCAN_PERIOD_US);

        if (!evtimer_pending(ps->scan_ev, NULL))
            evtimer_add(ps->scan_ev, &tv);
    } else {
        evtimer_del(ps->scan_ev);
    }
}

void
procs_scan_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_procs *ps = arg;

    procs_scan(ps);
    procs_settle(ps);
}

/* The orphan pid was reaped. */
void
procs_orphan_reaped(struct aq_procs *ps, pid_t pid)
{
    struct orphan *o = orphan_find(ps, pid);

    if (o == NULL)
        return;
    LIST_REMOVE(o, link);
    ps->norphans--;
    if (ps->rf != NULL)
        aq_runfile_remove(ps->rf, pid);
    free(o);
}

/* Signals everything of p's: its group, its descendants (if
 * with_descendants), the orphans it owns and its cgroup. */
void
proc_signal_all(struct aq_proc *p, int sig, bool with_descendants)
{
    struct orphan *o;

    group_signal(p, sig);
    if (with_descendants)
        tree_signal(p->pid, sig, false);
    LIST_FOREACH (o, &p->ps->orphans, link) {
        if (o->owner_seq == p->seq && !o->is_killed &&
            aq_pstat_is_alive(o->pid, o->start_ticks))
            tree_signal(o->pid, sig, true);
    }
    if (p->cg_fd != -1) {
        if (sig == SIGKILL)
            aq_cgroup_job_kill(p->ps->cg, p->cg_fd);
        else
            aq_cgroup_job_signal(p->cg_fd, sig);
    }
}

size_t
aq_procs_orphans(const struct aq_procs *ps)
{
    return ps->norphans;
}

int
aq_procs_kill_all(int64_t timeout_us)
{
    int64_t deadline_us = aq_clock_mono_us() + timeout_us;
    pid_t *kids = xmalloc(CHILDREN_MAX * sizeof *kids);
    int total = 0;

    for (;;) {
        size_t n = aq_pstat_children(getpid(), kids, CHILDREN_MAX);

        /* A setsid'd orphan leads its own group: take the group and its
         * descendants with it. */
        for (size_t i = 0; i < n && i < CHILDREN_MAX; i++)
            tree_signal(kids[i], SIGKILL, true);
        total += (int)n;
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (n == 0 || aq_clock_mono_us() > deadline_us)
            break;
        poll(NULL, 0, 5); /* give the killed ones a moment to die */
    }
    free(kids);
    return total;
}
