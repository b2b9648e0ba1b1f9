/* SPDX-License-Identifier: MIT */
/*
 * surge-bench: the load generator. Customer and agent gateways on kernel UDP
 * sockets against a running router: agents log in, sessions open and are
 * assigned, then customer messages go out on an open-loop schedule (message
 * i is due at t0 + i/R whatever happened before it, so a slow router cannot
 * slow the clock down: no coordinated omission). Every Deliver at an agent is
 * answered with an echo. Forward latency = agent receive time - due time;
 * round trip = customer receive time of the echo - due time.
 *
 * Single-threaded (but for the freeze watch, bench/freeze.c); CLOCK_MONOTONIC;
 * msg_id = session index << 32 | (n + 1) for the session's n-th message, so
 * the receiver finds the due time by arithmetic, with no table.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define NS_PER_S   1000000000ull
#define NS_PER_MS  1000000ull
#define BATCH_MAX  4096u /* messages added per loop iteration at most */
#define ERR_CODES  16u
#define EXIT_USAGE 2
#define EXIT_SETUP 1
#define EXIT_LOSS  3
#define NONE       UINT32_MAX

struct opts {
	const char *router_text;
	struct sockaddr_in router;
	struct sockaddr_in bind;
	bool have_bind;
	uint32_t customer_gw;
	uint32_t agent_gw;
	unsigned nb_cgw;
	unsigned nb_agw;
	unsigned agents;
	unsigned capacity;
	unsigned customers;
	const char *skill;
	double rate;
	double duration;
	double warmup;
	unsigned text_bytes;
	double setup_timeout;
	const char *json;
	bool quiet;
	bool strict;
};

struct session {
	uint64_t id;     /* the router's session id; 0 until SessionQueued */
	uint32_t agent;  /* agent index, NONE until assigned */
	bool queued;     /* SessionQueued seen */
	bool assigned_c; /* Assigned at the customer gateway */
	bool assigned_a; /* Assigned at the agent gateway */
	bool closed_c;   /* SessionClosed at the customer gateway */
	bool closed_a;   /* SessionClosed at the agent gateway */
};

struct agent {
	char id[48];
	bool answered; /* AgentStateResult seen */
	bool ready;    /* granted READY */
};

struct bench {
	struct opts o;
	char tag[24];                       /* makes agent and customer ids unique per run */
	struct gw_client *gws[GW_POLL_MAX]; /* customer gateways first, then agent gateways */
	unsigned nb_gws;
	struct session *sessions;
	struct agent *agents;
	uint32_t *sid_index; /* open addressing: session id -> index + 1 */
	uint64_t *sid_keys;
	uint64_t sid_mask;

	/* the schedule */
	uint64_t t0, meas_start, meas_end; /* CLOCK_MONOTONIC ns */
	double ns_per_msg;
	uint64_t total;         /* messages scheduled */
	uint64_t next;          /* next message index to send */
	uint64_t sent;          /* handed to a gateway */
	uint64_t send_failed;   /* refused by the gateway client */
	uint64_t window_stalls; /* sends held back: a gateway's frames all unacknowledged */
	uint64_t lag_max;       /* worst (send time - due time) */
	double lag_sum;

	/* what came back */
	uint8_t *fwd_seen, *rt_seen; /* bitmaps over message indexes */
	uint64_t fwd_unique, fwd_dup, rt_unique, rt_dup, foreign;
	uint64_t fwd_in_window; /* agent deliveries received inside the measured phase */
	uint64_t echo_failed;
	struct bench_hist fwd, rt, fwd_live;
	uint64_t errors[ERR_CODES];
	uint64_t busy, sla_alerts, unexpected;
	struct bench_freeze freeze; /* the VM's stops during the measured phase */
	bool freeze_watched;
	unsigned nb_ready, nb_refused, nb_queued, nb_assigned, nb_assigned_c;
	unsigned nb_closed_c, nb_closed_a;
	char echo_text[201];
	char text[2001];
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* ---- options -------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: surge-bench --router IP[:PORT] [options]\n"
	        "\n"
	        "Load generator for surge-router over kernel UDP sockets: logs agents in,\n"
	        "opens sessions, sends customer messages on an open-loop schedule, echoes\n"
	        "every message back from the agent, and reports throughput, latency\n"
	        "(due time -> receive time, no coordinated omission) and exactly-once delivery.\n"
	        "\n"
	        "  --router IP[:PORT]     router address (required; port default %u)\n"
	        "  --bind IP              local address of the gateway sockets\n"
	        "  --customer-gw ID       first customer gateway id (default 1)\n"
	        "  --agent-gw ID          first agent gateway id (default 2)\n"
	        "  --customer-gateways N  customer gateways, ids consecutive (default 1)\n"
	        "  --agent-gateways N     agent gateways, ids consecutive (default 1)\n"
	        "  --agents A             agents to log in (default 50)\n"
	        "  --capacity K           sessions per agent (default 4)\n"
	        "  --customers C          concurrent sessions (default 200; at most A*K)\n"
	        "  --skill NAME           skill group (default general)\n"
	        "  --rate R               customer messages per second, open loop (default 20000)\n"
	        "  --duration S           measured seconds (default 20)\n"
	        "  --warmup S             seconds sent before measuring (default 2)\n"
	        "  --text-bytes N         customer message size (default 64; echo: at most 200)\n"
	        "  --setup-timeout S      wait for logins and assignments (default 10)\n"
	        "  --json FILE            also write the results as JSON\n"
	        "  --quiet                no live progress on stderr\n"
	        "  --strict               exit 3 when a message was lost or duplicated\n"
	        "  --help                 this text\n"
	        "\n"
	        "Exit status: 0 done, 1 the router did not answer the login/open phase,\n"
	        "2 bad usage, 3 (--strict) loss or duplicates.\n",
	        GW_DEFAULT_PORT);
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max || *s == '-')
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static int parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min) || !(v <= max))
		return -EINVAL;
	*out = v;
	return 0;
}

