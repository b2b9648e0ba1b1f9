/* SPDX-License-Identifier: MIT */
/*
 * bench: the latency histogram against exact sorting, and the gateway client
 * (framing, cumulative ack across gaps, duplicates, ack-only frames,
 * retransmission) against a fake router on a loopback socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "wire.h"

static uint64_t seed;

/* splitmix64: small, seeded, good enough for test data */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* ---- histogram ------------------------------------------------------------ */

static struct bench_hist hist_a, hist_b, hist_all;

static void test_hist_empty(void **state)
{
	(void)state;
	bench_hist_init(&hist_a);
	assert_int_equal(bench_hist_count(&hist_a), 0);
	assert_int_equal(bench_hist_max(&hist_a), 0);
	assert_int_equal(bench_hist_percentile(&hist_a, 50), 0);
	assert_int_equal(bench_hist_percentile(&hist_a, 100), 0);
	assert_true(bench_hist_mean(&hist_a) == 0.0);
}

static void test_hist_one_value(void **state)
{
	static const double ps[] = {0, 1, 50, 99, 99.9, 100};

	(void)state;
	bench_hist_init(&hist_a);
	bench_hist_record(&hist_a, 123457);
	assert_int_equal(bench_hist_count(&hist_a), 1);
	assert_int_equal(bench_hist_max(&hist_a), 123457);
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
		assert_int_equal(bench_hist_percentile(&hist_a, ps[i]), 123457);
	assert_true(bench_hist_mean(&hist_a) == 123457.0);
}

static void test_hist_small_values_exact(void **state)
{
	(void)state;
	bench_hist_init(&hist_a);
	for (uint64_t v = 1; v <= 200; v++)
		bench_hist_record(&hist_a, v);
	assert_int_equal(bench_hist_percentile(&hist_a, 50), 100);
	assert_int_equal(bench_hist_percentile(&hist_a, 99), 198);
	assert_int_equal(bench_hist_percentile(&hist_a, 0), 1);
	assert_int_equal(bench_hist_percentile(&hist_a, 100), 200);
}

#define NVALS 200000u

static void test_hist_random_vs_sorted(void **state)
{
	static const double ps[] = {0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
	uint64_t *v = malloc(NVALS * sizeof(*v));
	uint64_t s = seed;
	double sum = 0;

	(void)state;
	assert_non_null(v);
	bench_hist_init(&hist_a);
	bench_hist_init(&hist_b);
	bench_hist_init(&hist_all);
	for (size_t i = 0; i < NVALS; i++) {
		/* log-uniform over 100 ns .. 100 s: every bucket size gets exercised */
		double e = 2.0 + 9.0 * ((double)(rnd(&s) >> 11) / 9007199254740992.0);
		uint64_t x = 100;

		for (double k = 2.0; k + 1 <= e; k += 1)
			x *= 10;
		x += rnd(&s) % (x * 9);
		v[i] = x;
		sum += (double)x;
		bench_hist_record(i % 3 ? &hist_a : &hist_b, x);
		bench_hist_record(&hist_all, x);
	}
	bench_hist_merge(&hist_a, &hist_b);
	qsort(v, NVALS, sizeof(*v), cmp_u64);
	assert_int_equal(bench_hist_count(&hist_a), NVALS);
	assert_int_equal(bench_hist_max(&hist_a), v[NVALS - 1]);
	assert_true(bench_hist_mean(&hist_a) > sum / NVALS * (1 - 1e-9));
	assert_true(bench_hist_mean(&hist_a) < sum / NVALS * (1 + 1e-9));
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		size_t rank = (size_t)(ps[i] / 100.0 * NVALS + 0.999999);
		uint64_t exact = v[(rank ? rank : 1) - 1];
		uint64_t got = bench_hist_percentile(&hist_a, ps[i]);

		/* reported as its bucket's upper end: never below, within 1/128 above */
		if (got < exact || got > exact + exact / 128 + 1)
			fail_msg("p%g: got %llu, exact %llu (seed %llu)", ps[i],
			         (unsigned long long)got, (unsigned long long)exact,
			         (unsigned long long)seed);
		/* a merged histogram answers like one fed everything */
		assert_int_equal(got, bench_hist_percentile(&hist_all, ps[i]));
	}
	free(v);
}

