/* SPDX-License-Identifier: MIT */
/*
 * Lazy least-loaded FIFOs (llq.h).
 *
 * A FIFO is a list of chunks, each holding its entries in ent[lo .. hi):
 * pops advance the head chunk's lo, appends the tail chunk's hi, so every
 * chunk but the head and the tail is full. A compaction pass reads entries
 * from rc (advancing its lo) and appends the live ones to wc, the last
 * chunk of the compacted part, which sits right before rc: the list stays a
 * valid FIFO at every step, so pops, appends and the end of a pass need no
 * special order. Partial chunks are then at most four (head, wc, rc,
 * tail), which llq_need() counts on.
 */
#include "llq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void llq_pool_init(struct llq_pool *p)
{
	memset(p, 0, sizeof(*p));
}

void llq_pool_fini(struct llq_pool *p)
{
	for (size_t i = 0; i < p->nb_slabs; i++)
		free(p->slabs[i]);
	free(p->slabs);
	memset(p, 0, sizeof(*p));
}

int llq_pool_reserve(struct llq_pool *p, size_t chunks)
{
	struct llq_chunk *slab;
	void **slabs;
	size_t add;

	if (p->total >= chunks)
		return 0;
	add = chunks - p->total;
	if (add > SIZE_MAX / sizeof(*slab))
		return -ENOMEM;
	slabs = realloc(p->slabs, (p->nb_slabs + 1) * sizeof(*slabs));
	if (!slabs)
		return -ENOMEM;
	p->slabs = slabs;
	slab = aligned_alloc(64, add * sizeof(*slab));
	if (!slab)
		return -ENOMEM;
	p->slabs[p->nb_slabs++] = slab;
	for (size_t i = add; i-- > 0;) {
		slab[i].next = p->free;
		p->free = &slab[i];
	}
	p->total += add;
	p->bytes += add * sizeof(*slab);
	return 0;
}

size_t llq_pool_free_count(const struct llq_pool *p)
{
	size_t n = 0;

	for (const struct llq_chunk *c = p->free; c; c = c->next)
		n++;
	return n;
}

size_t llq_need(uint32_t ids, uint32_t loads)
{
	uint32_t m = ids < loads ? ids : loads;

	/* Per load with entries, at most LLQ_BOUND(live) entries in full chunks
	 * and four partial ones (see the top), plus rounding; and the spare. */
	return ((size_t)2 * (LLQ_RATIO + 1) * ids + LLQ_CHUNK - 1) / LLQ_CHUNK + (size_t)7 * m + 1;
}

static struct llq_chunk *chunk_take(struct llq_pool *p)
{
	struct llq_chunk *c = p->free;

	if (!c) {
		/* The caller reserved what llq_need() counts, and the bound on
		 * entries per load keeps every llq within it: this is a bug, and
		 * no request can be answered half-filed. */
		fprintf(stderr, "llq: chunk pool overdrawn (%zu in use)\n", p->used);
		abort();
	}
	p->free = c->next;
	p->used++;
	c->next = NULL;
	c->lo = c->hi = 0;
	return c;
}

static void chunk_give(struct llq_pool *p, struct llq_chunk *c)
{
	c->next = p->free;
	p->free = c;
	p->used--;
}

void llq_init(struct llq *q)
{
	memset(q, 0, sizeof(*q));
}

/* A load's last live entry left: its chunks go, but one stays as the llq's spare. */
static void fifo_drop(struct llq *q, struct llq_fifo *f, struct llq_pool *p)
{
	struct llq_chunk *c = f->head;

	if (c && !q->spare) {
		q->spare = c;
		c = c->next;
	}
	while (c) {
		struct llq_chunk *next = c->next;

		chunk_give(p, c);
		c = next;
	}
	memset(f, 0, sizeof(*f));
}

void llq_clear(struct llq *q, struct llq_pool *p)
{
	for (uint32_t l = 0; l < LLQ_LOADS; l++)
		fifo_drop(q, &q->fifo[l], p);
	if (q->spare)
		chunk_give(p, q->spare);
	llq_init(q);
}

