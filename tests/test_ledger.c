/* The ledger (docs/protocol.md, "The ledger"): what a module on ipc started and finished,
 * read by the broker after the process died. Raw modules in child processes write their
 * ledger by hand and die with SIGKILL without sending a DONE, which is the moment a real
 * module can be caught in: a handler finished, the next one started, and the DONE saying
 * both still in the dying process's socket queue. */
#include "client_int.h"
#include "harness.h"
#include "ledger.h"
#include "wire.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

TestSuite(ledger, .init = h_setup, .fini = h_teardown, .timeout = 60);

/* What the raw module offers as its ledger, and what it does before it dies. */
enum {
    L_EXACT,     /* a ledger: the first task finished, the second started */
    L_NONE,      /* no ledger in its HELLO */
    L_TRUNCATED, /* a ledger, emptied by the module before it dies */
    L_PIPE,      /* a pipe's descriptor named as its ledger */
    L_FILE,      /* a regular file's descriptor */
    L_OTHER,     /* a memfd of another name */
    L_DISGUISED, /* a file on a tmpfs its own mount namespace shows as "/memfd:lc-ledger" */
    L_RECONNECT, /* as L_EXACT, then registers again on a new connection, and lives */
};

#define SLOTS 8
#define TASKS 3

/* Child side: exits with a code that names what went wrong, or dies by SIGKILL. */
static void s_die(int code)
{
    _exit(code);
}

static void s_send(void *sock, int type, const char *address, const char *payload)
{
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_t h = {.type = (uint8_t)type, .seq = 1};
    lc_hdr_encode(&h, hb);
    if (zmq_send(sock, hb, sizeof hb, ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, address, strlen(address), ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, payload, strlen(payload), 0) < 0)
        s_die(10);
}

/* The next message's header; its other frames are dropped. */
static lc_hdr_t s_recv(void *sock)
{
    lc_hdr_t h = {0};
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, 20000) != 1)
        s_die(11);
    for (int i = 0, more = 1; more; i++) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, sock, 0) < 0)
            s_die(12);
        if (i == LC_FRAME_HEADER && lc_hdr_decode(zmq_msg_data(&f), zmq_msg_size(&f), &h) != 0)
            s_die(13);
        more = zmq_msg_more(&f);
        zmq_msg_close(&f);
    }
    return h;
}

static void s_slot(uint8_t *map, int i, uint64_t id, uint32_t state)
{
    uint8_t *s = map + LC_LEDGER_HDR + (size_t)i * LC_LEDGER_SLOT;
    memcpy(s, &id, 8);
    memcpy(s + 8, &state, 4);
}

