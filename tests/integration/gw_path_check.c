/* SPDX-License-Identifier: MIT */
/*
 * gw_path_check: a small deterministic conversation against a running
 * router, through one customer gateway and one agent gateway:
 *
 *   3 agents (capacity 2, skill general) log in; 8 sessions open: 6 are
 *   assigned at once, 2 queue at positions 1 and 2; every customer sends 20
 *   messages (the queued ones 5 while queued: those must reach the agent as
 *   Assigned.backlog, never as Deliver; the other 15 after the assignment, as
 *   Deliver); every agent answers every message;
 *   a 201-character agent message is refused with TOO_LONG, a 200-character
 *   one passes; ending an assigned session closes it on both sides and hands
 *   the first queued session to the freed agent; finally everything ends.
 *
 * Every message must reach exactly the right side, exactly once, with its
 * text. Each wait is at most 5 s. Ends with "N passed, N failed"; exits 1 on
 * any failure, 2 on bad usage.
 *
 *   gw_path_check --router IP[:PORT] [--customer-gw ID] [--agent-gw ID] [--bind IP]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "itest.h"

#define NB_AGENTS   3u
#define CAPACITY    2u
#define NB_SESSIONS 8u
#define NB_ASSIGNED (NB_AGENTS * CAPACITY)
#define NB_MSGS     20u
#define NB_HELD     5u /* of them sent while the session is queued */
#define NONE        (-1)
#define MAX_ERRORS  32u
#define LONG_REF    0x7700000001ull /* msg_id of the 201-character agent message */
#define EDGE_REF    0x7700000002ull /* msg_id of the 200-character one */

struct session {
	uint64_t id;                /* router session id */
	int queued;                 /* SessionQueued seen (count) */
	uint32_t position;          /* from the first SessionQueued */
	int agent;                  /* agent index, from the agent-side Assigned */
	int agent_c;                /* agent index named by the customer-side Assigned */
	int assigned_a, assigned_c; /* Assigned seen, per side */
	bool question_ok;           /* the agent-side Assigned carried the right question */
	unsigned fwd[NB_MSGS];      /* times customer message k reached an agent */
	unsigned fwd_wrong;         /* reached the wrong agent, sender or text */
	unsigned in_backlog;        /* customer messages that came as backlog */
	unsigned as_deliver;        /* customer messages that came as Deliver */
	unsigned back[NB_MSGS];     /* times the answer to k reached the customer */
	unsigned back_wrong;
	int closed_a, closed_c; /* SessionClosed seen, per side */
	int reason_a, reason_c; /* their reasons */
};

struct state {
	struct gw_client *cgw, *agw;
	char agent_ids[NB_AGENTS][32];
	bool ready[NB_AGENTS];
	int agent_answers[NB_AGENTS];
	struct session s[NB_SESSIONS];
	struct {
		unsigned code;
		uint64_t ref;
	} errors[MAX_ERRORS];
	unsigned nb_errors;
	unsigned edge_delivered, long_delivered;
	unsigned unexpected;
	char edge_text[201 * 3 + 1], long_text[201 * 3 + 1];
};

static void customer_text(char *buf, size_t len, unsigned s, unsigned k)
{
	snprintf(buf, len, "customer %u message %u: 我的订单在哪里?", s, k);
}

static void answer_text(char *buf, size_t len, unsigned s, unsigned k)
{
	snprintf(buf, len, "agent answer to %u/%u: 请稍等", s, k);
}

static uint64_t customer_msg_id(unsigned s, unsigned k)
{
	return ((uint64_t)(s + 1) << 16) | (k + 1);
}

static uint64_t answer_msg_id(unsigned s, unsigned k)
{
	return (1ull << 40) | customer_msg_id(s, k);
}

static int session_by_id(const struct state *st, uint64_t id)
{
	for (unsigned i = 0; i < NB_SESSIONS; i++)
		if (id && st->s[i].id == id)
			return (int)i;
	return NONE;
}

static int agent_by_id(const struct state *st, const char *id)
{
	for (unsigned i = 0; i < NB_AGENTS; i++)
		if (id && !strcmp(st->agent_ids[i], id))
			return (int)i;
	return NONE;
}

