/* SPDX-License-Identifier: MIT */
/*
 * dispatch: the routing engine. Skill groups, agents and sessions; who serves
 * whom. A pure library: no I/O, no packet or protobuf types, the clock passed
 * in. The router drives it from its worker lcore; surge-bench can drive it in
 * virtual time.
 *
 * Inputs are one call per request kind. Every answer the engine has for a
 * gateway (queued, assigned, deliver, closed, state result, busy, error) is
 * handed to the emit callback given at creation, synchronously, inside the
 * call that caused it. Strings in a struct disp_out are valid only during the
 * callback.
 *
 * Enum values below equal the wire contract's (proto/surge.proto) so the
 * caller may convert by value.
 *
 * Memory: everything is allocated by disp_create; no call allocates after it.
 * Not thread-safe: one engine belongs to one lcore.
 *
 * The break cap (rule 4), rounding stated once: an agent's break request is
 * granted when, after granting, in EVERY skill group the agent belongs to
 *     (agents on break + agents with a pending break) <= allowed(online)
 *     allowed(online) = max(floor(online * break_cap_pct / 100), online >= 2 ? 1 : 0)
 * where online counts the group's agents neither OFFLINE nor DISCONNECTED,
 * the requester included. So at 20%: 1 online agent -> 0 breaks (a group is
 * never emptied by a break), 2..9 online -> 1, 10..14 -> 2. Plain floor
 * would forbid any break in groups of fewer than 5 agents, plain rounding or
 * ceiling would let the only agent of a group leave it. The cap is checked
 * when a break is granted; agents going offline later can leave a group with
 * more agents on break than a new request could get.
 *
 * Which gateway each output goes to: QUEUED, BUSY, QUEUE_WAIT alerts and the
 * customer's copy of ASSIGNED and CLOSED go to the customer's gateway (the
 * one that opened the session); AGENT_STATE, DELIVER of customer messages,
 * the agent's ASSIGNED, CLOSED{TRANSFERRED, REROUTED} and every other SLA
 * alert go to the agent's gateway (the one it last logged in through);
 * ERROR goes to the requester.
 */
#ifndef SURGE_DISPATCH_H
#define SURGE_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A borrowed byte string (not NUL-terminated). */
struct disp_str {
	const char *ptr;
	uint32_t len;
};

/* Values equal surge.v1.AgentStateKind. */
enum disp_agent_state {
	DISP_AGENT_UNSPECIFIED = 0,
	DISP_AGENT_READY = 1,
	DISP_AGENT_BREAK_REQUESTED = 2,
	DISP_AGENT_ON_BREAK = 3,
	DISP_AGENT_OFFLINE_REQUESTED = 4,
	DISP_AGENT_OFFLINE = 5,
	DISP_AGENT_DISCONNECTED = 6,
};

/* Values equal surge.v1.CloseReason. */
enum disp_close_reason {
	DISP_CLOSE_UNSPECIFIED = 0,
	DISP_CLOSE_CUSTOMER_ENDED = 1,
	DISP_CLOSE_AGENT_CLOSED = 2,
	DISP_CLOSE_ABANDONED = 3,
	DISP_CLOSE_LEFT_MESSAGE = 4,
	DISP_CLOSE_TRANSFERRED = 5,
	DISP_CLOSE_REROUTED = 6,
};

/* Values equal surge.v1.ErrorCode. */
enum disp_error {
	DISP_ERR_NONE = 0,
	DISP_ERR_MALFORMED = 1,
	DISP_ERR_UNAUTHENTICATED = 2,
	DISP_ERR_FORBIDDEN = 3,
	DISP_ERR_UNKNOWN_SESSION = 4,
	DISP_ERR_UNKNOWN_AGENT = 5,
	DISP_ERR_UNKNOWN_SKILL = 6,
	DISP_ERR_TOO_LONG = 7,
	DISP_ERR_RATE_LIMITED = 8,
	DISP_ERR_INVALID_STATE = 9,
	DISP_ERR_CONSENT_REQUIRED = 10,
	DISP_ERR_OVERLOADED = 11,
	DISP_ERR_STORE_FAILED = 12,
	DISP_ERR_MAX
};

