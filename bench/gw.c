/* SPDX-License-Identifier: MIT */
/*
 * bench: the gateway client on a kernel UDP socket.
 *
 * Outbound frames live in a ring of slots indexed by seq. An envelope is
 * serialized straight into the body of the frame being filled (as a Frame
 * field 4), so nothing points at caller memory; the Packet and Frame headers
 * (gateway_id, frame length, epoch, seq, ack, sent_ns) are written only when
 * the frame goes out, into a small header beside it (two iovecs), which lets
 * a retransmission carry the current ack. Protobuf does not care that
 * sent_ns (field 5) comes before the msgs (field 4).
 *
 * Seqs, for the frames of this epoch:
 *   acked                 the router has every frame up to it; held: (acked, tx_seq]
 *   sent_seq <= tx_seq    (sent_seq, tx_seq] are closed but not sent yet
 *   tx_seq + 1            the frame being filled, when cur_nb > 0
 * Received router frames go through wire_rx_seq, so the cumulative ack stays
 * right across gaps and duplicates are never handed on.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "wire.h"

#define GW_SLOTS       GW_MAX_IN_FLIGHT /* the ring of frames in flight (power of two) */
#define GW_HDR_MAX     53u              /* Packet (1+5, 1+2) and Frame (4 x (1+10)) headers */
#define GW_BODY_MAX    (GW_MAX_DATAGRAM - GW_HDR_MAX)
#define GW_TX_BATCH    32u   /* frames per sendmmsg */
#define GW_RX_BATCH    32u   /* datagrams per recvmmsg */
#define GW_RX_BUF      2048u /* larger than any datagram we accept, to see oversize ones */
#define GW_RX_ROUNDS   8u    /* recvmmsg calls per client per poll, for fairness */
#define GW_ARENA_BYTES (512u * 1024u)
#define GW_SEND_EARLY  64u /* queued frames that make gw_add send without waiting */
#define GW_SOCKBUF     (8 * 1024 * 1024)
#define GW_RTO_MAX_NS  (2000000000u)

#define PB_TAG(field, wt) (((field) << 3) | (wt))

_Static_assert((GW_SLOTS & (GW_SLOTS - 1)) == 0, "ring size must be a power of two");
/* the router drops frames more than WIRE_WINDOW ahead of its ack: never send any */
_Static_assert(GW_SLOTS <= WIRE_WINDOW, "ring larger than the router's window");
_Static_assert(GW_BODY_MAX < 16384, "frame length must fit a 2-byte varint");

struct gw_slot {
	uint64_t seq;              /* frame held here */
	uint64_t last_tx_ns;       /* last (re)transmission */
	uint32_t retries;          /* retransmissions so far */
	uint16_t len;              /* body bytes */
	uint16_t nb_env;           /* envelopes in the body */
	uint8_t body[GW_BODY_MAX]; /* Frame field 4 entries, serialized */
};

struct gw_client {
	int fd;
	uint32_t id;             /* gateway id */
	uint64_t epoch;          /* our boot id */
	uint64_t tx_seq;         /* last closed frame */
	uint64_t sent_seq;       /* last frame handed to the kernel */
	uint64_t acked;          /* router's cumulative ack */
	struct gw_slot *slots;   /* GW_SLOTS */
	struct wire_rx_seq rx;   /* router frames processed */
	bool joined;             /* a router frame with a seq was seen */
	bool ack_owed;           /* router frames not yet acknowledged */
	uint64_t ack_owed_ns;    /* since when */
	struct wire_arena arena; /* decoded datagram; reset per datagram */
	void *arena_mem;
	uint8_t (*rxbuf)[GW_RX_BUF]; /* GW_RX_BATCH buffers */
	struct mmsghdr rxmsg[GW_RX_BATCH];
	struct iovec rxiov[GW_RX_BATCH];
	struct mmsghdr txmsg[GW_TX_BATCH];
	struct iovec txiov[GW_TX_BATCH][2];
	uint8_t txhdr[GW_TX_BATCH][GW_HDR_MAX];
	struct gw_stats stats;
};

/* ---- small helpers -------------------------------------------------------- */

uint64_t gw_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

static size_t varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

