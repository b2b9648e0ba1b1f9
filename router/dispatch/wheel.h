/* SPDX-License-Identifier: MIT */
/*
 * Private to dispatch: a hierarchical timer wheel (O(1) add and cancel) for
 * the service-level clocks, and a bounded lock-free MPSC ring of 32-bit
 * values for the per-skill arrival rings.
 */
#ifndef SURGE_DISPATCH_WHEEL_H
#define SURGE_DISPATCH_WHEEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- timer wheel ---------------------------------------------------------- */

/*
 * A timer embedded in its owner (session or agent). The wheel links it; the
 * owner's memory must not move while it is pending. kind and owner are the
 * caller's, untouched by the wheel.
 */
struct disp_timer {
	struct disp_timer *next; /* NULL when not pending */
	struct disp_timer *prev;
	uint64_t expires_ms; /* when it fires */
	uint32_t owner;      /* caller's: e.g. a session or agent index */
	uint16_t kind;       /* caller's: what to do when it fires */
	uint16_t level;      /* wheel-private: level << 8 | slot */
};

#define DISP_WHEEL_LEVELS 4
#define DISP_WHEEL_SLOTS  256 /* per level: 1 ms, 256 ms, 65.5 s, 4.66 h per slot */

struct disp_wheel {
	uint64_t now_ms; /* the wheel's time: every timer due at or before it has fired */
	struct disp_timer slots[DISP_WHEEL_LEVELS][DISP_WHEEL_SLOTS]; /* list heads */
	uint32_t pending;                                             /* timers linked */
	uint64_t occupied[DISP_WHEEL_LEVELS][DISP_WHEEL_SLOTS / 64];  /* non-empty slots */
};

typedef void disp_timer_fn(void *ctx, struct disp_timer *t);

/* Start an empty wheel at now_ms. */
void disp_wheel_init(struct disp_wheel *w, uint64_t now_ms);

/* Make a timer not pending (for a new owner). */
void disp_timer_init(struct disp_timer *t, uint32_t owner, uint16_t kind);

/* Is it linked in a wheel? */
static inline bool disp_timer_pending(const struct disp_timer *t)
{
	return t->next != NULL;
}

/*
 * (Re)arm t to fire at expires_ms (cancelling it first if pending). A time at
 * or before the wheel's now fires on the next advance. Timers further than
 * the top level reaches are parked and re-filed as time passes. O(1).
 */
void disp_wheel_add(struct disp_wheel *w, struct disp_timer *t, uint64_t expires_ms);

/* Cancel t if pending. O(1). */
void disp_wheel_cancel(struct disp_wheel *w, struct disp_timer *t);

/*
 * Move the wheel's time to now_ms (never backwards), calling fire(ctx, t) for
 * every timer with expires_ms <= now_ms, in non-decreasing expires_ms order,
 * each unlinked before its call (fire may re-add it or add/cancel others;
 * timers it adds that are already due fire in the same call). Returns how
 * many fired. A jump of hours costs O(slots crossed + timers moved), not
 * O(milliseconds).
 */
uint32_t disp_wheel_advance(struct disp_wheel *w, uint64_t now_ms, disp_timer_fn *fire, void *ctx);

/* ---- MPSC ring ------------------------------------------------------------ */

/*
 * Bounded multi-producer single-consumer ring of uint32_t. Producers on any
 * thread, lock-free; one consumer. Capacity is a power of two.
 */
struct disp_ring;

/* Bytes a ring of `capacity` (power of two, >= 2) needs. 0 if capacity is invalid. */
size_t disp_ring_size(uint32_t capacity);

/* Initialise a ring in mem (disp_ring_size(capacity) bytes, 64-byte aligned). NULL + EINVAL. */
struct disp_ring *disp_ring_init(void *mem, uint32_t capacity);

/* Push from any thread. Returns 0, or -ENOBUFS when full. */
int disp_ring_push(struct disp_ring *r, uint32_t value);

/* Pop (the one consumer). Returns 0, or -EAGAIN when empty (or an item is being written). */
int disp_ring_pop(struct disp_ring *r, uint32_t *value);

/* Items in the ring now (approximate while producers run). */
uint32_t disp_ring_count(const struct disp_ring *r);

#endif /* SURGE_DISPATCH_WHEEL_H */
