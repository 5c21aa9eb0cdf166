/* liblc: the module lifecycle (inactive -> passive -> active -> passive -> inactive), its
 * hooks, and worker threads tied to a phase. The broker drives the states: it activates,
 * deactivates and shuts modules down; the module reports each state it reaches. */
#include "client_int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define THREAD_JOIN_MS 5000

int lc_hook(lc_client_t *self, int which, lc_hook_fn *fn, void *arg)
{
    assert(self);
    if (which < LC_HOOK_STARTUP || which > LC_HOOK_RELOAD)
        return LC_EINVAL;
    self->hooks[which].fn = fn;
    self->hooks[which].arg = arg;
    return 0;
}

int lc_state(lc_client_t *self)
{
    assert(self);
    return self->state;
}

int lc_module_ready(lc_client_t *self, const char *name)
{
    assert(self);
    if (!name || !lc_name_valid(name, strlen(name)))
        return LC_EINVAL;
    json_t *res = NULL;
    int rc = lc_call(self, "broker.ready", json_pack("{s:s}", "module", name), &res, 0);
    if (rc == 0)
        rc = json_is_true(res) ? 1 : 0;
    json_decref(res);
    return rc;
}

static void s_hook(lc_client_t *self, int which)
{
    if (self->hooks[which].fn)
        self->hooks[which].fn(self, self->hooks[which].arg);
}

static void s_report(lc_client_t *self, int state)
{
    self->state = state;
    if (self->reg != REG_DONE)
        return; /* the broker is away: the next HELLO says the state */
    lc_hdr_t h = {.type = LC_MSG_STATE, .seq = atomic_fetch_add(&self->seq, 1) + 1};
    lcc_send_main(self, &h, lc_state_name(state), NULL, 0, lc_mono_ms() + self->timeout_ms);
}

/* Queues a lifecycle command. The items delivered before it (at most the window) are
 * handled first, as they were sent before the command; those delivered later wait. */
static void s_command(lc_client_t *self, int cmd)
{
    if (self->ncmds == 0)
        self->cmd_budget = (int)self->queued;
    self->cmds[self->ncmds++] = cmd;
}

void lcc_on_state(lc_client_t *self, inmsg_t *m)
{
    static const char *const cmds[] = {"", "activate", "deactivate", "shutdown"};
    for (int c = CMD_ACTIVATE; c <= CMD_SHUTDOWN; c++)
        if (strcmp(m->address, cmds[c]) == 0 &&
            self->ncmds < (int)(sizeof self->cmds / sizeof self->cmds[0])) {
            s_command(self, c);
            lcc_wake(self);
        }
}

static void s_deactivate(lc_client_t *self)
{
    if (self->state != LC_STATE_ACTIVE)
        return;
    s_hook(self, LC_HOOK_DEACTIVATE);
    lcc_threads_stop(self, LC_STATE_ACTIVE);
    s_report(self, LC_STATE_PASSIVE);
}

void lcc_lifecycle_step(lc_client_t *self)
{
    /* Hooks run at the top of the loop, never inside a handler (decision 10). */
    if (self->depth > 0 || !self->lifecycle)
        return;
    /* Start-up waits for the registration; a command already taken (the module's own
     * SIGTERM above all) is carried out also while the broker is away: its reports are
     * then simply not sent. Else lc_timeout() would keep the loop spinning on it. */
    if (self->reg != REG_DONE && (!self->started || self->ncmds == 0))
        return;
    if (!self->started) {
        self->started = true;
        self->state = LC_STATE_INACTIVE;
        s_hook(self, LC_HOOK_STARTUP);
        self->state = LC_STATE_PASSIVE;
        s_hook(self, LC_HOOK_PASSIVE);
        s_report(self, LC_STATE_PASSIVE);
    }
    while (self->ncmds > 0) {
        /* The items that came before the command run first (lcc_queue_run() counts them). */
        if (self->cmd_budget > 0 && self->queued && self->running < self->concurrency &&
            !atomic_load(&self->stop))
            return;
        int cmd = self->cmds[0];
        memmove(self->cmds, self->cmds + 1, (size_t)--self->ncmds * sizeof self->cmds[0]);
        switch (cmd) {
        case CMD_ACTIVATE:
            if (self->state == LC_STATE_PASSIVE) {
                s_report(self, LC_STATE_ACTIVE);
                s_hook(self, LC_HOOK_ACTIVE);
            }
            break;
        case CMD_DEACTIVATE:
            s_deactivate(self);
            break;
        case CMD_SHUTDOWN:
            s_deactivate(self);
            if (self->state == LC_STATE_INACTIVE) {
                lc_stop(self); /* told to stop before it got going */
            } else if (self->state == LC_STATE_PASSIVE) {
                s_hook(self, LC_HOOK_SHUTDOWN);
                lcc_threads_stop(self, LC_STATE_PASSIVE);
                s_report(self, LC_STATE_INACTIVE);
                lc_stop(self);
            }
            break;
        }
    }
}