enum {
	OPT_ROUTER = 256,
	OPT_BIND,
	OPT_CGW,
	OPT_AGW,
	OPT_NCGW,
	OPT_NAGW,
	OPT_AGENTS,
	OPT_CAPACITY,
	OPT_CUSTOMERS,
	OPT_SKILL,
	OPT_RATE,
	OPT_DURATION,
	OPT_WARMUP,
	OPT_TEXT,
	OPT_SETUP,
	OPT_JSON,
	OPT_QUIET,
	OPT_STRICT,
	OPT_HELP,
};

static const struct option long_opts[] = {
        {"router", required_argument, NULL, OPT_ROUTER},
        {"bind", required_argument, NULL, OPT_BIND},
        {"customer-gw", required_argument, NULL, OPT_CGW},
        {"agent-gw", required_argument, NULL, OPT_AGW},
        {"customer-gateways", required_argument, NULL, OPT_NCGW},
        {"agent-gateways", required_argument, NULL, OPT_NAGW},
        {"agents", required_argument, NULL, OPT_AGENTS},
        {"capacity", required_argument, NULL, OPT_CAPACITY},
        {"customers", required_argument, NULL, OPT_CUSTOMERS},
        {"skill", required_argument, NULL, OPT_SKILL},
        {"rate", required_argument, NULL, OPT_RATE},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"text-bytes", required_argument, NULL, OPT_TEXT},
        {"setup-timeout", required_argument, NULL, OPT_SETUP},
        {"json", required_argument, NULL, OPT_JSON},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"strict", no_argument, NULL, OPT_STRICT},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	unsigned u;
	int c, rc = 0;

	*o = (struct opts){
	        .customer_gw = 1,
	        .agent_gw = 2,
	        .nb_cgw = 1,
	        .nb_agw = 1,
	        .agents = 50,
	        .capacity = 4,
	        .customers = 200,
	        .skill = "general",
	        .rate = 20000,
	        .duration = 20,
	        .warmup = 2,
	        .text_bytes = 64,
	        .setup_timeout = 10,
	};
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_ROUTER:
			o->router_text = optarg;
			rc = gw_parse_addr(optarg, GW_DEFAULT_PORT, &o->router);
			break;
		case OPT_BIND:
			rc = gw_parse_addr(optarg, 0, &o->bind);
			o->have_bind = true;
			break;
		case OPT_CGW:
			rc = parse_uint(optarg, 1, UINT32_MAX - GW_POLL_MAX, &u);
			o->customer_gw = u;
			break;
		case OPT_AGW:
			rc = parse_uint(optarg, 1, UINT32_MAX - GW_POLL_MAX, &u);
			o->agent_gw = u;
			break;
		case OPT_NCGW:
			rc = parse_uint(optarg, 1, GW_POLL_MAX / 2, &o->nb_cgw);
			break;
		case OPT_NAGW:
			rc = parse_uint(optarg, 1, GW_POLL_MAX / 2, &o->nb_agw);
			break;
		case OPT_AGENTS:
			rc = parse_uint(optarg, 1, 1000000, &o->agents);
			break;
		case OPT_CAPACITY:
			rc = parse_uint(optarg, 1, 100000, &o->capacity);
			break;
		case OPT_CUSTOMERS:
			rc = parse_uint(optarg, 1, 10000000, &o->customers);
			break;
		case OPT_SKILL:
			o->skill = optarg;
			rc = *optarg && strlen(optarg) < 200 ? 0 : -EINVAL;
			break;
		case OPT_RATE:
			rc = parse_double(optarg, 1, 1e8, &o->rate);
			break;
		case OPT_DURATION:
			rc = parse_double(optarg, 0.1, 86400, &o->duration);
			break;
		case OPT_WARMUP:
			rc = parse_double(optarg, 0, 3600, &o->warmup);
			break;
		case OPT_TEXT:
			rc = parse_uint(optarg, 1, 1200, &o->text_bytes);
			break;
		case OPT_SETUP:
			rc = parse_double(optarg, 0.1, 3600, &o->setup_timeout);
			break;
		case OPT_JSON:
			o->json = optarg;
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		case OPT_STRICT:
			o->strict = true;
			break;
		case OPT_HELP:
			usage(stdout);
			exit(0);
		default:
			return -EINVAL;
		}
		if (rc < 0) {
			fprintf(stderr, "surge-bench: bad value for --%s: %s\n",
			        long_opts[c - OPT_ROUTER].name, optarg);
			return rc;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "surge-bench: unexpected argument %s\n", argv[optind]);
		return -EINVAL;
	}
	if (!o->router_text) {
		fprintf(stderr, "surge-bench: --router is required\n");
		return -EINVAL;
	}
	if (o->customer_gw < o->agent_gw + o->nb_agw && o->agent_gw < o->customer_gw + o->nb_cgw) {
		fprintf(stderr, "surge-bench: customer and agent gateway ids overlap\n");
		return -EINVAL;
	}
	if ((uint64_t)o->customers > (uint64_t)o->agents * o->capacity) {
		fprintf(stderr,
		        "surge-bench: warning: --customers %u > agents * capacity %" PRIu64
		        ": not all could be assigned; using %" PRIu64 "\n",
		        o->customers, (uint64_t)o->agents * o->capacity,
		        (uint64_t)o->agents * o->capacity);
		o->customers = o->agents * o->capacity;
	}
	if (o->customers > 0xffffffffu) /* msg_id keeps the session index in 32 bits */
		return -EINVAL;
	return 0;
}