/* Values equal surge.v1.Side. */
enum disp_side {
	DISP_SIDE_CUSTOMER = 1,
	DISP_SIDE_AGENT = 2,
	DISP_SIDE_ROUTER = 3,
};

#define DISP_NAME_MAX 64 /* bytes of an agent id, customer id, skill or tenant name */

/* How a skill group picks among its eligible agents (rule 1 of the dispatcher issue). */
enum disp_strategy {
	DISP_STRATEGY_LEAST_LOADED = 0, /* fewest sessions in hand, then longest idle (default) */
	DISP_STRATEGY_LONGEST_IDLE,     /* longest since its load last went to 0 (or login) */
	DISP_STRATEGY_ROUND_ROBIN,      /* in turn */
	DISP_STRATEGY_BEST_SKILL,       /* highest level in the skill, then least loaded */
	DISP_STRATEGY_FEWEST_TODAY, /* fewest sessions assigned since login, then least loaded */
	DISP_STRATEGY_RANDOM,       /* uniformly among the eligible */
	DISP_STRATEGY_MAX
};

#define DISP_MAX_OVERFLOW 4 /* overflow steps per skill group */

/* After waiting after_ms, a session of this group may also be served by agents of to_skill. */
struct disp_overflow {
	uint32_t after_ms;
	char to_skill[DISP_NAME_MAX];
};

/*
 * Service hours, in the group's local time. open_min == close_min means
 * always open (the default). close_min < open_min spans midnight.
 */
struct disp_hours {
	uint16_t open_min;      /* minutes after local midnight [0] */
	uint16_t close_min;     /* [0] */
	uint8_t days;           /* bit d set: open on weekday d (0 = Sunday); 0 means every day */
	int16_t utc_offset_min; /* local time = UTC + this; taken as is, 0 = UTC (the config
	                           defaults it to 480, China) */
};

/* A skill group as configured. Zero fields take the defaults in brackets. */
struct disp_skill_conf {
	char name[DISP_NAME_MAX];   /* e.g. "presale" */
	char tenant[DISP_NAME_MAX]; /* owning shop or business line; "" = platform */
	uint32_t queue_capacity;    /* waiting sessions before Busy [1000] */
	uint32_t
	        sla_answer_ms; /* service-level target: assigned within; QUEUE_WAIT alert [60000] */
	enum disp_strategy strategy;
	uint32_t wrap_up_ms; /* slot stays busy after a close until notes or this [0] */
	struct disp_overflow overflow[DISP_MAX_OVERFLOW];
	uint32_t nb_overflow;
	struct disp_hours hours;
	uint32_t break_cap_pct;     /* on break + pending <= this % of online agents [20] */
	uint32_t break_max_ms;      /* BREAK_OVERRUN after [1200000] */
	uint32_t first_response_ms; /* FIRST_RESPONSE: no agent reply after assignment [60000] */
	uint32_t reply_overdue_ms;  /* REPLY_OVERDUE: customer message unanswered [60000] */
	uint32_t hold_max_ms;       /* HOLD_OVERDUE: a "please wait" lasting longer [180000] */
	uint32_t idle_alert_ms;     /* IDLE_NO_INFLOW: READY with room, nothing assigned [900000] */
	uint32_t reroute_ms; /* re-route when the first message is unanswered this long; 0 = off [0]
	                      */
	uint32_t eta_step_ms; /* SessionQueued again when the ETA moves more than this [10000] */
};

/* ---- what the engine says ------------------------------------------------- */

enum disp_out_kind {
	DISP_OUT_QUEUED = 1,  /* SessionQueued to the customer's gateway */
	DISP_OUT_ASSIGNED,    /* Assigned, to the agent's gateway (full) or the customer's */
	DISP_OUT_DELIVER,     /* Deliver */
	DISP_OUT_CLOSED,      /* SessionClosed */
	DISP_OUT_AGENT_STATE, /* AgentStateResult */
	DISP_OUT_BUSY,        /* Busy */
	DISP_OUT_ERROR,       /* Error */
	DISP_OUT_SLA_ALERT,   /* SlaAlert: to the agent's gateway; QUEUE_WAIT to the customer's */
};