static void s_raw_module(const char *name, int kind, int go_fd)
{
    int fd = -1, pipefd[2];
    uint8_t *map = NULL;
    size_t size = LC_LEDGER_HDR + SLOTS * LC_LEDGER_SLOT;
    if (kind == L_EXACT || kind == L_TRUNCATED || kind == L_OTHER || kind == L_RECONNECT) {
        fd = memfd_create(kind == L_OTHER ? "other" : "lc-ledger", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
            s_die(20);
        map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
            s_die(21);
        memcpy(map, LC_LEDGER_MAGIC, 8);
        uint32_t n = SLOTS;
        memcpy(map + 8, &n, 4);
    } else if (kind == L_PIPE) {
        if (pipe(pipefd) < 0)
            s_die(22);
        fd = pipefd[0];
    } else if (kind == L_FILE) {
        char path[400];
        snprintf(path, sizeof path, "%s/not-a-ledger", h_dir);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, LC_LEDGER_MAGIC, 8) != 8)
            s_die(23);
    }
    const char *bus = h_bus;
    if (kind == L_DISGUISED) {
        /* Its own root, a tmpfs that holds the ledger-named file and, bound, the bus. */
        char root[400], path[500];
        snprintf(root, sizeof root, "%s/disguise", h_dir);
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mkdir(root, 0700) < 0 || mount("tmpfs", root, "tmpfs", 0, "size=1m") < 0)
            s_die(30);
        snprintf(path, sizeof path, "%s/old", root);
        if (mkdir(path, 0700) < 0)
            s_die(31);
        snprintf(path, sizeof path, "%s/bus", root);
        if (mkdir(path, 0700) < 0 || mount(h_dir, path, NULL, MS_BIND, NULL) < 0)
            s_die(32);
        snprintf(path, sizeof path, "%s/memfd:lc-ledger", root);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        uint32_t n = SLOTS;
        if (fd < 0 || ftruncate(fd, (off_t)size) < 0 || pwrite(fd, LC_LEDGER_MAGIC, 8, 0) != 8 ||
            pwrite(fd, &n, 4, 8) != 4)
            s_die(33);
        snprintf(path, sizeof path, "%s/old", root);
        if (syscall(SYS_pivot_root, root, path) < 0 || chdir("/") < 0 ||
            umount2("/old", MNT_DETACH) < 0)
            s_die(34);
        bus = "ipc:///bus/bus";
    }
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    if (!sock || zmq_connect(sock, bus) < 0)
        s_die(24);
    char hello[512], ledger[32] = "";
    if (fd >= 0)
        snprintf(ledger, sizeof ledger, ",\"ledger\":%d", fd);
    snprintf(hello, sizeof hello,
             "{\"token\":\"%016x\",\"pid\":%d,\"state\":\"active\",\"window\":%d,"
             "\"methods\":[{\"name\":\"work\"}]%s}",
             (unsigned)getpid(), (int)getpid(), SLOTS, ledger);
    s_send(sock, LC_MSG_HELLO, name, hello);
    if (s_recv(sock).type != LC_MSG_WELCOME)
        s_die(25);
    if (kind == L_PIPE || kind == L_FILE || kind == L_OTHER || kind == L_DISGUISED) {
        char c;
        if (read(go_fd, &c, 1) != 1) /* the test has looked; it then kills this process */
            s_die(26);
        s_die(27);
    }
    uint64_t ids[TASKS];
    for (int n = 0; n < TASKS;) {
        lc_hdr_t h = s_recv(sock);
        if (h.type == LC_MSG_TASK)
            ids[n++] = h.id;
    }
    if (kind == L_EXACT || kind == L_RECONNECT) {
        s_slot(map, 0, ids[0], LC_LEDGER_DONE);
        s_slot(map, 1, ids[1], LC_LEDGER_STARTED);
    }
    if (kind == L_RECONNECT) {
        /* The same client on a new connection; the DONE naming the second task still
         * waits on the old one. */
        void *again = zmq_socket(ctx, ZMQ_DEALER);
        if (!again || zmq_connect(again, bus) < 0)
            s_die(35);
        s_send(again, LC_MSG_HELLO, name, hello);
        if (s_recv(again).type != LC_MSG_WELCOME)
            s_die(36);
        char c;
        if (read(go_fd, &c, 1) != 1)
            s_die(26);
        s_die(27);
    } else if (kind == L_TRUNCATED) {
        s_slot(map, 0, ids[0], LC_LEDGER_DONE);
        s_slot(map, 1, ids[1], LC_LEDGER_STARTED);
        if (ftruncate(fd, 4) < 0) /* the broker must not trust, or fault on, what it reads */
            s_die(28);
    }
    /* No DONE: as if the one announcing the second task died in this process's queue. */
    kill(getpid(), SIGKILL);
    s_die(29);
}

typedef struct {
    pid_t pid;
    int go; /* write end: tells a waiting raw module to go on */
} raw_proc_t;

static raw_proc_t s_start(const char *name, int kind)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[1]);
        s_raw_module(name, kind, p[0]);
    }
    close(p[0]);
    return (raw_proc_t){pid, p[1]};
}

/* Its end (a status, or -1 after 20 s), waited for on its pidfd. */
static int s_wait(raw_proc_t *r)
{
    int pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
    cr_assert_geq(pidfd, 0);
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int ready = poll(&p, 1, 20000);
    close(pidfd);
    close(r->go);
    int st = -1;
    if (ready == 1)
        cr_assert_eq(waitpid(r->pid, &st, 0), r->pid);
    return st;
}

static bool s_module_bool(lc_client_t *c, const char *name, const char *key)
{
    json_t *m = h_module(c, name);
    cr_assert(m, "broker.list has no %s", name);
    json_t *v = json_object_get(m, key);
    cr_assert(json_is_boolean(v), "%s has no boolean %s: %s", name, key, h_dump(m));
    bool b = json_is_true(v);
    json_decref(m);
    return b;
}

/* Starts a raw module, gives it TASKS tasks, waits for its death and for the broker to
 * have put back what it will deliver again (`redelivered`). */
