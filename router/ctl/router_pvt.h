/* SPDX-License-Identifier: MIT */
/*
 * The router core of ctl: gateways, the receive path from a UDP payload to
 * dispatch calls, and the transmit path from dispatch answers to frames.
 * Private to ctl: main.c drives it from the worker lcore.
 */
#ifndef SURGE_CTL_ROUTER_PVT_H
#define SURGE_CTL_ROUTER_PVT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ctl.h"
#include "dispatch.h"
#include "net.h"
#include "store.h"
#include "wire.h"

#define RT_TX_BURST   64u   /* frames handed to the port at once */
#define RT_ACKQ       64u   /* frames of a gateway waiting for the store, before merging */
#define RT_FIG_DIRTY  1024u /* agents whose figures changed since the last flush to the store */
#define RT_HIST_SLOTS 16u   /* history requests being read at once */

/* A processed frame's ack, sendable once the store has made ticket durable. */
struct rt_ackq {
	uint64_t ack;
	uint64_t ticket;
};

/* Runtime state of one configured gateway; owned by the worker lcore. */
struct rt_gateway {
	const struct wire_gateway_conf *conf; /* from the configuration */
	struct wire_rx_seq rx;                /* what we have processed of its frames */
	struct net_addr peer;                 /* where it last sent from */
	bool peer_known;                      /* peer is valid */
	bool down;                            /* silent past the timeout */
	bool dirty;                           /* on the burst's list of gateways to flush */
	bool ack_owed;                        /* it sent frames we have not acknowledged */
	uint64_t last_seen_ms;                /* last datagram accepted from it */
	uint64_t tx_seq;                      /* last seq we used towards it */
	uint64_t peer_acked;                  /* its cumulative ack of our frames */
	uint64_t ack_ok;                      /* the ack we may send: all it covers is durable */
	uint64_t ack_logged;                  /* the last GW_ACK appended to the store */
	struct rt_ackq aq[RT_ACKQ];           /* processed frames waiting for the store */
	uint32_t aq_head, aq_n;
	Surge__V1__Envelope *pending[WIRE_MAX_ENVELOPES]; /* the frame being filled */
	uint32_t nb_pending;                              /* envelopes in it */
	size_t pending_bytes;                             /* their encoded size inside a Frame */
	uint64_t rx_frames;                               /* frames processed */
	uint64_t rx_envelopes;                            /* envelopes processed */
	uint64_t tx_frames;                               /* frames sent */
	uint64_t tx_envelopes;                            /* envelopes sent */
};

/* Router-level drop and error reasons not covered by net or wire. */
enum rt_drop_reason {
	RT_DROP_ROLE_REFUSED = 0, /* envelope kind the gateway's role may not send */
	RT_DROP_EMPTY_ENVELOPE,   /* envelope with no body */
	RT_DROP_MULTI_SEGMENT,    /* received frame in chained mbufs */
	RT_DROP_TX_NO_PEER,       /* answer for a gateway whose address is not known yet */
	RT_DROP_TX_NO_MBUF,       /* mbuf pool empty */
	RT_DROP_TX_ARENA_FULL,    /* too many answers in one burst */
	RT_DROP_TX_OVERSIZE,      /* one envelope larger than a datagram */
	RT_DROP_TX_PORT,          /* the port did not take the frame */
	RT_DROP_TX_TRIMMED,       /* a robot transcript shortened to fit a datagram (not a drop) */
	RT_DROP_MAX
};

struct rt_router;

/*
 * The port under the router core, chosen at start: a DPDK port (Ethernet
 * frames in mbufs; the router builds the headers) or a kernel UDP socket.
 */
struct rt_io_ops {
	/* room for one datagram's payload (*cap bytes); NULL when none (counted) */
	uint8_t *(*tx_begin)(struct rt_router *rt, size_t *cap, void **handle);
	/* send the len bytes written for peer */
	void (*tx_end)(struct rt_router *rt, void *handle, size_t len, const struct net_addr *peer);
	/* hand everything queued to the port */
	void (*tx_drain)(struct rt_router *rt);
};

