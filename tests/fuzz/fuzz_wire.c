/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for wire_decode: any bytes, never a crash; whatever decodes
 * re-encodes (wire_encode_plain) into bytes that decode to the same frame,
 * and re-encoding that gives the very same bytes.
 *
 * Built with -DFUZZ_REPLAY_MAIN it is a plain program: it runs the target on
 * the files given as arguments (or the files in a directory given), then on
 * deterministic pseudo-random inputs and mutations of valid packets built
 * below. SURGE_SEED sets the seed, FUZZ_ITERATIONS the count.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define FUZZ_ARENA_SIZE (64u * 1024u)
/* re-encoding can grow a frame (a 5-byte negative enum is re-packed in 10 bytes) */
#define FUZZ_REENC_SIZE (2u * FUZZ_ARENA_SIZE + 64u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static _Alignas(16) uint8_t arena_mem[FUZZ_ARENA_SIZE];
static _Alignas(16) uint8_t arena2_mem[4u * FUZZ_ARENA_SIZE];
static uint8_t reenc[FUZZ_REENC_SIZE];
static uint8_t reenc2[FUZZ_REENC_SIZE];
static enum wire_drop_reason last_reason; /* for the replay's statistics */

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_wire: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_arena arena, arena2;
	Surge__V1__Packet *pkt, *pkt2;
	Surge__V1__Frame *frame, *frame2;
	enum wire_drop_reason reason;
	size_t flen;
	int rc, n, n2;

	wire_arena_init(&arena, arena_mem, sizeof(arena_mem));
	rc = wire_decode(&arena, data, size, &pkt, &frame, &reason);
	last_reason = reason;
	check(arena.used <= arena.cap, "arena overrun");
	if (rc) {
		check(rc == -EBADMSG && !pkt && !frame, "bad failure result");
		check(reason > WIRE_DROP_NONE && reason < WIRE_DROP_MAX, "bad reason");
		return 0;
	}
	check(pkt && frame && reason == WIRE_DROP_NONE, "bad success result");
	check(frame->n_msgs <= WIRE_MAX_ENVELOPES, "envelope limit not enforced");

	flen = surge__v1__frame__get_packed_size(frame);
	n = wire_encode_plain(pkt->gateway_id, frame, reenc, sizeof(reenc));
	if (flen + wire_packet_overhead(pkt->gateway_id, flen) > sizeof(reenc)) {
		check(n == -EMSGSIZE, "oversized encode not refused");
		return 0;
	}
	check(n >= 0 && (size_t)n == flen + wire_packet_overhead(pkt->gateway_id, flen),
	      "encode length");

	/* the first decode must stay intact while the second one runs */
	wire_arena_init(&arena2, arena2_mem, sizeof(arena2_mem));
	rc = wire_decode(&arena2, reenc, (size_t)n, &pkt2, &frame2, &reason);
	if (rc) {
		/* a frame whose fields are all default packs to nothing at all */
		check(flen == 0 && reason == WIRE_DROP_NO_FRAME, "re-encoded packet undecodable");
		return 0;
	}
	check(pkt2->gateway_id == pkt->gateway_id, "gateway id changed");
	check(frame2->n_msgs == frame->n_msgs, "envelope count changed");
	check(frame2->epoch == frame->epoch && frame2->seq == frame->seq &&
	              frame2->ack == frame->ack && frame2->sent_ns == frame->sent_ns,
	      "frame header changed");
	for (size_t i = 0; i < frame->n_msgs; i++)
		check(frame2->msgs[i]->body_case == frame->msgs[i]->body_case,
		      "envelope kind changed");

	/* the encoding is canonical: a second round gives the same bytes */
	n2 = wire_encode_plain(pkt2->gateway_id, frame2, reenc2, sizeof(reenc2));
	check(n2 == n && memcmp(reenc, reenc2, (size_t)n) == 0, "re-encoding not stable");
	return 0;
}

#ifdef FUZZ_REPLAY_MAIN
#include "replay.h"
#include <inttypes.h>
#include <sys/stat.h>
#include <time.h>

