/* SPDX-License-Identifier: MIT */
/*
 * crash_store: the session store's promises under kill -9 and a full disk.
 *
 * Crash mode (default): N iterations on one data directory. Each forks a
 * child that opens the store (recovering what the previous iterations left),
 * starts it and appends as fast as it can; the parent kills it with SIGKILL
 * after a random 5..150 ms, recovers the log itself and checks it:
 *   - LSNs contiguous from the first retained record;
 *   - every record acknowledged durable to the parent is there, with exactly
 *     its content, and every record that is there has exactly its content
 *     (nothing garbled is served after a tear);
 *   - what an iteration left never changes afterwards (no record of it appears
 *     or disappears later, except whole segments given up by retention);
 *   - the recovered state (open sessions, their backlogs, history, highest
 *     session id) is the one the records imply, also when recovery starts
 *     from a checkpoint.
 * Small segments, a small checkpoint threshold and retention 0 make the
 * children rotate segments, write checkpoints and delete old segments. A
 * kill -9 leaves what the kernel took whole, so in about half the iterations
 * the test also tears the log's last record when it is not acknowledged
 * (garbles its second half, as a power cut can): recovery must cut exactly it.
 *
 * Iteration i appends, ticket by ticket (all contents are functions of (i,
 * ticket) and of the sessions the previous iterations left open, so the
 * parent recomputes them): 1 OPENED session i, 2 QUEUED, 3..k+2 ENDED of the k
 * sessions left open before, then MSG_IN msg_id = ticket with 60..2000 bytes
 * of text. ts_ms = i << 32 | ticket identifies every record the child wrote.
 * The child writes the highest durable ticket to a pipe whenever it grows
 * (tickets are durable in order, so that acknowledges every ticket below).
 *
 * Usage: crash_store [ITERATIONS]        (or env SURGE_CRASH_ITERS, default 50)
 *        env SURGE_SEED (printed), SURGE_CRASH_DIR (parent of the data dir, /tmp)
 *
 * Full-disk mode: crash_store --fill DIR --filler FILE (tests/crash/store_full_disk.sh):
 * DIR on a small filesystem that FILE helps fill. Appends until the store
 * fails (-EROFS after ENOSPC); checks the process is up, the store says
 * unhealthy with ENOSPC, durable tickets stopped, every acknowledged record
 * is in the log and recovery works on the full disk; then deletes FILE,
 * recovers again and checks new appends become durable.
 *
 * Exit status: 0 all passed, 1 a check failed, 2 usage or setup error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "store_pvt.h"

#define TEXT_MIN       60u
#define TEXT_MAX       2000u
#define SEGMENT_BYTES  (1ull << 20)
#define RING_BYTES     (1u << 20)
#define CKPT_BYTES     (2ull << 20)
#define KILL_MIN_MS    5u
#define KILL_MAX_MS    150u
#define MAX_FAIL_LINES 30
#define CUSTOMERS      5u
#define SKILL          "chat"
#define AGENT          "agent-7"

/* The child's exit codes when it was not killed. */
enum child_exit { CX_OPEN = 10, CX_STATE = 11, CX_START = 12, CX_TICKET = 13, CX_APPEND = 14 };

static uint64_t g_seed;
static unsigned g_fail;
static uint32_t g_iter; /* current iteration, for messages */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	if (g_fail++ >= MAX_FAIL_LINES)
		return;
	printf("FAIL iteration %u: ", g_iter);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t ts_of(uint32_t iter, uint64_t ticket)
{
	return (uint64_t)iter << 32 | (ticket & 0xffffffffu);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
	                      .tv_nsec = (long)(ns % 1000000000u)};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* 60..2000 printable bytes, a function of (seed, iter, ticket) alone. */
static uint32_t gen_text(uint32_t iter, uint64_t ticket, char *buf)
{
	uint64_t st = mix64(g_seed ^ mix64(ts_of(iter, ticket)));
	uint32_t len = TEXT_MIN + (uint32_t)(st % (TEXT_MAX - TEXT_MIN + 1));

	for (uint32_t i = 0; i < len; i += 8) {
		uint64_t r = mix64(st + i);

		for (uint32_t j = 0; j < 8 && i + j < len; j++, r >>= 8)
			buf[i + j] = (char)(' ' + (r & 0xff) % 95);
	}
	return len;
}

/* ---- the events of an iteration ------------------------------------------------ */

/* What the parent knows of one iteration. */
struct iter_info {
	uint64_t *prev; /* sessions open when it started (it ends them) */
	uint32_t nprev;
	uint64_t acked;    /* highest ticket acknowledged to the parent */
	uint64_t top;      /* highest ticket in the log after its recovery (0: none) */
	bool top_known;    /* some of its records were in the log then */
	uint64_t torn;     /* torn bytes its recovery cut */
	bool open;         /* its session was open after its recovery */
	uint64_t last_msg; /* ... the last message of its backlog then */
	uint32_t nb_backlog;
};

static struct iter_info *g_it;
static uint32_t g_iters;
static uint32_t g_max_open; /* highest session open after its own iteration */

