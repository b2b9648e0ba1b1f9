/* SPDX-License-Identifier: MIT */
/*
 * The routing engine, second version: the platform's service rules (issue 3).
 *
 * Data layout (everything sized and allocated by disp_create):
 *  - sessions: one slot per session, in two arrays (the hot 128 bytes every
 *    request reads, line-aligned; the cold rest its open and end read); a
 *    session id is (generation << 32) | (slot + 1), so a stale or forged id
 *    is caught in O(1). A free slot whose agent may still send late notes
 *    waits at the tail of a FIFO (reused as late as possible); the others
 *    go on a stack the next open takes first (hot: see sess_free). A slot
 *    whose generations run out is retired. A session is in exactly one
 *    place: a wait queue while queued, its agent's hand (see HAND_INLINE:
 *    an array in struct agent, then a list) while assigned or in wrap-up,
 *    the free list or the stack when free; the lists are linked through the
 *    sessions (prev/next).
 *  - wait queues: per skill, one FIFO per priority class (0..7, higher served
 *    first, higher requests clamped to 7) and a bitmask of the non-empty
 *    classes. A session re-queued after a disconnect or a re-route goes to the
 *    FRONT of its class and keeps its original enqueue time. Each class hands
 *    out tickets (back: increasing; front: one below the head) so a position
 *    is (sessions in higher classes) + (ticket distance to the class head) + 1,
 *    O(8). Sessions that left from the middle of a class (abandoned) are
 *    still counted in the distance of those behind them until the head moves
 *    past their ticket: positions are then an over-estimate by that many.
 *  - arrivals: SessionOpen pushes the new session's index into its skill's
 *    MPSC ring (wheel.h); the owner drains the rings into the wait queues at
 *    the start of every request and tick, so with one worker an arrival is
 *    placed at once. Other lcores may push into the rings later (the hint
 *    counter tells the owner to look).
 *  - who can take a session: per skill, the agents eligible now (READY,
 *    load < capacity), ordered by the skill's strategy. A least-loaded skill
 *    keeps an llq (llq.h): per load value (0 .. CAP_MAX-1) a FIFO of
 *    (agent, stamp) entries in chunks, and a two-level bitmap of the loads
 *    with live entries: the best agent is the head of the lowest one.
 *    Re-filing an agent whose load changed bumps its stamp (e->ll_stamp),
 *    which makes its entries stale in every skill at once, and appends new
 *    ones at its new load's tails; stale entries are dropped at the heads
 *    and by incremental compaction. A doubly linked list per load wrote both
 *    neighbours of every agent it unlinked, two random lines a close at 100k
 *    agents; an llq writes the agent's stamp and a tail chunk. The FIFOs
 *    stay in load_since order because load_since is set to the engine's
 *    (clamped, non-decreasing) now whenever the load changes or the agent
 *    becomes eligible; so ties of load and load_since (the same
 *    millisecond) go in the order of those events, where the heap ordered
 *    them by agent index. The chunks come from a pool that logins reserve
 *    (ll_reserve_login), so that no request allocates.
 *    Every other strategy keeps a heap, each entry carrying a copy of the
 *    agent's key so sifting reads the heap only; 4-ary (half the depth, half
 *    the cache lines), except for random, which picks a uniform heap index
 *    and stays binary. Changing an agent's load or state re-files it in its
 *    k skills, in place when it stays eligible: O(k log n) with heaps.
 *  - an agent with a free slot takes the best waiting session across its
 *    skills and the groups overflowing into them whose class heads have
 *    waited long enough: highest priority class first, then the oldest
 *    enqueue time. O(k + inflows * 8).
 *  - timers (wheel.h): one per session (the earliest of its clocks: queue
 *    wait, next overflow step, first response, reply overdue, hold, reroute,
 *    wrap-up end), two per agent (heartbeat; break overrun or idle). Each
 *    clock fires once per episode. The wheel is advanced at the start of
 *    every call; a firing timer acts at its own expiry time.
 *  - SessionQueued is re-sent lazily: a skill whose queue changed is marked,
 *    and disp_tick walks marked queues from the front with a budget of
 *    SCAN_BUDGET sessions per tick (resuming where it stopped), re-sending
 *    QUEUED where the position changed or the ETA moved more than eta_step_ms.
 *  - ETA = position * mean handling time / capacity of the group's online
 *    agents (at least 1). The mean handling time is an exponentially weighted
 *    mean (weight 1/8 per close) starting at DEF_MEAN_HANDLE_MS; the group's
 *    service rate (figures) is that capacity per mean handling time.
 *  - held messages (backlog): a shared pool of entries, a singly linked FIFO
 *    per session of at most backlog_max; text in the text pool.
 *
 * Refusals: MALFORMED and TOO_LONG return -EMSGSIZE, FORBIDDEN and
 * CONSENT_REQUIRED -EPERM, UNKNOWN_* -EINVAL, OVERLOADED (and Busy) -EBUSY,
 * INVALID_STATE -EALREADY. The ref is the open_ref for SessionOpen, the msg_id
 * for what is wrong with a message's content or room, the session_id for who
 * may touch which session, 0 for an agent's own requests.
 *
 * Figures: sessions_closed counts every end, abandoned ones included
 * (opened = open + closed); a session in wrap-up is closed (its slot is
 * still busy); sessions_queued counts sessions that waited at open;
 * sessions_assigned counts every assignment, re-assignments included.
 *
 * Time: a call's now_ms below the engine's latest time is taken as the
 * latest time (the clock never goes back).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "dispatch_pvt.h"
#include "llq.h"
#include "wheel.h"

#define NIL          UINT32_MAX
#define NB_PRIO      8
#define SKILLS_MAX   256 /* skills configured at once */
#define AGENTS_MAX   (1u << 24)
#define SESSIONS_MAX (1u << 28)
#define BACKLOG_MAX  4096u /* messages held per session */
#define ATTACH_MAX   1024u /* bytes of an attachment reference */
#define RETRY_AFTER  1000u /* ms a refused customer should wait */
#define CAP_MAX      1024u /* an agent's capacity is clamped to this */
/* Session slots and agents beyond this: their pages' translations no longer
 * stay in the TLB (a few thousand 4 KB pages, 8-16 MB, on current cores).
 * At 10k agents (14.3 MB) it pays since opens reuse the slot an end has
 * just left (sess_free: off there, 18% slower); at 1k (1.5 MB) it would
 * only cost (about 5% of the samples, walking pages the TLB has). */
#define WALK_AHEAD_BYTES (8u << 20)
#define RING_SIZE        1024u /* per-skill arrival ring */
#define SCAN_BUDGET      1024u /* queued sessions looked at per tick for SessionQueued updates */

#define DEF_MAX_AGENTS        1024u
#define DEF_MAX_SESSIONS      65536u
#define DEF_BACKLOG_MAX       64u
#define DEF_TEXT_POOL_BYTES   (64u << 20)
#define DEF_AGENT_TEXT_MAX    200u
#define DEF_CUSTOMER_TEXT_MAX 2000u
#define DEF_QUEUE_CAPACITY    1000u
#define DEF_SLA_ANSWER_MS     60000u
#define DEF_BREAK_CAP_PCT     20u
#define DEF_BREAK_MAX_MS      1200000u
#define DEF_FIRST_RESPONSE_MS 60000u
#define DEF_REPLY_OVERDUE_MS  60000u
#define DEF_HOLD_MAX_MS       180000u
#define DEF_IDLE_ALERT_MS     900000u
#define DEF_ETA_STEP_MS       10000u
#define DEF_HEARTBEAT_MS      30000u
#define DEF_MEAN_HANDLE_MS    180000u /* ETA basis before the group has closed anything */

enum sess_state {
	SESS_FREE = 0,
	SESS_QUEUED,
	SESS_ASSIGNED,
	SESS_WRAPUP, /* closed for the customer; the agent's slot stays busy */
};

/* session flags */
#define SF_TRANSFERRED 0x01 /* moved by a transfer, disconnect or re-route */
#define SF_ANSWERED    0x02 /* answered counted in its current skill */
#define SF_REPLIED     0x04 /* the agent has answered since this assignment */
#define SF_QW_FIRED    0x08 /* QUEUE_WAIT sent for its current skill */
#define SF_FRONT       0x10 /* re-queued at the front: may be younger than who follows */
#define SF_FR_FIRED    0x20 /* FIRST_RESPONSE sent for this assignment */
#define SF_RO_FIRED    0x40 /* REPLY_OVERDUE sent for this unanswered episode */
#define SF_HO_FIRED    0x80 /* HOLD_OVERDUE sent for this hold */

enum timer_kind {
	T_SESSION = 1,
	T_HEARTBEAT,
	T_AGENT, /* break overrun or idle */
};

struct skill {
	struct disp_skill_conf conf;
	uint32_t name_len;
	uint32_t tenant_len;
	uint32_t q_head[NB_PRIO], q_tail[NB_PRIO], q_n[NB_PRIO];
	uint32_t q_ticket[NB_PRIO]; /* next back ticket */
	uint32_t q_count;
	uint32_t q_mask;
	struct hent *heap;  /* eligible agents, best first (not least-loaded) */
	struct llq *ll;     /* eligible agents by load (least-loaded only) */
	uint32_t elig_n;    /* the heap's size (least-loaded: ll->live, see elig_count) */
	uint32_t ll_ids;    /* least-loaded: agents with the skill (llq_need) */
	uint32_t ll_capmax; /* least-loaded: the largest capacity they logged in with */
	uint32_t rr_counter;
	uint16_t ov_to[DISP_MAX_OVERFLOW]; /* overflow targets, resolved */
	uint32_t in_first, in_n;           /* inflows: e->inflows[in_first .. +in_n) */
	struct disp_ring *ring;
	/* lazy SessionQueued refresh */
	bool scan_active, scan_again;
	int32_t scan_cls;
	uint32_t scan_si;
	/* gauges */
	uint32_t online, ready, on_break;
	uint64_t online_cap;
	uint64_t mean_handle_ms;
	struct disp_skill_figures fig; /* counters; gauges filled by the getter */
};

/*
 * An agent's place in a skill's heap, with a copy of what the skill's
 * strategy orders by: comparisons read the heap alone, not the agents (at
 * 100k agents each agent looked at is a cache miss). The copy is refreshed
 * whenever the agent is re-filed, which every change of those fields does.
 */
struct hent {
	uint64_t k0;    /* the strategy's own key (see hent_key) */
	uint64_t since; /* load_since */
	uint32_t load;
	uint32_t ai;
};

_Static_assert(CAP_MAX <= LLQ_LOADS, "an llq has a FIFO per load an agent can be listed at");

/* A group that overflows into a skill: its sessions may be taken after after_ms. */
struct inflow {
	uint16_t src;
	uint32_t after_ms;
};

/*
 * An agent, in two arrays of the same index. struct agent is what requests
 * of or for it touch, five aligned lines: the id (a lookup compares it),
 * then what every request reads or changes, then what an assignment or a
 * close changes, then the low bytes of the counters a session's end bumps,
 * then its sessions in hand. struct agent_cold is the figures and what only
 * state changes, alerts and figure reads touch. At 100k agents every agent
 * line a request touches is a cache miss; the five are loaded together
 * (agent_prefetch).
 */
/*
 * Counters every session's end bumps in one of a dozen places (the
 * histograms' buckets, ratings): each a line of its own in struct
 * agent_cold, a cache miss per bump at 100k agents. Their low 8 bits live
 * in struct agent's line 3 instead; the cold u64 takes 256 when one
 * wraps, so a cold line is written once per 256 bumps of the same counter.
 */
enum {
	TALLY_FIRST_RESPONSE = 0,
	TALLY_HANDLING = TALLY_FIRST_RESPONSE + DISP_HIST_BUCKETS,
	TALLY_RATINGS = TALLY_HANDLING + DISP_HIST_BUCKETS,
	TALLY_COMPLAINTS = TALLY_RATINGS + 4,
	TALLY_N,
};

/*
 * An agent's sessions in hand: the first HAND_INLINE in struct agent's line
 * 4, in the order assigned; any more (capacities above it) in a list through
 * the sessions (s_head, s_tail), also in that order, and only while hand[] is
 * full. Leaving hand[] shifts the later entries down within that line;
 * leaving a doubly linked list writes both neighbours, two sessions' lines,
 * cache misses at scale on every close.
 */
#define HAND_INLINE 16u

struct agent {
	_Alignas(128) char id[DISP_NAME_MAX];
	/* line 1 */
	uint32_t gw;
	uint32_t cap;         /* max sessions at once */
	uint32_t load;        /* sessions in hand now (assigned or in wrap-up) */
	uint32_t shrink_load; /* load when a new login set cap below it, until it drains */
	/* its sessions in hand beyond hand[] (see HAND_INLINE) */
	uint32_t s_head, s_tail;
	uint16_t nb_skills;   /* its skills are agent_skills[slot * nb_skills ...] */
	uint16_t alert_skill; /* the skill whose limits timed the agent's clock */
	uint8_t state;        /* enum disp_agent_state */
	uint8_t id_len;
	bool listed; /* among its skills' eligible agents */
	bool idle_alerted, break_alerted;
	bool restored;        /* held sessions at a restart and has not logged in since:
	                         its hb_timer is the deadline to come back */
	bool hb_armed;        /* its hb_timer is pending: agent_touch need not read the cold line */
	uint8_t hand_n;       /* sessions in hand[] */
	uint64_t idle_since;  /* load last went to 0, or login */
	uint64_t load_since;  /* load last changed, or became eligible */
	uint64_t hb_deadline; /* silent until then: DISCONNECTED */
	/* line 2 */
	uint64_t idle_clock;     /* start of the IDLE_NO_INFLOW episode */
	uint64_t assigned_today; /* fig.assigned = agent_cold.assigned_before + this */
	uint64_t served;         /* fig.served */
	uint64_t agent_closed;   /* fig.agent_closed */
	struct disp_timer st_timer;
	/* line 3: the low byte of the counters sessions' ends bump (see tally_bump) */
	uint8_t tally[TALLY_N];
	/* The load it is filed under in its least-loaded skills' llqs, the same
	 * in all of them (LL_NIL: in none); its entries there carry
	 * e->ll_stamp[agent]. Re-filing reads no ask line. */
	uint16_t ll_load;
	/* line 4: its first sessions in hand, in the order assigned */
	_Alignas(64) uint32_t hand[HAND_INLINE];
	/* line 5: spare (the size stays a multiple of the 128-byte alignment) */
};

/* The lines of struct agent requests touch: all but the spare. */
#define AGENT_HOT_BYTES (offsetof(struct agent, hand) + sizeof(((struct agent *)0)->hand))

_Static_assert(sizeof(struct agent) == 384 && AGENT_HOT_BYTES == 320,
               "five lines and a spare, three aligned pairs");
#define LL_NIL UINT16_MAX
_Static_assert(CAP_MAX < LL_NIL, "ll_load holds a load");
_Static_assert(DISP_NAME_MAX <= 256 && SKILLS_MAX <= UINT16_MAX, "id_len and nb_skills fit");

struct agent_cold {
	/* The counters, except assigned, served and agent_closed (in struct
	 * agent). online_ms .. break_ms are accounted up to acct_since, and only
	 * when what they count changes (state, load from or to 0): between,
	 * the time goes to the same counter anyway. Gauges: the getter. */
	struct disp_agent_figures fig;
	uint64_t acct_since;
	uint64_t assigned_before; /* assignments before the current shift's */
	uint64_t break_since;     /* break granted */
	struct disp_timer hb_timer;
};

/*
 * Agent a's place in skill s: ask[a * nb_skills + s]. 8 bytes, so that one
 * never straddles two lines (level is squeezed beside pos for that).
 */
#define POS_NIL ((1u << 29) - 1)

struct ask {
	uint32_t pos : 29;  /* heap index (not least-loaded); POS_NIL: not listed */
	uint32_t level : 3; /* 1..5; 0: the agent lacks the skill */
	uint32_t rr;        /* round-robin turn */
};

_Static_assert(sizeof(struct ask) == 8 && AGENTS_MAX < POS_NIL,
               "eight a line; pos holds a heap index");

struct bl_entry {
	uint64_t msg_id;
	uint64_t sent_ms;
	struct disp_text text;
	struct disp_text att;
	uint32_t next;
	uint32_t agent; /* from (agent side) or for (customer side); NIL: not assigned yet */
};

/* The sender of a held message rides in its text's spare byte: 40 bytes an entry, not 48. */
#define BL_SENDER(en) ((en)->text.tag)

struct sess_cold {
	uint64_t open_ref;
	struct disp_text question;
	struct disp_text transcript;
	uint8_t cid_len;
	char cid[DISP_NAME_MAX - 1]; /* a customer id is at most 63 bytes: no NUL kept */
};

/*
 * A session slot: 256 aligned bytes, 16 a page. What requests on an open
 * session touch comes first (two lines, the timer in the second); then what
 * only its open, its assignment's message and its end read (cold); then an
 * entry of its own for a held message, taken when the shared pool has none
 * left (inl: so the pool needs no entry a session on top of one a block,
 * and a session's memory stays 256 bytes). A request on a random session
 * reads 2 lines; an open, which fills the cold part too, finds it in the
 * slot's page (when the cold parts had an array of their own, an open at
 * scale waited for a second page walk: 100k agents -7%, 10k -9%;
 * docs/development.md, "The free list's order").
 */
struct session {
	_Alignas(256) uint32_t gen;
	uint8_t state;
	uint8_t flags;
	uint8_t prio : 3;
	uint8_t ov_step : 3; /* overflow steps already due (at most DISP_MAX_OVERFLOW) */
	uint8_t mark : 1;
	uint8_t held : 1; /* question or transcript held in the pool: its end reads cold */
	bool inl_used;    /* inl holds one of its messages */
	uint16_t skill;
	uint16_t bl_count; /* at most BACKLOG_MAX */
	uint32_t cust_gw;
	uint32_t agent;      /* when assigned or in wrap-up */
	uint32_t last_agent; /* the agent who had it last: may still close it with notes */
	uint32_t prev, next;
	uint32_t bl_head, bl_tail;
	uint64_t assign_ms; /* assigned to its current agent */
	uint64_t unans_ms;  /* oldest unanswered customer message; 0 none */
	uint64_t hold_ms;   /* hold started (assigned) or wrap-up ends (wrap-up); 0 none */
	struct disp_timer timer;
	uint64_t opened_ms;
	uint64_t enq_ms; /* entered its current skill's queue (kept on re-queue) */
	uint32_t ticket;
	uint32_t last_pos, last_eta; /* as last told in QUEUED */
	uint32_t channel;
	/* line 2 */
	struct sess_cold cold;
	struct bl_entry inl;
};

_Static_assert(offsetof(struct session, cold) == 128 && sizeof(struct sess_cold) == 88 &&
                       sizeof(struct session) == 256,
               "two hot lines, then the cold part and the own entry: 256 bytes");

_Static_assert(BACKLOG_MAX <= UINT16_MAX, "bl_count is 16 bits");
_Static_assert(DISP_MAX_OVERFLOW < 8 && NB_PRIO <= 8, "ov_step and prio are 3 bits");

struct disp_engine {
	disp_emit_fn *emit;
	void *emit_ctx;
	disp_journal_fn *journal; /* NULL: nothing kept */
	void *journal_ctx;
	uint32_t gen_floor; /* generation of a slot's first use (ids above the last run's) */
	bool used;          /* a request has been made: too late to restore */
	bool walk_ahead;    /* disp_prefetch also loads pages the TLB will not have (page_touch) */
	uint32_t nb_skills;
	uint32_t max_agents;
	uint32_t max_sessions;
	uint32_t backlog_max;
	uint32_t agent_text_max;
	uint32_t customer_text_max;
	uint32_t heartbeat_ms;
	uint64_t rng;
	uint64_t now; /* latest time seen */
	size_t footprint;

	struct skill *skills;
	uint16_t *skill_hash; /* skill index + 1, 0 = empty */
	uint32_t skill_hash_mask;
	struct inflow *inflows;
	struct hent *heaps;
	struct llq *lls;     /* the least-loaded skills' */
	struct llq **llq_of; /* per skill: its llq, NULL if not least-loaded */
	uint32_t nb_ll;      /* least-loaded skills */
	struct llq_pool ll_pool;
	size_t ll_need; /* chunks the llqs may hold: sum of llq_need over the skills */
	void *ring_mem;
	atomic_uint ring_hint; /* pushes not drained yet */

	struct agent *agents;
	struct agent_cold *acold; /* the agents' figures and rare fields, same index */
	uint32_t nb_agents;
	uint32_t *agent_hash; /* agent slot + 1, 0 = empty */
	uint32_t agent_hash_mask;
	uint16_t *agent_skills;
	struct ask *ask;
	llq_stamp *ll_stamp; /* per agent: its llq entries with this stamp are live (llq.h) */

