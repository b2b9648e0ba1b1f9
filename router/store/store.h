/* SPDX-License-Identifier: MIT */
/*
 * store: the session store. An append-only write-ahead log of session and
 * agent events in preallocated segment files, written by one store thread
 * with io_uring and group commit, replayed on start to rebuild every open
 * session, queue and the customers' history.
 *
 * Threads. Workers (the router's lcores) append events to their own
 * producer: a lock-free single-producer / single-consumer byte ring read by
 * the store thread. Each append returns a ticket (1, 2, 3 ... per producer);
 * the store thread publishes, per producer, the highest ticket that is
 * durable under the policy, and the worker acknowledges a gateway frame once
 * every ticket it produced for it is durable. Appending never makes a system
 * call except to wake a sleeping store thread (at most once per sleep).
 *
 * On disk (docs/store.md has the layout): segment files `<first lsn, 20
 * digits>.seg` of segment_bytes, preallocated, each starting with a 4 KiB
 * header (magic, version, first LSN, nonce prefix); then records
 * {length, type, flags, lsn, crc32c, payload}, 8-byte aligned. LSNs are
 * contiguous from 1 over the whole log. A record whose CRC or LSN is wrong
 * ends the log there: recovery truncates it (and anything after it).
 *
 * Failure: a failed or short write or a failed fdatasync is never retried
 * and trusted. The store turns read-only: durable tickets stop advancing,
 * appends return -EROFS, store_healthy() is false, the error is logged once
 * and counted; the router stops acknowledging, answers new sessions with
 * Busy / STORE_FAILED and keeps serving what it holds in memory. Only a
 * restart (which recovers from what reached the disk) clears it.
 */
#ifndef SURGE_STORE_H
#define SURGE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A borrowed byte string (not NUL-terminated). */
struct store_str {
	const char *ptr;
	uint32_t len;
};

/* Record types. Values are on disk: add, never renumber. */
enum store_rec_type {
	STORE_REC_NONE = 0,
	STORE_REC_OPENED = 1,       /* a session opened */
	STORE_REC_QUEUED = 2,       /* it waits in a skill group's queue */
	STORE_REC_ASSIGNED = 3,     /* it is with an agent */
	STORE_REC_TRANSFERRED = 4,  /* its agent handed it to another skill group */
	STORE_REC_MSG_IN = 5,       /* a customer message */
	STORE_REC_MSG_OUT = 6,      /* an agent message */
	STORE_REC_SLA_ALERT = 7,    /* a service-level alert */
	STORE_REC_ENDED = 8,        /* the session closed (with the summary kept as history) */
	STORE_REC_LEFT_MESSAGE = 9, /* refused with Busy; the customer left a message */
	STORE_REC_AGENT_STATE = 10, /* an agent's state changed */
	STORE_REC_NOTES = 11,       /* the agent's notes after the session closed (wrap-up) */
	STORE_REC_ERASE = 12,       /* tombstone: erase one customer's data */
	STORE_REC_CKPT_BEGIN = 13,  /* a checkpoint starts: the live state follows */
	STORE_REC_CKPT_END = 14,    /* the checkpoint is complete */
	STORE_REC_HISTORY = 15,     /* (checkpoint only) one past consultation of a customer */
	STORE_REC_SCRUBBED = 16,    /* a record whose customer was erased; payload zeroed */
	STORE_REC_GW_ACK = 17,      /* how far a gateway's frames are processed and kept */
	STORE_REC_AGENT_FIGS = 18,  /* an agent's figures after they changed */
	STORE_REC_MAX
};

/* store_event.flags bits */
#define STORE_EF_FRONT     0x01u /* QUEUED: back at the front of its queue (re-route) */
#define STORE_EF_HOLD      0x02u /* MSG_OUT: a "please wait" */
#define STORE_EF_COMPLAINT 0x04u /* ENDED: the customer complained */
#define STORE_EF_BY_AGENT  0x08u /* ENDED: closed by the agent */
#define STORE_EF_CKPT                                                                              \
	0x10u /* written by a checkpoint (OPENED, QUEUED, ASSIGNED, MSG_*,                         \
	         ERASE, GW_ACK, AGENT_FIGS) */

