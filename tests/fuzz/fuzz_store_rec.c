/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the store's on-disk formats: arbitrary bytes as a run of
 * records (store_rec_check, store_event_decode, then store_state_apply of
 * what decodes), as an event payload of each type, and as a segment header.
 * A payload that decodes must encode back to the same bytes.
 *
 * Built with -DFUZZ_REPLAY_MAIN it is a plain program: it runs the target on
 * the files given as arguments (or the files in a directory given), then on
 * deterministic pseudo-random inputs and mutations of valid records, half of
 * them with the CRC fixed up so the payload decoder is reached. SURGE_SEED
 * sets the seed, FUZZ_ITERATIONS the count.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pvt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STATE_INPUTS 2000u /* inputs applied to one state before a fresh one */

static struct store_state *fz_state;
static unsigned fz_inputs;
static uint8_t reenc[STORE_EVENT_MAX];
static uint8_t seg_block[STORE_SEG_HDR];
static unsigned long fz_valid, fz_decoded; /* for the replay's statistics */

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_store_rec: %s\n", what);
		abort();
	}
}

static int drop_event(void *ctx, const struct store_event *ev)
{
	(void)ctx;
	check(store_event_size(ev) <= STORE_EVENT_MAX, "checkpoint event too large");
	return 0;
}