void llq_push_slow(struct llq *q, struct llq_pool *p, uint32_t load, uint32_t id, llq_stamp stamp)
{
	struct llq_fifo *f = &q->fifo[load];
	struct llq_chunk *t = f->tail;

	if (!t || t->hi == LLQ_CHUNK) {
		struct llq_chunk *c = q->spare;

		/* A load that empties and fills again (the lowest, often) reuses one chunk. */
		if (c) {
			q->spare = NULL;
			c->next = NULL;
			c->lo = c->hi = 0;
		} else {
			c = chunk_take(p);
		}

		if (t)
			t->next = c;
		else
			f->head = c;
		f->tail = t = c;
	}
	t->ent[t->hi++] = (struct llq_ent){.id = id, .stamp = stamp};
	f->n++;
	q->live++;
	if (f->live++ == 0) {
		q->nonempty[load / 64] |= 1ull << (load % 64);
		q->summary |= 1ull << (load / 64);
	}
}

/* The head entry is stale: drop it. A FIFO with a live entry never empties here. */
static void pop_head(struct llq_fifo *f, struct llq_pool *p)
{
	struct llq_chunk *c = f->head;

	c->lo++;
	f->n--;
	if (c->lo < c->hi)
		return;
	f->head = c->next;
	if (c == f->wc)
		f->wc = NULL; /* the compacted part is gone; rc is the head now */
	if (c == f->rc)
		f->rc = c->next;
	chunk_give(p, c);
}

/* Where the compacted part links to rc from. */
static struct llq_chunk **before_rc(struct llq_fifo *f)
{
	return f->wc ? &f->wc->next : &f->head;
}

/* Move one entry through the pass: keep it (at wc) if live and not dead's, else drop it. */
static void pass_step(struct llq_fifo *f, struct llq_pool *p, const llq_stamp *stamps,
                      uint32_t dead)
{
	struct llq_chunk *rc = f->rc, *wc = f->wc;
	struct llq_ent e = rc->ent[rc->lo++];
	bool live = stamps[e.id] == e.stamp && e.id != dead;

	if (rc->lo == rc->hi) {
		if (!rc->next) {
			/* rc is the tail: the pass is over. Its last entry joins wc
			 * if it fits, so no partial chunk stays behind in the middle. */
			if (live && (!wc || wc->hi == LLQ_CHUNK)) {
				rc->lo--;
			} else {
				if (live)
					wc->ent[wc->hi++] = e;
				else
					f->n--;
				/* wc NULL: nothing kept before rc, which was the head too
				 * (a purge taking a leaving agent's last entry): now empty. */
				*before_rc(f) = NULL;
				f->tail = wc;
				chunk_give(p, rc);
			}
			f->rc = f->wc = NULL;
			return;
		}
		*before_rc(f) = rc->next;
		f->rc = rc->next;
		chunk_give(p, rc);
	}
	if (!live) {
		f->n--;
		return;
	}
	if (!wc || wc->hi == LLQ_CHUNK) {
		struct llq_chunk *c = chunk_take(p);

		c->next = f->rc;
		*before_rc(f) = c;
		f->wc = wc = c;
	}
	wc->ent[wc->hi++] = e;
}

void llq_leave_slow(struct llq *q, struct llq_pool *p, uint32_t load, const llq_stamp *stamps)
{
	struct llq_fifo *f = &q->fifo[load];

	q->live--;
	if (--f->live == 0) {
		fifo_drop(q, f, p);
		q->nonempty[load / 64] &= ~(1ull << (load % 64));
		if (!q->nonempty[load / 64])
			q->summary &= ~(1ull << (load / 64));
		return;
	}
	if (!f->rc && f->n - f->live >= LLQ_RATIO * f->live + LLQ_CHUNK)
		f->rc = f->head;
	for (uint32_t i = 0; i < LLQ_STEPS && f->rc; i++)
		pass_step(f, p, stamps, LLQ_NONE);
	/* The next leave's steps read these stamps: random lines, loaded meanwhile. */
	if (f->rc) {
		const struct llq_chunk *rc = f->rc;

		for (uint32_t i = rc->lo; i < rc->hi && i < rc->lo + LLQ_STEPS; i++)
			__builtin_prefetch(&stamps[rc->ent[i].id]);
	}
	/* The bound llq_need() counts on; LLQ_STEPS keeps ahead of it. */
	while (f->n > LLQ_BOUND(f->live)) {
		if (!f->rc)
			f->rc = f->head;
		pass_step(f, p, stamps, LLQ_NONE);
	}
}