struct rt_router {
	const struct ctl_config *cfg;
	const struct rt_io_ops *io; /* DPDK or kernel socket */
	struct net_port *port;      /* the DPDK port, or NULL */
	struct net_sock *sock;      /* the kernel socket, or NULL */
	struct net_addr self;       /* our MAC, IPv4 and UDP port */
	struct disp_engine *disp;
	struct rt_gateway *gws; /* cfg->nb_gateways of them */
	uint32_t nb_gws;
	uint32_t *gw_index; /* open-addressing table: gateway id -> index + 1 */
	uint32_t gw_index_mask;
	uint32_t *dirty; /* gateways with something to flush this burst */
	uint32_t nb_dirty;
	struct wire_arena rx_arena;       /* decoded frames of the current burst */
	struct wire_arena tx_arena;       /* answers of the current burst */
	struct rte_mbuf *tx[RT_TX_BURST]; /* frames waiting for tx_burst */
	uint16_t nb_tx;
	uint64_t tx_epoch;   /* our epoch towards every gateway */
	uint64_t now_ms;     /* unix ms of the current burst, never decreasing */
	size_t frame_budget; /* bytes of envelopes that fit in one datagram */
	uint64_t net_drops[NET_DROP_MAX];
	uint64_t wire_drops[WIRE_DROP_MAX];
	uint64_t rt_drops[RT_DROP_MAX];
	struct store *store;               /* NULL: no store configured */
	struct store_producer *store_prod; /* this worker's */
	struct store_history *history;     /* customers' last consultations (worker's copy) */
	struct rt_hist *hist;              /* the transcript reader thread */
	struct store_recovery store_rec;   /* what recovery did at start */
	uint64_t store_ticket;             /* highest ticket appended */
	uint64_t store_durable;            /* highest ticket durable, as last polled */
	bool store_failed;                 /* said once: acks stopped */
	uint64_t store_append_errors;      /* records the store did not take */
	uint64_t store_refused;            /* sessions refused with STORE_FAILED */
	uint32_t store_restored;           /* sessions restored at start */
	uint32_t store_restored_agents;    /* agents whose figures were restored at start */
	char (*fig_dirty)[DISP_NAME_MAX];  /* RT_FIG_DIRTY agent ids, NUL-terminated */
	uint32_t nb_fig_dirty;
	uint64_t fig_dirty_dropped; /* changes not kept: more agents changed at once */
	uint64_t gw_resyncs;        /* gateways taken up far into their sequence, state unknown */
	uint64_t rx_datagrams;      /* UDP datagrams for us */
	uint64_t arp_replies;
	uint64_t icmp_replies;
	struct rt_admin *admin;  /* the admin endpoint's mailbox, or NULL (admin.c) */
	uint64_t admin_erasures; /* customers erased on request, tombstone durable */
};

/*
 * Set up the router core for an opened DPDK port or kernel socket (exactly
 * one of them non-NULL). Returns 0, or -ENOMEM, or -EINVAL (dispatch refused
 * the skills, or not exactly one port).
 */
int rt_init(struct rt_router *rt, const struct ctl_config *cfg, struct net_port *port,
            struct net_sock *sock);

/* Free what rt_init allocated. */
void rt_fini(struct rt_router *rt);

/* Set the clock for the next burst (unix ms; kept monotonic). */
void rt_set_time(struct rt_router *rt, uint64_t now_ms);

/* Handle one received Ethernet frame; the mbuf is consumed (freed or sent back). */
void rt_rx_frame(struct rt_router *rt, struct rte_mbuf *m);

/* Handle one UDP datagram for us (rx->peer and rx->payload set). */
void rt_rx_datagram(struct rt_router *rt, const struct net_rx *rx);