/* ---- ids ------------------------------------------------------------------ */

/* "<tag>-<kind><index>" -> index, or NONE. */
static uint32_t parse_id(const struct bench *b, const char *s, char kind, uint32_t limit)
{
	size_t tl = strlen(b->tag);
	char *end;
	unsigned long v;

	if (!s || strncmp(s, b->tag, tl) || s[tl] != '-' || s[tl + 1] != kind)
		return NONE;
	errno = 0;
	v = strtoul(s + tl + 2, &end, 10);
	if (errno || *end || end == s + tl + 2 || v >= limit)
		return NONE;
	return (uint32_t)v;
}

static void sid_put(struct bench *b, uint64_t sid, uint32_t idx)
{
	uint64_t h = (sid * 0x9e3779b97f4a7c15ull) & b->sid_mask;

	while (b->sid_keys[h] && b->sid_keys[h] != sid)
		h = (h + 1) & b->sid_mask;
	b->sid_keys[h] = sid;
	b->sid_index[h] = idx + 1;
}

static uint32_t sid_get(const struct bench *b, uint64_t sid)
{
	uint64_t h = (sid * 0x9e3779b97f4a7c15ull) & b->sid_mask;

	if (sid == 0)
		return NONE;
	while (b->sid_keys[h]) {
		if (b->sid_keys[h] == sid)
			return b->sid_index[h] - 1;
		h = (h + 1) & b->sid_mask;
	}
	return NONE;
}

static bool is_customer_gw(const struct bench *b, const struct gw_client *c)
{
	uint32_t id = gw_id(c);

	return id >= b->o.customer_gw && id - b->o.customer_gw < b->o.nb_cgw;
}

static struct gw_client *cgw_of(const struct bench *b, uint32_t session)
{
	return b->gws[session % b->o.nb_cgw];
}

static struct gw_client *agw_of(const struct bench *b, uint32_t agent)
{
	return b->gws[b->o.nb_cgw + agent % b->o.nb_agw];
}

static uint64_t due_of(const struct bench *b, uint64_t i)
{
	return b->t0 + (uint64_t)((double)i * b->ns_per_msg);
}

static bool measured(const struct bench *b, uint64_t due)
{
	return due >= b->meas_start && due < b->meas_end;
}

/* msg_id -> message index, or UINT64_MAX when it is none of ours. */
static uint64_t msg_index(const struct bench *b, uint64_t msg_id)
{
	uint64_t s = msg_id >> 32, n = msg_id & 0xffffffffu, i;

	if (s >= b->o.customers || n == 0)
		return UINT64_MAX;
	i = (n - 1) * b->o.customers + s;
	return i < b->next ? i : UINT64_MAX;
}

/* ---- receiving ------------------------------------------------------------ */

static bool bit_test_set(uint8_t *map, uint64_t i)
{
	uint8_t m = (uint8_t)(1u << (i & 7));
	bool was = map[i >> 3] & m;

	map[i >> 3] |= m;
	return was;
}

/* A customer message reached an agent (live or in a backlog): count it and echo it. */
static void on_agent_deliver(struct bench *b, struct gw_client *c, const Surge__V1__Deliver *d,
                             uint64_t rx_ns)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__AgentMessage m = SURGE__V1__AGENT_MESSAGE__INIT;
	uint64_t i = msg_index(b, d->msg_id), due;
	uint32_t s = (uint32_t)(d->msg_id >> 32);

	if (i == UINT64_MAX || d->sender != SURGE__V1__SIDE__CUSTOMER) {
		b->foreign++;
		return;
	}
	if (bit_test_set(b->fwd_seen, i)) {
		b->fwd_dup++;
		return;
	}
	b->fwd_unique++;
	due = due_of(b, i);
	bench_hist_record(&b->fwd_live, rx_ns > due ? rx_ns - due : 0);
	if (measured(b, due))
		bench_hist_record(&b->fwd, rx_ns > due ? rx_ns - due : 0);
	if (rx_ns >= b->meas_start && rx_ns < b->meas_end)
		b->fwd_in_window++;

	m.session_id = d->session_id;
	m.agent_id = d->agent_id;
	if ((!m.agent_id || !*m.agent_id) && b->sessions[s].agent != NONE)
		m.agent_id = b->agents[b->sessions[s].agent].id;
	m.msg_id = d->msg_id;
	m.text = b->echo_text;
	env.body_case = SURGE__V1__ENVELOPE__BODY_AGENT_MESSAGE;
	env.agent_message = &m;
	if (gw_add(c, &env) < 0)
		b->echo_failed++;
}

static void on_customer_deliver(struct bench *b, const Surge__V1__Deliver *d, uint64_t rx_ns)
{
	uint64_t i = msg_index(b, d->msg_id), due;

	if (i == UINT64_MAX || d->sender != SURGE__V1__SIDE__AGENT) {
		b->foreign++;
		return;
	}
	if (bit_test_set(b->rt_seen, i)) {
		b->rt_dup++;
		return;
	}
	b->rt_unique++;
	due = due_of(b, i);
	if (measured(b, due))
		bench_hist_record(&b->rt, rx_ns > due ? rx_ns - due : 0);
}

