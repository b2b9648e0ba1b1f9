/* SPDX-License-Identifier: MIT */
/*
 * The router core: from a received frame to dispatch calls, and from
 * dispatch answers to frames on the wire. Runs on one lcore; nothing here
 * locks, allocates from the heap or makes a system call per message.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_branch_prediction.h>
#include <rte_mbuf.h>

#include "router_pvt.h"

/* Per-burst arenas. A burst is at most 32 datagrams of at most 64 envelopes. */
#define RT_RX_ARENA_BYTES (4u << 20)
#define RT_TX_ARENA_BYTES (16u << 20)

/*
 * Bytes a Frame spends besides its envelopes: epoch, seq, ack and sent_ns as
 * tagged varints (11 bytes each at most); and a Packet around it: gateway_id
 * (6) and the frame's tag and length (4).
 */
#define RT_FRAME_OVERHEAD (4u * 11u + 6u + 4u)

static const char *const rt_drop_names[RT_DROP_MAX] = {
        [RT_DROP_ROLE_REFUSED] = "role_refused",
        [RT_DROP_EMPTY_ENVELOPE] = "empty_envelope",
        [RT_DROP_MULTI_SEGMENT] = "multi_segment",
        [RT_DROP_TX_NO_PEER] = "tx_no_peer",
        [RT_DROP_TX_NO_MBUF] = "tx_no_mbuf",
        [RT_DROP_TX_ARENA_FULL] = "tx_arena_full",
        [RT_DROP_TX_OVERSIZE] = "tx_oversize",
        [RT_DROP_TX_PORT] = "tx_port",
        [RT_DROP_TX_TRIMMED] = "tx_transcript_trimmed",
};

static inline struct disp_str rt_str(const char *s)
{
	return (struct disp_str){.ptr = s, .len = s ? (uint32_t)strlen(s) : 0};
}

static size_t rt_varint_len(size_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* ---- gateways ------------------------------------------------------------ */

static uint32_t rt_gw_hash(uint32_t id)
{
	return id * 2654435761u;
}

static struct rt_gateway *rt_gw_find(struct rt_router *rt, uint32_t id)
{
	uint32_t i = rt_gw_hash(id) & rt->gw_index_mask;

	for (;;) {
		uint32_t slot = rt->gw_index[i];

		if (slot == 0)
			return NULL;
		if (rt->gws[slot - 1].conf->id == id)
			return &rt->gws[slot - 1];
		i = (i + 1) & rt->gw_index_mask;
	}
}

struct rt_gateway *rt_gw_lookup(struct rt_router *rt, uint32_t id)
{
	return rt_gw_find(rt, id);
}

static void rt_mark_dirty(struct rt_router *rt, struct rt_gateway *gw)
{
	if (!gw->dirty) {
		gw->dirty = true;
		rt->dirty[rt->nb_dirty++] = (uint32_t)(gw - rt->gws);
	}
}

/* ---- transmit ------------------------------------------------------------ */

static void rt_tx_drain(struct rt_router *rt)
{
	rt->io->tx_drain(rt);
}

/* DPDK: frames in mbufs, headers built here */

static void rt_dpdk_drain(struct rt_router *rt)
{
	uint16_t sent;

	if (rt->nb_tx == 0)
		return;
	sent = net_port_tx(rt->port, rt->tx, rt->nb_tx);
	rt->rt_drops[RT_DROP_TX_PORT] += (uint64_t)(rt->nb_tx - sent);
	rt->nb_tx = 0;
}

static void rt_tx_enqueue(struct rt_router *rt, struct rte_mbuf *m)
{
	if (rt->nb_tx == RT_TX_BURST)
		rt_dpdk_drain(rt);
	rt->tx[rt->nb_tx++] = m;
}

static uint8_t *rt_dpdk_begin(struct rt_router *rt, size_t *cap, void **handle)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(rt->port->pool);
	size_t room;

	if (unlikely(m == NULL))
		return NULL;
	room = rte_pktmbuf_tailroom(m);
	if (room > (size_t)rt->port->mtu + 14u)
		room = (size_t)rt->port->mtu + 14u;
	*cap = room - NET_UDP_HDR_LEN;
	*handle = m;
	return rte_pktmbuf_mtod(m, uint8_t *) + NET_UDP_HDR_LEN;
}

static void rt_dpdk_end(struct rt_router *rt, void *handle, size_t len, const struct net_addr *peer)
{
	struct rte_mbuf *m = handle;
	uint8_t *data = rte_pktmbuf_mtod(m, uint8_t *);
	int flen = net_build_udp(data, rte_pktmbuf_tailroom(m), &rt->self, peer,
	                         data + NET_UDP_HDR_LEN, len);

	if (unlikely(flen < 0)) {
		rt->rt_drops[RT_DROP_TX_OVERSIZE]++;
		rte_pktmbuf_free(m);
		return;
	}
	m->data_len = (uint16_t)flen;
	m->pkt_len = (uint32_t)flen;
	rt_tx_enqueue(rt, m);
}

static const struct rt_io_ops rt_dpdk_io = {
        .tx_begin = rt_dpdk_begin,
        .tx_end = rt_dpdk_end,
        .tx_drain = rt_dpdk_drain,
};

/* Kernel socket: datagrams, the kernel builds the headers */

static uint8_t *rt_sock_begin(struct rt_router *rt, size_t *cap, void **handle)
{
	*cap = NET_SOCK_DGRAM < (size_t)rt->cfg->mtu - 28u ? NET_SOCK_DGRAM
	                                                   : (size_t)rt->cfg->mtu - 28u;
	*handle = NULL;
	return net_sock_tx_buf(rt->sock);
}

static void rt_sock_end(struct rt_router *rt, void *handle, size_t len, const struct net_addr *peer)
{
	(void)handle;
	net_sock_tx_commit(rt->sock, len, peer);
}

static void rt_sock_drain(struct rt_router *rt)
{
	net_sock_tx_drain(rt->sock);
}

static const struct rt_io_ops rt_sock_io = {
        .tx_begin = rt_sock_begin,
        .tx_end = rt_sock_end,
        .tx_drain = rt_sock_drain,
};