#define FUZZ_MAX_SEEDS 16
#define FUZZ_MAX_INPUT 4096

struct seed {
	uint8_t *bytes; /* a whole Packet */
	size_t len;
	size_t frame_off; /* where its Frame starts (0 if it has none) */
};

static struct seed seeds[FUZZ_MAX_SEEDS];
static size_t n_seeds;

static void add_seed(uint32_t gateway_id, const Surge__V1__Frame *frame)
{
	uint8_t *buf = malloc(FUZZ_MAX_INPUT);
	int n;

	check(buf != NULL && n_seeds < FUZZ_MAX_SEEDS, "seed table");
	n = wire_encode_plain(gateway_id, frame, buf, FUZZ_MAX_INPUT);
	check(n > 0, "seed encode");
	seeds[n_seeds].bytes = buf;
	seeds[n_seeds].len = (size_t)n;
	seeds[n_seeds].frame_off = (size_t)n - surge__v1__frame__get_packed_size(frame);
	n_seeds++;
}

static void add_raw_seed(const Surge__V1__Packet *pkt)
{
	size_t n = surge__v1__packet__get_packed_size(pkt);
	uint8_t *buf = malloc(n ? n : 1);

	check(buf != NULL && n_seeds < FUZZ_MAX_SEEDS, "seed table");
	surge__v1__packet__pack(pkt, buf);
	seeds[n_seeds].bytes = buf;
	seeds[n_seeds].len = n;
	seeds[n_seeds].frame_off = 0;
	n_seeds++;
}

/* Valid packets covering the nested and repeated parts of the contract. */
static void build_seeds(void)
{
	Surge__V1__SessionOpen open = SURGE__V1__SESSION_OPEN__INIT;
	Surge__V1__CustomerMessage cmsg = SURGE__V1__CUSTOMER_MESSAGE__INIT;
	Surge__V1__SkillLevel skill = SURGE__V1__SKILL_LEVEL__INIT, *skills[2] = {&skill, &skill};
	Surge__V1__AgentLogin login = SURGE__V1__AGENT_LOGIN__INIT;
	Surge__V1__PastSession past = SURGE__V1__PAST_SESSION__INIT,
	                       *pasts[3] = {&past, &past, &past};
	Surge__V1__Deliver dlv = SURGE__V1__DELIVER__INIT, *dlvs[2] = {&dlv, &dlv};
	Surge__V1__Assigned asg = SURGE__V1__ASSIGNED__INIT;
	Surge__V1__HistoryReply hrep = SURGE__V1__HISTORY_REPLY__INIT;
	Surge__V1__SessionEnd end = SURGE__V1__SESSION_END__INIT;
	Surge__V1__Error err = SURGE__V1__ERROR__INIT;
	Surge__V1__Envelope env[8], *envp[WIRE_MAX_ENVELOPES];
	Surge__V1__Frame frame = SURGE__V1__FRAME__INIT;
	Surge__V1__Packet sealed = SURGE__V1__PACKET__INIT;
	uint8_t nonce[12] = {1}, ct[40] = {2};
	size_t i;

	open.open_ref = 1;
	open.customer_id = "cust-1";
	open.skill = "会员问题";
	open.channel = SURGE__V1__CHANNEL__APP;
	open.question = "where is my parcel";
	open.bot_transcript = "bot: hi";
	cmsg.session_id = 7;
	cmsg.msg_id = 8;
	cmsg.text = "人工客服";
	skill.skill = "refunds";
	skill.level = 3;
	login.agent_id = "agent-1";
	login.n_skills = 2;
	login.skills = skills;
	login.max_sessions = 5;
	past.session_id = 3;
	past.skill = "refunds";
	past.rating = SURGE__V1__RATING__SATISFIED;
	past.closed = SURGE__V1__CLOSE_REASON__AGENT_CLOSED;
	dlv.session_id = 4;
	dlv.msg_id = 5;
	dlv.sender = SURGE__V1__SIDE__CUSTOMER;
	dlv.text = "hello";
	asg.session_id = 4;
	asg.agent_id = "agent-1";
	asg.n_history = 3;
	asg.history = pasts;
	asg.n_backlog = 2;
	asg.backlog = dlvs;
	asg.transferred = 1;
	hrep.agent_id = "agent-1";
	hrep.n_messages = 2;
	hrep.messages = dlvs;
	end.session_id = 4;
	end.rating = SURGE__V1__RATING__UNSATISFIED;
	end.complaint = 1;
	err.code = SURGE__V1__ERROR_CODE__MALFORMED;
	err.detail = "x";

	for (i = 0; i < 8; i++)
		surge__v1__envelope__init(&env[i]);
	env[0].body_case = SURGE__V1__ENVELOPE__BODY_SESSION_OPEN;
	env[0].session_open = &open;
	env[1].body_case = SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE;
	env[1].customer_message = &cmsg;
	env[2].body_case = SURGE__V1__ENVELOPE__BODY_AGENT_LOGIN;
	env[2].agent_login = &login;
	env[3].body_case = SURGE__V1__ENVELOPE__BODY_ASSIGNED;
	env[3].assigned = &asg;
	env[4].body_case = SURGE__V1__ENVELOPE__BODY_HISTORY_REPLY;
	env[4].history_reply = &hrep;
	env[5].body_case = SURGE__V1__ENVELOPE__BODY_SESSION_END;
	env[5].session_end = &end;
	env[6].body_case = SURGE__V1__ENVELOPE__BODY_ERROR;
	env[6].error = &err;
	/* env[7] stays empty */
	for (i = 0; i < 8; i++)
		envp[i] = &env[i];

	frame.epoch = 1700000000;
	frame.seq = 12;
	frame.ack = 11;
	frame.sent_ns = 123456789;
	frame.msgs = envp;
	for (i = 1; i <= 8; i++) {
		frame.n_msgs = i;
		add_seed((uint32_t)i * 131, &frame);
	}
	/* a full frame of small envelopes, right at the limit */
	for (i = 0; i < WIRE_MAX_ENVELOPES; i++)
		envp[i] = &env[1 + i % 2];
	frame.n_msgs = WIRE_MAX_ENVELOPES;
	add_seed(1, &frame);
	/* ack-only */
	frame.n_msgs = 0;
	frame.seq = 0;
	add_seed(0, &frame);

	sealed.gateway_id = 9;
	sealed.nonce.data = nonce;
	sealed.nonce.len = sizeof(nonce);
	sealed.sealed.data = ct;
	sealed.sealed.len = sizeof(ct);
	sealed.key_id = 1;
	add_raw_seed(&sealed);
}