static void on_assigned(struct bench *b, struct gw_client *c, const Surge__V1__Assigned *a,
                        uint64_t rx_ns)
{
	uint32_t s, ag = parse_id(b, a->agent_id, 'a', b->o.agents);

	if (is_customer_gw(b, c)) {
		s = sid_get(b, a->session_id);
		if (s == NONE) {
			b->unexpected++;
			return;
		}
		if (!b->sessions[s].assigned_c) {
			b->sessions[s].assigned_c = true;
			b->nb_assigned_c++;
		}
		if (ag != NONE)
			b->sessions[s].agent = ag;
		return;
	}
	s = parse_id(b, a->customer_id, 'c', b->o.customers);
	if (s == NONE) {
		b->unexpected++;
		return;
	}
	if (!b->sessions[s].id) {
		b->sessions[s].id = a->session_id;
		sid_put(b, a->session_id, s);
	}
	if (!b->sessions[s].assigned_a) {
		b->sessions[s].assigned_a = true;
		b->nb_assigned++;
	}
	if (ag != NONE)
		b->sessions[s].agent = ag;
	/* after a re-route the conversation so far comes again, as backlog */
	for (size_t k = 0; k < a->n_backlog; k++)
		if (a->backlog[k]->sender == SURGE__V1__SIDE__CUSTOMER)
			on_agent_deliver(b, c, a->backlog[k], rx_ns);
}

static void on_envelope(struct gw_client *c, const Surge__V1__Envelope *env, uint64_t rx_ns,
                        void *ctx)
{
	struct bench *b = ctx;
	uint32_t i;

	switch (env->body_case) {
	case SURGE__V1__ENVELOPE__BODY_DELIVER:
		if (is_customer_gw(b, c))
			on_customer_deliver(b, env->deliver, rx_ns);
		else
			on_agent_deliver(b, c, env->deliver, rx_ns);
		break;
	case SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT:
		i = parse_id(b, env->agent_state_result->agent_id, 'a', b->o.agents);
		if (i == NONE || b->agents[i].answered) {
			if (i == NONE)
				b->unexpected++;
			break;
		}
		b->agents[i].answered = true;
		if (env->agent_state_result->granted &&
		    env->agent_state_result->state == SURGE__V1__AGENT_STATE_KIND__READY) {
			b->agents[i].ready = true;
			b->nb_ready++;
		} else {
			b->nb_refused++;
		}
		break;
	case SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED: {
		const Surge__V1__SessionQueued *q = env->session_queued;

		if (q->open_ref == 0 || q->open_ref > b->o.customers) {
			b->unexpected++;
			break;
		}
		i = (uint32_t)(q->open_ref - 1);
		if (!b->sessions[i].queued) {
			b->sessions[i].queued = true;
			b->nb_queued++;
		}
		if (!b->sessions[i].id) {
			b->sessions[i].id = q->session_id;
			sid_put(b, q->session_id, i);
		}
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_ASSIGNED:
		on_assigned(b, c, env->assigned, rx_ns);
		break;
	case SURGE__V1__ENVELOPE__BODY_SESSION_CLOSED:
		i = sid_get(b, env->session_closed->session_id);
		if (i == NONE) {
			b->unexpected++;
		} else if (is_customer_gw(b, c)) {
			b->nb_closed_c += !b->sessions[i].closed_c;
			b->sessions[i].closed_c = true;
		} else {
			b->nb_closed_a += !b->sessions[i].closed_a;
			b->sessions[i].closed_a = true;
		}
		break;
	case SURGE__V1__ENVELOPE__BODY_ERROR: {
		unsigned code = (unsigned)env->error->code;

		b->errors[code < ERR_CODES ? code : 0]++;
		if (!b->o.quiet && b->errors[code < ERR_CODES ? code : 0] <= 3)
			fprintf(stderr, "surge-bench: error %u from router: %s (ref %" PRIu64 ")\n",
			        code, env->error->detail ? env->error->detail : "",
			        env->error->ref);
		break;
	}
	case SURGE__V1__ENVELOPE__BODY_BUSY:
		b->busy++;
		break;
	case SURGE__V1__ENVELOPE__BODY_SLA_ALERT:
		b->sla_alerts++;
		break;
	default:
		b->unexpected++;
		break;
	}
}

/* ---- driving -------------------------------------------------------------- */

static void flush_all(struct bench *b)
{
	for (unsigned i = 0; i < b->nb_gws; i++)
		gw_flush(b->gws[i]);
}

/* Poll every gateway once (waiting up to wait_ns) and send what the answers queued. */
static void pump(struct bench *b, uint64_t wait_ns)
{
	gw_poll_set(b->gws, b->nb_gws, wait_ns, on_envelope, b);
	flush_all(b);
}

/* Pump until done(b) or timeout; returns whether done. */
static bool wait_for(struct bench *b, bool (*done)(const struct bench *), double timeout_s)
{
	uint64_t end = gw_now_ns() + (uint64_t)(timeout_s * NS_PER_S);

	while (!done(b)) {
		if (gw_now_ns() >= end || stop_requested)
			return false;
		pump(b, NS_PER_MS);
	}
	return true;
}

static bool all_answered(const struct bench *b)
{
	return b->nb_ready + b->nb_refused >= b->o.agents;
}

static bool all_assigned(const struct bench *b)
{
	return b->nb_assigned >= b->o.customers && b->nb_assigned_c >= b->o.customers;
}

static bool all_back(const struct bench *b)
{
	return b->fwd_unique >= b->sent && b->rt_unique >= b->sent;
}

static bool all_closed(const struct bench *b)
{
	return b->nb_closed_c >= b->o.customers && b->nb_closed_a >= b->o.customers;
}

static int login_agents(struct bench *b)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__AgentLogin l = SURGE__V1__AGENT_LOGIN__INIT;
	Surge__V1__SkillLevel sk = SURGE__V1__SKILL_LEVEL__INIT, *skills[1] = {&sk};

	sk.skill = (char *)b->o.skill;
	sk.level = 3;
	l.skills = skills;
	l.n_skills = 1;
	l.max_sessions = b->o.capacity;
	env.body_case = SURGE__V1__ENVELOPE__BODY_AGENT_LOGIN;
	env.agent_login = &l;
	for (unsigned i = 0; i < b->o.agents; i++) {
		snprintf(b->agents[i].id, sizeof(b->agents[i].id), "%s-a%u", b->tag, i);
		l.agent_id = b->agents[i].id;
		if (gw_add(agw_of(b, i), &env) < 0)
			return -ENOBUFS;
		if (i % 256 == 255)
			pump(b, 0);
	}
	flush_all(b);
	if (!wait_for(b, all_answered, b->o.setup_timeout)) {
		fprintf(stderr, "surge-bench: %u of %u agents answered within %.1f s\n",
		        b->nb_ready + b->nb_refused, b->o.agents, b->o.setup_timeout);
		return -ETIMEDOUT;
	}
	if (b->nb_refused) {
		fprintf(stderr, "surge-bench: %u agents were refused READY\n", b->nb_refused);
		return -EPERM;
	}
	return 0;
}