	struct session *sessions;
	uint32_t s_bump;         /* slots never used start here */
	uint32_t f_head, f_tail; /* free slots an agent's late notes may still name, oldest first */
	uint32_t h_head;         /* the other free slots, a stack through next (sess_free) */
	uint32_t nb_wrapup;
	uint32_t *scratch_si; /* CAP_MAX sessions being re-queued */

	struct bl_entry *entries;
	uint32_t nb_entries;
	uint32_t e_bump;
	uint32_t e_free;
	uint32_t e_used;
	struct disp_msg *scratch; /* backlog_max messages for an ASSIGNED */

	struct disp_wheel wheel;
	struct disp_pool pool;
	struct disp_stats st;
	uint64_t bad_assign;       /* assignments that broke eligibility: must stay 0 */
	uint64_t cap_granted_over; /* breaks granted over the cap: must stay 0 */
	char agent_too_long[64];
	char customer_too_long[64];
};

/* ---- small helpers -------------------------------------------------------- */

static struct disp_str dstr(const char *p, uint32_t len)
{
	struct disp_str s = {.ptr = len ? p : NULL, .len = len};

	return s;
}

static uint32_t fnv1a(const char *p, uint32_t len)
{
	uint32_t h = 2166136261u;

	for (uint32_t i = 0; i < len; i++) {
		h ^= (uint8_t)p[i];
		h *= 16777619u;
	}
	return h;
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static bool name_ok(struct disp_str s)
{
	return s.ptr && s.len >= 1 && s.len < DISP_NAME_MAX && disp_utf8_count(s.ptr, s.len) >= 0;
}

static bool str_is(const char *a, uint32_t alen, struct disp_str b)
{
	return alen == b.len && (alen == 0 || memcmp(a, b.ptr, alen) == 0);
}

static uint64_t since(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint32_t clamp32(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static uint64_t xorshift(struct disp_engine *e)
{
	uint64_t x = e->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	e->rng = x;
	return x;
}

static unsigned hist_bucket(uint64_t ms)
{
	unsigned b = ms ? 64u - (unsigned)__builtin_clzll(ms) : 0;

	return b < DISP_HIST_BUCKETS ? b : DISP_HIST_BUCKETS - 1;
}

static void emit(struct disp_engine *e, const struct disp_out *o)
{
	e->emit(e->emit_ctx, o);
}

/* To the store: kept across a restart. */
static void journal(struct disp_engine *e, struct disp_event *ev)
{
	if (e->journal) {
		ev->ts_ms = e->now;
		e->journal(e->journal_ctx, ev);
	}
}

/* Refuse a request: one ERROR to the requester, nothing else changes. */

static int refuse(struct disp_engine *e, uint32_t gw, enum disp_error code, const char *detail,
                  uint64_t ref)
{
	struct disp_out o = {.kind = DISP_OUT_ERROR, .gateway_id = gw, .error = code, .ref = ref};

	o.detail = dstr(detail, (uint32_t)strlen(detail));
	e->st.errors[code]++;
	emit(e, &o);
	switch (code) {
	case DISP_ERR_MALFORMED:
	case DISP_ERR_TOO_LONG:
		return -EMSGSIZE;
	case DISP_ERR_FORBIDDEN:
	case DISP_ERR_CONSENT_REQUIRED:
	case DISP_ERR_UNAUTHENTICATED:
		return -EPERM;
	case DISP_ERR_OVERLOADED:
	case DISP_ERR_RATE_LIMITED:
	case DISP_ERR_STORE_FAILED:
		return -EBUSY;
	case DISP_ERR_INVALID_STATE:
		return -EALREADY;
	default:
		return -EINVAL;
	}
}

/* Text the engine may hold: valid UTF-8, at most max_cp code points, storable. */
static int check_text(struct disp_engine *e, uint32_t gw, struct disp_str t, uint32_t max_cp,
                      const char *too_long, uint64_t ref)
{
	int64_t n;

	if (t.len == 0)
		return 0;
	if (!t.ptr)
		return refuse(e, gw, DISP_ERR_MALFORMED, "text missing", ref);
	if (t.len > DISP_TEXT_MAX_BYTES)
		return refuse(e, gw, DISP_ERR_TOO_LONG, too_long, ref);
	n = disp_utf8_count(t.ptr, t.len);
	if (n < 0)
		return refuse(e, gw, DISP_ERR_MALFORMED, "text is not valid utf-8", ref);
	if ((uint64_t)n > max_cp)
		return refuse(e, gw, DISP_ERR_TOO_LONG, too_long, ref);
	return 0;
}

static int check_attachment(struct disp_engine *e, uint32_t gw, struct disp_str t, uint64_t ref)
{
	if (t.len == 0)
		return 0;
	if (!t.ptr || disp_utf8_count(t.ptr, t.len) < 0)
		return refuse(e, gw, DISP_ERR_MALFORMED, "attachment ref is not valid utf-8", ref);
	if (t.len > ATTACH_MAX)
		return refuse(e, gw, DISP_ERR_TOO_LONG, "attachment ref too long", ref);
	return 0;
}

/* ---- lookups -------------------------------------------------------------- */

static uint32_t skill_find(const struct disp_engine *e, struct disp_str name)
{
	uint32_t h;

	if (!name.ptr || name.len == 0 || name.len >= DISP_NAME_MAX)
		return NIL;
	h = fnv1a(name.ptr, name.len) & e->skill_hash_mask;
	for (;;) {
		uint16_t v = e->skill_hash[h];

		if (v == 0)
			return NIL;
		if (str_is(e->skills[v - 1].conf.name, e->skills[v - 1].name_len, name))
			return v - 1u;
		h = (h + 1) & e->skill_hash_mask;
	}
}

/*
 * Start loading the lines of an agent a request will touch (struct agent's
 * five) at once rather than one after the other; the histograms, in the
 * cold array, are loaded apart, by bucket, when known.
 */
static void agent_prefetch(const struct disp_engine *e, uint32_t ai)
{
	const char *p = (const char *)&e->agents[ai];

	for (uint32_t off = 0; off < AGENT_HOT_BYTES; off += 64)
		__builtin_prefetch(p + off);
}

/*
 * Read a byte of p now instead of only prefetching it, when the engine's
 * slots and agents outgrow what the TLB maps (WALK_AHEAD_BYTES). Measured
 * on this VM at 100k agents: after disp_prefetch had prefetched an agent's
 * five lines, the op's first access to them still cost ~600 TSC ticks
 * whichever line came first, the others ~50, at every position in the
 * burst: a cost per page, not per line (a page walk, nested on a VM). A
 * load here, in one batch with the burst's others, took it away: -12% at
 * 100k agents. In line in slot_deps_prefetch the same load cost 3-5% at 1k
 * and 10k (code layout), hence walk_ahead, out of line and off below the
 * threshold.
 */
static void page_touch(const void *p)
{
	(void)*(const volatile char *)p;
}

/* The pages pass 2 prefetched from, walked (page_touch): kept out of line, so that the
 * prefetch passes' code stays as it was where it is not needed. */
static __attribute__((noinline)) void walk_ahead(const struct disp_engine *e,
                                                 const struct disp_req *r, uint32_t m)
{
	for (uint32_t i = 0; i < m; i++) {
		uint32_t low = (uint32_t)r[i].session_id;
		const struct session *s;

		if (low == 0 || low > e->s_bump)
			continue;
		s = &e->sessions[low - 1];
		if (s->gen != (uint32_t)(r[i].session_id >> 32))
			continue;
		/* The next open fills the cold part of the slot a close frees (sess_free). */
		if (r[i].kind == DISP_REQ_AGENT_CLOSE)
			page_touch(&s->cold);
		if (i && r[i - 1].session_id == r[i].session_id)
			continue;
		if (s->agent < e->nb_agents) {
			page_touch(&e->agents[s->agent]);
			/* Re-filing it reads these (-2% at 100k agents, 11 of 16 pairs). */
			if (e->nb_ll)
				page_touch(&e->ll_stamp[s->agent]);
			page_touch(&e->agent_skills[(size_t)s->agent * e->nb_skills]);
		}
	}
}

/* Also its places in its skills: re-filing it after a change of load reads them. */
static void agent_prefetch_all(const struct disp_engine *e, uint32_t ai)
{
	agent_prefetch(e, ai);
	if (e->nb_ll)
		__builtin_prefetch(&e->ll_stamp[ai], 1);
	/* Least-loaded skills keep nothing in struct ask. */
	if (e->nb_ll < e->nb_skills)
		__builtin_prefetch(&e->ask[(size_t)ai * e->nb_skills], 1);
}

static struct agent_cold *ac(const struct disp_engine *e, uint32_t ai)
{
	return &e->acold[ai];
}

/* Where counter i of struct agent's tally adds up (its bits above the low 8). */
static uint64_t *tally_cold(struct agent_cold *c, unsigned i)
{
	if (i < TALLY_HANDLING)
		return &c->fig.first_response_ms[i - TALLY_FIRST_RESPONSE];
	if (i < TALLY_RATINGS)
		return &c->fig.handling_ms[i - TALLY_HANDLING];
	if (i < TALLY_COMPLAINTS)
		return &c->fig.ratings[i - TALLY_RATINGS];
	return &c->fig.complaints;
}

static void tally_bump(struct disp_engine *e, uint32_t ai, unsigned i)
{
	if (++e->agents[ai].tally[i] == 0)
		*tally_cold(ac(e, ai), i) += 256;
}

static uint32_t agent_find(const struct disp_engine *e, struct disp_str id)
{
	uint32_t h;

	if (!id.ptr || id.len == 0 || id.len >= DISP_NAME_MAX)
		return NIL;
	h = fnv1a(id.ptr, id.len) & e->agent_hash_mask;
	for (;;) {
		uint32_t v = e->agent_hash[h];

		if (v == 0)
			return NIL;
		agent_prefetch(e, v - 1);
		if (str_is(e->agents[v - 1].id, e->agents[v - 1].id_len, id))
			return v - 1;
		h = (h + 1) & e->agent_hash_mask;
	}
}

static void agent_hash_add(struct disp_engine *e, uint32_t ai)
{
	const struct agent *a = &e->agents[ai];
	uint32_t h = fnv1a(a->id, a->id_len) & e->agent_hash_mask;

	while (e->agent_hash[h])
		h = (h + 1) & e->agent_hash_mask;
	e->agent_hash[h] = ai + 1;
}

static struct sess_cold *sc(const struct disp_engine *e, const struct session *s)
{
	return &e->sessions[s - e->sessions].cold;
}

/* Held-message entry x: the shared pool's below nb_entries, else slot x - nb_entries's inl. */
static struct bl_entry *ent(const struct disp_engine *e, uint32_t x)
{
	if (x < e->nb_entries)
		return &e->entries[x];
	return &e->sessions[x - e->nb_entries].inl;
}

static uint64_t sess_id(const struct disp_engine *e, uint32_t si)
{
	return ((uint64_t)e->sessions[si].gen << 32) | (si + 1u);
}

static uint32_t sess_find(const struct disp_engine *e, uint64_t id)
{
	uint32_t low = (uint32_t)id;
	uint32_t si;

	if (low == 0 || low > e->s_bump)
		return NIL;
	si = low - 1;
	if (e->sessions[si].state == SESS_FREE || e->sessions[si].gen != (uint32_t)(id >> 32))
		return NIL;
	return si;
}

/*
 * Start loading the slot a request names while the agent is looked up: with
 * many sessions both are cache misses, and this way they overlap. Only a
 * hint; a bad id is still caught by sess_find.
 */
static void sess_prefetch(const struct disp_engine *e, uint64_t id)
{
	uint32_t low = (uint32_t)id;

	if (low != 0 && low <= e->s_bump) {
		const char *p = (const char *)&e->sessions[low - 1];

		__builtin_prefetch(p);
		__builtin_prefetch(p + 64);
		__builtin_prefetch(p + 127);
	}
}

/* ---- bursts: loading ahead ------------------------------------------------ */

#define PREFETCH_CHUNK 64u /* requests looked at per pass: their hash slots fit the stack */

/* The two lines of slot si, for writing: each request on a session changes it. */
static void slot_prefetch(const struct disp_engine *e, uint32_t si)
{
	const char *p = (const char *)&e->sessions[si];

	__builtin_prefetch(p, 1);
	__builtin_prefetch(p + 64, 1);
}

/*
 * Second pass of disp_prefetch, once the slot is (nearly) in: what the
 * request will reach through it. Reads only; a stale or forged id loads
 * lines for nothing and changes nothing.
 */
static void slot_deps_prefetch(const struct disp_engine *e, const struct disp_req *r, uint32_t si,
                               bool first)
{
	const struct session *s = &e->sessions[si];
	if (s->gen != (uint32_t)(r->session_id >> 32) ||
	    (s->state != SESS_ASSIGNED && s->state != SESS_WRAPUP) || s->agent >= e->nb_agents)
		return;
	if (first)
		agent_prefetch_all(e, s->agent);
	switch (r->kind) {
	case DISP_REQ_CUSTOMER_MESSAGE:
		if (s->bl_tail != NIL)
			__builtin_prefetch(ent(e, s->bl_tail), 1);
		break;
	case DISP_REQ_AGENT_CLOSE:
	case DISP_REQ_SESSION_END:
	case DISP_REQ_TRANSFER:
		/* Leaving the agent's list (beyond hand[]) writes both neighbours. */
		if (s->prev != NIL)
			__builtin_prefetch(&e->sessions[s->prev].next, 1);
		if (s->next != NIL)
			__builtin_prefetch(&e->sessions[s->next].prev, 1);
		/* Read if it holds text; after an agent's close, the next open fills it
		 * (sess_free). */
		if (s->held || r->kind == DISP_REQ_AGENT_CLOSE) {
			const char *c = (const char *)&e->sessions[si].cold;

			__builtin_prefetch(c, 1);
			__builtin_prefetch(c + sizeof(struct sess_cold) - 1, 1);
		}
		if (s->bl_head != NIL)
			__builtin_prefetch(ent(e, s->bl_head), 1);
		break;
	default:
		break;
	}
}

void disp_prefetch(const struct disp_engine *e, const struct disp_req *reqs, uint32_t n)
{
	uint32_t hslot[PREFETCH_CHUNK];

	if (!e || !reqs)
		return;
	for (uint32_t base = 0; base < n; base += PREFETCH_CHUNK) {
		uint32_t m = n - base < PREFETCH_CHUNK ? n - base : PREFETCH_CHUNK;
		const struct disp_req *r = reqs + base;

		/* Pass 1: what the request names itself, all misses in flight together. */
		for (uint32_t i = 0; i < m; i++) {
			uint32_t low = (uint32_t)r[i].session_id;
			struct disp_str id = r[i].agent_id;

			/* A session is often named by several requests in a row: load it once. */
			if (low != 0 && low <= e->s_bump &&
			    (i == 0 || r[i - 1].session_id != r[i].session_id))
				slot_prefetch(e, low - 1);
			hslot[i] = NIL;
			/* An agent acting on a session is found through it (agent_find_near). */
			if (id.ptr && id.len > 0 && id.len < DISP_NAME_MAX && !r[i].session_id &&
			    (i == 0 || !r[i - 1].agent_id.ptr ||
			     !str_is(r[i - 1].agent_id.ptr, r[i - 1].agent_id.len, id))) {
				hslot[i] = fnv1a(id.ptr, id.len) & e->agent_hash_mask;
				__builtin_prefetch(&e->agent_hash[hslot[i]]);
			}
		}
		/* Pass 2: what is reached through those, now that the first have arrived. */
		for (uint32_t i = 0; i < m; i++) {
			uint32_t low = (uint32_t)r[i].session_id;

			if (hslot[i] != NIL && e->agent_hash[hslot[i]])
				agent_prefetch_all(e, e->agent_hash[hslot[i]] - 1);
			if (low != 0 && low <= e->s_bump)
				slot_deps_prefetch(e, &r[i], low - 1,
				                   i == 0 ||
				                           r[i - 1].session_id != r[i].session_id);
		}
		if (e->walk_ahead)
			walk_ahead(e, r, m);
	}
}

static struct disp_str skill_name(const struct disp_engine *e, uint32_t s)
{
	return dstr(e->skills[s].conf.name, e->skills[s].name_len);
}

static const uint16_t *agent_skill_list(const struct disp_engine *e, uint32_t ai)
{
	return &e->agent_skills[(size_t)ai * e->nb_skills];
}

static struct ask *ask_of(const struct disp_engine *e, uint32_t ai, uint32_t s)
{
	return &e->ask[(size_t)ai * e->nb_skills + s];
}

/* ---- session lists (queues, agents' sessions, free list) ----------------- */

static void sl_push_back(struct session *ss, uint32_t *head, uint32_t *tail, uint32_t si)
{
	ss[si].prev = *tail;
	ss[si].next = NIL;
	if (*tail != NIL)
		ss[*tail].next = si;
	else
		*head = si;
	*tail = si;
}

static void sl_push_front(struct session *ss, uint32_t *head, uint32_t *tail, uint32_t si)
{
	ss[si].prev = NIL;
	ss[si].next = *head;
	if (*head != NIL)
		ss[*head].prev = si;
	else
		*tail = si;
	*head = si;
}

static void sl_remove(struct session *ss, uint32_t *head, uint32_t *tail, uint32_t si)
{
	struct session *s = &ss[si];

	if (s->prev != NIL)
		ss[s->prev].next = s->next;
	else
		*head = s->next;
	if (s->next != NIL)
		ss[s->next].prev = s->prev;
	else
		*tail = s->prev;
	s->prev = s->next = NIL;
}

/* ---- an agent's sessions in hand (see HAND_INLINE) ------------------------ */

static void hand_add(struct disp_engine *e, uint32_t ai, uint32_t si)
{
	struct agent *a = &e->agents[ai];

	if (a->hand_n < HAND_INLINE) {
		a->hand[a->hand_n++] = si;
		e->sessions[si].prev = e->sessions[si].next = NIL;
	} else {
		sl_push_back(e->sessions, &a->s_head, &a->s_tail, si);
	}
}

static void hand_remove(struct disp_engine *e, uint32_t ai, uint32_t si)
{
	struct agent *a = &e->agents[ai];

	for (uint32_t i = 0; i < a->hand_n; i++) {
		if (a->hand[i] != si)
			continue;
		for (; i + 1 < a->hand_n; i++)
			a->hand[i] = a->hand[i + 1];
		a->hand_n--;
		/* The list's first moves up: the order assigned is kept, hand[] full. */
		if (a->s_head != NIL) {
			uint32_t x = a->s_head;

			sl_remove(e->sessions, &a->s_head, &a->s_tail, x);
			a->hand[a->hand_n++] = x;
		}
		return;
	}
	sl_remove(e->sessions, &a->s_head, &a->s_tail, si);
}

/* The session assigned to the agent last of those in hand, NIL if none. */
static uint32_t hand_last(const struct disp_engine *e, uint32_t ai)
{
	const struct agent *a = &e->agents[ai];

	if (a->s_tail != NIL)
		return a->s_tail;
	return a->hand_n ? a->hand[a->hand_n - 1] : NIL;
}

/* ---- wait queues ---------------------------------------------------------- */

/* The first session of the highest non-empty class at or below cls. */
static uint32_t q_first_from(const struct skill *k, int32_t cls, int32_t *out_cls)
{
	for (int32_t c = cls; c >= 0; c--) {
		if (k->q_head[c] != NIL) {
			*out_cls = c;
			return k->q_head[c];
		}
	}
	*out_cls = -1;
	return NIL;
}

static uint32_t q_best(const struct skill *k)
{
	if (k->q_mask == 0)
		return NIL;
	return k->q_head[31 - __builtin_clz(k->q_mask)];
}

/* The queue changed: its waiting customers may need a new SessionQueued. */
static void skill_dirty(struct skill *k)
{
	if (k->scan_active) {
		k->scan_again = true;
		return;
	}
	k->scan_active = true;
	k->scan_again = false;
	k->scan_si = q_first_from(k, NB_PRIO - 1, &k->scan_cls);
}

static uint32_t q_position(const struct disp_engine *e, uint32_t si)
{
	const struct session *s = &e->sessions[si];
	const struct skill *k = &e->skills[s->skill];
	uint32_t pos = 1;

	for (uint32_t c = s->prio + 1u; c < NB_PRIO; c++)
		pos += k->q_n[c];
	return pos + (s->ticket - e->sessions[k->q_head[s->prio]].ticket);
}

static uint32_t q_eta(const struct skill *k, uint32_t pos)
{
	uint64_t cap = k->online_cap ? k->online_cap : 1;

	return clamp32((uint64_t)pos * k->mean_handle_ms / cap);
}

static void q_push(struct disp_engine *e, uint32_t si, bool front)
{
	struct session *s = &e->sessions[si];
	struct skill *k = &e->skills[s->skill];
	uint32_t c = s->prio;

	s->state = SESS_QUEUED;
	s->agent = NIL;
	if (front && k->q_head[c] != NIL) {
		s->ticket = e->sessions[k->q_head[c]].ticket - 1u;
		s->flags |= SF_FRONT;
	} else {
		s->ticket = k->q_ticket[c]++;
		if (front)
			s->flags |= SF_FRONT;
	}
	if (front)
		sl_push_front(e->sessions, &k->q_head[c], &k->q_tail[c], si);
	else
		sl_push_back(e->sessions, &k->q_head[c], &k->q_tail[c], si);
	k->q_n[c]++;
	k->q_count++;
	k->q_mask |= 1u << c;
	e->st.sessions_waiting++;
	skill_dirty(k);
	if (e->journal) {
		struct disp_event ev = {.kind = DISP_EV_QUEUED,
		                        .session_id = sess_id(e, si),
		                        .skill = skill_name(e, s->skill),
		                        .priority = s->prio,
		                        .waiting_since_ms = s->enq_ms,
		                        .front = front};

		journal(e, &ev);
	}
}

static void q_remove(struct disp_engine *e, uint32_t si)
{
	struct session *s = &e->sessions[si];
	struct skill *k = &e->skills[s->skill];
	uint32_t c = s->prio;

	if (k->scan_active && k->scan_si == si) {
		/* Keep the refresh cursor on a queued session. */
		if (s->next != NIL)
			k->scan_si = s->next;
		else
			k->scan_si = q_first_from(k, (int32_t)c - 1, &k->scan_cls);
	}
	sl_remove(e->sessions, &k->q_head[c], &k->q_tail[c], si);
	s->flags &= (uint8_t)~SF_FRONT;
	k->q_n[c]--;
	k->q_count--;
	if (k->q_n[c] == 0)
		k->q_mask &= ~(1u << c);
	e->st.sessions_waiting--;
	skill_dirty(k);
}

/* ---- agents: who is eligible (heaps, per-load lists) --------------------- */

static bool agent_online(enum disp_agent_state st)
{
	return st != DISP_AGENT_OFFLINE && st != DISP_AGENT_DISCONNECTED &&
	       st != DISP_AGENT_UNSPECIFIED;
}

static bool agent_offered(const struct agent *a)
{
	return a->state == DISP_AGENT_READY && a->load < a->cap;
}

/* What agent ai is ordered by in skill s's heap. */
static struct hent hent_key(const struct disp_engine *e, uint32_t s, uint32_t ai)
{
	const struct agent *a = &e->agents[ai];
	struct hent h = {.k0 = 0, .since = a->load_since, .load = a->load, .ai = ai};

	switch (e->skills[s].conf.strategy) {
	case DISP_STRATEGY_LONGEST_IDLE:
		h.k0 = a->idle_since;
		break;
	case DISP_STRATEGY_ROUND_ROBIN:
		h.k0 = ask_of(e, ai, s)->rr;
		break;
	case DISP_STRATEGY_BEST_SKILL:
		h.k0 = ask_of(e, ai, s)->level;
		break;
	case DISP_STRATEGY_FEWEST_TODAY:
		h.k0 = a->assigned_today;
		break;
	default:
		break;
	}
	return h;
}

/* Is the agent of x a better pick than the agent of y for a skill of strategy st? */
static inline __attribute__((always_inline)) bool
hent_better(enum disp_strategy st, const struct hent *x, const struct hent *y)
{
	switch (st) {
	case DISP_STRATEGY_LONGEST_IDLE:
		if ((x->load > 0) != (y->load > 0))
			return x->load == 0;
		if (x->k0 != y->k0)
			return x->k0 < y->k0;
		break;
	case DISP_STRATEGY_ROUND_ROBIN:
		if ((uint32_t)x->k0 != (uint32_t)y->k0)
			return (int32_t)((uint32_t)x->k0 - (uint32_t)y->k0) < 0;
		break;
	case DISP_STRATEGY_BEST_SKILL:
		if (x->k0 != y->k0)
			return x->k0 > y->k0;
		break;
	case DISP_STRATEGY_FEWEST_TODAY:
		if (x->k0 != y->k0)
			return x->k0 < y->k0;
		break;
	default:
		break;
	}
	if (x->load != y->load)
		return x->load < y->load;
	if (x->since != y->since)
		return x->since < y->since;
	return x->ai < y->ai;
}

/*
 * log2 of the heap's arity. Four children a node halves the depth, and with
 * it the cache lines a sift reads at 100k agents; a random pick reads the
 * heap's layout, so those heaps stay binary and pick as they always did.
 */
static uint32_t heap_shift(const struct skill *k)
{
	return k->conf.strategy == DISP_STRATEGY_RANDOM ? 1 : 2;
}

static void heap_set(struct disp_engine *e, uint32_t s, uint32_t i, const struct hent *h)
{
	e->skills[s].heap[i] = *h;
	ask_of(e, h->ai, s)->pos = i;
}

/* Sift the entry at i up; returns where it ends. */
static uint32_t heap_up(struct disp_engine *e, uint32_t s, uint32_t i)
{
	const struct skill *k = &e->skills[s];
	enum disp_strategy st = k->conf.strategy;
	uint32_t sh = heap_shift(k);
	struct hent *h = k->heap, x = h[i];

	while (i > 0) {
		uint32_t p = (i - 1) >> sh;

		if (!hent_better(st, &x, &h[p]))
			break;
		heap_set(e, s, i, &h[p]);
		i = p;
	}
	heap_set(e, s, i, &x);
	return i;
}

/*
 * Sift the entry at i down, bottom-up (Floyd): follow the best children to a
 * leaf, then climb back to where the entry belongs. An entry re-filed after
 * an assignment goes nearly to the bottom, so this costs one comparison per
 * level fewer than the textbook sift; it ends in the same place.
 */
static void heap_down(struct disp_engine *e, uint32_t s, uint32_t i)
{
	const struct skill *k = &e->skills[s];
	enum disp_strategy st = k->conf.strategy;
	uint32_t sh = heap_shift(k);
	struct hent *h = k->heap, x = h[i], cur;
	uint32_t j = i, n = k->elig_n;

	for (;;) {
		uint32_t c = (j << sh) + 1, end;

		if (c >= n)
			break;
		end = c + (1u << sh) < n ? c + (1u << sh) : n;
		for (uint32_t m = c + 1; m < end; m++)
			if (hent_better(st, &h[m], &h[c]))
				c = m;
		j = c;
	}
	while (j != i && !hent_better(st, &h[j], &x))
		j = (j - 1) >> sh;
	/* x goes to j; the path above it, up to i, moves up one level. */
	cur = x;
	while (j != i) {
		struct hent up = h[j];

		heap_set(e, s, j, &cur);
		cur = up;
		j = (j - 1) >> sh;
	}
	heap_set(e, s, i, &cur);
}

static void heap_insert(struct disp_engine *e, uint32_t s, uint32_t ai)
{
	struct skill *k = &e->skills[s];

	k->heap[k->elig_n] = hent_key(e, s, ai);
	ask_of(e, ai, s)->pos = k->elig_n;
	k->elig_n++;
	heap_up(e, s, k->elig_n - 1);
}

static void heap_remove(struct disp_engine *e, uint32_t s, uint32_t ai)
{
	struct skill *k = &e->skills[s];
	struct ask *q = ask_of(e, ai, s);
	uint32_t i = q->pos;
	struct hent last;

	q->pos = POS_NIL;
	last = k->heap[--k->elig_n];
	if (i == k->elig_n)
		return;
	heap_set(e, s, i, &last);
	/* Up or down, never both: a sift down from i would first walk to a leaf for nothing. */
	if (i > 0 && hent_better(k->conf.strategy, &last, &k->heap[(i - 1) >> heap_shift(k)]))
		heap_up(e, s, i);
	else
		heap_down(e, s, i);
}

/* The agent's key changed: move it where it belongs now, in place. */
static void heap_update(struct disp_engine *e, uint32_t s, uint32_t ai)
{
	uint32_t i = ask_of(e, ai, s)->pos;

	e->skills[s].heap[i] = hent_key(e, s, ai);
	if (heap_up(e, s, i) == i)
		heap_down(e, s, i);
}

static bool is_ll(const struct disp_engine *e, uint32_t s)
{
	return e->llq_of[s] != NULL;
}

/* File agent ai at its load in its least-loaded skills' llqs. */
static void ll_join(struct disp_engine *e, uint32_t ai)
{
	struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);

	for (uint32_t i = 0; i < a->nb_skills; i++) {
		struct llq *q = e->llq_of[sk[i]];

		if (!q)
			continue;
		llq_push(q, &e->ll_pool, a->load, ai, e->ll_stamp[ai]);
		a->ll_load = (uint16_t)a->load;
	}
}

/*
 * A new stamp for agent ai: its entries become stale at once. After 2^32 of
 * them the stamps come round, and an entry that old, if some load still
 * kept it, would look live again: none may stay.
 */
static void ll_restamp(struct disp_engine *e, uint32_t ai)
{
	if (__builtin_expect(++e->ll_stamp[ai] == 0, 0))
		for (uint32_t i = 0; i < e->nb_ll; i++)
			llq_purge(&e->lls[i], &e->ll_pool, ai, e->ll_stamp);
}

/* Agent ai leaves its llqs (no longer eligible). */
static void ll_leave(struct disp_engine *e, uint32_t ai)
{
	struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);

	if (a->ll_load == LL_NIL)
		return;
	ll_restamp(e, ai);
	for (uint32_t i = 0; i < a->nb_skills; i++) {
		struct llq *q = e->llq_of[sk[i]];

		if (q)
			llq_leave(q, &e->ll_pool, a->ll_load, e->ll_stamp);
	}
	a->ll_load = LL_NIL;
}

/* Agent ai, still eligible, changed load: from the old load's FIFOs to the new one's tails. */
static void ll_move(struct disp_engine *e, uint32_t ai)
{
	struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);

	ll_restamp(e, ai);
	for (uint32_t i = 0; i < a->nb_skills; i++) {
		struct llq *q = e->llq_of[sk[i]];

		if (q) {
			llq_leave(q, &e->ll_pool, a->ll_load, e->ll_stamp);
			llq_push(q, &e->ll_pool, a->load, ai, e->ll_stamp[ai]);
		}
	}
	a->ll_load = (uint16_t)a->load;
}