void llq_purge(struct llq *q, struct llq_pool *p, uint32_t id, const llq_stamp *stamps)
{
	for (uint32_t load = 0; load < LLQ_LOADS; load++) {
		struct llq_fifo *f = &q->fifo[load];

		if (!f->head)
			continue;
		/* A pass under way ends anywhere: the list is a valid FIFO at every step. */
		f->wc = NULL;
		f->rc = f->head;
		while (f->rc)
			pass_step(f, p, stamps, id);
	}
}

uint32_t llq_best_slow(struct llq *q, struct llq_pool *p, const llq_stamp *stamps)
{
	struct llq_fifo *f;
	uint32_t w;

	if (!q->summary)
		return LLQ_NONE;
	w = (uint32_t)__builtin_ctzll(q->summary);
	f = &q->fifo[w * 64 + (uint32_t)__builtin_ctzll(q->nonempty[w])];
	for (;;) {
		const struct llq_ent *e = &f->head->ent[f->head->lo];

		if (stamps[e->id] == e->stamp) {
			/* The caller re-files it, leaving it stale here: the next
			 * call reads the stamp behind it. */
			if (f->head->lo + 1u < f->head->hi)
				__builtin_prefetch(&stamps[e[1].id]);
			return e->id;
		}
		pop_head(f, p);
	}
}

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			return -__LINE__;                                                          \
	} while (0)

static int check_fifo(const struct llq_fifo *f, uint32_t load, const llq_stamp *stamps,
                      llq_visit_fn *visit, void *ctx)
{
	uint32_t n = 0, live = 0, partial = 0;
	bool seen_wc = !f->wc, seen_rc = !f->rc;
	const struct llq_chunk *last = NULL;

	CHECK(!f->head == !f->tail && (f->head != NULL) == (f->n != 0));
	CHECK(!f->wc || f->rc);
	for (const struct llq_chunk *c = f->head; c; c = c->next) {
		CHECK(c->lo < c->hi && c->hi <= LLQ_CHUNK);
		CHECK(!f->wc || seen_wc || c != f->rc); /* wc comes before rc */
		if (c == f->wc) {
			seen_wc = true;
			CHECK(c->next == f->rc);
		}
		seen_rc |= c == f->rc;
		partial += (uint32_t)(c->hi - c->lo) < LLQ_CHUNK;
		for (uint32_t i = c->lo; i < c->hi; i++) {
			if (stamps[c->ent[i].id] == c->ent[i].stamp) {
				int rc = visit(ctx, load, c->ent[i].id);

				if (rc)
					return rc;
				live++;
			}
			n++;
		}
		last = c;
	}
	CHECK(last == f->tail && seen_wc && seen_rc);
	CHECK(partial <= 4 && n == f->n && live == f->live);
	CHECK(f->n <= LLQ_BOUND(f->live));
	return 0;
}

int llq_check(const struct llq *q, const llq_stamp *stamps, llq_visit_fn *visit, void *ctx)
{
	uint32_t live = 0;

	for (uint32_t w = 0; w < LLQ_LOADS / 64; w++) {
		CHECK(((q->summary >> w) & 1) == (q->nonempty[w] != 0));
		for (uint32_t b = 0; b < 64; b++) {
			const struct llq_fifo *f = &q->fifo[w * 64 + b];
			int rc;

			CHECK(((q->nonempty[w] >> b) & 1) == (f->live != 0));
			rc = check_fifo(f, w * 64 + b, stamps, visit, ctx);
			if (rc)
				return rc;
			live += f->live;
		}
	}
	CHECK(LLQ_LOADS / 64 == 64 || q->summary >> (LLQ_LOADS / 64) == 0);
	CHECK(live == q->live);
	return 0;
}