static void s_run(lc_client_t *c, const char *name, int kind, json_int_t redelivered)
{
    raw_proc_t r = s_start(name, kind);
    h_wait_modules(c, name, NULL);
    cr_assert_eq(s_module_bool(c, name, "ledger"), kind == L_EXACT || kind == L_TRUNCATED);
    char target[80];
    snprintf(target, sizeof target, "%s.work", name);
    for (int i = 0; i < TASKS; i++) {
        json_t *info = NULL;
        int rc = lc_enqueue_wait(c, target, json_pack("{s:i}", "n", i), 0, 5000, &info);
        cr_assert_eq(rc, 0, "enqueue %d: %s", i, lc_strerror(rc));
        json_decref(info);
    }
    int st = s_wait(&r);
    cr_assert(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
              "the raw module ended with status %d (exit code %d)", st,
              st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    h_wait_module_int(c, name, "redelivered", redelivered, 10000);
}

/* The first task finished and the second started, the DONE saying so died with the
 * process: the first counts as done, the second is reported lost, the third goes back. */
Test(ledger, a_finished_item_whose_done_died_is_not_run_again)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    json_int_t ledger_done0 = h_stat(c, "ledger_done"), lost0 = h_stat(c, "lost");
    s_run(c, "raw", L_EXACT, 1);
    cr_assert_eq(h_module_int(c, "raw", "done"), 1, "the finished task is not counted done");
    cr_assert_eq(h_module_int(c, "raw", "lost"), 1, "the started task is not reported");
    cr_assert_eq(h_module_int(c, "raw", "backlog"), 1);
    cr_assert_eq(h_module_int(c, "raw", "in_flight"), 0);
    cr_assert_eq(h_stat(c, "ledger_done"), ledger_done0 + 1);
    cr_assert_eq(h_stat(c, "lost"), lost0 + 1);
    lc_client_destroy(&c);
}

/* Without a ledger the broker presumes the first task started: reported lost although it
 * had finished, and the second, which was running, goes back to run again. */
Test(ledger, without_a_ledger_the_broker_presumes)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    s_run(c, "raw", L_NONE, 2);
    cr_assert_eq(h_module_int(c, "raw", "done"), 0);
    cr_assert_eq(h_module_int(c, "raw", "lost"), 1);
    cr_assert_eq(h_module_int(c, "raw", "backlog"), 2);
    lc_client_destroy(&c);
}

/* A ledger the module shrank before dying is unreadable: the broker presumes, and lives. */
Test(ledger, a_truncated_ledger_falls_back_to_presuming)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    s_run(c, "raw", L_TRUNCATED, 2);
    cr_assert_eq(h_module_int(c, "raw", "done"), 0);
    cr_assert_eq(h_module_int(c, "raw", "lost"), 1);
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "broker.ping", NULL, &res, 5000), 0);
    json_decref(res);
    lc_client_destroy(&c);
}

/* A descriptor that is not a memfd made by liblc is never used (nor opened, for a pipe:
 * opening a FIFO could block the broker); the module registers without a ledger. */
Test(ledger, only_a_ledger_memfd_is_used)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    const char *names[] = {"pipe", "file", "other"};
    int kinds[] = {L_PIPE, L_FILE, L_OTHER};
    raw_proc_t r[3];
    for (int i = 0; i < 3; i++)
        r[i] = s_start(names[i], kinds[i]);
    h_wait_modules(c, "pipe", "file", "other", NULL);
    for (int i = 0; i < 3; i++)
        cr_assert(!s_module_bool(c, names[i], "ledger"), "%s was taken as a ledger", names[i]);
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "broker.ping", NULL, &res, 5000), 0);
    json_decref(res);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(write(r[i].go, "g", 1), 1);
        int st = s_wait(&r[i]);
        cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 27, "%s: status %d", names[i],
                  st);
    }
    lc_client_destroy(&c);
}

/* A module built on liblc offers its ledger; a task that aborts the module right after
 * another finished leaves the other done and the aborting one reported, whenever the DONEs
 * got out; nothing of them runs again in the restarted module. */