/* End of burst: flush every gateway's pending frame (acks piggybacked), send, reset arenas. */
void rt_end_burst(struct rt_router *rt);

/*
 * Periodic work, every millisecond: acks still owed go out as ack-only
 * frames; gateways silent past their timeout are declared down.
 */
void rt_tick(struct rt_router *rt);

/* The gateway of that id, or NULL. */
struct rt_gateway *rt_gw_lookup(struct rt_router *rt, uint32_t id);

/* ---- the store (rt_store.c) ---- */

/* Append an erasure tombstone for customer to the store of cfg (the router stopped). */
int rt_store_erase(const struct ctl_config *cfg, const char *customer);
/* Open the store and recover (before the engine exists). 0 or a negative errno. */
int rt_store_open(struct rt_router *rt);
/* The engine's journal callback, or NULL without a store. */
disp_journal_fn *rt_store_journal(const struct rt_router *rt);
/* Restore the engine and the history from the recovered log, start the store thread. */
int rt_store_start(struct rt_router *rt);
/* Flush, stop and free the store. 0 or the errno that made it fail. */
int rt_store_close(struct rt_router *rt);
/* A frame of gw was processed: its ack waits for what it appended. */
void rt_store_frame_done(struct rt_router *rt, struct rt_gateway *gw);
/* gw restarted its numbering. */
void rt_store_gw_restart(struct rt_gateway *gw);
/* Read the durable tickets and release the acks they cover. */
void rt_store_poll(struct rt_router *rt);
/* The store failed: new sessions are refused. */
bool rt_store_refuses(const struct rt_router *rt);
/* A customer's last consultations, newest first, into out[STORE_HISTORY_DEPTH]. */
uint32_t rt_store_history(const struct rt_router *rt, struct disp_str customer,
                          struct store_past *out);
/* The customer and summary of a past session: 0 or -ENOENT. */
int rt_store_history_owner(const struct rt_router *rt, uint64_t past_session_id, char *customer,
                           size_t len, struct store_past *out);
/*
 * Ask the store's reader thread for a past session's transcript; the answer
 * goes to gateway gw from a later tick (rt_history_answer). 0, -EBUSY (all
 * RT_HIST_SLOTS requests in flight) or -ENOENT (no store).
 */
int rt_store_ask_transcript(struct rt_router *rt, uint32_t gw, const char *agent,
                            uint64_t session_id, const struct store_past *past);
/* Send a transcript (rc < 0: the error) as HistoryReply envelopes to gateway gw_id. */
void rt_history_answer(struct rt_router *rt, uint32_t gw_id, const char *agent_id,
                       uint64_t session_id, uint64_t past_session_id, int rc,
                       const struct store_msg *msgs, uint32_t n);
/* The store's counters, Prometheus text. */
void rt_store_dump(const struct rt_router *rt, FILE *out);

/*
 * Erase customer now (the admin endpoint): the tombstone appended through this
 * worker's producer (*ticket: durable means done), the customer gone from the
 * worker's history at once. 0, or -EROFS when the store did not take it.
 */
int rt_store_erase_live(struct rt_router *rt, const char *customer, uint64_t *ticket);

/* ---- the admin endpoint (admin.c) ---- */

/*
 * Serve HTTP on 127.0.0.1:port on a thread of its own (port 0: nothing).
 * 0, -ENOMEM, or -EADDRINUSE (could not listen).
 */
int rt_admin_start(struct rt_router *rt, uint16_t port);
/* Stop the endpoint (after the worker stopped ticking). */
void rt_admin_stop(struct rt_router *rt);
/* The worker's side, every tick: run what the endpoint asked, answer when done. */
void rt_admin_serve(struct rt_router *rt);

/* Write every counter in Prometheus text format. */
void rt_dump_stats(const struct rt_router *rt, FILE *out);

#endif /* SURGE_CTL_ROUTER_PVT_H */