/* ---- Worker threads ------------------------------------------------------------------- */

void lc_client_set_max_threads(lc_client_t *self, int n)
{
    assert(self);
    self->max_threads = n > 0 ? n : 10;
}

static void *s_thread_main(void *arg)
{
    lc_thread_t *t = arg;
    t->fn(t, t->arg);
    atomic_store(&t->finished, true);
    return NULL;
}

lc_thread_t *lc_thread_start(lc_client_t *self, int phase, lc_thread_fn *fn, void *arg)
{
    assert(self);
    if (!fn || (phase != LC_STATE_ACTIVE && phase != LC_STATE_PASSIVE) || !lcc_on_loop(self)) {
        errno = EINVAL;
        return NULL;
    }
    int max = self->max_threads > 0 ? self->max_threads : 10;
    if (self->nthreads >= max) {
        lc_log(self, LC_LOG_ERROR, "cannot start another worker thread: %d are running, the "
               "limit (lc_client_set_max_threads)", self->nthreads);
        errno = EBUSY;
        return NULL;
    }
    lc_thread_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->client = self;
    t->phase = phase;
    t->fn = fn;
    t->arg = arg;
    t->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->stop_fd < 0 || lcc_thread_create(&t->tid, s_thread_main, t) != 0) {
        int err = errno;
        if (t->stop_fd >= 0)
            close(t->stop_fd);
        free(t);
        errno = err ? err : EAGAIN;
        return NULL;
    }
    t->next = self->threads;
    self->threads = t;
    self->nthreads++;
    return t;
}

bool lc_thread_stopping(lc_thread_t *thread)
{
    return atomic_load(&thread->stopping);
}

int lc_thread_fd(lc_thread_t *thread)
{
    return thread->stop_fd;
}

lc_client_t *lc_thread_client(lc_thread_t *thread)
{
    return thread->client;
}

/* Asks every thread of the phase (0: all) to stop and joins it, waiting at most
 * THREAD_JOIN_MS for all together; one that does not return is left running, named. */
void lcc_threads_stop(lc_client_t *self, int phase)
{
    uint64_t one = 1;
    for (lc_thread_t *t = self->threads; t; t = t->next)
        if (!phase || t->phase == phase) {
            atomic_store(&t->stopping, true);
            if (write(t->stop_fd, &one, sizeof one) < 0)
                (void)0; /* the flag is set either way */
        }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += THREAD_JOIN_MS / 1000;
    for (lc_thread_t **pp = &self->threads; *pp;) {
        lc_thread_t *t = *pp;
        if (phase && t->phase != phase) {
            pp = &t->next;
            continue;
        }
        if (pthread_timedjoin_np(t->tid, NULL, &deadline) != 0) {
            lc_log(self, LC_LOG_ERROR, "a worker thread did not stop within %d ms; it is left "
                   "running", THREAD_JOIN_MS);
            pthread_detach(t->tid);
            *pp = t->next; /* its record stays allocated: the thread may still read it */
            self->nthreads--;
            continue;
        }
        *pp = t->next;
        close(t->stop_fd);
        free(t);
        self->nthreads--;
    }
}

void lcc_shutdown_self(lc_client_t *self)
{
    /* SIGTERM to one module stops that module alone, through its own hooks. */
    if (!self->lifecycle || !self->started) {
        lc_stop(self);
        return;
    }
    if (self->ncmds < (int)(sizeof self->cmds / sizeof self->cmds[0]))
        s_command(self, CMD_SHUTDOWN);
    lcc_wake(self);
}
