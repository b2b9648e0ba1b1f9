/* SPDX-License-Identifier: MIT */
/*
 * dispatch's timer wheel (against a sorted reference, with churn, re-arming
 * and cancelling from inside fire, timers past the top level, big jumps) and
 * its MPSC ring (single-threaded edges, then four producers and a consumer).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wheel.h"

#define MS_HOUR ((uint64_t)3600 * 1000)
#define MS_DAY  (24 * MS_HOUR)

static uint64_t seed;

/* splitmix64: small, seeded, good enough for test data */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
	return n ? rnd(s) % n : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A time offset spread over every level and beyond the top one. */
static uint64_t random_offset(uint64_t *s)
{
	static const uint64_t scale[] = {300,        70 * 1000,   5 * MS_HOUR,
	                                 3 * MS_DAY, 30 * MS_DAY, 120 * MS_DAY};

	return below(s, scale[below(s, sizeof(scale) / sizeof(scale[0]))]);
}

/* ---- recording fire callback ---------------------------------------------- */

struct rec {
	uint64_t *out; /* expires of each fired timer, in order */
	size_t n;
	size_t cap;
	uint64_t prev_target; /* the previous advance's now */
	uint64_t target;      /* this advance's now */
	uint64_t last;        /* last expires fired in this advance */
	int bad;              /* violations seen (checked after, not asserted in fire) */
};

static void rec_fire(void *ctx, struct disp_timer *t)
{
	struct rec *r = ctx;

	if (disp_timer_pending(t) || t->expires_ms > r->target || t->expires_ms <= r->prev_target ||
	    t->expires_ms < r->last)
		r->bad++;
	r->last = t->expires_ms;
	if (r->n < r->cap)
		r->out[r->n] = t->expires_ms;
	r->n++;
}

static uint32_t rec_advance(struct disp_wheel *w, struct rec *r, uint64_t to)
{
	uint32_t n;

	r->prev_target = w->now_ms;
	r->target = to;
	r->last = 0;
	n = disp_wheel_advance(w, to, rec_fire, r);
	assert_int_equal(w->now_ms, to);
	return n;
}

/* ---- wheel ---------------------------------------------------------------- */

static void test_wheel_add_cancel_pending(void **state)
{
	struct disp_wheel w;
	struct disp_timer a, b;
	uint64_t out[4];
	struct rec r = {.out = out, .cap = 4};

	(void)state;
	disp_wheel_init(&w, 1000);
	disp_timer_init(&a, 7, 3);
	disp_timer_init(&b, 8, 4);
	assert_false(disp_timer_pending(&a));
	assert_int_equal(w.pending, 0);

	disp_wheel_add(&w, &a, 1500);
	assert_true(disp_timer_pending(&a));
	assert_int_equal(w.pending, 1);
	/* re-arming a pending timer moves it, it does not add a second one */
	disp_wheel_add(&w, &a, 2500);
	assert_int_equal(w.pending, 1);
	disp_wheel_add(&w, &b, 2000);
	assert_int_equal(w.pending, 2);

	disp_wheel_cancel(&w, &b);
	assert_false(disp_timer_pending(&b));
	assert_int_equal(w.pending, 1);
	disp_wheel_cancel(&w, &b); /* not pending: nothing */
	assert_int_equal(w.pending, 1);

	assert_int_equal(rec_advance(&w, &r, 2499), 0);
	assert_int_equal(rec_advance(&w, &r, 2500), 1);
	assert_int_equal(r.bad, 0);
	assert_int_equal(out[0], 2500);
	assert_false(disp_timer_pending(&a));
	assert_int_equal(w.pending, 0);
	/* the caller's fields are untouched */
	assert_int_equal(a.owner, 7);
	assert_int_equal(a.kind, 3);
	/* nothing fires twice */
	assert_int_equal(rec_advance(&w, &r, 100000), 0);
}