/* A payload that decodes encodes back to itself. */
static void roundtrip(const uint8_t *p, size_t n, uint16_t type)
{
	struct store_event ev;

	if (store_event_decode(p, n, type, &ev) != 0)
		return;
	fz_decoded++;
	check(store_event_size(&ev) == n, "decoded size differs");
	check(store_event_encode(&ev, reenc) == n, "re-encode failed");
	check(memcmp(reenc, p, n) == 0, "re-encode differs");
	if (fz_state) {
		ev.lsn = fz_valid + 1;
		store_state_apply(fz_state, &ev);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_seg_hdr sh;
	struct store_rec_hdr h;
	size_t off = 0;
	uint64_t want = 0;

	if (!fz_state || ++fz_inputs % STATE_INPUTS == 0) {
		if (fz_state)
			check(store_state_checkpoint(fz_state, 1, drop_event, NULL) == 0,
			      "checkpoint failed");
		store_state_destroy(fz_state);
		fz_state = store_state_create(64, 8);
		check(fz_state != NULL, "out of memory");
	}

	/* A run of records, as recovery reads a segment. */
	while (off < size) {
		int rc = store_rec_check(data + off, size - off, want, &h);

		if (rc == -ENODATA || rc != 0) {
			check(rc == -ENODATA || rc == -EBADMSG, "unexpected check result");
			break;
		}
		check(store_rec_span(h.len) <= size - off, "span beyond input");
		check(want == 0 || h.lsn == want, "wrong lsn accepted");
		fz_valid++;
		if (!(h.flags & STORE_RF_SEALED) && h.type != STORE_REC_SCRUBBED)
			roundtrip(data + off + STORE_REC_HDR, h.len, h.type);
		want = h.lsn + 1;
		off += store_rec_span(h.len);
	}

	/* The whole input as a payload of each type. */
	if (size <= STORE_EVENT_MAX + 1) {
		for (uint16_t t = 0; t <= STORE_REC_MAX; t++) {
			struct store_event ev;
			int rc = store_event_decode(data, size, t, &ev);

			check(rc == 0 || rc == -EBADMSG, "unexpected decode result");
			if (rc == 0 && t == (size ? data[0] % STORE_REC_MAX : 0))
				roundtrip(data, size, t);
		}
	}

	/* As a segment header (zero-padded to a block). */
	memset(seg_block, 0, sizeof(seg_block));
	memcpy(seg_block, data, size < sizeof(seg_block) ? size : sizeof(seg_block));
	if (store_seg_hdr_decode(seg_block, &sh) == 0) {
		check(sh.first_lsn != 0 && sh.version == STORE_SEG_VERSION, "bad header accepted");
		store_seg_hdr_encode(&sh, seg_block);
		check(store_seg_hdr_decode(seg_block, &sh) == 0, "header round trip");
	}
	return 0;
}

#ifdef FUZZ_REPLAY_MAIN
#include "replay.h"
#include <inttypes.h>
#include <time.h>

#define FUZZ_MAX_INPUT 8192
#define MAX_SEEDS      24

struct seed {
	uint8_t bytes[FUZZ_MAX_INPUT];
	size_t len;
};

static struct seed seeds[MAX_SEEDS];
static size_t n_seeds;

static struct store_str str_of(const char *s)
{
	return (struct store_str){s, (uint32_t)strlen(s)};
}

/* Append ev as record lsn to seed s. */
static void seed_add(struct seed *s, const struct store_event *ev, uint64_t lsn)
{
	size_t n = store_event_size(ev);

	check(s->len + store_rec_span((uint32_t)n) <= FUZZ_MAX_INPUT, "seed too large");
	check(store_event_encode(ev, s->bytes + s->len + STORE_REC_HDR) == n, "seed encode");
	store_rec_finish(s->bytes + s->len, ev->type, 0, lsn, (uint32_t)n);
	s->len += store_rec_span((uint32_t)n);
}

static void build_seeds(void)
{
	struct store_seg_hdr sh = {.version = STORE_SEG_VERSION,
	                           .hdr_bytes = STORE_SEG_HDR,
	                           .segment_bytes = 1u << 20,
	                           .first_lsn = 1,
	                           .flags = STORE_SF_CKPT};
	struct seed *s;

	for (uint16_t t = STORE_REC_OPENED; t < STORE_REC_MAX; t++) {
		struct store_event ev = {.type = t,
		                         .session_id = 1 + t % 3,
		                         .msg_id = t,
		                         .ts_ms = 1700000000000ull,
		                         .ref = 5,
		                         .gw = 2,
		                         .customer = str_of("cust-1"),
		                         .skill = str_of("会员问题"),
		                         .agent = str_of("agent-1"),
		                         .text = str_of("where is my parcel"),
		                         .extra = str_of(t % 2 ? "" : "att://1")};

		s = &seeds[n_seeds++];
		seed_add(s, &ev, 1);
	}
	/* a session's life in one run of records */
	s = &seeds[n_seeds++];
	{
		static const uint16_t life[] = {STORE_REC_OPENED,   STORE_REC_QUEUED,
		                                STORE_REC_ASSIGNED, STORE_REC_MSG_IN,
		                                STORE_REC_MSG_OUT,  STORE_REC_TRANSFERRED,
		                                STORE_REC_QUEUED,   STORE_REC_ENDED,
		                                STORE_REC_NOTES,    STORE_REC_ERASE};

		for (unsigned i = 0; i < sizeof(life) / sizeof(life[0]); i++) {
			struct store_event ev = {.type = life[i],
			                         .session_id = 9,
			                         .customer = str_of("c9"),
			                         .skill = str_of("refunds"),
			                         .agent = str_of("a"),
			                         .text = str_of("text")};

			seed_add(s, &ev, 10 + i);
		}
	}
	/* a segment header */
	s = &seeds[n_seeds++];
	memcpy(sh.magic, STORE_SEG_MAGIC, 8);
	store_seg_hdr_encode(&sh, s->bytes);
	s->len = 64;
	check(n_seeds <= MAX_SEEDS, "seed table");
}

static size_t mutate(uint8_t *buf, size_t len)
{
	size_t k, rounds = 1 + rng_below(3);

	for (k = 0; k < rounds; k++) {
		switch (rng_below(6)) {
		case 0: /* bit flips */
		case 1:
			if (len) {
				size_t flips = 1 + rng_below(4);

				while (flips--)
					buf[rng_below(len)] ^= (uint8_t)(1u << rng_below(8));
			}
			break;
		case 2: /* truncation */
			len = rng_below(len + 1);
			break;
		case 3: /* interesting values, often in the length fields */
			if (len) {
				static const uint8_t vals[] = {0x00, 0x01, 0x3c, 0x40, 0x7f,
				                               0x80, 0xff, 0x10, 0x11};
				size_t at = rng_below(2) && len > 60 + STORE_REC_HDR
				                    ? STORE_REC_HDR + 44 + rng_below(16)
				                    : rng_below(len);

				buf[at] = vals[rng_below(sizeof(vals))];
			}
			break;
		case 4: /* splice another seed */
		{
			const struct seed *o = &seeds[rng_below(n_seeds)];
			size_t at = rng_below(len + 1), n = rng_below(o->len + 1);

			if (at + n > FUZZ_MAX_INPUT)
				n = FUZZ_MAX_INPUT - at;
			memcpy(buf + at, o->bytes, n);
			if (at + n > len)
				len = at + n;
			break;
		}
		default: /* random bytes appended */
		{
			size_t n = rng_below(64);

			if (len + n > FUZZ_MAX_INPUT)
				n = FUZZ_MAX_INPUT - len;
			for (size_t i = 0; i < n; i++)
				buf[len + i] = (uint8_t)rng_next();
			len += n;
			break;
		}
		}
	}
	return len;
}

/* Make the first record's header and CRC valid again around a mutated payload. */
static void refinish(uint8_t *buf, size_t len)
{
	uint32_t plen;
	uint16_t type;

	if (len < STORE_REC_HDR)
		return;
	memcpy(&plen, buf, 4);
	memcpy(&type, buf + 4, 2);
	if (store_rec_span(plen) > len)
		plen = (uint32_t)(len - STORE_REC_HDR) & ~7u;
	if (type == 0 || type >= STORE_REC_MAX)
		type = (uint16_t)(1 + rng_below(STORE_REC_MAX - 1));
	store_rec_finish(buf, type, 0, 1 + rng_below(3), plen);
}

int main(int argc, char **argv)
{
	const char *env = getenv("SURGE_SEED"), *iters_env = getenv("FUZZ_ITERATIONS");
	uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	unsigned long iters = iters_env && *iters_env ? strtoul(iters_env, NULL, 0) : 300000;
	static uint8_t buf[FUZZ_MAX_INPUT + 64];
	int rc = 0, files = 0;

	for (int i = 1; i < argc; i++, files++)
		rc |= replay_path(argv[i]);
	printf("fuzz_store_rec: seed %" PRIu64 " (set SURGE_SEED to replay), %lu iterations\n",
	       seed, iters);
	fflush(stdout);
	rng_state = seed;
	build_seeds();
	for (size_t k = 0; k < n_seeds; k++)
		LLVMFuzzerTestOneInput(seeds[k].bytes, seeds[k].len);
	for (unsigned long i = 0; i < iters; i++) {
		size_t len;
		uint8_t *p;

		if (i % 16 == 0) {
			len = rng_below(i % 256 == 0 ? FUZZ_MAX_INPUT : 200);
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)rng_next();
		} else {
			const struct seed *s = &seeds[rng_below(n_seeds)];

			memcpy(buf, s->bytes, s->len);
			len = mutate(buf, s->len);
			if (i % 2)
				refinish(buf, len);
		}
		/* an exact-size heap copy, so ASan catches reads past the end */
		p = malloc(len ? len : 1);
		check(p != NULL, "out of memory");
		memcpy(p, buf, len);
		LLVMFuzzerTestOneInput(p, len);
		free(p);
	}
	store_state_destroy(fz_state);
	printf("fuzz_store_rec: %lu inputs, %d files, ok; %lu valid records, %lu payloads "
	       "decoded\n",
	       iters + n_seeds, files, fz_valid, fz_decoded);
	return rc ? 1 : 0;
}
#endif /* FUZZ_REPLAY_MAIN */
