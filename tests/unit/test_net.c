/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of router/net's frame code (no EAL needed): classification of
 * hand-made frames, ARP and ICMP echo replies, UDP building checked against
 * an independent RFC 1071 checksum, and address text. The frames here are
 * built byte by byte, not with DPDK's structs, so that a layout mistake in
 * net.c cannot hide behind the same mistake in the test.
 * The randomized round-trip prints its seed; set SURGE_SEED to replay it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>

#include "net.h"

#define FRAME_MAX 2048u
#define SELF_PORT 7700u
#define PEER_PORT 40000u

static uint64_t test_seed;

static const uint8_t self_mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
static const uint8_t peer_mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
static const uint8_t other_mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x09};
static const uint8_t bcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* ---- helpers -------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	/* splitmix64: deterministic across platforms, enough for tests */
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
	return n ? rng_next() % n : 0;
}

static uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	return htonl((uint32_t)a << 24 | (uint32_t)b << 16 | (uint32_t)c << 8 | d);
}

static struct net_addr self_addr(void)
{
	struct net_addr a;

	memcpy(a.mac, self_mac, 6);
	a.ip = ip4(10, 0, 0, 1);
	a.port = SELF_PORT;
	return a;
}

static struct net_addr peer_addr(void)
{
	struct net_addr a;

	memcpy(a.mac, peer_mac, 6);
	a.ip = ip4(10, 0, 0, 2);
	a.port = PEER_PORT;
	return a;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* an address in network order, as the bytes on the wire */
static void put_ip(uint8_t *p, uint32_t ip_be)
{
	memcpy(p, &ip_be, 4);
}

static uint32_t get_ip(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

/* RFC 1071: 16-bit big-endian words, an odd last byte is the high half of a word. */
static uint32_t ref_sum(const uint8_t *p, size_t n, uint32_t acc)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		acc += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		acc += (uint32_t)p[n - 1] << 8;
	return acc;
}

static uint16_t ref_fold(uint32_t acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)acc;
}

static uint16_t ref_cksum(const uint8_t *p, size_t n)
{
	return (uint16_t)~ref_fold(ref_sum(p, n, 0));
}

/* The UDP checksum as RFC 768 defines it (pseudo-header included, field taken as is). */
static uint16_t ref_udp_cksum(const uint8_t *ip_hdr, const uint8_t *udp, size_t udp_len)
{
	uint8_t ph[12];

	memcpy(ph, ip_hdr + 12, 8);
	ph[8] = 0;
	ph[9] = 17;
	put16(ph + 10, (uint16_t)udp_len);
	return (uint16_t)~ref_fold(ref_sum(udp, udp_len, ref_sum(ph, sizeof(ph), 0)));
}

static size_t mk_eth(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	put16(f + 12, type);
	return 14;
}

/* IPv4 header at f + 14 with opt_len bytes of options (NOPs); returns its length. */
static size_t mk_ipv4(uint8_t *f, uint8_t proto, uint32_t src, uint32_t dst, size_t l4_len,
                      size_t opt_len)
{
	uint8_t *ip = f + 14;
	size_t hl = 20 + opt_len;

	ip[0] = (uint8_t)(0x40 | hl / 4);
	ip[1] = 0;
	put16(ip + 2, (uint16_t)(hl + l4_len));
	put16(ip + 4, 0x1234);
	put16(ip + 6, 0);
	ip[8] = 17; /* unusual TTL, so a reply's 64 shows */
	ip[9] = proto;
	put16(ip + 10, 0);
	put_ip(ip + 12, src);
	put_ip(ip + 16, dst);
	memset(ip + 20, 1, opt_len);
	put16(ip + 10, ref_cksum(ip, hl));
	return hl;
}

static void ip_fix_cksum(uint8_t *f)
{
	uint8_t *ip = f + 14;
	size_t hl = (size_t)(ip[0] & 15) * 4;

	put16(ip + 10, 0);
	put16(ip + 10, ref_cksum(ip, hl));
}

static void udp_fix_cksum(uint8_t *f)
{
	uint8_t *ip = f + 14, *udp = ip + (ip[0] & 15) * 4;
	uint16_t c;

	put16(udp + 6, 0);
	c = ref_udp_cksum(ip, udp, get16(udp + 4));
	put16(udp + 6, c ? c : 0xffff);
}

