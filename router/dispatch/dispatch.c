/* SPDX-License-Identifier: MIT */
/*
 * The routing engine, first version: skill queues, agents with a capacity,
 * assignment, messages, ends and drains. Breaks are granted without the 20%
 * cap, there are no service-level timers, no priorities and no transfer.
 *
 * Data layout (everything sized and allocated by disp_create):
 *  - sessions: one array; a session id is (generation << 32) | (slot + 1), so
 *    a stale or forged id is caught in O(1). Free slots form a FIFO, so an id
 *    is reused as late as possible.
 *  - a session is linked (prev/next) into exactly one list: its skill's FIFO
 *    wait queue while queued, its agent's list while assigned, the free list
 *    when free.
 *  - agents: one array and an open-addressing FNV-1a table (2x max_agents)
 *    on agent_id. Agents are never forgotten: a known agent that logs in again
 *    takes its slot back; a new id when the table is full is refused.
 *  - who can take a session: per skill, LOAD_BUCKETS lists of the READY agents
 *    with room, by current load (the last bucket holds every higher load),
 *    with a bitmask of the non-empty ones. The least loaded agent is the head
 *    of the lowest non-empty bucket: O(1). Agents join a bucket at its tail,
 *    so inside bucket 0 the head is the agent idle the longest (idle since its
 *    load last went to 0 or it logged in); inside the other buckets the order
 *    is by the time the agent reached that load, an approximation of
 *    "longest idle". An agent with k skills is in k lists, so a load change
 *    costs O(k).
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
 * (opened = open + closed); sessions_queued counts sessions that waited at
 * open; sessions_assigned counts every assignment, re-assignments included.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "dispatch_pvt.h"

#define NIL          UINT32_MAX
#define LOAD_BUCKETS 32
#define SKILLS_MAX   256 /* skills configured at once */
#define AGENTS_MAX   (1u << 24)
#define SESSIONS_MAX (1u << 28)
#define BACKLOG_MAX  4096u /* messages held per session */
#define ATTACH_MAX   1024u /* bytes of an attachment reference */
#define RETRY_AFTER  1000u /* ms a refused customer should wait */

#define DEF_MAX_AGENTS        1024u
#define DEF_MAX_SESSIONS      65536u
#define DEF_BACKLOG_MAX       64u
#define DEF_TEXT_POOL_BYTES   (64u << 20)
#define DEF_AGENT_TEXT_MAX    200u
#define DEF_CUSTOMER_TEXT_MAX 2000u
#define DEF_QUEUE_CAPACITY    1000u
#define DEF_SLA_ANSWER_MS     60000u

enum sess_state {
	SESS_FREE = 0,
	SESS_QUEUED,
	SESS_ASSIGNED,
};

struct skill {
	struct disp_skill_conf conf;
	uint32_t name_len;
	uint32_t tenant_len;
	uint32_t q_head, q_tail; /* FIFO of waiting sessions */
	uint32_t q_count;
	uint32_t bucket_mask; /* bit b: bucket b has agents */
};

struct agent {
	char id[DISP_NAME_MAX];
	uint32_t id_len;
	uint32_t gw;
	enum disp_agent_state state;
	uint32_t cap;            /* max sessions at once */
	uint32_t load;           /* sessions assigned now */
	uint32_t shrink_load;    /* load when a new login set cap below it, until it drains */
	uint32_t s_head, s_tail; /* its sessions, by assignment time */
	uint32_t nb_skills;      /* its skills are agent_skills[slot * nb_skills ...] */
	int32_t bucket;          /* the load bucket it is listed in, -1 when not offered */
	uint64_t idle_since;
	uint64_t last_seen;
};

/* Agent a's place in skill s's bucket list: nodes[a * nb_skills + s]. */
struct link {
	uint32_t prev, next;
};

struct bl_entry {
	uint64_t msg_id;
	uint64_t sent_ms;
	struct disp_text text;
	struct disp_text att;
	uint32_t next;
	uint32_t agent; /* from (agent side) or for (customer side); NIL: not assigned yet */
	uint8_t sender;
};

struct session {
	uint32_t gen;
	uint8_t state;
	bool transferred;
	bool mark; /* re-queued by disp_gateway_down, not yet told */
	uint8_t cid_len;
	uint16_t skill;
	uint32_t cust_gw;
	uint32_t agent;      /* when assigned */
	uint32_t last_agent; /* the agent who had it last: may still close it with notes */
	uint32_t prev, next;
	uint64_t open_ref;
	uint64_t opened_ms;
	uint32_t channel;
	uint32_t priority;
	struct disp_text question;
	struct disp_text transcript;
	uint32_t bl_head, bl_tail, bl_count;
	char cid[DISP_NAME_MAX];
};

struct disp_engine {
	disp_emit_fn *emit;
	void *emit_ctx;
	uint32_t nb_skills;
	uint32_t max_agents;
	uint32_t max_sessions;
	uint32_t backlog_max;
	uint32_t agent_text_max;
	uint32_t customer_text_max;

	struct skill *skills;
	uint16_t *skill_hash; /* skill index + 1, 0 = empty */
	uint32_t skill_hash_mask;

	struct agent *agents;
	uint32_t nb_agents;
	uint32_t *agent_hash; /* agent slot + 1, 0 = empty */
	uint32_t agent_hash_mask;
	uint16_t *agent_skills;
	struct link *nodes;
	uint32_t *b_head, *b_tail; /* [skill * LOAD_BUCKETS + bucket] */

	struct session *sessions;
	uint32_t s_bump; /* slots never used start here */
	uint32_t f_head, f_tail;

	struct bl_entry *entries;
	uint32_t nb_entries;
	uint32_t e_bump;
	uint32_t e_free;
	uint32_t e_used;
	struct disp_msg *scratch; /* backlog_max messages for an ASSIGNED */