static void test_hist_beyond_range(void **state)
{
	(void)state;
	bench_hist_init(&hist_a);
	bench_hist_record(&hist_a, 0);
	bench_hist_record(&hist_a, 500ull * 1000000000ull); /* 500 s */
	bench_hist_record(&hist_a, UINT64_MAX);
	assert_int_equal(hist_a.overflow, 2);
	assert_int_equal(bench_hist_max(&hist_a), UINT64_MAX);
	assert_int_equal(bench_hist_percentile(&hist_a, 100), UINT64_MAX);
	assert_int_equal(bench_hist_percentile(&hist_a, 0), 0);
	assert_true(bench_hist_percentile(&hist_a, 34) >= 500ull * 1000000000ull);
	/* out-of-range percentiles are clamped */
	assert_int_equal(bench_hist_percentile(&hist_a, -5), 0);
	assert_int_equal(bench_hist_percentile(&hist_a, 1000), UINT64_MAX);
}

/* ---- gateway client against a fake router --------------------------------- */

#define GW_ID 7u

struct fake {
	int fd;
	struct sockaddr_in addr; /* where the fake listens */
	struct sockaddr_in peer; /* the client, once heard */
	uint64_t epoch;          /* the fake router's epoch */
	uint8_t arena_mem[256 * 1024];
	struct wire_arena arena;
	struct gw_client *c;
};

static int fake_setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	socklen_t len = sizeof(f->addr);

	if (!f)
		return -1;
	f->fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (f->fd < 0)
		return -1;
	f->addr.sin_family = AF_INET;
	f->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(f->fd, (struct sockaddr *)&f->addr, sizeof(f->addr)) < 0 ||
	    getsockname(f->fd, (struct sockaddr *)&f->addr, &len) < 0)
		return -1;
	f->epoch = 1000;
	wire_arena_init(&f->arena, f->arena_mem, sizeof(f->arena_mem));
	f->c = gw_open(GW_ID, &f->addr, NULL);
	if (!f->c)
		return -1;
	*state = f;
	return 0;
}

static int fake_teardown(void **state)
{
	struct fake *f = *state;

	gw_close(f->c);
	close(f->fd);
	free(f);
	return 0;
}

/* Receive one datagram from the client within timeout_ms and decode it; NULL when none. */
static Surge__V1__Frame *fake_recv(struct fake *f, int timeout_ms, size_t *len_out)
{
	static uint8_t buf[4096];
	struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
	socklen_t alen = sizeof(f->peer);
	Surge__V1__Packet *packet;
	Surge__V1__Frame *frame;
	enum wire_drop_reason reason;
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return NULL;
	n = recvfrom(f->fd, buf, sizeof(buf), 0, (struct sockaddr *)&f->peer, &alen);
	assert_true(n >= 0);
	if (len_out)
		*len_out = (size_t)n;
	wire_arena_reset(&f->arena);
	assert_int_equal(wire_decode(&f->arena, buf, (size_t)n, &packet, &frame, &reason), 0);
	assert_int_equal(packet->gateway_id, GW_ID);
	return frame;
}