/* Values equal surge.v1.SlaKind. */
enum disp_sla_kind {
	DISP_SLA_UNSPECIFIED = 0,
	DISP_SLA_FIRST_RESPONSE = 1,
	DISP_SLA_REPLY_OVERDUE = 2,
	DISP_SLA_HOLD_OVERDUE = 3,
	DISP_SLA_QUEUE_WAIT = 4,
	DISP_SLA_BREAK_OVERRUN = 5,
	DISP_SLA_IDLE_NO_INFLOW = 6,
	DISP_SLA_MAX
};

/* One message of a conversation, as held by the engine. */
struct disp_msg {
	uint64_t msg_id;
	enum disp_side sender;
	struct disp_str text;
	struct disp_str attachment_ref;
	uint64_t sent_unix_ms;
	struct disp_str agent_id; /* the agent it is for (customer side) or from (agent side) */
};

/* One answer for one gateway. Fields not used by `kind` are zero. */
struct disp_out {
	enum disp_out_kind kind;
	uint32_t gateway_id; /* the gateway to send it to */
	uint64_t session_id;

	/* QUEUED, BUSY */
	uint64_t open_ref;
	/* QUEUED */
	uint32_t position; /* 0: an agent is being assigned now */
	uint32_t eta_ms;

	/* ASSIGNED: to_agent says which side; the customer side gets only
	 * session_id, agent_id, skill, waited_ms and transferred. */
	bool to_agent;
	struct disp_str agent_id; /* also CLOSED, AGENT_STATE */
	struct disp_str customer_id;
	struct disp_str skill;
	uint32_t channel;
	struct disp_str question;
	struct disp_str bot_transcript;
	const struct disp_msg *backlog; /* the conversation so far */
	uint32_t nb_backlog;
	uint64_t waited_ms;
	bool transferred;

	/* DELIVER */
	struct disp_msg msg;

	/* CLOSED */
	enum disp_close_reason close_reason;

	/* AGENT_STATE */
	enum disp_agent_state state;
	bool granted;
	struct disp_str reason; /* also BUSY */

	/* BUSY */
	uint32_t retry_after_ms;
	bool leave_message;

	/* SLA_ALERT (also agent_id, skill, session_id) */
	enum disp_sla_kind sla;
	uint64_t elapsed_ms;

	/* ERROR */
	enum disp_error error;
	struct disp_str detail;
	uint64_t ref; /* the session_id, open_ref or msg_id concerned */
};

typedef void disp_emit_fn(void *ctx, const struct disp_out *out);

/* ---- journal: what the store keeps ------------------------------------------ */
/*
 * Every change of a session's or agent's state worth keeping across a
 * restart is handed to the journal callback (when one is configured),
 * synchronously, before the outputs it causes. The router appends them to
 * the session store; recovery gives them back through disp_restore_*.
 */
enum disp_event_kind {
	DISP_EV_OPENED = 1,   /* session_id, gw (customer's), customer, tenant, skill, channel,
	                         priority, open_ref, question */
	DISP_EV_QUEUED,       /* session_id, skill, priority, waiting_since_ms, front */
	DISP_EV_ASSIGNED,     /* session_id, gw (agent's), agent, skill */
	DISP_EV_TRANSFERRED,  /* session_id, agent (from), skill (to), text (reason) */
	DISP_EV_MSG_IN,       /* session_id, msg_id, text, attachment */
	DISP_EV_MSG_OUT,      /* session_id, msg_id, agent, text, attachment, hold */
	DISP_EV_SLA_ALERT,    /* session_id (0: agent alert), agent, skill, sla, elapsed_ms */
	DISP_EV_ENDED,        /* session_id, reason, rating, complaint, by_agent, customer, skill,
	                         agent (last one, may be empty), opened_ms, question, text (notes) */
	DISP_EV_LEFT_MESSAGE, /* gw, open_ref, customer, tenant, skill, question */
	DISP_EV_AGENT_STATE,  /* gw, agent, state */
	DISP_EV_NOTES,        /* session_id, customer, agent, text (notes after the close) */
};