/* A UDP frame from `src` to `dst`; with_cksum 0 leaves the checksum field zero. */
static size_t mk_udp(uint8_t *f, const struct net_addr *src, const struct net_addr *dst,
                     const void *payload, size_t plen, int with_cksum)
{
	size_t off = mk_eth(f, dst->mac, src->mac, 0x0800);
	uint8_t *udp;

	off += mk_ipv4(f, 17, src->ip, dst->ip, 8 + plen, 0);
	udp = f + off;
	put16(udp, src->port);
	put16(udp + 2, dst->port);
	put16(udp + 4, (uint16_t)(8 + plen));
	put16(udp + 6, 0);
	if (plen)
		memcpy(udp + 8, payload, plen);
	if (with_cksum)
		udp_fix_cksum(f);
	return off + 8 + plen;
}

static size_t mk_icmp(uint8_t *f, const struct net_addr *src, const struct net_addr *dst,
                      uint8_t type, uint8_t code, uint16_t id, uint16_t seq, const uint8_t *data,
                      size_t dlen)
{
	size_t off = mk_eth(f, dst->mac, src->mac, 0x0800);
	uint8_t *icmp;

	off += mk_ipv4(f, 1, src->ip, dst->ip, 8 + dlen, 0);
	icmp = f + off;
	icmp[0] = type;
	icmp[1] = code;
	put16(icmp + 2, 0);
	put16(icmp + 4, id);
	put16(icmp + 6, seq);
	if (dlen)
		memcpy(icmp + 8, data, dlen);
	put16(icmp + 2, ref_cksum(icmp, 8 + dlen));
	return off + 8 + dlen;
}

static size_t mk_arp(uint8_t *f, const uint8_t *eth_dst, uint16_t op, const uint8_t *sha,
                     uint32_t sip, const uint8_t *tha, uint32_t tip)
{
	uint8_t *a = f + mk_eth(f, eth_dst, sha, 0x0806);

	put16(a, 1);
	put16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, sha, 6);
	put_ip(a + 14, sip);
	memcpy(a + 18, tha, 6);
	put_ip(a + 24, tip);
	return 42;
}

/* Classify a copy of exactly len bytes, so ASan sees any read past the end. */
static enum net_verdict classify_copy(const uint8_t *f, size_t len, struct net_rx *rx, uint8_t *out)
{
	struct net_addr self = self_addr();
	uint8_t *p = malloc(len ? len : 1);
	enum net_verdict v;

	assert_non_null(p);
	memcpy(p, f, len);
	v = net_classify(p, len, &self, rx);
	if (out)
		memcpy(out, p, len);
	/* the payload pointer is into p: callers use `out` to look at it */
	if (v == NET_UDP) {
		assert_true(rx->payload >= p && rx->payload + rx->payload_len <= p + len);
		rx->payload = out ? out + (rx->payload - p) : NULL;
	}
	free(p);
	return v;
}

static void expect_drop(const uint8_t *f, size_t len, enum net_drop_reason why)
{
	struct net_rx rx;
	enum net_verdict v = classify_copy(f, len, &rx, NULL);

	if (v != NET_DROP || rx.drop != why)
		fail_msg("len %zu: verdict %d drop %s, expected drop %s", len, v,
		         net_drop_reason_name(rx.drop), net_drop_reason_name(why));
}

/* ---- Ethernet ------------------------------------------------------------- */

static void test_runt_and_ethertype(void **state)
{
	uint8_t f[64] = {0};
	size_t len;

	(void)state;
	for (len = 0; len < 14; len++)
		expect_drop(f, len, NET_DROP_RUNT);
	mk_eth(f, self_mac, peer_mac, 0x86dd);
	expect_drop(f, 60, NET_DROP_ETHERTYPE);
	mk_eth(f, self_mac, peer_mac, 0x8100); /* 802.1Q */
	expect_drop(f, 60, NET_DROP_ETHERTYPE);
	mk_eth(f, self_mac, peer_mac, 0x0800);
	expect_drop(f, 14, NET_DROP_IP_MALFORMED);
}

/* ---- ARP ------------------------------------------------------------------ */

static void check_arp_reply(const uint8_t *r, const struct net_addr *self,
                            const struct net_addr *peer)
{
	assert_memory_equal(r, peer->mac, 6);
	assert_memory_equal(r + 6, self->mac, 6);
	assert_int_equal(get16(r + 12), 0x0806);
	assert_int_equal(get16(r + 14), 1);
	assert_int_equal(get16(r + 16), 0x0800);
	assert_int_equal(r[18], 6);
	assert_int_equal(r[19], 4);
	assert_int_equal(get16(r + 20), 2);
	assert_memory_equal(r + 22, self->mac, 6);
	assert_int_equal(get_ip(r + 28), self->ip);
	assert_memory_equal(r + 32, peer->mac, 6);
	assert_int_equal(get_ip(r + 38), peer->ip);
}