/* Send the gateway's pending envelopes (or a bare ack) as one frame. */
static void rt_flush_gw(struct rt_router *rt, struct rt_gateway *gw)
{
	Surge__V1__Frame frame = SURGE__V1__FRAME__INIT;
	uint8_t *payload;
	void *handle;
	size_t room;
	int plen;

	if (gw->nb_pending == 0 && !gw->ack_owed)
		return;
	if (unlikely(!gw->peer_known)) {
		rt->rt_drops[RT_DROP_TX_NO_PEER] += gw->nb_pending;
		goto out_reset;
	}
	payload = rt->io->tx_begin(rt, &room, &handle);
	if (unlikely(payload == NULL)) {
		rt->rt_drops[RT_DROP_TX_NO_MBUF] += gw->nb_pending;
		goto out_reset;
	}
	frame.epoch = rt->tx_epoch;
	frame.seq = gw->nb_pending ? ++gw->tx_seq : 0;
	frame.ack = gw->ack_ok; /* what is processed and durable */
	frame.n_msgs = gw->nb_pending;
	frame.msgs = gw->pending;
	frame.sent_ns = rt->now_ms * 1000000u;

	plen = wire_encode_plain(gw->conf->id, &frame, payload, room);
	if (unlikely(plen < 0)) {
		/* the budget keeps frames under the MTU; this is a bug guard */
		rt->rt_drops[RT_DROP_TX_OVERSIZE] += gw->nb_pending;
		rt->io->tx_end(rt, handle, 0, &gw->peer);
		goto out_reset;
	}
	rt->io->tx_end(rt, handle, (size_t)plen, &gw->peer);
	gw->tx_frames++;
	gw->tx_envelopes += gw->nb_pending;
out_reset:
	gw->nb_pending = 0;
	gw->pending_bytes = 0;
	gw->ack_owed = false;
}

/* Allocate a message in the tx arena, initialised from its INIT value. */
static void *rt_new(struct rt_router *rt, size_t size, const void *init)
{
	void *p = wire_arena_alloc(&rt->tx_arena, size);

	if (p)
		memcpy(p, init, size);
	return p;
}

#define RT_NEW(rt, type, init) ((type *)rt_new((rt), sizeof(type), &(type)init))

static void rt_queue(struct rt_router *rt, struct rt_gateway *gw, Surge__V1__Envelope *env);

/*
 * Assigned is the one answer that can outgrow a datagram (transcript and
 * backlog). The backlog entries that do not fit travel right after it, in
 * order, as Deliver envelopes: no held message is lost. What still does not
 * fit is the robot transcript, which is shortened (and counted).
 */
static size_t rt_fit_assigned(struct rt_router *rt, struct rt_gateway *gw, Surge__V1__Envelope *env,
                              size_t budget)
{
	Surge__V1__Assigned *a = env->assigned;
	Surge__V1__Deliver **rest = NULL;
	size_t nb_rest = 0;
	size_t size = protobuf_c_message_get_packed_size(&env->base);

	while (size > budget && a->n_backlog > 0) {
		a->n_backlog--;
		nb_rest++;
		rest = &a->backlog[a->n_backlog];
		size = protobuf_c_message_get_packed_size(&env->base);
	}
	if (size > budget && a->bot_transcript) {
		size_t len = strlen(a->bot_transcript);
		size_t over = size - budget;

		/* cut on a UTF-8 boundary */
		len = over >= len ? 0 : len - over;
		while (len > 0 && ((unsigned char)a->bot_transcript[len] & 0xC0) == 0x80)
			len--;
		a->bot_transcript[len] = '\0';
		rt->rt_drops[RT_DROP_TX_TRIMMED]++;
		size = protobuf_c_message_get_packed_size(&env->base);
	}
	while (size > budget && a->n_history > 0) {
		/* the oldest consultation goes first; the store still has it */
		a->n_history--;
		rt->rt_drops[RT_DROP_TX_TRIMMED]++;
		size = protobuf_c_message_get_packed_size(&env->base);
	}
	if (size > budget)
		return size;
	/* the Assigned first, then what it could not carry */
	rt_queue(rt, gw, env);
	for (size_t i = 0; i < nb_rest; i++) {
		Surge__V1__Envelope *d = RT_NEW(rt, Surge__V1__Envelope, SURGE__V1__ENVELOPE__INIT);

		if (!d) {
			rt->rt_drops[RT_DROP_TX_ARENA_FULL] += nb_rest - i;
			break;
		}
		d->body_case = SURGE__V1__ENVELOPE__BODY_DELIVER;
		d->deliver = rest[i];
		rt_queue(rt, gw, d);
	}
	return 0;
}

/* Add an envelope to the gateway's frame, flushing first when it would not fit. */
static void rt_queue(struct rt_router *rt, struct rt_gateway *gw, Surge__V1__Envelope *env)
{
	size_t size = protobuf_c_message_get_packed_size(&env->base);
	size_t need;

	if (unlikely(size + 4 > rt->frame_budget)) {
		if (env->body_case == SURGE__V1__ENVELOPE__BODY_ASSIGNED &&
		    rt_fit_assigned(rt, gw, env, rt->frame_budget - 4) == 0)
			return;
		rt->rt_drops[RT_DROP_TX_OVERSIZE]++;
		return;
	}
	need = 1 + rt_varint_len(size) + size;
	if (gw->nb_pending == rt->cfg->envelopes_per_frame ||
	    gw->pending_bytes + need > rt->frame_budget)
		rt_flush_gw(rt, gw);
	gw->pending[gw->nb_pending++] = env;
	gw->pending_bytes += need;
	rt_mark_dirty(rt, gw);
}

/* ---- dispatch answers to envelopes ---------------------------------------- */

/* Copy a borrowed string into the tx arena; "" when empty. NULL when full. */
static char *rt_dup(struct rt_router *rt, struct disp_str s)
{
	return wire_arena_strndup(&rt->tx_arena, s.ptr ? s.ptr : "", s.len);
}

static Surge__V1__Deliver *rt_deliver(struct rt_router *rt, const struct disp_msg *msg,
                                      uint64_t session_id)
{
	Surge__V1__Deliver *d = RT_NEW(rt, Surge__V1__Deliver, SURGE__V1__DELIVER__INIT);

	if (!d)
		return NULL;
	d->session_id = session_id;
	d->msg_id = msg->msg_id;
	d->sender = (Surge__V1__Side)msg->sender;
	d->sent_unix_ms = msg->sent_unix_ms;
	d->text = rt_dup(rt, msg->text);
	d->attachment_ref = rt_dup(rt, msg->attachment_ref);
	d->agent_id = rt_dup(rt, msg->agent_id);
	if (!d->text || !d->attachment_ref || !d->agent_id)
		return NULL;
	return d;
}

#define RT_PAST_TEXT 100u /* bytes of a past session's notes or question in an Assigned */

/* s cut to at most max bytes on a UTF-8 boundary, in the tx arena. */
static char *rt_dup_cut(struct rt_router *rt, const char *s, size_t max)
{
	size_t len = strlen(s);

	if (len > max) {
		len = max;
		while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
			len--;
	}
	return wire_arena_strndup(&rt->tx_arena, s, len);
}