/* Every level boundary, from an unaligned start: fires at its ms, not one before. */
static void test_wheel_exact_times(void **state)
{
	static const uint64_t deltas[] = {1,
	                                  2,
	                                  255,
	                                  256,
	                                  257,
	                                  511,
	                                  65535,
	                                  65536,
	                                  65537,
	                                  (1ull << 24) - 1,
	                                  1ull << 24,
	                                  (1ull << 24) + 1,
	                                  (1ull << 32) - 1,
	                                  1ull << 32,
	                                  (1ull << 32) + 1,
	                                  (1ull << 33) + 12345,
	                                  1ull << 40};
	static const uint64_t starts[] = {0,
	                                  1,
	                                  255,
	                                  256,
	                                  0xffff,
	                                  0x10000,
	                                  0xffffff,
	                                  123456789,
	                                  (1ull << 32) - 1,
	                                  0xfedcba987ull};
	uint64_t out[1];
	struct rec r = {.out = out, .cap = 1};

	(void)state;
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
		for (size_t j = 0; j < sizeof(deltas) / sizeof(deltas[0]); j++) {
			struct disp_wheel w;
			struct disp_timer t;
			uint64_t exp = starts[i] + deltas[j];

			disp_wheel_init(&w, starts[i]);
			disp_timer_init(&t, 0, 0);
			disp_wheel_add(&w, &t, exp);
			if (exp - 1 > starts[i])
				assert_int_equal(rec_advance(&w, &r, exp - 1), 0);
			assert_true(disp_timer_pending(&t));
			assert_int_equal(rec_advance(&w, &r, exp), 1);
			assert_int_equal(r.bad, 0);
			assert_int_equal(w.pending, 0);
		}
}

static void test_wheel_due_on_add(void **state)
{
	struct disp_wheel w;
	struct disp_timer a, b;
	uint64_t out[2];
	struct rec r = {.out = out, .cap = 2};

	(void)state;
	disp_wheel_init(&w, 5000);
	disp_timer_init(&a, 0, 0);
	disp_timer_init(&b, 0, 0);
	disp_wheel_add(&w, &a, 5000);
	disp_wheel_add(&w, &b, 10);
	assert_int_equal(w.pending, 2);
	/* an advance to the same time fires what is already due */
	r.prev_target = 0;
	r.target = 5000;
	assert_int_equal(disp_wheel_advance(&w, 5000, rec_fire, &r), 2);
	assert_int_equal(r.n, 2);
	assert_int_equal(w.pending, 0);
	/* due timers left in the now slot do not block later ones 256 ms on */
	disp_wheel_add(&w, &a, 5000 + 256);
	disp_wheel_add(&w, &b, 4000);
	r.n = 0;
	r.bad = 0;
	r.prev_target = 0;
	r.target = 5256;
	r.last = 0;
	assert_int_equal(disp_wheel_advance(&w, 5256, rec_fire, &r), 2);
	assert_int_equal(r.bad, 0);
	assert_int_equal(out[0], 4000);
	assert_int_equal(out[1], 5256);
}

static void test_wheel_backwards_noop(void **state)
{
	struct disp_wheel w;
	struct disp_timer a;
	uint64_t out[2];
	struct rec r = {.out = out, .cap = 2};

	(void)state;
	disp_wheel_init(&w, 1000);
	disp_timer_init(&a, 0, 0);
	disp_wheel_add(&w, &a, 1500);
	assert_int_equal(disp_wheel_advance(&w, 999, rec_fire, &r), 0);
	assert_int_equal(w.now_ms, 1000);
	assert_int_equal(disp_wheel_advance(&w, 0, rec_fire, &r), 0);
	assert_int_equal(w.now_ms, 1000);
	assert_true(disp_timer_pending(&a));
	assert_int_equal(rec_advance(&w, &r, 1500), 1);
	assert_int_equal(disp_wheel_advance(&w, 1200, rec_fire, &r), 0);
	assert_int_equal(w.now_ms, 1500);
	assert_int_equal(r.bad, 0);
}