/* One journal event. Strings are valid only during the callback. */
struct disp_event {
	enum disp_event_kind kind;
	uint64_t ts_ms;
	uint64_t session_id;
	uint32_t gw;
	struct disp_str customer;
	struct disp_str tenant;
	struct disp_str skill;
	struct disp_str agent;
	struct disp_str text;
	struct disp_str attachment;
	struct disp_str question;
	uint64_t msg_id;
	uint64_t open_ref;
	uint64_t opened_ms;
	uint64_t waiting_since_ms;
	uint64_t elapsed_ms;
	uint32_t channel;
	uint32_t priority;
	uint32_t rating;
	enum disp_close_reason reason;
	enum disp_sla_kind sla;
	enum disp_agent_state state;
	bool front;
	bool hold;
	bool complaint;
	bool by_agent;
};

typedef void disp_journal_fn(void *ctx, const struct disp_event *ev);

/* ---- creation ------------------------------------------------------------- */

struct disp_conf {
	const struct disp_skill_conf *skills; /* the skill groups */
	uint32_t nb_skills;
	uint32_t max_agents;      /* agents known at once [1024] */
	uint32_t max_sessions;    /* open sessions (queued or assigned) [65536] */
	uint32_t backlog_max;     /* messages kept per open session [64] */
	uint32_t text_pool_bytes; /* memory for held text (questions, transcripts, backlog) [64 MiB]
	                           */
	uint32_t agent_text_max;  /* code points of an agent message [200] */
	uint32_t customer_text_max;    /* code points of a customer message [2000] */
	uint32_t heartbeat_timeout_ms; /* agent silent this long -> DISCONNECTED [30000] */
	uint64_t seed;                 /* for the random strategy [1] */
	disp_emit_fn *emit;            /* receives every answer */
	void *emit_ctx;                /* its first argument */
	disp_journal_fn *journal;      /* receives every event to keep; NULL: none */
	void *journal_ctx;             /* its first argument */
};

struct disp_engine;

/*
 * Create an engine. Zero fields of conf take the defaults in brackets.
 * Returns NULL with errno EINVAL (no emit callback, no skill, duplicate skill
 * name) or ENOMEM.
 * Also EINVAL: more than 256 skills, a skill name empty or not NUL-terminated
 * within DISP_NAME_MAX, max_agents over 2^24, max_sessions over 2^28,
 * backlog_max over 4096.
 */
struct disp_engine *disp_create(const struct disp_conf *conf);

/* Free an engine and everything it holds. NULL is a no-op. */
void disp_destroy(struct disp_engine *engine);

/* ---- requests ------------------------------------------------------------- */
/*
 * Each request comes from gateway `gw` at `now_ms` (unix milliseconds, never
 * decreasing). A request that is well-formed but not allowed emits an ERROR
 * to `gw` with the code and the ref concerned, changes nothing, and returns
 * -EINVAL (unknown skill, session or agent), -EPERM (not this gateway's or
 * agent's), -EMSGSIZE (text too long or not UTF-8), -EBUSY (no room) or
 * -EALREADY (invalid state). Success returns 0.
 */

struct disp_skill_level {
	struct disp_str skill;
	uint32_t level; /* 1 novice .. 5 expert */
};

struct disp_login {
	struct disp_str agent_id;
	struct disp_str tenant;
	const struct disp_skill_level *skills;
	uint32_t nb_skills;
	uint32_t max_sessions; /* capacity; 0 means 1 */
};

