/* SPDX-License-Identifier: MIT */
/*
 * gw_random_datagrams: sends `count` random datagrams (0..1472 bytes) to the
 * router's UDP port at a bounded rate, then checks that a normal session
 * (login, open, message, answer, end) still works. The mix, a quarter each:
 *
 *   - pure random bytes;
 *   - valid Packets of unconfigured gateway ids, then mutated (bytes flipped,
 *     overwritten, inserted, cut);
 *   - valid Packets (random envelopes) of unconfigured gateway ids;
 *   - Packets of the test's own gateways whose frame is garbage.
 *
 * Nothing sent may be taken for a frame of the gateways the final session
 * uses (every datagram is decoded here first and replaced when it would be),
 * so the session's sequencing starts clean. The shell harness reads the
 * router's drop counters. Ends with "N passed, N failed"; exit 0 on success.
 *
 *   gw_random_datagrams --router IP[:PORT] [--count N] [--seed S] [--rate R]
 *                       [--customer-gw ID] [--agent-gw ID]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "itest.h"
#include "wire.h"

#define UNKNOWN_GW_MIN 1000u /* ids from here up are not configured */

enum kind { K_RANDOM, K_MUTATED, K_UNKNOWN_GW, K_GARBAGE_FRAME, K_MAX };

static const char *const kind_names[K_MAX] = {"random bytes", "mutated packets", "unknown gateway",
                                              "garbage frames"};

static uint64_t rng;
static uint32_t cgw_id, agw_id;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* ---- generating ----------------------------------------------------------- */

/* A random string (no NUL; sometimes not UTF-8) of up to max bytes. */
static char *rnd_string(char *buf, size_t max)
{
	size_t n = rnd_below(max + 1);

	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(rnd_below(4) ? ' ' + rnd_below(95) : 0x80 + rnd_below(128));
	buf[n] = '\0';
	return buf;
}

/* A frame of random (well-formed) envelopes inside a Packet from gateway gw. */
static size_t valid_packet(uint8_t *out, size_t cap, uint32_t gw)
{
	static char s[4][128];
	Surge__V1__Envelope envs[8], *ptrs[8];
	Surge__V1__SessionOpen op[8];
	Surge__V1__CustomerMessage cm[8];
	Surge__V1__AgentLogin al[8];
	Surge__V1__AgentMessage am[8];
	Surge__V1__SessionEnd se[8];
	Surge__V1__Deliver dl[8];
	Surge__V1__Frame frame = SURGE__V1__FRAME__INIT;
	size_t n = rnd_below(9);
	int len;

	for (size_t i = 0; i < n; i++) {
		Surge__V1__Envelope *e = &envs[i];

		*e = (Surge__V1__Envelope)SURGE__V1__ENVELOPE__INIT;
		switch (rnd_below(6)) {
		case 0:
			op[i] = (Surge__V1__SessionOpen)SURGE__V1__SESSION_OPEN__INIT;
			op[i].open_ref = rnd();
			op[i].customer_id = rnd_string(s[0], 20);
			op[i].skill = rnd_below(2) ? "general" : rnd_string(s[1], 10);
			op[i].question = rnd_string(s[2], 100);
			e->body_case = SURGE__V1__ENVELOPE__BODY_SESSION_OPEN;
			e->session_open = &op[i];
			break;
		case 1:
			cm[i] = (Surge__V1__CustomerMessage)SURGE__V1__CUSTOMER_MESSAGE__INIT;
			cm[i].session_id = rnd_below(100);
			cm[i].msg_id = rnd();
			cm[i].text = rnd_string(s[0], 120);
			e->body_case = SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE;
			e->customer_message = &cm[i];
			break;
		case 2:
			al[i] = (Surge__V1__AgentLogin)SURGE__V1__AGENT_LOGIN__INIT;
			al[i].agent_id = rnd_string(s[1], 20);
			al[i].max_sessions = (uint32_t)rnd_below(10);
			e->body_case = SURGE__V1__ENVELOPE__BODY_AGENT_LOGIN;
			e->agent_login = &al[i];
			break;
		case 3:
			am[i] = (Surge__V1__AgentMessage)SURGE__V1__AGENT_MESSAGE__INIT;
			am[i].session_id = rnd_below(100);
			am[i].agent_id = rnd_string(s[1], 20);
			am[i].text = rnd_string(s[3], 120);
			e->body_case = SURGE__V1__ENVELOPE__BODY_AGENT_MESSAGE;
			e->agent_message = &am[i];
			break;
		case 4:
			se[i] = (Surge__V1__SessionEnd)SURGE__V1__SESSION_END__INIT;
			se[i].session_id = rnd_below(100);
			e->body_case = SURGE__V1__ENVELOPE__BODY_SESSION_END;
			e->session_end = &se[i];
			break;
		default: /* an envelope only the router sends */
			dl[i] = (Surge__V1__Deliver)SURGE__V1__DELIVER__INIT;
			dl[i].session_id = rnd_below(100);
			dl[i].text = rnd_string(s[3], 60);
			e->body_case = SURGE__V1__ENVELOPE__BODY_DELIVER;
			e->deliver = &dl[i];
			break;
		}
		ptrs[i] = e;
	}
	frame.epoch = rnd_below(2) ? rnd() : rnd_below(1000);
	frame.seq = rnd_below(2) ? rnd_below(10) : rnd();
	frame.ack = rnd_below(2) ? 0 : rnd();
	frame.sent_ns = rnd();
	frame.msgs = ptrs;
	frame.n_msgs = n;
	while ((len = wire_encode_plain(gw, &frame, out, cap)) < 0 && frame.n_msgs > 0)
		frame.n_msgs--;
	return len > 0 ? (size_t)len : 0;
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
	unsigned rounds = 1 + (unsigned)rnd_below(8);

	for (unsigned r = 0; r < rounds; r++) {
		size_t at = len ? rnd_below(len) : 0;

		switch (rnd_below(5)) {
		case 0: /* flip a bit */
			if (len)
				buf[at] ^= (uint8_t)(1u << rnd_below(8));
			break;
		case 1: /* overwrite a byte */
			if (len)
				buf[at] = (uint8_t)rnd();
			break;
		case 2: /* cut */
			len = at;
			break;
		case 3: /* insert a few random bytes */
		{
			size_t n = 1 + rnd_below(8);

			if (len + n > cap)
				break;
			memmove(buf + at + n, buf + at, len - at);
			for (size_t i = 0; i < n; i++)
				buf[at + i] = (uint8_t)rnd();
			len += n;
			break;
		}
		default: /* a length byte pushed to its extreme */
			if (len)
				buf[at] = rnd_below(2) ? 0xff : 0x7f;
			break;
		}
	}
	return len;
}