struct gen {
	struct store_event ev;
	char text[TEXT_MAX];
	char cust[24];
};

static void cust_name(uint64_t session, char *out, size_t len)
{
	snprintf(out, len, "cust-%" PRIu64, session % CUSTOMERS);
}

/* The event of (iter, ticket); false when that ticket cannot exist. */
static bool gen_event(uint32_t iter, uint64_t t, struct gen *g)
{
	const struct iter_info *it = &g_it[iter];
	struct store_event *ev = &g->ev;

	if (iter < 1 || iter > g_iters || t < 1)
		return false;
	memset(ev, 0, sizeof(*ev));
	ev->ts_ms = ts_of(iter, t);
	ev->text.ptr = g->text;
	ev->text.len = gen_text(iter, t, g->text);
	if (t == 1) {
		ev->type = STORE_REC_OPENED;
		ev->session_id = iter;
		ev->gw = 1 + iter % 3;
		ev->ref = 1000 + iter;
		ev->code = 1;
		ev->value = iter % 4;
		cust_name(iter, g->cust, sizeof(g->cust));
		ev->customer = (struct store_str){g->cust, (uint32_t)strlen(g->cust)};
		ev->skill = (struct store_str){SKILL, sizeof(SKILL) - 1};
		ev->extra = (struct store_str){"tenant", 6};
	} else if (t == 2) {
		ev->type = STORE_REC_QUEUED;
		ev->session_id = iter;
		ev->skill = (struct store_str){SKILL, sizeof(SKILL) - 1};
		ev->ref = ts_of(iter, 1);
		ev->value = iter % 4;
		ev->text = (struct store_str){NULL, 0};
	} else if (t - 3 < it->nprev) {
		uint64_t s = it->prev[t - 3];

		ev->type = STORE_REC_ENDED;
		ev->session_id = s;
		ev->code = 1 + (uint32_t)(s % 3);
		ev->value = 1 + (uint32_t)(s % 5);
		ev->flags = s % 2 ? STORE_EF_BY_AGENT : 0;
		cust_name(s, g->cust, sizeof(g->cust));
		ev->customer = (struct store_str){g->cust, (uint32_t)strlen(g->cust)};
		ev->skill = (struct store_str){SKILL, sizeof(SKILL) - 1};
		ev->ref = ts_of((uint32_t)s, 1);
	} else {
		ev->type = STORE_REC_MSG_IN;
		ev->session_id = iter;
		ev->msg_id = t;
	}
	return true;
}

static bool str_eq(struct store_str a, struct store_str b)
{
	return a.len == b.len && (!a.len || !memcmp(a.ptr, b.ptr, a.len));
}

/* a is a (possibly truncated) copy of b. */
static bool str_prefix(struct store_str a, struct store_str b)
{
	return a.len <= b.len && (!a.len || !memcmp(a.ptr, b.ptr, a.len));
}

static bool ev_eq(const struct store_event *a, const struct store_event *b)
{
	return a->type == b->type && a->flags == b->flags && a->gw == b->gw &&
	       a->ts_ms == b->ts_ms && a->session_id == b->session_id && a->msg_id == b->msg_id &&
	       a->ref == b->ref && a->code == b->code && a->value == b->value &&
	       str_eq(a->customer, b->customer) && str_eq(a->skill, b->skill) &&
	       str_eq(a->agent, b->agent) && str_eq(a->text, b->text) && str_eq(a->extra, b->extra);
}

/* The first ticket of iteration iter that is a message. */
static uint64_t first_msg(uint32_t iter)
{
	return 3 + g_it[iter].nprev;
}

/* The store's log lines, quieter: warnings and errors only, with who said it. */
static void store_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level <= 1)
		fprintf(stderr, "[pid %d] store: %s\n", (int)getpid(), msg);
}

static struct store_conf crash_conf(const char *dir)
{
	struct store_conf c = {
	        .dir = dir,
	        .policy = STORE_POLICY_SYNC,
	        .segment_bytes = SEGMENT_BYTES,
	        .nb_producers = 1,
	        .ring_bytes = RING_BYTES,
	        /* Small batches: a checkpoint spans several, with appends between them. */
	        .batch_bytes = 64u << 10,
	        .retention_ms = 0,
	        .checkpoint_bytes = CKPT_BYTES,
	        .history_customers = 1000,
	        .log = store_log,
	};
	return c;
}

/* ---- the child -------------------------------------------------------------------- */

struct sess_set {
	uint64_t ids[64];
	uint32_t n;
	bool overflow;
	/* for the parent's checks */
	uint64_t last_msg[64];
	uint32_t nb_backlog[64];
	bool bad_backlog;
	const char *why;
	uint64_t bad_session;
};