static void test_arp_request(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	uint8_t f[60] = {0}, out[60];
	struct net_rx rx;

	(void)state;
	/* broadcast, padded to the 60-byte minimum as it comes off the wire */
	mk_arp(f, bcast_mac, 1, peer.mac, peer.ip, (const uint8_t[6]){0}, self.ip);
	assert_int_equal(classify_copy(f, sizeof(f), &rx, out), NET_ARP_REPLY);
	assert_int_equal(rx.drop, NET_DROP_NONE);
	assert_int_equal(rx.reply_len, 42);
	check_arp_reply(out, &self, &peer);

	/* unicast (cache refresh), unpadded */
	mk_arp(f, self.mac, 1, peer.mac, peer.ip, self.mac, self.ip);
	assert_int_equal(classify_copy(f, 42, &rx, out), NET_ARP_REPLY);
	assert_int_equal(rx.reply_len, 42);
	check_arp_reply(out, &self, &peer);
}

static void test_arp_ignored_and_malformed(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	uint8_t f[60] = {0}, out[60];
	struct net_rx rx;
	size_t len;

	(void)state;
	/* for another address: dropped and left untouched */
	mk_arp(f, bcast_mac, 1, peer.mac, peer.ip, (const uint8_t[6]){0}, ip4(10, 0, 0, 3));
	assert_int_equal(classify_copy(f, sizeof(f), &rx, out), NET_DROP);
	assert_int_equal(rx.drop, NET_DROP_ARP_IGNORED);
	assert_int_equal(rx.reply_len, 0);
	assert_memory_equal(out, f, sizeof(f));
	/* a reply */
	mk_arp(f, self.mac, 2, peer.mac, peer.ip, self.mac, self.ip);
	expect_drop(f, sizeof(f), NET_DROP_ARP_IGNORED);
	/* a request sent to another station */
	mk_arp(f, other_mac, 1, peer.mac, peer.ip, self.mac, self.ip);
	expect_drop(f, sizeof(f), NET_DROP_ARP_IGNORED);

	mk_arp(f, bcast_mac, 1, peer.mac, peer.ip, self.mac, self.ip);
	for (len = 14; len < 42; len++)
		expect_drop(f, len, NET_DROP_ARP_MALFORMED);
	f[15] = 6; /* hardware type IEEE 802 */
	expect_drop(f, 42, NET_DROP_ARP_MALFORMED);
	f[15] = 1;
	f[16] = 0x86; /* protocol IPv6 */
	expect_drop(f, 42, NET_DROP_ARP_MALFORMED);
	f[16] = 0x08;
	f[19] = 16;
	expect_drop(f, 42, NET_DROP_ARP_MALFORMED);
	f[19] = 4;
	f[21] = 3; /* RARP request */
	expect_drop(f, 42, NET_DROP_ARP_MALFORMED);
	f[21] = 1;
	assert_int_equal(classify_copy(f, 42, &rx, NULL), NET_ARP_REPLY);
}

/* ---- ICMP ----------------------------------------------------------------- */

static void check_icmp_reply(const uint8_t *req, const uint8_t *r, size_t reply_len)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	const uint8_t *ip = r + 14, *icmp;
	size_t hl = (size_t)(ip[0] & 15) * 4, tot = get16(ip + 2);

	assert_int_equal(reply_len, 14 + tot);
	assert_memory_equal(r, peer.mac, 6);
	assert_memory_equal(r + 6, self.mac, 6);
	assert_int_equal(get16(r + 12), 0x0800);
	assert_int_equal(get_ip(ip + 12), self.ip);
	assert_int_equal(get_ip(ip + 16), peer.ip);
	assert_int_equal(ip[8], 64);
	assert_int_equal(ip[9], 1);
	assert_int_equal(ref_cksum(ip, hl), 0);
	icmp = ip + hl;
	assert_int_equal(icmp[0], 0);
	assert_int_equal(icmp[1], 0);
	assert_int_equal(ref_cksum(icmp, tot - hl), 0);
	/* identifier, sequence and data echoed */
	assert_memory_equal(icmp + 4, req + 14 + hl + 4, tot - hl - 4);
}

