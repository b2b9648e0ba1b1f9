/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of router/wire: arena, decoding, plaintext encoding, sequencing.
 * Randomized tests print their seed; set SURGE_SEED to replay one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wire.h"

#define ARENA_SIZE (256u * 1024u)
#define N_KINDS    19u

static uint64_t test_seed;

/* ---- helpers -------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	/* splitmix64: deterministic across platforms, enough for tests */
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
	return n ? rng_next() % n : 0;
}

struct arena_fixture {
	struct wire_arena arena;
	uint8_t mem[ARENA_SIZE];
};

static int setup_arena(void **state)
{
	struct arena_fixture *fx = malloc(sizeof(*fx));

	if (!fx)
		return -1;
	wire_arena_init(&fx->arena, fx->mem, sizeof(fx->mem));
	*state = fx;
	return 0;
}

static int teardown_arena(void **state)
{
	free(*state);
	return 0;
}

/* Serialize a Packet the reference way (protobuf-c packing a Packet struct). */
static size_t ref_pack_packet(uint32_t gateway_id, const Surge__V1__Frame *frame, uint8_t **out)
{
	Surge__V1__Packet pkt = SURGE__V1__PACKET__INIT;
	size_t flen = surge__v1__frame__get_packed_size(frame);
	uint8_t *fbuf = malloc(flen ? flen : 1);
	size_t n;

	assert_non_null(fbuf);
	assert_int_equal(surge__v1__frame__pack(frame, fbuf), flen);
	pkt.gateway_id = gateway_id;
	pkt.frame.data = fbuf;
	pkt.frame.len = flen;
	n = surge__v1__packet__get_packed_size(&pkt);
	*out = malloc(n ? n : 1);
	assert_non_null(*out);
	assert_int_equal(surge__v1__packet__pack(&pkt, *out), n);
	free(fbuf);
	return n;
}

static size_t pack_raw_packet(const Surge__V1__Packet *pkt, uint8_t **out)
{
	size_t n = surge__v1__packet__get_packed_size(pkt);

	*out = malloc(n ? n : 1);
	assert_non_null(*out);
	assert_int_equal(surge__v1__packet__pack(pkt, *out), n);
	return n;
}

/* A decode either succeeds with both results, or fails with a reason and neither. */
static int decode_checked(struct wire_arena *arena, const uint8_t *buf, size_t len,
                          Surge__V1__Frame **frame_out, enum wire_drop_reason *reason)
{
	Surge__V1__Packet *pkt = (void *)1;
	Surge__V1__Frame *frame = (void *)1;
	int rc = wire_decode(arena, buf, len, &pkt, &frame, reason);

	if (rc == 0) {
		assert_non_null(pkt);
		assert_non_null(frame);
		assert_int_equal(*reason, WIRE_DROP_NONE);
		assert_true(frame->n_msgs <= WIRE_MAX_ENVELOPES);
	} else {
		assert_int_equal(rc, -EBADMSG);
		assert_null(pkt);
		assert_null(frame);
		assert_true(*reason > WIRE_DROP_NONE && *reason < WIRE_DROP_MAX);
	}
	assert_true(arena->used <= arena->cap);
	if (frame_out)
		*frame_out = rc == 0 ? frame : NULL;
	return rc;
}

/*
 * Fails unless every field of m (recursively) differs from its default, so
 * that the round trip below really covers every field of the contract.
 */
static void assert_all_fields_set(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	unsigned i;

	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *member = (const char *)m + f->offset;
		const char *q = (const char *)m + f->quantifier_offset;

		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			if (*(const uint32_t *)q != f->id)
				continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			ProtobufCMessage *const *arr;
			size_t n = *(const size_t *)q, k;

			if (n == 0)
				fail_msg("%s.%s: repeated field empty", d->name, f->name);
			assert_int_equal(f->type, PROTOBUF_C_TYPE_MESSAGE);
			arr = *(ProtobufCMessage *const *const *)member;
			for (k = 0; k < n; k++)
				assert_all_fields_set(arr[k]);
			continue;
		}
		switch (f->type) {
		case PROTOBUF_C_TYPE_UINT32:
		case PROTOBUF_C_TYPE_ENUM:
			if (*(const uint32_t *)member == 0)
				fail_msg("%s.%s: not set", d->name, f->name);
			break;
		case PROTOBUF_C_TYPE_UINT64:
			if (*(const uint64_t *)member == 0)
				fail_msg("%s.%s: not set", d->name, f->name);
			break;
		case PROTOBUF_C_TYPE_BOOL:
			if (!*(const protobuf_c_boolean *)member)
				fail_msg("%s.%s: not set", d->name, f->name);
			break;
		case PROTOBUF_C_TYPE_STRING: {
			const char *s = *(char *const *)member;

			if (!s || !*s)
				fail_msg("%s.%s: not set", d->name, f->name);
			break;
		}
		case PROTOBUF_C_TYPE_BYTES:
			if (((const ProtobufCBinaryData *)member)->len == 0)
				fail_msg("%s.%s: not set", d->name, f->name);
			break;
		case PROTOBUF_C_TYPE_MESSAGE: {
			const ProtobufCMessage *sub = *(ProtobufCMessage *const *)member;

			if (!sub)
				fail_msg("%s.%s: not set", d->name, f->name);
			assert_all_fields_set(sub);
			break;
		}
		default:
			fail_msg("%s.%s: type %d not handled by the test", d->name, f->name,
			         (int)f->type);
		}
	}
}

/* ---- a frame carrying every envelope kind ---------------------------------- */

struct all_kinds {
	Surge__V1__SessionOpen session_open;
	Surge__V1__CustomerMessage customer_message;
	Surge__V1__SessionEnd session_end;
	Surge__V1__SkillLevel skills[2];
	Surge__V1__SkillLevel *skill_ptrs[2];
	Surge__V1__AgentLogin agent_login;
	Surge__V1__AgentState agent_state;
	Surge__V1__AgentMessage agent_message;
	Surge__V1__Transfer transfer;
	Surge__V1__AgentClose agent_close;
	Surge__V1__AgentHeartbeat agent_heartbeat;
	Surge__V1__HistoryRequest history_request;
	Surge__V1__SessionQueued session_queued;
	Surge__V1__PastSession past[3];
	Surge__V1__PastSession *past_ptrs[3];
	Surge__V1__Deliver backlog[2];
	Surge__V1__Deliver *backlog_ptrs[2];
	Surge__V1__Assigned assigned;
	Surge__V1__Deliver deliver;
	Surge__V1__SessionClosed session_closed;
	Surge__V1__AgentStateResult agent_state_result;
	Surge__V1__SlaAlert sla_alert;
	Surge__V1__Deliver hist[2];
	Surge__V1__Deliver *hist_ptrs[2];
	Surge__V1__HistoryReply history_reply;
	Surge__V1__Busy busy;
	Surge__V1__Error error;
	Surge__V1__Envelope env[N_KINDS];
	Surge__V1__Envelope *env_ptrs[N_KINDS];
	Surge__V1__Frame frame;
};

static void fill_deliver(Surge__V1__Deliver *d, uint64_t k)
{
	surge__v1__deliver__init(d);
	d->session_id = 9000 + k;
	d->msg_id = 100 + k;
	d->sender = k % 2 ? SURGE__V1__SIDE__AGENT : SURGE__V1__SIDE__CUSTOMER;
	d->text = k % 2 ? "您好，请问有什么可以帮您？" : "my parcel has not arrived";
	d->attachment_ref = "upload://img/42.png";
	d->sent_unix_ms = UINT64_C(1700000000000) + k;
	d->agent_id = "agent-小二-7";
}

