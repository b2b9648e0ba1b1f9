/* SPDX-License-Identifier: MIT */
/*
 * Ethernet / ARP / IPv4 / ICMP echo / UDP on raw frames.
 *
 * Frames are read and written through memcpy at offsets taken from DPDK's
 * header structs: rte_ether_hdr and rte_arp_hdr are 2-byte aligned, and a
 * frame handed in by a fuzzer or a test need not be, so they are never
 * dereferenced. rte_ipv4_hdr, rte_udp_hdr and rte_icmp_hdr are packed and may
 * be used as pointers on any address. Checksums are DPDK's (rte_raw_cksum and
 * friends), which work on plain memory without the EAL.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "net.h"

#define ETH_LEN    ((size_t)sizeof(struct rte_ether_hdr))
#define ETH_DST    offsetof(struct rte_ether_hdr, dst_addr)
#define ETH_SRC    offsetof(struct rte_ether_hdr, src_addr)
#define ETH_TYPE   offsetof(struct rte_ether_hdr, ether_type)
#define ARP_LEN    ((size_t)sizeof(struct rte_arp_hdr))
#define ARP_HRD    offsetof(struct rte_arp_hdr, arp_hardware)
#define ARP_PRO    offsetof(struct rte_arp_hdr, arp_protocol)
#define ARP_HLEN   offsetof(struct rte_arp_hdr, arp_hlen)
#define ARP_PLEN   offsetof(struct rte_arp_hdr, arp_plen)
#define ARP_OP     offsetof(struct rte_arp_hdr, arp_opcode)
#define ARP_SHA    offsetof(struct rte_arp_hdr, arp_data.arp_sha)
#define ARP_SIP    offsetof(struct rte_arp_hdr, arp_data.arp_sip)
#define ARP_THA    offsetof(struct rte_arp_hdr, arp_data.arp_tha)
#define ARP_TIP    offsetof(struct rte_arp_hdr, arp_data.arp_tip)
#define IP_MIN_LEN ((size_t)sizeof(struct rte_ipv4_hdr))
#define UDP_LEN    ((size_t)sizeof(struct rte_udp_hdr))
#define ICMP_LEN   ((size_t)sizeof(struct rte_icmp_hdr))
#define REPLY_TTL  64

_Static_assert(ETH_LEN + IP_MIN_LEN + UDP_LEN == NET_UDP_HDR_LEN, "header sizes");
_Static_assert(ETH_LEN + ARP_LEN == 42, "ARP frame size");

static const uint8_t mac_broadcast[RTE_ETHER_ADDR_LEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return rte_be_to_cpu_16(v);
}

static void wr16(uint8_t *p, uint16_t host)
{
	uint16_t v = rte_cpu_to_be_16(host);

	memcpy(p, &v, sizeof(v));
}

static enum net_verdict drop(struct net_rx *rx, enum net_drop_reason reason)
{
	rx->drop = reason;
	return NET_DROP;
}

/* One's-complement sum of two partial (non-complemented) checksums. */
static uint16_t cksum_add(uint16_t a, uint16_t b)
{
	uint32_t s = (uint32_t)a + b;

	return (uint16_t)((s & 0xffff) + (s >> 16));
}

/* ---- ARP ------------------------------------------------------------------ */

static enum net_verdict classify_arp(uint8_t *frame, size_t len, const struct net_addr *self,
                                     struct net_rx *rx)
{
	uint8_t *arp = frame + ETH_LEN;
	uint8_t req_sha[RTE_ETHER_ADDR_LEN];
	uint32_t tip, sip;