/* Packet{gateway_id = gw, frame = bytes no Frame decoder accepts}. */
static size_t garbage_frame(uint8_t *out, size_t cap, uint32_t gw)
{
	Surge__V1__Packet p = SURGE__V1__PACKET__INIT;
	uint8_t frame[GW_MAX_DATAGRAM];
	size_t n = 1 + rnd_below(GW_MAX_DATAGRAM - 16);

	for (size_t i = 0; i < n; i++)
		frame[i] = (uint8_t)rnd();
	/* a first key of wire type 6 or 7 does not exist: the Frame cannot decode */
	frame[0] = (uint8_t)((frame[0] & 0x78) | 6u | rnd_below(2));
	p.gateway_id = gw;
	p.frame.data = frame;
	p.frame.len = n;
	if (surge__v1__packet__get_packed_size(&p) > cap)
		return 0;
	return surge__v1__packet__pack(&p, out);
}

/* Would the router take this datagram as a frame of one of our two gateways? */
static bool hits_our_gateways(const uint8_t *buf, size_t len)
{
	static uint8_t mem[256 * 1024];
	struct wire_arena arena;
	Surge__V1__Packet *packet;
	Surge__V1__Frame *frame;
	enum wire_drop_reason reason;

	wire_arena_init(&arena, mem, sizeof(mem));
	if (wire_decode(&arena, buf, len, &packet, &frame, &reason) < 0)
		return false;
	return packet->gateway_id == cgw_id || packet->gateway_id == agw_id;
}

static size_t generate(enum kind k, uint8_t *buf, size_t cap)
{
	size_t len;

	do {
		switch (k) {
		case K_RANDOM:
			len = rnd_below(cap + 1);
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rnd();
			break;
		case K_MUTATED:
			len = valid_packet(buf, cap,
			                   UNKNOWN_GW_MIN + (uint32_t)rnd_below(1u << 20));
			len = mutate(buf, len, cap);
			break;
		case K_UNKNOWN_GW:
			len = valid_packet(buf, cap,
			                   UNKNOWN_GW_MIN + (uint32_t)rnd_below(1u << 30));
			break;
		default:
			len = garbage_frame(buf, cap, rnd_below(2) ? cgw_id : agw_id);
			break;
		}
	} while (hits_our_gateways(buf, len));
	return len;
}