/* Send a router frame with one Deliver{msg_id} (none when msg_id is 0). */
static void fake_send(struct fake *f, uint32_t gw, uint64_t seq, uint64_t ack, uint64_t msg_id)
{
	Surge__V1__Frame frame = SURGE__V1__FRAME__INIT;
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT, *envs[1] = {&env};
	Surge__V1__Deliver d = SURGE__V1__DELIVER__INIT;
	uint8_t buf[2048];
	int n;

	d.session_id = 1;
	d.msg_id = msg_id;
	d.sender = SURGE__V1__SIDE__CUSTOMER;
	d.text = "hello";
	env.body_case = SURGE__V1__ENVELOPE__BODY_DELIVER;
	env.deliver = &d;
	frame.epoch = f->epoch;
	frame.seq = seq;
	frame.ack = ack;
	frame.msgs = envs;
	frame.n_msgs = msg_id ? 1 : 0;
	n = wire_encode_plain(gw, &frame, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(
	        sendto(f->fd, buf, (size_t)n, 0, (struct sockaddr *)&f->peer, sizeof(f->peer)), n);
}

struct seen {
	uint64_t ids[64];
	unsigned n;
};

static void on_env(struct gw_client *c, const Surge__V1__Envelope *env, uint64_t rx_ns, void *ctx)
{
	struct seen *s = ctx;

	(void)c;
	(void)rx_ns;
	assert_int_equal(env->body_case, SURGE__V1__ENVELOPE__BODY_DELIVER);
	if (s->n < 64)
		s->ids[s->n++] = env->deliver->msg_id;
}

/* Poll the client until `want` envelopes were seen or timeout_ms passed. */
static void poll_until(struct fake *f, struct seen *s, unsigned want, int timeout_ms)
{
	uint64_t end = gw_now_ns() + (uint64_t)timeout_ms * 1000000u;

	while (s->n < want && gw_now_ns() < end)
		gw_poll(f->c, 5, on_env, s);
}

static void add_message(struct gw_client *c, uint64_t msg_id, size_t text_len)
{
	static char text[2100];
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__CustomerMessage m = SURGE__V1__CUSTOMER_MESSAGE__INIT;

	memset(text, 'x', text_len);
	text[text_len] = '\0';
	m.session_id = 42;
	m.msg_id = msg_id;
	m.text = text;
	env.body_case = SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE;
	env.customer_message = &m;
	assert_int_equal(gw_add(c, &env), 0);
}

static void test_gw_framing(void **state)
{
	struct fake *f = *state;
	uint64_t next_id = 0, next_seq = 1, epoch = 0;
	uint64_t s = seed;
	unsigned frames = 0;

	/* mixed sizes: some frames fill by bytes, runs of tiny ones by envelope count */
	for (uint64_t i = 0; i < 600; i++)
		add_message(f->c, i, i < 300 ? (size_t)(rnd(&s) % 300) : 0);
	assert_int_equal(gw_flush(f->c), 0);
	while (next_id < 600) {
		size_t len = 0;
		Surge__V1__Frame *fr = fake_recv(f, 1000, &len);

		assert_non_null(fr);
		frames++;
		assert_true(len <= GW_MAX_DATAGRAM);
		assert_true(fr->n_msgs >= 1 && fr->n_msgs <= GW_MAX_ENVELOPES);
		assert_int_equal(fr->seq, next_seq);
		next_seq++;
		if (!epoch)
			epoch = fr->epoch;
		assert_int_equal(fr->epoch, epoch);
		assert_int_equal(fr->ack, 0);
		for (size_t k = 0; k < fr->n_msgs; k++) {
			assert_int_equal(fr->msgs[k]->body_case,
			                 SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE);
			assert_int_equal(fr->msgs[k]->customer_message->msg_id, next_id);
			next_id++;
		}
	}
	assert_true(frames >= 300 / 64 + 2);
	assert_int_equal(gw_stats(f->c)->tx_envelopes, 600);
	assert_int_equal(gw_stats(f->c)->tx_frames, frames);
	assert_int_equal(gw_unacked(f->c), frames);
	/* the router acknowledges everything: nothing left to retransmit */
	fake_send(f, GW_ID, 0, frames, 0);
	gw_poll(f->c, 50, NULL, NULL);
	assert_int_equal(gw_unacked(f->c), 0);
	assert_int_equal(gw_stats(f->c)->peer_ack, frames);
}

static void test_gw_add_refuses(void **state)
{
	struct fake *f = *state;
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__CustomerMessage m = SURGE__V1__CUSTOMER_MESSAGE__INIT;
	static char big[2001];

	assert_int_equal(gw_add(f->c, NULL), -EINVAL);
	assert_int_equal(gw_add(f->c, &env), -EINVAL);
	memset(big, 'y', 2000);
	m.text = big;
	env.body_case = SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE;
	env.customer_message = &m;
	assert_int_equal(gw_add(f->c, &env), -EMSGSIZE);
	/* nothing was queued */
	assert_int_equal(gw_flush(f->c), 0);
	assert_null(fake_recv(f, 50, NULL));
}

static void test_gw_ack_gap_duplicate(void **state)
{
	struct fake *f = *state;
	struct seen s = {0};
	Surge__V1__Frame *fr;
	uint64_t t0;

	/* the fake learns the client's address from its first frame */
	add_message(f->c, 1, 10);
	gw_flush(f->c);
	fr = fake_recv(f, 1000, NULL);
	assert_non_null(fr);
	assert_int_equal(fr->seq, 1);

	fake_send(f, GW_ID, 1, 1, 101);
	fake_send(f, GW_ID, 2, 1, 102);
	fake_send(f, GW_ID, 4, 1, 104); /* 3 is "lost" */
	poll_until(f, &s, 3, 1000);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.ids[0], 101);
	assert_int_equal(s.ids[1], 102);
	assert_int_equal(s.ids[2], 104);

	/* the next data frame piggybacks the cumulative ack: 2, not 4 */
	add_message(f->c, 2, 10);
	gw_flush(f->c);
	fr = fake_recv(f, 1000, NULL);
	assert_non_null(fr);
	assert_int_equal(fr->seq, 2);
	assert_int_equal(fr->ack, 2);

	/* frames for other gateways, stale epochs and garbage are dropped */
	fake_send(f, GW_ID + 1, 5, 2, 999);
	assert_int_equal(
	        sendto(f->fd, "\xff\xff\xff", 3, 0, (struct sockaddr *)&f->peer, sizeof(f->peer)),
	        3);
	f->epoch--;
	fake_send(f, GW_ID, 5, 2, 998);
	f->epoch++;

	/* the gap fills; a duplicate of 2 is acknowledged, not handed on */
	fake_send(f, GW_ID, 3, 2, 103);
	fake_send(f, GW_ID, 2, 2, 102);
	t0 = gw_now_ns();
	poll_until(f, &s, 4, 1000);
	gw_poll(f->c, 20, on_env, &s);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.ids[3], 103);
	assert_int_equal(gw_stats(f->c)->rx_duplicates, 1);
	assert_int_equal(gw_stats(f->c)->rx_dropped, 3);
	assert_int_equal(gw_stats(f->c)->rx_ack, 4);

	/* nothing to send: an ack-only frame follows after about GW_ACK_DELAY_NS */
	for (int i = 0; i < 20 && !(fr = fake_recv(f, 0, NULL)); i++)
		gw_poll(f->c, 5, on_env, &s);
	if (!fr)
		fr = fake_recv(f, 100, NULL);
	assert_non_null(fr);
	assert_int_equal(fr->seq, 0);
	assert_int_equal(fr->ack, 4);
	assert_int_equal(fr->n_msgs, 0);
	assert_true(gw_now_ns() - t0 >= GW_ACK_DELAY_NS / 2);
	assert_true(gw_stats(f->c)->tx_ack_frames >= 1);
	/* and only one: an ack-only frame is not acknowledged by the client either */
	fake_send(f, GW_ID, 0, 2, 0);
	gw_poll(f->c, 30, on_env, &s);
	assert_null(fake_recv(f, 30, NULL));
}

