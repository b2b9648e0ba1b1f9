/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for net_classify and net_build_udp: any bytes as a frame to a
 * fixed address, never a crash, never a read past the end; a frame that is
 * not answered is left untouched; a UDP datagram rebuilt towards its sender
 * classifies back to the same payload; an ARP or ICMP reply built in place
 * is well formed. The input is also used as a payload for a build → classify
 * round trip.
 *
 * Built with -DFUZZ_REPLAY_MAIN it is a plain program: it runs the target on
 * the files given as arguments (or the files in a directory given), then on
 * deterministic pseudo-random frames and on mutations of valid UDP, ARP and
 * ICMP frames whose checksums are often repaired after mutation so the deep
 * paths are reached. SURGE_SEED sets the seed, FUZZ_ITERATIONS the count.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct net_addr fuzz_self = {
        .mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01},
        .ip = 0x0100000a, /* 10.0.0.1 on a little-endian host; any value serves */
        .port = 7700,
};

/* for the replay's statistics: verdicts, then drop reasons */
static enum net_verdict last_verdict;
static enum net_drop_reason last_drop;

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_net: %s\n", what);
		abort();
	}
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* RFC 1071, written out so that DPDK's checksum is not checked against itself */
static uint16_t ref_sum(const uint8_t *p, size_t n)
{
	uint32_t acc = 0;
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		acc += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		acc += (uint32_t)p[n - 1] << 8;
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)acc;
}

static void check_udp(const uint8_t *frame, size_t size, const struct net_rx *rx)
{
	struct net_rx rx2;
	struct net_addr peer = rx->peer;
	size_t cap = NET_UDP_HDR_LEN + rx->payload_len;
	uint8_t *out;
	int n;

	check(rx->payload >= frame + NET_UDP_HDR_LEN &&
	              rx->payload + rx->payload_len <= frame + size,
	      "payload outside the frame");
	check(memcmp(rx->peer.mac, frame + 6, 6) == 0, "peer mac");
	check(get16(rx->payload - 6) == fuzz_self.port, "port not ours");

	/* answer it: the answer is a datagram to the peer from us */
	out = malloc(cap);
	check(out != NULL, "out of memory");
	check(net_build_udp(out, cap - 1, &fuzz_self, &peer, rx->payload, rx->payload_len) ==
	              -EMSGSIZE,
	      "short buffer accepted");
	n = net_build_udp(out, cap, &fuzz_self, &peer, rx->payload, rx->payload_len);
	check(n >= 0 && (size_t)n == cap, "build length");
	check(net_classify(out, (size_t)n, &peer, &rx2) == NET_UDP, "answer not classified as UDP");
	check(rx2.payload_len == rx->payload_len &&
	              memcmp(rx2.payload, rx->payload, rx->payload_len) == 0,
	      "answer payload");
	check(memcmp(rx2.peer.mac, fuzz_self.mac, 6) == 0 && rx2.peer.ip == fuzz_self.ip &&
	              rx2.peer.port == fuzz_self.port,
	      "answer source");
	free(out);
}

static void check_arp(const uint8_t *in, const uint8_t *r, size_t size, const struct net_rx *rx)
{
	check(rx->reply_len == 42 && size >= 42, "arp reply length");
	check(memcmp(r, in + 6, 6) == 0 && memcmp(r + 6, fuzz_self.mac, 6) == 0, "arp ethernet");
	check(get16(r + 20) == 2, "arp opcode");
	check(memcmp(r + 22, fuzz_self.mac, 6) == 0 && memcmp(r + 28, &fuzz_self.ip, 4) == 0,
	      "arp sender");
	check(memcmp(r + 32, in + 22, 6) == 0 && memcmp(r + 38, in + 28, 4) == 0, "arp target");
	check(memcmp(r + 12, in + 12, 8) == 0, "arp header");
	check(memcmp(r + 42, in + 42, size - 42) == 0, "bytes after the reply changed");
}