/* 100k random timers, random jumps of ms to days: fired == sorted reference. */
static void test_wheel_random_vs_sorted(void **state)
{
	enum { N = 100000 };
	struct disp_wheel *w = malloc(sizeof(*w));
	struct disp_timer *t = calloc(N, sizeof(*t));
	uint64_t *ref = malloc(N * sizeof(*ref));
	uint64_t *out = malloc(N * sizeof(*out));
	struct rec r = {.out = out, .cap = N};
	uint64_t s = seed, start = below(&s, 1ull << 36);
	size_t calls = 0;

	(void)state;
	assert_non_null(w);
	assert_non_null(t);
	assert_non_null(ref);
	assert_non_null(out);
	disp_wheel_init(w, start);
	for (size_t i = 0; i < N; i++) {
		disp_timer_init(&t[i], (uint32_t)i, 0);
		ref[i] = start + 1 + random_offset(&s);
		disp_wheel_add(w, &t[i], ref[i]);
	}
	assert_int_equal(w->pending, N);
	qsort(ref, N, sizeof(*ref), cmp_u64);

	while (w->pending) {
		static const uint64_t jump[] = {3, 300, 70 * 1000, 5 * MS_HOUR, 3 * MS_DAY};
		uint64_t j = below(&s, jump[below(&s, sizeof(jump) / sizeof(jump[0]))]);

		rec_advance(w, &r, w->now_ms + j);
		calls++;
	}
	assert_int_equal(r.bad, 0);
	assert_int_equal(r.n, N);
	for (size_t i = 0; i < N; i++)
		if (out[i] != ref[i])
			fail_msg("fired #%zu at %" PRIu64 ", expected %" PRIu64 " (seed %" PRIu64
			         ")",
			         i, out[i], ref[i], seed);
	for (size_t i = 0; i < N; i++)
		assert_false(disp_timer_pending(&t[i]));
	printf("wheel: %d timers over %" PRIu64 " days in %zu advances\n", N,
	       (w->now_ms - start) / MS_DAY, calls);
	free(out);
	free(ref);
	free(t);
	free(w);
}

/*
 * Churn: between random jumps, add, re-arm and cancel random timers (some
 * already due). Each fired timer must be one we expect, fired in the first
 * advance that reaches its time, in order.
 */
struct churn {
	struct disp_timer *t;
	uint64_t *key;    /* max(expires, wheel now when armed); 0 if not armed */
	uint8_t *due_add; /* armed when already due */
	uint64_t prev, target, last;
	size_t fired;
	int bad;
};

static void churn_fire(void *ctx, struct disp_timer *t)
{
	struct churn *c = ctx;
	uint32_t i = t->owner;
	uint64_t k = c->key[i];

	if (k == 0 || k > c->target || k < c->last ||
	    (k <= c->prev && !(c->due_add[i] && k == c->prev)))
		c->bad++;
	c->last = k;
	c->key[i] = 0;
	c->fired++;
}

static void test_wheel_churn(void **state)
{
	enum { N = 20000, ROUNDS = 2000 };
	struct disp_wheel *w = malloc(sizeof(*w));
	struct churn c = {.t = calloc(N, sizeof(struct disp_timer)),
	                  .key = calloc(N, sizeof(uint64_t)),
	                  .due_add = calloc(N, 1)};
	uint64_t s = seed ^ 0x5eed, armed = 0;
	size_t ops = 0;

	(void)state;
	assert_non_null(w);
	assert_non_null(c.t);
	assert_non_null(c.key);
	assert_non_null(c.due_add);
	disp_wheel_init(w, 77);
	for (uint32_t i = 0; i < N; i++)
		disp_timer_init(&c.t[i], i, 0);
	for (int round = 0; round < ROUNDS; round++) {
		static const uint64_t jump[] = {5, 1000, 70 * 1000, 5 * MS_HOUR, 3 * MS_DAY};
		int nops = (int)below(&s, 100);

		for (int k = 0; k < nops; k++, ops++) {
			uint32_t i = (uint32_t)below(&s, N);

			if (below(&s, 4) == 0) {
				if (c.key[i])
					armed--;
				disp_wheel_cancel(w, &c.t[i]);
				c.key[i] = 0;
			} else {
				uint64_t exp = below(&s, 20) == 0 ? w->now_ms - below(&s, 50)
				                                  : w->now_ms + random_offset(&s);

				if (!c.key[i])
					armed++;
				disp_wheel_add(w, &c.t[i], exp);
				c.key[i] = exp > w->now_ms ? exp : w->now_ms;
				c.due_add[i] = exp <= w->now_ms;
			}
		}
		assert_int_equal(w->pending, armed);
		c.prev = w->now_ms;
		c.target = w->now_ms + below(&s, jump[below(&s, sizeof(jump) / sizeof(jump[0]))]);
		c.last = 0;
		c.fired = 0;
		disp_wheel_advance(w, c.target, churn_fire, &c);
		armed -= c.fired;
		assert_int_equal(w->pending, armed);
		if (c.bad)
			fail_msg("churn: wrong firing in round %d (seed %" PRIu64 ")", round, seed);
	}
	/* drain: everything left fires, nothing twice */
	c.prev = w->now_ms;
	c.target = w->now_ms + 200 * MS_DAY;
	c.last = 0;
	c.fired = 0;
	disp_wheel_advance(w, c.target, churn_fire, &c);
	assert_int_equal(c.bad, 0);
	assert_int_equal(c.fired, armed);
	assert_int_equal(w->pending, 0);
	for (uint32_t i = 0; i < N; i++)
		assert_int_equal(c.key[i], 0);
	printf("wheel churn: %zu ops, %d advances\n", ops, ROUNDS);
	free(c.due_add);
	free(c.key);
	free(c.t);
	free(w);
}