static int open_sessions(struct bench *b)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__SessionOpen op = SURGE__V1__SESSION_OPEN__INIT;
	char cid[48];

	op.skill = (char *)b->o.skill;
	op.channel = SURGE__V1__CHANNEL__WEB;
	op.question = "surge-bench: where is my order?";
	op.customer_id = cid;
	env.body_case = SURGE__V1__ENVELOPE__BODY_SESSION_OPEN;
	env.session_open = &op;
	for (unsigned i = 0; i < b->o.customers; i++) {
		snprintf(cid, sizeof(cid), "%s-c%u", b->tag, i);
		op.open_ref = i + 1u;
		if (gw_add(cgw_of(b, i), &env) < 0)
			return -ENOBUFS;
		if (i % 256 == 255)
			pump(b, 0);
	}
	flush_all(b);
	if (!wait_for(b, all_assigned, b->o.setup_timeout)) {
		fprintf(stderr,
		        "surge-bench: %u of %u sessions queued, %u assigned within %.1f s "
		        "(busy %" PRIu64 ")\n",
		        b->nb_queued, b->o.customers, b->nb_assigned, b->o.setup_timeout, b->busy);
		return -ETIMEDOUT;
	}
	return 0;
}

static void send_due(struct bench *b, uint64_t now)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__CustomerMessage m = SURGE__V1__CUSTOMER_MESSAGE__INIT;
	unsigned n = 0;

	m.text = b->text;
	env.body_case = SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE;
	env.customer_message = &m;
	while (b->next < b->total && n < BATCH_MAX) {
		uint64_t due = due_of(b, b->next);
		uint32_t s = (uint32_t)(b->next % b->o.customers);

		int rc;

		if (due > now)
			break;
		m.session_id = b->sessions[s].id;
		m.msg_id = (uint64_t)s << 32 | (b->next / b->o.customers + 1);
		rc = gw_add(cgw_of(b, s), &env);
		if (rc == -ENOBUFS) {
			/* the router is behind: the message stays due (its latency grows) */
			b->window_stalls++;
			break;
		}
		b->next++;
		n++;
		if (rc < 0) {
			b->send_failed++;
			continue;
		}
		b->sent++;
		b->lag_sum += (double)(now - due);
		if (now - due > b->lag_max)
			b->lag_max = now - due;
	}
	if (n)
		flush_all(b);
}

static void progress(struct bench *b, uint64_t now, uint64_t *last_ns, uint64_t *last_fwd)
{
	double el = (double)(now - b->t0) / NS_PER_S;
	double dt = (double)(now - *last_ns) / NS_PER_S;

	fprintf(stderr,
	        "[%6.1fs]%s sent %" PRIu64 "  delivered %" PRIu64 "  rate %.0f/s  p99 %.1f us"
	        "  echoed %" PRIu64 "\n",
	        el, now < b->meas_start ? " warmup" : "", b->sent, b->fwd_unique,
	        dt > 0 ? (double)(b->fwd_unique - *last_fwd) / dt : 0.0,
	        (double)bench_hist_percentile(&b->fwd_live, 99) / 1000.0, b->rt_unique);
	*last_ns = now;
	*last_fwd = b->fwd_unique;
}

