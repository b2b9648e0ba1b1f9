/* SPDX-License-Identifier: MIT */
/*
 * wire: receive-side sequencing of one gateway (epoch, seq, cumulative ack,
 * duplicate window).
 *
 * The window holds one bit per seq in (ack, ack + WIRE_WINDOW], at bit
 * (seq % WIRE_WINDOW): those ranges never hold two seqs with the same bit.
 * Every bit is set once and cleared once (when the ack passes it), so a call
 * costs O(1) amortized.
 */
#include <string.h>

#include "wire.h"

#define WORD_BITS    64u
#define WINDOW_WORDS (WIRE_WINDOW / WORD_BITS)

_Static_assert(WIRE_WINDOW % WORD_BITS == 0, "window must be whole words");
_Static_assert((WIRE_WINDOW & (WIRE_WINDOW - 1)) == 0, "window must be a power of two");

static void seq_restart(struct wire_rx_seq *rx, uint64_t epoch)
{
	rx->started = true;
	rx->epoch = epoch;
	rx->ack = 0;
	memset(rx->window, 0, sizeof(rx->window));
}

/* Move the ack over the run of processed seqs that follows it, clearing their bits. */
static void seq_advance(struct wire_rx_seq *rx)
{
	for (;;) {
		uint64_t next = rx->ack + 1;
		unsigned bit = (unsigned)(next % WIRE_WINDOW);
		uint64_t *word = &rx->window[bit / WORD_BITS];
		unsigned shift = bit % WORD_BITS;
		uint64_t run = *word >> shift;
		unsigned n;

		if (!(run & 1))
			return;
		/* count the set bits from `shift` up, a whole word at a time */
		n = ~run ? (unsigned)__builtin_ctzll(~run) : WORD_BITS - shift;
		if (n > WORD_BITS - shift)
			n = WORD_BITS - shift;
		if (n == WORD_BITS)
			*word = 0;
		else
			*word &= ~(((UINT64_C(1) << n) - 1) << shift);
		rx->ack += n;
	}
}

void wire_rx_seq_resume(struct wire_rx_seq *rx, uint64_t epoch, uint64_t ack)
{
	seq_restart(rx, epoch);
	rx->ack = ack;
}

enum wire_seq_verdict wire_rx_seq_accept(struct wire_rx_seq *rx, uint64_t epoch, uint64_t seq)
{
	unsigned bit;
	uint64_t mask;

	if (!rx->started || epoch > rx->epoch)
		seq_restart(rx, epoch);
	else if (epoch < rx->epoch)
		return WIRE_SEQ_OLD_EPOCH;

	if (seq == 0)
		return WIRE_SEQ_ACK_ONLY;
	if (seq <= rx->ack)
		return rx->ack - seq < WIRE_WINDOW ? WIRE_SEQ_DUPLICATE : WIRE_SEQ_STALE;
	if (seq - rx->ack > WIRE_WINDOW)
		return WIRE_SEQ_TOO_FAR;

	bit = (unsigned)(seq % WIRE_WINDOW);
	mask = UINT64_C(1) << (bit % WORD_BITS);
	if (rx->window[bit / WORD_BITS] & mask)
		return WIRE_SEQ_DUPLICATE;
	rx->window[bit / WORD_BITS] |= mask;
	if (seq == rx->ack + 1)
		seq_advance(rx);
	return WIRE_SEQ_NEW;
}