	struct disp_pool pool;
	struct disp_stats st;
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

static void emit(struct disp_engine *e, const struct disp_out *o)
{
	e->emit(e->emit_ctx, o);
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

/* ---- session lists (skill queues, agents' sessions, free list) ----------- */

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

static void q_push(struct disp_engine *e, uint32_t si, bool front)
{
	struct session *s = &e->sessions[si];
	struct skill *k = &e->skills[s->skill];

	s->state = SESS_QUEUED;
	s->agent = NIL;
	if (front)
		sl_push_front(e->sessions, &k->q_head, &k->q_tail, si);
	else
		sl_push_back(e->sessions, &k->q_head, &k->q_tail, si);
	k->q_count++;
	e->st.sessions_waiting++;
}

static void q_remove(struct disp_engine *e, uint32_t si)
{
	struct skill *k = &e->skills[e->sessions[si].skill];

	sl_remove(e->sessions, &k->q_head, &k->q_tail, si);
	k->q_count--;
	e->st.sessions_waiting--;
}

/* ---- who can take a session ---------------------------------------------- */

static bool agent_offered(const struct agent *a)
{
	return a->state == DISP_AGENT_READY && a->load < a->cap;
}

static const uint16_t *agent_skill_list(const struct disp_engine *e, uint32_t ai)
{
	return &e->agent_skills[(size_t)ai * e->nb_skills];
}

static void bucket_remove(struct disp_engine *e, uint32_t ai)
{
	struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);

	if (a->bucket < 0)
		return;
	for (uint32_t i = 0; i < a->nb_skills; i++) {
		uint32_t s = sk[i];
		uint32_t n = ai * e->nb_skills + s;
		uint32_t hb = s * LOAD_BUCKETS + (uint32_t)a->bucket;
		struct link *l = &e->nodes[n];

		if (l->prev != NIL)
			e->nodes[l->prev].next = l->next;
		else
			e->b_head[hb] = l->next;
		if (l->next != NIL)
			e->nodes[l->next].prev = l->prev;
		else
			e->b_tail[hb] = l->prev;
		if (e->b_head[hb] == NIL)
			e->skills[s].bucket_mask &= ~(1u << a->bucket);
	}
	a->bucket = -1;
}

static void bucket_insert(struct disp_engine *e, uint32_t ai, uint32_t b)
{
	struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);

	for (uint32_t i = 0; i < a->nb_skills; i++) {
		uint32_t s = sk[i];
		uint32_t n = ai * e->nb_skills + s;
		uint32_t hb = s * LOAD_BUCKETS + b;
		struct link *l = &e->nodes[n];

		l->next = NIL;
		l->prev = e->b_tail[hb];
		if (l->prev != NIL)
			e->nodes[l->prev].next = n;
		else
			e->b_head[hb] = n;
		e->b_tail[hb] = n;
		e->skills[s].bucket_mask |= 1u << b;
	}
	a->bucket = (int32_t)b;
}

/* Put the agent where its state and load say: offered in its load bucket or not at all. */
static void agent_relist(struct disp_engine *e, uint32_t ai)
{
	struct agent *a = &e->agents[ai];

	bucket_remove(e, ai);
	if (agent_offered(a))
		bucket_insert(e, ai, a->load < LOAD_BUCKETS ? a->load : LOAD_BUCKETS - 1);
}

static uint32_t best_agent(const struct disp_engine *e, uint32_t s)
{
	uint32_t m = e->skills[s].bucket_mask;

	if (m == 0)
		return NIL;
	return e->b_head[s * LOAD_BUCKETS + (uint32_t)__builtin_ctz(m)] / e->nb_skills;
}