/* The customer's last consultations for an agent's Assigned (summaries). */
static int rt_history(struct rt_router *rt, Surge__V1__Assigned *a, struct disp_str customer)
{
	struct store_past past[STORE_HISTORY_DEPTH];
	uint32_t n = rt_store_history(rt, customer, past);

	if (n == 0)
		return 0;
	a->history = wire_arena_alloc(&rt->tx_arena, n * sizeof(Surge__V1__PastSession *));
	if (!a->history)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		Surge__V1__PastSession *p =
		        RT_NEW(rt, Surge__V1__PastSession, SURGE__V1__PAST_SESSION__INIT);

		if (!p)
			return -ENOMEM;
		p->session_id = past[i].session_id;
		p->opened_unix_ms = past[i].opened_ms;
		p->rating = (Surge__V1__Rating)past[i].rating;
		p->closed = (Surge__V1__CloseReason)past[i].closed;
		p->skill = rt_dup_cut(rt, past[i].skill, sizeof(past[i].skill));
		p->agent_id = rt_dup_cut(rt, past[i].agent, sizeof(past[i].agent));
		p->notes = rt_dup_cut(rt, past[i].notes, RT_PAST_TEXT);
		p->question = rt_dup_cut(rt, past[i].question, RT_PAST_TEXT);
		if (!p->skill || !p->agent_id || !p->notes || !p->question)
			return -ENOMEM;
		a->history[i] = p;
		a->n_history = i + 1;
	}
	return 0;
}

static Surge__V1__Assigned *rt_assigned(struct rt_router *rt, const struct disp_out *o)
{
	Surge__V1__Assigned *a = RT_NEW(rt, Surge__V1__Assigned, SURGE__V1__ASSIGNED__INIT);

	if (!a)
		return NULL;
	a->session_id = o->session_id;
	a->agent_id = rt_dup(rt, o->agent_id);
	a->skill = rt_dup(rt, o->skill);
	a->waited_ms = o->waited_ms;
	a->transferred = o->transferred;
	if (!a->agent_id || !a->skill)
		return NULL;
	if (!o->to_agent)
		return a; /* the customer's side learns nothing of anyone's data */
	a->customer_id = rt_dup(rt, o->customer_id);
	a->question = rt_dup(rt, o->question);
	a->bot_transcript = rt_dup(rt, o->bot_transcript);
	a->channel = (Surge__V1__Channel)o->channel;
	if (!a->customer_id || !a->question || !a->bot_transcript)
		return NULL;
	if (rt_history(rt, a, o->customer_id) < 0)
		return NULL;
	if (o->nb_backlog) {
		a->backlog = wire_arena_alloc(&rt->tx_arena,
		                              o->nb_backlog * sizeof(Surge__V1__Deliver *));
		if (!a->backlog)
			return NULL;
		for (uint32_t i = 0; i < o->nb_backlog; i++) {
			a->backlog[i] = rt_deliver(rt, &o->backlog[i], o->session_id);
			if (!a->backlog[i])
				return NULL;
		}
		a->n_backlog = o->nb_backlog;
	}
	return a;
}

static Surge__V1__Envelope *rt_envelope(struct rt_router *rt, const struct disp_out *o)
{
	Surge__V1__Envelope *env = RT_NEW(rt, Surge__V1__Envelope, SURGE__V1__ENVELOPE__INIT);

	if (!env)
		return NULL;
	switch (o->kind) {
	case DISP_OUT_QUEUED: {
		Surge__V1__SessionQueued *q =
		        RT_NEW(rt, Surge__V1__SessionQueued, SURGE__V1__SESSION_QUEUED__INIT);
		if (!q)
			return NULL;
		q->open_ref = o->open_ref;
		q->session_id = o->session_id;
		q->position = o->position;
		q->eta_ms = o->eta_ms;
		env->body_case = SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED;
		env->session_queued = q;
		break;
	}
	case DISP_OUT_ASSIGNED:
		env->assigned = rt_assigned(rt, o);
		if (!env->assigned)
			return NULL;
		env->body_case = SURGE__V1__ENVELOPE__BODY_ASSIGNED;
		break;
	case DISP_OUT_DELIVER:
		env->deliver = rt_deliver(rt, &o->msg, o->session_id);
		if (!env->deliver)
			return NULL;
		env->body_case = SURGE__V1__ENVELOPE__BODY_DELIVER;
		break;
	case DISP_OUT_CLOSED: {
		Surge__V1__SessionClosed *c =
		        RT_NEW(rt, Surge__V1__SessionClosed, SURGE__V1__SESSION_CLOSED__INIT);
		if (!c)
			return NULL;
		c->session_id = o->session_id;
		c->reason = (Surge__V1__CloseReason)o->close_reason;
		c->agent_id = rt_dup(rt, o->agent_id);
		if (!c->agent_id)
			return NULL;
		env->body_case = SURGE__V1__ENVELOPE__BODY_SESSION_CLOSED;
		env->session_closed = c;
		break;
	}
	case DISP_OUT_AGENT_STATE: {
		Surge__V1__AgentStateResult *r = RT_NEW(rt, Surge__V1__AgentStateResult,
		                                        SURGE__V1__AGENT_STATE_RESULT__INIT);
		if (!r)
			return NULL;
		r->agent_id = rt_dup(rt, o->agent_id);
		r->state = (Surge__V1__AgentStateKind)o->state;
		r->granted = o->granted;
		r->reason = rt_dup(rt, o->reason);
		if (!r->agent_id || !r->reason)
			return NULL;
		env->body_case = SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT;
		env->agent_state_result = r;
		break;
	}
	case DISP_OUT_BUSY: {
		Surge__V1__Busy *b = RT_NEW(rt, Surge__V1__Busy, SURGE__V1__BUSY__INIT);
		if (!b)
			return NULL;
		b->open_ref = o->open_ref;
		b->retry_after_ms = o->retry_after_ms;
		b->leave_message = o->leave_message;
		b->reason = rt_dup(rt, o->reason);
		if (!b->reason)
			return NULL;
		env->body_case = SURGE__V1__ENVELOPE__BODY_BUSY;
		env->busy = b;
		break;
	}
	case DISP_OUT_SLA_ALERT: {
		Surge__V1__SlaAlert *a =
		        RT_NEW(rt, Surge__V1__SlaAlert, SURGE__V1__SLA_ALERT__INIT);
		if (!a)
			return NULL;
		a->session_id = o->session_id;
		a->agent_id = rt_dup(rt, o->agent_id);
		a->kind = (Surge__V1__SlaKind)o->sla;
		a->elapsed_ms = o->elapsed_ms;
		a->skill = rt_dup(rt, o->skill);
		if (!a->agent_id || !a->skill)
			return NULL;
		env->body_case = SURGE__V1__ENVELOPE__BODY_SLA_ALERT;
		env->sla_alert = a;
		break;
	}
	case DISP_OUT_ERROR: {
		Surge__V1__Error *e = RT_NEW(rt, Surge__V1__Error, SURGE__V1__ERROR__INIT);
		if (!e)
			return NULL;
		e->code = (Surge__V1__ErrorCode)o->error;
		e->detail = rt_dup(rt, o->detail);
		e->ref = o->ref;
		if (!e->detail)
			return NULL;
		env->body_case = SURGE__V1__ENVELOPE__BODY_ERROR;
		env->error = e;
		break;
	}
	default:
		return NULL;
	}
	return env;
}