Test(ledger, a_liblc_module_keeps_a_ledger)
{
    h_broker(NULL);
    proc_t *k = h_echo_with("k", "--window", "8", NULL);
    lc_client_t *c = h_client();
    cr_assert(s_module_bool(c, "k", "ledger"), "lc-echo registered without a ledger");
    h_enqueue_ok(c, "k.record", json_pack("{s:i}", "n", 1), 0);
    h_enqueue_ok(c, "k.crash", NULL, 0);
    h_enqueue_ok(c, "k.record", json_pack("{s:i}", "n", 2), 0);
    int st = h_wait_exit(k, 10000);
    cr_assert(st != -1 && WIFSIGNALED(st), "k did not crash: %d", st);
    h_wait_module_int(c, "k", "lost", 1, 10000);
    cr_assert_eq(h_module_int(c, "k", "done"), 1);
    proc_t *again = h_echo_with("k", NULL);
    json_t *e = h_wait_recorded(c, "k", 1, 5000);
    cr_assert_eq(json_array_size(e), 1, "the restarted k got %s", h_dump(e));
    cr_assert_eq(h_arg(json_array_get(e, 0), "n"), 2, "%s", h_dump(e));
    json_decref(e);
    cr_assert_eq(h_wait_exit(again, 0), -1, "the crashing task ran again\n%s", h_log(again));
    lc_client_destroy(&c);
}

static uint32_t s_state_of(const ledger_t *l, int slot, uint64_t *id)
{
    const uint8_t *p = l->map + LC_LEDGER_HDR + (size_t)slot * LC_LEDGER_SLOT;
    uint32_t state;
    memcpy(id, p, 8);
    memcpy(&state, p + 8, 4);
    return state;
}

static uint32_t s_flags(const ledger_t *l)
{
    uint32_t flags;
    memcpy(&flags, l->map + 12, 4);
    return flags;
}

/* liblc's side: unused slots first, then the slot whose completion was sent earliest; a
 * slot whose completion has not gone out is never taken; with none to take, the ledger is
 * flagged incomplete rather than overwritten. */
Test(ledger, slots_are_reused_in_the_order_their_completions_were_sent)
{
    ledger_t l;
    ledger_init(&l);
    cr_assert_eq(ledger_start(&l, 1), -1, "a closed ledger gave a slot");
    cr_assert_eq(ledger_open(&l, 3), 0);
    uint64_t id;
    int a = ledger_start(&l, 101), b = ledger_start(&l, 102), c = ledger_start(&l, 103);
    cr_assert(a == 0 && b == 1 && c == 2, "slots %d %d %d", a, b, c);
    cr_assert_eq(s_state_of(&l, b, &id), LC_LEDGER_STARTED);
    cr_assert_eq(id, 102);
    ledger_finish(&l, b, false);
    ledger_finish(&l, a, true);
    cr_assert_eq(s_state_of(&l, a, &id), LC_LEDGER_FAILED);
    cr_assert_eq(s_state_of(&l, b, &id), LC_LEDGER_DONE);
    /* Finished, not sent: nothing may be taken. */
    cr_assert_eq(ledger_start(&l, 104), -1);
    cr_assert_eq(s_flags(&l) & LC_LEDGER_OVERFLOW, LC_LEDGER_OVERFLOW);
    ledger_close(&l);

    cr_assert_eq(ledger_open(&l, 3), 0);
    cr_assert_eq(s_flags(&l), 0);
    a = ledger_start(&l, 201);
    b = ledger_start(&l, 202);
    c = ledger_start(&l, 203);
    ledger_finish(&l, b, false);
    ledger_finish(&l, a, false);
    ledger_sent(&l, b); /* b's completion went out first */
    ledger_sent(&l, a);
    int d = ledger_start(&l, 204);
    cr_assert_eq(d, b, "took slot %d, not the earliest sent %d", d, b);
    cr_assert_eq(s_state_of(&l, d, &id), LC_LEDGER_STARTED);
    cr_assert_eq(id, 204);
    int e = ledger_start(&l, 205);
    cr_assert_eq(e, a);
    cr_assert_eq(ledger_start(&l, 206), -1, "a started slot was taken");
    cr_assert_eq(s_state_of(&l, c, &id), LC_LEDGER_STARTED);
    cr_assert_eq(id, 203);
    ledger_close(&l);
    cr_assert_eq(l.fd, -1);
}

/* A module that ran many more items than its ledger has slots still has a complete ledger
 * at its crash: the items before were done, the aborting one is reported, none runs twice. */