static void test_icmp_echo(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	uint8_t f[FRAME_MAX], out[FRAME_MAX], data[1000];
	static const size_t sizes[] = {0, 1, 56, 57, 1000};
	struct net_rx rx;
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	for (i = 0; i < sizeof(sizes) / sizeof(*sizes); i++) {
		len = mk_icmp(f, &peer, &self, 8, 0, 0xbeef, (uint16_t)i, data, sizes[i]);
		assert_int_equal(classify_copy(f, len, &rx, out), NET_ICMP_REPLY);
		assert_int_equal(rx.drop, NET_DROP_NONE);
		check_icmp_reply(f, out, rx.reply_len);
	}
	/* a short echo arrives padded to 60 bytes: the reply leaves the padding out */
	memset(f, 0xee, sizeof(f));
	len = mk_icmp(f, &peer, &self, 8, 0, 1, 2, data, 4);
	assert_int_equal(len, 46);
	assert_int_equal(classify_copy(f, 60, &rx, out), NET_ICMP_REPLY);
	assert_int_equal(rx.reply_len, 46);
	check_icmp_reply(f, out, rx.reply_len);
}

static void test_icmp_drops(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	uint8_t f[FRAME_MAX], data[32] = {9};
	size_t len, k;

	(void)state;
	len = mk_icmp(f, &peer, &self, 8, 0, 1, 1, data, sizeof(data));
	f[len - 1] ^= 0x40;
	expect_drop(f, len, NET_DROP_ICMP_MALFORMED);
	len = mk_icmp(f, &peer, &self, 0, 0, 1, 1, data, sizeof(data));
	expect_drop(f, len, NET_DROP_ICMP_IGNORED);
	len = mk_icmp(f, &peer, &self, 8, 1, 1, 1, data, sizeof(data));
	expect_drop(f, len, NET_DROP_ICMP_IGNORED);
	len = mk_icmp(f, &peer, &self, 3, 3, 1, 1, data, sizeof(data));
	expect_drop(f, len, NET_DROP_ICMP_IGNORED);
	/* an IP payload shorter than an ICMP header */
	for (k = 0; k < 8; k++) {
		mk_eth(f, self.mac, peer.mac, 0x0800);
		mk_ipv4(f, 1, peer.ip, self.ip, k, 0);
		memset(f + 34, 0, k);
		expect_drop(f, 34 + k, NET_DROP_ICMP_MALFORMED);
	}
}

/* ---- UDP and IPv4 --------------------------------------------------------- */

static void test_udp_to_us(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	uint8_t f[FRAME_MAX], out[FRAME_MAX];
	static const char msg[] = "hello, surge";
	struct net_rx rx;
	size_t len;
	int with;

	(void)state;
	for (with = 0; with < 2; with++) {
		len = mk_udp(f, &peer, &self, msg, sizeof(msg), with);
		assert_int_equal(classify_copy(f, len, &rx, out), NET_UDP);
		assert_int_equal(rx.drop, NET_DROP_NONE);
		assert_int_equal(rx.payload_len, sizeof(msg));
		assert_memory_equal(rx.payload, msg, sizeof(msg));
		assert_ptr_equal(rx.payload, out + 42);
		assert_memory_equal(rx.peer.mac, peer.mac, 6);
		assert_int_equal(rx.peer.ip, peer.ip);
		assert_int_equal(rx.peer.port, PEER_PORT);
	}
	/* an empty datagram */
	len = mk_udp(f, &peer, &self, NULL, 0, 1);
	assert_int_equal(classify_copy(f, len, &rx, out), NET_UDP);
	assert_int_equal(rx.payload_len, 0);
}

static void test_udp_padding_and_options(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	uint8_t f[FRAME_MAX], out[FRAME_MAX];
	struct net_rx rx;
	size_t len;

	(void)state;
	/* 3 bytes of payload: 45 bytes of frame, padded with junk to 60 */
	memset(f, 0xa5, sizeof(f));
	len = mk_udp(f, &peer, &self, "abc", 3, 1);
	assert_int_equal(len, 45);
	assert_int_equal(classify_copy(f, 60, &rx, out), NET_UDP);
	assert_int_equal(rx.payload_len, 3);
	assert_memory_equal(rx.payload, "abc", 3);

	/* UDP length shorter than the IP payload: the UDP length rules */
	len = mk_udp(f, &peer, &self, "abcdef", 6, 0);
	put16(f + 38, 8 + 2);
	udp_fix_cksum(f);
	assert_int_equal(classify_copy(f, len, &rx, out), NET_UDP);
	assert_int_equal(rx.payload_len, 2);
	assert_memory_equal(rx.payload, "ab", 2);

	/* a 24-byte IP header (4 bytes of options) */
	mk_eth(f, self.mac, peer.mac, 0x0800);
	mk_ipv4(f, 17, peer.ip, self.ip, 8 + 5, 4);
	put16(f + 38, PEER_PORT);
	put16(f + 40, SELF_PORT);
	put16(f + 42, 8 + 5);
	put16(f + 44, 0);
	memcpy(f + 46, "hello", 5);
	udp_fix_cksum(f);
	assert_int_equal(classify_copy(f, 51, &rx, out), NET_UDP);
	assert_int_equal(rx.payload_len, 5);
	assert_memory_equal(rx.payload, "hello", 5);
	assert_ptr_equal(rx.payload, out + 46);
}