static int blast(const struct sockaddr_in *router, uint64_t count, double rate)
{
	static uint8_t buf[GW_MAX_DATAGRAM + 16];
	uint64_t per_kind[K_MAX] = {0}, errors = 0, t0;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (const struct sockaddr *)router, sizeof(*router)) < 0) {
		perror("gw_random_datagrams: socket");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	t0 = gw_now_ns();
	for (uint64_t i = 0; i < count; i++) {
		enum kind k = (enum kind)rnd_below(K_MAX);
		size_t len = generate(k, buf, GW_MAX_DATAGRAM);
		uint64_t due = t0 + (uint64_t)((double)i * 1e9 / rate);
		uint64_t now = gw_now_ns();

		/* bounded rate: the router's receive ring must not overflow */
		if (due > now) {
			struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(due - now)};

			if (due - now < 1000000000ull)
				nanosleep(&ts, NULL);
		}
		if (send(fd, buf, len, 0) < 0) {
			errors++; /* e.g. ECONNREFUSED from an earlier ICMP: go on */
			if (send(fd, buf, len, 0) < 0)
				errors++;
		}
		per_kind[k]++;
	}
	close(fd);
	printf("# sent %" PRIu64 " datagrams in %.2f s:", count, (double)(gw_now_ns() - t0) / 1e9);
	for (unsigned k = 0; k < K_MAX; k++)
		printf(" %s %" PRIu64 "%s", kind_names[k], per_kind[k], k + 1 < K_MAX ? "," : "");
	printf("; send errors %" PRIu64 "\n", errors);
	return 0;
}

/* ---- the normal session afterwards ---------------------------------------- */

struct session_state {
	struct gw_client *cgw, *agw;
	bool ready, queued, assigned_a, assigned_c, closed_a, closed_c;
	uint64_t session_id;
	unsigned fwd, back, errors, other, left;
};

static void on_envelope(struct gw_client *c, const Surge__V1__Envelope *env, uint64_t rx_ns,
                        void *ctx)
{
	struct session_state *st = ctx;
	bool cust = c == st->cgw;

	(void)rx_ns;
	switch (env->body_case) {
	case SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT:
		st->left += st->ready; /* any answer after READY: the logout's */
		st->ready |= !cust && env->agent_state_result->granted &&
		             env->agent_state_result->state == SURGE__V1__AGENT_STATE_KIND__READY;
		break;
	case SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED:
		if (cust && env->session_queued->open_ref == 77) {
			st->queued = true;
			st->session_id = env->session_queued->session_id;
		}
		break;
	case SURGE__V1__ENVELOPE__BODY_ASSIGNED:
		if (env->assigned->session_id == st->session_id) {
			if (cust)
				st->assigned_c = true;
			else
				st->assigned_a = true;
		}
		break;
	case SURGE__V1__ENVELOPE__BODY_DELIVER:
		if (env->deliver->session_id != st->session_id)
			st->other++;
		else if (!cust && env->deliver->msg_id == 1 && !strcmp(env->deliver->text, "hello"))
			st->fwd++;
		else if (cust && env->deliver->msg_id == 2 && !strcmp(env->deliver->text, "hi!"))
			st->back++;
		else
			st->other++;
		break;
	case SURGE__V1__ENVELOPE__BODY_SESSION_CLOSED:
		if (env->session_closed->session_id == st->session_id) {
			if (cust)
				st->closed_c = true;
			else
				st->closed_a = true;
		}
		break;
	case SURGE__V1__ENVELOPE__BODY_ERROR:
		st->errors++;
		printf("# error %d: %s\n", env->error->code,
		       env->error->detail ? env->error->detail : "");
		break;
	default:
		st->other++;
		break;
	}
}

static void pump(void *ctx)
{
	struct session_state *st = ctx;

	itest_pump2(st->cgw, st->agw, 1000000, on_envelope, st);
}

static bool flag_set(void *flag)
{
	return *(const bool *)flag;
}

static bool counted(void *n)
{
	return *(const unsigned *)n > 0;
}

