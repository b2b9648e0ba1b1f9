/* SPDX-License-Identifier: MIT */
/*
 * bench: the gateway client surge-bench and the integration tests speak to
 * the router with (kernel UDP sockets, plaintext Packets, epoch/seq/ack as in
 * docs/protocol.md), a log-bucketed latency histogram, and the freeze watch
 * the benchmarks report the VM's stops with.
 *
 * Single-threaded: a gw_client and a bench_hist belong to one thread.
 */
#ifndef SURGE_BENCH_H
#define SURGE_BENCH_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "surge.pb-c.h"

/* ---- latency histogram ---------------------------------------------------- */

/*
 * Values (ns) below 2^BENCH_HIST_SUB_BITS are kept exactly; above, each power
 * of two is split into 128 buckets, so a value is known to within 1/128
 * (better than 2 significant digits) up to 2^BENCH_HIST_MAX_EXP ns (137 s).
 * Larger values land in the last bucket and are counted in `overflow`.
 */
#define BENCH_HIST_SUB_BITS 8u
#define BENCH_HIST_MAX_EXP  37u
#define BENCH_HIST_BUCKETS                                                                         \
	((1u << BENCH_HIST_SUB_BITS) +                                                             \
	 (BENCH_HIST_MAX_EXP - BENCH_HIST_SUB_BITS) * (1u << (BENCH_HIST_SUB_BITS - 1)))

struct bench_hist {
	uint64_t count;                       /* values recorded */
	uint64_t min;                         /* smallest value, exact (UINT64_MAX when empty) */
	uint64_t max;                         /* largest value, exact (0 when empty) */
	uint64_t overflow;                    /* values above the tracked range */
	double sum;                           /* for the mean */
	uint64_t buckets[BENCH_HIST_BUCKETS]; /* counts */
};

/* Empty the histogram. */
void bench_hist_init(struct bench_hist *h);

/* Record one value (ns). O(1). */
void bench_hist_record(struct bench_hist *h, uint64_t value);

/* Add every value of src to dst. */
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);

/*
 * The value at percentile p (0..100; clamped): the smallest recorded value
 * such that at least p% of the values are <= it, reported as the upper end of
 * its bucket (never above max, never below min). 0 when empty.
 */
uint64_t bench_hist_percentile(const struct bench_hist *h, double p);

/* Mean of the recorded values; 0 when empty. */
double bench_hist_mean(const struct bench_hist *h);

/* Largest recorded value; 0 when empty. */
uint64_t bench_hist_max(const struct bench_hist *h);

/* Number of recorded values. */
uint64_t bench_hist_count(const struct bench_hist *h);

/* ---- freeze watch ---------------------------------------------------------- */

/*
 * A thread that sleeps 1 ms at a time and counts its wake-ups more than 5 ms
 * late between from_ns and until_ns (CLOCK_MONOTONIC): the times the VM did
 * not run at all (bench/freeze.c says why benchmarks report it). The figures
 * are the caller's to read after bench_freeze_stop.
 */
struct bench_freeze {
	pthread_t th;
	atomic_bool stop;
	bool running;
	uint64_t from_ns, until_ns;
	uint64_t count;      /* late wake-ups */
	uint64_t stopped_ns; /* how late, in all */
	uint64_t worst_ns;   /* the latest one */
	bool realtime;       /* it ran SCHED_FIFO: no guest thread could delay it */
};

/* Start watching. 0, or -1 when the thread could not start. */
int bench_freeze_start(struct bench_freeze *w, uint64_t from_ns, uint64_t until_ns);

/* Stop and join; the figures are final afterwards. A watch that did not start is a no-op. */
void bench_freeze_stop(struct bench_freeze *w);

/* ---- gateway client ------------------------------------------------------- */

#define GW_DEFAULT_PORT  7700u
#define GW_MAX_DATAGRAM  1472u      /* UDP payload that fits a 1500-byte MTU unfragmented */
#define GW_MAX_ENVELOPES 64u        /* per frame (the router's default limit) */
#define GW_ACK_DELAY_NS  5000000u   /* an owed ack waits this long for a frame to ride on */
#define GW_RTO_NS        200000000u /* first retransmission of an unacknowledged frame */
#define GW_MAX_IN_FLIGHT 2048u      /* frames sent and not acknowledged, at most */