static void test_udp_drops(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr(), to;
	uint8_t f[FRAME_MAX];
	static const char msg[] = "payload!";
	size_t len;

	(void)state;
	to = self;
	to.port = SELF_PORT + 1;
	len = mk_udp(f, &peer, &to, msg, sizeof(msg), 1);
	expect_drop(f, len, NET_DROP_UDP_PORT);

	to = self;
	to.ip = ip4(10, 0, 0, 3);
	len = mk_udp(f, &peer, &to, msg, sizeof(msg), 1);
	expect_drop(f, len, NET_DROP_IP_NOT_US);

	/* IPv4 must come unicast to our MAC */
	to = self;
	memcpy(to.mac, other_mac, 6);
	len = mk_udp(f, &peer, &to, msg, sizeof(msg), 1);
	expect_drop(f, len, NET_DROP_IP_NOT_US);
	memcpy(to.mac, bcast_mac, 6);
	len = mk_udp(f, &peer, &to, msg, sizeof(msg), 1);
	expect_drop(f, len, NET_DROP_IP_NOT_US);

	len = mk_udp(f, &peer, &self, msg, sizeof(msg), 1);
	f[14 + 8] ^= 1; /* TTL changed, checksum not */
	expect_drop(f, len, NET_DROP_IP_CHECKSUM);

	len = mk_udp(f, &peer, &self, msg, sizeof(msg), 1);
	f[len - 1] ^= 0x10;
	expect_drop(f, len, NET_DROP_UDP_CHECKSUM);

	/* fragments: more-fragments, an offset, both; DF alone is fine */
	len = mk_udp(f, &peer, &self, msg, sizeof(msg), 1);
	put16(f + 20, 0x2000);
	ip_fix_cksum(f);
	expect_drop(f, len, NET_DROP_IP_FRAGMENT);
	put16(f + 20, 0x0001);
	ip_fix_cksum(f);
	expect_drop(f, len, NET_DROP_IP_FRAGMENT);
	put16(f + 20, 0x20b9);
	ip_fix_cksum(f);
	expect_drop(f, len, NET_DROP_IP_FRAGMENT);
	put16(f + 20, 0x4000);
	ip_fix_cksum(f);
	{
		struct net_rx rx;

		assert_int_equal(classify_copy(f, len, &rx, NULL), NET_UDP);
	}

	len = mk_udp(f, &peer, &self, msg, sizeof(msg), 1);
	f[14 + 9] = 6; /* TCP */
	ip_fix_cksum(f);
	expect_drop(f, len, NET_DROP_IP_PROTO);

	/* header fields */
	len = mk_udp(f, &peer, &self, msg, sizeof(msg), 1);
	f[14] = 0x65; /* version 6 */
	ip_fix_cksum(f);
	expect_drop(f, len, NET_DROP_IP_MALFORMED);
	f[14] = 0x44; /* IHL 4 */
	expect_drop(f, len, NET_DROP_IP_MALFORMED);
	f[14] = 0x4f; /* IHL 15: 60 bytes, beyond the datagram */
	expect_drop(f, 14 + 40, NET_DROP_IP_MALFORMED);
	len = mk_udp(f, &peer, &self, msg, sizeof(msg), 1);
	put16(f + 16, (uint16_t)(len - 14 + 1)); /* total length past the frame */
	ip_fix_cksum(f);
	expect_drop(f, len, NET_DROP_IP_MALFORMED);
	put16(f + 16, 19); /* shorter than the header */
	ip_fix_cksum(f);
	expect_drop(f, len, NET_DROP_IP_MALFORMED);

	/* UDP length field */
	len = mk_udp(f, &peer, &self, msg, sizeof(msg), 0);
	put16(f + 38, 7);
	expect_drop(f, len, NET_DROP_UDP_MALFORMED);
	put16(f + 38, (uint16_t)(len - 34 + 1));
	expect_drop(f, len, NET_DROP_UDP_MALFORMED);
	/* an IP payload shorter than a UDP header */
	mk_eth(f, self.mac, peer.mac, 0x0800);
	mk_ipv4(f, 17, peer.ip, self.ip, 7, 0);
	expect_drop(f, 34 + 7, NET_DROP_UDP_MALFORMED);
}