/* Pump both gateways until *flag (at most ITEST_WAIT_NS). */
static bool wait_flag(struct session_state *st, bool *flag)
{
	gw_flush(st->cgw);
	gw_flush(st->agw);
	return itest_wait(flag_set, flag, pump, st);
}

/* Pump both gateways until *n > 0 (at most ITEST_WAIT_NS). */
static bool wait_count(struct session_state *st, unsigned *n)
{
	gw_flush(st->cgw);
	gw_flush(st->agw);
	return itest_wait(counted, n, pump, st);
}

static void session_check(const struct sockaddr_in *router)
{
	static struct session_state st;
	bool ok;

	st.cgw = gw_open(cgw_id, router, NULL);
	st.agw = gw_open(agw_id, router, NULL);
	if (!st.cgw || !st.agw) {
		check(false, "open the gateway sockets");
		goto out_close;
	}
	itest_login(st.agw, "random-agent", "general", 1);
	ok = wait_flag(&st, &st.ready);
	check(ok, "agent logs in after the storm");
	if (!ok)
		goto out_close;

	itest_open(st.cgw, 77, "random-customer", "general",
	           SURGE__V1__CHANNEL__CHANNEL_UNSPECIFIED, "still there?");
	ok = wait_flag(&st, &st.queued) && wait_flag(&st, &st.assigned_a) &&
	     wait_flag(&st, &st.assigned_c);
	check(ok, "session opens and is assigned on both sides");
	if (!ok)
		goto out_close;

	itest_customer_says(st.cgw, st.session_id, 1, "hello");
	check(wait_count(&st, &st.fwd), "customer message delivered to the agent");

	itest_agent_says(st.agw, st.session_id, "random-agent", 2, "hi!", false);
	check(wait_count(&st, &st.back), "agent answer delivered to the customer");

	itest_end(st.cgw, st.session_id, SURGE__V1__RATING__RATING_NONE);
	check(wait_flag(&st, &st.closed_a) && wait_flag(&st, &st.closed_c),
	      "session end closes it on both sides");
	check(st.fwd == 1 && st.back == 1 && st.errors == 0 && st.other == 0,
	      "exactly once, no error, nothing unexpected");

	/* leave the router as found: the agent goes offline */
	itest_agent_state(st.agw, "random-agent", SURGE__V1__AGENT_STATE_KIND__OFFLINE_REQUESTED);
	wait_count(&st, &st.left); /* not checked: draining is the router's business */

out_close:
	gw_close(st.cgw);
	gw_close(st.agw);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        ITEST_OPT_ROUTER,
	        {"count", required_argument, NULL, 'n'},
	        {"seed", required_argument, NULL, 's'},
	        {"rate", required_argument, NULL, 'R'},
	        ITEST_OPT_CUSTOMER_GW,
	        ITEST_OPT_AGENT_GW,
	        {NULL, 0, NULL, 0},
	};
	struct itest_args args = {.cgw = 1, .agw = 2};
	uint64_t count = 10000, seed = (uint64_t)time(NULL);
	double rate = 20000;
	const char *env = getenv("SURGE_SEED");
	int c, rc;

	if (env && *env)
		seed = strtoull(env, NULL, 0);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		rc = itest_option(c, optarg, &args);
		if (rc > 0)
			continue;
		if (rc < 0)
			goto out_usage;
		switch (c) {
		case 'n':
			count = strtoull(optarg, NULL, 10);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'R':
			rate = strtod(optarg, NULL);
			if (!(rate >= 1 && rate <= 50000))
				goto out_usage;
			break;
		default:
			goto out_usage;
		}
	}
	if (!itest_args_ok(&args) || args.cgw >= UNKNOWN_GW_MIN || args.agw >= UNKNOWN_GW_MIN)
		goto out_usage;
	cgw_id = args.cgw;
	agw_id = args.agw;
	printf("# seed %" PRIu64 " (--seed or SURGE_SEED to repeat)\n", seed);
	rng = seed;
	if (blast(&args.router, count, rate) < 0)
		return 1;
	session_check(&args.router);
	return itest_report();

out_usage:
	fprintf(stderr, "usage: gw_random_datagrams --router IP[:PORT] [--count N] [--seed S] "
	                "[--rate R (<= 50000)] [--customer-gw ID] [--agent-gw ID]\n");
	return 2;
}