static void check_icmp(const uint8_t *in, uint8_t *r, size_t size, const struct net_rx *rx)
{
	struct net_addr sender;
	struct net_rx rx2;
	size_t hl;

	check(rx->reply_len >= 14 + 20 + 8 && rx->reply_len <= size, "icmp reply length");
	hl = (size_t)(r[14] & 15) * 4;
	check(ref_sum(r + 14, hl) == 0xffff, "reply ip checksum");
	check(ref_sum(r + 14 + hl, rx->reply_len - 14 - hl) == 0xffff, "reply icmp checksum");
	check(r[14 + hl] == 0 && r[14 + 8] == 64, "reply type or ttl");
	check(memcmp(r, in + 6, 6) == 0 && memcmp(r + 26, &fuzz_self.ip, 4) == 0 &&
	              memcmp(r + 30, in + 26, 4) == 0,
	      "reply addresses");
	/* the requester sees a well-formed echo reply, which it does not answer */
	memcpy(sender.mac, in + 6, 6);
	memcpy(&sender.ip, in + 26, 4);
	sender.port = 0;
	check(net_classify(r, rx->reply_len, &sender, &rx2) == NET_DROP &&
	              rx2.drop == NET_DROP_ICMP_IGNORED,
	      "reply not an echo reply to the requester");
}

/* The input as a payload: build → classify gives it back. */
static void check_build(const uint8_t *data, size_t size)
{
	struct net_addr dst = {.mac = {0x0a, 1, 2, 3, 4, 5}, .ip = 0x0200000a, .port = 0};
	struct net_rx rx;
	size_t cap = NET_UDP_HDR_LEN + size;
	uint8_t *out;
	int n;

	if (size >= 2)
		dst.port = (uint16_t)(data[0] << 8 | data[1]);
	out = malloc(cap);
	check(out != NULL, "out of memory");
	n = net_build_udp(out, cap, &fuzz_self, &dst, data, size);
	if (size > 65507) {
		check(n == -EMSGSIZE, "oversized datagram built");
		free(out);
		return;
	}
	check(n >= 0 && (size_t)n == cap, "build length");
	check(net_classify(out, (size_t)n, &dst, &rx) == NET_UDP, "built frame not UDP");
	check(rx.payload == out + NET_UDP_HDR_LEN && rx.payload_len == size &&
	              memcmp(rx.payload, data, size) == 0,
	      "built payload");
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct net_rx rx;
	enum net_verdict v;
	uint8_t *frame = malloc(size ? size : 1);

	check(frame != NULL, "out of memory");
	if (size)
		memcpy(frame, data, size);
	v = net_classify(frame, size, &fuzz_self, &rx);
	last_verdict = v;
	last_drop = rx.drop;
	switch (v) {
	case NET_DROP:
		check(rx.drop > NET_DROP_NONE && rx.drop < NET_DROP_MAX, "bad drop reason");
		check(!rx.payload && !rx.payload_len && !rx.reply_len, "drop with results");
		check(!size || memcmp(frame, data, size) == 0, "dropped frame modified");
		break;
	case NET_UDP:
		check(rx.drop == NET_DROP_NONE && !rx.reply_len, "udp with a drop reason");
		check(memcmp(frame, data, size) == 0, "udp frame modified");
		check_udp(frame, size, &rx);
		break;
	case NET_ARP_REPLY:
		check(rx.drop == NET_DROP_NONE, "arp with a drop reason");
		check_arp(data, frame, size, &rx);
		break;
	case NET_ICMP_REPLY:
		check(rx.drop == NET_DROP_NONE, "icmp with a drop reason");
		check_icmp(data, frame, size, &rx);
		break;
	default:
		check(0, "bad verdict");
	}
	free(frame);
	check_build(data, size);
	return 0;
}

#ifdef FUZZ_REPLAY_MAIN
#include "replay.h"
#include <inttypes.h>
#include <sys/stat.h>
#include <time.h>

#define FUZZ_MAX_SEEDS 16
#define FUZZ_MAX_INPUT 2048

struct seed {
	uint8_t bytes[FUZZ_MAX_INPUT];
	size_t len;
};

static struct seed seeds[FUZZ_MAX_SEEDS];
static size_t n_seeds;

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static struct seed *new_seed(void)
{
	check(n_seeds < FUZZ_MAX_SEEDS, "seed table");
	return &seeds[n_seeds++];
}