static void build_all_kinds(struct all_kinds *a)
{
	unsigned i;

	surge__v1__session_open__init(&a->session_open);
	a->session_open.open_ref = UINT64_C(0xfedcba9876543210);
	a->session_open.customer_id = "cust-001";
	a->session_open.tenant = "shop-天猫";
	a->session_open.skill = "会员问题";
	a->session_open.channel = SURGE__V1__CHANNEL__WECHAT;
	a->session_open.priority = 3;
	a->session_open.language = "zh-CN";
	a->session_open.question = "where is my order?";
	a->session_open.bot_transcript = "bot: hello\nbot: please describe";

	surge__v1__customer_message__init(&a->customer_message);
	a->customer_message.session_id = 77;
	a->customer_message.msg_id = UINT64_MAX;
	a->customer_message.text = "人工客服";
	a->customer_message.attachment_ref = "upload://a";

	surge__v1__session_end__init(&a->session_end);
	a->session_end.session_id = 78;
	a->session_end.rating = SURGE__V1__RATING__UNSATISFIED;
	a->session_end.complaint = 1;
	a->session_end.comment = "too slow";

	for (i = 0; i < 2; i++) {
		surge__v1__skill_level__init(&a->skills[i]);
		a->skills[i].skill = i ? "refunds" : "会员问题";
		a->skills[i].level = 1 + 4 * i;
		a->skill_ptrs[i] = &a->skills[i];
	}
	surge__v1__agent_login__init(&a->agent_login);
	a->agent_login.agent_id = "agent-1";
	a->agent_login.n_skills = 2;
	a->agent_login.skills = a->skill_ptrs;
	a->agent_login.max_sessions = 6;
	a->agent_login.tenant = "shop-a";

	surge__v1__agent_state__init(&a->agent_state);
	a->agent_state.agent_id = "agent-2";
	a->agent_state.state = SURGE__V1__AGENT_STATE_KIND__BREAK_REQUESTED;

	surge__v1__agent_message__init(&a->agent_message);
	a->agent_message.session_id = 79;
	a->agent_message.agent_id = "agent-3";
	a->agent_message.msg_id = 80;
	a->agent_message.text = "请稍等";
	a->agent_message.attachment_ref = "upload://b";
	a->agent_message.hold = 1;

	surge__v1__transfer__init(&a->transfer);
	a->transfer.session_id = 81;
	a->transfer.agent_id = "agent-4";
	a->transfer.to_skill = "experts";
	a->transfer.customer_consented = 1;
	a->transfer.reason = "needs an expert";

	surge__v1__agent_close__init(&a->agent_close);
	a->agent_close.session_id = 82;
	a->agent_close.agent_id = "agent-5";
	a->agent_close.notes = "refund issued";

	surge__v1__agent_heartbeat__init(&a->agent_heartbeat);
	a->agent_heartbeat.agent_id = "agent-6";

	surge__v1__history_request__init(&a->history_request);
	a->history_request.agent_id = "agent-7";
	a->history_request.session_id = 83;
	a->history_request.past_session_id = 84;

	surge__v1__session_queued__init(&a->session_queued);
	a->session_queued.open_ref = 85;
	a->session_queued.session_id = 86;
	a->session_queued.position = 12;
	a->session_queued.eta_ms = 45000;

	for (i = 0; i < 3; i++) {
		Surge__V1__PastSession *p = &a->past[i];

		surge__v1__past_session__init(p);
		p->session_id = 500 + i;
		p->opened_unix_ms = UINT64_C(1690000000000) + i;
		p->skill = "会员问题";
		p->agent_id = "agent-old";
		p->rating = SURGE__V1__RATING__SATISFIED;
		p->notes = "solved";
		p->question = "old question";
		p->closed = SURGE__V1__CLOSE_REASON__CUSTOMER_ENDED;
		a->past_ptrs[i] = p;
	}
	for (i = 0; i < 2; i++) {
		fill_deliver(&a->backlog[i], i);
		a->backlog_ptrs[i] = &a->backlog[i];
		fill_deliver(&a->hist[i], 10 + i);
		a->hist_ptrs[i] = &a->hist[i];
	}
	surge__v1__assigned__init(&a->assigned);
	a->assigned.session_id = 87;
	a->assigned.agent_id = "agent-8";
	a->assigned.customer_id = "cust-002";
	a->assigned.skill = "refunds";
	a->assigned.channel = SURGE__V1__CHANNEL__EMAIL;
	a->assigned.question = "refund?";
	a->assigned.bot_transcript = "bot: transferring";
	a->assigned.n_history = 3;
	a->assigned.history = a->past_ptrs;
	a->assigned.n_backlog = 2;
	a->assigned.backlog = a->backlog_ptrs;
	a->assigned.waited_ms = 12345;
	a->assigned.transferred = 1;

	fill_deliver(&a->deliver, 20);

	surge__v1__session_closed__init(&a->session_closed);
	a->session_closed.session_id = 88;
	a->session_closed.reason = SURGE__V1__CLOSE_REASON__REROUTED;
	a->session_closed.agent_id = "agent-9";

	surge__v1__agent_state_result__init(&a->agent_state_result);
	a->agent_state_result.agent_id = "agent-10";
	a->agent_state_result.state = SURGE__V1__AGENT_STATE_KIND__ON_BREAK;
	a->agent_state_result.granted = 1;
	a->agent_state_result.reason = "within the 20% cap";

	surge__v1__sla_alert__init(&a->sla_alert);
	a->sla_alert.session_id = 89;
	a->sla_alert.agent_id = "agent-11";
	a->sla_alert.kind = SURGE__V1__SLA_KIND__IDLE_NO_INFLOW;
	a->sla_alert.elapsed_ms = 900000;
	a->sla_alert.skill = "refunds";

	surge__v1__history_reply__init(&a->history_reply);
	a->history_reply.agent_id = "agent-12";
	a->history_reply.session_id = 90;
	a->history_reply.past_session_id = 91;
	a->history_reply.n_messages = 2;
	a->history_reply.messages = a->hist_ptrs;

	surge__v1__busy__init(&a->busy);
	a->busy.open_ref = 92;
	a->busy.retry_after_ms = 30000;
	a->busy.leave_message = 1;
	a->busy.reason = "out of hours";

	surge__v1__error__init(&a->error);
	a->error.code = SURGE__V1__ERROR_CODE__STORE_FAILED;
	a->error.detail = "disk full";
	a->error.ref = 93;

	for (i = 0; i < N_KINDS; i++) {
		surge__v1__envelope__init(&a->env[i]);
		a->env_ptrs[i] = &a->env[i];
	}
#define SET_ENV(i, kase, member)                                                                   \
	do {                                                                                       \
		a->env[i].body_case = SURGE__V1__ENVELOPE__BODY_##kase;                            \
		a->env[i].member = &a->member;                                                     \
	} while (0)
	SET_ENV(0, SESSION_OPEN, session_open);
	SET_ENV(1, CUSTOMER_MESSAGE, customer_message);
	SET_ENV(2, SESSION_END, session_end);
	SET_ENV(3, AGENT_LOGIN, agent_login);
	SET_ENV(4, AGENT_STATE, agent_state);
	SET_ENV(5, AGENT_MESSAGE, agent_message);
	SET_ENV(6, TRANSFER, transfer);
	SET_ENV(7, AGENT_CLOSE, agent_close);
	SET_ENV(8, AGENT_HEARTBEAT, agent_heartbeat);
	SET_ENV(9, HISTORY_REQUEST, history_request);
	SET_ENV(10, SESSION_QUEUED, session_queued);
	SET_ENV(11, ASSIGNED, assigned);
	SET_ENV(12, DELIVER, deliver);
	SET_ENV(13, SESSION_CLOSED, session_closed);
	SET_ENV(14, AGENT_STATE_RESULT, agent_state_result);
	SET_ENV(15, SLA_ALERT, sla_alert);
	SET_ENV(16, HISTORY_REPLY, history_reply);
	SET_ENV(17, BUSY, busy);
	SET_ENV(18, ERROR, error);
#undef SET_ENV

	surge__v1__frame__init(&a->frame);
	a->frame.epoch = UINT64_C(0x1234567890);
	a->frame.seq = 41;
	a->frame.ack = 17;
	a->frame.n_msgs = N_KINDS;
	a->frame.msgs = a->env_ptrs;
	a->frame.sent_ns = UINT64_C(1700000000123456789);
}