Test(ledger, a_long_run_reuses_slots_and_stays_exact)
{
    h_broker(NULL);
    proc_t *k = h_echo_with("k", "--window", "2", NULL); /* 2 + 1 + 16 slots */
    lc_client_t *c = h_client();
    for (int i = 0; i < 200; i++)
        cr_assert_eq(lc_enqueue(c, "k.record", json_pack("{s:i}", "n", i), 0), 0);
    h_wait_module_int(c, "k", "done", 200, 20000);
    h_enqueue_ok(c, "k.crash", NULL, 0);
    h_enqueue_ok(c, "k.record", json_pack("{s:i}", "n", 200), 0);
    int st = h_wait_exit(k, 10000);
    cr_assert(st != -1 && WIFSIGNALED(st), "k did not crash: %d", st);
    h_wait_module_int(c, "k", "lost", 1, 10000);
    cr_assert_eq(h_module_int(c, "k", "done"), 200);
    cr_assert_eq(h_module_int(c, "k", "backlog"), 1, "the record after the crash is not kept");
    lc_client_destroy(&c);
}

static void s_nothing(lc_request_t *req, json_t *args, void *arg)
{
    (void)req, (void)args, (void)arg;
}

static uint32_t s_file_slots(int fd)
{
    uint32_t n = 0;
    cr_assert_eq(pread(fd, &n, 4, 8), 4);
    return n;
}

/* A window set after registration reaches the broker with the next HELLO (here, a method
 * added): the ledger grows with it, or a reused slot could hold an item whose DONE the
 * broker had not seen, and that item would run again after a crash. */
Test(ledger, a_window_grown_after_registration_grows_the_ledger)
{
    h_broker(NULL);
    lc_client_t *m = lc_client_new("grow", h_bus);
    lc_client_set_window(m, 2);
    cr_assert_eq(lc_method(m, "work", s_nothing, NULL), 0);
    cr_assert_eq(lc_connect(m, 5000), 0);
    lc_client_t *c = h_client();
    cr_assert(s_module_bool(c, "grow", "ledger"));
    cr_assert_eq(s_file_slots(m->ledger.fd), 2 + 1 + 16);
    lc_client_set_window(m, 500);
    lc_client_set_concurrency(m, 4);
    cr_assert_eq(lc_method(m, "more", s_nothing, NULL), 0);
    h_wait_module_int(c, "grow", "window", 500, 5000);
    uint32_t slots = s_file_slots(m->ledger.fd);
    cr_assert_geq(slots, 500 + 4 + 16, "the ledger has %u slots for a window of 500", slots);
    cr_assert_eq(m->ledger.nslots, s_file_slots(m->ledger.fd));
    cr_assert(s_module_bool(c, "grow", "ledger"));
    lc_client_destroy(&m);
    lc_client_destroy(&c);
}

/* Growing keeps every slot where it was and the order of the ring; slots whose DONE was
 * lost count in what the next HELLO reserves; a ledger that cannot grow is frozen, flagged
 * incomplete, rather than reused beyond what is safe. */
Test(ledger, growing_keeps_the_slots_and_a_failed_growth_freezes)
{
    ledger_t l;
    ledger_init(&l);
    cr_assert_eq(ledger_open(&l, 3), 0);
    int a = ledger_start(&l, 301), b = ledger_start(&l, 302), c = ledger_start(&l, 303);
    ledger_finish(&l, a, false);
    ledger_finish(&l, b, true);
    ledger_sent(&l, b);
    ledger_sent(&l, a);
    ledger_finish(&l, c, false);
    ledger_lost(&l, c); /* its DONE could not be sent */
    cr_assert_eq(l.lost, 1);
    cr_assert_eq(ledger_need(2, 1, l.lost), 2 + 1 + 1 + 16);
    cr_assert_eq(ledger_reserve(&l, 5), 0);
    cr_assert_eq(s_file_slots(l.fd), 5);
    uint64_t id;
    cr_assert_eq(s_state_of(&l, a, &id), LC_LEDGER_DONE);
    cr_assert_eq(id, 301);
    cr_assert_eq(s_state_of(&l, b, &id), LC_LEDGER_FAILED);
    cr_assert_eq(s_state_of(&l, c, &id), LC_LEDGER_DONE);
    cr_assert_eq(ledger_start(&l, 304), 3, "the new slots come first");
    cr_assert_eq(ledger_start(&l, 305), 4);
    cr_assert_eq(ledger_start(&l, 306), b, "the ring lost its order");
    cr_assert_eq(ledger_start(&l, 307), a);
    cr_assert_eq(ledger_start(&l, 308), -1, "the lost slot was taken");
    cr_assert_eq(ledger_reserve(&l, 4), 0, "shrinking is not asked");
    cr_assert_lt(ledger_reserve(&l, LC_LEDGER_MAX_SLOTS + 1), 0);
    cr_assert(l.frozen);
    cr_assert(s_flags(&l) & LC_LEDGER_OVERFLOW);
    cr_assert_eq(ledger_start(&l, 309), -1, "a frozen ledger recorded a start");
    ledger_close(&l);
}