/*
 * One event: the payload of one record. Which fields a type uses:
 *
 * OPENED       session_id, ts_ms (opened), gw (customer's gateway), ref
 *              (open_ref), code (channel), value (priority), customer, skill,
 *              extra (tenant), text (first question)
 * QUEUED       session_id, ts_ms, skill, ref (waiting since, unix ms: kept
 *              across re-queues), value (priority), flags FRONT
 * ASSIGNED     session_id, ts_ms, gw (agent's gateway), agent, skill
 * TRANSFERRED  session_id, ts_ms, agent (from), skill (to), text (reason)
 * MSG_IN       session_id, msg_id, ts_ms, text, extra (attachment ref)
 * MSG_OUT      session_id, msg_id, ts_ms, agent, text, extra (attachment
 *              ref), flags HOLD
 * SLA_ALERT    session_id (0 for agent alerts), ts_ms, agent, skill, code
 *              (SlaKind), ref (elapsed ms)
 * ENDED        session_id, ts_ms, code (CloseReason), value (Rating), flags
 *              COMPLAINT/BY_AGENT, customer, skill, agent (last agent or
 *              empty), ref (opened, unix ms), text (notes), extra (first
 *              question) — enough for the history summary on its own
 * LEFT_MESSAGE ts_ms, gw, ref (open_ref), customer, skill, extra (tenant),
 *              text (question)
 * AGENT_STATE  ts_ms, gw, agent, code (AgentStateKind)
 * NOTES        session_id, ts_ms, agent, text (notes)
 * ERASE        ts_ms, customer
 * CKPT_BEGIN   ts_ms, session_id (highest session id ever seen), ref (LSN
 *              of the oldest record still needed by open sessions)
 * CKPT_END     ts_ms, value (records in the checkpoint)
 * HISTORY      as ENDED, plus msg_id (LSN of the session's OPENED record,
 *              where its transcript starts)
 * GW_ACK       gw, ref (the gateway's epoch), msg_id (its cumulative seq
 *              processed: every record those frames caused precedes this
 *              one); a checkpoint repeats the last of each gateway
 * AGENT_FIGS   ts_ms, agent, extra (the agent's figures as the router
 *              encodes them: opaque to the store, at most
 *              STORE_AGENT_FIGS_MAX bytes); the last of each agent is kept,
 *              repeated by checkpoints and handed back by
 *              store_state_agents after a restart
 */
struct store_event {
	uint16_t type;       /* enum store_rec_type */
	uint16_t flags;      /* STORE_EF_* */
	uint32_t gw;         /* a gateway id */
	uint64_t lsn;        /* set when read back; ignored by store_append */
	uint64_t ts_ms;      /* unix ms */
	uint64_t session_id; /* 0 when none */
	uint64_t msg_id;
	uint64_t ref;   /* by type, see above */
	uint32_t code;  /* by type */
	uint32_t value; /* by type */
	struct store_str customer;
	struct store_str skill;
	struct store_str agent;
	struct store_str text;
	struct store_str extra;
};

#define STORE_STR_MAX   16384u /* bytes of one string of an event */
#define STORE_EVENT_MAX 32768u /* bytes of one encoded event (all strings) */

/* ---- history -------------------------------------------------------------- */

#define STORE_HISTORY_DEPTH 3    /* consultations kept per customer */
#define STORE_SUMMARY_TEXT  256u /* bytes of notes / question kept in a summary */

/* One past consultation of a customer (PastSession on the wire). */
struct store_past {
	uint64_t session_id;
	uint64_t opened_ms;
	uint64_t opened_lsn; /* where its transcript starts in the log; 0 unknown */
	uint32_t rating;     /* surge.v1.Rating */
	uint32_t closed;     /* surge.v1.CloseReason */
	bool complaint;
	char skill[64];
	char agent[64];
	char notes[STORE_SUMMARY_TEXT];    /* truncated on a UTF-8 boundary */
	char question[STORE_SUMMARY_TEXT]; /* likewise */
};

struct store_history;

/*
 * A history index: the last STORE_HISTORY_DEPTH consultations of up to
 * max_customers customers (the least recently updated one is forgotten
 * beyond that). Owned by one thread. NULL with errno ENOMEM / EINVAL.
 */
struct store_history *store_history_create(uint32_t max_customers);
void store_history_destroy(struct store_history *h);

/* Record a consultation that ended (ENDED or HISTORY event). 0 or -EINVAL (no customer). */
int store_history_add(struct store_history *h, const struct store_event *ended);

/* Attach notes that arrived after the close (NOTES event); 0 or -ENOENT. */
int store_history_notes(struct store_history *h, struct store_str customer, uint64_t session_id,
                        struct store_str notes);

/* Copy a customer's consultations, newest first, into out[STORE_HISTORY_DEPTH]; returns how many.
 */
uint32_t store_history_get(const struct store_history *h, struct store_str customer,
                           struct store_past *out);

/* Which customer a past session belonged to: 0 and its summary, or -ENOENT. */
int store_history_find(const struct store_history *h, uint64_t session_id, char *customer,
                       size_t customer_len, struct store_past *out);

/* Add every consultation of src to dst (a copy for another thread). 0 or -ENOMEM. */
int store_history_copy(struct store_history *dst, const struct store_history *src);