static void agent_unlist(struct disp_engine *e, uint32_t ai)
{
	struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);

	if (!a->listed)
		return;
	for (uint32_t i = 0; i < a->nb_skills; i++)
		if (!is_ll(e, sk[i]))
			heap_remove(e, sk[i], ai);
	ll_leave(e, ai);
	a->listed = false;
}

static void agent_arm_clock(struct disp_engine *e, uint32_t ai, uint64_t now);

/* File the agent where its state and load say: among its skills' eligible agents or not. */
static void agent_relist(struct disp_engine *e, uint32_t ai, uint64_t now)
{
	struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);
	bool was = a->listed;

	if (was && agent_offered(a)) {
		/*
		 * Still eligible, only its key changed: re-file it in place. The
		 * heaps' order is total (ties end on the agent index), so the best
		 * agent is the same as after a removal and an insertion; a random
		 * pick reads the heap's layout, so those heaps still take the long
		 * way. In the least-loaded skills an agent whose load is what it
		 * is filed under has kept its load_since too (the two change
		 * together), so it stays; otherwise its load_since is now, the
		 * latest of all, and the tails are its place.
		 */
		if (a->ll_load != LL_NIL && a->ll_load != a->load)
			ll_move(e, ai);
		for (uint32_t i = 0; i < a->nb_skills; i++) {
			switch (e->skills[sk[i]].conf.strategy) {
			case DISP_STRATEGY_LEAST_LOADED:
				break;
			case DISP_STRATEGY_RANDOM:
				heap_remove(e, sk[i], ai);
				heap_insert(e, sk[i], ai);
				break;
			default:
				heap_update(e, sk[i], ai);
				break;
			}
		}
		return;
	}
	agent_unlist(e, ai);
	if (!agent_offered(a))
		return;
	if (!was) {
		a->load_since = now;
		/* Free capacity again: the idle clock starts unless an episode runs. */
		if (!disp_timer_pending(&a->st_timer) && !a->idle_alerted) {
			a->idle_clock = now;
			agent_arm_clock(e, ai, now);
		}
	}
	for (uint32_t i = 0; i < a->nb_skills; i++)
		if (!is_ll(e, sk[i]))
			heap_insert(e, sk[i], ai);
	ll_join(e, ai);
	a->listed = true;
}

/* Agents of skill s eligible now. */
static uint32_t elig_count(const struct skill *k)
{
	return k->ll ? k->ll->live : k->elig_n;
}

static uint32_t best_agent(struct disp_engine *e, uint32_t s)
{
	const struct skill *k = &e->skills[s];

	if (k->ll) {
		uint32_t ai = llq_best(k->ll, &e->ll_pool, e->ll_stamp);

		return ai == LLQ_NONE ? NIL : ai;
	}
	if (k->elig_n == 0)
		return NIL;
	if (k->conf.strategy == DISP_STRATEGY_RANDOM)
		return k->heap[xorshift(e) % k->elig_n].ai;
	return k->heap[0].ai;
}

/* ---- agents: time accounting, group gauges, state ------------------------ */

/*
 * Add the time since the last call to the figures of the agent's current
 * activity. Called before the activity changes (state, load from or to 0),
 * not on every change of load: that would read the cold line each time.
 */
static void acct(const struct agent *a, struct agent_cold *c, uint64_t now)
{
	uint64_t d;

	if (now <= c->acct_since)
		return;
	d = now - c->acct_since;
	c->acct_since = now;
	if (!agent_online(a->state))
		return;
	c->fig.online_ms += d;
	if (a->load > 0)
		c->fig.serving_ms += d;
	else if (a->state == DISP_AGENT_READY)
		c->fig.ready_idle_ms += d;
	else if (a->state == DISP_AGENT_BREAK_REQUESTED || a->state == DISP_AGENT_ON_BREAK)
		c->fig.break_ms += d;
}

/* Add (sign +1) or take away (-1) the agent from its groups' gauges. */
static void agent_count(struct disp_engine *e, uint32_t ai, int sign)
{
	const struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);
	bool online = agent_online(a->state);
	bool brk = a->state == DISP_AGENT_BREAK_REQUESTED || a->state == DISP_AGENT_ON_BREAK;
	bool ready = a->state == DISP_AGENT_READY;

	if (ready)
		e->st.agents_ready += (uint32_t)sign;
	for (uint32_t i = 0; i < a->nb_skills; i++) {
		struct skill *k = &e->skills[sk[i]];

		k->online += online ? (uint32_t)sign : 0;
		k->ready += ready ? (uint32_t)sign : 0;
		k->on_break += brk ? (uint32_t)sign : 0;
		if (online) {
			k->online_cap += sign > 0 ? a->cap : -(uint64_t)a->cap;
			skill_dirty(k);
		}
	}
}

static void emit_sla(struct disp_engine *e, enum disp_sla_kind kind, uint32_t gw, uint32_t si,
                     uint32_t ai, uint32_t s, uint64_t elapsed)
{
	struct disp_out o = {.kind = DISP_OUT_SLA_ALERT,
	                     .gateway_id = gw,
	                     .session_id = si != NIL ? sess_id(e, si) : 0,
	                     .sla = kind,
	                     .elapsed_ms = elapsed};

	if (ai != NIL) {
		o.agent_id = dstr(e->agents[ai].id, e->agents[ai].id_len);
		ac(e, ai)->fig.sla_alerts[kind]++;
	}
	if (s != NIL) {
		o.skill = skill_name(e, s);
		e->skills[s].fig.sla_alerts[kind]++;
	}
	if (e->journal) {
		struct disp_event ev = {.kind = DISP_EV_SLA_ALERT,
		                        .session_id = o.session_id,
		                        .agent = o.agent_id,
		                        .skill = o.skill,
		                        .sla = kind,
		                        .elapsed_ms = elapsed};

		journal(e, &ev);
	}
	emit(e, &o);
}

/*
 * Arm the agent's state clock: BREAK_OVERRUN while on (or waiting for) a
 * break, IDLE_NO_INFLOW while READY. An agent in several groups is timed by
 * the strictest (smallest) limit among them.
 */
/*
 * When the agent's state clock is due: BREAK_OVERRUN while on (or waiting
 * for) a break, IDLE_NO_INFLOW while READY, UINT64_MAX when nothing is timed.
 * An agent in several groups is timed by the strictest (smallest) limit.
 */
static uint64_t agent_clock(struct disp_engine *e, uint32_t ai)
{
	struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);
	bool brk = a->state == DISP_AGENT_BREAK_REQUESTED || a->state == DISP_AGENT_ON_BREAK;
	uint64_t lim = UINT64_MAX;

	if (!brk && a->state != DISP_AGENT_READY)
		return UINT64_MAX;
	if ((brk && a->break_alerted) || (!brk && a->idle_alerted))
		return UINT64_MAX;
	a->alert_skill = UINT16_MAX;
	for (uint32_t i = 0; i < a->nb_skills; i++) {
		const struct skill *k = &e->skills[sk[i]];
		uint64_t l = brk ? k->conf.break_max_ms : k->conf.idle_alert_ms;

		if (l < lim) {
			lim = l;
			a->alert_skill = sk[i];
		}
	}
	if (lim == UINT64_MAX)
		lim = brk ? DEF_BREAK_MAX_MS : DEF_IDLE_ALERT_MS;
	return (brk ? ac(e, ai)->break_since : a->idle_clock) + lim;
}

/*
 * Arm the agent's state clock, lazily: a timer already due no later stays
 * and fire_agent re-arms it when it fires early. Moving a timer touches its
 * neighbours in the wheel (cache misses at scale) and assignments would
 * move this one every time.
 */
static void agent_arm_clock(struct disp_engine *e, uint32_t ai, uint64_t now)
{
	struct agent *a = &e->agents[ai];
	uint64_t t = agent_clock(e, ai);

	(void)now;
	if (t == UINT64_MAX || (disp_timer_pending(&a->st_timer) && a->st_timer.expires_ms <= t))
		return;
	disp_wheel_add(&e->wheel, &a->st_timer, t);
}

static void emit_state(struct disp_engine *e, const struct agent *a, bool granted,
                       const char *reason)
{
	struct disp_out o = {.kind = DISP_OUT_AGENT_STATE,
	                     .gateway_id = a->gw,
	                     .state = a->state,
	                     .granted = granted};

	o.agent_id = dstr(a->id, a->id_len);
	if (reason)
		o.reason = dstr(reason, (uint32_t)strlen(reason));
	emit(e, &o);
}

/* Every state change goes through here: figures, gauges, heaps and clocks follow. */
static void agent_set_state(struct disp_engine *e, uint32_t ai, enum disp_agent_state st,
                            uint64_t now)
{
	struct agent *a = &e->agents[ai];
	bool was_brk = a->state == DISP_AGENT_BREAK_REQUESTED || a->state == DISP_AGENT_ON_BREAK;
	bool brk = st == DISP_AGENT_BREAK_REQUESTED || st == DISP_AGENT_ON_BREAK;

	acct(a, ac(e, ai), now);
	agent_count(e, ai, -1);
	if (st == DISP_AGENT_READY && a->state != DISP_AGENT_READY) {
		a->idle_clock = now;
		a->idle_alerted = false;
		if (a->load == 0)
			a->idle_since = now;
	}
	if (brk && !was_brk) {
		ac(e, ai)->break_since = now;
		a->break_alerted = false;
	}
	a->state = (uint8_t)st;
	agent_count(e, ai, +1);
	if (e->journal) {
		struct disp_event ev = {.kind = DISP_EV_AGENT_STATE,
		                        .gw = a->gw,
		                        .agent = dstr(a->id, a->id_len),
		                        .state = st};

		journal(e, &ev);
	}
	if (!agent_online(st)) {
		disp_wheel_cancel(&e->wheel, &ac(e, ai)->hb_timer);
		a->hb_armed = false;
	}
	agent_relist(e, ai, now);
	agent_arm_clock(e, ai, now);
}

/* The heartbeat timer, set for the deadline; hb_armed mirrors it in the hot line. */
static void hb_arm(struct disp_engine *e, uint32_t ai)
{
	disp_wheel_add(&e->wheel, &ac(e, ai)->hb_timer, e->agents[ai].hb_deadline);
	e->agents[ai].hb_armed = true;
}

/*
 * Any request of the agent shows it is alive: its deadline moves, its timer
 * stays where it is (lazily, as agent_arm_clock) and, firing early, is set
 * again for the deadline.
 */