static void run_load(struct bench *b)
{
	uint64_t now = gw_now_ns(), last_ns, last_fwd = 0, next_progress;

	b->t0 = now + NS_PER_MS;
	b->meas_start = b->t0 + (uint64_t)(b->o.warmup * NS_PER_S);
	b->meas_end = b->meas_start + (uint64_t)(b->o.duration * NS_PER_S);
	last_ns = b->t0;
	next_progress = b->t0 + NS_PER_S;
	b->freeze_watched = bench_freeze_start(&b->freeze, b->meas_start, b->meas_end) == 0;
	while (!stop_requested) {
		uint64_t wait = 0;

		now = gw_now_ns();
		if (now >= b->meas_end)
			break;
		send_due(b, now);
		if (b->next < b->total) {
			uint64_t due = due_of(b, b->next);

			wait = due > now ? due - now : 0;
		} else {
			wait = NS_PER_MS;
		}
		if (wait > NS_PER_MS)
			wait = NS_PER_MS;
		pump(b, wait);
		if (now >= next_progress) {
			if (!b->o.quiet)
				progress(b, now, &last_ns, &last_fwd);
			next_progress += NS_PER_S;
		}
	}
	bench_freeze_stop(&b->freeze);
	/* what fell due between the last iteration and the end of the phase */
	while (!stop_requested && b->next < b->total && gw_now_ns() < b->meas_end + 2 * NS_PER_S) {
		send_due(b, gw_now_ns());
		pump(b, b->next < b->total ? NS_PER_MS : 0);
	}
	/* stragglers */
	wait_for(b, all_back, 2.0);
	if (!b->o.quiet)
		progress(b, gw_now_ns(), &last_ns, &last_fwd);
}

static void end_sessions(struct bench *b)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__SessionEnd e = SURGE__V1__SESSION_END__INIT;
	Surge__V1__AgentState st = SURGE__V1__AGENT_STATE__INIT;

	env.body_case = SURGE__V1__ENVELOPE__BODY_SESSION_END;
	env.session_end = &e;
	e.rating = SURGE__V1__RATING__SATISFIED;
	for (unsigned i = 0; i < b->o.customers; i++) {
		if (!b->sessions[i].id)
			continue;
		e.session_id = b->sessions[i].id;
		gw_add(cgw_of(b, i), &env);
		if (i % 256 == 255)
			pump(b, 0);
	}
	flush_all(b);
	wait_for(b, all_closed, 5.0);

	/* leave nothing behind for the next run: the agents go offline */
	env.body_case = SURGE__V1__ENVELOPE__BODY_AGENT_STATE;
	env.agent_state = &st;
	st.state = SURGE__V1__AGENT_STATE_KIND__OFFLINE_REQUESTED;
	for (unsigned i = 0; i < b->o.agents; i++) {
		st.agent_id = b->agents[i].id;
		gw_add(agw_of(b, i), &env);
	}
	flush_all(b);
	/* let the acks settle, so the router does not keep retransmitting to a closed socket */
	for (uint64_t end = gw_now_ns() + 200 * NS_PER_MS; gw_now_ns() < end;)
		pump(b, NS_PER_MS);
}

/* ---- reporting ------------------------------------------------------------ */

static const char *error_name(unsigned code)
{
	const ProtobufCEnumValue *v =
	        protobuf_c_enum_descriptor_get_value(&surge__v1__error_code__descriptor, (int)code);

	return v ? v->name : "unknown";
}

struct totals {
	uint64_t retransmits, tx_errors, rx_duplicates, rx_dropped;
};

static void gw_totals(const struct bench *b, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	for (unsigned i = 0; i < b->nb_gws; i++) {
		const struct gw_stats *s = gw_stats(b->gws[i]);

		t->retransmits += s->tx_retransmits;
		t->tx_errors += s->tx_errors;
		t->rx_duplicates += s->rx_duplicates;
		t->rx_dropped += s->rx_dropped;
	}
}

/* Echoes the agents sent that never came back. */
static uint64_t echo_missing(const struct bench *b)
{
	uint64_t sent = b->fwd_unique - b->echo_failed;

	return sent > b->rt_unique ? sent - b->rt_unique : 0;
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void report_text(const struct bench *b, FILE *out)
{
	struct totals t;
	const struct bench_hist *h[2] = {&b->fwd, &b->rt};
	static const char *const names[2] = {"forward (customer -> agent)",
	                                     "round trip (-> agent -> customer)"};

	gw_totals(b, &t);
	fprintf(out,
	        "surge-bench: %s  agents %u x %u  sessions %u  rate %.0f/s  %.1f s (+%.1f s "
	        "warmup)  text %u B\n",
	        b->o.router_text, b->o.agents, b->o.capacity, b->o.customers, b->o.rate,
	        b->o.duration, b->o.warmup, b->o.text_bytes);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "messages sent", b->sent);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "not sent (router window full)",
	        b->total - b->next + b->send_failed);
	if (b->window_stalls)
		fprintf(out, "  %-34s %12" PRIu64 "\n", "sends held for the router's acks",
		        b->window_stalls);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "delivered to agents", b->fwd_unique + b->fwd_dup);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "  exactly once", b->fwd_unique);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "  duplicates", b->fwd_dup);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "  missing", b->sent - b->fwd_unique);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "echoes back at customers", b->rt_unique);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "  duplicates", b->rt_dup);
	if (b->echo_failed)
		fprintf(out, "  %-34s %12" PRIu64 "\n", "  not sent (agent window full)",
		        b->echo_failed);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "  missing", echo_missing(b));
	fprintf(out, "  %-34s %12.0f msgs/s\n", "rate delivered (measured phase)",
	        (double)b->fwd_in_window / b->o.duration);
	fprintf(out, "  %-34s %12.1f us (max %.1f us)\n", "sender lag mean",
	        b->sent ? b->lag_sum / (double)b->sent / 1000.0 : 0.0, us(b->lag_max));
	fprintf(out, "  %-34s %10s %10s %10s %10s %10s %10s\n", "latency (us)", "count", "p50",
	        "p99", "p99.9", "max", "mean");
	for (int k = 0; k < 2; k++)
		fprintf(out, "  %-34s %10" PRIu64 " %10.1f %10.1f %10.1f %10.1f %10.1f\n", names[k],
		        bench_hist_count(h[k]), us(bench_hist_percentile(h[k], 50)),
		        us(bench_hist_percentile(h[k], 99)), us(bench_hist_percentile(h[k], 99.9)),
		        us(bench_hist_max(h[k])), bench_hist_mean(h[k]) / 1000.0);
	if (b->freeze_watched)
		fprintf(out, "  %-34s %12" PRIu64 " (%.0f ms, %.1f%% of the measured phase; %s)\n",
		        "VM stopped > 5 ms", b->freeze.count, (double)b->freeze.stopped_ns / 1e6,
		        100.0 * (double)b->freeze.stopped_ns / 1e9 / b->o.duration,
		        b->freeze.realtime ? "SCHED_FIFO watch"
		                           : "ordinary watch: may include waits for a CPU");
	fprintf(out, "  %-34s %12u / %u\n", "sessions closed (customer side)", b->nb_closed_c,
	        b->o.customers);
	fprintf(out, "  %-34s %12u / %u\n", "sessions closed (agent side)", b->nb_closed_a,
	        b->o.customers);
	for (unsigned c = 0; c < ERR_CODES; c++)
		if (b->errors[c])
			fprintf(out, "  error %-28s %12" PRIu64 "\n", error_name(c), b->errors[c]);
	if (b->busy)
		fprintf(out, "  %-34s %12" PRIu64 "\n", "busy", b->busy);
	if (b->sla_alerts)
		fprintf(out, "  %-34s %12" PRIu64 "\n", "service-level alerts", b->sla_alerts);
	if (b->unexpected || b->foreign)
		fprintf(out, "  %-34s %12" PRIu64 "\n", "unexpected envelopes",
		        b->unexpected + b->foreign);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "frames retransmitted", t.retransmits);
	if (t.tx_errors)
		fprintf(out, "  %-34s %12" PRIu64 "\n", "send errors", t.tx_errors);
	fprintf(out, "  %-34s %12" PRIu64 "\n", "router frames duplicated", t.rx_duplicates);
	if (t.rx_dropped)
		fprintf(out, "  %-34s %12" PRIu64 "\n", "router datagrams dropped", t.rx_dropped);
}

