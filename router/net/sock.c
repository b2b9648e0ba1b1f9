/* SPDX-License-Identifier: MIT */
/*
 * The kernel-socket port: one UDP socket, batched with recvmmsg/sendmmsg.
 * It serves where DPDK cannot, and is the baseline `make bench` measures
 * the DPDK port against.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "net.h"

int net_sock_open(struct net_sock *s, uint32_t ip, uint16_t port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
	int size = 32 << 20, ret;

	memset(s, 0, offsetof(struct net_sock, rx_peer));
	s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return -errno;
	/* bursts both ways; FORCE passes rmem_max as root, plain is best effort */
	if (setsockopt(s->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (setsockopt(s->fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	addr.sin_addr.s_addr = ip;
	if (bind(s->fd, (const struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ret = -errno;
		close(s->fd);
		s->fd = -1;
		return ret;
	}
	s->self.ip = ip;
	s->self.port = port;
	return 0;
}

unsigned net_sock_rx(struct net_sock *s, unsigned timeout_us)
{
	struct mmsghdr msgs[NET_SOCK_BURST];
	struct iovec iov[NET_SOCK_BURST];
	struct sockaddr_in from[NET_SOCK_BURST];
	struct timeval tv = {.tv_sec = timeout_us / 1000000u, .tv_usec = timeout_us % 1000000u};
	int n;

	for (unsigned i = 0; i < NET_SOCK_BURST; i++) {
		iov[i] = (struct iovec){.iov_base = s->rx_buf[i], .iov_len = NET_SOCK_DGRAM};
		msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &from[i],
		                                       .msg_namelen = sizeof(from[i]),
		                                       .msg_iov = &iov[i],
		                                       .msg_iovlen = 1}};
	}
	/* the timeout bounds the wait for the first datagram; the rest are taken if there */
	if (timeout_us != s->rx_timeout_us &&
	    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0)
		s->rx_timeout_us = timeout_us;
	n = recvmmsg(s->fd, msgs, NET_SOCK_BURST, MSG_WAITFORONE, NULL);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			s->rx_errors++;
		return 0;
	}
	for (int i = 0; i < n; i++) {
		s->rx_len[i] = (uint16_t)msgs[i].msg_len;
		s->rx_peer[i] = (struct net_addr){.ip = from[i].sin_addr.s_addr,
		                                  .port = ntohs(from[i].sin_port)};
	}
	return (unsigned)n;
}

void net_sock_tx_drain(struct net_sock *s)
{
	struct mmsghdr msgs[NET_SOCK_BURST];
	struct iovec iov[NET_SOCK_BURST];
	struct sockaddr_in to[NET_SOCK_BURST];
	unsigned done = 0;

	for (unsigned i = 0; i < s->nb_tx; i++) {
		to[i] = (struct sockaddr_in){.sin_family = AF_INET,
		                             .sin_port = htons(s->tx_peer[i].port),
		                             .sin_addr.s_addr = s->tx_peer[i].ip};
		iov[i] = (struct iovec){.iov_base = s->tx_buf[i], .iov_len = s->tx_len[i]};
		msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &to[i],
		                                       .msg_namelen = sizeof(to[i]),
		                                       .msg_iov = &iov[i],
		                                       .msg_iovlen = 1}};
	}
	while (done < s->nb_tx) {
		int n = sendmmsg(s->fd, msgs + done, s->nb_tx - done, 0);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			/* a datagram the kernel refuses is lost, as on a full NIC queue */
			s->tx_dropped++;
			done++;
			continue;
		}
		done += (unsigned)n;
	}
	s->nb_tx = 0;
}

uint8_t *net_sock_tx_buf(struct net_sock *s)
{
	if (s->nb_tx == NET_SOCK_BURST)
		net_sock_tx_drain(s);
	return s->tx_buf[s->nb_tx];
}

void net_sock_tx_commit(struct net_sock *s, size_t len, const struct net_addr *peer)
{
	s->tx_len[s->nb_tx] = (uint16_t)len;
	s->tx_peer[s->nb_tx] = *peer;
	s->nb_tx++;
}

void net_sock_close(struct net_sock *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}