/* A periodic timer re-arms itself from fire(); one big advance fires every period. */
struct periodic {
	struct disp_wheel *w;
	uint64_t period;
	uint64_t expect; /* next expires */
	uint32_t fired;
	uint32_t limit;
	int bad;
};

static void periodic_fire(void *ctx, struct disp_timer *t)
{
	struct periodic *p = ctx;

	if (t->expires_ms != p->expect || disp_timer_pending(t))
		p->bad++;
	p->fired++;
	p->expect = t->expires_ms + p->period;
	if (p->fired < p->limit)
		disp_wheel_add(p->w, t, p->expect);
}

static void test_wheel_periodic(void **state)
{
	struct disp_wheel w;
	struct disp_timer t;
	struct periodic p = {.w = &w, .period = 7, .limit = UINT32_MAX};

	(void)state;
	disp_wheel_init(&w, 100);
	disp_timer_init(&t, 0, 0);
	p.expect = 107;
	disp_wheel_add(&w, &t, 107);
	/* 10 s: 1428 periods, all within this one call */
	assert_int_equal(disp_wheel_advance(&w, 100 + 10000, periodic_fire, &p), 1428);
	assert_int_equal(p.bad, 0);
	assert_true(disp_timer_pending(&t));
	assert_int_equal(t.expires_ms, p.expect);

	/* a longer period across level boundaries, then stop */
	p.period = 65536 + 3;
	disp_wheel_add(&w, &t, w.now_ms + 1);
	p.expect = w.now_ms + 1;
	p.fired = 0;
	p.limit = 50;
	assert_int_equal(disp_wheel_advance(&w, w.now_ms + 365 * MS_DAY, periodic_fire, &p), 50);
	assert_int_equal(p.bad, 0);
	assert_false(disp_timer_pending(&t));
	assert_int_equal(w.pending, 0);

	/* re-armed from fire() at the very ms being fired: fires again in the same call */
	p.period = 0;
	p.expect = w.now_ms + 10;
	p.fired = 0;
	p.limit = 3;
	disp_wheel_add(&w, &t, p.expect);
	assert_int_equal(disp_wheel_advance(&w, w.now_ms + 10, periodic_fire, &p), 3);
	assert_int_equal(p.bad, 0);
	assert_int_equal(w.pending, 0);
}

/* fire() cancels and re-arms other timers, including ones due in the same ms. */
struct canceller {
	struct disp_wheel *w;
	struct disp_timer *victim; /* cancelled by the first fired */
	struct disp_timer *moved;  /* re-armed by the first fired */
	uint64_t moved_to;
	uint32_t fired[8];
	int calls;
};

static void canceller_fire(void *ctx, struct disp_timer *t)
{
	struct canceller *c = ctx;

	c->fired[t->owner]++;
	if (c->calls++ == 0) {
		disp_wheel_cancel(c->w, c->victim);
		disp_wheel_add(c->w, c->moved, c->moved_to);
		/* cancelling itself after it fired is harmless */
		disp_wheel_cancel(c->w, t);
	}
}

