/* SPDX-License-Identifier: MIT */
/*
 * dispatch's lazy least-loaded FIFOs (llq.h) against a reference: ids filed
 * at a load with a sequence number, the best being the lowest load, then the
 * lowest sequence. Two llqs share a pool and the stamps, as an engine's
 * least-loaded skills do. After every step the structure is checked (entry
 * counts, chunk shape, the bound on stale entries) and its live entries are
 * compared with the reference, order included; the pool never needs more
 * than llq_need() counted. Prints its seed; SURGE_SEED=N replays it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llq.h"

#define NQ 2

struct ref {
	uint32_t nb_ids;
	uint32_t nb_loads;
	uint32_t *load;   /* LLQ_NONE: not filed */
	uint64_t *seq;    /* when filed */
	uint8_t *in;      /* bit q: filed in llq q when filed */
	llq_stamp *stamp; /* the llqs' */
	uint64_t next_seq;
	struct llq *q[NQ];
	struct llq_pool pool;
	/* the visit's cursor */
	uint32_t vq, vload, vcount;
	uint64_t vseq;
};

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

static void ref_init(struct ref *r, uint32_t nb_ids, uint32_t nb_loads)
{
	size_t need = 0;

	memset(r, 0, sizeof(*r));
	r->nb_ids = nb_ids;
	r->nb_loads = nb_loads;
	r->load = malloc(nb_ids * sizeof(*r->load));
	r->seq = calloc(nb_ids, sizeof(*r->seq));
	r->in = calloc(nb_ids, sizeof(*r->in));
	r->stamp = calloc(nb_ids, sizeof(*r->stamp));
	assert_non_null(r->load);
	assert_non_null(r->seq);
	assert_non_null(r->in);
	assert_non_null(r->stamp);
	for (uint32_t i = 0; i < nb_ids; i++)
		r->load[i] = LLQ_NONE;
	llq_pool_init(&r->pool);
	for (uint32_t q = 0; q < NQ; q++) {
		r->q[q] = malloc(sizeof(*r->q[q]));
		assert_non_null(r->q[q]);
		llq_init(r->q[q]);
		/* Every id may be in every llq. */
		need += llq_need(nb_ids, nb_loads);
	}
	assert_int_equal(llq_pool_reserve(&r->pool, need), 0);
}

static void ref_fini(struct ref *r)
{
	for (uint32_t q = 0; q < NQ; q++) {
		llq_clear(r->q[q], &r->pool);
		free(r->q[q]);
	}
	assert_int_equal(r->pool.used, 0);
	assert_int_equal(llq_pool_free_count(&r->pool), r->pool.total);
	llq_pool_fini(&r->pool);
	free(r->load);
	free(r->seq);
	free(r->in);
	free(r->stamp);
}

static void file(struct ref *r, uint32_t id, uint32_t load, uint8_t in)
{
	r->load[id] = load;
	r->seq[id] = r->next_seq++;
	r->in[id] = in;
	for (uint32_t q = 0; q < NQ; q++)
		if (in & (1u << q))
			llq_push(r->q[q], &r->pool, load, id, r->stamp[id]);
}

static void unfile(struct ref *r, uint32_t id)
{
	uint32_t load = r->load[id];

	/* As the engine does: a stamp that comes round purges what its id left. */
	if (++r->stamp[id] == 0)
		for (uint32_t q = 0; q < NQ; q++)
			llq_purge(r->q[q], &r->pool, id, r->stamp);
	for (uint32_t q = 0; q < NQ; q++)
		if (r->in[id] & (1u << q))
			llq_leave(r->q[q], &r->pool, load, r->stamp);
	r->load[id] = LLQ_NONE;
}

static uint32_t ref_best(const struct ref *r, uint32_t q)
{
	uint32_t best = LLQ_NONE;

	for (uint32_t i = 0; i < r->nb_ids; i++) {
		if (r->load[i] == LLQ_NONE || !(r->in[i] & (1u << q)))
			continue;
		if (best == LLQ_NONE || r->load[i] < r->load[best] ||
		    (r->load[i] == r->load[best] && r->seq[i] < r->seq[best]))
			best = i;
	}
	return best;
}