	/* requests are broadcast, but a host refreshing its cache asks unicast */
	if (memcmp(frame + ETH_DST, self->mac, RTE_ETHER_ADDR_LEN) != 0 &&
	    memcmp(frame + ETH_DST, mac_broadcast, RTE_ETHER_ADDR_LEN) != 0)
		return drop(rx, NET_DROP_ARP_IGNORED);
	if (len < ETH_LEN + ARP_LEN || rd16(arp + ARP_HRD) != RTE_ARP_HRD_ETHER ||
	    rd16(arp + ARP_PRO) != RTE_ETHER_TYPE_IPV4 || arp[ARP_HLEN] != RTE_ETHER_ADDR_LEN ||
	    arp[ARP_PLEN] != sizeof(uint32_t))
		return drop(rx, NET_DROP_ARP_MALFORMED);
	switch (rd16(arp + ARP_OP)) {
	case RTE_ARP_OP_REQUEST:
		break;
	case RTE_ARP_OP_REPLY:
		return drop(rx, NET_DROP_ARP_IGNORED);
	default:
		return drop(rx, NET_DROP_ARP_MALFORMED);
	}
	memcpy(&tip, arp + ARP_TIP, sizeof(tip));
	if (tip != self->ip)
		return drop(rx, NET_DROP_ARP_IGNORED);

	memcpy(&sip, arp + ARP_SIP, sizeof(sip));
	memcpy(req_sha, arp + ARP_SHA, RTE_ETHER_ADDR_LEN);
	/* answer the station that asked, whatever address the request went to */
	memcpy(frame + ETH_DST, frame + ETH_SRC, RTE_ETHER_ADDR_LEN);
	memcpy(frame + ETH_SRC, self->mac, RTE_ETHER_ADDR_LEN);
	wr16(arp + ARP_OP, RTE_ARP_OP_REPLY);
	memcpy(arp + ARP_THA, req_sha, RTE_ETHER_ADDR_LEN);
	memcpy(arp + ARP_TIP, &sip, sizeof(sip));
	memcpy(arp + ARP_SHA, self->mac, RTE_ETHER_ADDR_LEN);
	memcpy(arp + ARP_SIP, &self->ip, sizeof(self->ip));
	/* the NIC pads to the 60-byte minimum; the trailer of the request is not echoed */
	rx->reply_len = ETH_LEN + ARP_LEN;
	return NET_ARP_REPLY;
}

/* ---- ICMP ----------------------------------------------------------------- */

static enum net_verdict classify_icmp(uint8_t *frame, struct rte_ipv4_hdr *ip, size_t ip_len,
                                      size_t hdr_len, const struct net_addr *self,
                                      struct net_rx *rx)
{
	struct rte_icmp_hdr *icmp = (struct rte_icmp_hdr *)((uint8_t *)ip + hdr_len);
	size_t icmp_len = ip_len - hdr_len;
	uint32_t peer_ip;

	if (icmp_len < ICMP_LEN || rte_raw_cksum(icmp, icmp_len) != 0xffff)
		return drop(rx, NET_DROP_ICMP_MALFORMED);
	if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || icmp->icmp_code != 0)
		return drop(rx, NET_DROP_ICMP_IGNORED);

	/* identifier, sequence number and data are echoed unchanged */
	icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	icmp->icmp_cksum = 0;
	icmp->icmp_cksum = (uint16_t)~rte_raw_cksum(icmp, icmp_len);

	peer_ip = ip->src_addr;
	ip->src_addr = self->ip;
	ip->dst_addr = peer_ip;
	ip->time_to_live = REPLY_TTL;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);

	memcpy(frame + ETH_DST, frame + ETH_SRC, RTE_ETHER_ADDR_LEN);
	memcpy(frame + ETH_SRC, self->mac, RTE_ETHER_ADDR_LEN);
	rx->reply_len = ETH_LEN + ip_len;
	return NET_ICMP_REPLY;
}

/* ---- UDP ------------------------------------------------------------------ */

/* RFC 768: the checksum covers a pseudo-header with the UDP length, then the datagram. */
static int udp_cksum_ok(const struct rte_ipv4_hdr *ip, const struct rte_udp_hdr *udp,
                        size_t udp_len)
{
	struct {
		rte_be32_t src;
		rte_be32_t dst;
		uint8_t zero;
		uint8_t proto;
		rte_be16_t len;
	} __rte_packed phdr = {
	        .src = ip->src_addr,
	        .dst = ip->dst_addr,
	        .zero = 0,
	        .proto = IPPROTO_UDP,
	        .len = rte_cpu_to_be_16((uint16_t)udp_len),
	};

	return cksum_add(rte_raw_cksum(&phdr, sizeof(phdr)), rte_raw_cksum(udp, udp_len)) == 0xffff;
}

