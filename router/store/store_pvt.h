/* SPDX-License-Identifier: MIT */
/*
 * store internals shared by its files: the on-disk record and segment
 * formats (store_rec.c), the state that recovery rebuilds and the store
 * thread keeps for checkpoints (store_state.c, store_history.c), recovery and
 * reading back (store_recover.c), the writer (store.c).
 *
 * Byte order on disk: little-endian (the host's; x86-64 and arm64 only).
 */
#ifndef SURGE_STORE_PVT_H
#define SURGE_STORE_PVT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* ---- records (store_rec.c) ------------------------------------------------ */

#define STORE_REC_HDR   24u /* bytes of a record header */
#define STORE_REC_ALIGN 8u  /* records start on this boundary */
#define STORE_TAG_LEN   16u /* AES-GCM tag at the end of a sealed payload */

/* Record header flags (on disk). */
#define STORE_RF_SEALED 0x0001u /* payload is AES-256-GCM ciphertext + tag */

/*
 * A record header as on disk. crc is the CRC-32C (Castagnoli) of the header
 * with crc = 0 followed by the len payload bytes. The record occupies
 * store_rec_span(len) bytes; the padding is zero and not covered.
 */
struct store_rec_hdr {
	uint32_t len;   /* payload bytes */
	uint16_t type;  /* enum store_rec_type */
	uint16_t flags; /* STORE_RF_* */
	uint64_t lsn;
	uint32_t crc;
	uint32_t reserved; /* zero */
};

static inline size_t store_rec_span(uint32_t len)
{
	return ((size_t)STORE_REC_HDR + len + STORE_REC_ALIGN - 1) & ~(size_t)(STORE_REC_ALIGN - 1);
}

/* CRC-32C of n bytes, continuing from crc (start with 0). */
uint32_t store_crc32c(uint32_t crc, const void *p, size_t n);

/* Bytes of ev's encoded payload (before sealing). */
size_t store_event_size(const struct store_event *ev);

/*
 * Encode ev's payload into out (store_event_size(ev) bytes). Returns the
 * size, or 0 when ev is invalid (type out of range, a string over
 * STORE_STR_MAX or the whole over STORE_EVENT_MAX).
 */
size_t store_event_encode(const struct store_event *ev, uint8_t *out);

/*
 * Decode a plaintext payload of n bytes of the given type into ev; ev's
 * strings point into p. Returns 0 or -EBADMSG (malformed: any input is safe).
 */
int store_event_decode(const uint8_t *p, size_t n, uint16_t type, struct store_event *ev);

/*
 * Fill the header of the record at rec whose payload (len bytes) is already
 * at rec + STORE_REC_HDR, compute its CRC and zero its padding.
 */
void store_rec_finish(uint8_t *rec, uint16_t type, uint16_t flags, uint64_t lsn, uint32_t len);

/*
 * Check the record at rec with avail bytes readable from there. Returns 0
 * (valid: *hdr filled), -ENODATA (a zero header: the clean end of the
 * written part of a segment), or -EBADMSG (torn or corrupt: bad CRC, length
 * beyond avail, wrong LSN when want_lsn != 0, unknown type, nonzero
 * reserved).
 */
int store_rec_check(const uint8_t *rec, size_t avail, uint64_t want_lsn, struct store_rec_hdr *hdr);

/* AES-256-GCM at rest. The nonce is (nonce_prefix, lsn): unique while the
 * prefix is new for every segment written (store.c draws it at random). */
struct store_aead;
struct store_aead *store_aead_create(const uint8_t key[32]); /* NULL, errno ENOMEM/EINVAL */
void store_aead_destroy(struct store_aead *a);

/* Seal len plaintext bytes at p in place and append the tag (p has room for
 * len + STORE_TAG_LEN). type and lsn are authenticated. 0 or -EIO. */
int store_aead_seal(struct store_aead *a, uint32_t nonce_prefix, uint64_t lsn, uint16_t type,
                    uint8_t *p, uint32_t len);

/* Open a sealed payload of len bytes (tag included) in place; the plaintext
 * is len - STORE_TAG_LEN bytes. 0 or -EBADMSG (wrong key or tampered). */
int store_aead_open(struct store_aead *a, uint32_t nonce_prefix, uint64_t lsn, uint16_t type,
                    uint8_t *p, uint32_t len);

/*
 * Records held back in LSN order: those appended while a checkpoint is
 * written, which the writer and recovery both apply only after its
 * CKPT_END. Entries {u64 lsn, u32 len, u16 type, u16 0, payload}, 8-aligned,
 * in one growing buffer of at most max bytes.
 */
struct store_held {
	uint8_t *buf;
	size_t len, cap, max;
};

/* Room for need more bytes of entries (16 + payload, rounded up to 8 each). 0 or -ENOMEM. */
int store_held_reserve(struct store_held *h, size_t need);

/* Append a record's plaintext payload; room must have been reserved. */
void store_held_push(struct store_held *h, uint64_t lsn, uint16_t type, const uint8_t *payload,
                     uint32_t len);

/* Bytes an entry of a len-byte payload takes. */
static inline size_t store_held_span(uint32_t len)
{
	return (16 + (size_t)len + 7) & ~(size_t)7;
}

/*
 * Hand every held record to fn in order (a nonzero return stops and is
 * returned), then empty the buffer, giving it back when it is over keep
 * bytes.
 */
typedef int store_held_fn(void *ctx, uint64_t lsn, uint16_t type, const uint8_t *payload,
                          uint32_t len);
int store_held_drain(struct store_held *h, size_t keep, store_held_fn *fn, void *ctx);

/* ---- segments (store_rec.c: format; store.c: writing; store_recover.c: reading) */