static void agent_touch(struct disp_engine *e, uint32_t ai, uint64_t now)
{
	struct agent *a = &e->agents[ai];

	if (!agent_online(a->state))
		return;
	a->hb_deadline = now + e->heartbeat_ms;
	if (!a->hb_armed)
		hb_arm(e, ai);
}

/* ---- backlog -------------------------------------------------------------- */

static void entry_release(struct disp_engine *e, uint32_t x)
{
	struct bl_entry *en = ent(e, x);

	disp_pool_free(&e->pool, &en->text);
	disp_pool_free(&e->pool, &en->att);
	if (x >= e->nb_entries) {
		e->sessions[x - e->nb_entries].inl_used = false;
	} else {
		en->next = e->e_free;
		e->e_free = x;
	}
	e->e_used--;
}

static void bl_drop_oldest(struct disp_engine *e, struct session *s)
{
	uint32_t x = s->bl_head;

	s->bl_head = ent(e, x)->next;
	if (s->bl_head == NIL)
		s->bl_tail = NIL;
	s->bl_count--;
	entry_release(e, x);
}

/* Hold one message. Returns 0 or -ENOMEM (no entry or no text block). */
static int bl_append(struct disp_engine *e, struct session *s, enum disp_side sender,
                     uint64_t msg_id, struct disp_str text, struct disp_str att, uint64_t now,
                     uint32_t agent)
{
	struct bl_entry *en;
	uint32_t x;

	/* The pool's first (its last freed is hot), then the session's own. */
	if (e->e_free != NIL) {
		x = e->e_free;
		e->e_free = e->entries[x].next;
	} else if (e->e_bump < e->nb_entries) {
		x = e->e_bump++;
	} else if (!s->inl_used) {
		x = e->nb_entries + (uint32_t)(s - e->sessions);
		s->inl_used = true;
	} else {
		return -ENOMEM;
	}
	en = ent(e, x);
	memset(en, 0, sizeof(*en));
	e->e_used++;
	if (disp_pool_put(&e->pool, text.ptr, text.len, &en->text) < 0 ||
	    disp_pool_put(&e->pool, att.ptr, att.len, &en->att) < 0) {
		entry_release(e, x);
		return -ENOMEM;
	}
	en->msg_id = msg_id;
	en->sent_ms = now;
	BL_SENDER(en) = (uint8_t)sender;
	en->agent = agent;
	en->next = NIL;
	if (s->bl_tail != NIL)
		ent(e, s->bl_tail)->next = x;
	else
		s->bl_head = x;
	s->bl_tail = x;
	s->bl_count++;
	return 0;
}

/* An assigned session keeps the last backlog_max messages; delivery never waits on it. */
static void bl_record(struct disp_engine *e, struct session *s, enum disp_side sender,
                      uint64_t msg_id, struct disp_str text, struct disp_str att, uint64_t now,
                      uint32_t agent)
{
	if (s->bl_count >= e->backlog_max)
		bl_drop_oldest(e, s);
	while (bl_append(e, s, sender, msg_id, text, att, now, agent) < 0) {
		if (s->bl_count == 0) {
			e->st.backlog_dropped++;
			return;
		}
		bl_drop_oldest(e, s);
	}
}

/* ---- sessions: slots, outputs --------------------------------------------- */

/*
 * Take the free list's head. Its successor's prev is left as it was: fixing
 * it would write a line of a cold slot on every open, and the head's prev is
 * never read (the list is only ever entered at its head or tail, and
 * slot_claim takes the head this way too).
 */
static void free_pop(struct disp_engine *e)
{
	struct session *s = &e->sessions[e->f_head];

	e->f_head = s->next;
	if (e->f_head == NIL)
		e->f_tail = NIL;
	s->prev = s->next = NIL;
}

/*
 * Slots from the hot stack first (see sess_free), then never used ones,
 * then the free list's oldest: an id that late notes may name is reused as
 * late as possible.
 */
static uint32_t sess_alloc(struct disp_engine *e)
{
	uint32_t si;

	if (e->h_head != NIL) {
		si = e->h_head;
		e->h_head = e->sessions[si].next;
		e->sessions[si].next = NIL;
	} else if (e->s_bump < e->max_sessions) {
		si = e->s_bump++;
		e->sessions[si].gen = e->gen_floor;
		disp_timer_init(&e->sessions[si].timer, si, T_SESSION);
	} else if (e->f_head != NIL) {
		si = e->f_head;
		free_pop(e);
		/* The next open fills the next slot: free slots are cold, start loading it now. */
		if (e->f_head != NIL) {
			const char *p = (const char *)&e->sessions[e->f_head];
			const char *c = (const char *)&e->sessions[e->f_head].cold;

			__builtin_prefetch(p, 1);
			__builtin_prefetch(p + 64, 1);
			__builtin_prefetch(c, 1);
			__builtin_prefetch(c + sizeof(struct sess_cold) - 1, 1);
		}
	} else {
		return NIL;
	}
	return si;
}

/* The customer side is over: count it (the slot may live on in wrap-up). */
static void sess_closed(struct disp_engine *e, bool abandoned)
{
	e->st.sessions_open--;
	e->st.sessions_closed++;
	if (abandoned)
		e->st.sessions_abandoned++;
}

/*
 * Give the slot back. The session is in no list. If its agent may still
 * send notes for it (its customer, its gateway or the wrap-up time ended
 * it), it goes to the free list's tail, where it waits longest: the late
 * notes find it (disp_agent_close). Otherwise on the hot stack, for the
 * next open: an open usually follows an end, and then fills the slot an
 * agent's close has just left, whose lines are in the cache and whose page
 * is in the TLB. Taking the oldest free slot instead, every open waited for
 * page walks that no prefetch hid (docs/development.md, "The free list's
 * order"). Reusing a slot at once, its generation still tells the sessions
 * apart; a slot is retired before it would repeat one.
 */
static void sess_free(struct disp_engine *e, uint32_t si, bool notes_may_follow)
{
	struct session *s = &e->sessions[si];

	if (s->state == SESS_WRAPUP)
		e->nb_wrapup--;
	/* Its timer, if pending, is left to fire for a free slot (or for the
	 * slot's next session) and do nothing: see sess_arm. */
	if (s->held) {
		disp_pool_free(&e->pool, &sc(e, s)->question);
		disp_pool_free(&e->pool, &sc(e, s)->transcript);
		s->held = false;
	}
	while (s->bl_count)
		bl_drop_oldest(e, s);
	s->state = SESS_FREE;
	s->mark = false;
	s->agent = NIL;
	/* Its last generation: retired (free, in no list), so that no id is ever given twice. */
	if (++s->gen == UINT32_MAX)
		return;
	if (notes_may_follow) {
		sl_push_back(e->sessions, &e->f_head, &e->f_tail, si);
	} else {
		s->next = e->h_head;
		e->h_head = si;
	}
}

/* The customer side of si is over: what the history keeps of it. */
static void journal_ended(struct disp_engine *e, uint32_t si, enum disp_close_reason why,
                          uint32_t rating, bool complaint, bool by_agent, struct disp_str notes)
{
	const struct session *s = &e->sessions[si];
	uint32_t ai = s->agent != NIL ? s->agent : s->last_agent;
	struct disp_event ev;

	/* Reads a line of the session and of the agent no one else needs: only for a journal. */
	if (!e->journal)
		return;
	ev = (struct disp_event){.kind = DISP_EV_ENDED,
	                         .session_id = sess_id(e, si),
	                         .gw = s->cust_gw,
	                         .reason = why,
	                         .rating = rating,
	                         .complaint = complaint,
	                         .by_agent = by_agent,
	                         .customer = dstr(sc(e, s)->cid, sc(e, s)->cid_len),
	                         .skill = skill_name(e, s->skill),
	                         .opened_ms = s->opened_ms,
	                         .question = dstr(disp_pool_ptr(&e->pool, sc(e, s)->question),
	                                          sc(e, s)->question.len),
	                         .text = notes};
	if (ai != NIL)
		ev.agent = dstr(e->agents[ai].id, e->agents[ai].id_len);
	journal(e, &ev);
}

static void emit_closed(struct disp_engine *e, uint32_t gw, uint64_t id, enum disp_close_reason why,
                        const struct agent *a)
{
	struct disp_out o = {
	        .kind = DISP_OUT_CLOSED, .gateway_id = gw, .session_id = id, .close_reason = why};

	if (a)
		o.agent_id = dstr(a->id, a->id_len);
	emit(e, &o);
}

static void emit_queued(struct disp_engine *e, uint32_t si, uint32_t position, uint32_t eta)
{
	struct session *s = &e->sessions[si];
	struct disp_out o = {.kind = DISP_OUT_QUEUED,
	                     .gateway_id = s->cust_gw,
	                     .session_id = sess_id(e, si),
	                     .open_ref = sc(e, s)->open_ref,
	                     .position = position,
	                     .eta_ms = eta};

	s->last_pos = position;
	s->last_eta = eta;
	emit(e, &o);
}

/* Tell a queued customer where it stands now. */
static void emit_queued_now(struct disp_engine *e, uint32_t si)
{
	uint32_t pos = q_position(e, si);

	emit_queued(e, si, pos, q_eta(&e->skills[e->sessions[si].skill], pos));
}

/* The agent's copy of ASSIGNED: everything it needs to take the conversation up. */
static void emit_assigned_agent(struct disp_engine *e, uint32_t si, uint64_t now)
{
	struct session *s = &e->sessions[si];
	const struct agent *a = &e->agents[s->agent];
	bool tr = (s->flags & SF_TRANSFERRED) != 0;
	struct disp_out o = {.kind = DISP_OUT_ASSIGNED,
	                     .gateway_id = a->gw,
	                     .session_id = sess_id(e, si),
	                     .to_agent = true,
	                     .channel = s->channel,
	                     .waited_ms = since(now, s->opened_ms),
	                     .transferred = tr};
	uint32_t n = 0;

	for (uint32_t x = s->bl_head; x != NIL; x = ent(e, x)->next) {
		struct bl_entry *en = ent(e, x);
		struct disp_msg *m = &e->scratch[n++];
		const struct agent *who;

		/* Held while queued: it was for whoever takes the session, i.e. this agent. */
		if (en->agent == NIL)
			en->agent = s->agent;
		who = &e->agents[en->agent];
		m->msg_id = en->msg_id;
		m->sender = (enum disp_side)BL_SENDER(en);
		m->text = dstr(disp_pool_ptr(&e->pool, en->text), en->text.len);
		m->attachment_ref = dstr(disp_pool_ptr(&e->pool, en->att), en->att.len);
		m->sent_unix_ms = en->sent_ms;
		m->agent_id = dstr(who->id, who->id_len);
	}
	o.agent_id = dstr(a->id, a->id_len);
	o.customer_id = dstr(sc(e, s)->cid, sc(e, s)->cid_len);
	o.skill = skill_name(e, s->skill);
	o.question = dstr(disp_pool_ptr(&e->pool, sc(e, s)->question), sc(e, s)->question.len);
	o.bot_transcript =
	        dstr(disp_pool_ptr(&e->pool, sc(e, s)->transcript), sc(e, s)->transcript.len);
	o.backlog = n ? e->scratch : NULL;
	o.nb_backlog = n;
	emit(e, &o);
}

static void emit_assigned(struct disp_engine *e, uint32_t si, uint64_t now)
{
	const struct session *s = &e->sessions[si];
	const struct agent *a = &e->agents[s->agent];
	struct disp_out o = {0};

	emit_assigned_agent(e, si, now);
	/* The customer learns who serves it and nothing of anyone else's data. */
	o.kind = DISP_OUT_ASSIGNED;
	o.gateway_id = s->cust_gw;
	o.session_id = sess_id(e, si);
	o.agent_id = dstr(a->id, a->id_len);
	o.skill = skill_name(e, s->skill);
	o.waited_ms = since(now, s->opened_ms);
	o.transferred = (s->flags & SF_TRANSFERRED) != 0;
	emit(e, &o);
}

/* ---- sessions: clocks ----------------------------------------------------- */

/* Arm the session's one timer at the earliest of its running clocks. */
static void sess_arm(struct disp_engine *e, uint32_t si)
{
	struct session *s = &e->sessions[si];
	const struct disp_skill_conf *c = &e->skills[s->skill].conf;
	uint64_t t = UINT64_MAX;

	switch (s->state) {
	case SESS_QUEUED:
		if (!(s->flags & SF_QW_FIRED))
			t = s->enq_ms + c->sla_answer_ms;
		if (s->ov_step < c->nb_overflow)
			t = min64(t, s->enq_ms + c->overflow[s->ov_step].after_ms);
		break;
	case SESS_ASSIGNED:
		if (!(s->flags & SF_REPLIED)) {
			if (!(s->flags & SF_FR_FIRED))
				t = s->assign_ms + c->first_response_ms;
			if (c->reroute_ms)
				t = min64(t, s->assign_ms + c->reroute_ms);
		}
		if (s->unans_ms && !(s->flags & SF_RO_FIRED))
			t = min64(t, s->unans_ms + c->reply_overdue_ms);
		if (s->hold_ms && !(s->flags & SF_HO_FIRED))
			t = min64(t, s->hold_ms + c->hold_max_ms);
		break;
	case SESS_WRAPUP:
		t = s->hold_ms;
		break;
	default:
		break;
	}
	/*
	 * Lazily: a timer already due no later stays, fires early and
	 * fire_session arms it again; one that times nothing fires for nothing.
	 * Moving or cancelling it would touch its neighbours in the wheel, two
	 * cache misses at scale, on nearly every request.
	 */
	if (t == UINT64_MAX || (disp_timer_pending(&s->timer) && s->timer.expires_ms <= t))
		return;
	disp_wheel_add(&e->wheel, &s->timer, t);
}

/* ---- assignment ----------------------------------------------------------- */

static void assign(struct disp_engine *e, uint32_t si, uint32_t ai, uint32_t via, uint64_t now)
{
	struct session *s = &e->sessions[si];
	struct agent *a = &e->agents[ai];
	struct skill *k = &e->skills[s->skill];

	if (!agent_offered(a))
		e->bad_assign++;
	if (s->state == SESS_QUEUED)
		q_remove(e, si);
	if (!(s->flags & SF_ANSWERED)) {
		s->flags |= SF_ANSWERED;
		k->fig.answered++;
		if (since(now, s->enq_ms) <= k->conf.sla_answer_ms)
			k->fig.answered_in_target++;
	}
	if (a->load == 0)
		acct(a, ac(e, ai), now);
	s->state = SESS_ASSIGNED;
	s->agent = ai;
	s->last_agent = ai;
	s->assign_ms = now;
	s->unans_ms = 0;
	s->hold_ms = 0;
	s->flags &= (uint8_t) ~(SF_REPLIED | SF_FR_FIRED | SF_RO_FIRED | SF_HO_FIRED | SF_FRONT);
	/* Messages held while queued wait for this agent's first answer. */
	if (s->bl_count && BL_SENDER(ent(e, s->bl_tail)) == DISP_SIDE_CUSTOMER)
		s->unans_ms = ent(e, s->bl_tail)->sent_ms;
	hand_add(e, ai, si);
	a->load++;
	a->load_since = now;
	a->assigned_today++;
	a->idle_clock = now;
	a->idle_alerted = false;
	/* Only a round-robin skill reads the turn: others need not load the ask line. */
	if (via != NIL && e->skills[via].conf.strategy == DISP_STRATEGY_ROUND_ROBIN &&
	    ask_of(e, ai, via)->level)
		ask_of(e, ai, via)->rr = ++e->skills[via].rr_counter;
	agent_relist(e, ai, now);
	agent_arm_clock(e, ai, now);
	e->st.sessions_assigned++;
	sess_arm(e, si);
	if (e->journal) {
		struct disp_event ev = {.kind = DISP_EV_ASSIGNED,
		                        .session_id = sess_id(e, si),
		                        .gw = a->gw,
		                        .agent = dstr(a->id, a->id_len),
		                        .skill = skill_name(e, s->skill)};

		journal(e, &ev);
	}
	emit_assigned(e, si, now);
}

/*
 * Who may take session si now: an eligible agent of its skill, else of the
 * skills its due overflow steps reach (in step order). Moves ov_step past
 * the due steps. *via: the skill whose strategy picked.
 */
static uint32_t find_agent(struct disp_engine *e, uint32_t si, uint64_t now, uint32_t *via)
{
	struct session *s = &e->sessions[si];
	const struct skill *k = &e->skills[s->skill];
	uint32_t ai = best_agent(e, s->skill);

	*via = s->skill;
	while (s->ov_step < k->conf.nb_overflow &&
	       since(now, s->enq_ms) >= k->conf.overflow[s->ov_step].after_ms)
		s->ov_step++;
	for (uint32_t i = 0; ai == NIL && i < s->ov_step; i++) {
		ai = best_agent(e, k->ov_to[i]);
		*via = k->ov_to[i];
	}
	return ai;
}

/* A session not in any list: to an agent now, or queued (front or back) and told so. */
static void place(struct disp_engine *e, uint32_t si, bool front, uint64_t now)
{
	uint32_t via, ai = find_agent(e, si, now, &via);

	if (ai != NIL) {
		emit_queued(e, si, 0, 0);
		e->sessions[si].state = SESS_ASSIGNED; /* keep assign() from unlinking it */
		assign(e, si, ai, via, now);
		return;
	}
	q_push(e, si, front);
	emit_queued_now(e, si);
	sess_arm(e, si);
}

/* Is session h (a class head of a queue) better than best? */
static bool sess_better(const struct disp_engine *e, uint32_t h, uint32_t best)
{
	const struct session *x = &e->sessions[h], *y;

	if (best == NIL)
		return true;
	y = &e->sessions[best];
	if (x->prio != y->prio)
		return x->prio > y->prio;
	return x->enq_ms < y->enq_ms;
}

/* An agent with room takes the best waiting session of its skills (and their inflows). */
static void agent_pull(struct disp_engine *e, uint32_t ai, uint64_t now)
{
	struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);

	while (agent_offered(a)) {
		uint32_t best = NIL, via = NIL;

		for (uint32_t i = 0; i < a->nb_skills; i++) {
			const struct skill *k = &e->skills[sk[i]];
			uint32_t h = q_best(k);

			if (h != NIL && sess_better(e, h, best)) {
				best = h;
				via = sk[i];
			}
			for (uint32_t j = 0; j < k->in_n; j++) {
				const struct inflow *in = &e->inflows[k->in_first + j];
				const struct skill *src = &e->skills[in->src];

				for (int32_t c = NB_PRIO - 1; c >= 0; c--) {
					h = src->q_head[c];
					if (h == NIL ||
					    since(now, e->sessions[h].enq_ms) < in->after_ms)
						continue;
					if (sess_better(e, h, best)) {
						best = h;
						via = sk[i];
					}
					break;
				}
			}
		}
		if (best == NIL)
			break;
		assign(e, best, ai, via, now);
	}
}

/* Offer every eligible agent's room to the queues (after a mass change). */
static void pull_all(struct disp_engine *e, uint64_t now)
{
	for (uint32_t ai = 0; ai < e->nb_agents; ai++)
		if (agent_offered(&e->agents[ai]))
			agent_pull(e, ai, now);
}

/* Take a session off its agent; the agent may finish draining. No pull. */
static uint32_t release(struct disp_engine *e, uint32_t si, uint64_t now)
{
	struct session *s = &e->sessions[si];
	uint32_t ai = s->agent;
	struct agent *a = &e->agents[ai];

	if (a->load == 1)
		acct(a, ac(e, ai), now);
	hand_remove(e, ai, si);
	s->agent = NIL;
	a->load--;
	a->load_since = now;
	if (a->load <= a->cap)
		a->shrink_load = 0;
	if (a->load == 0) {
		a->idle_since = now;
		if (a->state == DISP_AGENT_OFFLINE_REQUESTED) {
			agent_set_state(e, ai, DISP_AGENT_OFFLINE, now);
			emit_state(e, a, true, NULL);
		} else if (a->state == DISP_AGENT_BREAK_REQUESTED) {
			agent_set_state(e, ai, DISP_AGENT_ON_BREAK, now);
			emit_state(e, a, true, NULL);
		}
	}
	agent_relist(e, ai, now);
	return ai;
}

/* A served session is over for its agent: figures. */
static void count_served(struct disp_engine *e, uint32_t si, uint64_t now)
{
	struct session *s = &e->sessions[si];
	struct agent *a = &e->agents[s->agent];
	struct skill *k = &e->skills[s->skill];
	uint64_t h = since(now, s->assign_ms);

	k->fig.served++;
	a->served++;
	k->fig.handling_ms[hist_bucket(h)]++;
	tally_bump(e, s->agent, TALLY_HANDLING + hist_bucket(h));
	k->mean_handle_ms = k->mean_handle_ms - k->mean_handle_ms / 8 + h / 8;
	if (k->mean_handle_ms == 0)
		k->mean_handle_ms = 1;
	skill_dirty(k);
}