static void test_wheel_cancel_from_fire(void **state)
{
	struct disp_wheel w;
	struct disp_timer t[6];
	struct canceller c = {.w = &w};

	(void)state;
	disp_wheel_init(&w, 0);
	for (uint32_t i = 0; i < 6; i++)
		disp_timer_init(&t[i], i, 0);
	/* 0, 1, 2 share one ms (and arrive there by cascading from level 1) */
	disp_wheel_add(&w, &t[0], 1000);
	disp_wheel_add(&w, &t[1], 1000);
	disp_wheel_add(&w, &t[2], 1000);
	disp_wheel_add(&w, &t[3], 90000); /* a later, higher-level victim */
	disp_wheel_add(&w, &t[4], 1000);
	disp_wheel_add(&w, &t[5], 5);

	/* the first to fire (t[5]) cancels a higher-level timer and moves t[1] on... */
	c.victim = &t[3];
	c.moved = &t[1];
	c.moved_to = 2000;
	assert_int_equal(disp_wheel_advance(&w, 5, canceller_fire, &c), 1);
	assert_false(disp_timer_pending(&t[3]));
	assert_int_equal(w.pending, 4);

	/* ...now the first at 1000 cancels a sibling and moves another to now */
	c.calls = 0;
	c.victim = &t[2];
	c.moved = &t[4];
	c.moved_to = 1000;
	memset(c.fired, 0, sizeof(c.fired));
	assert_int_equal(disp_wheel_advance(&w, 1500, canceller_fire, &c), 2);
	assert_int_equal(c.fired[0], 1);
	assert_int_equal(c.fired[2], 0);
	assert_int_equal(c.fired[4], 1);
	assert_false(disp_timer_pending(&t[2]));
	assert_true(disp_timer_pending(&t[1]));
	assert_int_equal(w.pending, 1);

	c.calls = 1; /* no more side effects */
	assert_int_equal(disp_wheel_advance(&w, 1999, canceller_fire, &c), 0);
	assert_int_equal(disp_wheel_advance(&w, 2000, canceller_fire, &c), 1);
	assert_int_equal(c.fired[1], 1);
	assert_int_equal(c.fired[3], 0);
	assert_int_equal(w.pending, 0);
}

/* Beyond the top level's reach (2^32 ms, about 49.7 days): parked, then exact. */
static void test_wheel_far_timers(void **state)
{
	static const uint64_t far[] = {50 * MS_DAY, 100 * MS_DAY, 365 * MS_DAY,
	                               3 * 365 * MS_DAY + 17, 1ull << 40};
	enum { NF = sizeof(far) / sizeof(far[0]) };
	struct disp_wheel w;
	struct disp_timer t[NF];
	uint64_t out[NF];
	struct rec r = {.out = out, .cap = NF};
	uint64_t start = 987654321;

	(void)state;
	/* one at a time: not one ms early, then exactly on time */
	for (size_t i = 0; i < NF; i++) {
		disp_wheel_init(&w, start);
		disp_timer_init(&t[i], 0, 0);
		disp_wheel_add(&w, &t[i], start + far[i]);
		r.n = 0;
		assert_int_equal(rec_advance(&w, &r, start + far[i] / 2), 0);
		assert_int_equal(rec_advance(&w, &r, start + far[i] - 1), 0);
		assert_int_equal(rec_advance(&w, &r, start + far[i]), 1);
		assert_int_equal(r.bad, 0);
	}
	/* all at once, added in reverse, fired in order by one jump */
	disp_wheel_init(&w, start);
	for (size_t i = NF; i-- > 0;) {
		disp_timer_init(&t[i], 0, 0);
		disp_wheel_add(&w, &t[i], start + far[i]);
	}
	r.n = 0;
	assert_int_equal(rec_advance(&w, &r, start + (1ull << 41)), NF);
	assert_int_equal(r.bad, 0);
	for (size_t i = 0; i < NF; i++)
		assert_int_equal(out[i], start + far[i]);
}

static void count_fire(void *ctx, struct disp_timer *t)
{
	(void)t;
	++*(uint32_t *)ctx;
}