static void send_answer(struct state *st, int s, unsigned k)
{
	char text[128];

	answer_text(text, sizeof(text), (unsigned)s, k);
	if (itest_agent_says(st->agw, st->s[s].id, st->agent_ids[st->s[s].agent],
	                     answer_msg_id((unsigned)s, k), text, false) < 0)
		st->unexpected++;
}

/* A customer message at the agent gateway, live (Deliver) or as backlog. */
static void agent_got(struct state *st, const Surge__V1__Deliver *d, bool backlog)
{
	int s = session_by_id(st, d->session_id);
	unsigned k = (unsigned)(d->msg_id & 0xffff) - 1;
	char want[128];

	if (s < 0 || st->s[s].agent < 0 || d->msg_id != customer_msg_id((unsigned)s, k) ||
	    k >= NB_MSGS) {
		st->unexpected++;
		return;
	}
	customer_text(want, sizeof(want), (unsigned)s, k);
	if (d->sender != SURGE__V1__SIDE__CUSTOMER || strcmp(d->text, want) ||
	    (!backlog && agent_by_id(st, d->agent_id) != st->s[s].agent))
		st->s[s].fwd_wrong++;
	st->s[s].fwd[k]++;
	if (backlog)
		st->s[s].in_backlog++;
	else
		st->s[s].as_deliver++;
	if (st->s[s].fwd[k] == 1)
		send_answer(st, s, k);
}

static void customer_got(struct state *st, const Surge__V1__Deliver *d)
{
	int s = session_by_id(st, d->session_id);
	unsigned k = (unsigned)(d->msg_id & 0xffff) - 1;
	char want[128];

	if (s >= 0 && d->msg_id == EDGE_REF) {
		st->edge_delivered++;
		if (strcmp(d->text, st->edge_text))
			st->s[s].back_wrong++;
		return;
	}
	if (s >= 0 && d->msg_id == LONG_REF) {
		st->long_delivered++;
		return;
	}
	if (s < 0 || k >= NB_MSGS || d->msg_id != answer_msg_id((unsigned)s, k)) {
		st->unexpected++;
		return;
	}
	answer_text(want, sizeof(want), (unsigned)s, k);
	if (d->sender != SURGE__V1__SIDE__AGENT || strcmp(d->text, want) ||
	    agent_by_id(st, d->agent_id) != st->s[s].agent)
		st->s[s].back_wrong++;
	st->s[s].back[k]++;
}