static size_t mutate(uint8_t *buf, size_t len)
{
	size_t k, rounds = 1 + rng_below(4);

	for (k = 0; k < rounds; k++) {
		switch (rng_below(7)) {
		case 0: /* bit flips */
		case 1:
			if (len) {
				size_t flips = 1 + rng_below(8);

				while (flips--)
					buf[rng_below(len)] ^= (uint8_t)(1u << rng_below(8));
			}
			break;
		case 2: /* truncation */
			len = rng_below(len + 1);
			break;
		case 3: { /* splice: a piece of another seed over or after a point */
			const struct seed *o = &seeds[rng_below(n_seeds)];
			size_t at = rng_below(len + 1), from = rng_below(o->len + 1);
			size_t n = rng_below(o->len - from + 1);

			if (at + n > FUZZ_MAX_INPUT)
				n = FUZZ_MAX_INPUT - at;
			memcpy(buf + at, o->bytes + from, n);
			if (at + n > len)
				len = at + n;
			break;
		}
		case 4: /* interesting byte values */
			if (len) {
				static const uint8_t vals[] = {0x00, 0x01, 0x7f, 0x80,
				                               0xff, 0x12, 0x22};

				buf[rng_below(len)] = vals[rng_below(sizeof(vals))];
			}
			break;
		case 5: /* delete a range */
			if (len) {
				size_t at = rng_below(len), n = 1 + rng_below(len - at);

				memmove(buf + at, buf + at + n, len - at - n);
				len -= n;
			}
			break;
		default: /* duplicate a range (grows repeated fields) */
			if (len && len < FUZZ_MAX_INPUT) {
				size_t at = rng_below(len), n = 1 + rng_below(len - at);

				if (len + n > FUZZ_MAX_INPUT)
					n = FUZZ_MAX_INPUT - len;
				memmove(buf + at + n, buf + at, len - at);
				len += n;
			}
			break;
		}
	}
	return len;
}