/* Every prefix of a valid frame is safe, and none of them is accepted. */
static void test_truncated(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	uint8_t f[FRAME_MAX], data[64];
	size_t full[3], len, k;
	struct net_rx rx;
	enum net_verdict v;

	(void)state;
	memset(data, 0x5a, sizeof(data));
	for (k = 0; k < 3; k++) {
		if (k == 0)
			full[k] = mk_udp(f, &peer, &self, data, sizeof(data), 1);
		else if (k == 1)
			full[k] = mk_icmp(f, &peer, &self, 8, 0, 7, 7, data, sizeof(data));
		else
			full[k] = mk_arp(f, bcast_mac, 1, peer.mac, peer.ip, self.mac, self.ip);
		for (len = 0; len < full[k]; len++) {
			v = classify_copy(f, len, &rx, NULL);
			if (v != NET_DROP || rx.drop == NET_DROP_NONE || rx.drop >= NET_DROP_MAX)
				fail_msg("frame %zu truncated to %zu: verdict %d drop %d", k, len,
				         v, rx.drop);
		}
		v = classify_copy(f, full[k], &rx, NULL);
		assert_int_equal(v, k == 0 ? NET_UDP : k == 1 ? NET_ICMP_REPLY : NET_ARP_REPLY);
	}
}

/* ---- building ------------------------------------------------------------- */

/* Check a frame built by net_build_udp field by field against the reference. */
static void check_built(const uint8_t *b, int n, const struct net_addr *src,
                        const struct net_addr *dst, const uint8_t *payload, size_t plen)
{
	const uint8_t *ip = b + 14, *udp = b + 34;
	uint16_t c;
	uint8_t hdr[20];

	assert_int_equal(n, 42 + (int)plen);
	assert_memory_equal(b, dst->mac, 6);
	assert_memory_equal(b + 6, src->mac, 6);
	assert_int_equal(get16(b + 12), 0x0800);
	assert_int_equal(ip[0], 0x45);
	assert_int_equal(get16(ip + 2), 28 + plen);
	assert_int_equal(get16(ip + 6), 0x4000);
	assert_int_equal(ip[8], 64);
	assert_int_equal(ip[9], 17);
	assert_int_equal(get_ip(ip + 12), src->ip);
	assert_int_equal(get_ip(ip + 16), dst->ip);
	memcpy(hdr, ip, 20);
	hdr[10] = hdr[11] = 0;
	assert_int_equal(get16(ip + 10), ref_cksum(hdr, 20));
	assert_int_equal(ref_cksum(ip, 20), 0);
	assert_int_equal(get16(udp), src->port);
	assert_int_equal(get16(udp + 2), dst->port);
	assert_int_equal(get16(udp + 4), 8 + plen);
	/* the checksum the reference computes with the field zeroed, 0 sent as 0xffff */
	{
		uint8_t *copy = malloc(8 + plen);

		assert_non_null(copy);
		memcpy(copy, udp, 8 + plen);
		copy[6] = copy[7] = 0;
		c = ref_udp_cksum(ip, copy, 8 + plen);
		free(copy);
	}
	assert_int_equal(get16(udp + 6), c ? c : 0xffff);
	assert_true(get16(udp + 6) != 0);
	if (plen)
		assert_memory_equal(udp + 8, payload, plen);
}

static void test_build_udp(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	uint8_t b[FRAME_MAX], payload[1472];
	static const size_t sizes[] = {0, 1, 2, 17, 100, 1472};
	size_t i, k;
	int n;

	(void)state;
	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i ^ 0x3c);
	for (k = 0; k < sizeof(sizes) / sizeof(*sizes); k++) {
		memset(b, 0xcc, sizeof(b));
		n = net_build_udp(b, sizeof(b), &self, &peer, payload, sizes[k]);
		check_built(b, n, &self, &peer, payload, sizes[k]);
		/* the same again with the payload already in place */
		memset(b, 0xcc, sizeof(b));
		memcpy(b + NET_UDP_HDR_LEN, payload, sizes[k]);
		n = net_build_udp(b, sizeof(b), &self, &peer, b + NET_UDP_HDR_LEN, sizes[k]);
		check_built(b, n, &self, &peer, payload, sizes[k]);
	}
	/* a payload overlapping the headers it is moved behind */
	memcpy(b + 10, payload, 100);
	n = net_build_udp(b, sizeof(b), &self, &peer, b + 10, 100);
	check_built(b, n, &self, &peer, payload, 100);
}