/* An agent logs in (or again, through the same or another gateway) and is READY:
 * emits AGENT_STATE{READY, granted}, then takes waiting sessions. Refused with OVERLOADED
 * when max_agents are known already, or when the memory its least-loaded skills reserve
 * (a few dozen bytes an agent and skill, taken at login so that no request allocates)
 * cannot be had (an agent logging in again is then as it was; a new one stays known,
 * OFFLINE, without skills). */
int disp_agent_login(struct disp_engine *e, uint32_t gw, const struct disp_login *req,
                     uint64_t now_ms);

/*
 * AgentState: READY, BREAK_REQUESTED or OFFLINE_REQUESTED. Answered with
 * AGENT_STATE. A break over the cap (see the top of this file) is answered
 * AGENT_STATE{current state, granted=false, reason "break cap: N of M agents
 * of <skill> already on break"} and returns 0; a granted break or offline
 * request is BREAK_REQUESTED / OFFLINE_REQUESTED while sessions remain
 * (another AGENT_STATE{ON_BREAK / OFFLINE, granted} follows when the last one
 * ends), ON_BREAK / OFFLINE at once otherwise. READY ends a break. A break
 * from OFFLINE, OFFLINE_REQUESTED or DISCONNECTED is INVALID_STATE.
 */
int disp_agent_state(struct disp_engine *e, uint32_t gw, struct disp_str agent_id,
                     enum disp_agent_state want, uint64_t now_ms);

/*
 * AgentHeartbeat. Any request of the agent (login, state, heartbeat, message,
 * close, transfer) restarts its heartbeat clock; silent for
 * heartbeat_timeout_ms, it is DISCONNECTED and its sessions re-queued at the
 * front (see disp_gateway_down).
 */
int disp_agent_heartbeat(struct disp_engine *e, uint32_t gw, struct disp_str agent_id,
                         uint64_t now_ms);

struct disp_open {
	uint64_t open_ref;
	struct disp_str customer_id;
	struct disp_str tenant;
	struct disp_str skill;
	uint32_t channel;
	uint32_t priority;
	struct disp_str language;
	struct disp_str question;
	struct disp_str bot_transcript;
};

/* SessionOpen: QUEUED (then ASSIGNED to both sides if an agent is free) or BUSY. */
int disp_session_open(struct disp_engine *e, uint32_t gw, const struct disp_open *req,
                      uint64_t now_ms);

/* CustomerMessage: DELIVER to the agent, or held in the backlog while queued. */
int disp_customer_message(struct disp_engine *e, uint32_t gw, uint64_t session_id, uint64_t msg_id,
                          struct disp_str text, struct disp_str attachment_ref, uint64_t now_ms);

/*
 * SessionEnd: CLOSED{CUSTOMER_ENDED} to both sides (ABANDONED, to the customer
 * only, while queued). With the skill's wrap_up_ms > 0 the agent's slot stays
 * busy until its AgentClose (notes) or until wrap_up_ms passes; meanwhile
 * the session is unknown to the customer and INVALID_STATE to the agent's
 * messages.
 */
int disp_session_end(struct disp_engine *e, uint32_t gw, uint64_t session_id, uint32_t rating,
                     bool complaint, struct disp_str comment, uint64_t now_ms);

/* AgentMessage: DELIVER to the customer. */
int disp_agent_message(struct disp_engine *e, uint32_t gw, uint64_t session_id,
                       struct disp_str agent_id, uint64_t msg_id, struct disp_str text,
                       struct disp_str attachment_ref, bool hold, uint64_t now_ms);

/* AgentClose: notes required; CLOSED{AGENT_CLOSED} to both sides if still open
 * (counted as agent_closed); after the customer ended it only records the notes
 * and ends a wrap-up. */
int disp_agent_close(struct disp_engine *e, uint32_t gw, uint64_t session_id,
                     struct disp_str agent_id, struct disp_str notes, uint64_t now_ms);

