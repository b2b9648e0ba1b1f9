/* SPDX-License-Identifier: MIT */
/*
 * wire: the Packet / Frame / Envelope codec (protobuf-c, allocations from a
 * per-burst arena), gateway identities, and per-gateway sequencing
 * (epoch, seq, cumulative ack, duplicate window).
 *
 * No I/O and no DPDK: bytes in, bytes out.
 */
#ifndef SURGE_WIRE_H
#define SURGE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "surge.pb-c.h"

/* ---- arena allocator ------------------------------------------------------ */

/*
 * A bump allocator handed to protobuf-c so that decoding a burst costs no
 * malloc: reset it once the burst is handled. Allocations are 16-byte
 * aligned. When it runs out, allocation returns NULL (protobuf-c then fails
 * the unpack cleanly) and `failures` counts it.
 */
struct wire_arena {
	uint8_t *base;          /* memory handed to wire_arena_init */
	size_t cap;             /* its size */
	size_t used;            /* bytes handed out since the last reset */
	size_t high_water;      /* most ever used between two resets */
	uint64_t failures;      /* allocations refused for lack of room */
	ProtobufCAllocator pbc; /* pass &arena->pbc to protobuf-c */
};

/* Use `mem` (cap bytes, caller-owned) as the arena. */
void wire_arena_init(struct wire_arena *arena, void *mem, size_t cap);

/* Forget every allocation at once. */
void wire_arena_reset(struct wire_arena *arena);

/* Allocate n bytes (16-byte aligned). Returns NULL when the arena is full. */
void *wire_arena_alloc(struct wire_arena *arena, size_t n);

/* Copy a string of len bytes into the arena, NUL-terminated. NULL when full. */
char *wire_arena_strndup(struct wire_arena *arena, const char *s, size_t len);

/* ---- limits --------------------------------------------------------------- */

#define WIRE_MAX_ENVELOPES 64u   /* envelopes per frame, default limit */
#define WIRE_WINDOW        4096u /* duplicate window, in frames */

/* ---- gateways ------------------------------------------------------------- */

/* What a gateway may send. */
enum wire_role {
	WIRE_ROLE_CUSTOMER = 1, /* customer channel gateway: sessions and customer messages */
	WIRE_ROLE_AGENT = 2,    /* agent workbench gateway: logins, states, replies */
	WIRE_ROLE_BOTH = 3,
};

/* A gateway as configured. */
struct wire_gateway_conf {
	uint32_t id;         /* Packet.gateway_id */
	char name[32];       /* for logs and metrics */
	enum wire_role role; /* which envelopes it may send */
	bool plaintext;      /* accepts Packet.frame (no AEAD) */
	uint8_t key[2][32];  /* AES-256 keys by key_id 0 and 1 */
	bool has_key[2];     /* which keys are configured */
	uint32_t allow_net;  /* source IPv4 network allowed (network order); 0 = any */
	uint32_t allow_mask; /* its mask (network order) */
};

/* Receive-side sequencing state of one gateway. */
struct wire_rx_seq {
	bool started;                      /* a frame of some epoch was accepted */
	uint64_t epoch;                    /* the sender's epoch in force */
	uint64_t ack;                      /* cumulative: every seq <= ack was processed */
	uint64_t window[WIRE_WINDOW / 64]; /* bit (seq % WIRE_WINDOW): processed, for seq > ack */
};

/* Verdict on an incoming frame's (epoch, seq). */
enum wire_seq_verdict {
	WIRE_SEQ_NEW = 0,   /* process it; it is now marked processed */
	WIRE_SEQ_ACK_ONLY,  /* seq 0: carries only an ack */
	WIRE_SEQ_DUPLICATE, /* processed before: acknowledge again, do nothing else */
	WIRE_SEQ_STALE,     /* older than the window: drop */
	WIRE_SEQ_OLD_EPOCH, /* lower epoch than the one in force: drop */
	WIRE_SEQ_TOO_FAR,   /* more than WIRE_WINDOW ahead of the ack: drop */
};

/*
 * Decide what to do with a frame (epoch, seq) and record it. A higher epoch
 * than the one in force starts a new sequence (ack back to 0). Frames ahead of
 * a gap are processed at once; the cumulative ack moves only over a
 * contiguous run.
 */
enum wire_seq_verdict wire_rx_seq_accept(struct wire_rx_seq *rx, uint64_t epoch, uint64_t seq);

/*
 * Start from a known point: every seq <= ack of epoch counts as processed
 * (after a restart, from the session store; or, with nothing known, from a
 * gateway's first frame far into its sequence).
 */
void wire_rx_seq_resume(struct wire_rx_seq *rx, uint64_t epoch, uint64_t ack);

/* ---- decoding ------------------------------------------------------------- */

/* Why an incoming datagram was dropped; each has a counter. */
enum wire_drop_reason {
	WIRE_DROP_NONE = 0,
	WIRE_DROP_PACKET_UNDECODABLE, /* not a Packet */
	WIRE_DROP_UNKNOWN_GATEWAY,    /* gateway_id not configured */
	WIRE_DROP_ADDRESS_REFUSED,    /* source address outside the gateway's allowed network */
	WIRE_DROP_NOT_PLAINTEXT,      /* plaintext frame from a gateway configured for AEAD */
	WIRE_DROP_SEALED_UNSUPPORTED, /* sealed frame: AEAD not built yet */
	WIRE_DROP_NO_FRAME,           /* neither frame nor sealed set */
	WIRE_DROP_FRAME_UNDECODABLE,  /* not a Frame */
	WIRE_DROP_TOO_MANY_ENVELOPES, /* more than the configured envelopes per frame */
	WIRE_DROP_OLD_EPOCH,          /* see enum wire_seq_verdict */
	WIRE_DROP_STALE,
	WIRE_DROP_TOO_FAR,
	WIRE_DROP_DUPLICATE,  /* counted, acknowledged again, ignored */
	WIRE_DROP_ARENA_FULL, /* the burst arena ran out (decode failed for that reason) */
	WIRE_DROP_MAX
};

/* A short lower-case name of a drop reason, for counters and logs. */
const char *wire_drop_reason_name(enum wire_drop_reason reason);

/*
 * Decode a datagram's Packet and its plaintext Frame, allocating from
 * `arena`. On success returns 0 and sets *packet and *frame (valid until the
 * arena is reset). On failure returns a negative errno (-EBADMSG) and sets
 * *reason. Does not look at gateways or sequence numbers.
 */
int wire_decode(struct wire_arena *arena, const uint8_t *buf, size_t len,
                Surge__V1__Packet **packet, Surge__V1__Frame **frame,
                enum wire_drop_reason *reason);

/* ---- encoding ------------------------------------------------------------- */

/*
 * Serialize `frame` inside a plaintext Packet from `gateway_id` into out
 * (cap bytes). Returns the number of bytes written, or -EMSGSIZE when it does
 * not fit. Uses no heap.
 */
int wire_encode_plain(uint32_t gateway_id, const Surge__V1__Frame *frame, uint8_t *out, size_t cap);

/* Bytes a plaintext Packet carrying a Frame of frame_len bytes takes. */
size_t wire_packet_overhead(uint32_t gateway_id, size_t frame_len);

#endif /* SURGE_WIRE_H */