static void test_build_zero_cksum(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	uint8_t b[128], p[8] = {1, 2, 3, 4, 5, 6, 0, 0}, ph[12];
	struct net_rx rx;
	uint16_t s;
	int n;

	(void)state;
	/*
	 * Choose the last payload word so that the one's-complement sum over
	 * pseudo-header, header and payload is 0xffff: the computed checksum is
	 * then 0, which UDP must send as 0xffff.
	 */
	n = net_build_udp(b, sizeof(b), &self, &peer, p, sizeof(p));
	assert_int_equal(n, 50);
	memcpy(ph, b + 26, 8);
	ph[8] = 0;
	ph[9] = 17;
	put16(ph + 10, 16);
	b[40] = b[41] = 0;
	s = ref_fold(ref_sum(b + 34, 16, ref_sum(ph, 12, 0)));
	put16(p + 6, (uint16_t)~s);
	n = net_build_udp(b, sizeof(b), &self, &peer, p, sizeof(p));
	assert_int_equal(n, 50);
	assert_int_equal(get16(b + 40), 0xffff);
	check_built(b, n, &self, &peer, p, sizeof(p));
	/* and the receiver takes 0xffff as a valid checksum, not as "none" */
	{
		struct net_addr me = peer;
		uint8_t *c = malloc((size_t)n);

		assert_non_null(c);
		memcpy(c, b, (size_t)n);
		assert_int_equal(net_classify(c, (size_t)n, &me, &rx), NET_UDP);
		assert_int_equal(rx.payload_len, sizeof(p));
		free(c);
	}
}

static void test_build_emsgsize(void **state)
{
	struct net_addr self = self_addr(), peer = peer_addr();
	static uint8_t big[70000], payload[70000];
	uint8_t b[64];
	int n;

	(void)state;
	assert_int_equal(net_build_udp(b, 0, &self, &peer, NULL, 0), -EMSGSIZE);
	assert_int_equal(net_build_udp(b, 41, &self, &peer, NULL, 0), -EMSGSIZE);
	assert_int_equal(net_build_udp(b, 42, &self, &peer, NULL, 0), 42);
	assert_int_equal(net_build_udp(b, 50, &self, &peer, payload, 9), -EMSGSIZE);
	assert_int_equal(net_build_udp(b, 51, &self, &peer, payload, 9), 51);
	assert_int_equal(net_build_udp(b, 64, &self, &peer, payload, SIZE_MAX), -EMSGSIZE);
	/* the IPv4 total length caps the payload at 65507 */
	assert_int_equal(net_build_udp(big, sizeof(big), &self, &peer, payload, 65508), -EMSGSIZE);
	n = net_build_udp(big, sizeof(big), &self, &peer, payload, 65507);
	assert_int_equal(n, 65507 + 42);
	assert_int_equal(get16(big + 16), 65535);
	check_built(big, n, &self, &peer, payload, 65507);
}

/* build → classify, random addresses and payloads */
static void test_roundtrip_random(void **state)
{
	uint8_t b[FRAME_MAX], payload[1500];
	struct net_addr src, dst;
	struct net_rx rx;
	int i, n;
	size_t plen, k;

	(void)state;
	rng_state = test_seed;
	for (i = 0; i < 5000; i++) {
		for (k = 0; k < 6; k++) {
			src.mac[k] = (uint8_t)rng_next();
			dst.mac[k] = (uint8_t)rng_next();
		}
		src.ip = (uint32_t)rng_next();
		dst.ip = (uint32_t)rng_next();
		src.port = (uint16_t)rng_next();
		dst.port = (uint16_t)rng_next();
		plen = (size_t)rng_below(sizeof(payload) - 27);
		for (k = 0; k < plen; k++)
			payload[k] = (uint8_t)rng_next();
		if (rng_below(2)) {
			n = net_build_udp(b, sizeof(b), &src, &dst, payload, plen);
		} else {
			memcpy(b + NET_UDP_HDR_LEN, payload, plen);
			n = net_build_udp(b, sizeof(b), &src, &dst, b + NET_UDP_HDR_LEN, plen);
		}
		if (i % 50 == 0)
			check_built(b, n, &src, &dst, payload, plen);
		assert_int_equal(n, 42 + (int)plen);
		assert_int_equal(net_classify(b, (size_t)n, &dst, &rx), NET_UDP);
		assert_int_equal(rx.payload_len, plen);
		assert_ptr_equal(rx.payload, b + NET_UDP_HDR_LEN);
		assert_memory_equal(rx.payload, payload, plen);
		assert_memory_equal(rx.peer.mac, src.mac, 6);
		assert_int_equal(rx.peer.ip, src.ip);
		assert_int_equal(rx.peer.port, src.port);
	}
}