/* 1M add + cancel pairs and a 30-day jump are cheap (no per-ms walking). */
static void test_wheel_fast(void **state)
{
	enum { N = 10000 };
	struct disp_wheel *w = malloc(sizeof(*w));
	struct disp_timer *t = calloc(N, sizeof(*t));
	uint64_t s = seed ^ 0xfa57;
	uint32_t fired = 0;
	double t0, t1, t2, t3;

	(void)state;
	assert_non_null(w);
	assert_non_null(t);
	disp_wheel_init(w, 12345);
	for (uint32_t i = 0; i < N; i++)
		disp_timer_init(&t[i], i, 0);
	t0 = now_s();
	for (uint32_t k = 0; k < 1000000; k++) {
		struct disp_timer *x = &t[k % N];

		disp_wheel_add(w, x, w->now_ms + 1 + random_offset(&s));
		disp_wheel_cancel(w, x);
	}
	t1 = now_s();
	assert_int_equal(w->pending, 0);

	/* an empty wheel jumps 30 days at once */
	assert_int_equal(disp_wheel_advance(w, w->now_ms + 30 * MS_DAY, count_fire, &fired), 0);
	t2 = now_s();

	/* and a full one, timers spread over the 30 days */
	for (uint32_t i = 0; i < N; i++)
		disp_wheel_add(w, &t[i], w->now_ms + 1 + below(&s, 30 * MS_DAY));
	assert_int_equal(disp_wheel_advance(w, w->now_ms + 30 * MS_DAY, count_fire, &fired), N);
	t3 = now_s();
	assert_int_equal(w->pending, 0);
	printf("wheel: 1M add+cancel %.3f s, empty 30-day jump %.6f s, %d timers over 30 days "
	       "%.3f s\n",
	       t1 - t0, t2 - t1, N, t3 - t2);
	/* generous: a per-ms walk of 30 days would take far longer than this */
	assert_true(t3 - t0 < 5.0);
	free(t);
	free(w);
}

/* ---- ring ----------------------------------------------------------------- */

static struct disp_ring *ring_new(uint32_t capacity, void **mem)
{
	size_t sz = disp_ring_size(capacity);
	struct disp_ring *r;

	assert_true(sz > 0);
	assert_int_equal(sz % 64, 0);
	*mem = aligned_alloc(64, sz);
	assert_non_null(*mem);
	r = disp_ring_init(*mem, capacity);
	assert_non_null(r);
	return r;
}

static void test_ring_invalid(void **state)
{
	void *mem;

	(void)state;
	assert_int_equal(disp_ring_size(0), 0);
	assert_int_equal(disp_ring_size(1), 0);
	assert_int_equal(disp_ring_size(3), 0);
	assert_int_equal(disp_ring_size(1000), 0);
	assert_int_equal(disp_ring_size(UINT32_MAX), 0);
	assert_int_equal(disp_ring_size(1u << 31), 0);
	assert_true(disp_ring_size(2) > 0);
	assert_true(disp_ring_size(1024) >= 1024 * sizeof(uint32_t));

	mem = aligned_alloc(64, disp_ring_size(8) + 64);
	assert_non_null(mem);
	errno = 0;
	assert_null(disp_ring_init(NULL, 8));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(disp_ring_init((char *)mem + 8, 8)); /* misaligned */
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(disp_ring_init(mem, 6));
	assert_int_equal(errno, EINVAL);
	free(mem);
}

static void test_ring_single_thread(void **state)
{
	void *mem;
	struct disp_ring *r = ring_new(8, &mem);
	uint32_t v = 0xdead, next_in = 0, next_out = 0;
	uint64_t s = seed ^ 0x7179;

	(void)state;
	assert_int_equal(disp_ring_count(r), 0);
	assert_int_equal(disp_ring_pop(r, &v), -EAGAIN);
	assert_int_equal(v, 0xdead);

	/* fill, full, empty */
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(disp_ring_push(r, 100 + i), 0);
	assert_int_equal(disp_ring_count(r), 8);
	assert_int_equal(disp_ring_push(r, 999), -ENOBUFS);
	assert_int_equal(disp_ring_count(r), 8);
	for (uint32_t i = 0; i < 8; i++) {
		assert_int_equal(disp_ring_pop(r, &v), 0);
		assert_int_equal(v, 100 + i);
	}
	assert_int_equal(disp_ring_pop(r, &v), -EAGAIN);
	assert_int_equal(disp_ring_count(r), 0);
	free(mem);

	/* the smallest ring */
	r = ring_new(2, &mem);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(disp_ring_push(r, 1), 0);
		assert_int_equal(disp_ring_push(r, 2), 0);
		assert_int_equal(disp_ring_push(r, 3), -ENOBUFS);
		assert_int_equal(disp_ring_count(r), 2);
		assert_int_equal(disp_ring_pop(r, &v), 0);
		assert_int_equal(v, 1);
		assert_int_equal(disp_ring_push(r, 4), 0);
		assert_int_equal(disp_ring_pop(r, &v), 0);
		assert_int_equal(v, 2);
		assert_int_equal(disp_ring_pop(r, &v), 0);
		assert_int_equal(v, 4);
		assert_int_equal(disp_ring_pop(r, &v), -EAGAIN);
	}
	free(mem);

	/* wraparound many times at random fill levels */
	r = ring_new(8, &mem);
	for (int round = 0; round < 100000; round++) {
		uint32_t k = (uint32_t)below(&s, 10);

		for (uint32_t i = 0; i < k; i++) {
			int rc = disp_ring_push(r, next_in);

			if (next_in - next_out == 8) {
				assert_int_equal(rc, -ENOBUFS);
			} else {
				assert_int_equal(rc, 0);
				next_in++;
			}
		}
		assert_int_equal(disp_ring_count(r), next_in - next_out);
		k = (uint32_t)below(&s, 10);
		for (uint32_t i = 0; i < k; i++) {
			int rc = disp_ring_pop(r, &v);

			if (next_in == next_out) {
				assert_int_equal(rc, -EAGAIN);
			} else {
				assert_int_equal(rc, 0);
				assert_int_equal(v, next_out);
				next_out++;
			}
		}
	}
	assert_true(next_out > 100000);
	free(mem);
}