/*
 * Transfer to another skill group. Refused, nothing changed: without consent
 * (CONSENT_REQUIRED), unknown group (UNKNOWN_SKILL), not the serving agent
 * (FORBIDDEN), a group of another tenant (FORBIDDEN), a closed or full group
 * (OVERLOADED). Done: CLOSED{TRANSFERRED} to the old agent; the session waits
 * in the new group from now (QUEUED to the customer) and its next agent gets
 * ASSIGNED{transferred, backlog}; the transferring agent is not offered it
 * while others are.
 */
int disp_transfer(struct disp_engine *e, uint32_t gw, uint64_t session_id, struct disp_str agent_id,
                  struct disp_str to_skill, bool consented, struct disp_str reason,
                  uint64_t now_ms);

/*
 * A gateway went silent: its agents are DISCONNECTED and every session they
 * held goes back to the FRONT of its queue with its original wait (QUEUED to
 * the customer), then to the next agent with ASSIGNED{transferred, backlog};
 * its customers' sessions end (ABANDONED; CLOSED{ABANDONED} to their agents).
 */
void disp_gateway_down(struct disp_engine *e, uint32_t gw, uint64_t now_ms);

/*
 * Advance the clock: fire due timers (service-level alerts, overflow steps,
 * wrap-up ends, break overruns, heartbeat timeouts, ETA updates). Call at
 * least every few hundred ms; cost is O(timers due) plus O(1) per slot.
 */
void disp_tick(struct disp_engine *e, uint64_t now_ms);

/* ---- bursts ---------------------------------------------------------------- */
/*
 * With many sessions and agents, nearly every request starts with cache
 * misses (its session slot, its agent) that the request then waits for one
 * after the other. A caller holding a burst of requests (the router's frame,
 * up to 64 envelopes) names them first with disp_prefetch, which starts
 * loading all their lines at once, then makes the calls in order as usual.
 * disp_prefetch only loads: it changes nothing, so a burst has exactly the
 * effects of its requests made one by one (and the same when prefetching is
 * skipped or the hints are wrong).
 */
enum disp_req_kind {
	DISP_REQ_OTHER = 0,        /* login, state, heartbeat: only agent_id is used */
	DISP_REQ_OPEN,             /* nothing named yet: ignored */
	DISP_REQ_CUSTOMER_MESSAGE, /* session_id */
	DISP_REQ_SESSION_END,      /* session_id */
	DISP_REQ_AGENT_MESSAGE,    /* session_id, agent_id */
	DISP_REQ_AGENT_CLOSE,      /* session_id, agent_id */
	DISP_REQ_TRANSFER,         /* session_id, agent_id */
};

/* What one request of a burst names. */
struct disp_req {
	enum disp_req_kind kind;
	uint64_t session_id;      /* 0: none */
	struct disp_str agent_id; /* empty: none */
};

/*
 * Start loading what reqs[0..n) will touch (session slots, their agents and
 * list neighbours, the agents named): a hint, read-only, cannot fail. About
 * 40 instructions a request, nearly free when everything is cached already;
 * pays once sessions and agents outgrow the cache.
 */
void disp_prefetch(const struct disp_engine *e, const struct disp_req *reqs, uint32_t n);

/* ---- restore: rebuilding the engine after a restart ------------------------ */

/* A session as it was when the router stopped (from the session store). */
struct disp_restore {
	uint64_t session_id; /* its id: kept, gateways know it */
	uint32_t customer_gw;
	struct disp_str customer_id;
	struct disp_str skill;
	struct disp_str question;
	uint32_t channel;
	uint32_t priority;
	uint64_t open_ref;
	uint64_t opened_ms;
	uint64_t waiting_since_ms;      /* its original wait, kept */
	struct disp_str agent_id;       /* its agent; empty: it was waiting */
	uint32_t agent_gw;              /* the agent's gateway */
	bool replied;                   /* the agent had answered */
	bool transferred;               /* it had been transferred or re-routed */
	const struct disp_msg *backlog; /* the conversation so far, oldest first */
	uint32_t nb_backlog;
};

/*
 * Before any other call on a new engine: every session id handed out from
 * now on is above max_session_id (ids of the previous run are never reused).
 * Returns 0, or -EALREADY when the engine has been used.
 */