static void test_gw_retransmit(void **state)
{
	struct fake *f = *state;
	Surge__V1__Frame *fr;
	uint64_t t0;

	add_message(f->c, 7, 10);
	gw_flush(f->c);
	t0 = gw_now_ns();
	fr = fake_recv(f, 1000, NULL);
	assert_non_null(fr);
	assert_int_equal(fr->seq, 1);
	assert_int_equal(gw_unacked(f->c), 1);

	/* no ack: the same frame again after the RTO */
	fr = NULL;
	while (!fr && gw_now_ns() - t0 < 2000000000ull) {
		gw_poll(f->c, 10, NULL, NULL);
		fr = fake_recv(f, 0, NULL);
	}
	assert_non_null(fr);
	assert_true(gw_now_ns() - t0 >= GW_RTO_NS);
	assert_int_equal(fr->seq, 1);
	assert_int_equal(fr->n_msgs, 1);
	assert_int_equal(fr->msgs[0]->customer_message->msg_id, 7);
	assert_int_equal(gw_stats(f->c)->tx_retransmits, 1);

	/* acknowledged: no more retransmissions */
	fake_send(f, GW_ID, 0, 1, 0);
	t0 = gw_now_ns();
	while (gw_now_ns() - t0 < 600000000ull)
		gw_poll(f->c, 10, NULL, NULL);
	assert_int_equal(gw_unacked(f->c), 0);
	assert_null(fake_recv(f, 0, NULL));
	assert_int_equal(gw_stats(f->c)->tx_retransmits, 1);
}