/* Write a Packet header (gateway_id, frame tag and length) for a frame of flen bytes. */
static size_t wrap_frame(uint8_t *out, uint32_t gateway_id, size_t flen)
{
	size_t n = 0;
	uint64_t v;

	out[n++] = 0x08;
	for (v = gateway_id; v >= 0x80; v >>= 7)
		out[n++] = (uint8_t)(v | 0x80);
	out[n++] = (uint8_t)v;
	out[n++] = 0x12;
	for (v = flen; v >= 0x80; v >>= 7)
		out[n++] = (uint8_t)(v | 0x80);
	out[n++] = (uint8_t)v;
	return n;
}

int main(int argc, char **argv)
{
	const char *env = getenv("SURGE_SEED"), *iters_env = getenv("FUZZ_ITERATIONS");
	uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	unsigned long iters = iters_env && *iters_env ? strtoul(iters_env, NULL, 0) : 200000;
	static uint8_t buf[FUZZ_MAX_INPUT];
	unsigned long outcomes[WIRE_DROP_MAX] = {0};
	unsigned long i;
	int rc = 0, files = 0;
	size_t k;

	for (i = 1; i < (unsigned long)argc; i++, files++)
		rc |= replay_path(argv[i]);

	printf("fuzz_wire: seed %" PRIu64 " (set SURGE_SEED to replay), %lu iterations\n", seed,
	       iters);
	fflush(stdout);
	rng_state = seed;
	build_seeds();
	for (k = 0; k < n_seeds; k++)
		LLVMFuzzerTestOneInput(seeds[k].bytes, seeds[k].len);
	for (i = 0; i < iters; i++) {
		size_t len;

		if (i % 8 == 0) {
			/* plain random bytes, mostly short */
			len = rng_below(i % 64 == 0 ? FUZZ_MAX_INPUT : 256);
			for (k = 0; k < len; k++)
				buf[k] = (uint8_t)rng_next();
		} else if (i % 2) {
			const struct seed *s = &seeds[rng_below(n_seeds)];

			memcpy(buf, s->bytes, s->len);
			len = mutate(buf, s->len);
		} else {
			/* mutate the Frame only, inside a well-formed Packet: reaches the frame
			 * decoder */
			const struct seed *s = &seeds[rng_below(n_seeds)];
			static uint8_t fbuf[FUZZ_MAX_INPUT];
			size_t flen = s->len - s->frame_off, hdr;

			memcpy(fbuf, s->bytes + s->frame_off, flen);
			flen = mutate(fbuf, flen);
			hdr = wrap_frame(buf, (uint32_t)rng_next(), flen);
			len = hdr + flen <= FUZZ_MAX_INPUT ? hdr + flen : FUZZ_MAX_INPUT;
			memcpy(buf + hdr, fbuf, len - hdr);
		}
		/* an exact-size heap copy, so ASan catches reads past the end */
		{
			uint8_t *p = malloc(len ? len : 1);

			check(p != NULL, "out of memory");
			memcpy(p, buf, len);
			LLVMFuzzerTestOneInput(p, len);
			outcomes[last_reason]++;
			free(p);
		}
	}
	for (k = 0; k < n_seeds; k++)
		free(seeds[k].bytes);
	printf("fuzz_wire: %lu inputs, %d files, ok; outcomes:", iters + n_seeds, files);
	for (k = 0; k < WIRE_DROP_MAX; k++)
		if (outcomes[k])
			printf(" %s=%lu",
			       k ? wire_drop_reason_name((enum wire_drop_reason)k) : "decoded",
			       outcomes[k]);
	printf("\n");
	return rc ? 1 : 0;
}
#endif /* FUZZ_REPLAY_MAIN */