int gw_parse_addr(const char *text, uint16_t default_port, struct sockaddr_in *out)
{
	char host[INET_ADDRSTRLEN];
	const char *colon;
	unsigned long port = default_port;
	size_t hlen;

	if (!text || !out)
		return -EINVAL;
	colon = strchr(text, ':');
	hlen = colon ? (size_t)(colon - text) : strlen(text);
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (colon) {
		char *end;

		errno = 0;
		port = strtoul(colon + 1, &end, 10);
		if (errno || end == colon + 1 || *end || port == 0 || port > 65535)
			return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
		return -EINVAL;
	return 0;
}

/* ---- construction --------------------------------------------------------- */

struct gw_client *gw_open(uint32_t gateway_id, const struct sockaddr_in *router,
                          const struct sockaddr_in *local)
{
	struct gw_client *c;
	int err, size = GW_SOCKBUF;

	if (gateway_id == 0 || !router) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto out_nomem;
	c->slots = calloc(GW_SLOTS, sizeof(*c->slots));
	if (!c->slots)
		goto out_free_client;
	c->rxbuf = malloc(GW_RX_BATCH * sizeof(*c->rxbuf));
	if (!c->rxbuf)
		goto out_free_slots;
	c->arena_mem = malloc(GW_ARENA_BYTES);
	if (!c->arena_mem)
		goto out_free_rxbuf;
	wire_arena_init(&c->arena, c->arena_mem, GW_ARENA_BYTES);

	c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		goto out_free_arena;
	/*
	 * Best effort: bursts of frames both ways. The *FORCE variants (root, as
	 * in the test namespaces) pass the host's [rw]mem_max without changing it.
	 */
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	if (local && bind(c->fd, (const struct sockaddr *)local, sizeof(*local)) < 0)
		goto out_close_fd;
	if (connect(c->fd, (const struct sockaddr *)router, sizeof(*router)) < 0)
		goto out_close_fd;

	c->id = gateway_id;
	c->epoch = realtime_ns();
	for (unsigned i = 0; i < GW_RX_BATCH; i++) {
		c->rxiov[i].iov_base = c->rxbuf[i];
		c->rxiov[i].iov_len = GW_RX_BUF;
		c->rxmsg[i].msg_hdr.msg_iov = &c->rxiov[i];
		c->rxmsg[i].msg_hdr.msg_iovlen = 1;
	}
	for (unsigned i = 0; i < GW_TX_BATCH; i++) {
		c->txiov[i][0].iov_base = c->txhdr[i];
		c->txmsg[i].msg_hdr.msg_iov = c->txiov[i];
		c->txmsg[i].msg_hdr.msg_iovlen = 2;
	}
	return c;

out_close_fd:
	err = errno;
	close(c->fd);
	errno = err;
out_free_arena:
	err = errno;
	free(c->arena_mem);
	errno = err;
out_free_rxbuf:
	err = errno;
	free(c->rxbuf);
	errno = err;
out_free_slots:
	err = errno;
	free(c->slots);
	errno = err;
out_free_client:
	err = errno;
	free(c);
	errno = err;
	return NULL;
out_nomem:
	errno = ENOMEM;
	return NULL;
}

void gw_close(struct gw_client *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c->arena_mem);
	free(c->rxbuf);
	free(c->slots);
	free(c);
}

int gw_fd(const struct gw_client *c)
{
	return c->fd;
}

uint32_t gw_id(const struct gw_client *c)
{
	return c->id;
}

const struct gw_stats *gw_stats(const struct gw_client *c)
{
	return &c->stats;
}

uint64_t gw_unacked(const struct gw_client *c)
{
	return c->sent_seq > c->acked ? c->sent_seq - c->acked : 0;
}

/* ---- transmit ------------------------------------------------------------- */

static struct gw_slot *slot_of(const struct gw_client *c, uint64_t seq)
{
	return &c->slots[seq & (GW_SLOTS - 1)];
}

/* Packet and Frame headers of a frame whose body is body_len bytes; returns their length. */
static size_t encode_header(const struct gw_client *c, uint8_t *out, uint64_t seq, size_t body_len)
{
	uint8_t fh[4 * 11];
	size_t fl = 0, off = 0;

	/* proto3 leaves zero-valued fields off the wire; the epoch never is zero */
	fh[fl++] = PB_TAG(1u, 0u);
	fl += put_varint(fh + fl, c->epoch);
	if (seq) {
		fh[fl++] = PB_TAG(2u, 0u);
		fl += put_varint(fh + fl, seq);
	}
	if (c->rx.ack) {
		fh[fl++] = PB_TAG(3u, 0u);
		fl += put_varint(fh + fl, c->rx.ack);
	}
	fh[fl++] = PB_TAG(5u, 0u);
	fl += put_varint(fh + fl, realtime_ns());

	out[off++] = PB_TAG(1u, 0u);
	off += put_varint(out + off, c->id);
	out[off++] = PB_TAG(2u, 2u);
	off += put_varint(out + off, fl + body_len);
	memcpy(out + off, fh, fl);
	return off + fl;
}