#define PER_PRODUCER 500000u
#define PRODUCERS    4

struct producer {
	struct disp_ring *r;
	uint32_t id;
	uint64_t full; /* pushes refused */
};

static void *produce(void *arg)
{
	struct producer *p = arg;

	for (uint32_t i = 0; i < PER_PRODUCER; i++) {
		uint32_t v = p->id << 24 | i;

		while (disp_ring_push(p->r, v) == -ENOBUFS) {
			p->full++;
			sched_yield();
		}
	}
	return NULL;
}

static void test_ring_mpsc_threads(void **state)
{
	void *mem;
	struct disp_ring *r = ring_new(1024, &mem);
	struct producer prod[PRODUCERS];
	pthread_t th[PRODUCERS];
	uint32_t next[PRODUCERS] = {0};
	uint64_t got = 0, empty = 0, full = 0;
	double t0 = now_s();

	(void)state;
	for (uint32_t i = 0; i < PRODUCERS; i++) {
		prod[i] = (struct producer){.r = r, .id = i};
		assert_int_equal(pthread_create(&th[i], NULL, produce, &prod[i]), 0);
	}
	while (got < (uint64_t)PRODUCERS * PER_PRODUCER) {
		uint32_t v, id;

		if (disp_ring_pop(r, &v) != 0) {
			if ((++empty & 63) == 0)
				sched_yield();
			continue;
		}
		id = v >> 24;
		if (id >= PRODUCERS)
			fail_msg("foreign value %#x", v);
		/* per-producer FIFO with no gap: every value exactly once */
		if ((v & 0xffffff) != next[id])
			fail_msg("producer %u: got %u, expected %u", id, v & 0xffffff, next[id]);
		next[id]++;
		got++;
	}
	for (uint32_t i = 0; i < PRODUCERS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(next[i], PER_PRODUCER);
		full += prod[i].full;
	}
	{
		uint32_t v;

		assert_int_equal(disp_ring_pop(r, &v), -EAGAIN);
	}
	assert_int_equal(disp_ring_count(r), 0);
	printf("ring: %d producers x %u in %.3f s (consumer found it empty %" PRIu64
	       " times, producers found it full %" PRIu64 " times)\n",
	       PRODUCERS, PER_PRODUCER, now_s() - t0, empty, full);
	free(mem);
}

int main(void)
{
	const char *env = getenv("SURGE_SEED");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_wheel_add_cancel_pending),
	        cmocka_unit_test(test_wheel_exact_times),
	        cmocka_unit_test(test_wheel_due_on_add),
	        cmocka_unit_test(test_wheel_backwards_noop),
	        cmocka_unit_test(test_wheel_random_vs_sorted),
	        cmocka_unit_test(test_wheel_churn),
	        cmocka_unit_test(test_wheel_periodic),
	        cmocka_unit_test(test_wheel_cancel_from_fire),
	        cmocka_unit_test(test_wheel_far_timers),
	        cmocka_unit_test(test_wheel_fast),
	        cmocka_unit_test(test_ring_invalid),
	        cmocka_unit_test(test_ring_single_thread),
	        cmocka_unit_test(test_ring_mpsc_threads),
	};

	seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	printf("wheel: seed %" PRIu64 " (SURGE_SEED to repeat)\n", seed);
	return cmocka_run_group_tests_name("wheel", tests, NULL, NULL);
}