static int visit(void *ctx, uint32_t load, uint32_t id)
{
	struct ref *r = ctx;

	if (id >= r->nb_ids || r->load[id] != load || !(r->in[id] & (1u << r->vq)))
		return -1;
	if (load == r->vload && r->vcount && r->seq[id] <= r->vseq)
		return -2;
	r->vload = load;
	r->vseq = r->seq[id];
	r->vcount++;
	return 0;
}

static void check_all(struct ref *r, uint64_t step, uint64_t seed)
{
	for (uint32_t q = 0; q < NQ; q++) {
		uint32_t filed = 0;
		int rc;

		r->vq = q;
		r->vload = 0;
		r->vcount = 0;
		rc = llq_check(r->q[q], r->stamp, visit, r);
		for (uint32_t i = 0; i < r->nb_ids; i++)
			filed += r->load[i] != LLQ_NONE && (r->in[i] & (1u << q));
		if (rc || r->vcount != filed || r->q[q]->live != filed)
			fail_msg("llq %u broken (%d, %u live of %u) at step %llu, seed %llu", q, rc,
			         r->vcount, filed, (unsigned long long)step,
			         (unsigned long long)seed);
	}
	if (r->pool.used > r->pool.total)
		fail_msg("pool overdrawn at step %llu, seed %llu", (unsigned long long)step,
		         (unsigned long long)seed);
}

static uint64_t test_seed(void)
{
	const char *env = getenv("SURGE_SEED");

	return env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
}

/*
 * Random files, leaves and re-files, with phases that favour a low load
 * (higher loads pile up stale entries no head reaches: compaction passes)
 * and phases that pop heads, so pops land in the middle of passes.
 */
static void test_llq_against_reference(void **state)
{
	uint64_t seed = test_seed(), s;
	struct ref r;

	(void)state;
	printf("seed=%llu\n", (unsigned long long)seed);
	s = seed;
	for (uint32_t round = 0; round < 6; round++) {
		uint32_t nb_ids = 1 + (uint32_t)below(&s, round < 3 ? 40 : 1500);
		uint32_t nb_loads = 1 + (uint32_t)below(&s, round % 2 ? 3 : 12);
		uint32_t steps = round < 3 ? 20000 : 60000;

		ref_init(&r, nb_ids, nb_loads);
		for (uint64_t step = 0; step < steps; step++) {
			uint32_t id = (uint32_t)below(&s, nb_ids);
			uint32_t phase = (uint32_t)(step / 4000) % 3;
			uint32_t load = phase == 0 ? (uint32_t)below(&s, nb_loads)
			                           : (uint32_t)below(&s, 1 + below(&s, nb_loads));
			uint32_t q = (uint32_t)below(&s, NQ);
			uint8_t in = (uint8_t)(1 + below(&s, (1u << NQ) - 1));

			switch (below(&s, phase == 2 ? 3 : 4)) {
			case 0: /* re-file, or file */
			case 3:
				if (r.load[id] != LLQ_NONE) {
					in = r.in[id];
					unfile(&r, id);
				}
				file(&r, id, load, in);
				break;
			case 1:
				if (r.load[id] != LLQ_NONE)
					unfile(&r, id);
				break;
			default: {
				uint32_t got = llq_best(r.q[q], &r.pool, r.stamp);
				uint32_t want = ref_best(&r, q);

				if (got != want)
					fail_msg(
					        "best of llq %u: %u, want %u, step %llu, seed %llu",
					        q, got, want, (unsigned long long)step,
					        (unsigned long long)seed);
				/* Assign it: its load goes up, as a dispatcher's does. */
				if (got != LLQ_NONE && below(&s, 2)) {
					uint32_t l = r.load[got] + 1;

					in = r.in[got];
					unfile(&r, got);
					if (l < nb_loads)
						file(&r, got, l, in);
				}
				break;
			}
			}
			check_all(&r, step, seed);
		}
		ref_fini(&r);
	}
}