/* Many more frames than the retransmission ring holds: slots are reused cleanly. */
static void test_gw_ring_wraps(void **state)
{
	struct fake *f = *state;
	uint64_t next = 1;

	for (uint64_t round = 0; round < 30; round++) {
		for (uint64_t i = 0; i < 100; i++) {
			add_message(f->c, round * 100 + i, 40 + (size_t)(i % 7));
			assert_int_equal(gw_flush(f->c), 0);
		}
		for (uint64_t i = 0; i < 100; i++) {
			Surge__V1__Frame *fr = fake_recv(f, 1000, NULL);

			assert_non_null(fr);
			assert_int_equal(fr->seq, next);
			assert_int_equal(fr->n_msgs, 1);
			assert_int_equal(fr->msgs[0]->customer_message->msg_id, next - 1);
			assert_int_equal(strlen(fr->msgs[0]->customer_message->text),
			                 40 + (next - 1) % 100 % 7);
			next++;
		}
		/* acknowledge all but the last round: the ring wraps over acked and unacked slots
		 */
		if (round < 20) {
			fake_send(f, GW_ID, 0, next - 1, 0);
			gw_poll(f->c, 5, NULL, NULL);
		}
	}
	assert_int_equal(gw_stats(f->c)->tx_frames, 3000);
	assert_int_equal(gw_unacked(f->c), 1000);
	/* without acks, the client stops at GW_MAX_IN_FLIGHT frames in flight */
	{
		Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
		Surge__V1__SessionEnd e = SURGE__V1__SESSION_END__INIT;
		unsigned n = 0;
		int rc;

		env.body_case = SURGE__V1__ENVELOPE__BODY_SESSION_END;
		env.session_end = &e;
		while ((rc = gw_add(f->c, &env)) == 0 && n < 5000) {
			assert_int_equal(gw_flush(f->c), 0);
			if (++n % 50 == 0)
				while (fake_recv(f, 0, NULL))
					;
		}
		assert_int_equal(rc, -ENOBUFS);
		assert_int_equal(n, GW_MAX_IN_FLIGHT - 1000);
		assert_int_equal(gw_unacked(f->c), GW_MAX_IN_FLIGHT);
		assert_int_equal(gw_stats(f->c)->tx_window_full, 1);
		while (fake_recv(f, 0, NULL))
			;
		/* an ack opens the window again */
		fake_send(f, GW_ID, 0, next - 1 + n, 0);
		gw_poll(f->c, 20, NULL, NULL);
		assert_int_equal(gw_unacked(f->c), 0);
		assert_int_equal(gw_add(f->c, &env), 0);
	}
}