int disp_restore_begin(struct disp_engine *e, uint64_t max_session_id);

/*
 * Put back one session, emitting nothing and journalling nothing. Waiting
 * sessions join the back of their skill's queue (restore them in queue
 * order: by priority, then waiting_since_ms). A session with an agent stays
 * with it: the agent is known as DISCONNECTED until it logs in again, which
 * resends it ASSIGNED (with the backlog) for each of its sessions; if it does
 * not log in within heartbeat_timeout_ms its sessions go back to the FRONT
 * of their queues with their original wait, as after a disconnect. Returns
 * 0, -EINVAL (unknown skill, bad id or names, slot taken, engine used),
 * -ENOSPC (no room: agents, sessions or text).
 */
int disp_restore_session(struct disp_engine *e, const struct disp_restore *r, uint64_t now_ms);

/* ---- figures -------------------------------------------------------------- */

struct disp_stats {
	uint64_t sessions_opened;
	uint64_t sessions_queued; /* had to wait */
	uint64_t sessions_assigned;
	uint64_t sessions_closed;
	uint64_t sessions_abandoned;
	uint64_t sessions_busy; /* refused with Busy */
	uint64_t delivered_to_agent;
	uint64_t delivered_to_customer;
	uint64_t errors[DISP_ERR_MAX]; /* requests refused, by code */
	uint32_t agents_ready;
	uint32_t sessions_open;    /* queued + assigned now */
	uint32_t sessions_waiting; /* queued now */
	/* added with the first engine version: */
	uint64_t sessions_busy_queue_full; /* of sessions_busy: queue full, may leave a message */
	uint64_t ratings[4];               /* SessionEnd by rating: none, good, neutral, bad */
	uint64_t complaints;               /* SessionEnd with a complaint */
	uint64_t backlog_dropped;          /* delivered but not kept in the backlog: no memory */
};

#define DISP_HIST_BUCKETS 24 /* bucket i: durations in [2^(i-1), 2^i) ms; bucket 0: 0 ms */

/* Figures of one skill group (rule 10). Counters since creation; gauges now. */
struct disp_skill_figures {
	uint64_t offered;            /* sessions opened or transferred into the group */
	uint64_t answered;           /* assigned for the first time */
	uint64_t answered_in_target; /* of those: within sla_answer_ms */
	uint64_t served;             /* closed after being assigned */
	uint64_t abandoned;          /* customer left while queued */
	uint64_t left_message;       /* Busy with leave_message (queue full or closed) */
	uint64_t transferred_out;    /* transferred to another group */
	uint64_t ratings[4];         /* none, satisfied, neutral, unsatisfied */
	uint64_t complaints;
	uint64_t sla_alerts[DISP_SLA_MAX];
	uint64_t first_response_ms[DISP_HIST_BUCKETS]; /* assignment -> first agent reply */
	uint64_t handling_ms[DISP_HIST_BUCKETS];       /* assignment -> close */
	uint32_t waiting;                              /* queued now */
	uint64_t longest_wait_ms;                      /* of those queued now */
	uint32_t agents_online;                        /* not OFFLINE nor DISCONNECTED */
	uint32_t agents_ready;
	uint32_t agents_on_break;       /* BREAK_REQUESTED + ON_BREAK */
	uint32_t service_rate_per_hour; /* recent answers per hour, the basis of ETAs */
	/* added with the second engine version: */
	uint64_t agent_closed;     /* of served: closed by the agent before the customer ended */
	uint64_t rerouted;         /* taken back from an agent (disconnect or reroute_ms) */
	uint64_t mean_handling_ms; /* exponentially weighted (1/8) handling time, the ETA basis */
};