/* The backlog is the session's last messages: consecutive tickets, exact texts. */
static void collect_session(void *ctx, const struct store_session *s,
                            const struct store_msg *backlog, uint32_t nb_backlog)
{
	struct sess_set *set = ctx;
	struct gen g;

	if (set->n == 64) {
		set->overflow = true;
		return;
	}
	set->ids[set->n] = s->session_id;
	set->nb_backlog[set->n] = nb_backlog;
	set->last_msg[set->n] = nb_backlog ? backlog[nb_backlog - 1].msg_id : 0;
	set->n++;
	if (s->session_id < 1 || s->session_id > g_iters) {
		set->bad_backlog = true;
		set->why = "unknown session";
		set->bad_session = s->session_id;
		return;
	}
	for (uint32_t i = 0; i < nb_backlog && !set->bad_backlog; i++) {
		const struct store_msg *m = &backlog[i];
		uint32_t iter = (uint32_t)s->session_id;

		set->bad_session = s->session_id;
		if (m->from_agent || m->msg_id < first_msg(iter) ||
		    !gen_event(iter, m->msg_id, &g)) {
			set->bad_backlog = true;
			set->why = "a message the session never had";
		} else if (i && m->msg_id != backlog[i - 1].msg_id + 1) {
			set->bad_backlog = true;
			set->why = "backlog not consecutive";
		} else if (!str_prefix(m->text, g.ev.text) || !m->text.len ||
		           m->sent_ms != g.ev.ts_ms) {
			set->bad_backlog = true;
			set->why = "backlog message content differs";
		}
	}
	if (strcmp(s->skill, SKILL) != 0 || s->opened_ms != ts_of((uint32_t)s->session_id, 1)) {
		set->bad_backlog = true;
		set->why = "session fields differ (skill or opened_ms)";
		set->bad_session = s->session_id;
	}
}

static int write_acked(int fd, uint64_t d)
{
	ssize_t n = write(fd, &d, sizeof(d));

	return n == (ssize_t)sizeof(d) ? 0 : -1;
}

static void child_main(uint32_t iter, const char *dir, int wfd)
{
	const struct iter_info *it = &g_it[iter];
	struct store_conf conf = crash_conf(dir);
	struct store_producer *p;
	struct sess_set set = {0};
	struct store *s;
	struct gen g;
	uint64_t t = 0, reported = 0, ticket;
	bool have = false;

	s = store_open(&conf, NULL);
	if (!s)
		_exit(CX_OPEN);
	/* Its recovery must find the sessions the parent's found. */
	store_state_sessions(store_recovered(s), collect_session, &set);
	if (set.n != it->nprev || set.overflow)
		_exit(CX_STATE);
	for (uint32_t i = 0; i < set.n; i++)
		if (set.ids[i] != it->prev[i])
			_exit(CX_STATE);
	if (store_start(s))
		_exit(CX_START);
	p = store_producer(s, 0);
	for (;;) {
		uint64_t d;
		int ret;

		if (!have) {
			gen_event(iter, t + 1, &g);
			have = true;
		}
		ret = store_append(p, &g.ev, &ticket);
		if (ret == 0) {
			if (ticket != t + 1)
				_exit(CX_TICKET);
			t++;
			have = false;
		} else if (ret != -ENOBUFS) {
			_exit(CX_APPEND);
		}
		d = store_durable(p);
		if (d > reported && write_acked(wfd, d) == 0)
			reported = d;
	}
}

/* ---- the parent's checks ------------------------------------------------------------ */

struct scan_ctx {
	uint64_t prev_lsn, first_lsn, records, ckpt_records;
	uint32_t last_iter;
	uint64_t last_t;
	uint32_t first_iter; /* of the first record the children wrote; 0 none */
	uint64_t *lo, *hi;   /* per iteration: tickets present */
	unsigned errors;
};

static void scan_err(struct scan_ctx *c, const struct store_event *ev, const char *what)
{
	c->errors++;
	fail("lsn %" PRIu64 " (type %u, ts %#" PRIx64 ", session %" PRIu64 ", msg %" PRIu64 "): %s",
	     ev->lsn, ev->type, ev->ts_ms, ev->session_id, ev->msg_id, what);
}

/* A record written by a checkpoint: a copy of state, checked for plausibility. */
static void check_ckpt_record(struct scan_ctx *c, const struct store_event *ev)
{
	struct gen g;
	char cust[24];
	uint32_t s = (uint32_t)ev->session_id;

	c->ckpt_records++;
	switch (ev->type) {
	case STORE_REC_CKPT_BEGIN:
	case STORE_REC_CKPT_END:
	case STORE_REC_GW_ACK:
		return;
	case STORE_REC_HISTORY:
		cust_name(ev->session_id, cust, sizeof(cust));
		if (ev->session_id < 1 || ev->session_id > g_iter ||
		    !str_eq(ev->customer, (struct store_str){cust, (uint32_t)strlen(cust)}))
			scan_err(c, ev, "checkpoint HISTORY of a session that never ended");
		return;
	case STORE_REC_OPENED:
		if (!gen_event(s, 1, &g) || s > g_iter || !str_eq(ev->customer, g.ev.customer) ||
		    !str_prefix(ev->text, g.ev.text))
			scan_err(c, ev, "checkpoint OPENED differs from the session's");
		return;
	case STORE_REC_QUEUED:
	case STORE_REC_ASSIGNED:
		if (s < 1 || s > g_iter)
			scan_err(c, ev, "checkpoint record of an unknown session");
		return;
	case STORE_REC_MSG_IN:
		if (s < 1 || s > g_iter || ev->msg_id < first_msg(s) ||
		    !gen_event(s, ev->msg_id, &g) || !str_prefix(ev->text, g.ev.text))
			scan_err(c, ev, "checkpoint message differs from the original");
		return;
	default:
		scan_err(c, ev, "unexpected record type in a checkpoint");
	}
}

