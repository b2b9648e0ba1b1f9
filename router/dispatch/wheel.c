/* SPDX-License-Identifier: MIT */
/*
 * The dispatcher's timer wheel and arrival ring (wheel.h).
 *
 * Timer wheel: four levels of 256 slots, the classic hierarchical scheme of
 * Varghese and Lauck as the Linux kernel used it before 4.8. A timer goes to
 * the lowest level whose reach covers (expires - now): level L slot spans
 * 2^(8L) ms and the timer sits in slot (expires >> 8L) & 255. While pending,
 * a timer at level L satisfies
 *
 *	(now >> 8L) < (expires >> 8L) <= (now >> 8L) + 256
 *
 * so its slot comes due exactly at (expires >> 8L) << 8L, when it is
 * cascaded: re-filed relative to that time, which puts it one or more levels
 * lower; at level 0 a slot holds only timers due at one millisecond. The slot
 * of level 0 at now & 255 is never needed for a future time (a level-0 timer
 * is due within 1..255 ms), so it holds the timers added when already due.
 *
 * Advancing walks event times — the next occupied level-0 slot and the due
 * times of the next occupied slot of each higher level, found in a 256-bit
 * occupancy bitmap per level — so empty time costs nothing. At one event time
 * the higher levels cascade first (highest first), then level 0 fires.
 *
 * Times are milliseconds in uint64_t and must stay below 2^63.
 */
#include "wheel.h"

#include <errno.h>
#include <stdalign.h>
#include <string.h>

#define LVL_BITS 8
#define LVL_MASK (DISP_WHEEL_SLOTS - 1)
#define REACH    (1ull << (LVL_BITS * DISP_WHEEL_LEVELS)) /* 2^32 ms, about 49.7 days */

static inline struct disp_timer *slot_head(struct disp_wheel *w, unsigned int flat)
{
	return &w->slots[flat >> LVL_BITS][flat & LVL_MASK];
}

static inline void mark(struct disp_wheel *w, unsigned int flat)
{
	w->occupied[flat >> LVL_BITS][(flat & LVL_MASK) >> 6] |= 1ull << (flat & 63);
}

static inline void unmark(struct disp_wheel *w, unsigned int flat)
{
	w->occupied[flat >> LVL_BITS][(flat & LVL_MASK) >> 6] &= ~(1ull << (flat & 63));
}

/*
 * Distance from slot `start` to the first occupied slot of level `lvl`, going
 * forward and wrapping (0..255), or -1 if the level is empty.
 */
static int next_occupied(const struct disp_wheel *w, unsigned int lvl, unsigned int start)
{
	const uint64_t *bm = w->occupied[lvl];
	unsigned int word = start >> 6, bit = start & 63;
	uint64_t m = bm[word] & (~0ull << bit);

	for (unsigned int i = 0; i <= DISP_WHEEL_SLOTS / 64; i++) {
		if (m) {
			unsigned int slot = ((word << 6) | (unsigned int)__builtin_ctzll(m));

			return (int)((slot - start) & LVL_MASK);
		}
		/* back at the start word last: its bits from `start` on were clear */
		word = (word + 1) & (DISP_WHEEL_SLOTS / 64 - 1);
		m = bm[word];
	}
	return -1;
}

/* Which slot (level << 8 | index) t belongs in, relative to w->now_ms. */
static unsigned int slot_for(const struct disp_wheel *w, uint64_t expires)
{
	uint64_t now = w->now_ms;
	uint64_t delta;

	if (expires <= now)
		return (unsigned int)(now & LVL_MASK);
	delta = expires - now;
	if (delta >= REACH)
		/*
		 * Park it where a timer of the largest representable delta would
		 * go; when that slot comes due (about 49.5 days on) it is re-filed.
		 */
		expires = now + REACH - 1;
	for (unsigned int lvl = 0;; lvl++)
		if (lvl == DISP_WHEEL_LEVELS - 1 || delta < 1ull << (LVL_BITS * (lvl + 1)))
			return lvl << LVL_BITS |
			       (unsigned int)((expires >> (LVL_BITS * lvl)) & LVL_MASK);
}

static void link_timer(struct disp_wheel *w, struct disp_timer *t)
{
	unsigned int flat = slot_for(w, t->expires_ms);
	struct disp_timer *h = slot_head(w, flat);

	t->level = (uint16_t)flat;
	t->prev = h->prev;
	t->next = h;
	h->prev->next = t;
	h->prev = t;
	mark(w, flat);
}

static void unlink_timer(struct disp_wheel *w, struct disp_timer *t)
{
	struct disp_timer *h = slot_head(w, t->level);

	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = NULL;
	t->prev = NULL;
	/*
	 * t may sit on a list spliced off its slot (being fired or cascaded):
	 * then the slot's own list decides, which is right either way.
	 */
	if (h->next == h)
		unmark(w, t->level);
}