/* Make the IPv4, UDP and ICMP checksums right where the lengths allow it. */
static void fix_sums(uint8_t *f, size_t len)
{
	uint8_t *ip = f + 14, *l4;
	size_t hl, tot;

	if (len < 34 || get16(f + 12) != 0x0800)
		return;
	hl = (size_t)(ip[0] & 15) * 4;
	if (hl < 20 || 14 + hl > len)
		return;
	put16(ip + 10, 0);
	put16(ip + 10, (uint16_t)~ref_sum(ip, hl));
	tot = get16(ip + 2);
	if (tot < hl || 14 + tot > len)
		return;
	l4 = ip + hl;
	if (ip[9] == 1 && tot - hl >= 8) {
		put16(l4 + 2, 0);
		put16(l4 + 2, (uint16_t)~ref_sum(l4, tot - hl));
	} else if (ip[9] == 17 && tot - hl >= 8) {
		size_t ulen = get16(l4 + 4);
		uint8_t ph[12];
		uint32_t s;

		if (ulen < 8 || ulen > tot - hl)
			return;
		memcpy(ph, ip + 12, 8);
		ph[8] = 0;
		ph[9] = 17;
		put16(ph + 10, (uint16_t)ulen);
		put16(l4 + 6, 0);
		s = (uint32_t)ref_sum(ph, 12) + ref_sum(l4, ulen);
		s = (s & 0xffff) + (s >> 16);
		put16(l4 + 6, (uint16_t)~s ? (uint16_t)~s : 0xffff);
	}
}

static void build_seeds(void)
{
	struct net_addr peer = {.mac = {0x02, 0, 0, 0, 0, 0x02}, .ip = 0x0200000a, .port = 40000};
	static const size_t sizes[] = {0, 1, 13, 200, 1400};
	struct seed *s;
	uint8_t payload[1400];
	size_t i;
	int n;

	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 13);
	/* UDP to us */
	for (i = 0; i < sizeof(sizes) / sizeof(*sizes); i++) {
		s = new_seed();
		n = net_build_udp(s->bytes, sizeof(s->bytes), &peer, &fuzz_self, payload, sizes[i]);
		check(n > 0, "seed build");
		s->len = (size_t)n;
	}
	/* ARP request, broadcast and padded */
	s = new_seed();
	memset(s->bytes, 0xff, 6);
	memcpy(s->bytes + 6, peer.mac, 6);
	put16(s->bytes + 12, 0x0806);
	put16(s->bytes + 14, 1);
	put16(s->bytes + 16, 0x0800);
	s->bytes[18] = 6;
	s->bytes[19] = 4;
	put16(s->bytes + 20, 1);
	memcpy(s->bytes + 22, peer.mac, 6);
	memcpy(s->bytes + 28, &peer.ip, 4);
	memset(s->bytes + 32, 0, 6);
	memcpy(s->bytes + 38, &fuzz_self.ip, 4);
	memset(s->bytes + 42, 0, 18);
	s->len = 60;
	/* ICMP echo requests: a UDP frame turned into one */
	for (i = 0; i < 3; i++) {
		s = new_seed();
		n = net_build_udp(s->bytes, sizeof(s->bytes), &peer, &fuzz_self, payload, i * 56);
		check(n > 0, "seed build");
		s->len = (size_t)n;
		s->bytes[14 + 9] = 1;
		s->bytes[34] = 8;
		s->bytes[35] = 0;
		fix_sums(s->bytes, s->len);
	}
	/* an IPv4 header with options, carrying UDP */
	s = new_seed();
	n = net_build_udp(s->bytes, sizeof(s->bytes), &peer, &fuzz_self, payload, 30);
	check(n > 0, "seed build");
	memmove(s->bytes + 38, s->bytes + 34, (size_t)n - 34);
	memset(s->bytes + 34, 1, 4);
	s->bytes[14] = 0x46;
	put16(s->bytes + 16, (uint16_t)(get16(s->bytes + 16) + 4));
	s->len = (size_t)n + 4;
	fix_sums(s->bytes, s->len);
}