/* ---- names and addresses ---------------------------------------------------- */

static void test_ip_text(void **state)
{
	static const char *const bad[] = {
	        "",         "1.2.3",      "1.2.3.4.5", "256.1.1.1",  " 1.2.3.4",
	        "1.2.3.4 ", "1.2.3.-4",   "0x1.2.3.4", "1..2.3",     "1.2.3.4/24",
	        "a.b.c.d",  "1.2.3.",     ".1.2.3",    "1.2.3.1000", "::1",
	        "01.2.3.4", "4294967295", "1.2.3.4\n", "1.2.3.4.",   "10.0.0.01",
	};
	char buf[16], small[8];
	uint32_t ip = 0xdeadbeef;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (net_ip_parse(bad[i], &ip) != -EINVAL)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_int_equal(ip, 0xdeadbeef);
	}
	assert_int_equal(net_ip_parse(NULL, &ip), -EINVAL);
	assert_int_equal(net_ip_parse("1.2.3.4", NULL), -EINVAL);

	assert_int_equal(net_ip_parse("10.0.0.1", &ip), 0);
	assert_int_equal(ip, ip4(10, 0, 0, 1));
	assert_int_equal(net_ip_parse("0.0.0.0", &ip), 0);
	assert_int_equal(ip, 0);
	assert_int_equal(net_ip_parse("255.255.255.255", &ip), 0);
	assert_int_equal(ip, 0xffffffffu);
	assert_int_equal(net_ip_parse("192.168.100.254", &ip), 0);
	assert_int_equal(ip, ip4(192, 168, 100, 254));

	assert_string_equal(net_ip_str(ip4(10, 0, 0, 1), buf, sizeof(buf)), "10.0.0.1");
	assert_string_equal(net_ip_str(0xffffffffu, buf, sizeof(buf)), "255.255.255.255");
	assert_string_equal(net_ip_str(0, buf, sizeof(buf)), "0.0.0.0");
	/* too small a buffer gives an empty string, never an overrun */
	assert_ptr_equal(net_ip_str(0xffffffffu, small, sizeof(small)), small);
	assert_string_equal(small, "");
	/* text and back */
	rng_state = test_seed ^ 0x1234;
	for (i = 0; i < 1000; i++) {
		uint32_t a = (uint32_t)rng_next(), b2;

		assert_int_equal(net_ip_parse(net_ip_str(a, buf, sizeof(buf)), &b2), 0);
		assert_int_equal(a, b2);
	}
}

static void test_drop_names(void **state)
{
	size_t i, j;

	(void)state;
	for (i = 0; i < NET_DROP_MAX; i++) {
		const char *n = net_drop_reason_name((enum net_drop_reason)i);

		assert_non_null(n);
		assert_true(strlen(n) > 0);
		assert_string_not_equal(n, "unknown");
		for (j = 0; j < i; j++)
			assert_string_not_equal(n, net_drop_reason_name((enum net_drop_reason)j));
	}
	assert_string_equal(net_drop_reason_name(NET_DROP_MAX), "unknown");
	assert_string_equal(net_drop_reason_name((enum net_drop_reason) - 1), "unknown");
}

int main(void)
{
	const char *env = getenv("SURGE_SEED");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_runt_and_ethertype),
	        cmocka_unit_test(test_arp_request),
	        cmocka_unit_test(test_arp_ignored_and_malformed),
	        cmocka_unit_test(test_icmp_echo),
	        cmocka_unit_test(test_icmp_drops),
	        cmocka_unit_test(test_udp_to_us),
	        cmocka_unit_test(test_udp_padding_and_options),
	        cmocka_unit_test(test_udp_drops),
	        cmocka_unit_test(test_truncated),
	        cmocka_unit_test(test_build_udp),
	        cmocka_unit_test(test_build_zero_cksum),
	        cmocka_unit_test(test_build_emsgsize),
	        cmocka_unit_test(test_roundtrip_random),
	        cmocka_unit_test(test_ip_text),
	        cmocka_unit_test(test_drop_names),
	};

	test_seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	printf("test_net: seed %" PRIu64 " (set SURGE_SEED to replay)\n", test_seed);
	fflush(stdout);
	return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