static void agent_set_state(struct disp_engine *e, struct agent *a, enum disp_agent_state st)
{
	if (a->state == DISP_AGENT_READY)
		e->st.agents_ready--;
	if (st == DISP_AGENT_READY)
		e->st.agents_ready++;
	a->state = st;
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

/* ---- backlog -------------------------------------------------------------- */

static void entry_release(struct disp_engine *e, uint32_t x)
{
	struct bl_entry *en = &e->entries[x];

	disp_pool_free(&e->pool, &en->text);
	disp_pool_free(&e->pool, &en->att);
	en->next = e->e_free;
	e->e_free = x;
	e->e_used--;
}

static void bl_drop_oldest(struct disp_engine *e, struct session *s)
{
	uint32_t x = s->bl_head;

	s->bl_head = e->entries[x].next;
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

	if (e->e_free != NIL) {
		x = e->e_free;
		e->e_free = e->entries[x].next;
	} else if (e->e_bump < e->nb_entries) {
		x = e->e_bump++;
	} else {
		return -ENOMEM;
	}
	en = &e->entries[x];
	memset(en, 0, sizeof(*en));
	e->e_used++;
	if (disp_pool_put(&e->pool, text.ptr, text.len, &en->text) < 0 ||
	    disp_pool_put(&e->pool, att.ptr, att.len, &en->att) < 0) {
		entry_release(e, x);
		return -ENOMEM;
	}
	en->msg_id = msg_id;
	en->sent_ms = now;
	en->sender = (uint8_t)sender;
	en->agent = agent;
	en->next = NIL;
	if (s->bl_tail != NIL)
		e->entries[s->bl_tail].next = x;
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

/* ---- sessions ------------------------------------------------------------- */

static uint32_t sess_alloc(struct disp_engine *e)
{
	uint32_t si;

	/* Fresh slots first, then the oldest freed: an id is reused as late as possible. */
	if (e->s_bump < e->max_sessions) {
		si = e->s_bump++;
		e->sessions[si].gen = 1;
	} else if (e->f_head != NIL) {
		si = e->f_head;
		sl_remove(e->sessions, &e->f_head, &e->f_tail, si);
	} else {
		return NIL;
	}
	return si;
}

static void sess_free(struct disp_engine *e, uint32_t si, bool abandoned)
{
	struct session *s = &e->sessions[si];

	disp_pool_free(&e->pool, &s->question);
	disp_pool_free(&e->pool, &s->transcript);
	while (s->bl_count)
		bl_drop_oldest(e, s);
	s->state = SESS_FREE;
	s->mark = false;
	s->agent = NIL;
	s->gen++;
	sl_push_back(e->sessions, &e->f_head, &e->f_tail, si);
	e->st.sessions_open--;
	e->st.sessions_closed++;
	if (abandoned)
		e->st.sessions_abandoned++;
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

static void emit_queued(struct disp_engine *e, uint32_t si, uint32_t position)
{
	const struct session *s = &e->sessions[si];
	struct disp_out o = {.kind = DISP_OUT_QUEUED,
	                     .gateway_id = s->cust_gw,
	                     .session_id = sess_id(e, si),
	                     .open_ref = s->open_ref,
	                     .position = position};

	emit(e, &o);
}

static void emit_assigned(struct disp_engine *e, uint32_t si, uint64_t now)
{
	struct session *s = &e->sessions[si];
	const struct agent *a = &e->agents[s->agent];
	const struct skill *k = &e->skills[s->skill];
	struct disp_out o = {.kind = DISP_OUT_ASSIGNED,
	                     .gateway_id = a->gw,
	                     .session_id = sess_id(e, si),
	                     .to_agent = true,
	                     .channel = s->channel,
	                     .waited_ms = since(now, s->opened_ms),
	                     .transferred = s->transferred};
	uint32_t n = 0;

	for (uint32_t x = s->bl_head; x != NIL; x = e->entries[x].next) {
		struct bl_entry *en = &e->entries[x];
		struct disp_msg *m = &e->scratch[n++];
		const struct agent *who;

		/* Held while queued: it was for whoever takes the session, i.e. this agent. */
		if (en->agent == NIL)
			en->agent = s->agent;
		who = &e->agents[en->agent];
		m->msg_id = en->msg_id;
		m->sender = (enum disp_side)en->sender;
		m->text = dstr(disp_pool_ptr(&e->pool, en->text), en->text.len);
		m->attachment_ref = dstr(disp_pool_ptr(&e->pool, en->att), en->att.len);
		m->sent_unix_ms = en->sent_ms;
		m->agent_id = dstr(who->id, who->id_len);
	}
	o.agent_id = dstr(a->id, a->id_len);
	o.customer_id = dstr(s->cid, s->cid_len);
	o.skill = dstr(k->conf.name, k->name_len);
	o.question = dstr(disp_pool_ptr(&e->pool, s->question), s->question.len);
	o.bot_transcript = dstr(disp_pool_ptr(&e->pool, s->transcript), s->transcript.len);
	o.backlog = n ? e->scratch : NULL;
	o.nb_backlog = n;
	emit(e, &o);

	/* The customer learns who serves it and nothing of anyone else's data. */
	memset(&o, 0, sizeof(o));
	o.kind = DISP_OUT_ASSIGNED;
	o.gateway_id = s->cust_gw;
	o.session_id = sess_id(e, si);
	o.agent_id = dstr(a->id, a->id_len);
	o.skill = dstr(k->conf.name, k->name_len);
	o.waited_ms = since(now, s->opened_ms);
	o.transferred = s->transferred;
	emit(e, &o);
}

static void assign(struct disp_engine *e, uint32_t si, uint32_t ai, uint64_t now)
{
	struct session *s = &e->sessions[si];
	struct agent *a = &e->agents[ai];

	if (s->state == SESS_QUEUED)
		q_remove(e, si);
	s->state = SESS_ASSIGNED;
	s->agent = ai;
	s->last_agent = ai;
	sl_push_back(e->sessions, &a->s_head, &a->s_tail, si);
	a->load++;
	agent_relist(e, ai);
	e->st.sessions_assigned++;
	emit_assigned(e, si, now);
}

/* A skill's waiting sessions go to its least loaded agents while both last. */
static void pump_skill(struct disp_engine *e, uint32_t s, uint64_t now)
{
	struct skill *k = &e->skills[s];
	uint32_t ai;

	while (k->q_head != NIL && (ai = best_agent(e, s)) != NIL)
		assign(e, k->q_head, ai, now);
}

/* An agent with room takes the oldest waiting session of its skills, until full. */
static void agent_pull(struct disp_engine *e, uint32_t ai, uint64_t now)
{
	struct agent *a = &e->agents[ai];
	const uint16_t *sk = agent_skill_list(e, ai);

	while (agent_offered(a)) {
		uint32_t best = NIL;

		for (uint32_t i = 0; i < a->nb_skills; i++) {
			uint32_t h = e->skills[sk[i]].q_head;

			if (h != NIL &&
			    (best == NIL || e->sessions[h].opened_ms < e->sessions[best].opened_ms))
				best = h;
		}
		if (best == NIL)
			break;
		assign(e, best, ai, now);
	}
}

/* Take an assigned session off its agent; the agent may finish draining. No pull. */
static uint32_t release(struct disp_engine *e, uint32_t si, uint64_t now)
{
	struct session *s = &e->sessions[si];
	uint32_t ai = s->agent;
	struct agent *a = &e->agents[ai];

	sl_remove(e->sessions, &a->s_head, &a->s_tail, si);
	s->agent = NIL;
	a->load--;
	if (a->load <= a->cap)
		a->shrink_load = 0;
	if (a->load == 0) {
		a->idle_since = now;
		if (a->state == DISP_AGENT_OFFLINE_REQUESTED) {
			agent_set_state(e, a, DISP_AGENT_OFFLINE);
			emit_state(e, a, true, NULL);
		} else if (a->state == DISP_AGENT_BREAK_REQUESTED) {
			agent_set_state(e, a, DISP_AGENT_ON_BREAK);
			emit_state(e, a, true, NULL);
		}
	}
	agent_relist(e, ai);
	return ai;
}

/* ---- creation ------------------------------------------------------------- */

static uint32_t or_default(uint32_t v, uint32_t def)
{
	return v ? v : def;
}

struct disp_engine *disp_create(const struct disp_conf *conf)
{
	struct disp_engine *e;
	uint64_t entries;
	uint32_t hs;
	int err = EINVAL;

	if (!conf || !conf->emit || !conf->skills || conf->nb_skills == 0 ||
	    conf->nb_skills > SKILLS_MAX)
		goto out;
	err = ENOMEM;
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out;
	e->emit = conf->emit;
	e->emit_ctx = conf->emit_ctx;
	e->nb_skills = conf->nb_skills;
	e->max_agents = or_default(conf->max_agents, DEF_MAX_AGENTS);
	e->max_sessions = or_default(conf->max_sessions, DEF_MAX_SESSIONS);
	e->backlog_max = or_default(conf->backlog_max, DEF_BACKLOG_MAX);
	e->agent_text_max = or_default(conf->agent_text_max, DEF_AGENT_TEXT_MAX);
	e->customer_text_max = or_default(conf->customer_text_max, DEF_CUSTOMER_TEXT_MAX);
	err = EINVAL;
	if (e->max_agents > AGENTS_MAX || e->max_sessions > SESSIONS_MAX ||
	    e->backlog_max > BACKLOG_MAX)
		goto out_free_engine;
	snprintf(e->agent_too_long, sizeof(e->agent_too_long), "agent text over %u characters",
	         e->agent_text_max);
	snprintf(e->customer_too_long, sizeof(e->customer_too_long),
	         "customer text over %u characters", e->customer_text_max);

	err = ENOMEM;
	hs = pow2_at_least(2 * e->nb_skills);
	e->skills = calloc(e->nb_skills, sizeof(*e->skills));
	e->skill_hash = calloc(hs, sizeof(*e->skill_hash));
	if (!e->skills || !e->skill_hash)
		goto out_free_skills;
	e->skill_hash_mask = hs - 1;
	for (uint32_t i = 0; i < e->nb_skills; i++) {
		struct skill *k = &e->skills[i];
		struct disp_str name;

		k->conf = conf->skills[i];
		k->name_len = (uint32_t)strnlen(k->conf.name, DISP_NAME_MAX);
		k->tenant_len = (uint32_t)strnlen(k->conf.tenant, DISP_NAME_MAX);
		k->conf.queue_capacity = or_default(k->conf.queue_capacity, DEF_QUEUE_CAPACITY);
		k->conf.sla_answer_ms = or_default(k->conf.sla_answer_ms, DEF_SLA_ANSWER_MS);
		k->q_head = k->q_tail = NIL;
		name = dstr(k->conf.name, k->name_len);
		err = EINVAL;
		if (k->name_len == 0 || k->name_len >= DISP_NAME_MAX ||
		    k->tenant_len >= DISP_NAME_MAX || skill_find(e, name) != NIL)
			goto out_free_skills;
		hs = fnv1a(name.ptr, name.len) & e->skill_hash_mask;
		while (e->skill_hash[hs])
			hs = (hs + 1) & e->skill_hash_mask;
		e->skill_hash[hs] = (uint16_t)(i + 1);
	}

	err = ENOMEM;
	hs = pow2_at_least(2 * e->max_agents);
	e->agents = calloc(e->max_agents, sizeof(*e->agents));
	e->agent_hash = calloc(hs, sizeof(*e->agent_hash));
	e->agent_skills = calloc((size_t)e->max_agents * e->nb_skills, sizeof(*e->agent_skills));
	e->nodes = calloc((size_t)e->max_agents * e->nb_skills, sizeof(*e->nodes));
	e->b_head = malloc((size_t)e->nb_skills * LOAD_BUCKETS * sizeof(*e->b_head));
	e->b_tail = malloc((size_t)e->nb_skills * LOAD_BUCKETS * sizeof(*e->b_tail));
	if (!e->agents || !e->agent_hash || !e->agent_skills || !e->nodes || !e->b_head ||
	    !e->b_tail)
		goto out_free_agents;
	e->agent_hash_mask = hs - 1;
	memset(e->b_head, 0xff, (size_t)e->nb_skills * LOAD_BUCKETS * sizeof(*e->b_head));
	memset(e->b_tail, 0xff, (size_t)e->nb_skills * LOAD_BUCKETS * sizeof(*e->b_tail));

	e->sessions = calloc(e->max_sessions, sizeof(*e->sessions));
	if (!e->sessions)
		goto out_free_agents;
	e->f_head = e->f_tail = NIL;

	if (disp_pool_init(&e->pool, or_default(conf->text_pool_bytes, DEF_TEXT_POOL_BYTES)) < 0)
		goto out_free_sessions;
	/* Every held message but an empty one takes a block: more entries than
	 * blocks plus one empty message per session could never be used. */
	entries = (uint64_t)e->max_sessions * e->backlog_max;
	if (entries > (uint64_t)e->pool.total_blocks + e->max_sessions)
		entries = (uint64_t)e->pool.total_blocks + e->max_sessions;
	e->nb_entries = (uint32_t)entries;
	e->entries = malloc((size_t)(entries ? entries : 1) * sizeof(*e->entries));
	e->scratch = calloc(e->backlog_max, sizeof(*e->scratch));
	if (!e->entries || !e->scratch)
		goto out_free_entries;
	e->e_free = NIL;
	return e;

out_free_entries:
	free(e->entries);
	free(e->scratch);
	disp_pool_fini(&e->pool);
out_free_sessions:
	free(e->sessions);
out_free_agents:
	free(e->agents);
	free(e->agent_hash);
	free(e->agent_skills);
	free(e->nodes);
	free(e->b_head);
	free(e->b_tail);
out_free_skills:
	free(e->skills);
	free(e->skill_hash);
out_free_engine:
	free(e);
out:
	errno = err;
	return NULL;
}

void disp_destroy(struct disp_engine *e)
{
	if (!e)
		return;
	free(e->entries);
	free(e->scratch);
	disp_pool_fini(&e->pool);
	free(e->sessions);
	free(e->agents);
	free(e->agent_hash);
	free(e->agent_skills);
	free(e->nodes);
	free(e->b_head);
	free(e->b_tail);
	free(e->skills);
	free(e->skill_hash);
	free(e);
}

/* ---- agents --------------------------------------------------------------- */

int disp_agent_login(struct disp_engine *e, uint32_t gw, const struct disp_login *req,
                     uint64_t now_ms)
{
	struct agent *a;
	uint32_t ai;
	uint16_t *sk;
	uint8_t seen[SKILLS_MAX / 8] = {0};

	if (!e || !req)
		return -EINVAL;
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
	}
	ai = agent_find(e, req->agent_id);
	if (ai == NIL) {
		if (e->nb_agents == e->max_agents)
			return refuse(e, gw, DISP_ERR_OVERLOADED, "too many agents", 0);
		ai = e->nb_agents++;
		a = &e->agents[ai];
		memcpy(a->id, req->agent_id.ptr, req->agent_id.len);
		a->id_len = req->agent_id.len;
		a->state = DISP_AGENT_OFFLINE;
		a->s_head = a->s_tail = NIL;
		a->bucket = -1;
		agent_hash_add(e, ai);
	}
	a = &e->agents[ai];

	/* A login through another gateway moves the agent there, sessions and all. */
	bucket_remove(e, ai);
	a->gw = gw;
	sk = &e->agent_skills[(size_t)ai * e->nb_skills];
	a->nb_skills = 0;
	for (uint32_t i = 0; i < req->nb_skills; i++) {
		uint32_t s = skill_find(e, req->skills[i].skill);

		if (seen[s / 8] & (1u << (s % 8)))
			continue;
		seen[s / 8] |= (uint8_t)(1u << (s % 8));
		sk[a->nb_skills++] = (uint16_t)s;
	}
	a->cap = req->max_sessions ? req->max_sessions : 1;
	a->shrink_load = a->load > a->cap ? a->load : 0;
	a->idle_since = now_ms;
	a->last_seen = now_ms;
	agent_set_state(e, a, DISP_AGENT_READY);
	agent_relist(e, ai);
	emit_state(e, a, true, NULL);
	agent_pull(e, ai, now_ms);
	return 0;
}

/* The agent named, if it exists and acts through this gateway. */
static int agent_auth(struct disp_engine *e, uint32_t gw, struct disp_str id, uint64_t ref,
                      uint32_t *ai)
{
	*ai = agent_find(e, id);
	if (*ai == NIL)
		return refuse(e, gw, DISP_ERR_UNKNOWN_AGENT, "unknown agent", ref);
	if (e->agents[*ai].gw != gw)
		return refuse(e, gw, DISP_ERR_FORBIDDEN, "agent not logged in through this gateway",
		              ref);
	return 0;
}

int disp_agent_state(struct disp_engine *e, uint32_t gw, struct disp_str agent_id,
                     enum disp_agent_state want, uint64_t now_ms)
{
	struct agent *a;
	uint32_t ai;
	int rc;

	if (!e)
		return -EINVAL;
	rc = agent_auth(e, gw, agent_id, 0, &ai);
	if (rc)
		return rc;
	a = &e->agents[ai];
	switch (want) {
	case DISP_AGENT_READY:
		a->last_seen = now_ms;
		if (a->state != DISP_AGENT_READY && a->load == 0)
			a->idle_since = now_ms;
		agent_set_state(e, a, DISP_AGENT_READY);
		agent_relist(e, ai);
		emit_state(e, a, true, NULL);
		agent_pull(e, ai, now_ms);
		return 0;
	case DISP_AGENT_OFFLINE_REQUESTED:
		a->last_seen = now_ms;
		agent_set_state(e, a, a->load ? DISP_AGENT_OFFLINE_REQUESTED : DISP_AGENT_OFFLINE);
		agent_relist(e, ai);
		emit_state(e, a, true, NULL);
		return 0;
	case DISP_AGENT_BREAK_REQUESTED:
		/*
		 * Granted whenever the agent is online: the cap on agents on break
		 * per skill group is not enforced in this version.
		 */
		if (a->state == DISP_AGENT_OFFLINE || a->state == DISP_AGENT_OFFLINE_REQUESTED ||
		    a->state == DISP_AGENT_DISCONNECTED)
			return refuse(e, gw, DISP_ERR_INVALID_STATE, "agent not online", 0);
		a->last_seen = now_ms;
		agent_set_state(e, a, a->load ? DISP_AGENT_BREAK_REQUESTED : DISP_AGENT_ON_BREAK);
		agent_relist(e, ai);
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
	rc = agent_auth(e, gw, agent_id, 0, &ai);
	if (rc)
		return rc;
	e->agents[ai].last_seen = now_ms;
	return 0;
}

/* ---- sessions ------------------------------------------------------------- */

int disp_session_open(struct disp_engine *e, uint32_t gw, const struct disp_open *req,
                      uint64_t now_ms)
{
	struct disp_out busy = {.kind = DISP_OUT_BUSY, .gateway_id = gw};
	const struct skill *k;
	struct session *s;
	uint32_t sk, si, ai;
	int rc;

	if (!e || !req)
		return -EINVAL;
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

	busy.open_ref = req->open_ref;
	busy.retry_after_ms = RETRY_AFTER;
	ai = best_agent(e, sk);
	if (ai == NIL && k->q_count >= k->conf.queue_capacity) {
		busy.leave_message = true;
		busy.reason = dstr("queue full", 10);
		e->st.sessions_busy++;
		e->st.sessions_busy_queue_full++;
		emit(e, &busy);
		return -EBUSY;
	}
	si = sess_alloc(e);
	if (si == NIL)
		goto out_busy;
	s = &e->sessions[si];
	if (disp_pool_put(&e->pool, req->question.ptr, req->question.len, &s->question) < 0)
		goto out_free_slot;
	if (disp_pool_put(&e->pool, req->bot_transcript.ptr, req->bot_transcript.len,
	                  &s->transcript) < 0)
		goto out_free_question;

	s->state = SESS_QUEUED; /* not linked yet: assign() or q_push() links it */
	s->transferred = false;
	s->mark = false;
	s->skill = (uint16_t)sk;
	s->cust_gw = gw;
	s->agent = NIL;
	s->last_agent = NIL;
	s->prev = s->next = NIL;
	s->open_ref = req->open_ref;
	s->opened_ms = now_ms;
	s->channel = req->channel;
	s->priority = req->priority;
	s->bl_head = s->bl_tail = NIL;
	s->bl_count = 0;
	memcpy(s->cid, req->customer_id.ptr, req->customer_id.len);
	s->cid_len = (uint8_t)req->customer_id.len;
	e->st.sessions_opened++;
	e->st.sessions_open++;

	if (ai != NIL) {
		emit_queued(e, si, 0);
		s->state = SESS_ASSIGNED; /* keep assign() from unlinking it from a queue */
		assign(e, si, ai, now_ms);
	} else {
		q_push(e, si, false);
		e->st.sessions_queued++;
		emit_queued(e, si, e->skills[sk].q_count);
	}
	return 0;

out_free_question:
	disp_pool_free(&e->pool, &s->question);
out_free_slot:
	/* Never handed out: back at the front, its generation unchanged. */
	s->state = SESS_FREE;
	sl_push_front(e->sessions, &e->f_head, &e->f_tail, si);
out_busy:
	busy.reason = dstr("overloaded", 10);
	e->st.sessions_busy++;
	emit(e, &busy);
	return -EBUSY;
}

/* The session named, if it exists and was opened through this gateway. */
static int customer_auth(struct disp_engine *e, uint32_t gw, uint64_t session_id, uint32_t *si)
{
	*si = sess_find(e, session_id);
	if (*si == NIL)
		return refuse(e, gw, DISP_ERR_UNKNOWN_SESSION, "unknown session", session_id);
	if (e->sessions[*si].cust_gw != gw)
		return refuse(e, gw, DISP_ERR_FORBIDDEN, "session not opened through this gateway",
		              session_id);
	return 0;
}

int disp_customer_message(struct disp_engine *e, uint32_t gw, uint64_t session_id, uint64_t msg_id,
                          struct disp_str text, struct disp_str attachment_ref, uint64_t now_ms)
{
	struct session *s;
	const struct agent *a;
	struct disp_out o = {.kind = DISP_OUT_DELIVER};
	uint32_t si;
	int rc;

	if (!e)
		return -EINVAL;
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
		return 0;
	}
	a = &e->agents[s->agent];
	bl_record(e, s, DISP_SIDE_CUSTOMER, msg_id, text, attachment_ref, now_ms, s->agent);
	o.gateway_id = a->gw;
	o.session_id = session_id;
	o.msg.msg_id = msg_id;
	o.msg.sender = DISP_SIDE_CUSTOMER;
	o.msg.text = dstr(text.ptr, text.len);
	o.msg.attachment_ref = dstr(attachment_ref.ptr, attachment_ref.len);
	o.msg.sent_unix_ms = now_ms;
	o.msg.agent_id = dstr(a->id, a->id_len);
	e->st.delivered_to_agent++;
	emit(e, &o);
	return 0;
}

int disp_session_end(struct disp_engine *e, uint32_t gw, uint64_t session_id, uint32_t rating,
                     bool complaint, struct disp_str comment, uint64_t now_ms)
{
	struct session *s;
	uint32_t si, ai;
	int rc;

	(void)comment; /* kept by the store, not by the engine */
	if (!e)
		return -EINVAL;
	rc = customer_auth(e, gw, session_id, &si);
	if (rc)
		return rc;
	if (rating >= 4)
		return refuse(e, gw, DISP_ERR_MALFORMED, "invalid rating", session_id);
	s = &e->sessions[si];
	e->st.ratings[rating]++;
	if (complaint)
		e->st.complaints++;
	if (s->state == SESS_QUEUED) {
		q_remove(e, si);
		emit_closed(e, gw, session_id, DISP_CLOSE_ABANDONED, NULL);
		sess_free(e, si, true);
		return 0;
	}
	ai = s->agent;
	emit_closed(e, gw, session_id, DISP_CLOSE_CUSTOMER_ENDED, &e->agents[ai]);
	emit_closed(e, e->agents[ai].gw, session_id, DISP_CLOSE_CUSTOMER_ENDED, &e->agents[ai]);
	release(e, si, now_ms);
	sess_free(e, si, false);
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
	if (e->sessions[*si].state != SESS_ASSIGNED || e->sessions[*si].agent != ai)
		return refuse(e, gw, DISP_ERR_FORBIDDEN, "session not assigned to this agent",
		              session_id);
	return 0;
}

int disp_agent_message(struct disp_engine *e, uint32_t gw, uint64_t session_id,
                       struct disp_str agent_id, uint64_t msg_id, struct disp_str text,
                       struct disp_str attachment_ref, bool hold, uint64_t now_ms)
{
	struct disp_out o = {.kind = DISP_OUT_DELIVER};
	struct session *s;
	struct agent *a;
	uint32_t ai, si;
	int rc;

	(void)hold; /* the hold clock comes with the service-level timers */
	if (!e)
		return -EINVAL;
	rc = agent_auth(e, gw, agent_id, session_id, &ai);
	if (rc)
		return rc;
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
	a->last_seen = now_ms;
	bl_record(e, s, DISP_SIDE_AGENT, msg_id, text, attachment_ref, now_ms, ai);
	o.gateway_id = s->cust_gw;
	o.session_id = session_id;
	o.msg.msg_id = msg_id;
	o.msg.sender = DISP_SIDE_AGENT;
	o.msg.text = dstr(text.ptr, text.len);
	o.msg.attachment_ref = dstr(attachment_ref.ptr, attachment_ref.len);
	o.msg.sent_unix_ms = now_ms;
	o.msg.agent_id = dstr(a->id, a->id_len);
	e->st.delivered_to_customer++;
	emit(e, &o);
	return 0;
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
	const struct session *s;
	uint32_t ai, si, low;
	int rc;

	if (!e)
		return -EINVAL;
	rc = agent_auth(e, gw, agent_id, session_id, &ai);
	if (rc)
		return rc;
	si = sess_find(e, session_id);
	low = (uint32_t)session_id;
	if (si == NIL && low != 0 && low <= e->s_bump) {
		/*
		 * Ended already (the customer left or its gateway went down) and the
		 * slot not reused yet: the agent is writing up its service record.
		 * Nothing left to close; the notes themselves go to the store.
		 */
		s = &e->sessions[low - 1];
		if (s->state == SESS_FREE && s->gen == (uint32_t)(session_id >> 32) + 1 &&
		    s->last_agent == ai)
			return check_notes(e, gw, notes, session_id);
	}
	rc = agent_session(e, gw, ai, session_id, &si);
	if (rc)
		return rc;
	rc = check_notes(e, gw, notes, session_id);
	if (rc)
		return rc;
	s = &e->sessions[si];
	emit_closed(e, s->cust_gw, session_id, DISP_CLOSE_AGENT_CLOSED, &e->agents[ai]);
	emit_closed(e, gw, session_id, DISP_CLOSE_AGENT_CLOSED, &e->agents[ai]);
	release(e, si, now_ms);
	sess_free(e, si, false);
	agent_pull(e, ai, now_ms);
	return 0;
}

int disp_transfer(struct disp_engine *e, uint32_t gw, uint64_t session_id, struct disp_str agent_id,
                  struct disp_str to_skill, bool consented, struct disp_str reason, uint64_t now_ms)
{
	(void)agent_id;
	(void)to_skill;
	(void)reason;
	(void)now_ms;
	if (!e)
		return -EINVAL;
	if (!consented)
		return refuse(e, gw, DISP_ERR_CONSENT_REQUIRED, "customer consent required",
		              session_id);
	return refuse(e, gw, DISP_ERR_INVALID_STATE, "transfer not supported yet", session_id);
}

/*
 * The gateway is gone, and everything that went through it:
 *  - its agents are DISCONNECTED (told nothing: there is no one to tell); each
 *    of their sessions goes back to the FRONT of its skill queue, keeping its
 *    original open time, marked transferred; the customer is told QUEUED with
 *    its position, then it is assigned as usual, the new agent getting the
 *    backlog;
 *  - the sessions its customers opened are closed as ABANDONED; an agent
 *    serving one gets CLOSED{ABANDONED} and takes the next waiting session.
 * A session whose customer and agent were both on this gateway is simply
 * closed. Sessions re-queued together keep the order they were assigned in.
 * This is the one call that walks every agent and session slot: gateways go
 * down rarely.
 */
void disp_gateway_down(struct disp_engine *e, uint32_t gw, uint64_t now_ms)
{
	if (!e)
		return;
	for (uint32_t ai = 0; ai < e->nb_agents; ai++) {
		struct agent *a = &e->agents[ai];

		if (a->gw != gw || a->state == DISP_AGENT_DISCONNECTED ||
		    a->state == DISP_AGENT_OFFLINE)
			continue;
		bucket_remove(e, ai);
		agent_set_state(e, a, DISP_AGENT_DISCONNECTED);
		while (a->s_tail != NIL) {
			uint32_t si = a->s_tail;
			struct session *s = &e->sessions[si];

			sl_remove(e->sessions, &a->s_head, &a->s_tail, si);
			a->load--;
			s->agent = NIL;
			if (s->cust_gw == gw) {
				sess_free(e, si, true);
				continue;
			}
			s->transferred = true;
			s->mark = true;
			q_push(e, si, true);
		}
		a->shrink_load = 0;
		a->idle_since = now_ms;
	}
	for (uint32_t si = 0; si < e->s_bump; si++) {
		struct session *s = &e->sessions[si];
		uint32_t ai;

		if (s->state == SESS_FREE || s->cust_gw != gw)
			continue;
		if (s->state == SESS_QUEUED) {
			q_remove(e, si);
			sess_free(e, si, true);
			continue;
		}
		ai = s->agent;
		emit_closed(e, e->agents[ai].gw, sess_id(e, si), DISP_CLOSE_ABANDONED,
		            &e->agents[ai]);
		release(e, si, now_ms);
		sess_free(e, si, true);
	}
	for (uint32_t k = 0; k < e->nb_skills; k++) {
		uint32_t pos = 0;

		for (uint32_t si = e->skills[k].q_head; si != NIL && e->sessions[si].mark;
		     si = e->sessions[si].next) {
			e->sessions[si].mark = false;
			emit_queued(e, si, ++pos);
		}
	}
	for (uint32_t k = 0; k < e->nb_skills; k++)
		pump_skill(e, k, now_ms);
}

/* ---- figures -------------------------------------------------------------- */

void disp_stats_get(const struct disp_engine *e, struct disp_stats *out)
{
	if (!e || !out)
		return;
	*out = e->st;
}

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			return -__LINE__;                                                          \
	} while (0)

int disp_check_invariants(const struct disp_engine *e)
{
	uint64_t nodes = 0, offered_nodes = 0, blocks = 0, entries = 0;
	uint32_t queued = 0, assigned = 0, walked_q = 0, walked_a = 0, ready = 0, nfree = 0;
	const uint32_t S = e->nb_skills;

	for (uint32_t k = 0; k < S; k++) {
		const struct skill *sk = &e->skills[k];
		uint32_t n = 0, prev = NIL;

		for (uint32_t si = sk->q_head; si != NIL; si = e->sessions[si].next) {
			const struct session *s = &e->sessions[si];

			CHECK(si < e->s_bump && n < e->s_bump);
			CHECK(s->prev == prev);
			CHECK(s->state == SESS_QUEUED && s->skill == k && s->agent == NIL);
			CHECK(!s->mark);
			prev = si;
			n++;
		}
		CHECK(sk->q_tail == prev);
		CHECK(n == sk->q_count);
		walked_q += n;
		/* Nobody waits while an agent of the skill has room. */
		CHECK(n == 0 || sk->bucket_mask == 0);
		for (uint32_t b = 0; b < LOAD_BUCKETS; b++) {
			uint32_t hb = k * LOAD_BUCKETS + b, lp = NIL;

			CHECK(((sk->bucket_mask >> b) & 1) == (e->b_head[hb] != NIL));
			for (uint32_t x = e->b_head[hb]; x != NIL; x = e->nodes[x].next) {
				const struct agent *a = &e->agents[x / S];

				CHECK(x / S < e->nb_agents && x % S == k);
				CHECK(e->nodes[x].prev == lp);
				CHECK(agent_offered(a) && a->bucket == (int32_t)b);
				CHECK(b == (a->load < LOAD_BUCKETS ? a->load : LOAD_BUCKETS - 1));
				CHECK(nodes <= (uint64_t)e->nb_agents * S);
				lp = x;
				nodes++;
			}
			CHECK(e->b_tail[hb] == lp);
		}
	}
	for (uint32_t ai = 0; ai < e->nb_agents; ai++) {
		const struct agent *a = &e->agents[ai];
		struct disp_str id = {.ptr = a->id, .len = a->id_len};
		uint32_t n = 0, prev = NIL;

		CHECK(agent_find(e, id) == ai);
		for (uint32_t si = a->s_head; si != NIL; si = e->sessions[si].next) {
			const struct session *s = &e->sessions[si];

			CHECK(si < e->s_bump && n < e->s_bump);
			CHECK(s->prev == prev);
			CHECK(s->state == SESS_ASSIGNED && s->agent == ai);
			prev = si;
			n++;
		}
		CHECK(a->s_tail == prev);
		CHECK(n == a->load);
		CHECK(a->cap >= 1);
		CHECK(a->load <= a->cap || a->load <= a->shrink_load);
		CHECK(agent_offered(a) == (a->bucket >= 0));
		if (a->bucket >= 0)
			offered_nodes += a->nb_skills;
		if (a->state == DISP_AGENT_OFFLINE || a->state == DISP_AGENT_ON_BREAK ||
		    a->state == DISP_AGENT_DISCONNECTED)
			CHECK(a->load == 0);
		if (a->state == DISP_AGENT_READY)
			ready++;
		walked_a += n;
	}
	CHECK(nodes == offered_nodes);
	for (uint32_t si = 0; si < e->s_bump; si++) {
		const struct session *s = &e->sessions[si];
		uint32_t n = 0;

		if (s->state == SESS_FREE) {
			CHECK(s->question.len == 0 && s->transcript.len == 0 && s->bl_count == 0);
			continue;
		}
		if (s->state == SESS_QUEUED)
			queued++;
		else
			assigned++;
		blocks += (s->question.len != 0) + (s->transcript.len != 0);
		CHECK(s->bl_count <= e->backlog_max);
		for (uint32_t x = s->bl_head; x != NIL; x = e->entries[x].next) {
			const struct bl_entry *en = &e->entries[x];

			CHECK(n < s->bl_count);
			CHECK(en->agent == NIL || en->agent < e->nb_agents);
			blocks += (en->text.len != 0) + (en->att.len != 0);
			n++;
		}
		CHECK(n == s->bl_count);
		entries += n;
	}
	for (uint32_t si = e->f_head; si != NIL; si = e->sessions[si].next) {
		CHECK(e->sessions[si].state == SESS_FREE && nfree < e->s_bump);
		nfree++;
	}
	CHECK(queued == walked_q && assigned == walked_a);
	CHECK(nfree + queued + assigned == e->s_bump);
	CHECK(e->st.sessions_open == queued + assigned);
	CHECK(e->st.sessions_waiting == queued);
	CHECK(e->st.sessions_opened == e->st.sessions_open + e->st.sessions_closed);
	CHECK(e->st.sessions_abandoned <= e->st.sessions_closed);
	CHECK(e->st.agents_ready == ready);
	CHECK(blocks == e->pool.used_blocks);
	CHECK(entries == e->e_used);
	return 0;
}