static size_t mutate(uint8_t *buf, size_t len)
{
	size_t k, rounds = 1 + rng_below(3);

	for (k = 0; k < rounds; k++) {
		switch (rng_below(6)) {
		case 0: /* bit flips, mostly in the headers */
			if (len) {
				size_t flips = 1 + rng_below(4), span = len < 64 ? len : 64;

				while (flips--)
					buf[rng_below(rng_below(4) ? span : len)] ^=
					        (uint8_t)(1u << rng_below(8));
			}
			break;
		case 1: /* truncation */
			len = rng_below(len + 1);
			break;
		case 2: /* extension: padding or junk */
			if (len < FUZZ_MAX_INPUT) {
				size_t n = rng_below(FUZZ_MAX_INPUT - len + 1);

				if (n > 64 && rng_below(2))
					n = rng_below(64);
				memset(buf + len, rng_below(2) ? 0 : (int)rng_next(), n);
				len += n;
			}
			break;
		case 3: /* an interesting 16-bit value in a header field */
			if (len >= 2) {
				static const uint16_t vals[] = {0,      1,      7,      8,
				                                19,     20,     0x00ff, 0x2000,
				                                0x4000, 0x8000, 0x0800, 0x0806,
				                                0xffff, 0xfffe, 7700};
				size_t span = len < 60 ? len : 60, at = rng_below(span - 1);

				put16(buf + at, vals[rng_below(sizeof(vals) / sizeof(*vals))]);
			}
			break;
		case 4: /* a random byte */
			if (len)
				buf[rng_below(len)] = (uint8_t)rng_next();
			break;
		default: /* the IHL / version byte */
			if (len > 14)
				buf[14] =
				        (uint8_t)(rng_below(2) ? 0x40 | rng_below(16) : rng_next());
			break;
		}
	}
	/* checksums right half of the time, so the checks past them are reached */
	if (rng_below(2))
		fix_sums(buf, len);
	return len;
}

int main(int argc, char **argv)
{
	const char *env = getenv("SURGE_SEED"), *iters_env = getenv("FUZZ_ITERATIONS");
	uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	unsigned long iters = iters_env && *iters_env ? strtoul(iters_env, NULL, 0) : 300000;
	static uint8_t buf[FUZZ_MAX_INPUT];
	unsigned long verdicts[NET_DROP + 1] = {0}, drops[NET_DROP_MAX] = {0};
	static const char *const verdict_names[] = {"udp", "arp_reply", "icmp_reply"};
	unsigned long i;
	int rc = 0, files = 0;
	size_t k, len;

	for (i = 1; i < (unsigned long)argc; i++, files++)
		rc |= replay_path(argv[i]);

	printf("fuzz_net: seed %" PRIu64 " (set SURGE_SEED to replay), %lu iterations\n", seed,
	       iters);
	fflush(stdout);
	rng_state = seed;
	build_seeds();
	for (k = 0; k < n_seeds; k++) {
		LLVMFuzzerTestOneInput(seeds[k].bytes, seeds[k].len);
		check(last_verdict != NET_DROP, "a seed frame is dropped");
	}
	for (i = 0; i < iters; i++) {
		if (i % 8 == 0) {
			/* random bytes, mostly short; sometimes with our MAC and an ethertype */
			len = rng_below(i % 64 == 0 ? FUZZ_MAX_INPUT : 128);
			for (k = 0; k < len; k++)
				buf[k] = (uint8_t)rng_next();
			if (len >= 14 && rng_below(2)) {
				memcpy(buf, fuzz_self.mac, 6);
				put16(buf + 12, rng_below(2) ? 0x0800 : 0x0806);
			}
		} else {
			const struct seed *s = &seeds[rng_below(n_seeds)];

			memcpy(buf, s->bytes, s->len);
			len = mutate(buf, s->len);
		}
		LLVMFuzzerTestOneInput(buf, len);
		if (last_verdict == NET_DROP)
			drops[last_drop < NET_DROP_MAX ? last_drop : 0]++;
		else
			verdicts[last_verdict]++;
	}
	printf("fuzz_net: %lu inputs, %d files, ok; outcomes:", iters + n_seeds, files);
	for (k = 0; k < NET_DROP; k++)
		printf(" %s=%lu", verdict_names[k], verdicts[k]);
	for (k = 1; k < NET_DROP_MAX; k++)
		if (drops[k])
			printf(" %s=%lu", net_drop_reason_name((enum net_drop_reason)k), drops[k]);
	printf("\n");
	return rc ? 1 : 0;
}
#endif /* FUZZ_REPLAY_MAIN */
