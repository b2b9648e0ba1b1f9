/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for an agent's figures as the session store keeps them
 * (disp_agent_figures_unpack): any bytes are safe, and bytes that unpack
 * pack back to the same bytes when they are of the version written (a later
 * version's extra counters are dropped, so only a prefix must match).
 *
 * Built with -DFUZZ_REPLAY_MAIN it is a plain program: it runs the target on
 * the files given as arguments (or the files in a directory given), then on
 * deterministic pseudo-random inputs and mutations of packed figures.
 * SURGE_SEED sets the seed, FUZZ_ITERATIONS the count.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t repacked[DISP_FIGURES_PACKED_MAX];
static unsigned long fz_unpacked; /* for the replay's statistics */

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_figures: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct disp_agent_figures f;
	size_t n;

	if (disp_agent_figures_unpack(data, size, &f) != 0)
		return 0;
	fz_unpacked++;
	check(f.state == 0 && f.load == 0 && f.capacity == 0, "gauges set");
	n = disp_agent_figures_pack(&f, repacked, sizeof(repacked));
	check(n > 0 && n <= size, "repacked longer than the input");
	/* Equal but for the version byte (a later one) and non-minimal encodings. */
	if (data[0] == 1 && memcmp(repacked, data, n) == 0)
		return 0;
	{
		struct disp_agent_figures g;

		check(disp_agent_figures_unpack(repacked, n, &g) == 0, "repacked does not unpack");
		check(memcmp(&f, &g, sizeof(f)) == 0, "repacked unpacks differently");
	}
	return 0;
}

#ifdef FUZZ_REPLAY_MAIN
#include "replay.h"
#include <inttypes.h>
#include <time.h>

int main(int argc, char **argv)
{
	const char *env = getenv("SURGE_SEED"), *it = getenv("FUZZ_ITERATIONS");
	uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	unsigned long iters = it && *it ? strtoul(it, NULL, 0) : 200000;
	uint8_t buf[DISP_FIGURES_PACKED_MAX + 16];
	int rc = 0;

	for (int i = 1; i < argc; i++)
		rc |= replay_path(argv[i]);
	printf("fuzz_figures replay: seed %" PRIu64 " (SURGE_SEED replays), %lu inputs\n", seed,
	       iters);
	rng_state = seed;
	for (unsigned long k = 0; k < iters; k++) {
		size_t n;

		if (k % 2) {
			/* Valid figures of random magnitudes, then a few bytes changed or cut. */
			struct disp_agent_figures f;
			uint64_t *w = (uint64_t *)(void *)&f;

			memset(&f, 0, sizeof(f));
			for (size_t i = 0; i < sizeof(f) / sizeof(uint64_t); i++)
				w[i] = rng_below(4) ? rng_next() >> (rng_next() % 64) : 0;
			f.state = 0;
			f.load = f.capacity = 0;
			f.customers_per_hour = f.service_ratio_pct = 0;
			n = disp_agent_figures_pack(&f, buf, sizeof(buf));
			check(n > 0, "pack failed");
			{
				struct disp_agent_figures g;

				check(disp_agent_figures_unpack(buf, n, &g) == 0,
				      "round trip failed");
				/* What pack writes is exactly the counters: gauges come back zero.
				 */
				check(g.served == f.served && g.agent_closed == f.agent_closed &&
				              memcmp(g.handling_ms, f.handling_ms,
				                     sizeof(f.handling_ms)) == 0,
				      "round trip differs");
			}
			for (size_t m = rng_below(3); m > 0; m--)
				buf[rng_below(n)] ^= (uint8_t)(1u << rng_below(8));
			if (rng_below(4) == 0)
				n = rng_below(n + 1);
		} else {
			n = rng_below(sizeof(buf));
			for (size_t i = 0; i < n; i++)
				buf[i] = (uint8_t)rng_next();
		}
		LLVMFuzzerTestOneInput(buf, n);
	}
	printf("fuzz_figures replay: %lu inputs unpacked\n", fz_unpacked);
	return rc ? 1 : 0;
}
#endif /* FUZZ_REPLAY_MAIN */