/* Figures of one agent (rule 10). */
struct disp_agent_figures {
	enum disp_agent_state state;
	uint32_t load; /* sessions in hand */
	uint32_t capacity;
	uint64_t assigned;    /* sessions assigned since login */
	uint64_t served;      /* closed while with this agent */
	uint64_t transferred; /* handed on by this agent */
	uint64_t ratings[4];
	uint64_t complaints;
	uint64_t first_response_ms[DISP_HIST_BUCKETS];
	uint64_t handling_ms[DISP_HIST_BUCKETS];
	uint64_t online_ms;          /* since login, not counting OFFLINE/DISCONNECTED */
	uint64_t serving_ms;         /* with at least one session */
	uint64_t ready_idle_ms;      /* READY with no session */
	uint64_t break_ms;           /* BREAK_REQUESTED (drained) + ON_BREAK */
	uint32_t customers_per_hour; /* served * 3600000 / online_ms */
	uint32_t service_ratio_pct;  /* (serving + ready_idle) * 100 / online */
	/* added with the second engine version: */
	uint64_t sla_alerts[DISP_SLA_MAX]; /* alerts about this agent or its sessions */
	uint64_t agent_closed; /* of served: closed by the agent before the customer ended */
};

/*
 * An agent's counters as bytes (for the session store; figures.c says how),
 * and back. pack returns the bytes written, 0 when cap is too small
 * (DISP_FIGURES_PACKED_MAX always suffices); unpack fills f's counters
 * (gauges zero) and returns 0, or -EBADMSG for bytes it did not pack
 * (any input is safe).
 */
#define DISP_FIGURES_PACKED_MAX 1024u
size_t disp_agent_figures_pack(const struct disp_agent_figures *f, uint8_t *out, size_t cap);
int disp_agent_figures_unpack(const uint8_t *p, size_t n, struct disp_agent_figures *f);

/*
 * Give an agent back its counters (assigned, served, transferred, ratings,
 * complaints, histograms, time accounted, alerts; f's gauges are ignored)
 * as they were before the restart. Call after the sessions: an agent they
 * name keeps its place; any other is known from here on as OFFLINE. Returns
 * 0, -EINVAL (bad id) or -ENOSPC (max_agents reached).
 */
int disp_restore_agent(struct disp_engine *e, struct disp_str agent_id,
                       const struct disp_agent_figures *f, uint64_t now_ms);

/* Figures of a skill group / an agent at now_ms. Return 0 or -ENOENT. O(1). */
int disp_skill_figures_get(const struct disp_engine *e, struct disp_str skill,
                           struct disp_skill_figures *out, uint64_t now_ms);
int disp_agent_figures_get(const struct disp_engine *e, struct disp_str agent_id,
                           struct disp_agent_figures *out, uint64_t now_ms);

/*
 * Is agent_id serving session_id now (assigned, not in wrap-up)? 0 and
 * *customer (valid until the next call on the engine), -ENOENT (no such
 * open session) or -EPERM (someone else's, or nobody's yet).
 */
int disp_session_serving(const struct disp_engine *e, uint64_t session_id, struct disp_str agent_id,
                         struct disp_str *customer);

/*
 * How many open sessions (queued, assigned or in wrap-up) customer_id has.
 * O(sessions): a scan, for rare administrative calls (erasure), not requests.
 */
uint32_t disp_customer_sessions(const struct disp_engine *e, struct disp_str customer_id);

/* Bytes the engine holds: what it allocated at creation, and what logins reserved for their
 * least-loaded skills (no other request allocates). */
size_t disp_footprint(const struct disp_engine *e);

/* Copy the engine's figures. Cheap; no locking (same lcore). */
void disp_stats_get(const struct disp_engine *e, struct disp_stats *out);

/*
 * For tests: walk every structure of the engine and check it is consistent
 * (each open session queued in exactly one skill queue or assigned to exactly
 * one agent whose load counts it; no agent over capacity; the agents offered
 * to new sessions are exactly those READY with room; no queue waits while an
 * agent of its skill has room; held text and figures add up). O(everything):
 * not for the data path. Returns 0, or a negative number naming the failed
 * check (minus its source line in dispatch.c).
 */
int disp_check_invariants(const struct disp_engine *e);

#endif /* SURGE_DISPATCH_H */