/* Counters of one client; all monotonic. */
struct gw_stats {
	uint64_t tx_frames;      /* frames with envelopes sent (first transmissions) */
	uint64_t tx_envelopes;   /* envelopes in them */
	uint64_t tx_ack_frames;  /* ack-only frames sent */
	uint64_t tx_retransmits; /* frames sent again for want of an ack */
	uint64_t tx_bytes;       /* datagram payload bytes sent */
	uint64_t tx_full;        /* sends deferred: socket buffer full */
	uint64_t tx_errors; /* sends that failed otherwise (the frame waits for retransmission) */
	uint64_t tx_window_full; /* gw_add refusals: GW_MAX_IN_FLIGHT frames unacknowledged */
	uint64_t rx_datagrams;   /* datagrams received */
	uint64_t rx_frames;      /* new frames with envelopes */
	uint64_t rx_envelopes;   /* envelopes handed to the callback */
	uint64_t rx_ack_frames;  /* ack-only frames */
	uint64_t rx_duplicates;  /* frames received before (acknowledged again, not handed on) */
	uint64_t
	        rx_dropped; /* undecodable, oversize, wrong gateway id, stale, old epoch, too far */
	uint64_t rx_errors; /* receive failures (e.g. ICMP port unreachable) */
	uint64_t peer_ack;  /* the router's cumulative ack of our frames */
	uint64_t rx_ack;    /* our cumulative ack of the router's frames */
};

struct gw_client;

/*
 * Called for every envelope of every new frame, in order. `env` and what it
 * points to live until the callback returns. rx_ns: CLOCK_MONOTONIC when the
 * datagram's batch was read. The callback may gw_add/gw_flush on any client,
 * never gw_poll or gw_close.
 */
typedef void gw_envelope_fn(struct gw_client *c, const Surge__V1__Envelope *env, uint64_t rx_ns,
                            void *ctx);

/* CLOCK_MONOTONIC in ns. */
uint64_t gw_now_ns(void);

/*
 * Parse "A.B.C.D" or "A.B.C.D:PORT" (port default_port when absent; 0 allowed
 * only when default_port is 0). Returns 0, or -EINVAL.
 */
int gw_parse_addr(const char *text, uint16_t default_port, struct sockaddr_in *out);

/*
 * A client for gateway `gateway_id`: a UDP socket bound to `local` (NULL: any
 * address, ephemeral port) and connected to `router`. Its epoch is
 * CLOCK_REALTIME now. Returns NULL and sets errno: EINVAL (gateway id 0 or no
 * router), ENOMEM, or the socket/bind/connect error.
 */
struct gw_client *gw_open(uint32_t gateway_id, const struct sockaddr_in *router,
                          const struct sockaddr_in *local);

/* Close the socket and free everything. NULL is a no-op. */
void gw_close(struct gw_client *c);

/* The socket, for poll(). */
int gw_fd(const struct gw_client *c);

/* The gateway id. */
uint32_t gw_id(const struct gw_client *c);

/* The client's counters. */
const struct gw_stats *gw_stats(const struct gw_client *c);

/* Frames sent and not yet acknowledged by the router. */
uint64_t gw_unacked(const struct gw_client *c);

/*
 * Append an envelope to the frame being filled; it is serialized at once, so
 * env may be freed or reused on return. A full frame (GW_MAX_DATAGRAM bytes or
 * GW_MAX_ENVELOPES envelopes) is closed and queued; queued frames are sent by
 * gw_flush, or here once many have gathered. No heap, no syscall per envelope.
 * Frames are kept until the router acknowledges them and retransmitted until
 * it does (never given up: a gap would stall the router's cumulative ack).
 * Returns 0; -EINVAL (NULL or empty envelope); -EMSGSIZE (one envelope larger
 * than a datagram); -ENOBUFS (GW_MAX_IN_FLIGHT frames await an ack: poll and
 * try again; nothing was added).
 */