/* The dispatch engine's emit callback. */
static void rt_emit(void *ctx, const struct disp_out *out)
{
	struct rt_router *rt = ctx;
	struct rt_gateway *gw = rt_gw_find(rt, out->gateway_id);
	Surge__V1__Envelope *env;

	if (unlikely(gw == NULL))
		return;
	env = rt_envelope(rt, out);
	if (unlikely(env == NULL)) {
		rt->rt_drops[RT_DROP_TX_ARENA_FULL]++;
		return;
	}
	rt_queue(rt, gw, env);
}

/* An Error the router itself answers with (before dispatch is involved). */
static void rt_error(struct rt_router *rt, struct rt_gateway *gw, enum disp_error code,
                     const char *detail, uint64_t ref)
{
	struct disp_out o = {
	        .kind = DISP_OUT_ERROR,
	        .gateway_id = gw->conf->id,
	        .error = code,
	        .detail = rt_str(detail),
	        .ref = ref,
	};

	rt_emit(rt, &o);
}

/* ---- receive ------------------------------------------------------------- */

static bool rt_role_allows(enum wire_role role, Surge__V1__Envelope__BodyCase kind)
{
	switch (kind) {
	case SURGE__V1__ENVELOPE__BODY_SESSION_OPEN:
	case SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE:
	case SURGE__V1__ENVELOPE__BODY_SESSION_END:
		return role & WIRE_ROLE_CUSTOMER;
	case SURGE__V1__ENVELOPE__BODY_AGENT_LOGIN:
	case SURGE__V1__ENVELOPE__BODY_AGENT_STATE:
	case SURGE__V1__ENVELOPE__BODY_AGENT_MESSAGE:
	case SURGE__V1__ENVELOPE__BODY_TRANSFER:
	case SURGE__V1__ENVELOPE__BODY_AGENT_CLOSE:
	case SURGE__V1__ENVELOPE__BODY_AGENT_HEARTBEAT:
	case SURGE__V1__ENVELOPE__BODY_HISTORY_REQUEST:
		return role & WIRE_ROLE_AGENT;
	default:
		return false;
	}
}

static void rt_login(struct rt_router *rt, uint32_t gw, const Surge__V1__AgentLogin *l)
{
	struct disp_skill_level levels[CTL_MAX_SKILLS];
	struct disp_login req = {
	        .agent_id = rt_str(l->agent_id),
	        .tenant = rt_str(l->tenant),
	        .skills = levels,
	        .max_sessions = l->max_sessions,
	};
	size_t n = l->n_skills < CTL_MAX_SKILLS ? l->n_skills : CTL_MAX_SKILLS;

	for (size_t i = 0; i < n; i++) {
		levels[i].skill = rt_str(l->skills[i]->skill);
		levels[i].level = l->skills[i]->level;
	}
	req.nb_skills = (uint32_t)n;
	disp_agent_login(rt->disp, gw, &req, rt->now_ms);
}

/* Collects a transcript into HistoryReply envelopes that each fit a datagram. */
struct rt_transcript {
	struct rt_router *rt;
	struct rt_gateway *gw;
	const char *agent_id;
	uint64_t session_id, past_session_id;
	Surge__V1__Envelope *env; /* being filled */
	size_t bytes;             /* its messages' size, roughly */
	int err;
};

static void rt_transcript_flush(struct rt_transcript *t)
{
	if (t->env) {
		rt_queue(t->rt, t->gw, t->env);
		t->env = NULL;
		t->bytes = 0;
	}
}

/* A new HistoryReply envelope with room for 64 messages; -ENOMEM when the arena is full. */
static int rt_transcript_start(struct rt_transcript *t)
{
	struct rt_router *rt = t->rt;
	Surge__V1__HistoryReply *h;

	t->env = RT_NEW(rt, Surge__V1__Envelope, SURGE__V1__ENVELOPE__INIT);
	h = RT_NEW(rt, Surge__V1__HistoryReply, SURGE__V1__HISTORY_REPLY__INIT);
	if (!t->env || !h)
		goto out_nomem;
	h->agent_id = rt_dup(rt, (struct disp_str){t->agent_id, (uint32_t)strlen(t->agent_id)});
	h->session_id = t->session_id;
	h->past_session_id = t->past_session_id;
	h->messages = wire_arena_alloc(&rt->tx_arena, 64 * sizeof(Surge__V1__Deliver *));
	if (!h->agent_id || !h->messages)
		goto out_nomem;
	t->env->body_case = SURGE__V1__ENVELOPE__BODY_HISTORY_REPLY;
	t->env->history_reply = h;
	return 0;
out_nomem:
	t->env = NULL;
	return -ENOMEM;
}

static void rt_transcript_msg(struct rt_transcript *t, const struct store_msg *m)
{
	struct rt_router *rt = t->rt;
	Surge__V1__HistoryReply *h;
	struct disp_msg dm = {
	        .msg_id = m->msg_id,
	        .sender = m->from_agent ? DISP_SIDE_AGENT : DISP_SIDE_CUSTOMER,
	        .text = {m->text.ptr, m->text.len},
	        .attachment_ref = {m->attachment.ptr, m->attachment.len},
	        .sent_unix_ms = m->sent_ms,
	        .agent_id = {m->agent.ptr, m->agent.len},
	};
	Surge__V1__Deliver *d;
	size_t need = 32u + m->text.len + m->attachment.len + m->agent.len;

	if (t->err)
		return;
	if (t->env && t->bytes + need > rt->frame_budget / 2)
		rt_transcript_flush(t);
	if (!t->env && (t->err = rt_transcript_start(t)) < 0)
		return;
	h = t->env->history_reply;
	d = rt_deliver(rt, &dm, t->past_session_id);
	if (!d) {
		t->err = -ENOMEM;
		return;
	}
	h->messages[h->n_messages++] = d;
	t->bytes += need;
	if (h->n_messages == 64)
		rt_transcript_flush(t);
}