/* ---- field-by-field comparison --------------------------------------------- */

#define EQ_N(f) assert_int_equal(x->f, y->f)
#define EQ_S(f) assert_string_equal(x->f, y->f)

static void cmp_deliver(const Surge__V1__Deliver *x, const Surge__V1__Deliver *y)
{
	EQ_N(session_id);
	EQ_N(msg_id);
	EQ_N(sender);
	EQ_S(text);
	EQ_S(attachment_ref);
	EQ_N(sent_unix_ms);
	EQ_S(agent_id);
}

static void cmp_past(const Surge__V1__PastSession *x, const Surge__V1__PastSession *y)
{
	EQ_N(session_id);
	EQ_N(opened_unix_ms);
	EQ_S(skill);
	EQ_S(agent_id);
	EQ_N(rating);
	EQ_S(notes);
	EQ_S(question);
	EQ_N(closed);
}

static void cmp_envelope(const Surge__V1__Envelope *e, const Surge__V1__Envelope *g)
{
	size_t k;

	assert_int_equal(e->body_case, g->body_case);
	switch (e->body_case) {
	case SURGE__V1__ENVELOPE__BODY_SESSION_OPEN: {
		const Surge__V1__SessionOpen *x = e->session_open, *y = g->session_open;

		EQ_N(open_ref);
		EQ_S(customer_id);
		EQ_S(tenant);
		EQ_S(skill);
		EQ_N(channel);
		EQ_N(priority);
		EQ_S(language);
		EQ_S(question);
		EQ_S(bot_transcript);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE: {
		const Surge__V1__CustomerMessage *x = e->customer_message, *y = g->customer_message;

		EQ_N(session_id);
		EQ_N(msg_id);
		EQ_S(text);
		EQ_S(attachment_ref);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_SESSION_END: {
		const Surge__V1__SessionEnd *x = e->session_end, *y = g->session_end;

		EQ_N(session_id);
		EQ_N(rating);
		EQ_N(complaint);
		EQ_S(comment);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_AGENT_LOGIN: {
		const Surge__V1__AgentLogin *x = e->agent_login, *y = g->agent_login;

		EQ_S(agent_id);
		EQ_N(n_skills);
		for (k = 0; k < x->n_skills; k++) {
			assert_string_equal(x->skills[k]->skill, y->skills[k]->skill);
			assert_int_equal(x->skills[k]->level, y->skills[k]->level);
		}
		EQ_N(max_sessions);
		EQ_S(tenant);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_AGENT_STATE: {
		const Surge__V1__AgentState *x = e->agent_state, *y = g->agent_state;

		EQ_S(agent_id);
		EQ_N(state);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_AGENT_MESSAGE: {
		const Surge__V1__AgentMessage *x = e->agent_message, *y = g->agent_message;

		EQ_N(session_id);
		EQ_S(agent_id);
		EQ_N(msg_id);
		EQ_S(text);
		EQ_S(attachment_ref);
		EQ_N(hold);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_TRANSFER: {
		const Surge__V1__Transfer *x = e->transfer, *y = g->transfer;

		EQ_N(session_id);
		EQ_S(agent_id);
		EQ_S(to_skill);
		EQ_N(customer_consented);
		EQ_S(reason);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_AGENT_CLOSE: {
		const Surge__V1__AgentClose *x = e->agent_close, *y = g->agent_close;

		EQ_N(session_id);
		EQ_S(agent_id);
		EQ_S(notes);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_AGENT_HEARTBEAT: {
		const Surge__V1__AgentHeartbeat *x = e->agent_heartbeat, *y = g->agent_heartbeat;

		EQ_S(agent_id);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_HISTORY_REQUEST: {
		const Surge__V1__HistoryRequest *x = e->history_request, *y = g->history_request;

		EQ_S(agent_id);
		EQ_N(session_id);
		EQ_N(past_session_id);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED: {
		const Surge__V1__SessionQueued *x = e->session_queued, *y = g->session_queued;

		EQ_N(open_ref);
		EQ_N(session_id);
		EQ_N(position);
		EQ_N(eta_ms);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_ASSIGNED: {
		const Surge__V1__Assigned *x = e->assigned, *y = g->assigned;

		EQ_N(session_id);
		EQ_S(agent_id);
		EQ_S(customer_id);
		EQ_S(skill);
		EQ_N(channel);
		EQ_S(question);
		EQ_S(bot_transcript);
		EQ_N(n_history);
		for (k = 0; k < x->n_history; k++)
			cmp_past(x->history[k], y->history[k]);
		EQ_N(n_backlog);
		for (k = 0; k < x->n_backlog; k++)
			cmp_deliver(x->backlog[k], y->backlog[k]);
		EQ_N(waited_ms);
		EQ_N(transferred);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_DELIVER:
		cmp_deliver(e->deliver, g->deliver);
		break;
	case SURGE__V1__ENVELOPE__BODY_SESSION_CLOSED: {
		const Surge__V1__SessionClosed *x = e->session_closed, *y = g->session_closed;

		EQ_N(session_id);
		EQ_N(reason);
		EQ_S(agent_id);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT: {
		const Surge__V1__AgentStateResult *x = e->agent_state_result,
		                                  *y = g->agent_state_result;

		EQ_S(agent_id);
		EQ_N(state);
		EQ_N(granted);
		EQ_S(reason);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_SLA_ALERT: {
		const Surge__V1__SlaAlert *x = e->sla_alert, *y = g->sla_alert;

		EQ_N(session_id);
		EQ_S(agent_id);
		EQ_N(kind);
		EQ_N(elapsed_ms);
		EQ_S(skill);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_HISTORY_REPLY: {
		const Surge__V1__HistoryReply *x = e->history_reply, *y = g->history_reply;

		EQ_S(agent_id);
		EQ_N(session_id);
		EQ_N(past_session_id);
		EQ_N(n_messages);
		for (k = 0; k < x->n_messages; k++)
			cmp_deliver(x->messages[k], y->messages[k]);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_BUSY: {
		const Surge__V1__Busy *x = e->busy, *y = g->busy;

		EQ_N(open_ref);
		EQ_N(retry_after_ms);
		EQ_N(leave_message);
		EQ_S(reason);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_ERROR: {
		const Surge__V1__Error *x = e->error, *y = g->error;

		EQ_N(code);
		EQ_S(detail);
		EQ_N(ref);
		break;
	}
	default:
		fail_msg("unexpected body case %d", (int)e->body_case);
	}
}

#undef EQ_N
#undef EQ_S

/* ---- arena ---------------------------------------------------------------- */

static void test_arena_alignment_and_accounting(void **state)
{
	static uint8_t mem[1024 + 16];
	struct wire_arena arena;
	size_t sizes[] = {1, 3, 16, 17, 0, 100, 5};
	size_t i;

	(void)state;
	/* an unaligned base still yields aligned allocations */
	wire_arena_init(&arena, mem + 3, 1024);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *p = wire_arena_alloc(&arena, sizes[i]);

		assert_non_null(p);
		assert_int_equal((uintptr_t)p % 16, 0);
		assert_true(p >= mem + 3 && p + sizes[i] <= mem + 3 + 1024);
		memset(p, 0xa5, sizes[i]);
	}
	assert_true(arena.used <= arena.cap);
	assert_int_equal(arena.high_water, arena.used);
	assert_int_equal(arena.failures, 0);

	/* running out: NULL and counted, earlier allocations untouched */
	assert_null(wire_arena_alloc(&arena, 2048));
	assert_null(wire_arena_alloc(&arena, SIZE_MAX));
	assert_int_equal(arena.failures, 2);

	/* reset forgets allocations but keeps the high-water mark */
	{
		size_t hw = arena.high_water;

		wire_arena_reset(&arena);
		assert_int_equal(arena.used, 0);
		assert_int_equal(arena.high_water, hw);
		assert_non_null(wire_arena_alloc(&arena, 8));
		assert_int_equal(arena.high_water, hw);
	}

	/* the whole capacity is usable when the base is aligned */
	{
		static _Alignas(16) uint8_t aligned[256];

		wire_arena_init(&arena, aligned, sizeof(aligned));
		assert_non_null(wire_arena_alloc(&arena, 256));
		assert_null(wire_arena_alloc(&arena, 1));
		assert_int_equal(arena.high_water, 256);
	}
}

static void test_arena_strndup(void **state)
{
	static uint8_t mem[64];
	struct wire_arena arena;
	char *s;

	(void)state;
	wire_arena_init(&arena, mem, sizeof(mem));
	s = wire_arena_strndup(&arena, "hello, world", 5);
	assert_non_null(s);
	assert_string_equal(s, "hello");
	s = wire_arena_strndup(&arena, NULL, 0);
	assert_non_null(s);
	assert_string_equal(s, "");
	assert_null(wire_arena_strndup(&arena, "x", 100));
	assert_true(arena.failures >= 1);
}

static void test_arena_is_protobuf_allocator(void **state)
{
	struct arena_fixture *fx = *state;
	Surge__V1__Error err = SURGE__V1__ERROR__INIT;
	Surge__V1__Error *got;
	uint8_t buf[64];
	size_t n;

	err.code = SURGE__V1__ERROR_CODE__MALFORMED;
	err.detail = "bad";
	n = surge__v1__error__pack(&err, buf);
	got = surge__v1__error__unpack(&fx->arena.pbc, n, buf);
	assert_non_null(got);
	assert_string_equal(got->detail, "bad");
	/* the message lives inside the arena */
	assert_true((uint8_t *)got >= fx->arena.base &&
	            (uint8_t *)got < fx->arena.base + fx->arena.used);
	/* freeing through protobuf-c is harmless: memory goes back on reset only */
	surge__v1__error__free_unpacked(got, &fx->arena.pbc);
	assert_true(fx->arena.used > 0);
}

/* ---- decode --------------------------------------------------------------- */

static void test_roundtrip_every_envelope_kind(void **state)
{
	struct arena_fixture *fx = *state;
	struct all_kinds *a = calloc(1, sizeof(*a));
	const ProtobufCMessageDescriptor *ed = &surge__v1__envelope__descriptor;
	Surge__V1__Packet *pkt;
	Surge__V1__Frame *got;
	enum wire_drop_reason reason;
	uint8_t *ref, out[8192];
	size_t n, i, k;
	int rc;

	assert_non_null(a);
	build_all_kinds(a);
	assert_all_fields_set(&a->frame.base);
	/* one envelope of each kind the contract has, no more, no less */
	assert_int_equal(ed->n_fields, N_KINDS);
	for (k = 0; k < ed->n_fields; k++) {
		bool found = false;

		for (i = 0; i < N_KINDS; i++)
			found |= a->env[i].body_case == ed->fields[k].id;
		if (!found)
			fail_msg("envelope kind %s missing from the test", ed->fields[k].name);
	}

	n = ref_pack_packet(4242, &a->frame, &ref);
	rc = wire_decode(&fx->arena, ref, n, &pkt, &got, &reason);
	assert_int_equal(rc, 0);
	assert_int_equal(reason, WIRE_DROP_NONE);
	assert_int_equal(pkt->gateway_id, 4242);
	assert_int_equal(pkt->sealed.len, 0);
	assert_int_equal(got->epoch, a->frame.epoch);
	assert_int_equal(got->seq, a->frame.seq);
	assert_int_equal(got->ack, a->frame.ack);
	assert_int_equal(got->sent_ns, a->frame.sent_ns);
	assert_int_equal(got->n_msgs, N_KINDS);
	for (i = 0; i < N_KINDS; i++)
		cmp_envelope(a->frame.msgs[i], got->msgs[i]);
	assert_true(fx->arena.high_water > 0 && fx->arena.high_water <= fx->arena.cap);

	/* our encoder writes the very same bytes, from the sent or the decoded frame */
	rc = wire_encode_plain(4242, &a->frame, out, sizeof(out));
	assert_int_equal(rc, (int)n);
	assert_memory_equal(out, ref, n);
	rc = wire_encode_plain(4242, got, out, sizeof(out));
	assert_int_equal(rc, (int)n);
	assert_memory_equal(out, ref, n);

	free(ref);
	free(a);
}

static void test_decode_truncated_prefixes(void **state)
{
	struct arena_fixture *fx = *state;
	struct all_kinds *a = calloc(1, sizeof(*a));
	Surge__V1__Packet inner = SURGE__V1__PACKET__INIT;
	uint8_t *ref, *fbytes, *wrapped;
	size_t n, flen, len;
	int ok = 0;

	assert_non_null(a);
	build_all_kinds(a);
	n = ref_pack_packet(7, &a->frame, &ref);
	for (len = 0; len <= n; len++) {
		/* a copy of exactly len bytes, so ASan sees any read past the end */
		uint8_t *p = malloc(len ? len : 1);

		assert_non_null(p);
		memcpy(p, ref, len);
		wire_arena_reset(&fx->arena);
		if (decode_checked(&fx->arena, p, len, NULL, &(enum wire_drop_reason){0}) == 0)
			ok++;
		free(p);
	}
	/* the frame is the last field, so only the whole packet decodes */
	assert_int_equal(ok, 1);

	/* a well-formed Packet around every prefix of the Frame */
	flen = surge__v1__frame__get_packed_size(&a->frame);
	fbytes = malloc(flen);
	assert_non_null(fbytes);
	surge__v1__frame__pack(&a->frame, fbytes);
	for (len = 1; len < flen; len++) {
		enum wire_drop_reason reason;
		size_t wn;
		int rc;

		inner.gateway_id = 7;
		inner.frame.data = fbytes;
		inner.frame.len = len;
		wn = pack_raw_packet(&inner, &wrapped);
		wire_arena_reset(&fx->arena);
		rc = decode_checked(&fx->arena, wrapped, wn, NULL, &reason);
		if (rc)
			assert_int_equal(reason, WIRE_DROP_FRAME_UNDECODABLE);
		free(wrapped);
	}
	free(fbytes);
	free(ref);
	free(a);
}

static void test_decode_garbage(void **state)
{
	struct arena_fixture *fx = *state;
	unsigned iter;

	rng_state = test_seed ^ 0x6a;
	for (iter = 0; iter < 20000; iter++) {
		size_t len = rng_below(iter % 10 ? 64 : 1500), i;
		uint8_t *p = malloc(len ? len : 1);

		assert_non_null(p);
		for (i = 0; i < len; i++)
			p[i] = (uint8_t)rng_next();
		/* bias some inputs towards a plausible start: a frame field */
		if (len > 2 && iter % 3 == 0) {
			p[0] = 0x12;
			p[1] = (uint8_t)((len - 2) & 0x7f);
		}
		wire_arena_reset(&fx->arena);
		decode_checked(&fx->arena, p, len, NULL, &(enum wire_drop_reason){0});
		free(p);
	}
}

static void test_decode_oversized_is_arena_full(void **state)
{
	static uint8_t mem[4096];
	struct wire_arena arena;
	Surge__V1__Frame frame = SURGE__V1__FRAME__INIT;
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT, *envp = &env;
	Surge__V1__CustomerMessage msg = SURGE__V1__CUSTOMER_MESSAGE__INIT;
	char *text = malloc(8193);
	enum wire_drop_reason reason;
	uint8_t *ref;
	size_t n;

	(void)state;
	assert_non_null(text);
	memset(text, 'x', 8192);
	text[8192] = '\0';
	msg.session_id = 1;
	msg.text = text;
	env.body_case = SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE;
	env.customer_message = &msg;
	frame.epoch = 1;
	frame.seq = 1;
	frame.n_msgs = 1;
	frame.msgs = &envp;
	n = ref_pack_packet(1, &frame, &ref);
	assert_true(n > sizeof(mem));

	wire_arena_init(&arena, mem, sizeof(mem));
	assert_int_equal(decode_checked(&arena, ref, n, NULL, &reason), -EBADMSG);
	assert_int_equal(reason, WIRE_DROP_ARENA_FULL);
	assert_true(arena.failures > 0);
	assert_true(arena.high_water <= arena.cap);

	/* and the frame alone fits in a larger arena, but not its decoding: still ARENA_FULL */
	{
		static uint8_t mem2[8300];

		wire_arena_init(&arena, mem2, sizeof(mem2));
		assert_int_equal(decode_checked(&arena, ref, n, NULL, &reason), -EBADMSG);
		assert_int_equal(reason, WIRE_DROP_ARENA_FULL);
	}
	free(ref);
	free(text);
}

static void test_decode_wrong_types(void **state)
{
	struct arena_fixture *fx = *state;
	struct all_kinds *a = calloc(1, sizeof(*a));
	enum wire_drop_reason reason;
	uint8_t buf[4096];
	size_t n;

	assert_non_null(a);
	build_all_kinds(a);

	/* a serialized Envelope is not a Packet (field 1 is a message, not a varint) */
	n = surge__v1__envelope__pack(&a->env[0], buf);
	wire_arena_reset(&fx->arena);
	assert_int_equal(decode_checked(&fx->arena, buf, n, NULL, &reason), -EBADMSG);
	assert_int_equal(reason, WIRE_DROP_PACKET_UNDECODABLE);

	/* nor is an Error (field 3 is a varint, Packet.nonce is bytes) */
	n = surge__v1__error__pack(&a->error, buf);
	wire_arena_reset(&fx->arena);
	assert_int_equal(decode_checked(&fx->arena, buf, n, NULL, &reason), -EBADMSG);
	assert_int_equal(reason, WIRE_DROP_PACKET_UNDECODABLE);

	/* a Packet whose frame bytes are a Packet (field 2 is bytes, Frame.seq a varint) */
	{
		Surge__V1__Packet inner = SURGE__V1__PACKET__INIT, outer = SURGE__V1__PACKET__INIT;
		uint8_t fbytes[4096], ibytes[4096];

		inner.gateway_id = 7;
		inner.frame.len = surge__v1__frame__pack(&a->frame, fbytes);
		inner.frame.data = fbytes;
		outer.gateway_id = 7;
		outer.frame.len = surge__v1__packet__pack(&inner, ibytes);
		outer.frame.data = ibytes;
		n = surge__v1__packet__pack(&outer, buf);
		wire_arena_reset(&fx->arena);
		assert_int_equal(decode_checked(&fx->arena, buf, n, NULL, &reason), -EBADMSG);
		assert_int_equal(reason, WIRE_DROP_FRAME_UNDECODABLE);
	}

	/* hand-made wire-type mismatches */
	{
		static const struct {
			const char *what;
			uint8_t bytes[8];
			size_t len;
		} cases[] = {
		        {"gateway_id as length-delimited", {0x0a, 0x01, 0x00}, 3},
		        {"frame as varint", {0x10, 0x05}, 2},
		        {"frame as fixed32", {0x15, 1, 2, 3, 4}, 5},
		        {"key_id as fixed64", {0x29, 1, 2, 3, 4, 5, 6, 7}, 8},
		        {"group start", {0x0b, 0x0c}, 2},
		        {"field number 0", {0x00, 0x01}, 2},
		        {"length past the end", {0x12, 0x7f, 0x08, 0x01}, 4},
		        {"unterminated varint", {0x08, 0xff, 0xff, 0xff}, 4},
		};
		size_t i;

		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			wire_arena_reset(&fx->arena);
			if (decode_checked(&fx->arena, cases[i].bytes, cases[i].len, NULL,
			                   &reason) == 0)
				fail_msg("%s: decoded", cases[i].what);
			assert_int_equal(reason, WIRE_DROP_PACKET_UNDECODABLE);
		}
	}

	/* field numbers protobuf-c would accept but cannot write back: 0 and > 2^29 - 1 */
	{
		static const struct {
			const char *what;
			uint8_t bytes[16];
			size_t len;
			enum wire_drop_reason reason;
		} cases[] = {
		        {"packet field 0 (overlong tag)",
		         {0x81, 0x00, 1, 2, 3, 4, 5, 6, 7, 8},
		         10,
		         WIRE_DROP_PACKET_UNDECODABLE},
		        {"frame field 0 (overlong tag)",
		         {0x12, 0x04, 0x80, 0x00, 0x08, 0x01},
		         6,
		         WIRE_DROP_FRAME_UNDECODABLE},
		        {"frame field 2^29 + 1",
		         {0x12, 0x06, 0x88, 0x80, 0x80, 0x80, 0x10, 0x01},
		         8,
		         WIRE_DROP_FRAME_UNDECODABLE},
		        /* an empty envelope carrying field 0 */
		        {"envelope field 0",
		         {0x12, 0x05, 0x22, 0x03, 0x80, 0x00, 0x01},
		         7,
		         WIRE_DROP_FRAME_UNDECODABLE},
		};
		size_t i;

		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			wire_arena_reset(&fx->arena);
			if (decode_checked(&fx->arena, cases[i].bytes, cases[i].len, NULL,
			                   &reason) == 0)
				fail_msg("%s: decoded", cases[i].what);
			assert_int_equal(reason, cases[i].reason);
		}
		/* the largest valid field number is an unknown field like any other */
		{
			static const uint8_t ok[] = {0x12, 0x06, 0xf8, 0xff,
			                             0xff, 0xff, 0x0f, 0x01};
			Surge__V1__Frame *got;

			wire_arena_reset(&fx->arena);
			assert_int_equal(decode_checked(&fx->arena, ok, sizeof(ok), &got, &reason),
			                 0);
		}
	}

	/* inside the frame: Frame.msgs (field 4) as a varint */
	{
		static const uint8_t frame_bytes[] = {0x08, 0x01, 0x20, 0x05};
		Surge__V1__Packet p = SURGE__V1__PACKET__INIT;

		p.frame.data = (uint8_t *)frame_bytes;
		p.frame.len = sizeof(frame_bytes);
		n = surge__v1__packet__pack(&p, buf);
		wire_arena_reset(&fx->arena);
		assert_int_equal(decode_checked(&fx->arena, buf, n, NULL, &reason), -EBADMSG);
		assert_int_equal(reason, WIRE_DROP_FRAME_UNDECODABLE);
	}
	free(a);
}

static void test_decode_envelope_limit(void **state)
{
	struct arena_fixture *fx = *state;
	Surge__V1__Envelope env[WIRE_MAX_ENVELOPES + 1], *envp[WIRE_MAX_ENVELOPES + 1];
	Surge__V1__AgentHeartbeat hb = SURGE__V1__AGENT_HEARTBEAT__INIT;
	Surge__V1__Frame frame = SURGE__V1__FRAME__INIT, *got;
	enum wire_drop_reason reason;
	uint8_t out[4096];
	size_t i;
	int n;

	hb.agent_id = "agent-1";
	for (i = 0; i <= WIRE_MAX_ENVELOPES; i++) {
		surge__v1__envelope__init(&env[i]);
		env[i].body_case = SURGE__V1__ENVELOPE__BODY_AGENT_HEARTBEAT;
		env[i].agent_heartbeat = &hb;
		envp[i] = &env[i];
	}
	frame.epoch = 3;
	frame.seq = 1;
	frame.msgs = envp;

	frame.n_msgs = WIRE_MAX_ENVELOPES;
	n = wire_encode_plain(9, &frame, out, sizeof(out));
	assert_true(n > 0);
	wire_arena_reset(&fx->arena);
	assert_int_equal(decode_checked(&fx->arena, out, (size_t)n, &got, &reason), 0);
	assert_int_equal(got->n_msgs, WIRE_MAX_ENVELOPES);

	frame.n_msgs = WIRE_MAX_ENVELOPES + 1;
	n = wire_encode_plain(9, &frame, out, sizeof(out));
	assert_true(n > 0);
	wire_arena_reset(&fx->arena);
	assert_int_equal(decode_checked(&fx->arena, out, (size_t)n, NULL, &reason), -EBADMSG);
	assert_int_equal(reason, WIRE_DROP_TOO_MANY_ENVELOPES);

	/* empty envelopes count too, and an empty one alone is the caller's to answer */
	for (i = 0; i <= WIRE_MAX_ENVELOPES; i++)
		env[i].body_case = SURGE__V1__ENVELOPE__BODY__NOT_SET;
	n = wire_encode_plain(9, &frame, out, sizeof(out));
	wire_arena_reset(&fx->arena);
	assert_int_equal(decode_checked(&fx->arena, out, (size_t)n, NULL, &reason), -EBADMSG);
	assert_int_equal(reason, WIRE_DROP_TOO_MANY_ENVELOPES);
	frame.n_msgs = 1;
	n = wire_encode_plain(9, &frame, out, sizeof(out));
	wire_arena_reset(&fx->arena);
	assert_int_equal(decode_checked(&fx->arena, out, (size_t)n, &got, &reason), 0);
	assert_int_equal(got->n_msgs, 1);
	assert_int_equal(got->msgs[0]->body_case, SURGE__V1__ENVELOPE__BODY__NOT_SET);
}

static void test_decode_sealed_and_empty(void **state)
{
	struct arena_fixture *fx = *state;
	Surge__V1__Packet p = SURGE__V1__PACKET__INIT;
	enum wire_drop_reason reason;
	uint8_t nonce[12] = {1, 2, 3}, sealed[48] = {9}, *buf;
	size_t n;

	p.gateway_id = 5;
	p.nonce.data = nonce;
	p.nonce.len = sizeof(nonce);
	p.sealed.data = sealed;
	p.sealed.len = sizeof(sealed);
	p.key_id = 1;
	n = pack_raw_packet(&p, &buf);
	wire_arena_reset(&fx->arena);
	assert_int_equal(decode_checked(&fx->arena, buf, n, NULL, &reason), -EBADMSG);
	assert_int_equal(reason, WIRE_DROP_SEALED_UNSUPPORTED);
	free(buf);

	/* zero bytes: a valid, empty Packet */
	wire_arena_reset(&fx->arena);
	assert_int_equal(decode_checked(&fx->arena, (const uint8_t *)"", 0, NULL, &reason),
	                 -EBADMSG);
	assert_int_equal(reason, WIRE_DROP_NO_FRAME);

	/* a gateway id and nothing else */
	{
		static const uint8_t only_id[] = {0x08, 0x05};

		wire_arena_reset(&fx->arena);
		assert_int_equal(
		        decode_checked(&fx->arena, only_id, sizeof(only_id), NULL, &reason),
		        -EBADMSG);
		assert_int_equal(reason, WIRE_DROP_NO_FRAME);
	}
	/* an explicitly empty frame field */
	{
		static const uint8_t empty_frame[] = {0x08, 0x05, 0x12, 0x00};

		wire_arena_reset(&fx->arena);
		assert_int_equal(
		        decode_checked(&fx->arena, empty_frame, sizeof(empty_frame), NULL, &reason),
		        -EBADMSG);
		assert_int_equal(reason, WIRE_DROP_NO_FRAME);
	}
}

static void test_drop_reason_names(void **state)
{
	unsigned r, s;

	(void)state;
	assert_string_equal(wire_drop_reason_name(WIRE_DROP_PACKET_UNDECODABLE),
	                    "packet_undecodable");
	assert_string_equal(wire_drop_reason_name(WIRE_DROP_ARENA_FULL), "arena_full");
	for (r = 0; r < WIRE_DROP_MAX; r++) {
		const char *n = wire_drop_reason_name((enum wire_drop_reason)r);

		assert_non_null(n);
		assert_true(strlen(n) > 0);
		assert_int_equal(strspn(n, "abcdefghijklmnopqrstuvwxyz_"), strlen(n));
		for (s = 0; s < r; s++)
			assert_string_not_equal(n, wire_drop_reason_name((enum wire_drop_reason)s));
	}
	assert_non_null(wire_drop_reason_name(WIRE_DROP_MAX));
	assert_non_null(wire_drop_reason_name((enum wire_drop_reason) - 1));
}

/* ---- encode --------------------------------------------------------------- */

static void test_encode_matches_reference(void **state)
{
	static const uint32_t ids[] = {0, 1, 127, 128, 300, 16384, UINT32_MAX};
	/* text lengths chosen so the frame length crosses varint boundaries */
	static const size_t text_lens[] = {0, 1, 100, 115, 116, 117, 118, 16360, 16370, 16380};
	struct arena_fixture *fx = *state;
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT, *envp = &env;
	Surge__V1__CustomerMessage msg = SURGE__V1__CUSTOMER_MESSAGE__INIT;
	Surge__V1__Frame frame = SURGE__V1__FRAME__INIT, *got;
	enum wire_drop_reason reason;
	static uint8_t out[20000];
	char *text = malloc(16381);
	size_t i, j;

	assert_non_null(text);
	env.body_case = SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE;
	env.customer_message = &msg;
	frame.msgs = &envp;
	frame.n_msgs = 1;
	frame.epoch = 2;
	frame.seq = 9;
	msg.session_id = 1;
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		for (j = 0; j < sizeof(text_lens) / sizeof(text_lens[0]); j++) {
			size_t flen, n;
			uint8_t *ref;
			int rc;

			memset(text, 'a' + (int)j, text_lens[j]);
			text[text_lens[j]] = '\0';
			msg.text = text;
			flen = surge__v1__frame__get_packed_size(&frame);
			n = ref_pack_packet(ids[i], &frame, &ref);
			assert_int_equal(wire_packet_overhead(ids[i], flen) + flen, n);

			rc = wire_encode_plain(ids[i], &frame, out, sizeof(out));
			assert_int_equal(rc, (int)n);
			assert_memory_equal(out, ref, n);

			/* exact fit works, one byte less does not and writes nothing past cap */
			memset(out, 0xee, sizeof(out));
			assert_int_equal(wire_encode_plain(ids[i], &frame, out, n), (int)n);
			assert_int_equal(out[n], 0xee);
			assert_int_equal(wire_encode_plain(ids[i], &frame, out, n - 1), -EMSGSIZE);
			assert_int_equal(wire_encode_plain(ids[i], &frame, out, 0), -EMSGSIZE);

			wire_arena_reset(&fx->arena);
			assert_int_equal(decode_checked(&fx->arena, ref, n, &got, &reason), 0);
			assert_int_equal(got->n_msgs, 1);
			assert_string_equal(got->msgs[0]->customer_message->text, text);
			free(ref);
		}
	}

	/* an all-default frame packs to nothing, exactly as the reference does */
	{
		Surge__V1__Frame empty = SURGE__V1__FRAME__INIT;
		uint8_t *ref;
		size_t n = ref_pack_packet(77, &empty, &ref);

		assert_int_equal(wire_encode_plain(77, &empty, out, sizeof(out)), (int)n);
		assert_memory_equal(out, ref, n);
		assert_int_equal(wire_packet_overhead(77, 0), n);
		assert_int_equal(wire_encode_plain(0, &empty, out, 0), 0);
		free(ref);
	}
	assert_int_equal(wire_packet_overhead(0, 0), 0);
	assert_int_equal(wire_packet_overhead(1, 127), 4);
	assert_int_equal(wire_packet_overhead(1, 128), 5);
	assert_int_equal(wire_packet_overhead(UINT32_MAX, 1400), 9);
	free(text);
}

/* ---- sequencing ----------------------------------------------------------- */

static void test_seq_in_order_and_duplicates(void **state)
{
	struct wire_rx_seq rx;
	uint64_t s;

	(void)state;
	memset(&rx, 0, sizeof(rx));
	/* the first frame ever sets the epoch, whatever it is */
	assert_int_equal(wire_rx_seq_accept(&rx, 1000, 1), WIRE_SEQ_NEW);
	assert_true(rx.started);
	assert_int_equal(rx.epoch, 1000);
	assert_int_equal(rx.ack, 1);
	for (s = 2; s <= 10000; s++)
		assert_int_equal(wire_rx_seq_accept(&rx, 1000, s), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 10000);
	assert_int_equal(wire_rx_seq_accept(&rx, 1000, 10000), WIRE_SEQ_DUPLICATE);
	assert_int_equal(wire_rx_seq_accept(&rx, 1000, 5), WIRE_SEQ_STALE);
	assert_int_equal(wire_rx_seq_accept(&rx, 1000, 10000 - WIRE_WINDOW + 1),
	                 WIRE_SEQ_DUPLICATE);
	assert_int_equal(wire_rx_seq_accept(&rx, 1000, 10000 - WIRE_WINDOW), WIRE_SEQ_STALE);
	assert_int_equal(rx.ack, 10000);
}

static void test_seq_gap_then_fill(void **state)
{
	struct wire_rx_seq rx;
	uint64_t s;

	(void)state;
	memset(&rx, 0, sizeof(rx));
	assert_int_equal(wire_rx_seq_accept(&rx, 1, 1), WIRE_SEQ_NEW);
	/* 2 is lost; 3..200 are processed at once but the ack waits */
	for (s = 3; s <= 200; s++)
		assert_int_equal(wire_rx_seq_accept(&rx, 1, s), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 1);
	assert_int_equal(wire_rx_seq_accept(&rx, 1, 150), WIRE_SEQ_DUPLICATE);
	/* the retransmitted 2 fills the gap: the ack jumps over the whole run */
	assert_int_equal(wire_rx_seq_accept(&rx, 1, 2), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 200);
	assert_int_equal(wire_rx_seq_accept(&rx, 1, 2), WIRE_SEQ_DUPLICATE);
	/* seqs that map to the bits the ack just passed are new again */
	assert_int_equal(wire_rx_seq_accept(&rx, 1, 3 + WIRE_WINDOW), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 200);
	/* a gap that spans whole bitmap words */
	for (s = 202; s <= 1000; s++)
		assert_int_equal(wire_rx_seq_accept(&rx, 1, s), WIRE_SEQ_NEW);
	assert_int_equal(wire_rx_seq_accept(&rx, 1, 201), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 1000);
	/* every bit the ack passed was forgotten: the next lap of the window is all new */
	for (s = 1001; s <= 1000 + 2 * WIRE_WINDOW; s++) {
		if (s == 3 + WIRE_WINDOW)
			continue;
		assert_int_equal(wire_rx_seq_accept(&rx, 1, s), WIRE_SEQ_NEW);
		/* 3 + WIRE_WINDOW was processed early: the ack takes it along */
		assert_int_equal(rx.ack, s == 2 + WIRE_WINDOW ? s + 1 : s);
	}
}

static void test_seq_window_edges(void **state)
{
	struct wire_rx_seq rx;

	(void)state;
	memset(&rx, 0, sizeof(rx));
	assert_int_equal(wire_rx_seq_accept(&rx, 5, 1), WIRE_SEQ_NEW);
	assert_int_equal(wire_rx_seq_accept(&rx, 5, 1 + WIRE_WINDOW + 1), WIRE_SEQ_TOO_FAR);
	assert_int_equal(wire_rx_seq_accept(&rx, 5, UINT64_MAX), WIRE_SEQ_TOO_FAR);
	assert_int_equal(wire_rx_seq_accept(&rx, 5, 1 + WIRE_WINDOW), WIRE_SEQ_NEW);
	assert_int_equal(wire_rx_seq_accept(&rx, 5, 1 + WIRE_WINDOW), WIRE_SEQ_DUPLICATE);
	assert_int_equal(rx.ack, 1);
	/* refused frames change nothing */
	assert_int_equal(wire_rx_seq_accept(&rx, 5, 2), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 2);
}

static void test_seq_epochs_and_ack_only(void **state)
{
	struct wire_rx_seq rx;

	(void)state;
	memset(&rx, 0, sizeof(rx));
	/* an ack-only first frame starts the epoch and marks nothing */
	assert_int_equal(wire_rx_seq_accept(&rx, 7, 0), WIRE_SEQ_ACK_ONLY);
	assert_true(rx.started);
	assert_int_equal(rx.epoch, 7);
	assert_int_equal(rx.ack, 0);
	assert_int_equal(wire_rx_seq_accept(&rx, 7, 0), WIRE_SEQ_ACK_ONLY);
	assert_int_equal(wire_rx_seq_accept(&rx, 7, 1), WIRE_SEQ_NEW);
	assert_int_equal(wire_rx_seq_accept(&rx, 7, 2), WIRE_SEQ_NEW);
	assert_int_equal(wire_rx_seq_accept(&rx, 7, 5), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 2);

	/* a lower epoch is refused, even ack-only, and changes nothing */
	assert_int_equal(wire_rx_seq_accept(&rx, 6, 3), WIRE_SEQ_OLD_EPOCH);
	assert_int_equal(wire_rx_seq_accept(&rx, 6, 0), WIRE_SEQ_OLD_EPOCH);
	assert_int_equal(rx.epoch, 7);
	assert_int_equal(rx.ack, 2);

	/* a higher epoch (the gateway restarted) starts a new sequence */
	assert_int_equal(wire_rx_seq_accept(&rx, 8, 1), WIRE_SEQ_NEW);
	assert_int_equal(rx.epoch, 8);
	assert_int_equal(rx.ack, 1);
	/* seq 5 of the old epoch left no trace */
	assert_int_equal(wire_rx_seq_accept(&rx, 8, 5), WIRE_SEQ_NEW);
	assert_int_equal(wire_rx_seq_accept(&rx, 7, 2), WIRE_SEQ_OLD_EPOCH);
	/* an ack-only frame of a new epoch resets too */
	assert_int_equal(wire_rx_seq_accept(&rx, 9, 0), WIRE_SEQ_ACK_ONLY);
	assert_int_equal(rx.epoch, 9);
	assert_int_equal(rx.ack, 0);
	assert_int_equal(wire_rx_seq_accept(&rx, 9, 1), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 1);
}

/* Reference model: the set of processed seqs of the current epoch, kept plainly. */
#define MODEL_MAX_SEQ (1u << 21)

struct seq_model {
	bool started;
	uint64_t epoch;
	uint64_t ack;
	uint32_t generation;
	uint32_t done[MODEL_MAX_SEQ]; /* done[seq] == generation: processed in this epoch */
};

static enum wire_seq_verdict model_accept(struct seq_model *m, uint64_t epoch, uint64_t seq)
{
	if (!m->started || epoch > m->epoch) {
		m->started = true;
		m->epoch = epoch;
		m->ack = 0;
		m->generation++;
	} else if (epoch < m->epoch) {
		return WIRE_SEQ_OLD_EPOCH;
	}
	if (seq == 0)
		return WIRE_SEQ_ACK_ONLY;
	if (seq <= m->ack)
		return m->ack - seq < WIRE_WINDOW ? WIRE_SEQ_DUPLICATE : WIRE_SEQ_STALE;
	if (seq > m->ack + WIRE_WINDOW)
		return WIRE_SEQ_TOO_FAR;
	if (m->done[seq] == m->generation)
		return WIRE_SEQ_DUPLICATE;
	m->done[seq] = m->generation;
	while (m->ack + 1 < MODEL_MAX_SEQ && m->done[m->ack + 1] == m->generation)
		m->ack++;
	return WIRE_SEQ_NEW;
}

static void test_seq_matches_model(void **state)
{
	/* static: too big for the stack, and no leak when an assertion jumps out */
	static struct seq_model m;
	struct wire_rx_seq rx;
	uint64_t epoch = 100;
	unsigned i, counts[WIRE_SEQ_TOO_FAR + 1] = {0};

	(void)state;
	memset(&rx, 0, sizeof(rx));
	rng_state = test_seed ^ 0x5e9;
	for (i = 0; i < 200000; i++) {
		uint64_t r = rng_below(100000), e = epoch, seq, base = m.ack;
		enum wire_seq_verdict want, got;

		/* keep the model's seqs inside its array: a new epoch before it fills */
		if (base > MODEL_MAX_SEQ - 4 * WIRE_WINDOW)
			epoch++, e = epoch;
		if (r < 5) {
			e = ++epoch;
		} else if (r < 500) {
			e = epoch - 1 - rng_below(3);
		}
		r = rng_below(100);
		if (r < 3)
			seq = 0;
		else if (r < 45)
			seq = base + 1 + rng_below(3); /* in order, or nearly */
		else if (r < 60)
			seq = base + 1 + rng_below(64); /* reordered, with gaps */
		else if (r < 75)
			seq = base + 1 + rng_below(WIRE_WINDOW + 64); /* up to past the window */
		else if (r < 90)
			seq = base > 64 ? base - rng_below(64) : rng_below(base + 1); /* replays */
		else
			seq = base > 2 * WIRE_WINDOW ? base - rng_below(2 * WIRE_WINDOW)
			                             : rng_below(base + 1);
		if (e > epoch)
			epoch = e;
		want = model_accept(&m, e, seq);
		got = wire_rx_seq_accept(&rx, e, seq);
		if (want != got)
			fail_msg("op %u: epoch %" PRIu64 " seq %" PRIu64 ": got %d, model says %d "
			         "(seed %" PRIu64 ")",
			         i, e, seq, (int)got, (int)want, test_seed);
		assert_int_equal(rx.epoch, m.epoch);
		assert_int_equal(rx.ack, m.ack);
		counts[got]++;
	}
	/* the generator must have reached every verdict */
	for (i = 0; i <= WIRE_SEQ_TOO_FAR; i++)
		if (!counts[i])
			fail_msg("verdict %u never produced (seed %" PRIu64 ")", i, test_seed);
}

/* A restart resumes a gateway's numbering where the store says it was. */
static void test_seq_resume(void **state)
{
	struct wire_rx_seq rx = {0};

	(void)state;
	wire_rx_seq_resume(&rx, 77, 50000);
	assert_int_equal(wire_rx_seq_accept(&rx, 77, 49990), WIRE_SEQ_DUPLICATE);
	assert_int_equal(wire_rx_seq_accept(&rx, 77, 50000), WIRE_SEQ_DUPLICATE);
	assert_int_equal(wire_rx_seq_accept(&rx, 77, 50002), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 50000);
	assert_int_equal(wire_rx_seq_accept(&rx, 77, 50001), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 50002);
	/* A new epoch of the gateway starts over, as always. */
	assert_int_equal(wire_rx_seq_accept(&rx, 78, 1), WIRE_SEQ_NEW);
	assert_int_equal(rx.ack, 1);
}

int main(void)
{
	const char *env = getenv("SURGE_SEED");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_seq_resume),
	        cmocka_unit_test(test_arena_alignment_and_accounting),
	        cmocka_unit_test(test_arena_strndup),
	        cmocka_unit_test_setup_teardown(test_arena_is_protobuf_allocator, setup_arena,
	                                        teardown_arena),
	        cmocka_unit_test_setup_teardown(test_roundtrip_every_envelope_kind, setup_arena,
	                                        teardown_arena),
	        cmocka_unit_test_setup_teardown(test_decode_truncated_prefixes, setup_arena,
	                                        teardown_arena),
	        cmocka_unit_test_setup_teardown(test_decode_garbage, setup_arena, teardown_arena),
	        cmocka_unit_test(test_decode_oversized_is_arena_full),
	        cmocka_unit_test_setup_teardown(test_decode_wrong_types, setup_arena,
	                                        teardown_arena),
	        cmocka_unit_test_setup_teardown(test_decode_envelope_limit, setup_arena,
	                                        teardown_arena),
	        cmocka_unit_test_setup_teardown(test_decode_sealed_and_empty, setup_arena,
	                                        teardown_arena),
	        cmocka_unit_test(test_drop_reason_names),
	        cmocka_unit_test_setup_teardown(test_encode_matches_reference, setup_arena,
	                                        teardown_arena),
	        cmocka_unit_test(test_seq_in_order_and_duplicates),
	        cmocka_unit_test(test_seq_gap_then_fill),
	        cmocka_unit_test(test_seq_window_edges),
	        cmocka_unit_test(test_seq_epochs_and_ack_only),
	        cmocka_unit_test(test_seq_matches_model),
	};

	test_seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	printf("test_wire: seed %" PRIu64 " (set SURGE_SEED to replay)\n", test_seed);
	fflush(stdout);
	return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