static void json_hist(FILE *f, const char *name, const struct bench_hist *h, bool comma)
{
	fprintf(f,
	        "  \"%s\": {\"count\": %" PRIu64 ", \"p50\": %" PRIu64 ", \"p99\": %" PRIu64
	        ", \"p999\": %" PRIu64 ", \"max\": %" PRIu64 ", \"mean\": %.1f}%s\n",
	        name, bench_hist_count(h), bench_hist_percentile(h, 50),
	        bench_hist_percentile(h, 99), bench_hist_percentile(h, 99.9), bench_hist_max(h),
	        bench_hist_mean(h), comma ? "," : "");
}

static int report_json(const struct bench *b, const char *path)
{
	struct totals t;
	FILE *f = fopen(path, "w");
	bool first = true;

	if (!f)
		return -errno;
	gw_totals(b, &t);
	fprintf(f, "{\n");
	fprintf(f,
	        "  \"config\": {\"router\": \"%s\", \"agents\": %u, \"capacity\": %u, "
	        "\"customers\": %u, \"skill\": \"%s\", \"rate\": %.1f, \"duration_s\": %.3f, "
	        "\"warmup_s\": %.3f, \"text_bytes\": %u, \"customer_gateways\": %u, "
	        "\"agent_gateways\": %u},\n",
	        b->o.router_text, b->o.agents, b->o.capacity, b->o.customers, b->o.skill, b->o.rate,
	        b->o.duration, b->o.warmup, b->o.text_bytes, b->o.nb_cgw, b->o.nb_agw);
	fprintf(f,
	        "  \"sent\": %" PRIu64 ",\n  \"not_sent\": %" PRIu64
	        ",\n  \"window_stalls\": %" PRIu64 ",\n",
	        b->sent, b->total - b->next + b->send_failed, b->window_stalls);
	fprintf(f,
	        "  \"delivered\": %" PRIu64 ",\n  \"exactly_once\": %" PRIu64
	        ",\n  \"duplicates\": %" PRIu64 ",\n  \"missing\": %" PRIu64 ",\n",
	        b->fwd_unique + b->fwd_dup, b->fwd_unique, b->fwd_dup, b->sent - b->fwd_unique);
	fprintf(f,
	        "  \"echoed\": %" PRIu64 ",\n  \"echo_duplicates\": %" PRIu64
	        ",\n  \"echo_not_sent\": %" PRIu64 ",\n  \"echo_missing\": %" PRIu64 ",\n",
	        b->rt_unique, b->rt_dup, b->echo_failed, echo_missing(b));
	fprintf(f, "  \"rate_delivered\": %.1f,\n", (double)b->fwd_in_window / b->o.duration);
	fprintf(f, "  \"sender_lag_ns\": {\"mean\": %.1f, \"max\": %" PRIu64 "},\n",
	        b->sent ? b->lag_sum / (double)b->sent : 0.0, b->lag_max);
	json_hist(f, "forward_latency_ns", &b->fwd, true);
	json_hist(f, "round_trip_latency_ns", &b->rt, true);
	if (b->freeze_watched)
		fprintf(f,
		        "  \"vm_stops\": {\"count\": %" PRIu64 ", \"stopped_ns\": %" PRIu64
		        ", \"worst_ns\": %" PRIu64 ", \"realtime_watch\": %s},\n",
		        b->freeze.count, b->freeze.stopped_ns, b->freeze.worst_ns,
		        b->freeze.realtime ? "true" : "false");
	fprintf(f, "  \"errors\": {");
	for (unsigned c = 0; c < ERR_CODES; c++) {
		if (!b->errors[c])
			continue;
		fprintf(f, "%s\"%s\": %" PRIu64, first ? "" : ", ", error_name(c), b->errors[c]);
		first = false;
	}
	fprintf(f, "},\n");
	fprintf(f,
	        "  \"busy\": %" PRIu64 ",\n  \"sla_alerts\": %" PRIu64
	        ",\n  \"unexpected\": %" PRIu64 ",\n",
	        b->busy, b->sla_alerts, b->unexpected + b->foreign);
	fprintf(f, "  \"sessions_closed\": {\"customer\": %u, \"agent\": %u},\n", b->nb_closed_c,
	        b->nb_closed_a);
	fprintf(f,
	        "  \"transport\": {\"retransmits\": %" PRIu64 ", \"send_errors\": %" PRIu64
	        ", \"router_duplicates\": %" PRIu64 ", \"router_dropped\": %" PRIu64 "}\n",
	        t.retransmits, t.tx_errors, t.rx_duplicates, t.rx_dropped);
	fprintf(f, "}\n");
	if (fclose(f) != 0)
		return -errno;
	return 0;
}