/* Whether this process may make a mount namespace with a tmpfs of its own (root). */
static bool s_can_mount(void)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char root[400];
        snprintf(root, sizeof root, "%s/probe", h_dir);
        _exit(unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
                      mkdir(root, 0700) == 0 && mount("tmpfs", root, "tmpfs", 0, "size=1m") == 0
                  ? 0
                  : 1);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* The name of the link is no proof: a module in its own mount namespace (as in a container)
 * can show any file as "/memfd:lc-ledger", a FUSE file whose open or read would block the
 * broker, a device whose open acts. Only a memfd is opened; this one, on a tmpfs of the
 * module's own, is not. */
Test(ledger, a_file_that_only_looks_like_a_ledger_is_not_opened)
{
    if (!s_can_mount())
        cr_skip_test("needs the right to make a mount namespace (root)");
    h_broker(NULL);
    lc_client_t *c = h_client();
    raw_proc_t r = s_start("disguised", L_DISGUISED);
    h_wait_modules(c, "disguised", NULL);
    cr_assert(!s_module_bool(c, "disguised", "ledger"), "a tmpfs file was taken as a ledger");
    cr_assert_eq(write(r.go, "g", 1), 1);
    int st = s_wait(&r);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 27, "status %d (exit code %d)", st,
              st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    lc_client_destroy(&c);
}

/* A client that registers again on a new connection while it lives ("reconnected"): the
 * DONE naming the task it started may still be on the old connection, and without the
 * ledger that task would go back and run a second time beside the first. */
Test(ledger, a_client_that_registers_again_is_read_from_its_ledger)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    raw_proc_t r = s_start("raw", L_RECONNECT);
    h_wait_modules(c, "raw", NULL);
    for (int i = 0; i < TASKS; i++)
        h_enqueue_ok(c, "raw.work", json_pack("{s:i}", "n", i), 0);
    h_wait_module_int(c, "raw", "redelivered", 1, 10000);
    cr_assert_eq(h_module_int(c, "raw", "done"), 1, "the finished task is not counted done");
    cr_assert_eq(h_module_int(c, "raw", "lost"), 1, "the running task is not reported");
    cr_assert(s_module_bool(c, "raw", "ledger"));
    cr_assert_eq(write(r.go, "g", 1), 1);
    int st = s_wait(&r);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 27, "status %d (exit code %d)", st,
              st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    lc_client_destroy(&c);
}

static lc_request_t *s_held;

static void s_hold_first(lc_request_t *req, json_t *args, void *arg)
{
    (void)args, (void)arg;
    if (!s_held) {
        s_held = req;
        lc_defer(req);
    }
}

/* Deliveries waiting in the client's queue when a registration ends still run after the
 * next HELLO, outside the new window: the ledger counts them in what it reserves. */
Test(ledger, deliveries_waiting_in_the_client_count_in_the_ledger)
{
    h_broker(NULL);
    s_held = NULL;
    lc_client_t *m = lc_client_new("wait", h_bus);
    lc_client_set_window(m, 8);
    cr_assert_eq(lc_method(m, "work", s_hold_first, NULL), 0);
    cr_assert_eq(lc_connect(m, 5000), 0);
    lc_client_t *c = h_client();
    cr_assert_eq(s_file_slots(m->ledger.fd), 8 + 1 + 16);
    for (int i = 0; i < 5; i++)
        h_enqueue_ok(c, "wait.work", json_pack("{s:i}", "n", i), 0);
    /* The first is held (concurrency 1): the four others wait in the client's queue. */
    int64_t deadline = lc_mono_ms() + 5000;
    while (!s_held || m->queued < 4) {
        cr_assert_lt(lc_mono_ms(), deadline, "%zu deliveries queued", m->queued);
        struct pollfd p = {.fd = lc_fd(m), .events = POLLIN};
        poll(&p, 1, 50);
        cr_assert_geq(lc_dispatch(m), 0);
    }
    cr_assert_eq(lc_method(m, "more", s_nothing, NULL), 0); /* a HELLO */
    uint32_t slots = s_file_slots(m->ledger.fd);
    cr_assert_geq(slots, 8 + 1 + 4 + 16, "%u slots with 4 deliveries waiting", slots);
    cr_assert_eq(lc_done(s_held), 0);
    lc_client_destroy(&m);
    lc_client_destroy(&c);
}