void rt_history_answer(struct rt_router *rt, uint32_t gw_id, const char *agent_id,
                       uint64_t session_id, uint64_t past_session_id, int rc,
                       const struct store_msg *msgs, uint32_t n)
{
	struct rt_gateway *gw = rt_gw_find(rt, gw_id);
	struct rt_transcript t = {.rt = rt,
	                          .gw = gw,
	                          .agent_id = agent_id,
	                          .session_id = session_id,
	                          .past_session_id = past_session_id};

	if (!gw)
		return;
	if (rc < 0) {
		rt_error(rt, gw, DISP_ERR_UNKNOWN_SESSION, "transcript no longer in the log",
		         past_session_id);
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		rt_transcript_msg(&t, &msgs[i]);
	if (!t.env && !t.err)
		t.err = rt_transcript_start(&t); /* no messages: still an answer */
	if (t.err) {
		rt->rt_drops[RT_DROP_TX_ARENA_FULL]++;
		return;
	}
	rt_transcript_flush(&t);
}

/*
 * HistoryRequest: the transcript of one of the customer's past sessions, for
 * the agent serving that customer now and nobody else. The log is read by
 * the store's reader thread; the answer goes out from a later tick.
 */
static void rt_history_request(struct rt_router *rt, struct rt_gateway *gw,
                               const Surge__V1__HistoryRequest *req)
{
	struct disp_str agent = {req->agent_id, (uint32_t)strlen(req->agent_id)};
	struct disp_str customer;
	struct store_past past;
	char owner[64];
	int rc;

	rc = disp_session_serving(rt->disp, req->session_id, agent, &customer);
	if (rc == -ENOENT) {
		rt_error(rt, gw, DISP_ERR_UNKNOWN_SESSION, "unknown session", req->session_id);
		return;
	}
	if (rc < 0 ||
	    rt_store_history_owner(rt, req->past_session_id, owner, sizeof(owner), &past) < 0 ||
	    strlen(owner) != customer.len || memcmp(owner, customer.ptr, customer.len) != 0) {
		/* Unknown, erased or another customer's: the same answer, nothing to learn. */
		rt_error(rt, gw, DISP_ERR_FORBIDDEN,
		         "history only of the customer you are serving now", req->past_session_id);
		return;
	}
	if (rt_store_ask_transcript(rt, gw->conf->id, req->agent_id, req->session_id, &past) < 0)
		rt_error(rt, gw, DISP_ERR_OVERLOADED,
		         "too many history requests at once: try again", req->past_session_id);
}

static void rt_envelope_in(struct rt_router *rt, struct rt_gateway *gw,
                           const Surge__V1__Envelope *env)
{
	uint32_t id = gw->conf->id;
	uint64_t now = rt->now_ms;

	if (unlikely(env->body_case == SURGE__V1__ENVELOPE__BODY__NOT_SET)) {
		rt->rt_drops[RT_DROP_EMPTY_ENVELOPE]++;
		rt_error(rt, gw, DISP_ERR_MALFORMED, "envelope has no body", 0);
		return;
	}
	if (unlikely(!rt_role_allows(gw->conf->role, env->body_case))) {
		rt->rt_drops[RT_DROP_ROLE_REFUSED]++;
		rt_error(rt, gw, DISP_ERR_FORBIDDEN, "envelope kind not allowed for this gateway",
		         0);
		return;
	}
	switch (env->body_case) {
	case SURGE__V1__ENVELOPE__BODY_SESSION_OPEN: {
		const Surge__V1__SessionOpen *s = env->session_open;
		struct disp_open req;

		if (unlikely(rt_store_refuses(rt))) {
			/* Nothing new is taken on that could not be kept. */
			rt->store_refused++;
			rt_error(rt, gw, DISP_ERR_STORE_FAILED, "session store failed: try later",
			         s->open_ref);
			break;
		}
		req = (struct disp_open){
		        .open_ref = s->open_ref,
		        .customer_id = rt_str(s->customer_id),
		        .tenant = rt_str(s->tenant),
		        .skill = rt_str(s->skill),
		        .channel = (uint32_t)s->channel,
		        .priority = s->priority,
		        .language = rt_str(s->language),
		        .question = rt_str(s->question),
		        .bot_transcript = rt_str(s->bot_transcript),
		};
		disp_session_open(rt->disp, id, &req, now);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE: {
		const Surge__V1__CustomerMessage *c = env->customer_message;
		disp_customer_message(rt->disp, id, c->session_id, c->msg_id, rt_str(c->text),
		                      rt_str(c->attachment_ref), now);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_SESSION_END: {
		const Surge__V1__SessionEnd *s = env->session_end;
		disp_session_end(rt->disp, id, s->session_id, (uint32_t)s->rating, s->complaint,
		                 rt_str(s->comment), now);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_AGENT_LOGIN:
		rt_login(rt, id, env->agent_login);
		break;
	case SURGE__V1__ENVELOPE__BODY_AGENT_STATE:
		disp_agent_state(rt->disp, id, rt_str(env->agent_state->agent_id),
		                 (enum disp_agent_state)env->agent_state->state, now);
		break;
	case SURGE__V1__ENVELOPE__BODY_AGENT_MESSAGE: {
		const Surge__V1__AgentMessage *a = env->agent_message;
		disp_agent_message(rt->disp, id, a->session_id, rt_str(a->agent_id), a->msg_id,
		                   rt_str(a->text), rt_str(a->attachment_ref), a->hold, now);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_TRANSFER: {
		const Surge__V1__Transfer *t = env->transfer;
		disp_transfer(rt->disp, id, t->session_id, rt_str(t->agent_id), rt_str(t->to_skill),
		              t->customer_consented, rt_str(t->reason), now);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_AGENT_CLOSE: {
		const Surge__V1__AgentClose *c = env->agent_close;
		disp_agent_close(rt->disp, id, c->session_id, rt_str(c->agent_id), rt_str(c->notes),
		                 now);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_AGENT_HEARTBEAT:
		disp_agent_heartbeat(rt->disp, id, rt_str(env->agent_heartbeat->agent_id), now);
		break;
	case SURGE__V1__ENVELOPE__BODY_HISTORY_REQUEST:
		rt_history_request(rt, gw, env->history_request);
		break;
	default:
		break;
	}
}

/*
 * A frame's envelopes are a burst: the dispatcher starts loading the session
 * slots and agents they name all at once, before they are processed one by
 * one (at scale each would otherwise wait for its own cache misses).
 */
static void rt_prefetch_envelopes(struct rt_router *rt, const Surge__V1__Frame *frame)
{
	struct disp_req reqs[WIRE_MAX_ENVELOPES];
	uint32_t n = 0;

	for (size_t i = 0; i < frame->n_msgs && n < WIRE_MAX_ENVELOPES; i++) {
		const Surge__V1__Envelope *env = frame->msgs[i];
		struct disp_req *r = &reqs[n++];

		*r = (struct disp_req){.kind = DISP_REQ_OTHER};
		switch (env->body_case) {
		case SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE:
			r->kind = DISP_REQ_CUSTOMER_MESSAGE;
			r->session_id = env->customer_message->session_id;
			break;
		case SURGE__V1__ENVELOPE__BODY_SESSION_END:
			r->kind = DISP_REQ_SESSION_END;
			r->session_id = env->session_end->session_id;
			break;
		case SURGE__V1__ENVELOPE__BODY_AGENT_MESSAGE:
			r->kind = DISP_REQ_AGENT_MESSAGE;
			r->session_id = env->agent_message->session_id;
			r->agent_id = rt_str(env->agent_message->agent_id);
			break;
		case SURGE__V1__ENVELOPE__BODY_AGENT_CLOSE:
			r->kind = DISP_REQ_AGENT_CLOSE;
			r->session_id = env->agent_close->session_id;
			r->agent_id = rt_str(env->agent_close->agent_id);
			break;
		case SURGE__V1__ENVELOPE__BODY_TRANSFER:
			r->kind = DISP_REQ_TRANSFER;
			r->session_id = env->transfer->session_id;
			r->agent_id = rt_str(env->transfer->agent_id);
			break;
		case SURGE__V1__ENVELOPE__BODY_AGENT_HEARTBEAT:
			r->agent_id = rt_str(env->agent_heartbeat->agent_id);
			break;
		default:
			n--; /* nothing named that is worth loading ahead */
			break;
		}
	}
	disp_prefetch(rt->disp, reqs, n);
}

void rt_rx_datagram(struct rt_router *rt, const struct net_rx *rx)
{
	Surge__V1__Packet *packet;
	Surge__V1__Frame *frame;
	enum wire_drop_reason reason;
	struct rt_gateway *gw;
	const struct wire_gateway_conf *conf;
	uint64_t epoch_before;

	rt->rx_datagrams++;
	if (wire_decode(&rt->rx_arena, rx->payload, rx->payload_len, &packet, &frame, &reason) <
	    0) {
		rt->wire_drops[reason]++;
		return;
	}
	gw = rt_gw_find(rt, packet->gateway_id);
	if (unlikely(gw == NULL)) {
		rt->wire_drops[WIRE_DROP_UNKNOWN_GATEWAY]++;
		return;
	}
	conf = gw->conf;
	if (unlikely(conf->allow_mask && (rx->peer.ip & conf->allow_mask) != conf->allow_net)) {
		rt->wire_drops[WIRE_DROP_ADDRESS_REFUSED]++;
		return;
	}
	if (unlikely(!conf->plaintext)) {
		rt->wire_drops[WIRE_DROP_NOT_PLAINTEXT]++;
		return;
	}
	if (unlikely(frame->n_msgs > rt->cfg->envelopes_per_frame)) {
		rt->wire_drops[WIRE_DROP_TOO_MANY_ENVELOPES]++;
		return;
	}

	if (unlikely(!gw->rx.started && frame->seq > WIRE_WINDOW)) {
		/*
		 * Far into its sequence and we know nothing of it (restarted
		 * without a store): take it up where it is rather than refuse
		 * it as too far ahead for ever.
		 */
		wire_rx_seq_resume(&gw->rx, frame->epoch, frame->seq - 1);
		rt->gw_resyncs++;
	}
	epoch_before = gw->rx.started ? gw->rx.epoch : 0;
	switch (wire_rx_seq_accept(&gw->rx, frame->epoch, frame->seq)) {
	case WIRE_SEQ_NEW:
		if (gw->rx.epoch != epoch_before) {
			/* a new instance of the gateway knows nothing of our numbering */
			gw->tx_seq = 0;
			gw->peer_acked = 0;
			rt_store_gw_restart(gw);
		}
		break;
	case WIRE_SEQ_ACK_ONLY:
		goto out_seen;
	case WIRE_SEQ_DUPLICATE:
		rt->wire_drops[WIRE_DROP_DUPLICATE]++;
		gw->ack_owed = true;
		rt_mark_dirty(rt, gw);
		goto out_seen;
	case WIRE_SEQ_STALE:
		rt->wire_drops[WIRE_DROP_STALE]++;
		return;
	case WIRE_SEQ_OLD_EPOCH:
		rt->wire_drops[WIRE_DROP_OLD_EPOCH]++;
		return;
	case WIRE_SEQ_TOO_FAR:
		rt->wire_drops[WIRE_DROP_TOO_FAR]++;
		return;
	}

	/* Only an authenticated, in-window frame may move where we answer. */
	gw->peer = rx->peer;
	gw->peer_known = true;
	gw->rx_frames++;
	gw->rx_envelopes += frame->n_msgs;
	gw->ack_owed = true;
	rt_mark_dirty(rt, gw);
	rt_prefetch_envelopes(rt, frame);
	for (size_t i = 0; i < frame->n_msgs; i++)
		rt_envelope_in(rt, gw, frame->msgs[i]);
	rt_store_frame_done(rt, gw);
out_seen:
	if (frame->ack > gw->peer_acked && frame->ack <= gw->tx_seq)
		gw->peer_acked = frame->ack;
	gw->last_seen_ms = rt->now_ms;
	gw->down = false;
}

void rt_rx_frame(struct rt_router *rt, struct rte_mbuf *m)
{
	struct net_rx rx;
	enum net_verdict verdict;
	uint8_t *data = rte_pktmbuf_mtod(m, uint8_t *);

	if (unlikely(m->nb_segs != 1)) {
		rt->rt_drops[RT_DROP_MULTI_SEGMENT]++;
		rte_pktmbuf_free(m);
		return;
	}
	verdict = net_classify(data, rte_pktmbuf_data_len(m), &rt->self, &rx);
	if (likely(verdict == NET_UDP)) {
		rt_rx_datagram(rt, &rx);
		rte_pktmbuf_free(m);
		return;
	}
	if (verdict == NET_ARP_REPLY || verdict == NET_ICMP_REPLY) {
		if (verdict == NET_ARP_REPLY)
			rt->arp_replies++;
		else
			rt->icmp_replies++;
		m->data_len = (uint16_t)rx.reply_len;
		m->pkt_len = (uint32_t)rx.reply_len;
		rt_tx_enqueue(rt, m);
		return;
	}
	rt->net_drops[rx.drop < NET_DROP_MAX ? rx.drop : NET_DROP_NONE]++;
	rte_pktmbuf_free(m);
}

void rt_end_burst(struct rt_router *rt)
{
	/*
	 * Gateways with answers get them now, with the ack piggybacked. A bare
	 * ack waits for rt_tick (delayed ack): at a steady load the next answer
	 * usually carries it, which halves the frames on the wire.
	 */
	for (uint32_t i = 0; i < rt->nb_dirty; i++) {
		struct rt_gateway *gw = &rt->gws[rt->dirty[i]];

		if (gw->nb_pending)
			rt_flush_gw(rt, gw);
		gw->dirty = false;
	}
	rt->nb_dirty = 0;
	rt_tx_drain(rt);
	wire_arena_reset(&rt->rx_arena);
	wire_arena_reset(&rt->tx_arena);
}

void rt_set_time(struct rt_router *rt, uint64_t now_ms)
{
	if (now_ms > rt->now_ms)
		rt->now_ms = now_ms;
}

void rt_tick(struct rt_router *rt)
{
	uint32_t timeout = rt->cfg->gateway_timeout_ms;

	rt_store_poll(rt);
	rt_admin_serve(rt);
	for (uint32_t i = 0; i < rt->nb_gws; i++) {
		struct rt_gateway *gw = &rt->gws[i];

		if (gw->ack_owed)
			rt_flush_gw(rt, gw);
		if (!gw->peer_known || gw->down || rt->now_ms - gw->last_seen_ms < timeout)
			continue;
		gw->down = true;
		disp_gateway_down(rt->disp, gw->conf->id, rt->now_ms);
	}
	disp_tick(rt->disp, rt->now_ms);
	rt_end_burst(rt);
}

/* ---- set-up -------------------------------------------------------------- */

int rt_init(struct rt_router *rt, const struct ctl_config *cfg, struct net_port *port,
            struct net_sock *sock)
{
	struct disp_conf dc = {
	        .skills = cfg->skills,
	        .nb_skills = cfg->nb_skills,
	        .max_agents = cfg->max_agents,
	        .max_sessions = cfg->max_sessions,
	        .backlog_max = cfg->backlog_max,
	        .text_pool_bytes = cfg->text_pool_mb << 20,
	        .agent_text_max = cfg->agent_text_max,
	        .customer_text_max = cfg->customer_text_max,
	        .heartbeat_timeout_ms = cfg->heartbeat_timeout_ms,
	        .emit = rt_emit,
	        .emit_ctx = rt,
	};
	struct timespec ts;
	uint32_t size = 16;
	void *rx_mem, *tx_mem;
	int ret = -ENOMEM;

	if ((port == NULL) == (sock == NULL))
		return -EINVAL;
	memset(rt, 0, sizeof(*rt));
	rt->cfg = cfg;
	rt->port = port;
	rt->sock = sock;
	rt->io = port ? &rt_dpdk_io : &rt_sock_io;
	if (port)
		memcpy(rt->self.mac, port->mac, sizeof(rt->self.mac));
	rt->self.ip = cfg->ip;
	rt->self.port = cfg->udp_port;
	rt->frame_budget = (size_t)cfg->mtu - 28u - RT_FRAME_OVERHEAD;
	clock_gettime(CLOCK_REALTIME, &ts);
	rt->tx_epoch = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	rt->now_ms = rt->tx_epoch / 1000000u;
	dc.seed = rt->tx_epoch;

	while (size < 2 * cfg->nb_gateways)
		size <<= 1;
	rt->gws = calloc(cfg->nb_gateways, sizeof(*rt->gws));
	rt->gw_index = calloc(size, sizeof(*rt->gw_index));
	rt->dirty = calloc(cfg->nb_gateways, sizeof(*rt->dirty));
	if (!rt->gws || !rt->gw_index || !rt->dirty)
		goto out_free_tables;
	rt->gw_index_mask = size - 1;
	rt->nb_gws = cfg->nb_gateways;
	for (uint32_t i = 0; i < cfg->nb_gateways; i++) {
		uint32_t h = rt_gw_hash(cfg->gateways[i].id) & rt->gw_index_mask;

		rt->gws[i].conf = &cfg->gateways[i];
		while (rt->gw_index[h])
			h = (h + 1) & rt->gw_index_mask;
		rt->gw_index[h] = i + 1;
	}

	rx_mem = malloc(RT_RX_ARENA_BYTES);
	if (!rx_mem)
		goto out_free_tables;
	tx_mem = malloc(RT_TX_ARENA_BYTES);
	if (!tx_mem)
		goto out_free_rx;
	wire_arena_init(&rt->rx_arena, rx_mem, RT_RX_ARENA_BYTES);
	wire_arena_init(&rt->tx_arena, tx_mem, RT_TX_ARENA_BYTES);

	ret = rt_store_open(rt);
	if (ret)
		goto out_free_tx;
	dc.journal = rt_store_journal(rt);
	dc.journal_ctx = rt;
	rt->disp = disp_create(&dc);
	if (!rt->disp) {
		ret = -errno;
		goto out_close_store;
	}
	ret = rt_store_start(rt);
	if (ret)
		goto out_destroy_disp;
	return 0;

out_destroy_disp:
	disp_destroy(rt->disp);
out_close_store:
	rt_store_close(rt);
out_free_tx:
	free(tx_mem);
out_free_rx:
	free(rx_mem);
out_free_tables:
	free(rt->gws);
	free(rt->gw_index);
	free(rt->dirty);
	memset(rt, 0, sizeof(*rt));
	return ret;
}

void rt_fini(struct rt_router *rt)
{
	/* The store first: what the engine journalled is written and synced. */
	rt_store_close(rt);
	disp_destroy(rt->disp);
	free(rt->rx_arena.base);
	free(rt->tx_arena.base);
	free(rt->gws);
	free(rt->gw_index);
	free(rt->dirty);
	memset(rt, 0, sizeof(*rt));
}

/* ---- counters ------------------------------------------------------------ */

static const char *const rt_sla_names[DISP_SLA_MAX] = {
        [DISP_SLA_FIRST_RESPONSE] = "first_response", [DISP_SLA_REPLY_OVERDUE] = "reply_overdue",
        [DISP_SLA_HOLD_OVERDUE] = "hold_overdue",     [DISP_SLA_QUEUE_WAIT] = "queue_wait",
        [DISP_SLA_BREAK_OVERRUN] = "break_overrun",   [DISP_SLA_IDLE_NO_INFLOW] = "idle_no_inflow",
};

/* One skill group's figures, labelled by its name. */
static void rt_dump_skill(const struct rt_router *rt, const char *name, FILE *out)
{
	struct disp_skill_figures f;

	if (disp_skill_figures_get(rt->disp, rt_str(name), &f, rt->now_ms) < 0)
		return;
	fprintf(out, "surge_skill_offered_total{skill=\"%s\"} %" PRIu64 "\n", name, f.offered);
	fprintf(out, "surge_skill_answered_total{skill=\"%s\"} %" PRIu64 "\n", name, f.answered);
	fprintf(out, "surge_skill_answered_in_target_total{skill=\"%s\"} %" PRIu64 "\n", name,
	        f.answered_in_target);
	fprintf(out, "surge_skill_served_total{skill=\"%s\"} %" PRIu64 "\n", name, f.served);
	fprintf(out, "surge_skill_abandoned_total{skill=\"%s\"} %" PRIu64 "\n", name, f.abandoned);
	fprintf(out, "surge_skill_left_message_total{skill=\"%s\"} %" PRIu64 "\n", name,
	        f.left_message);
	fprintf(out, "surge_skill_transferred_out_total{skill=\"%s\"} %" PRIu64 "\n", name,
	        f.transferred_out);
	fprintf(out, "surge_skill_complaints_total{skill=\"%s\"} %" PRIu64 "\n", name,
	        f.complaints);
	for (int k = 1; k < DISP_SLA_MAX; k++)
		fprintf(out, "surge_skill_sla_alerts_total{skill=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
		        name, rt_sla_names[k], f.sla_alerts[k]);
	fprintf(out, "surge_skill_waiting{skill=\"%s\"} %u\n", name, f.waiting);
	fprintf(out, "surge_skill_longest_wait_ms{skill=\"%s\"} %" PRIu64 "\n", name,
	        f.longest_wait_ms);
	fprintf(out, "surge_skill_agents_online{skill=\"%s\"} %u\n", name, f.agents_online);
	fprintf(out, "surge_skill_agents_ready{skill=\"%s\"} %u\n", name, f.agents_ready);
	fprintf(out, "surge_skill_agents_on_break{skill=\"%s\"} %u\n", name, f.agents_on_break);
}

void rt_dump_stats(const struct rt_router *rt, FILE *out)
{
	struct disp_stats ds;

	fprintf(out, "# surge-router counters\n");
	fprintf(out, "surge_rx_datagrams_total %" PRIu64 "\n", rt->rx_datagrams);
	fprintf(out, "surge_arp_replies_total %" PRIu64 "\n", rt->arp_replies);
	fprintf(out, "surge_icmp_replies_total %" PRIu64 "\n", rt->icmp_replies);
	fprintf(out, "surge_gateway_resyncs_total %" PRIu64 "\n", rt->gw_resyncs);
	fprintf(out, "surge_admin_erasures_total %" PRIu64 "\n", rt->admin_erasures);
	for (int i = 1; i < NET_DROP_MAX; i++)
		fprintf(out, "surge_drops_total{layer=\"net\",reason=\"%s\"} %" PRIu64 "\n",
		        net_drop_reason_name((enum net_drop_reason)i), rt->net_drops[i]);
	for (int i = 1; i < WIRE_DROP_MAX; i++)
		fprintf(out, "surge_drops_total{layer=\"wire\",reason=\"%s\"} %" PRIu64 "\n",
		        wire_drop_reason_name((enum wire_drop_reason)i), rt->wire_drops[i]);
	for (int i = 0; i < RT_DROP_MAX; i++)
		fprintf(out, "surge_drops_total{layer=\"router\",reason=\"%s\"} %" PRIu64 "\n",
		        rt_drop_names[i], rt->rt_drops[i]);
	fprintf(out, "surge_port_tx_dropped_total %" PRIu64 "\n",
	        rt->port ? rt->port->tx_dropped : rt->sock->tx_dropped);
	for (uint32_t i = 0; i < rt->nb_gws; i++) {
		const struct rt_gateway *gw = &rt->gws[i];
		const char *name = gw->conf->name;

		fprintf(out, "surge_gateway_rx_frames_total{gateway=\"%s\"} %" PRIu64 "\n", name,
		        gw->rx_frames);
		fprintf(out, "surge_gateway_rx_envelopes_total{gateway=\"%s\"} %" PRIu64 "\n", name,
		        gw->rx_envelopes);
		fprintf(out, "surge_gateway_tx_frames_total{gateway=\"%s\"} %" PRIu64 "\n", name,
		        gw->tx_frames);
		fprintf(out, "surge_gateway_tx_envelopes_total{gateway=\"%s\"} %" PRIu64 "\n", name,
		        gw->tx_envelopes);
		fprintf(out, "surge_gateway_up{gateway=\"%s\"} %d\n", name,
		        gw->peer_known && !gw->down);
	}
	disp_stats_get(rt->disp, &ds);
	fprintf(out, "surge_sessions_opened_total %" PRIu64 "\n", ds.sessions_opened);
	fprintf(out, "surge_sessions_queued_total %" PRIu64 "\n", ds.sessions_queued);
	fprintf(out, "surge_sessions_assigned_total %" PRIu64 "\n", ds.sessions_assigned);
	fprintf(out, "surge_sessions_closed_total %" PRIu64 "\n", ds.sessions_closed);
	fprintf(out, "surge_sessions_abandoned_total %" PRIu64 "\n", ds.sessions_abandoned);
	fprintf(out, "surge_sessions_busy_total %" PRIu64 "\n", ds.sessions_busy);
	fprintf(out, "surge_delivered_total{side=\"agent\"} %" PRIu64 "\n", ds.delivered_to_agent);
	fprintf(out, "surge_delivered_total{side=\"customer\"} %" PRIu64 "\n",
	        ds.delivered_to_customer);
	for (int i = 1; i < DISP_ERR_MAX; i++)
		fprintf(out, "surge_request_errors_total{code=\"%d\"} %" PRIu64 "\n", i,
		        ds.errors[i]);
	fprintf(out, "surge_agents_ready %u\n", ds.agents_ready);
	fprintf(out, "surge_sessions_open %u\n", ds.sessions_open);
	fprintf(out, "surge_sessions_waiting %u\n", ds.sessions_waiting);
	for (uint32_t i = 0; i < rt->cfg->nb_skills; i++)
		rt_dump_skill(rt, rt->cfg->skills[i].name, out);
	rt_store_dump(rt, out);
	fprintf(out, "# end\n");
	fflush(out);
}