/* Forget everything about a customer. */
void store_history_erase(struct store_history *h, struct store_str customer);

/* Customers held. */
uint32_t store_history_count(const struct store_history *h);

/* ---- the recovered state ---------------------------------------------------- */

/* An open session as recovered from the log. */
struct store_session {
	uint64_t session_id;
	uint64_t opened_ms;
	uint64_t waiting_since_ms; /* its original wait (QUEUED) */
	uint64_t opened_lsn;
	uint32_t customer_gw;
	uint32_t agent_gw;
	uint32_t channel;
	uint32_t priority;
	bool assigned; /* with agent (else waiting in skill's queue) */
	bool replied;  /* the agent has answered since the assignment */
	uint32_t transfers;
	uint64_t open_ref;
	char customer[64];
	char tenant[64];
	char skill[64];
	char agent[64];
	char question[STORE_SUMMARY_TEXT];
	uint64_t queued_lsn; /* LSN of its last QUEUED record: the queue order */
};

/* A recovered session's recent messages, oldest first (its backlog). */
struct store_msg {
	uint64_t msg_id;
	uint64_t sent_ms;
	bool from_agent;
	struct store_str agent;
	struct store_str text;
	struct store_str attachment;
};

struct store_state;

/* Visit every open session, in LSN order of their last QUEUED record. */
typedef void store_session_fn(void *ctx, const struct store_session *s,
                              const struct store_msg *backlog, uint32_t nb_backlog);
void store_state_sessions(const struct store_state *st, store_session_fn *fn, void *ctx);

/* The history index rebuilt by recovery (owned by the state). */
const struct store_history *store_state_history(const struct store_state *st);

#define STORE_AGENT_FIGS_MAX 1024u /* bytes of an AGENT_FIGS record's figures */

/* Visit the last AGENT_FIGS of every agent (in agent id order). */
typedef void store_agent_fn(void *ctx, struct store_str agent, struct store_str figures,
                            uint64_t ts_ms);
void store_state_agents(const struct store_state *st, store_agent_fn *fn, void *ctx);

/* Visit the last GW_ACK of every gateway: where its frames resume after a restart. */
typedef void store_gw_ack_fn(void *ctx, uint32_t gw, uint64_t epoch, uint64_t ack);
void store_state_gw_acks(const struct store_state *st, store_gw_ack_fn *fn, void *ctx);

/* The highest session id in the log (0 if none): new ids must be above it. */
uint64_t store_state_max_session(const struct store_state *st);

/* ---- the store -------------------------------------------------------------- */

/* When an append counts as durable. Chosen at start, an ops table in the writer. */
enum store_policy {
	STORE_POLICY_SYNC = 0, /* after fdatasync (default) */
	STORE_POLICY_INTERVAL, /* after the write; fdatasync every interval_ms */
	STORE_POLICY_NONE,     /* at once; no sync (benchmarks only, logged loudly) */
};

/*
 * Fault injection for tests: the writer asks before every write and sync.
 * Return 0 to go ahead, a negative errno to fail the operation with it, or
 * (writes only) a positive byte count to write only that many bytes (a
 * short write). NULL in production.
 */
struct store_fault {
	int (*before_write)(void *ctx, uint64_t file_off, size_t len);
	int (*before_sync)(void *ctx);
	void *ctx;
	bool buffered; /* segments without O_DIRECT, as on a filesystem that refuses it */
};

struct store_conf {
	const char *dir;                 /* data directory, created if missing (required) */
	enum store_policy policy;        /* [SYNC] */
	uint32_t interval_ms;            /* INTERVAL: sync period [10] */
	uint64_t segment_bytes;          /* size of a segment file [64 MiB], multiple of 4096 */
	uint32_t nb_producers;           /* worker threads appending [1], at most 64 */
	uint32_t ring_bytes;             /* per producer [16 MiB], a power of 2 */
	uint32_t batch_bytes;            /* largest single write [4 MiB] */
	uint32_t commit_delay_us;        /* SYNC: hold a batch smaller than the last one
	                                    this long for more records [0: never], <= 10000 */
	uint64_t retention_ms;           /* keep checkpointed segments this long; 0: delete once a
	                                   durable checkpoint covers them (the router passes days) */
	uint64_t checkpoint_bytes;       /* checkpoint after this much log [256 MiB] */
	uint32_t history_customers;      /* customers in the history index [1M] */
	const uint8_t *key;              /* 32 bytes: AES-256-GCM at rest; NULL = plaintext */
	const struct store_fault *fault; /* tests only */
	void (*log)(void *ctx, int level, const char *msg); /* 0 error .. 3 debug; NULL: stderr */
	void *log_ctx;
};