/*
 * Take the session from its agent and queue it again at the FRONT, keeping
 * its original wait; the customer is told QUEUED. The caller places it.
 */
static void requeue_front(struct disp_engine *e, uint32_t si, uint64_t now)
{
	struct session *s = &e->sessions[si];

	e->skills[s->skill].fig.rerouted++;
	release(e, si, now);
	s->flags |= SF_TRANSFERRED;
	s->unans_ms = s->hold_ms = 0;
	q_push(e, si, true);
	emit_queued_now(e, si);
	sess_arm(e, si);
}

/* Try to give re-queued sessions to agents, in queue order. */
static void place_queued(struct disp_engine *e, const uint32_t *list, uint32_t n, uint64_t now)
{
	for (uint32_t i = 0; i < n; i++) {
		uint32_t via, ai, si = list[i];

		if (e->sessions[si].state != SESS_QUEUED)
			continue;
		ai = find_agent(e, si, now, &via);
		if (ai != NIL)
			assign(e, si, ai, via, now);
	}
}

/*
 * The agent is gone: DISCONNECTED, told nothing (there is no one to tell).
 * Sessions in hand go back to the FRONT of their queues in the order they
 * were assigned (a session whose customer is on gateway `gone_gw` too is
 * simply closed); sessions in wrap-up end.
 */
static void agent_disconnect(struct disp_engine *e, uint32_t ai, uint32_t gone_gw, bool use_gw,
                             uint64_t now)
{
	struct agent *a = &e->agents[ai];
	uint32_t n = 0;

	agent_set_state(e, ai, DISP_AGENT_DISCONNECTED, now);
	for (uint32_t si; (si = hand_last(e, ai)) != NIL;) {
		struct session *s = &e->sessions[si];

		if (s->state == SESS_WRAPUP || (use_gw && s->cust_gw == gone_gw)) {
			if (s->state != SESS_WRAPUP) {
				journal_ended(e, si, DISP_CLOSE_ABANDONED, 0, false, false,
				              dstr(NULL, 0));
				sess_closed(e, true);
			}
			release(e, si, now);
			sess_free(e, si, true);
			continue;
		}
		/* From the tail: pushed at the front, the first assigned ends up first. */
		e->skills[s->skill].fig.rerouted++;
		release(e, si, now);
		s->flags |= SF_TRANSFERRED;
		s->unans_ms = s->hold_ms = 0;
		q_push(e, si, true);
		if (n < CAP_MAX)
			e->scratch_si[n++] = si;
	}
	a->shrink_load = 0;
	/* Told in queue order. */
	for (uint32_t i = n; i-- > 0;) {
		emit_queued_now(e, e->scratch_si[i]);
		sess_arm(e, e->scratch_si[i]);
	}
	for (uint32_t i = 0; i < n / 2; i++) {
		uint32_t t = e->scratch_si[i];

		e->scratch_si[i] = e->scratch_si[n - 1 - i];
		e->scratch_si[n - 1 - i] = t;
	}
	place_queued(e, e->scratch_si, n, now);
}

/* ---- timers --------------------------------------------------------------- */

static void reroute(struct disp_engine *e, uint32_t si, uint64_t now)
{
	struct session *s = &e->sessions[si];
	uint32_t ai = s->agent, via, to;
	struct agent *a = &e->agents[ai];

	emit_closed(e, a->gw, sess_id(e, si), DISP_CLOSE_REROUTED, a);
	requeue_front(e, si, now);
	/* Offered to the others first: the slow agent is held out for the moment. */
	agent_unlist(e, ai);
	to = find_agent(e, si, now, &via);
	if (to != NIL)
		assign(e, si, to, via, now);
	agent_relist(e, ai, now);
	agent_pull(e, ai, now);
}

static void fire_session(struct disp_engine *e, uint32_t si, uint64_t now)
{
	struct session *s = &e->sessions[si];
	const struct skill *k = &e->skills[s->skill];
	const struct disp_skill_conf *c = &k->conf;

	switch (s->state) {
	case SESS_QUEUED:
		if (!(s->flags & SF_QW_FIRED) && now >= s->enq_ms + c->sla_answer_ms) {
			s->flags |= SF_QW_FIRED;
			emit_sla(e, DISP_SLA_QUEUE_WAIT, s->cust_gw, si, NIL, s->skill,
			         now - s->enq_ms);
		}
		if (s->ov_step < c->nb_overflow &&
		    now >= s->enq_ms + c->overflow[s->ov_step].after_ms) {
			uint32_t via, ai = find_agent(e, si, now, &via);

			if (ai != NIL) {
				assign(e, si, ai, via, now);
				return;
			}
		}
		break;
	case SESS_ASSIGNED:
		if (!(s->flags & SF_REPLIED)) {
			if (c->reroute_ms && now >= s->assign_ms + c->reroute_ms) {
				reroute(e, si, now);
				return;
			}
			if (!(s->flags & SF_FR_FIRED) &&
			    now >= s->assign_ms + c->first_response_ms) {
				s->flags |= SF_FR_FIRED;
				emit_sla(e, DISP_SLA_FIRST_RESPONSE, e->agents[s->agent].gw, si,
				         s->agent, s->skill, now - s->assign_ms);
			}
		}
		if (s->unans_ms && !(s->flags & SF_RO_FIRED) &&
		    now >= s->unans_ms + c->reply_overdue_ms) {
			s->flags |= SF_RO_FIRED;
			emit_sla(e, DISP_SLA_REPLY_OVERDUE, e->agents[s->agent].gw, si, s->agent,
			         s->skill, now - s->unans_ms);
		}
		if (s->hold_ms && !(s->flags & SF_HO_FIRED) && now >= s->hold_ms + c->hold_max_ms) {
			s->flags |= SF_HO_FIRED;
			emit_sla(e, DISP_SLA_HOLD_OVERDUE, e->agents[s->agent].gw, si, s->agent,
			         s->skill, now - s->hold_ms);
		}
		break;
	case SESS_WRAPUP: {
		uint32_t ai;

		if (now < s->hold_ms)
			break; /* armed earlier, for the session it was before */
		/* No notes in time: the slot is free again. */
		ai = release(e, si, now);

		sess_free(e, si, true);
		agent_pull(e, ai, now);
		return;
	}
	default:
		return;
	}
	sess_arm(e, si);
}

static void fire_agent(struct disp_engine *e, uint32_t ai, uint64_t now)
{
	struct agent *a = &e->agents[ai];
	uint64_t due = agent_clock(e, ai);
	uint32_t s = a->alert_skill == UINT16_MAX ? NIL : a->alert_skill;

	if (due == UINT64_MAX)
		return;
	if (now < due) {
		/* Armed lazily for an earlier clock: wait for this one. */
		disp_wheel_add(&e->wheel, &a->st_timer, due);
		return;
	}

	if (a->state == DISP_AGENT_BREAK_REQUESTED || a->state == DISP_AGENT_ON_BREAK) {
		if (!a->break_alerted) {
			a->break_alerted = true;
			emit_sla(e, DISP_SLA_BREAK_OVERRUN, a->gw, NIL, ai, s,
			         since(now, ac(e, ai)->break_since));
		}
	} else if (a->state == DISP_AGENT_READY && a->load < a->cap && !a->idle_alerted) {
		a->idle_alerted = true;
		emit_sla(e, DISP_SLA_IDLE_NO_INFLOW, a->gw, NIL, ai, s, since(now, a->idle_clock));
	}
	/* Not idle (full) when it fired: the next free slot starts a new clock. */
}

static void on_timer(void *ctx, struct disp_timer *t)
{
	struct disp_engine *e = ctx;
	uint64_t now = t->expires_ms > e->now ? t->expires_ms : e->now;

	/* Acts at its own time: a long clock jump replays in order. */
	e->now = now;
	switch (t->kind) {
	case T_SESSION:
		fire_session(e, t->owner, now);
		break;
	case T_HEARTBEAT: {
		struct agent *a = &e->agents[t->owner];

		a->hb_armed = false;
		if (agent_online(a->state) || a->restored) {
			if (now < a->hb_deadline) {
				/* Heard from since it was set: wait for the new deadline. */
				hb_arm(e, t->owner);
				break;
			}
			/* Restored but not back in time: as if it had just disconnected. */
			a->restored = false;
			agent_disconnect(e, t->owner, 0, false, now);
		}
		break;
	}
	case T_AGENT:
		fire_agent(e, t->owner, now);
		break;
	default:
		break;
	}
}

/* Lazy SessionQueued refresh: bounded work per tick. */
static void refresh_queues(struct disp_engine *e)
{
	uint32_t budget = SCAN_BUDGET;

	for (uint32_t sk = 0; sk < e->nb_skills && budget; sk++) {
		struct skill *k = &e->skills[sk];

		while (k->scan_active && budget) {
			uint32_t si = k->scan_si;

			if (si == NIL) {
				if (k->scan_again) {
					k->scan_again = false;
					k->scan_si = q_first_from(k, NB_PRIO - 1, &k->scan_cls);
				} else {
					k->scan_active = false;
				}
				continue;
			}
			budget--;
			{
				struct session *s = &e->sessions[si];
				uint32_t pos = q_position(e, si), eta = q_eta(k, pos);
				uint32_t d =
				        eta > s->last_eta ? eta - s->last_eta : s->last_eta - eta;

				if (pos != s->last_pos || d > k->conf.eta_step_ms)
					emit_queued(e, si, pos, eta);
				if (s->next != NIL)
					k->scan_si = s->next;
				else
					k->scan_si = q_first_from(k, k->scan_cls - 1, &k->scan_cls);
			}
		}
	}
}

/* Arrivals pushed into the rings go to their queues (or straight to an agent). */
static void drain_rings(struct disp_engine *e)
{
	if (atomic_load_explicit(&e->ring_hint, memory_order_acquire) == 0)
		return;
	atomic_store_explicit(&e->ring_hint, 0, memory_order_relaxed);
	for (uint32_t sk = 0; sk < e->nb_skills; sk++) {
		uint32_t si;

		while (disp_ring_pop(e->skills[sk].ring, &si) == 0)
			place(e, si, false, e->now);
	}
}

/* Start of every call: the clock moves, due timers fire, arrivals are placed. */
static uint64_t enter(struct disp_engine *e, uint64_t now_ms)
{
	if (now_ms < e->now)
		now_ms = e->now;
	e->used = true;
	disp_wheel_advance(&e->wheel, now_ms, on_timer, e);
	e->now = now_ms;
	drain_rings(e);
	return now_ms;
}

/* ---- creation ------------------------------------------------------------- */

static uint32_t or_default(uint32_t v, uint32_t def)
{
	return v ? v : def;
}

static void *zalloc(struct disp_engine *e, size_t n, size_t size)
{
	void *p;

	n = n ? n : 1;
	p = calloc(n, size);
	if (p)
		e->footprint += n * size;
	return p;
}

/* Zeroed, and aligned as struct agent wants (calloc gives 16). */
/* size a multiple of align (so are the structs it is for), align a power of two */
static void *zalloc_aligned(struct disp_engine *e, size_t n, size_t size, size_t align)
{
	size_t bytes;
	void *p;

	n = n ? n : 1;
	if (n > SIZE_MAX / size)
		return NULL;
	bytes = n * size;
	p = aligned_alloc(align, bytes);
	if (p) {
		memset(p, 0, bytes);
		e->footprint += bytes;
	}
	return p;
}

static int skills_init(struct disp_engine *e, const struct disp_conf *conf)
{
	uint32_t hs = pow2_at_least(2 * e->nb_skills), nin = 0, nll = 0, nheap = 0;
	size_t rs = disp_ring_size(RING_SIZE);

	for (uint32_t i = 0; i < e->nb_skills; i++)
		nll += conf->skills[i].strategy == DISP_STRATEGY_LEAST_LOADED;
	e->skills = zalloc(e, e->nb_skills, sizeof(*e->skills));
	e->skill_hash = zalloc(e, hs, sizeof(*e->skill_hash));
	e->inflows = zalloc(e, (size_t)e->nb_skills * DISP_MAX_OVERFLOW, sizeof(*e->inflows));
	e->heaps = zalloc(e, (size_t)(e->nb_skills - nll) * e->max_agents, sizeof(*e->heaps));
	e->lls = zalloc(e, nll, sizeof(*e->lls));
	e->llq_of = zalloc(e, e->nb_skills, sizeof(struct llq *));
	e->nb_ll = nll;
	e->ring_mem = aligned_alloc(64, rs * e->nb_skills);
	if (!e->skills || !e->skill_hash || !e->inflows || !e->heaps || !e->lls || !e->llq_of ||
	    !e->ring_mem)
		return -ENOMEM;
	nll = 0;
	e->footprint += rs * e->nb_skills;
	e->skill_hash_mask = hs - 1;
	for (uint32_t i = 0; i < e->nb_skills; i++) {
		struct skill *k = &e->skills[i];
		struct disp_skill_conf *c = &k->conf;
		struct disp_str name;

		*c = conf->skills[i];
		k->name_len = (uint32_t)strnlen(c->name, DISP_NAME_MAX);
		k->tenant_len = (uint32_t)strnlen(c->tenant, DISP_NAME_MAX);
		c->queue_capacity = or_default(c->queue_capacity, DEF_QUEUE_CAPACITY);
		c->sla_answer_ms = or_default(c->sla_answer_ms, DEF_SLA_ANSWER_MS);
		c->break_cap_pct = or_default(c->break_cap_pct, DEF_BREAK_CAP_PCT);
		c->break_max_ms = or_default(c->break_max_ms, DEF_BREAK_MAX_MS);
		c->first_response_ms = or_default(c->first_response_ms, DEF_FIRST_RESPONSE_MS);
		c->reply_overdue_ms = or_default(c->reply_overdue_ms, DEF_REPLY_OVERDUE_MS);
		c->hold_max_ms = or_default(c->hold_max_ms, DEF_HOLD_MAX_MS);
		c->idle_alert_ms = or_default(c->idle_alert_ms, DEF_IDLE_ALERT_MS);
		c->eta_step_ms = or_default(c->eta_step_ms, DEF_ETA_STEP_MS);
		if (c->strategy == DISP_STRATEGY_LEAST_LOADED) {
			k->ll = &e->lls[nll++];
			llq_init(k->ll);
			e->llq_of[i] = k->ll;
			e->ll_need += llq_need(0, 0);
		} else {
			k->heap = &e->heaps[(size_t)nheap++ * e->max_agents];
		}
		k->mean_handle_ms = DEF_MEAN_HANDLE_MS;
		k->scan_si = NIL;
		k->ring = disp_ring_init((char *)e->ring_mem + rs * i, RING_SIZE);
		for (uint32_t p = 0; p < NB_PRIO; p++)
			k->q_head[p] = k->q_tail[p] = NIL;
		name = dstr(c->name, k->name_len);
		if (k->name_len == 0 || k->name_len >= DISP_NAME_MAX ||
		    k->tenant_len >= DISP_NAME_MAX || skill_find(e, name) != NIL ||
		    (uint32_t)c->strategy >= DISP_STRATEGY_MAX ||
		    c->nb_overflow > DISP_MAX_OVERFLOW || !k->ring)
			return -EINVAL;
		hs = fnv1a(name.ptr, name.len) & e->skill_hash_mask;
		while (e->skill_hash[hs])
			hs = (hs + 1) & e->skill_hash_mask;
		e->skill_hash[hs] = (uint16_t)(i + 1);
	}
	/* Overflow targets must exist and belong to the same tenant; steps in time order. */
	for (uint32_t i = 0; i < e->nb_skills; i++) {
		struct skill *k = &e->skills[i];

		for (uint32_t j = 0; j < k->conf.nb_overflow; j++) {
			const struct disp_overflow *ov = &k->conf.overflow[j];
			uint32_t t =
			        skill_find(e, dstr(ov->to_skill,
			                           (uint32_t)strnlen(ov->to_skill, DISP_NAME_MAX)));

			if (t == NIL || t == i || e->skills[t].tenant_len != k->tenant_len ||
			    memcmp(e->skills[t].conf.tenant, k->conf.tenant, k->tenant_len) != 0 ||
			    (j > 0 && ov->after_ms < k->conf.overflow[j - 1].after_ms))
				return -EINVAL;
			k->ov_to[j] = (uint16_t)t;
		}
	}
	for (uint32_t t = 0; t < e->nb_skills; t++) {
		e->skills[t].in_first = nin;
		for (uint32_t i = 0; i < e->nb_skills; i++)
			for (uint32_t j = 0; j < e->skills[i].conf.nb_overflow; j++)
				if (e->skills[i].ov_to[j] == t) {
					e->inflows[nin].src = (uint16_t)i;
					e->inflows[nin].after_ms =
					        e->skills[i].conf.overflow[j].after_ms;
					nin++;
					e->skills[t].in_n++;
				}
	}
	return 0;
}

static void engine_free(struct disp_engine *e)
{
	free(e->entries);
	free(e->scratch);
	free(e->scratch_si);
	disp_pool_fini(&e->pool);
	free(e->sessions);
	free(e->agents);
	free(e->acold);
	free(e->agent_hash);
	free(e->agent_skills);
	free(e->ask);
	free(e->ll_stamp);
	llq_pool_fini(&e->ll_pool);
	free(e->skills);
	free(e->skill_hash);
	free(e->inflows);
	free(e->heaps);
	free(e->lls);
	free(e->llq_of);
	free(e->ring_mem);
	free(e);
}

struct disp_engine *disp_create(const struct disp_conf *conf)
{
	struct disp_engine *e;
	uint64_t entries;
	uint32_t hs;
	int err = EINVAL, rc;

	if (!conf || !conf->emit || !conf->skills || conf->nb_skills == 0 ||
	    conf->nb_skills > SKILLS_MAX)
		goto out;
	err = ENOMEM;
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out;
	e->footprint = sizeof(*e);
	e->emit = conf->emit;
	e->emit_ctx = conf->emit_ctx;
	e->journal = conf->journal;
	e->journal_ctx = conf->journal_ctx;
	e->gen_floor = 1;
	e->nb_skills = conf->nb_skills;
	e->max_agents = or_default(conf->max_agents, DEF_MAX_AGENTS);
	e->max_sessions = or_default(conf->max_sessions, DEF_MAX_SESSIONS);
	e->backlog_max = or_default(conf->backlog_max, DEF_BACKLOG_MAX);
	e->agent_text_max = or_default(conf->agent_text_max, DEF_AGENT_TEXT_MAX);
	e->customer_text_max = or_default(conf->customer_text_max, DEF_CUSTOMER_TEXT_MAX);
	e->heartbeat_ms = or_default(conf->heartbeat_timeout_ms, DEF_HEARTBEAT_MS);
	e->rng = conf->seed ? conf->seed : 1;
	err = EINVAL;
	if (e->max_agents > AGENTS_MAX || e->max_sessions > SESSIONS_MAX ||
	    e->backlog_max > BACKLOG_MAX)
		goto out_free_engine;
	snprintf(e->agent_too_long, sizeof(e->agent_too_long), "agent text over %u characters",
	         e->agent_text_max);
	snprintf(e->customer_too_long, sizeof(e->customer_too_long),
	         "customer text over %u characters", e->customer_text_max);
	disp_wheel_init(&e->wheel, 0);
	llq_pool_init(&e->ll_pool);

	rc = skills_init(e, conf);
	if (rc < 0) {
		err = -rc;
		goto out_free_engine;
	}
	/* The llqs' spares; logins reserve the rest (ll_reserve_login). */
	err = ENOMEM;
	if (llq_pool_reserve(&e->ll_pool, e->ll_need) < 0)
		goto out_free_engine;
	e->footprint += e->ll_pool.bytes;

	err = ENOMEM;
	hs = pow2_at_least(2 * e->max_agents);
	e->agents = zalloc_aligned(e, e->max_agents, sizeof(*e->agents), _Alignof(struct agent));
	e->acold = zalloc(e, e->max_agents, sizeof(*e->acold));
	e->agent_hash = zalloc(e, hs, sizeof(*e->agent_hash));
	e->agent_skills = zalloc(e, (size_t)e->max_agents * e->nb_skills, sizeof(*e->agent_skills));
	e->ask = zalloc(e, (size_t)e->max_agents * e->nb_skills, sizeof(*e->ask));
	e->ll_stamp = zalloc(e, e->max_agents, sizeof(*e->ll_stamp));
	if (!e->agents || !e->acold || !e->agent_hash || !e->agent_skills || !e->ask ||
	    !e->ll_stamp)
		goto out_free_engine;
	e->agent_hash_mask = hs - 1;