int gw_add(struct gw_client *c, const Surge__V1__Envelope *env);

/*
 * Close the frame being filled and send every queued frame (sendmmsg). A full
 * socket buffer leaves the rest queued for the next call (counted tx_full).
 * Returns 0, or a negative errno of the send for other failures (the frames
 * concerned are treated as sent and left to retransmission).
 */
int gw_flush(struct gw_client *c);

/*
 * Timers: send an ack-only frame when router frames have waited
 * GW_ACK_DELAY_NS for an ack, retransmit the oldest unacknowledged frame after
 * GW_RTO_NS (doubling per retry, at most 2 s). gw_poll and gw_poll_set call it.
 * Returns 0 or a negative errno of the send.
 */
int gw_tick(struct gw_client *c, uint64_t now_ns);

/*
 * Wait up to timeout_ns (0: do not wait; the wait is cut short when an ack
 * falls due) for datagrams on any of the n clients, read them in batches
 * (recvmmsg), call fn per envelope of each new frame, then run every
 * client's timers. Returns the number of envelopes handed to fn, or -EINVAL
 * (n == 0 or > GW_POLL_MAX) or another negative errno of ppoll.
 */
#define GW_POLL_MAX 64u
int gw_poll_set(struct gw_client *const *cs, unsigned n, uint64_t timeout_ns, gw_envelope_fn *fn,
                void *ctx);

/* gw_poll_set for one client, timeout in ms. */
int gw_poll(struct gw_client *c, int timeout_ms, gw_envelope_fn *fn, void *ctx);

/* ---- virtual-time simulation of the dispatcher (M/M/c) -------------------- */

/*
 * Drive a dispatcher (router/dispatch) in virtual time: one skill, `agents`
 * agents of capacity 1, Poisson arrivals, exponential handling times, no
 * wrap-up. Each customer's wait (assignment - arrival) is measured from the
 * engine's own Assigned answers, so the result checks the engine against
 * queueing theory (Erlang C). Events are kept in a preallocated binary heap;
 * the run allocates only at start.
 */
struct bench_sim_conf {
	uint32_t agents;      /* c, >= 1 */
	double arrival_per_s; /* lambda, > 0 */
	double handle_mean_s; /* 1 / mu, > 0 */
	double target_s;      /* service-level threshold T (waited <= T), >= 0 */
	uint64_t warmup;      /* first customers, not measured */
	uint64_t customers;   /* customers measured after the warm-up, >= 1 */
	uint64_t seed;        /* of the arrival and handling streams */
};

struct bench_sim_result {
	uint64_t customers;   /* measured (all assigned) */
	double mean_wait_s;   /* mean of assignment - arrival */
	double p_wait;        /* fraction that waited at all */
	double service_level; /* fraction that waited <= target_s */
	double max_wait_s;
	uint32_t max_queue;          /* deepest queue seen */
	double virtual_s;            /* virtual time simulated */
	double engine_service_level; /* the engine's own answered_in_target / answered, with
	                              * target_s as its sla_answer_ms; < 0 if the engine
	                              * does not offer skill figures */
};

/* Erlang C for c servers at offered load a = lambda / mu (a < c): the
 * probability an arrival waits, its mean wait and the service level. */
struct bench_erlang {
	double p_wait;        /* C(c, a) */
	double mean_wait_s;   /* C / (c mu - lambda) */
	double service_level; /* 1 - C exp(-(c mu - lambda) T) */
};

/* Returns 0, or -EINVAL (no agents, non-positive rates, load >= c, T < 0). */
int bench_erlang_c(uint32_t agents, double arrival_per_s, double handle_mean_s, double target_s,
                   struct bench_erlang *out);

/*
 * Run the simulation. Returns 0; -EINVAL (bad conf, or the load is >= c: the
 * queue would grow without bound); -ENOMEM; -EIO (the engine refused a
 * request, answered something unexpected, or lost a session).
 */
int bench_sim_run(const struct bench_sim_conf *conf, struct bench_sim_result *out);

#endif /* SURGE_BENCH_H */