static int scan_fn(void *ctx, const struct store_event *ev)
{
	struct scan_ctx *c = ctx;
	uint32_t iter = (uint32_t)(ev->ts_ms >> 32);
	uint64_t t = ev->ts_ms & 0xffffffffu;
	struct gen g;

	if (c->prev_lsn && ev->lsn != c->prev_lsn + 1)
		scan_err(c, ev, "LSN not contiguous");
	if (!c->prev_lsn)
		c->first_lsn = ev->lsn;
	c->prev_lsn = ev->lsn;
	c->records++;
	if (ev->type == STORE_REC_CKPT_BEGIN || ev->type == STORE_REC_CKPT_END ||
	    ev->type == STORE_REC_HISTORY || ev->type == STORE_REC_GW_ACK ||
	    (ev->flags & STORE_EF_CKPT)) {
		check_ckpt_record(c, ev);
		return 0;
	}
	if (iter < 1 || iter > g_iter || !gen_event(iter, t, &g)) {
		scan_err(c, ev, "a record no child wrote");
		return 0;
	}
	if (!ev_eq(ev, &g.ev)) {
		scan_err(c, ev, "content differs from what was appended");
		return 0;
	}
	if (!c->first_iter) {
		c->first_iter = iter;
		/* Only retention removes a prefix, and only with the log's first segment. */
		if (t != 1 && ev->lsn == 1)
			scan_err(c, ev, "the log starts in the middle of an iteration");
	} else if (iter == c->last_iter) {
		if (t != c->last_t + 1)
			scan_err(c, ev, "a gap or reordering inside an iteration");
	} else if (iter < c->last_iter || t != 1) {
		scan_err(c, ev, "iterations out of order, or one does not start at ticket 1");
	}
	c->last_iter = iter;
	c->last_t = t;
	if (!c->lo[iter])
		c->lo[iter] = t;
	if (t > c->hi[iter])
		c->hi[iter] = t;
	return 0;
}

static bool in_list(const uint64_t *v, uint32_t n, uint64_t x)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/*
 * Recover the directory as the next child would, and check the log and the
 * state against what iteration `iter` acknowledged. Fills g_it[iter + 1].prev.
 */