	e->sessions =
	        zalloc_aligned(e, e->max_sessions, sizeof(*e->sessions), _Alignof(struct session));
	e->scratch_si = zalloc(e, CAP_MAX, sizeof(*e->scratch_si));
	if (!e->sessions || !e->scratch_si)
		goto out_free_engine;
	e->walk_ahead = (uint64_t)e->max_agents * sizeof(struct agent) +
	                        (uint64_t)e->max_sessions * sizeof(struct session) >
	                WALK_AHEAD_BYTES;
	e->f_head = e->f_tail = e->h_head = NIL;

	if (disp_pool_init(&e->pool, or_default(conf->text_pool_bytes, DEF_TEXT_POOL_BYTES)) < 0)
		goto out_free_engine;
	e->footprint += or_default(conf->text_pool_bytes, DEF_TEXT_POOL_BYTES);
	/* A session's first held message takes its own entry (struct session's
	 * inl), the others one of this pool; every one but an empty one takes a
	 * block too: more pool entries than blocks could never be used (but by
	 * empty messages, which then push out the session's oldest: bl_record). */
	entries = (uint64_t)e->max_sessions * (e->backlog_max - 1);
	if (entries > e->pool.total_blocks)
		entries = e->pool.total_blocks;
	e->nb_entries = (uint32_t)entries;
	e->entries = zalloc(e, (size_t)entries, sizeof(*e->entries));
	e->scratch = zalloc(e, e->backlog_max, sizeof(*e->scratch));
	if (!e->entries || !e->scratch)
		goto out_free_engine;
	e->e_free = NIL;
	return e;

out_free_engine:
	engine_free(e);
out:
	errno = err;
	return NULL;
}

void disp_destroy(struct disp_engine *e)
{
	if (!e)
		return;
	engine_free(e);
}

int disp_session_serving(const struct disp_engine *e, uint64_t session_id, struct disp_str agent_id,
                         struct disp_str *customer)
{
	const struct session *s;
	const struct agent *a;
	uint32_t si;

	if (!e || !customer)
		return -EINVAL;
	si = sess_find(e, session_id);
	if (si == NIL)
		return -ENOENT;
	s = &e->sessions[si];
	if (s->state != SESS_ASSIGNED)
		return -EPERM;
	a = &e->agents[s->agent];
	if (!str_is(a->id, a->id_len, agent_id))
		return -EPERM;
	*customer = dstr(sc(e, s)->cid, sc(e, s)->cid_len);
	return 0;
}

uint32_t disp_customer_sessions(const struct disp_engine *e, struct disp_str customer_id)
{
	uint32_t n = 0;

	if (!e || customer_id.len == 0 || customer_id.len >= DISP_NAME_MAX)
		return 0;
	for (uint32_t si = 0; si < e->s_bump; si++) {
		const struct session *s = &e->sessions[si];

		if (s->state != SESS_FREE && str_is(sc(e, s)->cid, sc(e, s)->cid_len, customer_id))
			n++;
	}
	return n;
}

size_t disp_footprint(const struct disp_engine *e)
{
	return e ? e->footprint : 0;
}

/* ---- agents --------------------------------------------------------------- */

/* A new agent, OFFLINE, known from now on; NIL when max_agents are known already. */
static uint32_t agent_add(struct disp_engine *e, struct disp_str id, uint64_t now)
{
	uint32_t ai;
	struct agent *a;

	if (e->nb_agents == e->max_agents)
		return NIL;
	ai = e->nb_agents++;
	a = &e->agents[ai];
	memcpy(a->id, id.ptr, id.len);
	a->id_len = (uint8_t)id.len;
	a->state = DISP_AGENT_OFFLINE;
	a->cap = 1; /* until a login says */
	a->s_head = a->s_tail = NIL;
	a->ll_load = LL_NIL;
	a->alert_skill = UINT16_MAX;
	ac(e, ai)->acct_since = now;
	disp_timer_init(&ac(e, ai)->hb_timer, ai, T_HEARTBEAT);
	disp_timer_init(&a->st_timer, ai, T_AGENT);
	agent_hash_add(e, ai);
	return ai;
}

/* assigned_today starts again; fig.assigned keeps counting. */
static void new_shift(struct disp_engine *e, uint32_t ai)
{
	ac(e, ai)->assigned_before += e->agents[ai].assigned_today;
	e->agents[ai].assigned_today = 0;
}

/* Agent ids with least-loaded skill s change by d, one logged in with cap: e->ll_need follows. */
static void ll_count(struct disp_engine *e, uint32_t s, int32_t d, uint32_t cap)
{
	struct skill *k = &e->skills[s];

	e->ll_need -= llq_need(k->ll_ids, k->ll_capmax);
	k->ll_ids = (uint32_t)((int32_t)k->ll_ids + d);
	if (cap > k->ll_capmax)
		k->ll_capmax = cap;
	e->ll_need += llq_need(k->ll_ids, k->ll_capmax);
}

/*
 * Chunks for agent ai's entries in the least-loaded skills it logs in with
 * (skills[0 .. n), distinct) in place of its last login's: reserved before
 * the login changes anything, so that no later request allocates and a
 * refusal leaves the agent as it was (a larger ll_capmax only reserves
 * more). The new skills count before the reserve and the old ones stop
 * counting after it: until agent_unlist the agent is still in the old ones.
 */
static int ll_reserve_login(struct disp_engine *e, uint32_t ai, const uint16_t *skills, uint32_t n,
                            uint32_t cap)
{
	const uint16_t *old = agent_skill_list(e, ai);
	size_t before = e->ll_pool.bytes;
	int rc;

	for (uint32_t i = 0; i < n; i++)
		if (is_ll(e, skills[i]))
			ll_count(e, skills[i], 1, cap);
	rc = llq_pool_reserve(&e->ll_pool, e->ll_need);
	e->footprint += e->ll_pool.bytes - before;
	if (rc < 0) {
		for (uint32_t i = 0; i < n; i++)
			if (is_ll(e, skills[i]))
				ll_count(e, skills[i], -1, 0);
		return rc;
	}
	for (uint32_t i = 0; i < e->agents[ai].nb_skills; i++)
		if (is_ll(e, old[i]))
			ll_count(e, old[i], -1, 0);
	return 0;
}

int disp_agent_login(struct disp_engine *e, uint32_t gw, const struct disp_login *req,
                     uint64_t now_ms)
{
	struct agent *a;
	uint32_t ai, cap, nb = 0;
	uint16_t *sk;
	uint16_t skills[SKILLS_MAX];
	uint8_t levels[SKILLS_MAX];
	uint8_t seen[SKILLS_MAX / 8] = {0};
	bool fresh;

	if (!e || !req)
		return -EINVAL;
	now_ms = enter(e, now_ms);
	if (!name_ok(req->agent_id))
		return refuse(e, gw, DISP_ERR_MALFORMED, "agent id must be 1 to 63 bytes of utf-8",
		              0);
	if (req->nb_skills && !req->skills)
		return refuse(e, gw, DISP_ERR_MALFORMED, "skills missing", 0);
	for (uint32_t i = 0; i < req->nb_skills; i++) {
		uint32_t s = skill_find(e, req->skills[i].skill);
		const struct skill *k;

		if (s == NIL)
			return refuse(e, gw, DISP_ERR_UNKNOWN_SKILL, "unknown skill", 0);
		k = &e->skills[s];
		if (k->tenant_len && !str_is(k->conf.tenant, k->tenant_len, req->tenant))
			return refuse(e, gw, DISP_ERR_FORBIDDEN, "skill of another tenant", 0);
		/* A skill named twice: the first level counts. */
		if (seen[s / 8] & (1u << (s % 8)))
			continue;
		seen[s / 8] |= (uint8_t)(1u << (s % 8));
		skills[nb] = (uint16_t)s;
		levels[nb++] = (uint8_t)(req->skills[i].level < 1   ? 1
		                         : req->skills[i].level > 5 ? 5
		                                                    : req->skills[i].level);
	}
	cap = req->max_sessions ? req->max_sessions : 1;
	if (cap > CAP_MAX)
		cap = CAP_MAX;
	ai = agent_find(e, req->agent_id);
	if (ai == NIL) {
		ai = agent_add(e, req->agent_id, now_ms);
		if (ai == NIL)
			return refuse(e, gw, DISP_ERR_OVERLOADED, "too many agents", 0);
	}
	if (ll_reserve_login(e, ai, skills, nb, cap) < 0)
		return refuse(e, gw, DISP_ERR_OVERLOADED, "out of memory for agents", 0);
	a = &e->agents[ai];
	fresh = !agent_online(a->state);

	/* A login through another gateway moves the agent there, sessions and all. */
	acct(a, ac(e, ai), now_ms);
	agent_unlist(e, ai);
	agent_count(e, ai, -1);
	/* Counted nowhere until agent_set_state: a login is a new READY from any state. */
	a->state = DISP_AGENT_OFFLINE;
	sk = &e->agent_skills[(size_t)ai * e->nb_skills];
	for (uint32_t i = 0; i < a->nb_skills; i++)
		ask_of(e, ai, sk[i])->level = 0;
	a->gw = gw;
	a->nb_skills = (uint16_t)nb;
	for (uint32_t i = 0; i < nb; i++) {
		uint32_t s = skills[i];

		sk[i] = (uint16_t)s;
		ask_of(e, ai, s)->level = levels[i];
		ask_of(e, ai, s)->pos = POS_NIL;
		/* Joins the round at its end. */
		ask_of(e, ai, s)->rr = ++e->skills[s].rr_counter;
	}
	a->cap = cap;
	a->shrink_load = a->load > a->cap ? a->load : 0;
	if (fresh)
		new_shift(e, ai);
	a->load_since = now_ms;
	agent_set_state(e, ai, DISP_AGENT_READY, now_ms);
	agent_touch(e, ai, now_ms);
	emit_state(e, a, true, NULL);
	if (a->restored) {
		/* Back after a restart of ours: its workbench gets its sessions again. */
		a->restored = false;
		for (uint32_t i = 0; i < a->hand_n; i++)
			if (e->sessions[a->hand[i]].state == SESS_ASSIGNED)
				emit_assigned_agent(e, a->hand[i], now_ms);
		for (uint32_t si = a->s_head; si != NIL; si = e->sessions[si].next)
			if (e->sessions[si].state == SESS_ASSIGNED)
				emit_assigned_agent(e, si, now_ms);
	}
	agent_pull(e, ai, now_ms);
	return 0;
}

/*
 * The agent id names, looked for first as the agent (or last agent) of the
 * session the request is about: its slot is loaded already, and an agent
 * acting on a session is nearly always its own, so the hash table's line is
 * spared. Agents are never removed nor renamed, so an id that matches there
 * is the one agent_find would find.
 */
static uint32_t agent_find_near(const struct disp_engine *e, struct disp_str id,
                                uint64_t session_id)
{
	uint32_t low = (uint32_t)session_id;

	if (id.ptr && id.len && low != 0 && low <= e->s_bump) {
		const struct session *s = &e->sessions[low - 1];
		uint32_t ai = s->agent != NIL ? s->agent : s->last_agent;

		if (ai < e->nb_agents && str_is(e->agents[ai].id, e->agents[ai].id_len, id)) {
			agent_prefetch(e, ai);
			return ai;
		}
	}
	return agent_find(e, id);
}

/* The agent named, if it exists and acts through this gateway (session_id: 0 or the one
 * the request is about). */
static int agent_auth(struct disp_engine *e, uint32_t gw, struct disp_str id, uint64_t session_id,
                      uint32_t *ai)
{
	*ai = agent_find_near(e, id, session_id);
	if (*ai == NIL)
		return refuse(e, gw, DISP_ERR_UNKNOWN_AGENT, "unknown agent", session_id);
	if (e->agents[*ai].gw != gw)
		return refuse(e, gw, DISP_ERR_FORBIDDEN, "agent not logged in through this gateway",
		              session_id);
	return 0;
}

/* Allowed on break in a group of `online` agents: see the header's rounding rule. */
static uint32_t break_allowed(uint32_t online, uint32_t pct)
{
	uint32_t n = (uint32_t)((uint64_t)online * pct / 100u);

	if (n == 0 && online >= 2)
		n = 1;
	return n;
}

/* Would granting a break to ai keep every group of its within the cap? */
static bool break_fits(struct disp_engine *e, uint32_t ai, char *why, size_t why_len)
{
	const struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);

	for (uint32_t i = 0; i < a->nb_skills; i++) {
		const struct skill *k = &e->skills[sk[i]];

		if (k->on_break + 1 > break_allowed(k->online, k->conf.break_cap_pct)) {
			snprintf(why, why_len,
			         "break cap: %u of %u agents of %.*s already on break", k->on_break,
			         k->online, (int)k->name_len, k->conf.name);
			return false;
		}
	}
	return true;
}

int disp_agent_state(struct disp_engine *e, uint32_t gw, struct disp_str agent_id,
                     enum disp_agent_state want, uint64_t now_ms)
{
	struct agent *a;
	uint32_t ai;
	int rc;
	char why[160];

	if (!e)
		return -EINVAL;
	now_ms = enter(e, now_ms);
	rc = agent_auth(e, gw, agent_id, 0, &ai);
	if (rc)
		return rc;
	a = &e->agents[ai];
	switch (want) {
	case DISP_AGENT_READY:
		if (a->state == DISP_AGENT_OFFLINE)
			new_shift(e, ai);
		agent_set_state(e, ai, DISP_AGENT_READY, now_ms);
		agent_touch(e, ai, now_ms);
		emit_state(e, a, true, NULL);
		agent_pull(e, ai, now_ms);
		return 0;
	case DISP_AGENT_OFFLINE_REQUESTED:
		agent_touch(e, ai, now_ms);
		agent_set_state(e, ai, a->load ? DISP_AGENT_OFFLINE_REQUESTED : DISP_AGENT_OFFLINE,
		                now_ms);
		emit_state(e, a, true, NULL);
		return 0;
	case DISP_AGENT_BREAK_REQUESTED:
		if (!agent_online(a->state) || a->state == DISP_AGENT_OFFLINE_REQUESTED)
			return refuse(e, gw, DISP_ERR_INVALID_STATE, "agent not online", 0);
		agent_touch(e, ai, now_ms);
		if (a->state == DISP_AGENT_BREAK_REQUESTED || a->state == DISP_AGENT_ON_BREAK) {
			emit_state(e, a, true, NULL); /* already granted */
			return 0;
		}
		if (!break_fits(e, ai, why, sizeof(why))) {
			emit_state(e, a, false, why);
			return 0;
		}
		agent_set_state(e, ai, a->load ? DISP_AGENT_BREAK_REQUESTED : DISP_AGENT_ON_BREAK,
		                now_ms);
		{
			/* Debug: the cap must hold right after granting. */
			const uint16_t *sk = agent_skill_list(e, ai);

			for (uint32_t i = 0; i < a->nb_skills; i++) {
				const struct skill *k = &e->skills[sk[i]];

				if (k->on_break > break_allowed(k->online, k->conf.break_cap_pct))
					e->cap_granted_over++;
			}
		}
		emit_state(e, a, true, NULL);
		return 0;
	default:
		return refuse(e, gw, DISP_ERR_INVALID_STATE, "state not requestable", 0);
	}
}

int disp_agent_heartbeat(struct disp_engine *e, uint32_t gw, struct disp_str agent_id,
                         uint64_t now_ms)
{
	uint32_t ai;
	int rc;

	if (!e)
		return -EINVAL;
	now_ms = enter(e, now_ms);
	rc = agent_auth(e, gw, agent_id, 0, &ai);
	if (rc)
		return rc;
	agent_touch(e, ai, now_ms);
	return 0;
}

/* ---- sessions ------------------------------------------------------------- */

/* Is the group open at now (its local time)? */
static bool skill_open(const struct skill *k, uint64_t now)
{
	const struct disp_hours *h = &k->conf.hours;
	int64_t local = (int64_t)(now / 60000u) + h->utc_offset_min; /* minutes */
	uint32_t min, day;

	if (h->open_min == h->close_min)
		return true;
	if (local < 0)
		local = 0;
	min = (uint32_t)(local % 1440);
	day = (uint32_t)((local / 1440 + 4) % 7); /* 1970-01-01 was a Thursday */
	if (h->open_min < h->close_min)
		return min >= h->open_min && min < h->close_min &&
		       (!h->days || (h->days >> day) & 1);
	/* Spans midnight: the hours after midnight belong to the day that opened them. */
	if (min >= h->open_min)
		return !h->days || (h->days >> day) & 1;
	if (min < h->close_min)
		return !h->days || (h->days >> ((day + 6) % 7)) & 1;
	return false;
}

/* Is an agent free for a new session of skill s (its own, or by an immediate overflow)? */
static bool agent_at_hand(const struct disp_engine *e, uint32_t s)
{
	const struct skill *k = &e->skills[s];

	if (elig_count(k))
		return true;
	for (uint32_t i = 0; i < k->conf.nb_overflow && k->conf.overflow[i].after_ms == 0; i++)
		if (elig_count(&e->skills[k->ov_to[i]]))
			return true;
	return false;
}

/* Busy with leave_message: the follow-up is kept. */
static void journal_left_message(struct disp_engine *e, uint32_t gw, const struct disp_open *req,
                                 uint32_t sk)
{
	struct disp_event ev = {.kind = DISP_EV_LEFT_MESSAGE,
	                        .gw = gw,
	                        .open_ref = req->open_ref,
	                        .customer = req->customer_id,
	                        .tenant = req->tenant,
	                        .skill = skill_name(e, sk),
	                        .question = req->question};

	journal(e, &ev);
}

/*
 * Busy for an open (leave_message: the follow-up is kept). Built here, not
 * at the top of disp_session_open: zeroing its 320 bytes on every open cost
 * more than the rest of an accepted open's own work (see docs/development.md).
 */
static int open_busy(struct disp_engine *e, uint32_t gw, const struct disp_open *req,
                     const char *reason, bool leave_message)
{
	struct disp_out busy = {.kind = DISP_OUT_BUSY,
	                        .gateway_id = gw,
	                        .open_ref = req->open_ref,
	                        .retry_after_ms = RETRY_AFTER,
	                        .leave_message = leave_message,
	                        .reason = dstr(reason, (uint32_t)strlen(reason))};

	e->st.sessions_busy++;
	emit(e, &busy);
	return -EBUSY;
}

int disp_session_open(struct disp_engine *e, uint32_t gw, const struct disp_open *req,
                      uint64_t now_ms)
{
	struct skill *k;
	struct session *s;
	uint32_t sk, si;
	int rc;

	if (!e || !req)
		return -EINVAL;
	now_ms = enter(e, now_ms);
	if (!name_ok(req->customer_id))
		return refuse(e, gw, DISP_ERR_MALFORMED,
		              "customer id must be 1 to 63 bytes of utf-8", req->open_ref);
	sk = skill_find(e, req->skill);
	if (sk == NIL)
		return refuse(e, gw, DISP_ERR_UNKNOWN_SKILL, "unknown skill", req->open_ref);
	k = &e->skills[sk];
	if (k->tenant_len && !str_is(k->conf.tenant, k->tenant_len, req->tenant))
		return refuse(e, gw, DISP_ERR_FORBIDDEN, "skill of another tenant", req->open_ref);
	rc = check_text(e, gw, req->question, e->customer_text_max, e->customer_too_long,
	                req->open_ref);
	if (rc)
		return rc;
	rc = check_text(e, gw, req->bot_transcript, UINT32_MAX, "bot transcript too long",
	                req->open_ref);
	if (rc)
		return rc;

	if (!skill_open(k, now_ms)) {
		k->fig.left_message++;
		journal_left_message(e, gw, req, sk);
		return open_busy(e, gw, req, "closed", true);
	}
	/* Full only matters when the customer would have to wait. */
	if (!agent_at_hand(e, sk) && k->q_count >= k->conf.queue_capacity) {
		k->fig.left_message++;
		journal_left_message(e, gw, req, sk);
		e->st.sessions_busy_queue_full++;
		return open_busy(e, gw, req, "queue full", true);
	}
	si = sess_alloc(e);
	if (si == NIL)
		goto out_busy;
	s = &e->sessions[si];
	if (disp_pool_put(&e->pool, req->question.ptr, req->question.len, &sc(e, s)->question) < 0)
		goto out_free_slot;
	if (disp_pool_put(&e->pool, req->bot_transcript.ptr, req->bot_transcript.len,
	                  &sc(e, s)->transcript) < 0)
		goto out_free_question;

	s->state = SESS_QUEUED; /* in the ring: not linked yet */
	s->flags = 0;
	s->mark = false;
	s->prio = (uint8_t)(req->priority < NB_PRIO ? req->priority : NB_PRIO - 1);
	s->ov_step = 0;
	s->skill = (uint16_t)sk;
	s->cust_gw = gw;
	s->agent = NIL;
	s->last_agent = NIL;
	s->prev = s->next = NIL;
	s->held = sc(e, s)->question.len || sc(e, s)->transcript.len;
	sc(e, s)->open_ref = req->open_ref;
	s->opened_ms = now_ms;
	s->enq_ms = now_ms;
	s->assign_ms = s->unans_ms = s->hold_ms = 0;
	s->channel = req->channel;
	s->bl_head = s->bl_tail = NIL;
	s->bl_count = 0;
	memcpy(sc(e, s)->cid, req->customer_id.ptr, req->customer_id.len);
	sc(e, s)->cid_len = (uint8_t)req->customer_id.len;
	e->st.sessions_opened++;
	e->st.sessions_open++;
	k->fig.offered++;
	if (e->journal) {
		struct disp_event ev = {.kind = DISP_EV_OPENED,
		                        .session_id = sess_id(e, si),
		                        .gw = gw,
		                        .customer = req->customer_id,
		                        .tenant = req->tenant,
		                        .skill = skill_name(e, sk),
		                        .channel = req->channel,
		                        .priority = s->prio,
		                        .open_ref = req->open_ref,
		                        .opened_ms = now_ms,
		                        .question = req->question};

		journal(e, &ev);
	}

	/* Through the skill's arrival ring; we are its consumer, so it is placed at once. */
	if (disp_ring_push(k->ring, si) < 0) {
		drain_rings(e);
		if (disp_ring_push(k->ring, si) < 0) {
			place(e, si, false, now_ms);
			goto out_counted;
		}
	}
	atomic_fetch_add_explicit(&e->ring_hint, 1, memory_order_release);
	drain_rings(e);
out_counted:
	if (s->state == SESS_QUEUED)
		e->st.sessions_queued++;
	return 0;

out_free_question:
	disp_pool_free(&e->pool, &sc(e, s)->question);
out_free_slot:
	/* Never handed out: back at the front, its generation unchanged. */
	s->state = SESS_FREE;
	sl_push_front(e->sessions, &e->f_head, &e->f_tail, si);
out_busy:
	return open_busy(e, gw, req, "overloaded", false);
}