/*
 * The worst case for stale entries: everyone at one load, leaving and coming
 * back to it, while a lower load always has someone, so no head is ever
 * popped there. Only compaction keeps it bounded.
 */
static void test_llq_stale_bounded_without_pops(void **state)
{
	const uint32_t nb_ids = 5000, steps = 200000;
	uint64_t seed = test_seed(), s = seed;
	size_t most = 0;
	struct ref r;

	(void)state;
	printf("seed=%llu\n", (unsigned long long)seed);
	ref_init(&r, nb_ids, 2);
	file(&r, 0, 0, 1);
	for (uint32_t i = 1; i < nb_ids; i++)
		file(&r, i, 1, 1);
	for (uint32_t step = 0; step < steps; step++) {
		uint32_t id = 1 + (uint32_t)below(&s, nb_ids - 1);

		unfile(&r, id);
		file(&r, id, 1, 1);
		assert_int_equal(llq_best(r.q[0], &r.pool, r.stamp), 0);
		if (r.pool.used > most)
			most = r.pool.used;
		if (step % 997 == 0)
			check_all(&r, step, seed);
	}
	check_all(&r, steps, seed);
	/* 5000 live entries need 20 chunks; the bound allows 3x and some partials. */
	assert_true(r.q[0]->fifo[1].n <= LLQ_BOUND(r.q[0]->fifo[1].live));
	assert_true(most <= llq_need(nb_ids, 2));
	printf("chunks in use at most: %zu (reserved %zu)\n", most, r.pool.total);
	ref_fini(&r);
}

/* A load whose last live entry leaves gives its chunks back at once, but for a spare. */
static void test_llq_empty_load_frees_chunks(void **state)
{
	struct ref r;

	(void)state;
	ref_init(&r, 600, 4);
	for (uint32_t i = 0; i < 600; i++)
		file(&r, i, 2, 1);
	assert_int_equal(r.pool.used, (600 + LLQ_CHUNK - 1) / LLQ_CHUNK);
	for (uint32_t i = 0; i < 599; i++)
		unfile(&r, i);
	assert_int_equal(llq_best(r.q[0], &r.pool, r.stamp), 599);
	unfile(&r, 599);
	assert_int_equal(r.pool.used, 1); /* the spare */
	assert_int_equal(llq_best(r.q[0], &r.pool, r.stamp), LLQ_NONE);
	check_all(&r, 0, 0);
	ref_fini(&r);
}

/*
 * An entry left stale at a load nothing pops or compacts outlives 2^32
 * re-filings of its id, whose stamp comes round to the entry's: the purge at
 * the wrap drops it, where it would otherwise count as live again.
 */
static void test_llq_stamp_wrap_purges(void **state)
{
	struct ref r;

	(void)state;
	ref_init(&r, 10, 8);
	for (uint32_t i = 0; i < 6; i++)
		file(&r, i, 3, 3);
	unfile(&r, 5); /* stale at load 3, stamp 0 */
	check_all(&r, 0, 0);
	r.stamp[5] = UINT32_MAX; /* 2^32 - 1 re-filings later */
	file(&r, 5, 1, 3);
	unfile(&r, 5); /* the stamp comes round to 0 */
	check_all(&r, 1, 0);
	file(&r, 5, 2, 3);
	check_all(&r, 2, 0);
	assert_int_equal(llq_best(r.q[0], &r.pool, r.stamp), 5);
	assert_int_equal(r.q[0]->fifo[3].n, 5);
	ref_fini(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_llq_against_reference),
	        cmocka_unit_test(test_llq_stale_bounded_without_pops),
	        cmocka_unit_test(test_llq_empty_load_frees_chunks),
	        cmocka_unit_test(test_llq_stamp_wrap_purges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