/* Move the whole list of slot `flat` onto the empty list `to`. */
static void splice_slot(struct disp_wheel *w, unsigned int flat, struct disp_timer *to)
{
	struct disp_timer *h = slot_head(w, flat);

	unmark(w, flat);
	if (h->next == h) {
		to->next = to;
		to->prev = to;
		return;
	}
	to->next = h->next;
	to->prev = h->prev;
	to->next->prev = to;
	to->prev->next = to;
	h->next = h;
	h->prev = h;
}

void disp_wheel_init(struct disp_wheel *w, uint64_t now_ms)
{
	memset(w, 0, sizeof(*w));
	w->now_ms = now_ms;
	for (unsigned int l = 0; l < DISP_WHEEL_LEVELS; l++)
		for (unsigned int s = 0; s < DISP_WHEEL_SLOTS; s++) {
			w->slots[l][s].next = &w->slots[l][s];
			w->slots[l][s].prev = &w->slots[l][s];
		}
}

void disp_timer_init(struct disp_timer *t, uint32_t owner, uint16_t kind)
{
	t->next = NULL;
	t->prev = NULL;
	t->expires_ms = 0;
	t->owner = owner;
	t->kind = kind;
	t->level = 0;
}

void disp_wheel_add(struct disp_wheel *w, struct disp_timer *t, uint64_t expires_ms)
{
	if (disp_timer_pending(t)) {
		/*
		 * Re-armed within the slot it already sits in (a heartbeat pushed
		 * back by a few ms, typically): it stays where it is. Moving it
		 * would write its two neighbours, other owners' memory, for nothing.
		 */
		if (slot_for(w, expires_ms) == t->level) {
			t->expires_ms = expires_ms;
			return;
		}
		unlink_timer(w, t);
	} else {
		w->pending++;
	}
	t->expires_ms = expires_ms;
	link_timer(w, t);
}

void disp_wheel_cancel(struct disp_wheel *w, struct disp_timer *t)
{
	if (!disp_timer_pending(t))
		return;
	unlink_timer(w, t);
	w->pending--;
}

/*
 * Fire every timer in level-0 slot `idx`. The slot is spliced off first so
 * fire() may add and cancel freely; timers it adds that are already due land
 * in this same slot (it is now & 255) and are taken in the next round.
 */
static uint32_t fire_slot(struct disp_wheel *w, unsigned int idx, disp_timer_fn *fire, void *ctx)
{
	struct disp_timer due;
	uint32_t n = 0;

	while (w->slots[0][idx].next != &w->slots[0][idx]) {
		splice_slot(w, idx, &due);
		while (due.next != &due) {
			struct disp_timer *t = due.next;

			unlink_timer(w, t);
			w->pending--;
			n++;
			fire(ctx, t);
		}
	}
	return n;
}

/* Re-file every timer of a due higher-level slot relative to w->now_ms. */
static void cascade(struct disp_wheel *w, unsigned int flat)
{
	struct disp_timer moving;

	splice_slot(w, flat, &moving);
	while (moving.next != &moving) {
		struct disp_timer *t = moving.next;

		t->prev->next = t->next;
		t->next->prev = t->prev;
		link_timer(w, t);
	}
}

/* The earliest event time after w->now_ms, or UINT64_MAX if the wheel is empty. */
static uint64_t next_event(const struct disp_wheel *w)
{
	uint64_t best = UINT64_MAX;

	for (unsigned int lvl = 0; lvl < DISP_WHEEL_LEVELS; lvl++) {
		unsigned int shift = LVL_BITS * lvl;
		uint64_t base = (w->now_ms >> shift) + 1;
		int d = next_occupied(w, lvl, (unsigned int)(base & LVL_MASK));
		uint64_t at;

		if (d < 0)
			continue;
		at = (base + (uint64_t)d) << shift;
		if (at < best)
			best = at;
	}
	return best;
}

uint32_t disp_wheel_advance(struct disp_wheel *w, uint64_t now_ms, disp_timer_fn *fire, void *ctx)
{
	uint32_t n;

	if (now_ms < w->now_ms)
		return 0;
	/* The same millisecond again with nothing due: every call starts here. */
	if (now_ms == w->now_ms &&
	    w->slots[0][now_ms & LVL_MASK].next == &w->slots[0][now_ms & LVL_MASK])
		return 0;
	/* timers added when already due */
	n = fire_slot(w, (unsigned int)(w->now_ms & LVL_MASK), fire, ctx);
	for (;;) {
		uint64_t at = next_event(w);

		if (at > now_ms)
			break;
		/* fire() sees the wheel's time as the time being fired */
		w->now_ms = at;
		for (unsigned int lvl = DISP_WHEEL_LEVELS - 1; lvl > 0; lvl--) {
			unsigned int shift = LVL_BITS * lvl;
			unsigned int flat =
			        lvl << LVL_BITS | (unsigned int)((at >> shift) & LVL_MASK);

			if ((at & ((1ull << shift) - 1)) == 0)
				cascade(w, flat);
		}
		n += fire_slot(w, (unsigned int)(at & LVL_MASK), fire, ctx);
	}
	w->now_ms = now_ms;
	return n;
}