#define STORE_SEG_HDR     4096u /* bytes of the segment header block */
#define STORE_SEG_VERSION 1u
#define STORE_SEG_MAGIC   "SURGELOG" /* 8 bytes, no NUL on disk */

#define STORE_SF_SEALED 0x1u /* records may be sealed (a key was configured) */
#define STORE_SF_CKPT   0x2u /* the segment starts with a checkpoint */

struct store_seg_hdr {
	char magic[8];
	uint32_t version;
	uint32_t hdr_bytes; /* STORE_SEG_HDR */
	uint64_t segment_bytes;
	uint64_t first_lsn;
	uint64_t created_ms;
	uint32_t nonce_prefix;
	uint32_t flags; /* STORE_SF_* */
	uint32_t crc;   /* CRC-32C of this struct with crc = 0 */
	uint32_t reserved;
};

/* Write a segment header into block (STORE_SEG_HDR bytes, rest zeroed). */
void store_seg_hdr_encode(const struct store_seg_hdr *h, uint8_t *block);

/* Check and decode a header block. 0 or -EBADMSG. */
int store_seg_hdr_decode(const uint8_t *block, struct store_seg_hdr *h);

/* File name of the segment starting at first_lsn: "%020llu.seg" (24 bytes + NUL). */
void store_seg_name(uint64_t first_lsn, char name[32]);

/* ---- state (store_state.c) --------------------------------------------------- */

/*
 * Visit every consultation of the history index: customers least recently
 * updated first, each customer's consultations oldest first (the order in
 * which adding them again rebuilds an equal index). fn returns 0 or a
 * negative errno which stops the walk and is returned. (store_history.c)
 */
typedef int store_past_fn(void *ctx, struct store_str customer, const struct store_past *p);
int store_history_walk(const struct store_history *h, store_past_fn *fn, void *ctx);

/*
 * Apply one event (in LSN order) to the state: open sessions, their queue
 * order, their backlog (the last backlog_max messages), history, erasures,
 * the highest session id. Returns 0 or -ENOMEM. Events of unknown sessions
 * (opened before the log starts) are ignored.
 */
int store_state_apply(struct store_state *st, const struct store_event *ev);

struct store_state *store_state_create(uint32_t history_customers, uint32_t backlog_max);
void store_state_destroy(struct store_state *st);

/*
 * Write the live state as a checkpoint: CKPT_BEGIN, then per open session
 * OPENED, QUEUED or ASSIGNED and its backlog (flag STORE_EF_CKPT), then one
 * HISTORY per remembered consultation, the last GW_ACK of each gateway and
 * AGENT_FIGS of each agent, then CKPT_END. Replaying these events
 * into an empty state yields an equal state. fn returns 0 or a negative
 * errno which stops the walk and is returned.
 */
typedef int store_event_fn(void *ctx, const struct store_event *ev);
int store_state_checkpoint(const struct store_state *st, uint64_t now_ms, store_event_fn *fn,
                           void *ctx);

/* Customers erased (ERASE applied) since the last call: each is handed to fn and forgotten. */
typedef void store_customer_fn(void *ctx, struct store_str customer);
void store_state_take_erased(struct store_state *st, store_customer_fn *fn, void *ctx);

/* True if the customer has been erased (a tombstone applied). */
bool store_state_is_erased(const struct store_state *st, struct store_str customer);

/* ---- recovery and reading back (store_recover.c) ------------------------------ */

/* Where writing continues after recovery. */
struct store_tail {
	uint64_t next_lsn;      /* the LSN of the next record */
	uint64_t last_ckpt_lsn; /* LSN of the last complete checkpoint's CKPT_BEGIN; 0 none */
	uint64_t bytes_since_ckpt;
};

/*
 * Recover the log in dir into st (empty): list the segments, verify their
 * headers, start from the newest segment flagged STORE_SF_CKPT whose
 * checkpoint is complete (else from the oldest), replay every record, and at
 * the first invalid record zero the rest of that segment, delete every later
 * segment, and fsync. aead (NULL without a key) opens sealed records.
 * Returns 0, -EBADMSG (a corrupt segment header), -EIO, -ENOMEM.
 */
int store_recover(const char *dir, struct store_aead *aead, struct store_state *st,
                  struct store_recovery *rec, struct store_tail *tail);

/*
 * Read-only walk of every valid record of the log in dir, oldest retained
 * segment first, in LSN order, stopping at the first invalid one (nothing is
 * modified). fn gets each decoded (and opened) event with ev->lsn set; a
 * nonzero return stops the walk and is returned. Returns 0 at the end of
 * the log, -EBADMSG (corrupt segment header), -EIO. For tests and tools.
 */
int store_scan(const char *dir, struct store_aead *aead, store_event_fn *fn, void *ctx);

/* See store_transcript in store.h; reads with its own io_uring. */
int store_read_transcript(const char *dir, struct store_aead *aead, uint64_t session_id,
                          uint64_t opened_lsn, uint64_t opened_ms, store_msg_fn *fn, void *ctx);

/*
 * Erase customers from the log: in every segment whose records all have
 * LSN < below_lsn, overwrite each record of their sessions (OPENED with the
 * customer, and every record of those sessions, ENDED, HISTORY, LEFT_MESSAGE
 * with the customer) with a SCRUBBED record of the same LSN and span (zero
 * payload, valid CRC), then fdatasync. Returns records scrubbed or -EIO.
 */
int store_scrub(const char *dir, struct store_aead *aead, uint64_t below_lsn,
                const struct store_str *customers, uint32_t nb_customers);

#endif /* SURGE_STORE_PVT_H */
