/* SPDX-License-Identifier: MIT */
/*
 * bench: log-bucketed latency histogram (the layout of HdrHistogram with a
 * power-of-two base): bucket = exponent and the top bits of the mantissa.
 */
#include <string.h>

#include "bench.h"

#define SUB_COUNT  (1u << BENCH_HIST_SUB_BITS) /* values below are exact */
#define HALF_COUNT (SUB_COUNT / 2)             /* buckets per power of two above */
#define HIST_LIMIT (UINT64_C(1) << BENCH_HIST_MAX_EXP)

static unsigned bucket_of(uint64_t v)
{
	unsigned e, shift;

	if (v < SUB_COUNT)
		return (unsigned)v;
	if (v >= HIST_LIMIT)
		return BENCH_HIST_BUCKETS - 1;
	e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
	shift = e - (BENCH_HIST_SUB_BITS - 1);
	/* v >> shift is in [HALF_COUNT, SUB_COUNT) */
	return SUB_COUNT + (e - BENCH_HIST_SUB_BITS) * HALF_COUNT +
	       (unsigned)((v >> shift) - HALF_COUNT);
}

/* The largest value that falls in bucket b. */
static uint64_t bucket_high(unsigned b)
{
	unsigned e, shift;
	uint64_t mant;

	if (b < SUB_COUNT)
		return b;
	e = BENCH_HIST_SUB_BITS + (b - SUB_COUNT) / HALF_COUNT;
	shift = e - (BENCH_HIST_SUB_BITS - 1);
	mant = HALF_COUNT + (b - SUB_COUNT) % HALF_COUNT;
	return ((mant + 1) << shift) - 1;
}

void bench_hist_init(struct bench_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void bench_hist_record(struct bench_hist *h, uint64_t value)
{
	h->buckets[bucket_of(value)]++;
	h->count++;
	h->sum += (double)value;
	if (value < h->min)
		h->min = value;
	if (value > h->max)
		h->max = value;
	if (value >= HIST_LIMIT)
		h->overflow++;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
	for (unsigned b = 0; b < BENCH_HIST_BUCKETS; b++)
		dst->buckets[b] += src->buckets[b];
	dst->count += src->count;
	dst->sum += src->sum;
	dst->overflow += src->overflow;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t bench_hist_percentile(const struct bench_hist *h, double p)
{
	uint64_t rank, seen = 0, v;
	double r;

	if (h->count == 0)
		return 0;
	if (!(p > 0)) /* also NaN */
		p = 0;
	if (p > 100)
		p = 100;
	/* rank of the value (1-based): the smallest with at least p% at or below it */
	r = p / 100.0 * (double)h->count;
	rank = (uint64_t)r;
	if ((double)rank < r)
		rank++;
	if (rank == 0)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (unsigned b = 0; b < BENCH_HIST_BUCKETS; b++) {
		seen += h->buckets[b];
		if (seen >= rank) {
			v = b == BENCH_HIST_BUCKETS - 1 ? h->max : bucket_high(b);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max;
}

double bench_hist_mean(const struct bench_hist *h)
{
	return h->count ? h->sum / (double)h->count : 0.0;
}

uint64_t bench_hist_max(const struct bench_hist *h)
{
	return h->max;
}

uint64_t bench_hist_count(const struct bench_hist *h)
{
	return h->count;
}