/* ---- MPSC ring ------------------------------------------------------------ */

/*
 * Dmitry Vyukov's bounded queue: every cell carries a sequence number that
 * says whose turn it is. For position pos (mod 2^32) the cell at pos & mask
 * has seq == pos when free for the producer of pos, pos + 1 when that
 * producer has written it, and pos + capacity once the consumer has taken it
 * (free for the producer of pos + capacity). Producers claim a position with a
 * CAS on tail; only cell sequences carry the data between threads, so tail
 * and head need no ordering of their own. Positions wrap at 2^32; a producer
 * would have to stall across exactly 2^32 pushes between reading tail and its
 * CAS for the claim to be wrong.
 */
struct disp_ring_cell {
	_Atomic uint32_t seq; /* whose turn, see above */
	uint32_t value;       /* written by the producer that claimed it */
};

struct disp_ring {
	alignas(64) uint32_t mask;         /* capacity - 1, read-only after init */
	alignas(64) _Atomic uint32_t tail; /* next position to claim (producers) */
	alignas(64) _Atomic uint32_t head; /* next position to take (the consumer) */
	alignas(64) struct disp_ring_cell cells[];
};

#define RING_MAX_CAPACITY (1u << 30) /* sequence differences must fit int32_t */

static bool ring_capacity_ok(uint32_t capacity)
{
	return capacity >= 2 && capacity <= RING_MAX_CAPACITY && (capacity & (capacity - 1)) == 0;
}

size_t disp_ring_size(uint32_t capacity)
{
	size_t sz;

	if (!ring_capacity_ok(capacity))
		return 0;
	sz = sizeof(struct disp_ring) + (size_t)capacity * sizeof(struct disp_ring_cell);
	/* a multiple of the alignment, so rings can be laid out back to back */
	return (sz + 63) & ~(size_t)63;
}

struct disp_ring *disp_ring_init(void *mem, uint32_t capacity)
{
	struct disp_ring *r = mem;

	if (!mem || ((uintptr_t)mem & 63) || !ring_capacity_ok(capacity)) {
		errno = EINVAL;
		return NULL;
	}
	memset(r, 0, sizeof(*r));
	r->mask = capacity - 1;
	for (uint32_t i = 0; i < capacity; i++) {
		atomic_init(&r->cells[i].seq, i);
		r->cells[i].value = 0;
	}
	atomic_init(&r->tail, 0);
	atomic_init(&r->head, 0);
	return r;
}

int disp_ring_push(struct disp_ring *r, uint32_t value)
{
	uint32_t pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
	struct disp_ring_cell *c;

	for (;;) {
		uint32_t seq;
		int32_t dif;

		c = &r->cells[pos & r->mask];
		/*
		 * P1 acquire: pairs with C2 (the consumer's release of this cell),
		 * so the consumer's read of the old value happens before our write.
		 */
		seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		dif = (int32_t)(seq - pos);
		if (dif == 0) {
			/* relaxed: the claim orders nothing, the cell's seq does */
			if (atomic_compare_exchange_weak_explicit(&r->tail, &pos, pos + 1,
			                                          memory_order_relaxed,
			                                          memory_order_relaxed))
				break;
			/* pos was reloaded by the failed CAS */
		} else if (dif < 0) {
			/* the cell still holds the value of pos - capacity: full */
			return -ENOBUFS;
		} else {
			/* another producer claimed pos: catch up */
			pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
		}
	}
	c->value = value;
	/* P2 release: pairs with C1, publishes value to the consumer */
	atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
	return 0;
}

int disp_ring_pop(struct disp_ring *r, uint32_t *value)
{
	/* relaxed: only this thread writes head */
	uint32_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
	struct disp_ring_cell *c = &r->cells[pos & r->mask];
	/* C1 acquire: pairs with P2, makes the producer's value visible */
	uint32_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);

	if (seq != pos + 1)
		return -EAGAIN; /* empty, or the producer of pos is still writing */
	*value = c->value;
	/* C2 release: pairs with P1, hands the cell to the producer of pos + capacity */
	atomic_store_explicit(&c->seq, pos + r->mask + 1, memory_order_release);
	/* relaxed: head is only read for disp_ring_count */
	atomic_store_explicit(&r->head, pos + 1, memory_order_relaxed);
	return 0;
}

uint32_t disp_ring_count(const struct disp_ring *r)
{
	/* head first: a later tail can only make the difference larger, never negative */
	uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t n = tail - head;

	return n > r->mask + 1 ? r->mask + 1 : n;
}
