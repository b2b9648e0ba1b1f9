/* SPDX-License-Identifier: MIT */
/*
 * Private to dispatch: a least-loaded skill's eligible agents, one FIFO per
 * load, that never writes a neighbour.
 *
 * Each FIFO holds (agent, stamp) entries in chunks. An agent that leaves its
 * load (re-filed, or no longer eligible) is not unlinked: the caller bumps
 * its stamp, which makes every entry it has anywhere stale, and appends new
 * entries where it goes. A doubly linked list wrote both neighbours on every
 * unlink, two random lines at 100k agents; here a leave writes the agent's
 * stamp and the load's counters, an append the tail chunk.
 *
 * Stale entries are dropped when they reach a head (llq_best), all at once
 * when a load has no live entry left, and by an incremental compaction
 * pass: a load with LLQ_RATIO stale entries per live one, and a chunk more,
 * starts one, and every later leave of that load moves LLQ_STEPS entries
 * through it, so no request pays for a whole pass. A load never holds more
 * than LLQ_BOUND(live) entries (a leave finishes the pass at once past
 * that), which bounds the chunks llq_need() counts; chunks come from a pool
 * the caller reserves ahead (llq_pool_reserve), so no request allocates.
 *
 * Stamps are the caller's array, one llq_stamp per id: an entry is live iff
 * stamps[id] == its stamp. When an id's stamp comes round to 0 the caller
 * purges its entries from every llq (llq_purge), so that one left behind
 * 2^32 stamps ago cannot look live again. 32 bits and not 64: the stamps of
 * 100k agents (400 KB) then mostly stay in a 1 MB L2, where every stale
 * check reads one.
 */
#ifndef SURGE_DISPATCH_LLQ_H
#define SURGE_DISPATCH_LLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LLQ_LOADS 1024u /* loads 0 .. LLQ_LOADS - 1 */
#define LLQ_CHUNK 510u  /* entries a chunk holds: 4 KB with its header */
#define LLQ_STEPS 8u    /* entries a leave moves through a compaction pass */
#define LLQ_RATIO 2u    /* a pass starts at RATIO stale entries per live one, and a chunk */
/* A load never holds more entries: LLQ_STEPS finishes a pass well before. */
#define LLQ_BOUND(live) (2 * (LLQ_RATIO + 1) * (live) + 2 * LLQ_CHUNK)
#define LLQ_NONE        UINT32_MAX

_Static_assert(LLQ_CHUNK < UINT16_MAX, "lo and hi hold an index");

typedef uint32_t llq_stamp;

struct llq_ent {
	uint32_t id;
	llq_stamp stamp;
};

struct llq_chunk {
	struct llq_chunk *next;
	uint16_t lo, hi; /* ent[lo .. hi) are the chunk's entries */
	uint32_t pad;
	struct llq_ent ent[LLQ_CHUNK];
};

_Static_assert(sizeof(struct llq_chunk) == 4096,
               "a chunk is 4 KB: LLQ_CHUNK entries and the header");

/* Chunks for every llq of an engine: reserved ahead, recycled through a free list. */
struct llq_pool {
	struct llq_chunk *free;
	size_t total; /* chunks allocated */
	size_t used;  /* chunks in some llq */
	void **slabs;
	size_t nb_slabs;
	size_t bytes; /* what the slabs take */
};

/* One load's FIFO. During a compaction pass, wc is where the next kept entry
 * goes and rc is read next; chunks between them are freed as rc leaves them. */
struct llq_fifo {
	struct llq_chunk *head, *tail;
	struct llq_chunk *wc, *rc; /* NULL: no pass */
	uint32_t n;                /* entries, stale ones included */
	uint32_t live;
};

struct llq {
	uint64_t summary;                  /* bit w: nonempty[w] != 0 */
	uint64_t nonempty[LLQ_LOADS / 64]; /* bit l: fifo[l].live != 0 */
	uint32_t live;                     /* all loads' */
	struct llq_chunk *spare;           /* NULL, or a chunk kept for the next load to fill */
	struct llq_fifo fifo[LLQ_LOADS];
};

