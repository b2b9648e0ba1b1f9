/* SPDX-License-Identifier: MIT */
/*
 * An agent's figures as bytes, for the session store: the counters of
 * struct disp_agent_figures (not its gauges: state, load, capacity and the
 * ratios are recomputed), as a version byte then unsigned LEB128 numbers in
 * a fixed order. Most counters and histogram buckets are small or zero, so
 * a record is mostly one byte a number: about 80 bytes, not 560.
 */
#include <errno.h>
#include <string.h>

#include "dispatch.h"

#define FIG_VERSION 1u

/* The counters in their order on disk; never reordered, only appended to. */
#define FIG_FIELDS(X)                                                                              \
	X(assigned)                                                                                \
	X(served)                                                                                  \
	X(transferred)                                                                             \
	X(complaints)                                                                              \
	X(online_ms)                                                                               \
	X(serving_ms)                                                                              \
	X(ready_idle_ms)                                                                           \
	X(break_ms)                                                                                \
	X(agent_closed)

#define FIG_ARRAYS(X)                                                                              \
	X(ratings)                                                                                 \
	X(first_response_ms)                                                                       \
	X(handling_ms)                                                                             \
	X(sla_alerts)

struct fig_writer {
	uint8_t *p;
	size_t cap, n;
	bool overflow;
};

static void put(struct fig_writer *w, uint64_t v)
{
	do {
		uint8_t b = (uint8_t)(v & 0x7f);

		v >>= 7;
		if (v)
			b |= 0x80;
		if (w->n < w->cap)
			w->p[w->n] = b;
		else
			w->overflow = true;
		w->n++;
	} while (v);
}

size_t disp_agent_figures_pack(const struct disp_agent_figures *f, uint8_t *out, size_t cap)
{
	struct fig_writer w = {.p = out, .cap = cap};

	put(&w, FIG_VERSION);
#define PUT_ONE(name) put(&w, f->name);
#define PUT_ARRAY(name)                                                                            \
	for (size_t i = 0; i < sizeof(f->name) / sizeof(f->name[0]); i++)                          \
		put(&w, f->name[i]);
	FIG_FIELDS(PUT_ONE)
	FIG_ARRAYS(PUT_ARRAY)
#undef PUT_ONE
#undef PUT_ARRAY
	return w.overflow ? 0 : w.n;
}

struct fig_reader {
	const uint8_t *p;
	size_t n, at;
	bool bad;
};

static uint64_t get(struct fig_reader *r)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t b;

		if (r->at == r->n) {
			r->bad = true;
			return 0;
		}
		b = r->p[r->at++];
		/* The tenth byte may carry only the top bit of a 64-bit number. */
		if (shift == 63 && b > 1) {
			r->bad = true;
			return 0;
		}
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

int disp_agent_figures_unpack(const uint8_t *p, size_t n, struct disp_agent_figures *f)
{
	struct fig_reader r = {.p = p, .n = n};
	struct disp_agent_figures out;

	memset(&out, 0, sizeof(out));
	/* A later version only appends counters: what this one knows it reads. */
	if (!p || !f || get(&r) < FIG_VERSION || r.bad)
		return -EBADMSG;
#define GET_ONE(name) out.name = get(&r);
#define GET_ARRAY(name)                                                                            \
	for (size_t i = 0; i < sizeof(out.name) / sizeof(out.name[0]); i++)                        \
		out.name[i] = get(&r);
	FIG_FIELDS(GET_ONE)
	FIG_ARRAYS(GET_ARRAY)
#undef GET_ONE
#undef GET_ARRAY
	/* Bytes after the known counters: a later version's, ignored. */
	if (r.bad)
		return -EBADMSG;
	*f = out;
	return 0;
}