/* What recovery found and did (also after a clean shutdown). */
struct store_recovery {
	uint32_t segments;         /* segment files read */
	uint64_t records;          /* records replayed */
	uint64_t bytes;            /* bytes read */
	uint64_t first_lsn;        /* first record replayed (0: empty log) */
	uint64_t last_lsn;         /* last valid record */
	uint64_t torn_bytes;       /* bytes cut off at the end (a torn or corrupt tail) */
	uint32_t segments_dropped; /* whole segments after the tear removed */
	uint64_t elapsed_ns;
	uint32_t sessions_open; /* open sessions rebuilt */
	uint32_t customers;     /* customers with history */
	bool from_checkpoint;   /* started from a checkpoint */
};

struct store_stats {
	uint64_t appended; /* records taken from the rings */
	uint64_t written_bytes;
	uint64_t writes;      /* write operations */
	uint64_t syncs;       /* fdatasync operations */
	uint64_t durable_lsn; /* highest durable LSN */
	uint64_t batches;     /* group commits */
	uint64_t max_batch;   /* records in the largest */
	uint64_t ring_full;   /* appends refused: ring full */
	uint64_t segments_created;
	uint64_t segments_deleted;
	uint64_t checkpoints;
	uint64_t erased;       /* customers erased */
	uint64_t transcripts;  /* transcripts read */
	uint64_t write_errors; /* failed or short writes */
	uint64_t sync_errors;  /* failed syncs */
	int error;             /* the errno that made the store read-only; 0 healthy */
};

struct store;
struct store_producer;

/*
 * Open the data directory and recover: read the segments (from the newest
 * complete checkpoint on), truncate a torn tail, rebuild the state. Does not
 * start the store thread. Returns NULL with errno: EINVAL (bad conf),
 * EBUSY (another process, or another store in this one, has the directory
 * open: one writer per log), ENOTDIR/EACCES/... (directory), EBADMSG (a segment header is corrupt:
 * not a torn tail but damage recovery will not guess about), ENOMEM. rec, when not NULL, receives
 * the recovery figures.
 */
struct store *store_open(const struct store_conf *conf, struct store_recovery *rec);

/* The recovered state; valid from store_open until store_start. */
const struct store_state *store_recovered(const struct store *s);

/*
 * Start the store thread (it takes over the recovered state to write
 * checkpoints from). Returns 0 or a negative errno (thread, io_uring setup).
 */
int store_start(struct store *s);

/* Producer idx (< nb_producers); one thread appends through it. */
struct store_producer *store_producer(struct store *s, uint32_t idx);

/*
 * Append an event (copied). *ticket receives its ticket. Returns 0,
 * -ENOBUFS (ring full: try again later; counted), -EROFS (store failed),
 * -EMSGSIZE (event over STORE_EVENT_MAX), -EINVAL (bad type).
 */
int store_append(struct store_producer *p, const struct store_event *ev, uint64_t *ticket);

/* Highest ticket of this producer that is durable under the policy. Lock-free, cheap. */
uint64_t store_durable(const struct store_producer *p);

/*
 * Sleep until ticket is durable (returns 0), the store failed (-EROFS) or
 * CLOCK_MONOTONIC passes deadline_ns (-ETIMEDOUT). For producers that have
 * nothing else to do meanwhile (tools, tests, benchmarks); a polling worker
 * uses store_durable. Costs the store thread a futex wake per batch only
 * while someone waits.
 */
int store_wait_durable(struct store_producer *p, uint64_t ticket, uint64_t deadline_ns);

/* False once a write or sync failed. */
bool store_healthy(const struct store *s);

/* Copy the store's counters (any thread). */
void store_stats_get(const struct store *s, struct store_stats *out);

/*
 * Read the transcript of a past session (MSG_IN / MSG_OUT from its OPENED
 * record at opened_lsn to its ENDED) from the log with io_uring, calling fn
 * per message in order. Without opened_lsn (0), the search starts from the
 * segments created around opened_ms (unix ms; 0: the oldest segment).
 * Blocking: call it from a control thread, not a worker. Returns the number
 * of messages, or -ENOENT (not in the retained log, or erased), -EIO.
 */
typedef void store_msg_fn(void *ctx, const struct store_msg *m);
int store_transcript(struct store *s, uint64_t session_id, uint64_t opened_lsn, uint64_t opened_ms,
                     store_msg_fn *fn, void *ctx);

/*
 * Stop: take what the producers appended, write and sync it, write nothing
 * more, join the thread, free everything. Returns 0, or the errno that made
 * the store read-only (negative). NULL is a no-op.
 */
int store_close(struct store *s);

#endif /* SURGE_STORE_H */