/* The router has every frame up to ack: release them. */
static void on_peer_ack(struct gw_client *c, uint64_t ack)
{
	/* an ack beyond what we sent belongs to another epoch of ours: ignore it */
	if (ack <= c->acked || ack > c->sent_seq)
		return;
	c->acked = ack;
	c->stats.peer_ack = ack;
}

/* Send the frames of [first, last] (at most GW_TX_BATCH); returns how many went, or -errno. */
static int send_frames(struct gw_client *c, uint64_t first, uint64_t last, uint64_t now)
{
	unsigned n = 0;
	int sent;

	for (uint64_t seq = first; seq <= last && n < GW_TX_BATCH; seq++, n++) {
		struct gw_slot *s = slot_of(c, seq);

		c->txiov[n][0].iov_len = encode_header(c, c->txhdr[n], seq, s->len);
		c->txiov[n][1].iov_base = s->body;
		c->txiov[n][1].iov_len = s->len;
	}
	sent = sendmmsg(c->fd, c->txmsg, n, MSG_DONTWAIT);
	if (sent < 0)
		return -errno;
	for (int i = 0; i < sent; i++) {
		struct gw_slot *s = slot_of(c, first + (uint64_t)i);

		s->last_tx_ns = now;
		c->stats.tx_bytes += c->txiov[i][0].iov_len + s->len;
	}
	/* every frame carries our ack */
	if (sent > 0)
		c->ack_owed = false;
	return sent;
}

/* Send the closed frames not sent yet. */
static int send_queued(struct gw_client *c)
{
	uint64_t now = gw_now_ns();

	while (c->sent_seq < c->tx_seq) {
		uint64_t first = c->sent_seq + 1;
		int sent = send_frames(c, first, c->tx_seq, now);

		if (sent == -EAGAIN || sent == -EWOULDBLOCK || sent == -ENOBUFS || sent == 0) {
			c->stats.tx_full++;
			return 0;
		}
		if (sent < 0) {
			/* ICMP unreachable and the like: retransmission will try this frame again
			 */
			struct gw_slot *s = slot_of(c, first);

			s->last_tx_ns = now;
			c->stats.tx_errors++;
			c->stats.tx_frames++;
			c->stats.tx_envelopes += s->nb_env;
			c->sent_seq = first;
			return sent;
		}
		for (int i = 0; i < sent; i++)
			c->stats.tx_envelopes += slot_of(c, first + (uint64_t)i)->nb_env;
		c->stats.tx_frames += (uint64_t)sent;
		c->sent_seq += (uint64_t)sent;
	}
	return 0;
}

/* The frame being filled, seq tx_seq + 1. */
static struct gw_slot *cur_slot(struct gw_client *c)
{
	return slot_of(c, c->tx_seq + 1);
}

/* Is the frame being filled started (its slot claimed, an envelope in it)? */
static bool cur_started(struct gw_client *c)
{
	const struct gw_slot *s = cur_slot(c);

	/* a slot still holding the frame GW_SLOTS before is not ours yet */
	return s->seq == c->tx_seq + 1 && s->nb_env > 0;
}

static void close_frame(struct gw_client *c)
{
	if (cur_started(c))
		c->tx_seq++;
}

/*
 * Make the slot of seq tx_seq + 1 free to fill: the frame GW_SLOTS before it
 * must be acknowledged. A frame is never given up: a gap the router can no
 * longer fill would stall its cumulative ack, and with it everything after.
 */
static int claim_slot(struct gw_client *c)
{
	uint64_t seq = c->tx_seq + 1;
	struct gw_slot *s = slot_of(c, seq);

	if (seq > GW_SLOTS && seq - GW_SLOTS > c->acked) {
		c->stats.tx_window_full++;
		return -ENOBUFS;
	}
	s->seq = seq;
	s->len = 0;
	s->nb_env = 0;
	s->retries = 0;
	s->last_tx_ns = 0;
	return 0;
}