/* A router that served an earlier run of this gateway id goes on with its numbering. */
static void test_gw_joins_mid_stream(void **state)
{
	struct fake *f = *state;
	struct seen s = {0};
	Surge__V1__Frame *fr;

	add_message(f->c, 1, 10);
	gw_flush(f->c);
	assert_non_null(fake_recv(f, 1000, NULL));
	fake_send(f, GW_ID, 0, 1, 0); /* an ack-only frame first changes nothing */
	fake_send(f, GW_ID, 55661, 1, 501);
	fake_send(f, GW_ID, 55663, 1, 503);
	fake_send(f, GW_ID, 55662, 1, 502);
	poll_until(f, &s, 3, 1000);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.ids[0], 501);
	assert_int_equal(s.ids[2], 502);
	assert_int_equal(gw_stats(f->c)->rx_ack, 55663);
	assert_int_equal(gw_stats(f->c)->rx_dropped, 0);
	add_message(f->c, 2, 10);
	gw_flush(f->c);
	fr = fake_recv(f, 1000, NULL);
	assert_non_null(fr);
	assert_int_equal(fr->ack, 55663);
	/* a router restart (higher epoch) starts again from 1 */
	f->epoch++;
	fake_send(f, GW_ID, 1, 2, 601);
	poll_until(f, &s, 4, 1000);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.ids[3], 601);
	assert_int_equal(gw_stats(f->c)->rx_ack, 1);
}

static void test_gw_parse_addr(void **state)
{
	struct sockaddr_in a;

	(void)state;
	assert_int_equal(gw_parse_addr("10.77.1.1", GW_DEFAULT_PORT, &a), 0);
	assert_int_equal(ntohs(a.sin_port), 7700);
	assert_int_equal(ntohl(a.sin_addr.s_addr), 0x0a4d0101);
	assert_int_equal(gw_parse_addr("127.0.0.1:9", GW_DEFAULT_PORT, &a), 0);
	assert_int_equal(ntohs(a.sin_port), 9);
	assert_int_equal(gw_parse_addr("127.0.0.1:", 1, &a), -EINVAL);
	assert_int_equal(gw_parse_addr("127.0.0.1:70000", 1, &a), -EINVAL);
	assert_int_equal(gw_parse_addr("127.0.0.1:0", 1, &a), -EINVAL);
	assert_int_equal(gw_parse_addr("nohost", 1, &a), -EINVAL);
	assert_int_equal(gw_parse_addr("", 1, &a), -EINVAL);
	assert_int_equal(gw_parse_addr(NULL, 1, &a), -EINVAL);
}

static void test_gw_open_refuses(void **state)
{
	struct sockaddr_in a;

	(void)state;
	assert_int_equal(gw_parse_addr("127.0.0.1:9", 0, &a), 0);
	errno = 0;
	assert_null(gw_open(0, &a, NULL));
	assert_int_equal(errno, EINVAL);
	assert_null(gw_open(1, NULL, NULL));
	gw_close(NULL);
}

int main(void)
{
	const char *env = getenv("SURGE_SEED");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_hist_empty),
	        cmocka_unit_test(test_hist_one_value),
	        cmocka_unit_test(test_hist_small_values_exact),
	        cmocka_unit_test(test_hist_random_vs_sorted),
	        cmocka_unit_test(test_hist_beyond_range),
	        cmocka_unit_test(test_gw_parse_addr),
	        cmocka_unit_test(test_gw_open_refuses),
	        cmocka_unit_test_setup_teardown(test_gw_framing, fake_setup, fake_teardown),
	        cmocka_unit_test_setup_teardown(test_gw_add_refuses, fake_setup, fake_teardown),
	        cmocka_unit_test_setup_teardown(test_gw_ack_gap_duplicate, fake_setup,
	                                        fake_teardown),
	        cmocka_unit_test_setup_teardown(test_gw_retransmit, fake_setup, fake_teardown),
	        cmocka_unit_test_setup_teardown(test_gw_ring_wraps, fake_setup, fake_teardown),
	        cmocka_unit_test_setup_teardown(test_gw_joins_mid_stream, fake_setup,
	                                        fake_teardown),
	};

	seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)gw_now_ns();
	printf("seed %llu (set SURGE_SEED to repeat)\n", (unsigned long long)seed);
	return cmocka_run_group_tests_name("bench", tests, NULL, NULL);
}