static void verify(uint32_t iter, const char *dir, struct store_recovery *rec)
{
	struct iter_info *it = &g_it[iter];
	struct store_conf conf = crash_conf(dir);
	struct scan_ctx c = {0};
	struct sess_set set = {0};
	const struct store_state *st;
	struct store *s;
	uint64_t lowH, highH, max_sess;
	int ret;

	s = store_open(&conf, rec);
	if (!s) {
		fail("recovery failed: %s", strerror(errno));
		return;
	}
	c.lo = calloc(g_iters + 1, sizeof(*c.lo));
	c.hi = calloc(g_iters + 1, sizeof(*c.hi));
	if (!c.lo || !c.hi) {
		fail("out of memory");
		goto out_close;
	}
	ret = store_scan(dir, NULL, scan_fn, &c);
	if (ret)
		fail("store_scan: %s", strerror(-ret));
	if (rec->last_lsn != c.prev_lsn)
		fail("recovery's last LSN %" PRIu64 " but the log ends at %" PRIu64, rec->last_lsn,
		     c.prev_lsn);

	/* Acknowledged records present; what earlier iterations left unchanged. */
	for (uint32_t j = 1; j <= iter; j++) {
		uint64_t want = j == iter ? it->acked : g_it[j].top;

		if (c.hi[j]) {
			if (c.hi[j] < g_it[j].acked)
				fail("iteration %u: acknowledged up to ticket %" PRIu64
				     " but the log ends at %" PRIu64,
				     j, g_it[j].acked, c.hi[j]);
			if (j < iter && (!g_it[j].top_known || c.hi[j] != want))
				fail("iteration %u: its last ticket was %" PRIu64
				     " (%s), now %" PRIu64,
				     j, g_it[j].top, g_it[j].top_known ? "known" : "retained away",
				     c.hi[j]);
		} else if (g_it[j].acked && c.first_lsn <= 1) {
			fail("iteration %u: %" PRIu64 " acknowledged tickets, none in the log", j,
			     g_it[j].acked);
		} else if (g_it[j].acked && c.first_iter && j > c.first_iter) {
			fail("iteration %u: acknowledged records missing after the first retained "
			     "iteration %u",
			     j, c.first_iter);
		}
	}
	it->top = c.hi[iter];
	it->top_known = c.hi[iter] != 0;

	/* The state. Tickets up to lowH were written; none above highH. */
	st = store_recovered(s);
	store_state_sessions(st, collect_session, &set);
	if (set.overflow)
		fail("more than 64 open sessions");
	if (set.bad_backlog)
		fail("session %" PRIu64 ": %s", set.bad_session, set.why);
	lowH = it->top_known ? it->top : it->acked;
	highH = it->top_known ? it->top : UINT64_MAX;
	for (uint32_t k = 0; k < it->nprev; k++) {
		uint64_t sess = it->prev[k], t = 3 + k;
		bool open = in_list(set.ids, set.n, sess);

		if (t <= lowH && open)
			fail("session %" PRIu64 " ended at ticket %" PRIu64 " but is still open",
			     sess, t);
		if (t > highH && !open)
			fail("session %" PRIu64 " closed without its ENDED in the log", sess);
		if (t <= lowH) {
			const struct store_history *h = store_state_history(st);
			struct store_past past;
			char cust[64], want[24];

			cust_name(sess, want, sizeof(want));
			if (store_history_find(h, sess, cust, sizeof(cust), &past) != 0)
				fail("ended session %" PRIu64 " not in the history", sess);
			else if (strcmp(cust, want) || past.session_id != sess ||
			         past.opened_ms != ts_of((uint32_t)sess, 1))
				fail("ended session %" PRIu64 ": history has %s/%" PRIu64, sess,
				     cust, past.session_id);
		}
	}
	it->open = in_list(set.ids, set.n, iter);
	if (lowH >= 1 && !it->open)
		fail("session %u opened (ticket 1 written) but not open after recovery", iter);
	if (highH == 0 && it->open)
		fail("session %u open without its OPENED record", iter);
	for (uint32_t k = 0; k < set.n; k++) {
		uint64_t sess = set.ids[k];
		uint64_t last = set.last_msg[k];

		if (sess != iter && !in_list(it->prev, it->nprev, sess)) {
			fail("session %" PRIu64 " open from nowhere", sess);
			continue;
		}
		if (sess == iter) {
			/* Its backlog ends at its last message written. */
			uint64_t fm = first_msg(iter);

			if (it->top_known && (it->top >= fm ? last != it->top : last != 0))
				fail("session %u: backlog ends at %" PRIu64
				     ", last message %" PRIu64,
				     iter, last, it->top);
			if (!it->top_known && it->acked >= fm && last < it->acked)
				fail("session %u: backlog ends at %" PRIu64
				     " before acked %" PRIu64,
				     iter, last, it->acked);
			it->last_msg = last;
			it->nb_backlog = set.nb_backlog[k];
		} else if (g_it[sess].open && (last != g_it[sess].last_msg ||
		                               set.nb_backlog[k] != g_it[sess].nb_backlog)) {
			fail("session %" PRIu64 ": backlog changed (%u up to %" PRIu64
			     ", was %u up to %" PRIu64 ")",
			     sess, set.nb_backlog[k], last, g_it[sess].nb_backlog,
			     g_it[sess].last_msg);
		}
	}
	if (it->open)
		g_max_open = iter;
	max_sess = store_state_max_session(st);
	if (max_sess != g_max_open)
		fail("highest session id %" PRIu64 ", want %u", max_sess, g_max_open);
	if (iter < g_iters) {
		struct iter_info *next = &g_it[iter + 1];

		next->prev = calloc(set.n ? set.n : 1, sizeof(*next->prev));
		if (!next->prev) {
			fail("out of memory");
		} else {
			memcpy(next->prev, set.ids, set.n * sizeof(*set.ids));
			next->nprev = set.n;
		}
	}
	printf("  %" PRIu64 " records from lsn %" PRIu64 " (%" PRIu64 " checkpoint records), "
	       "%u open sessions\n",
	       c.records, c.first_lsn, c.ckpt_records, set.n);

out_close:
	free(c.lo);
	free(c.hi);
	ret = store_close(s);
	if (ret)
		fail("store_close after recovery: %s", strerror(-ret));
}

/*
 * A power cut can tear a write that the kill -9 of a process never does: in
 * some iterations the last record of the newest segment, if the child wrote
 * it and it is not acknowledged, is half overwritten with garbage (a torn
 * page). Recovery must cut it, and only it. Returns its LSN, or 0.
 */