static void on_envelope(struct gw_client *c, const Surge__V1__Envelope *env, uint64_t rx_ns,
                        void *ctx)
{
	struct state *st = ctx;
	bool customer_side = c == st->cgw;
	int s, a;

	(void)rx_ns;
	switch (env->body_case) {
	case SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT:
		a = agent_by_id(st, env->agent_state_result->agent_id);
		if (a < 0 || customer_side) {
			st->unexpected++;
			break;
		}
		st->agent_answers[a]++;
		if (env->agent_state_result->granted &&
		    env->agent_state_result->state == SURGE__V1__AGENT_STATE_KIND__READY)
			st->ready[a] = true;
		break;
	case SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED: {
		const Surge__V1__SessionQueued *q = env->session_queued;

		if (!customer_side || q->open_ref == 0 || q->open_ref > NB_SESSIONS) {
			st->unexpected++;
			break;
		}
		s = (int)q->open_ref - 1;
		if (!st->s[s].queued++) {
			st->s[s].id = q->session_id;
			st->s[s].position = q->position;
		}
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_ASSIGNED: {
		const Surge__V1__Assigned *as = env->assigned;
		char q[64];

		s = session_by_id(st, as->session_id);
		a = agent_by_id(st, as->agent_id);
		if (s < 0 || a < 0) {
			st->unexpected++;
			break;
		}
		if (customer_side) {
			st->s[s].assigned_c++;
			st->s[s].agent_c = a;
			/* the customer side learns nothing of the agent's view */
			if (as->n_backlog || as->n_history || (as->question && *as->question))
				st->unexpected++;
			break;
		}
		st->s[s].assigned_a++;
		st->s[s].agent = a;
		snprintf(q, sizeof(q), "question of customer %d", s);
		st->s[s].question_ok = as->question && !strcmp(as->question, q) &&
		                       as->customer_id && as->customer_id[0];
		for (size_t i = 0; i < as->n_backlog; i++)
			agent_got(st, as->backlog[i], true);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_DELIVER:
		if (customer_side)
			customer_got(st, env->deliver);
		else
			agent_got(st, env->deliver, false);
		break;
	case SURGE__V1__ENVELOPE__BODY_SESSION_CLOSED:
		s = session_by_id(st, env->session_closed->session_id);
		if (s < 0) {
			st->unexpected++;
		} else if (customer_side) {
			st->s[s].closed_c++;
			st->s[s].reason_c = env->session_closed->reason;
		} else {
			st->s[s].closed_a++;
			st->s[s].reason_a = env->session_closed->reason;
		}
		break;
	case SURGE__V1__ENVELOPE__BODY_ERROR:
		if (st->nb_errors < MAX_ERRORS) {
			st->errors[st->nb_errors].code = (unsigned)env->error->code;
			st->errors[st->nb_errors].ref = env->error->ref;
		}
		st->nb_errors++;
		printf("# error %d from the router: %s (ref %" PRIu64 ")\n", env->error->code,
		       env->error->detail ? env->error->detail : "", env->error->ref);
		break;
	case SURGE__V1__ENVELOPE__BODY_SLA_ALERT:
		break; /* the clocks run in minutes; none is expected here, none is wrong */
	default:
		st->unexpected++;
		printf("# unexpected envelope %d\n", env->body_case);
		break;
	}
}

static void pump(struct state *st, uint64_t wait_ns)
{
	itest_pump2(st->cgw, st->agw, wait_ns, on_envelope, st);
}

static void pump_1ms(void *st)
{
	pump(st, 1000000);
}

/* A condition on the state for wait_until(), with its argument. */
struct until {
	const struct state *st;
	bool (*done)(const struct state *, int);
	int arg;
};

static bool until_done(void *ctx)
{
	const struct until *u = ctx;

	return u->done(u->st, u->arg);
}

/* Pump until done(st, arg) (at most ITEST_WAIT_NS); returns whether it happened. */
static bool wait_until(struct state *st, bool (*done)(const struct state *, int), int arg)
{
	struct until u = {st, done, arg};

	gw_flush(st->cgw);
	gw_flush(st->agw);
	return itest_wait(until_done, &u, pump_1ms, st);
}

/* Pump for ms milliseconds, to catch anything late (duplicates, strays). */
static void settle(struct state *st, unsigned ms)
{
	itest_settle(ms, pump_1ms, st);
}

static bool all_ready(const struct state *st, int arg)
{
	(void)arg;
	for (unsigned a = 0; a < NB_AGENTS; a++)
		if (!st->agent_answers[a])
			return false;
	return true;
}

static bool opened(const struct state *st, int arg)
{
	(void)arg;
	for (unsigned s = 0; s < NB_SESSIONS; s++)
		if (!st->s[s].queued ||
		    (s < NB_ASSIGNED && (!st->s[s].assigned_a || !st->s[s].assigned_c)))
			return false;
	return true;
}

static bool conversation_done(const struct state *st, int s)
{
	for (unsigned k = 0; k < NB_MSGS; k++)
		if (!st->s[s].fwd[k] || !st->s[s].back[k])
			return false;
	return true;
}

static bool first_six_done(const struct state *st, int arg)
{
	(void)arg;
	for (int s = 0; s < (int)NB_ASSIGNED; s++)
		if (!conversation_done(st, s))
			return false;
	return true;
}

static bool edge_done(const struct state *st, int arg)
{
	(void)arg;
	return st->edge_delivered > 0;
}

static bool closed_both(const struct state *st, int s)
{
	return st->s[s].closed_a && st->s[s].closed_c;
}

static bool assigned_both(const struct state *st, int s)
{
	return st->s[s].assigned_a && st->s[s].assigned_c;
}

static bool assigned_and_answered(const struct state *st, int s)
{
	return assigned_both(st, s) && conversation_done(st, s);
}

static bool all_closed(const struct state *st, int arg)
{
	(void)arg;
	for (int s = 0; s < (int)NB_SESSIONS; s++)
		if (!closed_both(st, s))
			return false;
	return true;
}

/* rc of a request: one the gateway refused to queue spoils the run. */
static void added(struct state *st, int rc)
{
	if (rc < 0) {
		printf("# gw_add: %s\n", strerror(-rc));
		st->unexpected++;
	}
}

static void end_session(struct state *st, int s)
{
	added(st, itest_end(st->cgw, st->s[s].id, SURGE__V1__RATING__SATISFIED));
	gw_flush(st->cgw);
}

static bool held_answered(const struct state *st, int s)
{
	for (unsigned k = 0; k < NB_HELD; k++)
		if (!st->s[s].fwd[k] || !st->s[s].back[k])
			return false;
	return assigned_both(st, s);
}

static void check_handover(struct state *st, int ended, int queued)
{
	int agent = st->s[ended].agent;
	unsigned wrong = 0;
	char text[128];

	end_session(st, ended);
	check(wait_until(st, closed_both, ended), "session %d closed on both sides", ended);
	check(st->s[ended].reason_a == SURGE__V1__CLOSE_REASON__CUSTOMER_ENDED &&
	              st->s[ended].reason_c == SURGE__V1__CLOSE_REASON__CUSTOMER_ENDED,
	      "session %d closed as CUSTOMER_ENDED (agent side %d, customer side %d)", ended,
	      st->s[ended].reason_a, st->s[ended].reason_c);
	check(wait_until(st, held_answered, queued),
	      "queued session %d assigned and its %u held messages answered", queued, NB_HELD);
	check(st->s[queued].agent == agent && st->s[queued].agent_c == agent,
	      "session %d went to the freed agent %d (agent side %d, customer side %d)", queued,
	      agent, st->s[queued].agent, st->s[queued].agent_c);
	check(st->s[queued].in_backlog == NB_HELD && st->s[queued].as_deliver == 0,
	      "session %d: held messages came as backlog (%u), not as Deliver (%u)", queued,
	      st->s[queued].in_backlog, st->s[queued].as_deliver);

	/* the rest of the conversation flows live */
	for (unsigned k = NB_HELD; k < NB_MSGS; k++) {
		customer_text(text, sizeof(text), (unsigned)queued, k);
		added(st, itest_customer_says(st->cgw, st->s[queued].id,
		                              customer_msg_id((unsigned)queued, k), text));
	}
	check(wait_until(st, assigned_and_answered, queued),
	      "session %d: the other %u messages delivered and answered", queued,
	      NB_MSGS - NB_HELD);
	check(st->s[queued].in_backlog == NB_HELD && st->s[queued].as_deliver == NB_MSGS - NB_HELD,
	      "session %d: after the assignment as Deliver (%u)", queued, st->s[queued].as_deliver);
	for (unsigned k = 0; k < NB_MSGS; k++)
		wrong += st->s[queued].fwd[k] != 1;
	check(wrong == 0 && st->s[queued].fwd_wrong == 0,
	      "session %d: each message exactly once, with its text", queued);
}

static int run(struct state *st)
{
	unsigned per_agent[NB_AGENTS] = {0}, wrong = 0, n;
	char cid[32], question[64], text[128];
	bool ok;

	/* 1. agents */
	for (unsigned a = 0; a < NB_AGENTS; a++) {
		snprintf(st->agent_ids[a], sizeof(st->agent_ids[a]), "path-agent-%u", a);
		added(st, itest_login(st->agw, st->agent_ids[a], "general", CAPACITY));
	}
	ok = wait_until(st, all_ready, 0);
	check(ok, "3 agents answered AgentLogin");
	if (!ok)
		return -ETIMEDOUT; /* nothing else can work */
	check(st->ready[0] && st->ready[1] && st->ready[2], "3 agents READY and granted");

	/* 2. sessions, all in one frame: the first 6 are assigned, then positions 1 and 2 */
	for (unsigned s = 0; s < NB_SESSIONS; s++) {
		snprintf(cid, sizeof(cid), "path-customer-%u", s);
		snprintf(question, sizeof(question), "question of customer %u", s);
		added(st, itest_open(st->cgw, s + 1, cid, "general", SURGE__V1__CHANNEL__WEB,
		                     question));
	}
	ok = wait_until(st, opened, 0);
	check(ok, "8 sessions queued, 6 assigned on both sides");
	if (!ok)
		return -ETIMEDOUT;
	for (unsigned s = 0; s < NB_SESSIONS; s++) {
		uint32_t want = s < NB_ASSIGNED ? 0 : s - NB_ASSIGNED + 1;

		if (st->s[s].position != want)
			wrong++;
		if (s < NB_ASSIGNED) {
			per_agent[st->s[s].agent]++;
			if (st->s[s].agent != st->s[s].agent_c || !st->s[s].question_ok)
				wrong++;
		} else if (st->s[s].assigned_a || st->s[s].assigned_c) {
			wrong++;
		}
	}
	check(wrong == 0, "positions 0 x6, 1, 2; both sides agree on the agent; question carried");
	check(per_agent[0] == CAPACITY && per_agent[1] == CAPACITY && per_agent[2] == CAPACITY,
	      "each agent holds 2 sessions (%u, %u, %u)", per_agent[0], per_agent[1], per_agent[2]);

	/* 3. 20 messages per customer, the queued ones included; agents answer each */
	for (unsigned k = 0; k < NB_MSGS; k++) {
		for (unsigned s = 0; s < NB_SESSIONS; s++) {
			if (s >= NB_ASSIGNED && k >= NB_HELD)
				continue;
			customer_text(text, sizeof(text), s, k);
			added(st, itest_customer_says(st->cgw, st->s[s].id, customer_msg_id(s, k),
			                              text));
		}
		if (k % 5 == 4)
			pump(st, 0);
	}
	check(wait_until(st, first_six_done, 0),
	      "120 messages of the assigned sessions delivered and answered");
	settle(st, 200);
	wrong = 0;
	for (unsigned s = 0; s < NB_ASSIGNED; s++) {
		for (unsigned k = 0; k < NB_MSGS; k++)
			wrong += (st->s[s].fwd[k] != 1) + (st->s[s].back[k] != 1);
		wrong += st->s[s].fwd_wrong + st->s[s].back_wrong + st->s[s].in_backlog;
	}
	check(wrong == 0, "each reached the right agent / customer exactly once, with its text");
	n = 0;
	for (unsigned s = NB_ASSIGNED; s < NB_SESSIONS; s++)
		for (unsigned k = 0; k < NB_MSGS; k++)
			n += st->s[s].fwd[k];
	check(n == 0, "nothing of the queued sessions reached an agent yet (%u)", n);

	/* 4. 201 characters: TOO_LONG, not delivered; 200 pass */
	st->long_text[0] = st->edge_text[0] = '\0';
	for (unsigned i = 0; i < 201; i++)
		strcat(st->long_text, "客");
	for (unsigned i = 0; i < 200; i++)
		strcat(st->edge_text, "客");
	added(st, itest_agent_says(st->agw, st->s[0].id, st->agent_ids[st->s[0].agent], LONG_REF,
	                           st->long_text, false));
	added(st, itest_agent_says(st->agw, st->s[0].id, st->agent_ids[st->s[0].agent], EDGE_REF,
	                           st->edge_text, false));
	check(wait_until(st, edge_done, 0), "a 200-character agent message is delivered");
	settle(st, 100);
	n = 0;
	for (unsigned i = 0; i < st->nb_errors && i < MAX_ERRORS; i++)
		n += st->errors[i].code == SURGE__V1__ERROR_CODE__TOO_LONG &&
		     st->errors[i].ref == LONG_REF;
	check(n == 1, "a 201-character agent message gets Error TOO_LONG with its msg_id");
	check(st->long_delivered == 0 && st->edge_delivered == 1 && st->s[0].back_wrong == 0,
	      "the long one is not delivered, the 200-character one once and intact");

	/* 5. ending an assigned session hands the first queued one to its agent */
	check_handover(st, 0, 6);
	check(st->s[7].closed_a == 0 && st->s[7].assigned_a == 0, "session 7 still queued");
	check_handover(st, 1, 7);

	/* 6. end everything */
	for (int s = 2; s < (int)NB_SESSIONS; s++)
		end_session(st, s);
	check(wait_until(st, all_closed, 0), "every session closed on both sides");
	wrong = 0;
	for (unsigned s = 0; s < NB_SESSIONS; s++)
		wrong += st->s[s].reason_a != SURGE__V1__CLOSE_REASON__CUSTOMER_ENDED ||
		         st->s[s].reason_c != SURGE__V1__CLOSE_REASON__CUSTOMER_ENDED;
	check(wrong == 0, "all closed as CUSTOMER_ENDED");

	/* agents leave; then nothing late or doubled may show up */
	for (unsigned a = 0; a < NB_AGENTS; a++)
		added(st, itest_agent_state(st->agw, st->agent_ids[a],
		                            SURGE__V1__AGENT_STATE_KIND__OFFLINE_REQUESTED));
	gw_flush(st->agw);
	settle(st, 300);
	wrong = 0;
	for (unsigned s = 0; s < NB_SESSIONS; s++) {
		for (unsigned k = 0; k < NB_MSGS; k++)
			wrong += (st->s[s].fwd[k] != 1) + (st->s[s].back[k] != 1);
		wrong += st->s[s].fwd_wrong + st->s[s].back_wrong;
		wrong += st->s[s].closed_a != 1 || st->s[s].closed_c != 1;
		wrong += st->s[s].assigned_a != 1 || st->s[s].assigned_c != 1;
	}
	check(wrong == 0, "at the end: every message and every answer exactly once, one "
	                  "Assigned and one SessionClosed per side and session");
	check(st->nb_errors == 1, "no other error (%u errors)", st->nb_errors);
	check(st->unexpected == 0, "no unexpected envelope (%u)", st->unexpected);
	check(gw_stats(st->cgw)->rx_duplicates + gw_stats(st->agw)->rx_duplicates == 0 &&
	              gw_stats(st->cgw)->rx_dropped + gw_stats(st->agw)->rx_dropped == 0,
	      "no duplicate or undecodable router frame");
	printf("# frames: customer gw tx %" PRIu64 " rx %" PRIu64 " retransmits %" PRIu64
	       "; agent gw tx %" PRIu64 " rx %" PRIu64 " retransmits %" PRIu64 "\n",
	       gw_stats(st->cgw)->tx_frames, gw_stats(st->cgw)->rx_frames,
	       gw_stats(st->cgw)->tx_retransmits, gw_stats(st->agw)->tx_frames,
	       gw_stats(st->agw)->rx_frames, gw_stats(st->agw)->tx_retransmits);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        ITEST_OPT_ROUTER,   ITEST_OPT_CUSTOMER_GW,
	        ITEST_OPT_AGENT_GW, {"bind", required_argument, NULL, 'b'},
	        {NULL, 0, NULL, 0},
	};
	static struct state st;
	struct itest_args args = {.cgw = 1, .agw = 2};
	struct sockaddr_in local;
	bool have_local = false;
	int c, rc;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		rc = itest_option(c, optarg, &args);
		if (rc > 0)
			continue;
		if (rc < 0 || c != 'b')
			goto out_usage;
		have_local = gw_parse_addr(optarg, 0, &local) == 0;
		if (!have_local)
			goto out_usage;
	}
	if (!itest_args_ok(&args))
		goto out_usage;
	for (unsigned s = 0; s < NB_SESSIONS; s++) {
		st.s[s].agent = NONE;
		st.s[s].agent_c = NONE;
		st.s[s].reason_a = st.s[s].reason_c = -1;
	}
	st.cgw = gw_open(args.cgw, &args.router, have_local ? &local : NULL);
	st.agw = gw_open(args.agw, &args.router, have_local ? &local : NULL);
	if (!st.cgw || !st.agw) {
		fprintf(stderr, "gw_path_check: cannot open the gateways: %s\n", strerror(errno));
		return 1;
	}
	run(&st);
	gw_close(st.cgw);
	gw_close(st.agw);
	return itest_report();

out_usage:
	fprintf(stderr, "usage: gw_path_check --router IP[:PORT] [--customer-gw ID] "
	                "[--agent-gw ID] [--bind IP]\n");
	return 2;
}
