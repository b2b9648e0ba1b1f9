/* SPDX-License-Identifier: MIT */
/*
 * net: the packet core. Ethernet / ARP / IPv4 / ICMP echo / UDP parsing and
 * building on raw frames, and the DPDK port (PCI NIC or any vdev).
 *
 * Knows nothing of skills, agents or protobuf: it hands UDP payloads up and
 * takes UDP payloads down.
 */
#ifndef SURGE_NET_H
#define SURGE_NET_H

#include <stddef.h>
#include <stdint.h>

#include <rte_mbuf.h>
#include <rte_mempool.h>

/* One end of a UDP flow as seen on the wire. */
struct net_addr {
	uint8_t mac[6]; /* Ethernet address */
	uint32_t ip;    /* IPv4 address, network byte order */
	uint16_t port;  /* UDP port, host byte order */
};

/* What a received frame turned out to be. */
enum net_verdict {
	NET_UDP = 0,    /* a UDP datagram to our address and port: rx->payload is set */
	NET_ARP_REPLY,  /* an ARP request for our address: the reply was built in place */
	NET_ICMP_REPLY, /* an ICMP echo request to us: the reply was built in place */
	NET_DROP,       /* dropped: rx->drop says why */
};

/* Why a received frame was dropped; each has a counter in the router. */
enum net_drop_reason {
	NET_DROP_NONE = 0,
	NET_DROP_RUNT,           /* shorter than an Ethernet header */
	NET_DROP_ETHERTYPE,      /* neither IPv4 nor ARP */
	NET_DROP_ARP_MALFORMED,  /* not Ethernet/IPv4 ARP, or truncated */
	NET_DROP_ARP_IGNORED,    /* an ARP reply, or a request for another address */
	NET_DROP_IP_MALFORMED,   /* bad version, header length or total length */
	NET_DROP_IP_CHECKSUM,    /* IPv4 header checksum wrong */
	NET_DROP_IP_FRAGMENT,    /* fragments are not reassembled: datagrams fit the MTU */
	NET_DROP_IP_NOT_US,      /* destination is not our address */
	NET_DROP_IP_PROTO,       /* neither UDP nor ICMP */
	NET_DROP_ICMP_MALFORMED, /* truncated or checksum wrong */
	NET_DROP_ICMP_IGNORED,   /* an ICMP type other than echo request */
	NET_DROP_UDP_MALFORMED,  /* truncated or length field inconsistent */
	NET_DROP_UDP_CHECKSUM,   /* UDP checksum present and wrong */
	NET_DROP_UDP_PORT,       /* not our UDP port */
	NET_DROP_MAX
};

/* Result of net_classify(). */
struct net_rx {
	enum net_drop_reason drop; /* NET_DROP_NONE unless the verdict is NET_DROP */
	struct net_addr peer;      /* sender's MAC, IPv4 and UDP port (valid for NET_UDP) */
	const uint8_t *payload;    /* UDP payload inside the frame (NET_UDP) */
	size_t payload_len;        /* its length */
	size_t reply_len;          /* frame length of the reply built in place (ARP/ICMP) */
};

/*
 * Classify one Ethernet frame addressed to `self` (its MAC, IPv4 and UDP
 * port). For ARP requests and ICMP echo requests the reply is written over
 * the frame in place (addresses swapped, checksums recomputed) and its length
 * put in rx->reply_len; the caller sends the same buffer back.
 * ARP may come broadcast or to self->mac; its reply is 42 bytes (the NIC pads
 * it to the 60-byte minimum). IPv4 must come unicast to self->mac, else it is
 * NET_DROP_IP_NOT_US. Trailing Ethernet padding after the IPv4 total length
 * is ignored. The frame is left untouched unless a reply is built.
 * Never reads beyond `len`; any input is safe.
 */
enum net_verdict net_classify(uint8_t *frame, size_t len, const struct net_addr *self,
                              struct net_rx *rx);

/* Bytes of Ethernet + IPv4 + UDP headers in front of a payload. */
#define NET_UDP_HDR_LEN 42u

/*
 * Write an Ethernet/IPv4/UDP frame carrying `payload` from `src` to `dst`
 * into `buf`, with the IPv4 header checksum and the UDP checksum computed.
 * `payload` may already sit at buf + NET_UDP_HDR_LEN (it is then not copied).
 * Returns the frame length, or -EMSGSIZE when it does not fit in `cap`
 * or the IPv4 total length would exceed 65535.
 */
int net_build_udp(uint8_t *buf, size_t cap, const struct net_addr *src, const struct net_addr *dst,
                  const void *payload, size_t payload_len);

/* A short lower-case name of a drop reason, for counters and logs. */
const char *net_drop_reason_name(enum net_drop_reason reason);