int gw_add(struct gw_client *c, const Surge__V1__Envelope *env)
{
	struct gw_slot *s;
	size_t size, need;
	int ret;

	if (!c || !env || env->body_case == SURGE__V1__ENVELOPE__BODY__NOT_SET)
		return -EINVAL;
	size = surge__v1__envelope__get_packed_size(env);
	need = 1 + varint_len(size) + size;
	if (need > GW_BODY_MAX)
		return -EMSGSIZE;

	s = cur_slot(c);
	if (cur_started(c) && (s->nb_env >= GW_MAX_ENVELOPES || s->len + need > GW_BODY_MAX)) {
		close_frame(c);
		if (c->tx_seq - c->sent_seq >= GW_SEND_EARLY)
			send_queued(c);
		s = cur_slot(c);
	}
	if (!cur_started(c)) {
		ret = claim_slot(c);
		if (ret < 0)
			return ret;
	}
	s->body[s->len++] = PB_TAG(4u, 2u);
	s->len += (uint16_t)put_varint(s->body + s->len, size);
	s->len += (uint16_t)surge__v1__envelope__pack(env, s->body + s->len);
	s->nb_env++;
	return 0;
}

int gw_flush(struct gw_client *c)
{
	close_frame(c);
	return send_queued(c);
}

static int send_ack(struct gw_client *c)
{
	uint8_t buf[GW_HDR_MAX];
	size_t len = encode_header(c, buf, 0, 0);

	if (send(c->fd, buf, len, MSG_DONTWAIT) < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
			c->stats.tx_full++;
			return 0;
		}
		c->stats.tx_errors++;
		return -errno;
	}
	c->stats.tx_ack_frames++;
	c->stats.tx_bytes += len;
	c->ack_owed = false;
	return 0;
}

int gw_tick(struct gw_client *c, uint64_t now_ns)
{
	int ret = 0;

	/*
	 * Only the oldest unacknowledged frame is retransmitted: the ack is
	 * cumulative, so once it is through the ack shows what else is missing,
	 * and the router is not flooded with duplicates of frames it has.
	 */
	if (c->acked < c->sent_seq) {
		uint64_t oldest = c->acked + 1;
		struct gw_slot *s = slot_of(c, oldest);
		uint64_t rto = (uint64_t)GW_RTO_NS << (s->retries < 4 ? s->retries : 4);

		if (rto > GW_RTO_MAX_NS)
			rto = GW_RTO_MAX_NS;
		if (now_ns - s->last_tx_ns >= rto) {
			int sent = send_frames(c, oldest, oldest, now_ns);

			if (sent > 0) {
				s->retries++;
				c->stats.tx_retransmits++;
			} else if (sent < 0 && sent != -EAGAIN) {
				c->stats.tx_errors++;
				s->last_tx_ns = now_ns;
				s->retries++;
				ret = sent;
			}
		}
	}
	if (c->ack_owed && now_ns - c->ack_owed_ns >= GW_ACK_DELAY_NS) {
		int r = send_ack(c);

		if (r < 0)
			ret = r;
	}
	return ret;
}

/* ---- receive -------------------------------------------------------------- */

static void owe_ack(struct gw_client *c, uint64_t now)
{
	if (!c->ack_owed) {
		c->ack_owed = true;
		c->ack_owed_ns = now;
	}
}