static uint64_t tear_tail(const char *dir, uint32_t iter, uint64_t acked, uint64_t *rng)
{
	char best[64] = "", path[4200];
	uint64_t lsn = 0, last_off = 0;
	struct store_rec_hdr hdr, last = {0};
	struct dirent *e;
	struct stat st;
	uint8_t *buf = NULL;
	DIR *d = opendir(dir);
	int fd = -1;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strlen(e->d_name) == 24 && !strcmp(e->d_name + 20, ".seg") &&
		    strcmp(e->d_name, best) > 0)
			memcpy(best, e->d_name, 25);
	closedir(d);
	if (!best[0])
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, best);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= STORE_SEG_HDR)
		goto out;
	buf = malloc((size_t)st.st_size);
	if (!buf || pread(fd, buf, (size_t)st.st_size, 0) != st.st_size)
		goto out;
	for (uint64_t off = STORE_SEG_HDR;
	     store_rec_check(buf + off, (size_t)st.st_size - off, 0, &hdr) == 0;
	     off += store_rec_span(hdr.len)) {
		last_off = off;
		last = hdr;
	}
	if (last_off) {
		struct store_event ev;
		uint8_t junk[STORE_REC_HDR + TEXT_MAX + 128];
		size_t span = store_rec_span(last.len), half = span / 2;

		if (store_event_decode(buf + last_off + STORE_REC_HDR, last.len, last.type, &ev) ||
		    (ev.flags & STORE_EF_CKPT) || ev.type >= STORE_REC_CKPT_BEGIN ||
		    ev.ts_ms >> 32 != iter || (ev.ts_ms & 0xffffffffu) <= acked ||
		    span - half > sizeof(junk))
			goto out;
		for (size_t i = 0; i < span - half; i++) {
			*rng = mix64(*rng);
			junk[i] = (uint8_t)(buf[last_off + half + i] ^ (1 + *rng % 255));
		}
		if (pwrite(fd, junk, span - half, (off_t)(last_off + half)) ==
		    (ssize_t)(span - half))
			lsn = last.lsn;
		printf("  tore the last record: lsn %" PRIu64 ", ticket %" PRIu64
		       ", %zu of its %zu "
		       "bytes garbled\n",
		       last.lsn, ev.ts_ms & 0xffffffffu, span - half, span);
	}
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return lsn;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int rm_rf(const char *dir)
{
	return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int crash_main(uint32_t n)
{
	const char *base = getenv("SURGE_CRASH_DIR");
	char dir[4096];
	uint64_t rng, t0 = mono_ns(), acked_total = 0, torn_total = 0, t_min = UINT64_MAX,
	              t_max = 0;
	uint32_t torn_iters = 0, ckpt_iters = 0, dropped = 0, tears = 0;
	struct store_recovery *recs;

	snprintf(dir, sizeof(dir), "%s/surge-crash-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(dir)) {
		perror(dir);
		return 2;
	}
	g_iters = n;
	g_it = calloc(n + 2, sizeof(*g_it));
	recs = calloc(n + 1, sizeof(*recs));
	if (!g_it || !recs) {
		perror("calloc");
		return 2;
	}
	printf("crash_store: %u iterations, seed %" PRIu64 " (SURGE_SEED), dir %s\n", n, g_seed,
	       dir);
	rng = g_seed;
	for (g_iter = 1; g_iter <= n; g_iter++) {
		struct iter_info *it = &g_it[g_iter];
		uint64_t delay_ms, d, torn_lsn;
		int fds[2], status;
		pid_t pid;

		rng = mix64(rng);
		delay_ms = KILL_MIN_MS + rng % (KILL_MAX_MS - KILL_MIN_MS + 1);
		if (pipe(fds) < 0) {
			perror("pipe");
			return 2;
		}
		fflush(stdout);
		pid = fork();
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0) {
			close(fds[0]);
			fcntl(fds[1], F_SETFL, O_NONBLOCK);
			child_main(g_iter, dir, fds[1]);
			_exit(CX_APPEND);
		}
		close(fds[1]);
		sleep_ns(delay_ms * 1000000u);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
			fail("the child did not run until killed: %s %d (see enum child_exit)",
			     WIFEXITED(status) ? "exit" : "signal",
			     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		while (read(fds[0], &d, sizeof(d)) == (ssize_t)sizeof(d))
			if (d > it->acked)
				it->acked = d;
		close(fds[0]);
		printf("iteration %u: killed after %" PRIu64 " ms, %" PRIu64 " acknowledged\n",
		       g_iter, delay_ms, it->acked);
		rng = mix64(rng);
		torn_lsn = rng & 1 ? tear_tail(dir, g_iter, it->acked, &rng) : 0;
		verify(g_iter, dir, &recs[g_iter]);
		if (torn_lsn && (recs[g_iter].last_lsn != torn_lsn - 1 || !recs[g_iter].torn_bytes))
			fail("recovery did not cut the torn record at lsn %" PRIu64
			     " (last lsn %" PRIu64 ", torn %" PRIu64 " bytes)",
			     torn_lsn, recs[g_iter].last_lsn, recs[g_iter].torn_bytes);
		tears += torn_lsn != 0;
		it->torn = recs[g_iter].torn_bytes;
		printf("  recovery: %" PRIu64 " records in %u segments, torn %" PRIu64
		       " bytes, %u segments dropped%s, %.1f ms\n",
		       recs[g_iter].records, recs[g_iter].segments, recs[g_iter].torn_bytes,
		       recs[g_iter].segments_dropped,
		       recs[g_iter].from_checkpoint ? ", from a checkpoint" : "",
		       (double)recs[g_iter].elapsed_ns / 1e6);
		acked_total += it->acked;
		torn_total += it->torn;
		torn_iters += it->torn != 0;
		ckpt_iters += recs[g_iter].from_checkpoint;
		dropped += recs[g_iter].segments_dropped;
		if (it->acked < t_min)
			t_min = it->acked;
		if (it->acked > t_max)
			t_max = it->acked;
	}
	g_iter = n;
	printf("per iteration (acked/torn bytes):");
	for (uint32_t i = 1; i <= n; i++)
		printf(" %" PRIu64 "/%" PRIu64, g_it[i].acked, g_it[i].torn);
	printf("\nsummary: %u iterations in %.1f s, seed %" PRIu64 ": %" PRIu64
	       " records acknowledged (%" PRIu64 "..%" PRIu64 " per iteration), torn tails in %u "
	       "iterations (%" PRIu64 " bytes; %u tears made by the test), %u segments dropped, %u "
	       "recoveries from a checkpoint: %s (%u failures)\n",
	       n, (double)(mono_ns() - t0) / 1e9, g_seed, acked_total, t_min, t_max, torn_iters,
	       torn_total, tears, dropped, ckpt_iters, g_fail ? "FAIL" : "PASS", g_fail);
	if (g_fail)
		printf("data directory kept: %s\n", dir);
	else
		rm_rf(dir);
	for (uint32_t i = 0; i <= n + 1; i++)
		free(g_it[i].prev);
	free(g_it);
	free(recs);
	return g_fail ? 1 : 0;
}

/* ---- full disk ---------------------------------------------------------------------- */

struct fill_ctx {
	uint32_t iter; /* the session whose records are checked (1: before, 2: after) */
	uint64_t acked[3], hi[3], prev_lsn, records;
	unsigned errors;
};

static int fill_scan(void *ctx, const struct store_event *ev)
{
	struct fill_ctx *c = ctx;
	uint32_t iter = (uint32_t)(ev->ts_ms >> 32);
	uint64_t t = ev->ts_ms & 0xffffffffu;
	struct gen g;

	if (c->prev_lsn && ev->lsn != c->prev_lsn + 1) {
		fail("full disk: lsn %" PRIu64 " after %" PRIu64, ev->lsn, c->prev_lsn);
		c->errors++;
	}
	c->prev_lsn = ev->lsn;
	c->records++;
	if (ev->type == STORE_REC_CKPT_BEGIN || ev->type == STORE_REC_CKPT_END ||
	    (ev->flags & STORE_EF_CKPT) || ev->type == STORE_REC_HISTORY)
		return 0;
	if (iter < 1 || iter > 2 || !gen_event(iter, t, &g) || !ev_eq(ev, &g.ev)) {
		fail("full disk: lsn %" PRIu64 ": content differs from what was appended", ev->lsn);
		c->errors++;
		return 0;
	}
	if (t != c->hi[iter] + 1) {
		fail("full disk: lsn %" PRIu64 ": ticket %" PRIu64 " after %" PRIu64, ev->lsn, t,
		     c->hi[iter]);
		c->errors++;
	}
	c->hi[iter] = t;
	return 0;
}

static void fill_check_log(const char *dir, struct fill_ctx *c, const char *when)
{
	int ret;

	c->prev_lsn = 0;
	c->records = 0;
	memset(c->hi, 0, sizeof(c->hi));
	ret = store_scan(dir, NULL, fill_scan, c);
	if (ret)
		fail("full disk: store_scan %s: %s", when, strerror(-ret));
	for (int i = 1; i <= 2; i++)
		if (c->hi[i] < c->acked[i])
			fail("full disk %s: session %d acknowledged up to %" PRIu64
			     ", the log has %" PRIu64,
			     when, i, c->acked[i], c->hi[i]);
	printf("%s: %" PRIu64 " records in the log, every acknowledged one intact%s\n", when,
	       c->records, g_fail ? " (NOT: see above)" : "");
}

static int fill_main(const char *dir, const char *filler)
{
	struct store_conf conf = crash_conf(dir);
	struct store_recovery rec;
	struct store_stats st;
	struct fill_ctx c = {0};
	struct store_producer *p;
	struct store *s;
	struct gen g;
	uint64_t t = 0, ticket, deadline, d;
	int ret = 0, cret;
	bool have = false;

	/* Sessions 1 and 2 are the "iterations": no sessions left open before either. */
	g_iters = 2;
	g_it = calloc(3, sizeof(*g_it));
	if (!g_it)
		return 2;
	g_iter = 1;
	/* Segments must stay: retention would free space as fast as the log takes it. */
	conf.retention_ms = 7ull * 24 * 3600 * 1000;
	conf.checkpoint_bytes = 4ull << 20;
	s = store_open(&conf, NULL);
	if (!s || store_start(s)) {
		printf("full disk: cannot open and start the store in %s: %s\n", dir,
		       strerror(errno));
		return 2;
	}
	p = store_producer(s, 0);
	deadline = mono_ns() + 20000000000ull;
	while (mono_ns() < deadline) {
		if (!have) {
			gen_event(1, t + 1, &g);
			have = true;
		}
		ret = store_append(p, &g.ev, &ticket);
		if (ret == 0) {
			t++;
			have = false;
		} else if (ret != -ENOBUFS) {
			break;
		}
		c.acked[1] = store_durable(p);
	}
	c.acked[1] = store_durable(p);
	store_stats_get(s, &st);
	printf("full disk: %" PRIu64 " appended, %" PRIu64 " durable, %" PRIu64
	       " segments created, %" PRIu64 " deleted, then append returned %s\n",
	       t, c.acked[1], st.segments_created, st.segments_deleted, strerror(-ret));
	if (ret != -EROFS)
		fail("full disk: appends never failed with EROFS (last %d)", ret);
	if (store_healthy(s))
		fail("full disk: store_healthy() is still true");
	if (st.error != ENOSPC && st.error != -ENOSPC)
		fail("full disk: store_stats.error %d (%s), want ENOSPC", st.error,
		     strerror(st.error < 0 ? -st.error : st.error));
	else
		printf("ok - the process is up, the store says unhealthy: %s\n", strerror(ENOSPC));
	d = store_durable(p);
	sleep_ns(100000000u);
	if (store_durable(p) != d)
		fail("full disk: durable tickets still advance after the failure");
	if (store_append(p, &g.ev, &ticket) != -EROFS)
		fail("full disk: an append after the failure did not return -EROFS");
	cret = store_close(s);
	printf("store_close: %s\n", cret ? strerror(-cret) : "0");
	if (cret != -ENOSPC)
		fail("full disk: store_close returned %d, want -ENOSPC", cret);

	fill_check_log(dir, &c, "after the failure");

	/* Recovery still works on the full disk: it writes nothing but zeros in place. */
	s = store_open(&conf, &rec);
	if (!s) {
		fail("full disk: recovery on the full disk failed: %s", strerror(errno));
	} else {
		printf("recovery on the full disk: %" PRIu64 " records, torn %" PRIu64 " bytes\n",
		       rec.records, rec.torn_bytes);
		cret = store_close(s);
		if (cret)
			fail("full disk: store_close after recovery: %s", strerror(-cret));
	}
	fill_check_log(dir, &c, "after recovery on the full disk");

	/* Space freed: recovery, then new appends become durable. */
	if (unlink(filler) < 0) {
		printf("cannot delete %s: %s\n", filler, strerror(errno));
		return 2;
	}
	g_iter = 2;
	s = store_open(&conf, &rec);
	if (!s) {
		fail("full disk: recovery after freeing space failed: %s", strerror(errno));
		goto out;
	}
	printf("recovery with space freed: %" PRIu64 " records, last lsn %" PRIu64 "\n",
	       rec.records, rec.last_lsn);
	if (store_start(s)) {
		fail("full disk: store_start after freeing space failed");
		store_close(s);
		goto out;
	}
	p = store_producer(s, 0);
	t = 0;
	have = false;
	deadline = mono_ns() + 10000000000ull;
	while ((t < 1000 || store_durable(p) < t) && mono_ns() < deadline) {
		if (t >= 1000)
			continue;
		if (!have) {
			gen_event(2, t + 1, &g);
			have = true;
		}
		ret = store_append(p, &g.ev, &ticket);
		if (ret == 0) {
			t++;
			have = false;
		} else if (ret != -ENOBUFS) {
			fail("full disk: append after freeing space: %s", strerror(-ret));
			break;
		}
	}
	c.acked[2] = store_durable(p);
	if (c.acked[2] != 1000)
		fail("full disk: after freeing space %" PRIu64 " of 1000 appends durable",
		     c.acked[2]);
	if (!store_healthy(s))
		fail("full disk: unhealthy after freeing space");
	cret = store_close(s);
	if (cret)
		fail("full disk: store_close after freeing space: %s", strerror(-cret));
	else
		printf("ok - with space freed, 1000 new appends durable\n");
	fill_check_log(dir, &c, "after freeing space");
out:
	free(g_it);
	printf("full disk: %s (%u failures)\n", g_fail ? "FAIL" : "PASS", g_fail);
	return g_fail ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *env = getenv("SURGE_CRASH_ITERS"), *seed = getenv("SURGE_SEED");
	long n = env && *env ? strtol(env, NULL, 10) : 50;

	setvbuf(stdout, NULL, _IOLBF, 0);
	g_seed =
	        seed && *seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	if (argc >= 2 && !strcmp(argv[1], "--fill")) {
		if (argc != 5 || strcmp(argv[3], "--filler") != 0) {
			fprintf(stderr, "usage: %s --fill DIR --filler FILE\n", argv[0]);
			return 2;
		}
		return fill_main(argv[2], argv[4]);
	}
	if (argc >= 2)
		n = strtol(argv[1], NULL, 10);
	if (argc > 2 || n < 1 || n > 100000) {
		fprintf(stderr,
		        "usage: %s [ITERATIONS]  (env SURGE_CRASH_ITERS, SURGE_SEED, "
		        "SURGE_CRASH_DIR)\n       %s --fill DIR --filler FILE\n",
		        argv[0], argv[0]);
		return 2;
	}
	return crash_main((uint32_t)n);
}