/* The session named, if it exists (not in wrap-up) and was opened through this gateway. */
static int customer_auth(struct disp_engine *e, uint32_t gw, uint64_t session_id, uint32_t *si)
{
	*si = sess_find(e, session_id);
	if (*si == NIL || e->sessions[*si].state == SESS_WRAPUP)
		return refuse(e, gw, DISP_ERR_UNKNOWN_SESSION, "unknown session", session_id);
	if (e->sessions[*si].state == SESS_ASSIGNED)
		agent_prefetch(e, e->sessions[*si].agent);
	if (e->sessions[*si].cust_gw != gw)
		return refuse(e, gw, DISP_ERR_FORBIDDEN, "session not opened through this gateway",
		              session_id);
	return 0;
}

/* A Deliver of one message, to gw; a is the agent it is for or from. */
static void emit_deliver(struct disp_engine *e, uint32_t gw, uint64_t session_id,
                         enum disp_side sender, uint64_t msg_id, struct disp_str text,
                         struct disp_str attachment_ref, uint64_t now_ms, const struct agent *a)
{
	struct disp_out o = {.kind = DISP_OUT_DELIVER, .gateway_id = gw, .session_id = session_id};

	o.msg.msg_id = msg_id;
	o.msg.sender = sender;
	o.msg.text = dstr(text.ptr, text.len);
	o.msg.attachment_ref = dstr(attachment_ref.ptr, attachment_ref.len);
	o.msg.sent_unix_ms = now_ms;
	o.msg.agent_id = dstr(a->id, a->id_len);
	emit(e, &o);
}

static void journal_msg_in(struct disp_engine *e, uint64_t session_id, uint64_t msg_id,
                           struct disp_str text, struct disp_str attachment_ref)
{
	struct disp_event ev;

	if (!e->journal)
		return;
	ev = (struct disp_event){.kind = DISP_EV_MSG_IN,
	                         .session_id = session_id,
	                         .msg_id = msg_id,
	                         .text = text,
	                         .attachment = attachment_ref};
	journal(e, &ev);
}

int disp_customer_message(struct disp_engine *e, uint32_t gw, uint64_t session_id, uint64_t msg_id,
                          struct disp_str text, struct disp_str attachment_ref, uint64_t now_ms)
{
	struct session *s;
	const struct agent *a;
	uint32_t si;
	int rc;

	if (!e)
		return -EINVAL;
	now_ms = enter(e, now_ms);
	rc = customer_auth(e, gw, session_id, &si);
	if (rc)
		return rc;
	rc = check_text(e, gw, text, e->customer_text_max, e->customer_too_long, msg_id);
	if (rc)
		return rc;
	rc = check_attachment(e, gw, attachment_ref, msg_id);
	if (rc)
		return rc;
	s = &e->sessions[si];
	if (s->state == SESS_QUEUED) {
		if (s->bl_count >= e->backlog_max)
			return refuse(e, gw, DISP_ERR_OVERLOADED, "too many messages waiting",
			              msg_id);
		if (bl_append(e, s, DISP_SIDE_CUSTOMER, msg_id, text, attachment_ref, now_ms, NIL) <
		    0)
			return refuse(e, gw, DISP_ERR_OVERLOADED, "no memory for the message",
			              msg_id);
		journal_msg_in(e, session_id, msg_id, text, attachment_ref);
		return 0;
	}
	journal_msg_in(e, session_id, msg_id, text, attachment_ref);
	a = &e->agents[s->agent];
	bl_record(e, s, DISP_SIDE_CUSTOMER, msg_id, text, attachment_ref, now_ms, s->agent);
	if (s->unans_ms == 0) {
		s->unans_ms = now_ms ? now_ms : 1;
		s->flags &= (uint8_t)~SF_RO_FIRED;
		sess_arm(e, si);
	}
	e->st.delivered_to_agent++;
	emit_deliver(e, a->gw, session_id, DISP_SIDE_CUSTOMER, msg_id, text, attachment_ref, now_ms,
	             a);
	return 0;
}

int disp_session_end(struct disp_engine *e, uint32_t gw, uint64_t session_id, uint32_t rating,
                     bool complaint, struct disp_str comment, uint64_t now_ms)
{
	struct session *s;
	struct skill *k;
	struct agent *a;
	uint32_t si, ai;
	int rc;

	(void)comment; /* kept by the store, not by the engine */
	if (!e)
		return -EINVAL;
	now_ms = enter(e, now_ms);
	rc = customer_auth(e, gw, session_id, &si);
	if (rc)
		return rc;
	if (rating >= 4)
		return refuse(e, gw, DISP_ERR_MALFORMED, "invalid rating", session_id);
	s = &e->sessions[si];
	k = &e->skills[s->skill];
	e->st.ratings[rating]++;
	if (complaint)
		e->st.complaints++;
	if (s->state == SESS_QUEUED) {
		q_remove(e, si);
		k->fig.abandoned++;
		journal_ended(e, si, DISP_CLOSE_ABANDONED, rating, complaint, false, dstr(NULL, 0));
		emit_closed(e, gw, session_id, DISP_CLOSE_ABANDONED, NULL);
		sess_closed(e, true);
		sess_free(e, si, false);
		return 0;
	}
	ai = s->agent;
	a = &e->agents[ai];
	k->fig.ratings[rating]++;
	tally_bump(e, ai, TALLY_RATINGS + rating);
	if (complaint) {
		k->fig.complaints++;
		tally_bump(e, ai, TALLY_COMPLAINTS);
	}
	count_served(e, si, now_ms);
	journal_ended(e, si, DISP_CLOSE_CUSTOMER_ENDED, rating, complaint, false, dstr(NULL, 0));
	emit_closed(e, gw, session_id, DISP_CLOSE_CUSTOMER_ENDED, a);
	emit_closed(e, a->gw, session_id, DISP_CLOSE_CUSTOMER_ENDED, a);
	sess_closed(e, false);
	if (k->conf.wrap_up_ms) {
		/* The slot stays busy until the notes come or the wrap-up time passes. */
		s->state = SESS_WRAPUP;
		s->hold_ms = now_ms + k->conf.wrap_up_ms;
		e->nb_wrapup++;
		sess_arm(e, si);
		return 0;
	}
	release(e, si, now_ms);
	sess_free(e, si, true);
	agent_pull(e, ai, now_ms);
	return 0;
}

/* The session named, if the agent (already authenticated) serves it now. */
static int agent_session(struct disp_engine *e, uint32_t gw, uint32_t ai, uint64_t session_id,
                         uint32_t *si)
{
	*si = sess_find(e, session_id);
	if (*si == NIL)
		return refuse(e, gw, DISP_ERR_UNKNOWN_SESSION, "unknown session", session_id);
	if (e->sessions[*si].agent != ai ||
	    (e->sessions[*si].state != SESS_ASSIGNED && e->sessions[*si].state != SESS_WRAPUP))
		return refuse(e, gw, DISP_ERR_FORBIDDEN, "session not assigned to this agent",
		              session_id);
	if (e->sessions[*si].state == SESS_WRAPUP)
		return refuse(e, gw, DISP_ERR_INVALID_STATE, "session closed: notes expected",
		              session_id);
	return 0;
}

int disp_agent_message(struct disp_engine *e, uint32_t gw, uint64_t session_id,
                       struct disp_str agent_id, uint64_t msg_id, struct disp_str text,
                       struct disp_str attachment_ref, bool hold, uint64_t now_ms)
{
	struct session *s;
	struct agent *a;
	uint32_t ai, si;
	int rc;

	if (!e)
		return -EINVAL;
	sess_prefetch(e, session_id);
	now_ms = enter(e, now_ms);
	rc = agent_auth(e, gw, agent_id, session_id, &ai);
	if (rc)
		return rc;
	agent_touch(e, ai, now_ms);
	rc = agent_session(e, gw, ai, session_id, &si);
	if (rc)
		return rc;
	rc = check_text(e, gw, text, e->agent_text_max, e->agent_too_long, msg_id);
	if (rc)
		return rc;
	rc = check_attachment(e, gw, attachment_ref, msg_id);
	if (rc)
		return rc;
	s = &e->sessions[si];
	a = &e->agents[ai];
	if (e->journal) {
		struct disp_event ev = {.kind = DISP_EV_MSG_OUT,
		                        .session_id = session_id,
		                        .msg_id = msg_id,
		                        .agent = agent_id,
		                        .text = text,
		                        .attachment = attachment_ref,
		                        .hold = hold};

		journal(e, &ev);
	}
	bl_record(e, s, DISP_SIDE_AGENT, msg_id, text, attachment_ref, now_ms, ai);
	/* Any agent message answers everything the customer said so far. */
	if (!(s->flags & SF_REPLIED)) {
		uint64_t fr = since(now_ms, s->assign_ms);

		s->flags |= SF_REPLIED;
		e->skills[s->skill].fig.first_response_ms[hist_bucket(fr)]++;
		tally_bump(e, ai, TALLY_FIRST_RESPONSE + hist_bucket(fr));
	}
	s->unans_ms = 0;
	if (hold) {
		if (!s->hold_ms) {
			s->hold_ms = now_ms ? now_ms : 1;
			s->flags &= (uint8_t)~SF_HO_FIRED;
		}
	} else {
		s->hold_ms = 0;
	}
	sess_arm(e, si);
	e->st.delivered_to_customer++;
	emit_deliver(e, s->cust_gw, session_id, DISP_SIDE_AGENT, msg_id, text, attachment_ref,
	             now_ms, a);
	return 0;
}

/* Notes for a session already closed for its customer. */
static void journal_notes(struct disp_engine *e, const struct session *s, uint64_t session_id,
                          uint32_t ai, struct disp_str notes)
{
	struct disp_event ev;

	if (!e->journal)
		return;
	ev = (struct disp_event){.kind = DISP_EV_NOTES, .session_id = session_id, .text = notes};
	ev.customer = dstr(sc(e, s)->cid, sc(e, s)->cid_len);
	ev.agent = dstr(e->agents[ai].id, e->agents[ai].id_len);
	journal(e, &ev);
}

/* The service record: required, even when the customer left at once. */
static int check_notes(struct disp_engine *e, uint32_t gw, struct disp_str notes, uint64_t ref)
{
	if (notes.len == 0 || !notes.ptr)
		return refuse(e, gw, DISP_ERR_MALFORMED, "notes required", ref);
	if (disp_utf8_count(notes.ptr, notes.len) < 0)
		return refuse(e, gw, DISP_ERR_MALFORMED, "notes are not valid utf-8", ref);
	return 0;
}

int disp_agent_close(struct disp_engine *e, uint32_t gw, uint64_t session_id,
                     struct disp_str agent_id, struct disp_str notes, uint64_t now_ms)
{
	struct session *s;
	struct skill *k;
	uint32_t ai, si, low;
	int rc;

	if (!e)
		return -EINVAL;
	sess_prefetch(e, session_id);
	now_ms = enter(e, now_ms);
	rc = agent_auth(e, gw, agent_id, session_id, &ai);
	if (rc)
		return rc;
	agent_touch(e, ai, now_ms);
	si = sess_find(e, session_id);
	low = (uint32_t)session_id;
	if (si == NIL && low != 0 && low <= e->s_bump) {
		/*
		 * Ended already (the customer left, its gateway went down, or the
		 * wrap-up time passed) and the slot not reused yet: the agent is
		 * writing up its service record. Nothing left to close; the notes
		 * themselves go to the store.
		 */
		s = &e->sessions[low - 1];
		if (s->state == SESS_FREE && s->gen == (uint32_t)(session_id >> 32) + 1 &&
		    s->last_agent == ai) {
			rc = check_notes(e, gw, notes, session_id);
			if (rc == 0)
				journal_notes(e, s, session_id, ai, notes);
			return rc;
		}
	}
	if (si != NIL && e->sessions[si].state == SESS_WRAPUP && e->sessions[si].agent == ai) {
		/* The notes end the wrap-up: the slot is free. */
		rc = check_notes(e, gw, notes, session_id);
		if (rc)
			return rc;
		journal_notes(e, &e->sessions[si], session_id, ai, notes);
		release(e, si, now_ms);
		sess_free(e, si, false);
		agent_pull(e, ai, now_ms);
		return 0;
	}
	rc = agent_session(e, gw, ai, session_id, &si);
	if (rc)
		return rc;
	rc = check_notes(e, gw, notes, session_id);
	if (rc)
		return rc;
	s = &e->sessions[si];
	k = &e->skills[s->skill];
	/* Before the customer ended: counted as closed by the agent. */
	k->fig.agent_closed++;
	e->agents[ai].agent_closed++;
	count_served(e, si, now_ms);
	journal_ended(e, si, DISP_CLOSE_AGENT_CLOSED, 0, false, true, notes);
	emit_closed(e, s->cust_gw, session_id, DISP_CLOSE_AGENT_CLOSED, &e->agents[ai]);
	emit_closed(e, gw, session_id, DISP_CLOSE_AGENT_CLOSED, &e->agents[ai]);
	sess_closed(e, false);
	release(e, si, now_ms);
	sess_free(e, si, false);
	agent_pull(e, ai, now_ms);
	return 0;
}

/*
 * Transfer: the old agent gets CLOSED{TRANSFERRED}; the session, with its
 * history, waits in the new group from now (a new wait, at the back of its
 * class; QUEUED to the customer) and its next agent gets
 * Assigned{transferred}. Refused, nothing changed: without consent, to an
 * unknown group, to a group of another tenant (FORBIDDEN), to a closed or
 * full group (OVERLOADED).
 */
int disp_transfer(struct disp_engine *e, uint32_t gw, uint64_t session_id, struct disp_str agent_id,
                  struct disp_str to_skill, bool consented, struct disp_str reason, uint64_t now_ms)
{
	struct session *s;
	struct skill *from, *to;
	struct agent *a;
	uint32_t ai, si, ts;
	int rc;

	if (!e)
		return -EINVAL;
	sess_prefetch(e, session_id);
	now_ms = enter(e, now_ms);
	rc = agent_auth(e, gw, agent_id, session_id, &ai);
	if (rc)
		return rc;
	agent_touch(e, ai, now_ms);
	rc = agent_session(e, gw, ai, session_id, &si);
	if (rc)
		return rc;
	if (!consented)
		return refuse(e, gw, DISP_ERR_CONSENT_REQUIRED, "customer consent required",
		              session_id);
	ts = skill_find(e, to_skill);
	if (ts == NIL)
		return refuse(e, gw, DISP_ERR_UNKNOWN_SKILL, "unknown skill", session_id);
	s = &e->sessions[si];
	from = &e->skills[s->skill];
	to = &e->skills[ts];
	if (to->tenant_len &&
	    !str_is(to->conf.tenant, to->tenant_len, dstr(from->conf.tenant, from->tenant_len)))
		return refuse(e, gw, DISP_ERR_FORBIDDEN, "skill of another tenant", session_id);
	if (!skill_open(to, now_ms))
		return refuse(e, gw, DISP_ERR_OVERLOADED, "skill group closed", session_id);
	if (!agent_at_hand(e, ts) && to->q_count >= to->conf.queue_capacity)
		return refuse(e, gw, DISP_ERR_OVERLOADED, "queue full", session_id);

	a = &e->agents[ai];
	from->fig.transferred_out++;
	ac(e, ai)->fig.transferred++;
	if (e->journal) {
		struct disp_event ev = {.kind = DISP_EV_TRANSFERRED,
		                        .session_id = session_id,
		                        .agent = dstr(a->id, a->id_len),
		                        .skill = skill_name(e, ts),
		                        .text = reason};

		journal(e, &ev);
	}
	emit_closed(e, gw, session_id, DISP_CLOSE_TRANSFERRED, a);
	release(e, si, now_ms);
	s->skill = (uint16_t)ts;
	s->flags = SF_TRANSFERRED; /* a new wait in a new group: its clocks start over */
	s->ov_step = 0;
	s->enq_ms = now_ms;
	s->unans_ms = s->hold_ms = 0;
	to->fig.offered++;
	/* Offered to the others first: the agent who handed it on is held out meanwhile. */
	agent_unlist(e, ai);
	place(e, si, false, now_ms);
	agent_relist(e, ai, now_ms);
	agent_pull(e, ai, now_ms);
	return 0;
}

/*
 * The gateway is gone, and everything that went through it:
 *  - its agents are DISCONNECTED (see agent_disconnect);
 *  - the sessions its customers opened are closed as ABANDONED; an agent
 *    serving one gets CLOSED{ABANDONED} and takes the next waiting session.
 * This is the one call that walks every agent and session slot: gateways go
 * down rarely.
 */
void disp_gateway_down(struct disp_engine *e, uint32_t gw, uint64_t now_ms)
{
	if (!e)
		return;
	now_ms = enter(e, now_ms);
	for (uint32_t ai = 0; ai < e->nb_agents; ai++) {
		struct agent *a = &e->agents[ai];

		if (a->gw != gw || !agent_online(a->state))
			continue;
		agent_disconnect(e, ai, gw, true, now_ms);
	}
	for (uint32_t si = 0; si < e->s_bump; si++) {
		struct session *s = &e->sessions[si];
		uint32_t ai;

		if (s->state == SESS_FREE || s->state == SESS_WRAPUP || s->cust_gw != gw)
			continue;
		if (s->state == SESS_QUEUED) {
			q_remove(e, si);
			e->skills[s->skill].fig.abandoned++;
			journal_ended(e, si, DISP_CLOSE_ABANDONED, 0, false, false, dstr(NULL, 0));
			sess_closed(e, true);
			sess_free(e, si, false);
			continue;
		}
		ai = s->agent;
		journal_ended(e, si, DISP_CLOSE_ABANDONED, 0, false, false, dstr(NULL, 0));
		emit_closed(e, e->agents[ai].gw, sess_id(e, si), DISP_CLOSE_ABANDONED,
		            &e->agents[ai]);
		sess_closed(e, true);
		release(e, si, now_ms);
		sess_free(e, si, true);
	}
	pull_all(e, now_ms);
}

/* ---- restore -------------------------------------------------------------- */

int disp_restore_begin(struct disp_engine *e, uint64_t max_session_id)
{
	uint64_t gen;

	if (!e)
		return -EINVAL;
	if (e->used || e->s_bump)
		return -EALREADY;
	gen = (max_session_id >> 32) + 1;
	/* 2^32 generations would take centuries of restarts and reuse: clamp, don't wrap. */
	e->gen_floor = gen >= UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)gen;
	return 0;
}

/* Take slot si for a restored session: from the never used or the free slots. */
static int slot_claim(struct disp_engine *e, uint32_t si)
{
	while (e->s_bump <= si) {
		uint32_t x = e->s_bump++;
		struct session *t = &e->sessions[x];

		t->gen = e->gen_floor;
		t->state = SESS_FREE;
		t->agent = NIL;
		disp_timer_init(&t->timer, x, T_SESSION);
		if (x == si)
			return 0;
		sl_push_back(e->sessions, &e->f_head, &e->f_tail, x);
	}
	/* Restores come before any use: no slot can be on the hot stack yet. */
	if (e->sessions[si].state != SESS_FREE || e->h_head != NIL)
		return -EINVAL;
	if (si == e->f_head)
		free_pop(e);
	else
		sl_remove(e->sessions, &e->f_head, &e->f_tail, si);
	return 0;
}