/* ---- main ----------------------------------------------------------------- */

static int bench_setup(struct bench *b)
{
	uint64_t cap = 16;
	size_t map;

	while (cap < 2ull * b->o.customers)
		cap <<= 1;
	b->sid_mask = cap - 1;
	b->sessions = calloc(b->o.customers, sizeof(*b->sessions));
	b->agents = calloc(b->o.agents, sizeof(*b->agents));
	b->sid_keys = calloc(cap, sizeof(*b->sid_keys));
	b->sid_index = calloc(cap, sizeof(*b->sid_index));
	b->ns_per_msg = NS_PER_S / b->o.rate;
	b->total = (uint64_t)ceil((b->o.warmup + b->o.duration) * b->o.rate);
	map = (size_t)(b->total / 8 + 1);
	b->fwd_seen = calloc(map, 1);
	b->rt_seen = calloc(map, 1);
	if (!b->sessions || !b->agents || !b->sid_keys || !b->sid_index || !b->fwd_seen ||
	    !b->rt_seen)
		return -ENOMEM;
	for (unsigned i = 0; i < b->o.customers; i++)
		b->sessions[i].agent = NONE;
	memset(b->text, 'm', b->o.text_bytes);
	memset(b->echo_text, 'e', b->o.text_bytes < 200 ? b->o.text_bytes : 200);
	bench_hist_init(&b->fwd);
	bench_hist_init(&b->rt);
	bench_hist_init(&b->fwd_live);
	snprintf(b->tag, sizeof(b->tag), "b%lx%x", (unsigned long)time(NULL) & 0xfffff,
	         (unsigned)getpid() & 0xfff);

	for (unsigned i = 0; i < b->o.nb_cgw + b->o.nb_agw; i++) {
		uint32_t id =
		        i < b->o.nb_cgw ? b->o.customer_gw + i : b->o.agent_gw + (i - b->o.nb_cgw);

		b->gws[i] = gw_open(id, &b->o.router, b->o.have_bind ? &b->o.bind : NULL);
		if (!b->gws[i]) {
			fprintf(stderr, "surge-bench: cannot open gateway %u: %s\n", id,
			        strerror(errno));
			return -errno;
		}
		b->nb_gws++;
	}
	return 0;
}

static void bench_teardown(struct bench *b)
{
	for (unsigned i = 0; i < b->nb_gws; i++)
		gw_close(b->gws[i]);
	free(b->sessions);
	free(b->agents);
	free(b->sid_keys);
	free(b->sid_index);
	free(b->fwd_seen);
	free(b->rt_seen);
}

int main(int argc, char **argv)
{
	static struct bench bench;
	struct bench *b = &bench;
	struct sigaction sa = {.sa_handler = on_signal};
	int rc = 0;

	if (parse_opts(argc, argv, &b->o) < 0) {
		usage(stderr);
		return EXIT_USAGE;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* wake-ups close to the due times of the schedule */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);

	if (bench_setup(b) < 0) {
		rc = EXIT_SETUP;
		goto out_teardown;
	}
	if (!b->o.quiet)
		fprintf(stderr, "surge-bench: run %s: logging in %u agents\n", b->tag, b->o.agents);
	if (login_agents(b) < 0) {
		rc = EXIT_SETUP;
		goto out_teardown;
	}
	if (!b->o.quiet)
		fprintf(stderr, "surge-bench: opening %u sessions\n", b->o.customers);
	if (open_sessions(b) < 0) {
		rc = EXIT_SETUP;
		goto out_end_sessions;
	}
	if (!b->o.quiet)
		fprintf(stderr, "surge-bench: sending %.0f msgs/s for %.1f s (+%.1f s warmup)\n",
		        b->o.rate, b->o.duration, b->o.warmup);
	run_load(b);
	end_sessions(b);
	report_text(b, stdout);
	fflush(stdout);
	if (b->o.json) {
		int err = report_json(b, b->o.json);

		if (err < 0)
			fprintf(stderr, "surge-bench: cannot write %s: %s\n", b->o.json,
			        strerror(-err));
	}
	if (b->o.strict && (b->fwd_dup || b->rt_dup || b->fwd_unique < b->sent || echo_missing(b) ||
	                    b->echo_failed))
		rc = EXIT_LOSS;
	goto out_teardown;

out_end_sessions:
	end_sessions(b);
out_teardown:
	bench_teardown(b);
	return rc;
}