void llq_pool_init(struct llq_pool *p);
void llq_pool_fini(struct llq_pool *p);
/* Make the pool hold at least `chunks` chunks in all: 0 or -ENOMEM. */
int llq_pool_reserve(struct llq_pool *p, size_t chunks);

/* Chunks an llq may hold with `ids` ids filed at once, at `loads` distinct loads at most. */
size_t llq_need(uint32_t ids, uint32_t loads);

void llq_init(struct llq *q);
/* Give every chunk back to the pool. */
void llq_clear(struct llq *q, struct llq_pool *p);
void llq_push_slow(struct llq *q, struct llq_pool *p, uint32_t load, uint32_t id, llq_stamp stamp);
void llq_leave_slow(struct llq *q, struct llq_pool *p, uint32_t load, const llq_stamp *stamps);
uint32_t llq_best_slow(struct llq *q, struct llq_pool *p, const llq_stamp *stamps);

/*
 * The three below are inline for their common case (a tail chunk with room,
 * a load that keeps live entries and needs no compaction, a live head): a
 * dozen instructions where a call into llq.c cost a few dozen.
 */

/* Append id with its current stamp at the tail of `load`'s FIFO. The pool
 * must hold the chunks llq_need() counts for the ids filed (reserved). */
static inline void llq_push(struct llq *q, struct llq_pool *p, uint32_t load, uint32_t id,
                            llq_stamp stamp)
{
	struct llq_fifo *f = &q->fifo[load];
	struct llq_chunk *t = f->tail;

	if (__builtin_expect(!t || t->hi == LLQ_CHUNK || f->live == 0, 0)) {
		llq_push_slow(q, p, load, id, stamp);
		return;
	}
	t->ent[t->hi++] = (struct llq_ent){.id = id, .stamp = stamp};
	f->n++;
	f->live++;
	q->live++;
}

/* One entry at `load` went stale: the caller bumped its id's stamp. */
static inline void llq_leave(struct llq *q, struct llq_pool *p, uint32_t load,
                             const llq_stamp *stamps)
{
	struct llq_fifo *f = &q->fifo[load];

	if (__builtin_expect(f->live == 1 || f->rc ||
	                             f->n - f->live + 1 >= LLQ_RATIO * (f->live - 1) + LLQ_CHUNK,
	                     0)) {
		llq_leave_slow(q, p, load, stamps);
		return;
	}
	f->live--;
	q->live--;
}

/* The id at the head of the lowest load with a live entry (LLQ_NONE: none). */
static inline uint32_t llq_best(struct llq *q, struct llq_pool *p, const llq_stamp *stamps)
{
	const struct llq_fifo *f;
	const struct llq_ent *e;
	uint32_t w;

	if (!q->summary)
		return LLQ_NONE;
	w = (uint32_t)__builtin_ctzll(q->summary);
	f = &q->fifo[w * 64 + (uint32_t)__builtin_ctzll(q->nonempty[w])];
	e = &f->head->ent[f->head->lo];
	if (__builtin_expect(stamps[e->id] != e->stamp, 0))
		return llq_best_slow(q, p, stamps);
	/* The caller re-files it, which leaves this entry stale: the next call
	 * reads the stamp behind it, a random line. */
	if (f->head->lo + 1u < f->head->hi)
		__builtin_prefetch(&stamps[e[1].id]);
	return e->id;
}

/* Drop every entry of id, all stale: its stamp came round to values old entries may carry. */
void llq_purge(struct llq *q, struct llq_pool *p, uint32_t id, const llq_stamp *stamps);

/* Calls visit(ctx, load, id) for every live entry, loads ascending, each in FIFO
 * order, after checking the structure; a non-zero return stops with it. */
typedef int llq_visit_fn(void *ctx, uint32_t load, uint32_t id);
int llq_check(const struct llq *q, const llq_stamp *stamps, llq_visit_fn *visit, void *ctx);
/* Chunks the pool's free list holds (for checks). */
size_t llq_pool_free_count(const struct llq_pool *p);

#endif