static enum net_verdict classify_udp(const uint8_t *frame, const struct rte_ipv4_hdr *ip,
                                     size_t ip_len, size_t hdr_len, const struct net_addr *self,
                                     struct net_rx *rx)
{
	const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)((const uint8_t *)ip + hdr_len);
	size_t avail = ip_len - hdr_len, udp_len;

	if (avail < UDP_LEN)
		return drop(rx, NET_DROP_UDP_MALFORMED);
	udp_len = rte_be_to_cpu_16(udp->dgram_len);
	if (udp_len < UDP_LEN || udp_len > avail)
		return drop(rx, NET_DROP_UDP_MALFORMED);
	/* zero: the sender computed none, which IPv4 allows */
	if (udp->dgram_cksum != 0 && !udp_cksum_ok(ip, udp, udp_len))
		return drop(rx, NET_DROP_UDP_CHECKSUM);
	if (rte_be_to_cpu_16(udp->dst_port) != self->port)
		return drop(rx, NET_DROP_UDP_PORT);

	memcpy(rx->peer.mac, frame + ETH_SRC, RTE_ETHER_ADDR_LEN);
	rx->peer.ip = ip->src_addr;
	rx->peer.port = rte_be_to_cpu_16(udp->src_port);
	rx->payload = (const uint8_t *)udp + UDP_LEN;
	rx->payload_len = udp_len - UDP_LEN;
	return NET_UDP;
}

/* ---- IPv4 ----------------------------------------------------------------- */

static enum net_verdict classify_ipv4(uint8_t *frame, size_t len, const struct net_addr *self,
                                      struct net_rx *rx)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(frame + ETH_LEN);
	size_t avail = len - ETH_LEN, hdr_len, ip_len;
	uint16_t frag;

	/* we answer ARP with our own address: anything else is not for us */
	if (memcmp(frame + ETH_DST, self->mac, RTE_ETHER_ADDR_LEN) != 0)
		return drop(rx, NET_DROP_IP_NOT_US);
	if (avail < IP_MIN_LEN || (ip->version_ihl >> 4) != IPVERSION)
		return drop(rx, NET_DROP_IP_MALFORMED);
	hdr_len = (size_t)(ip->version_ihl & RTE_IPV4_HDR_IHL_MASK) * RTE_IPV4_IHL_MULTIPLIER;
	ip_len = rte_be_to_cpu_16(ip->total_length);
	/* frames shorter than 60 bytes arrive padded: trust the total length, not len */
	if (hdr_len < IP_MIN_LEN || ip_len < hdr_len || ip_len > avail)
		return drop(rx, NET_DROP_IP_MALFORMED);
	if (rte_raw_cksum(ip, hdr_len) != 0xffff)
		return drop(rx, NET_DROP_IP_CHECKSUM);
	frag = rte_be_to_cpu_16(ip->fragment_offset);
	if (frag & (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))
		return drop(rx, NET_DROP_IP_FRAGMENT);
	if (ip->dst_addr != self->ip)
		return drop(rx, NET_DROP_IP_NOT_US);

	switch (ip->next_proto_id) {
	case IPPROTO_UDP:
		return classify_udp(frame, ip, ip_len, hdr_len, self, rx);
	case IPPROTO_ICMP:
		return classify_icmp(frame, ip, ip_len, hdr_len, self, rx);
	default:
		return drop(rx, NET_DROP_IP_PROTO);
	}
}

enum net_verdict net_classify(uint8_t *frame, size_t len, const struct net_addr *self,
                              struct net_rx *rx)
{
	memset(rx, 0, sizeof(*rx));
	if (len < ETH_LEN)
		return drop(rx, NET_DROP_RUNT);
	/* an 802.1Q tag lands here too: the router's port is untagged */
	switch (rd16(frame + ETH_TYPE)) {
	case RTE_ETHER_TYPE_IPV4:
		return classify_ipv4(frame, len, self, rx);
	case RTE_ETHER_TYPE_ARP:
		return classify_arp(frame, len, self, rx);
	default:
		return drop(rx, NET_DROP_ETHERTYPE);
	}
}