static unsigned handle_datagram(struct gw_client *c, const uint8_t *buf, size_t len, uint64_t now,
                                gw_envelope_fn *fn, void *ctx)
{
	Surge__V1__Packet *packet;
	Surge__V1__Frame *frame;
	enum wire_drop_reason reason;
	unsigned handed = 0;

	c->stats.rx_datagrams++;
	wire_arena_reset(&c->arena);
	if (len > GW_MAX_DATAGRAM ||
	    wire_decode(&c->arena, buf, len, &packet, &frame, &reason) < 0 ||
	    packet->gateway_id != c->id) {
		c->stats.rx_dropped++;
		return 0;
	}
	if (!c->joined && frame->seq) {
		/*
		 * A router that served an earlier run of this gateway id may go on
		 * with its numbering: the first numbered frame we see is where our
		 * sequence starts (later router epochs start at 1 as usual).
		 */
		c->joined = true;
		memset(&c->rx, 0, sizeof(c->rx));
		c->rx.started = true;
		c->rx.epoch = frame->epoch;
		c->rx.ack = frame->seq - 1;
	}
	switch (wire_rx_seq_accept(&c->rx, frame->epoch, frame->seq)) {
	case WIRE_SEQ_NEW:
		c->stats.rx_frames++;
		owe_ack(c, now);
		break;
	case WIRE_SEQ_ACK_ONLY:
		c->stats.rx_ack_frames++;
		on_peer_ack(c, frame->ack);
		return 0;
	case WIRE_SEQ_DUPLICATE:
		c->stats.rx_duplicates++;
		owe_ack(c, now);
		on_peer_ack(c, frame->ack);
		return 0;
	default:
		c->stats.rx_dropped++;
		return 0;
	}
	c->stats.rx_ack = c->rx.ack;
	on_peer_ack(c, frame->ack);
	for (size_t i = 0; i < frame->n_msgs; i++) {
		c->stats.rx_envelopes++;
		handed++;
		if (fn)
			fn(c, frame->msgs[i], now, ctx);
	}
	return handed;
}

/* Read what is waiting on c's socket (bounded); returns envelopes handed on. */
static int receive(struct gw_client *c, gw_envelope_fn *fn, void *ctx)
{
	int handed = 0;

	for (unsigned round = 0; round < GW_RX_ROUNDS; round++) {
		uint64_t now;
		int n;

		for (unsigned i = 0; i < GW_RX_BATCH; i++)
			c->rxmsg[i].msg_hdr.msg_flags = 0;
		n = recvmmsg(c->fd, c->rxmsg, GW_RX_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			/* a pending ICMP error (router not up yet) is reported once: go on */
			c->stats.rx_errors++;
			continue;
		}
		now = gw_now_ns();
		for (int i = 0; i < n; i++) {
			size_t len = c->rxmsg[i].msg_len;

			if (c->rxmsg[i].msg_hdr.msg_flags & MSG_TRUNC)
				len = GW_RX_BUF + 1; /* oversize: dropped */
			handed += (int)handle_datagram(c, c->rxbuf[i], len, now, fn, ctx);
		}
		if (n < (int)GW_RX_BATCH)
			break;
	}
	return handed;
}

int gw_poll_set(struct gw_client *const *cs, unsigned n, uint64_t timeout_ns, gw_envelope_fn *fn,
                void *ctx)
{
	struct pollfd pfd[GW_POLL_MAX];
	uint64_t now;
	int handed = 0, ready = 0;

	if (n == 0 || n > GW_POLL_MAX)
		return -EINVAL;
	now = gw_now_ns();
	for (unsigned i = 0; i < n; i++) {
		pfd[i].fd = cs[i]->fd;
		pfd[i].events = POLLIN;
		pfd[i].revents = 0;
		/* do not sleep past an ack or a retransmission falling due */
		if (cs[i]->ack_owed) {
			uint64_t due = cs[i]->ack_owed_ns + GW_ACK_DELAY_NS;
			uint64_t left = due > now ? due - now : 0;

			if (left < timeout_ns)
				timeout_ns = left;
		}
		if (cs[i]->acked < cs[i]->sent_seq && timeout_ns > GW_RTO_NS / 4)
			timeout_ns = GW_RTO_NS / 4;
	}
	if (timeout_ns) {
		struct timespec ts = {
		        .tv_sec = (time_t)(timeout_ns / 1000000000u),
		        .tv_nsec = (long)(timeout_ns % 1000000000u),
		};

		ready = ppoll(pfd, n, &ts, NULL);
		if (ready < 0 && errno != EINTR)
			return -errno;
	}
	for (unsigned i = 0; i < n; i++) {
		/* without a wait, just try each socket: recvmmsg says if nothing is there */
		if (timeout_ns == 0 || (pfd[i].revents & (POLLIN | POLLERR)))
			handed += receive(cs[i], fn, ctx);
	}
	now = gw_now_ns();
	for (unsigned i = 0; i < n; i++)
		gw_tick(cs[i], now);
	return handed;
}

int gw_poll(struct gw_client *c, int timeout_ms, gw_envelope_fn *fn, void *ctx)
{
	uint64_t t = timeout_ms > 0 ? (uint64_t)timeout_ms * 1000000u : 0;

	return gw_poll_set(&c, 1, t, fn, ctx);
}