/* Format an IPv4 address (network order) into buf (>= 16 bytes); returns buf. */
char *net_ip_str(uint32_t ip, char *buf, size_t len);

/* Parse dotted-quad IPv4 text into network order. Returns 0 or -EINVAL. */
int net_ip_parse(const char *text, uint32_t *ip);

/* ---- the DPDK port -------------------------------------------------------- */

/* Settings of the one port; zero fields take the defaults in brackets. */
struct net_port_conf {
	uint16_t port_id;  /* DPDK port id (after rte_eal_init, vdevs come first) [0] */
	uint16_t rx_desc;  /* rx descriptors [1024] */
	uint16_t tx_desc;  /* tx descriptors [1024] */
	uint32_t nb_mbufs; /* mbufs in the pool [8191] */
	uint16_t mtu;      /* IP MTU; payloads larger than mtu - 28 are refused [1500] */
};

struct net_port {
	uint16_t port_id;         /* DPDK port id */
	uint16_t mtu;             /* IP MTU in force */
	uint8_t mac[6];           /* the port's Ethernet address */
	struct rte_mempool *pool; /* mbufs for rx and tx */
	uint64_t tx_dropped;      /* frames the port did not take (partial tx_burst) */
};

/*
 * Configure and start the port (one rx and one tx queue, promiscuous off).
 * Call after rte_eal_init(). Returns 0, or a negative errno: -ENODEV when
 * the port id does not exist, -ENOMEM when the mbuf pool cannot be created,
 * -EINVAL when conf->mtu is outside 68..9000, or what the driver returned.
 * On failure nothing stays allocated (the device may have been closed).
 */
int net_port_open(struct net_port *port, const struct net_port_conf *conf);

/* Receive up to n frames. Returns how many. */
uint16_t net_port_rx(struct net_port *port, struct rte_mbuf **pkts, uint16_t n);

/*
 * Send n frames. Frames the port does not take are freed and counted in
 * port->tx_dropped. Returns how many were taken.
 */
uint16_t net_port_tx(struct net_port *port, struct rte_mbuf **pkts, uint16_t n);

/* Stop and close the port and free its pool. Safe on a port never opened. */
void net_port_close(struct net_port *port);

/* ---- the kernel-socket port ------------------------------------------------ */
/*
 * Where DPDK cannot run (and as the baseline surge is measured against): one
 * kernel UDP socket, batched with recvmmsg/sendmmsg (one system call per
 * burst, not per datagram). The kernel does ARP, ICMP and the checksums.
 */

#define NET_SOCK_BURST 32u   /* datagrams per recvmmsg / sendmmsg */
#define NET_SOCK_DGRAM 2048u /* largest datagram handled */

struct net_sock {
	int fd;                                  /* the UDP socket */
	struct net_addr self;                    /* bound address (mac unused) */
	uint64_t rx_errors;                      /* recvmmsg failures other than timeouts */
	uint64_t tx_dropped;                     /* datagrams sendmmsg did not take */
	unsigned nb_tx;                          /* datagrams waiting in tx_buf */
	unsigned rx_timeout_us;                  /* SO_RCVTIMEO in force */
	struct net_addr rx_peer[NET_SOCK_BURST]; /* sender of each received datagram */
	uint16_t rx_len[NET_SOCK_BURST];         /* its length */
	uint8_t rx_buf[NET_SOCK_BURST][NET_SOCK_DGRAM];
	uint8_t tx_buf[NET_SOCK_BURST][NET_SOCK_DGRAM];
	struct net_addr tx_peer[NET_SOCK_BURST];
	uint16_t tx_len[NET_SOCK_BURST];
};

/*
 * Bind a UDP socket to ip:port (network-order ip; 0 = any). Returns 0 or a
 * negative errno of socket/bind.
 */
int net_sock_open(struct net_sock *s, uint32_t ip, uint16_t port);

/*
 * Receive up to NET_SOCK_BURST datagrams, waiting at most timeout_us for the
 * first. Returns how many (datagram i is rx_buf[i], rx_len[i], rx_peer[i]),
 * 0 on timeout.
 */
unsigned net_sock_rx(struct net_sock *s, unsigned timeout_us);

/*
 * The buffer for the next datagram to send (NET_SOCK_DGRAM bytes), sending
 * the batch first when it is full. Commit it with net_sock_tx_commit.
 */
uint8_t *net_sock_tx_buf(struct net_sock *s);

/* Queue the datagram written into the last net_sock_tx_buf for peer. */
void net_sock_tx_commit(struct net_sock *s, size_t len, const struct net_addr *peer);

/* Send every queued datagram (sendmmsg). Those not taken are counted in tx_dropped. */
void net_sock_tx_drain(struct net_sock *s);

/* Close the socket. Safe on one never opened (fd < 0). */
void net_sock_close(struct net_sock *s);

#endif /* SURGE_NET_H */