/* The agent a restored session was with; known as DISCONNECTED until it logs in. */
static uint32_t agent_restored(struct disp_engine *e, struct disp_str id, uint32_t gw, uint64_t now)
{
	uint32_t ai = agent_find(e, id);
	struct agent *a;

	if (ai != NIL)
		return ai;
	ai = agent_add(e, id, now);
	if (ai == NIL)
		return NIL;
	a = &e->agents[ai];
	a->gw = gw;
	a->state = DISP_AGENT_DISCONNECTED;
	a->restored = true;
	a->hb_deadline = now + e->heartbeat_ms;
	hb_arm(e, ai);
	return ai;
}

static int restore_one(struct disp_engine *e, const struct disp_restore *r, uint64_t now)
{
	uint64_t low = r->session_id & UINT32_MAX, gen = r->session_id >> 32;
	struct session *s;
	uint32_t sk, si, ai = NIL;
	int rc;

	if (low == 0 || gen == 0 || gen >= e->gen_floor || !name_ok(r->customer_id))
		return -EINVAL;
	if (low > e->max_sessions)
		return -ENOSPC;
	sk = skill_find(e, r->skill);
	if (sk == NIL || (r->agent_id.len && !name_ok(r->agent_id)))
		return -EINVAL;
	if (r->nb_backlog && !r->backlog)
		return -EINVAL;
	si = (uint32_t)low - 1;
	rc = slot_claim(e, si);
	if (rc)
		return rc;
	s = &e->sessions[si];
	if (disp_pool_put(&e->pool, r->question.ptr, r->question.len, &sc(e, s)->question) < 0) {
		sl_push_front(e->sessions, &e->f_head, &e->f_tail, si);
		return -ENOSPC;
	}
	s->gen = (uint32_t)gen;
	s->flags = r->transferred ? SF_TRANSFERRED : 0;
	s->mark = false;
	s->prio = (uint8_t)(r->priority < NB_PRIO ? r->priority : NB_PRIO - 1);
	s->ov_step = 0;
	s->skill = (uint16_t)sk;
	s->cust_gw = r->customer_gw;
	s->agent = s->last_agent = NIL;
	s->prev = s->next = NIL;
	sc(e, s)->open_ref = r->open_ref;
	s->opened_ms = r->opened_ms;
	s->enq_ms = r->waiting_since_ms ? r->waiting_since_ms : r->opened_ms;
	s->assign_ms = s->unans_ms = s->hold_ms = 0;
	s->channel = r->channel;
	sc(e, s)->transcript = (struct disp_text){0};
	s->held = sc(e, s)->question.len != 0;
	s->bl_head = s->bl_tail = NIL;
	s->bl_count = 0;
	memcpy(sc(e, s)->cid, r->customer_id.ptr, r->customer_id.len);
	sc(e, s)->cid_len = (uint8_t)r->customer_id.len;
	for (uint32_t i = 0; i < r->nb_backlog; i++) {
		const struct disp_msg *m = &r->backlog[i];

		if (s->bl_count >= e->backlog_max)
			bl_drop_oldest(e, s);
		if (bl_append(e, s, m->sender, m->msg_id, m->text, m->attachment_ref,
		              m->sent_unix_ms, NIL) < 0)
			e->st.backlog_dropped++;
	}
	e->st.sessions_opened++;
	e->st.sessions_open++;
	if (r->agent_id.len)
		ai = agent_restored(e, r->agent_id, r->agent_gw, now);
	if (ai != NIL && e->agents[ai].restored && e->agents[ai].load < CAP_MAX) {
		struct agent *a = &e->agents[ai];

		s->state = SESS_ASSIGNED;
		s->agent = s->last_agent = ai;
		s->assign_ms = now;
		s->flags |= SF_ANSWERED | (r->replied ? SF_REPLIED : 0);
		hand_add(e, ai, si);
		a->load++;
		if (a->load > a->cap)
			a->cap = a->load;
	} else {
		/* No room for its agent (or it had none): it waits, in the order given. */
		q_push(e, si, false);
	}
	sess_arm(e, si);
	return 0;
}

int disp_restore_session(struct disp_engine *e, const struct disp_restore *r, uint64_t now_ms)
{
	disp_journal_fn *j;
	int rc;

	if (!e || !r || e->used)
		return -EINVAL;
	if (now_ms > e->now) {
		disp_wheel_advance(&e->wheel, now_ms, on_timer, e);
		e->now = now_ms;
	}
	/* Already in the store: restoring writes nothing. */
	j = e->journal;
	e->journal = NULL;
	rc = restore_one(e, r, e->now);
	e->journal = j;
	return rc;
}

void disp_tick(struct disp_engine *e, uint64_t now_ms)
{
	if (!e)
		return;
	enter(e, now_ms);
	refresh_queues(e);
}

/* ---- figures -------------------------------------------------------------- */

void disp_stats_get(const struct disp_engine *e, struct disp_stats *out)
{
	if (!e || !out)
		return;
	*out = e->st;
}

int disp_skill_figures_get(const struct disp_engine *e, struct disp_str skill,
                           struct disp_skill_figures *out, uint64_t now_ms)
{
	uint32_t s;
	const struct skill *k;
	uint64_t oldest = UINT64_MAX;

	if (!e || !out)
		return -EINVAL;
	s = skill_find(e, skill);
	if (s == NIL)
		return -ENOENT;
	k = &e->skills[s];
	*out = k->fig;
	for (uint32_t c = 0; c < NB_PRIO; c++) {
		/* The class head is its oldest, unless re-queued at the front (older still
		 * or, rarely, not: then the next one may be older). */
		uint32_t h = k->q_head[c];

		if (h != NIL) {
			oldest = min64(oldest, e->sessions[h].enq_ms);
			if (e->sessions[h].next != NIL)
				oldest = min64(oldest, e->sessions[e->sessions[h].next].enq_ms);
		}
	}
	out->waiting = k->q_count;
	out->longest_wait_ms = oldest == UINT64_MAX ? 0 : since(now_ms, oldest);
	out->agents_online = k->online;
	out->agents_ready = k->ready;
	out->agents_on_break = k->on_break;
	out->service_rate_per_hour = clamp32(k->online_cap * 3600000u / k->mean_handle_ms);
	out->mean_handling_ms = k->mean_handle_ms;
	return 0;
}

int disp_restore_agent(struct disp_engine *e, struct disp_str agent_id,
                       const struct disp_agent_figures *f, uint64_t now_ms)
{
	struct agent *a;
	uint32_t ai;

	if (!e || !f || !name_ok(agent_id))
		return -EINVAL;
	ai = agent_find(e, agent_id);
	if (ai == NIL) {
		ai = agent_add(e, agent_id, now_ms);
		if (ai == NIL)
			return -ENOSPC;
	}
	a = &e->agents[ai];
	ac(e, ai)->fig = *f;
	/* Wraps back in the sum: fig.assigned reads f->assigned. */
	ac(e, ai)->assigned_before = f->assigned - a->assigned_today;
	a->served = f->served;
	a->agent_closed = f->agent_closed;
	memset(a->tally, 0, sizeof(a->tally));
	return 0;
}

int disp_agent_figures_get(const struct disp_engine *e, struct disp_str agent_id,
                           struct disp_agent_figures *out, uint64_t now_ms)
{
	const struct agent *a;
	struct agent_cold c;
	uint32_t ai;

	if (!e || !out)
		return -EINVAL;
	ai = agent_find(e, agent_id);
	if (ai == NIL)
		return -ENOENT;
	a = &e->agents[ai];
	c = *ac(e, ai); /* a copy: the getter changes nothing */
	acct(a, &c, now_ms);
	for (unsigned i = 0; i < TALLY_N; i++)
		*tally_cold(&c, i) += a->tally[i];
	*out = c.fig;
	out->assigned = c.assigned_before + a->assigned_today;
	out->served = a->served;
	out->agent_closed = a->agent_closed;
	out->state = (enum disp_agent_state)a->state;
	out->load = a->load;
	out->capacity = a->cap;
	out->customers_per_hour =
	        c.fig.online_ms ? clamp32(a->served * 3600000u / c.fig.online_ms) : 0;
	out->service_ratio_pct = c.fig.online_ms
	                                 ? (uint32_t)((c.fig.serving_ms + c.fig.ready_idle_ms) *
	                                              100u / c.fig.online_ms)
	                                 : 0;
	return 0;
}

/* ---- invariants ----------------------------------------------------------- */

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			return -__LINE__;                                                          \
	} while (0)

struct ll_visit {
	const struct disp_engine *e;
	uint32_t skill;
	uint32_t load;
	uint64_t since; /* the last entry's load_since at this load */
	uint8_t *seen;  /* a bit per agent */
};

/* A live entry: an eligible agent with the skill, once, where its load says, in load_since order.
 */
static int ll_visit(void *ctx, uint32_t load, uint32_t ai)
{
	struct ll_visit *v = ctx;
	const struct disp_engine *e = v->e;
	const struct agent *a;

	CHECK(ai < e->nb_agents);
	a = &e->agents[ai];
	CHECK(!(v->seen[ai / 8] & (1u << (ai % 8))));
	v->seen[ai / 8] |= (uint8_t)(1u << (ai % 8));
	CHECK(ask_of(e, ai, v->skill)->level != 0);
	CHECK(agent_offered(a) && a->listed && a->load == load && a->ll_load == load);
	if (load != v->load)
		v->since = 0;
	CHECK(a->load_since >= v->since);
	v->load = load;
	v->since = a->load_since;
	return 0;
}

/* A least-loaded skill's llq: the structure (llq_check), and each live entry (ll_visit). */
static int check_lists(const struct disp_engine *e, uint32_t k)
{
	struct ll_visit v = {.e = e, .skill = k};
	int rc;

	CHECK(e->skills[k].ll && !e->skills[k].heap);
	v.seen = calloc(e->nb_agents / 8 + 1, 1);
	CHECK(v.seen);
	rc = llq_check(e->skills[k].ll, e->ll_stamp, ll_visit, &v);
	free(v.seen);
	if (rc)
		return rc;
	CHECK(e->skills[k].elig_n == 0);
	return 0;
}

static int check_queues(const struct disp_engine *e, uint32_t *walked)
{
	for (uint32_t k = 0; k < e->nb_skills; k++) {
		const struct skill *sk = &e->skills[k];
		uint32_t total = 0;

		for (uint32_t c = 0; c < NB_PRIO; c++) {
			uint32_t n = 0, prev = NIL;
			uint64_t last_enq = 0;

			for (uint32_t si = sk->q_head[c]; si != NIL; si = e->sessions[si].next) {
				const struct session *s = &e->sessions[si];

				CHECK(si < e->s_bump && n < e->s_bump);
				CHECK(s->prev == prev);
				CHECK(s->state == SESS_QUEUED && s->skill == k && s->agent == NIL);
				CHECK(s->prio == c);
				/* FIFO within a class, but for sessions re-queued at the front. */
				if (!(s->flags & SF_FRONT)) {
					CHECK(s->enq_ms >= last_enq);
					last_enq = s->enq_ms;
				}
				if (prev != NIL)
					CHECK((int32_t)(s->ticket - e->sessions[prev].ticket) > 0);
				prev = si;
				n++;
			}
			CHECK(sk->q_tail[c] == prev);
			CHECK(n == sk->q_n[c]);
			CHECK(((sk->q_mask >> c) & 1) == (n != 0));
			total += n;
		}
		CHECK(total == sk->q_count);
		*walked += total;
		/* Nobody waits while an agent of the skill has room. */
		CHECK(total == 0 || elig_count(sk) == 0);
		if (sk->conf.strategy == DISP_STRATEGY_LEAST_LOADED) {
			int rc = check_lists(e, k);

			if (rc)
				return rc;
			continue;
		}
		CHECK(sk->heap && !sk->ll);
		for (uint32_t i = 0; i < sk->elig_n; i++) {
			const struct hent *h = &sk->heap[i];
			struct hent now;
			uint32_t ai = h->ai;

			CHECK(ai < e->nb_agents);
			CHECK(e->ask[(size_t)ai * e->nb_skills + k].pos == i);
			CHECK(agent_offered(&e->agents[ai]) && e->agents[ai].listed);
			/* The copied key is the agent's current one. */
			now = hent_key(e, k, ai);
			CHECK(memcmp(&now, h, sizeof(now)) == 0);
			if (i > 0)
				CHECK(!hent_better(sk->conf.strategy, h,
				                   &sk->heap[(i - 1) >> heap_shift(sk)]));
		}
	}
	return 0;
}

int disp_check_invariants(const struct disp_engine *e)
{
	uint64_t blocks = 0, entries = 0, listed = 0;
	uint32_t queued = 0, assigned = 0, wrapup = 0, walked_q = 0, walked_a = 0, ready = 0;
	uint32_t nfree = 0, retired = 0;
	uint32_t online[SKILLS_MAX] = {0}, rdy[SKILLS_MAX] = {0}, brk[SKILLS_MAX] = {0};
	uint64_t ocap[SKILLS_MAX] = {0};
	uint32_t ll_ids[SKILLS_MAX] = {0};
	const uint32_t S = e->nb_skills;
	size_t ll_need = 0;
	int rc;

	CHECK(e->bad_assign == 0);
	CHECK(e->cap_granted_over == 0);
	for (uint32_t k = 0; k < S; k++)
		CHECK(disp_ring_count(e->skills[k].ring) == 0);
	rc = check_queues(e, &walked_q);
	if (rc)
		return rc;
	for (uint32_t ai = 0; ai < e->nb_agents; ai++) {
		const struct agent *a = &e->agents[ai];
		struct disp_str id = {.ptr = a->id, .len = a->id_len};
		const uint16_t *sk = agent_skill_list(e, ai);
		uint32_t n = 0, prev = NIL, nlev = 0;
		bool has_ll = false;

		CHECK(agent_find(e, id) == ai);
		/* In hand: hand[] in the order assigned, then (behind a full hand[]) the list. */
		CHECK(a->hand_n <= HAND_INLINE && (a->s_head == NIL || a->hand_n == HAND_INLINE));
		for (uint32_t i = 0; i < a->hand_n; i++) {
			const struct session *s = &e->sessions[a->hand[i]];

			CHECK(a->hand[i] < e->s_bump);
			CHECK(s->prev == NIL && s->next == NIL);
			CHECK((s->state == SESS_ASSIGNED || s->state == SESS_WRAPUP) &&
			      s->agent == ai);
			for (uint32_t j = 0; j < i; j++)
				CHECK(a->hand[j] != a->hand[i]);
			n++;
		}
		for (uint32_t si = a->s_head; si != NIL; si = e->sessions[si].next) {
			const struct session *s = &e->sessions[si];

			CHECK(si < e->s_bump && n < e->s_bump);
			CHECK(s->prev == prev);
			CHECK((s->state == SESS_ASSIGNED || s->state == SESS_WRAPUP) &&
			      s->agent == ai);
			prev = si;
			n++;
		}
		CHECK(a->s_tail == prev);
		CHECK(n == a->load);
		CHECK(a->cap >= 1 && a->cap <= CAP_MAX);
		CHECK(a->load <= a->cap || a->load <= a->shrink_load);
		CHECK(agent_offered(a) == a->listed);
		for (uint32_t s = 0; s < S; s++)
			nlev += e->ask[(size_t)ai * S + s].level != 0;
		CHECK(nlev == a->nb_skills);
		for (uint32_t i = 0; i < a->nb_skills; i++) {
			const struct ask *q = &e->ask[(size_t)ai * S + sk[i]];
			bool ll = e->skills[sk[i]].conf.strategy == DISP_STRATEGY_LEAST_LOADED;

			CHECK(q->level >= 1 && q->level <= 5);
			CHECK(ll || a->listed == (q->pos != POS_NIL));
			has_ll |= ll;
			ll_ids[sk[i]] += ll;
			if (agent_online(a->state)) {
				online[sk[i]]++;
				ocap[sk[i]] += a->cap;
			}
			rdy[sk[i]] += a->state == DISP_AGENT_READY;
			brk[sk[i]] += a->state == DISP_AGENT_BREAK_REQUESTED ||
			              a->state == DISP_AGENT_ON_BREAK;
		}
		CHECK(a->ll_load == (a->listed && has_ll ? a->load : LL_NIL));
		if (a->listed)
			listed += a->nb_skills;
		if (a->state == DISP_AGENT_OFFLINE || a->state == DISP_AGENT_ON_BREAK ||
		    (a->state == DISP_AGENT_DISCONNECTED && !a->restored))
			CHECK(a->load == 0);
		CHECK(!a->restored || a->state == DISP_AGENT_DISCONNECTED);
		CHECK(a->state != DISP_AGENT_UNSPECIFIED);
		CHECK((agent_online(a->state) || a->restored) ==
		      disp_timer_pending(&ac(e, ai)->hb_timer));
		CHECK(a->hb_armed == disp_timer_pending(&ac(e, ai)->hb_timer));
		if (a->state == DISP_AGENT_READY)
			ready++;
		walked_a += n;
	}
	for (uint32_t k = 0; k < S; k++) {
		const struct skill *sk = &e->skills[k];

		CHECK(sk->online == online[k] && sk->ready == rdy[k] && sk->on_break == brk[k]);
		CHECK(sk->online_cap == ocap[k]);
		listed -= elig_count(sk);
		if (sk->ll) {
			CHECK(sk->ll_ids == ll_ids[k]);
			ll_need += llq_need(sk->ll_ids, sk->ll_capmax);
		}
		CHECK(sk->fig.answered_in_target <= sk->fig.answered);
	}
	CHECK(listed == 0);
	/* No request allocates: the llqs stay within what logins reserved. */
	CHECK(ll_need == e->ll_need && e->ll_need <= e->ll_pool.total);
	CHECK(e->ll_pool.used <= e->ll_need);
	for (uint32_t si = 0; si < e->s_bump; si++) {
		const struct session *s = &e->sessions[si];
		uint32_t n = 0, inl = 0;

		if (s->state == SESS_FREE) {
			CHECK(!s->held && sc(e, s)->question.len == 0 &&
			      sc(e, s)->transcript.len == 0 && s->bl_count == 0 && !s->inl_used);
			retired += s->gen == UINT32_MAX;
			continue;
		}
		if (s->state == SESS_QUEUED)
			queued++;
		else if (s->state == SESS_ASSIGNED)
			assigned++;
		else
			wrapup++;
		CHECK(s->skill < S);
		if (s->state == SESS_WRAPUP)
			CHECK(disp_timer_pending(&s->timer));
		blocks += (sc(e, s)->question.len != 0) + (sc(e, s)->transcript.len != 0);
		CHECK(s->held == (sc(e, s)->question.len || sc(e, s)->transcript.len));
		CHECK(s->bl_count <= e->backlog_max);
		for (uint32_t x = s->bl_head; x != NIL; x = ent(e, x)->next) {
			const struct bl_entry *en = ent(e, x);

			/* a slot's own entry is only ever its own */
			CHECK(x < e->nb_entries || (x - e->nb_entries == si && s->inl_used));
			inl += x >= e->nb_entries;

			CHECK(n < s->bl_count);
			CHECK(en->agent == NIL || en->agent < e->nb_agents);
			blocks += (en->text.len != 0) + (en->att.len != 0);
			n++;
		}
		CHECK(n == s->bl_count && inl == s->inl_used);
		entries += n;
	}
	/* Every free slot on the free list or the hot stack, but the retired ones. */
	for (int l = 0; l < 2; l++)
		for (uint32_t si = l ? e->h_head : e->f_head; si != NIL;
		     si = e->sessions[si].next) {
			CHECK(e->sessions[si].state == SESS_FREE &&
			      e->sessions[si].gen != UINT32_MAX && nfree < e->s_bump);
			nfree++;
		}
	nfree += retired;
	CHECK(queued == walked_q && assigned + wrapup == walked_a);
	CHECK(wrapup == e->nb_wrapup);
	CHECK(nfree + queued + assigned + wrapup == e->s_bump);
	CHECK(e->st.sessions_open == queued + assigned);
	CHECK(e->st.sessions_waiting == queued);
	CHECK(e->st.sessions_opened == e->st.sessions_open + e->st.sessions_closed);
	CHECK(e->st.sessions_abandoned <= e->st.sessions_closed);
	CHECK(e->st.agents_ready == ready);
	CHECK(blocks == e->pool.used_blocks);
	CHECK(entries == e->e_used);
	return 0;
}