/* ---- building ------------------------------------------------------------- */

int net_build_udp(uint8_t *buf, size_t cap, const struct net_addr *src, const struct net_addr *dst,
                  const void *payload, size_t payload_len)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(buf + ETH_LEN);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(buf + ETH_LEN + IP_MIN_LEN);
	size_t ip_len;

	if (payload_len > UINT16_MAX - IP_MIN_LEN - UDP_LEN || cap < NET_UDP_HDR_LEN ||
	    payload_len > cap - NET_UDP_HDR_LEN)
		return -EMSGSIZE;
	ip_len = IP_MIN_LEN + UDP_LEN + payload_len;
	if (payload_len && payload != buf + NET_UDP_HDR_LEN)
		memmove(buf + NET_UDP_HDR_LEN, payload, payload_len);

	memcpy(buf + ETH_DST, dst->mac, RTE_ETHER_ADDR_LEN);
	memcpy(buf + ETH_SRC, src->mac, RTE_ETHER_ADDR_LEN);
	wr16(buf + ETH_TYPE, RTE_ETHER_TYPE_IPV4);

	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16((uint16_t)ip_len);
	/* DF set: RFC 6864 lets atomic datagrams carry any id */
	ip->packet_id = 0;
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = REPLY_TTL;
	ip->next_proto_id = IPPROTO_UDP;
	ip->hdr_checksum = 0;
	ip->src_addr = src->ip;
	ip->dst_addr = dst->ip;
	ip->hdr_checksum = rte_ipv4_cksum(ip);

	udp->src_port = rte_cpu_to_be_16(src->port);
	udp->dst_port = rte_cpu_to_be_16(dst->port);
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(UDP_LEN + payload_len));
	udp->dgram_cksum = 0;
	/* sends a computed zero as 0xffff (RFC 768) */
	udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
	return (int)(ETH_LEN + ip_len);
}

/* ---- names and addresses ---------------------------------------------------- */

static const char *const drop_names[NET_DROP_MAX] = {
        [NET_DROP_NONE] = "none",
        [NET_DROP_RUNT] = "runt",
        [NET_DROP_ETHERTYPE] = "ethertype",
        [NET_DROP_ARP_MALFORMED] = "arp_malformed",
        [NET_DROP_ARP_IGNORED] = "arp_ignored",
        [NET_DROP_IP_MALFORMED] = "ip_malformed",
        [NET_DROP_IP_CHECKSUM] = "ip_checksum",
        [NET_DROP_IP_FRAGMENT] = "ip_fragment",
        [NET_DROP_IP_NOT_US] = "ip_not_us",
        [NET_DROP_IP_PROTO] = "ip_proto",
        [NET_DROP_ICMP_MALFORMED] = "icmp_malformed",
        [NET_DROP_ICMP_IGNORED] = "icmp_ignored",
        [NET_DROP_UDP_MALFORMED] = "udp_malformed",
        [NET_DROP_UDP_CHECKSUM] = "udp_checksum",
        [NET_DROP_UDP_PORT] = "udp_port",
};

const char *net_drop_reason_name(enum net_drop_reason reason)
{
	if ((unsigned int)reason >= NET_DROP_MAX || !drop_names[reason])
		return "unknown";
	return drop_names[reason];
}

char *net_ip_str(uint32_t ip, char *buf, size_t len)
{
	struct in_addr a = {.s_addr = ip};

	if (len && !inet_ntop(AF_INET, &a, buf, (socklen_t)(len > INT32_MAX ? INT32_MAX : len)))
		buf[0] = '\0';
	return buf;
}

int net_ip_parse(const char *text, uint32_t *ip)
{
	struct in_addr a;

	/* inet_pton takes exactly four decimal parts: no octal, hex or short forms */
	if (!text || !ip || inet_pton(AF_INET, text, &a) != 1)
		return -EINVAL;
	*ip = a.s_addr;
	return 0;
}
