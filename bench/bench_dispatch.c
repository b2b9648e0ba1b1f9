/* SPDX-License-Identifier: MIT */
/*
 * bench_dispatch: the routing engine's cost on one core, without I/O.
 *
 * Steady state: N agents of capacity 4 in one skill, S sessions assigned and
 * Q waiting. One cycle = the life of one session, four API calls (four ops):
 * a customer message and an agent reply on a random assigned session, the
 * agent's close (which, with a queue, assigns its head to the freed agent),
 * and a new SessionOpen (assigned at once, or queued at the tail). So the
 * populations stay constant while every kind of assignment happens.
 *
 * Two sweeps: agents 1k -> 100k with no queue (75% of the capacity in use, so
 * each open picks among agents with room), and waiting sessions 10k -> 1M
 * behind 1k full agents. The same driver runs a naive dispatcher written here
 * (linear scan for the least loaded agent, a FIFO array for the queue) as the
 * baseline: what a simple implementation costs on the same machine and the
 * same harness (its cost includes the driver's, as the engine's does).
 *
 * Bursts: the driver runs the cycles 8 at a time (32 requests, as the router
 * processes bursts): it picks the burst's sessions, tells the implementation
 * the burst's requests (the engine hands them to disp_prefetch, which only
 * loads lines), then makes them in order, each exactly as alone. Every
 * implementation goes through that driver; engine-seq is the engine without
 * the prefetch, to show what the bursts buy, naive has none. The driver
 * alone (every call answered at once) is measured in the same rounds, at
 * the agent sweep's sizes: its random picks in a table of every assigned
 * session grow with the sessions too, and the report gives the engine's
 * growth also net of that.
 *
 * Memory: the engine allocates everything at creation (logins reserve the
 * least-loaded entries' chunks), so a session costs what one more unit of
 * max_sessions (a slot) and of queue_capacity adds: measured with
 * disp_footprint, every agent logged in.
 *
 * Wall-clock time on a small shared VM is noisy and, at the largest sizes,
 * dominated by cache misses (random sessions and agents far beyond the last
 * level cache). So --callgrind, run under valgrind's callgrind, measures what
 * the clock cannot separate: after the same warm-up, a fixed number of cycles
 * per size and implementation between callgrind client requests, each dumped
 * as "<impl>-<sweep>-<size>": the instructions executed (the algorithmic cost,
 * deterministic) and, with --cache-sim=yes, the simulated last-level misses.
 * bench/run.sh runs it and renders the dumps. Outside valgrind it refuses.
 *
 * --only IMPL-SWEEP-SIZE (e.g. engine-agents-100000, driver-agents-1000)
 * runs one measurement and prints also this thread's CPU time per op: for
 * comparing binaries on a shared machine.
 *
 * Rounds: every measurement runs --rounds times (3), the rounds alternated
 * (all sizes, sweeps and implementations, then again), and the round with
 * the median ns/op is reported: a minute of noise on this shared VM then
 * moves one round of each size, not one size's only run (the growth is a
 * ratio of two sizes measured seconds apart).
 *
 * One core: the process pins itself to the last CPU it may run on (--cpu N
 * for another, -1 for none). On this VM the two vCPUs ran the same binary
 * up to 60% apart (1k agents: 89 vs 146 ns/op, each steady within 2%; which
 * one is slower changes with the host), so an unpinned run's figures depend
 * on where the scheduler put it, round by round.
 *
 * Usage: bench_dispatch [--json FILE] [--seconds S (per measurement, 0.4)] [--rounds R (3)]
 *                       [--cpu N]
 *        valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no [--cache-sim=yes] \
 *            bench_dispatch --callgrind [--cycles N (20000)] [--json FILE]
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* valgrind's client requests (package valgrind, a dependency): no-ops outside valgrind */
#include <valgrind/callgrind.h>
#include <valgrind/valgrind.h>

#include "dispatch.h"

#define AGW        1u
#define CGW        2u
#define CAPACITY   4u
#define NAME_LEN   12u
#define SKILL      "chat"
#define TICK_EVERY 1024u /* cycles per virtual ms (and per disp_tick) */
#define BURST      8u    /* cycles per burst: 32 requests, as the router's bursts */

static double g_seconds = 0.4;
static int g_rounds = 3;     /* alternated rounds of every measurement; the median is reported */
static uint64_t g_cg_cycles; /* --callgrind: cycles per measured window, else 0 */
static const char *g_only;   /* --only: the one <impl>-<sweep>-<size> to run, for profiling */
static int g_cpu = -2;       /* --cpu: -2 the last allowed, -1 unpinned */

/* Pin to g_cpu (the last CPU allowed if -2): the CPU, or -1 if unpinned. */
static int pin_cpu(void)
{
	cpu_set_t set;
	int cpu = g_cpu;

	if (cpu == -1)
		return -1;
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return -1;
	if (cpu == -2)
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set))
				cpu = c;
	if (cpu < 0 || cpu >= CPU_SETSIZE)
		return -1;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		perror("bench_dispatch: sched_setaffinity");
		return -1;
	}
	return cpu;
}

/* Under callgrind, naive's scan of every agent per open makes 100k agents
 * take minutes (about 0.5 M instructions per cycle): that size is skipped. */
#define CG_NAIVE_MAX_AGENTS 10000u

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This thread's CPU time: unlike the wall clock, blind to being preempted on a shared VM. */
static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---- the driver, common to both implementations ---------------------------- */

struct impl;

/*
 * An assigned session the driver may pick: its id, its agent and the agent's
 * name, in one 32-byte record. What a request names arrives with it in one
 * line, as a request's fields arrive in the router's received frame; three
 * separate arrays (ids, agents, names) cost the driver three random lines per
 * cycle at 100k agents, charged to whichever dispatcher it drives.
 */
struct act {
	uint64_t sid;
	uint32_t agent;
	uint8_t name_len;
	char name[NAME_LEN];
} __attribute__((aligned(32)));

_Static_assert(sizeof(struct act) == 32, "one record, half a line");

struct driver {
	const struct impl *impl;
	void *h;
	struct act *act; /* assigned sessions */
	uint32_t nb_act, cap_act;
	struct disp_str cur_agent; /* the agent of the cycle being run */
	uint64_t now, ref, msg, rng;
	uint64_t failures;    /* refusals, Busy, unexpected answers */
	uint64_t draw[BURST]; /* the next burst's random draws, drawn a burst ahead */
};

struct impl {
	const char *name;
	int (*open)(struct driver *d, uint64_t ref);
	int (*cmsg)(struct driver *d, uint64_t sid);
	int (*amsg)(struct driver *d, uint64_t sid, uint32_t agent);
	int (*close)(struct driver *d, uint64_t sid, uint32_t agent);
	void (*tick)(struct driver *d);
	/* Told each burst's requests before they are made; NULL: one by one. */
	void (*prefetch)(struct driver *d, const struct disp_req *reqs, uint32_t n);
};

/* Agent a's name, "a<a>", into buf[NAME_LEN]; its length. */
static uint8_t agent_name(char *buf, uint32_t a)
{
	char tmp[NAME_LEN];
	uint8_t n = 0, len = 1;

	do {
		tmp[n++] = (char)('0' + a % 10);
		a /= 10;
	} while (a);
	buf[0] = 'a';
	while (n)
		buf[len++] = tmp[--n];
	return len;
}

static void act_push(struct driver *d, uint64_t sid, uint32_t agent)
{
	struct act *x;

	if (d->nb_act == d->cap_act) {
		d->failures++;
		return;
	}
	x = &d->act[d->nb_act++];
	x->sid = sid;
	x->agent = agent;
	x->name_len = agent_name(x->name, agent);
}

/* ---- the engine -------------------------------------------------------------- */

static uint32_t parse_agent(struct disp_str id)
{
	uint32_t v = 0;

	for (uint32_t i = 1; i < id.len; i++)
		v = v * 10 + (uint32_t)(id.ptr[i] - '0');
	return v;
}

static void eng_emit(void *ctx, const struct disp_out *o)
{
	struct driver *d = ctx;

	if (o->kind == DISP_OUT_ASSIGNED && o->to_agent)
		act_push(d, o->session_id, parse_agent(o->agent_id));
	else if (o->kind == DISP_OUT_BUSY || o->kind == DISP_OUT_ERROR)
		d->failures++;
}

static int eng_open(struct driver *d, uint64_t ref)
{
	char cid[24], *p = cid + sizeof(cid);
	uint64_t v = ref;
	struct disp_open req = {
	        .open_ref = ref,
	        .skill = {SKILL, sizeof(SKILL) - 1},
	        .channel = 1,
	};

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	*--p = 'c';
	req.customer_id = (struct disp_str){p, (uint32_t)(cid + sizeof(cid) - p)};
	return disp_session_open(d->h, CGW, &req, d->now);
}

static int eng_cmsg(struct driver *d, uint64_t sid)
{
	return disp_customer_message(d->h, CGW, sid, ++d->msg, (struct disp_str){"hello", 5},
	                             (struct disp_str){NULL, 0}, d->now);
}

static int eng_amsg(struct driver *d, uint64_t sid, uint32_t agent)
{
	(void)agent;
	return disp_agent_message(d->h, AGW, sid, d->cur_agent, ++d->msg,
	                          (struct disp_str){"hi, how can I help?", 19},
	                          (struct disp_str){NULL, 0}, false, d->now);
}

static int eng_close(struct driver *d, uint64_t sid, uint32_t agent)
{
	(void)agent;
	return disp_agent_close(d->h, AGW, sid, d->cur_agent, (struct disp_str){"done", 4}, d->now);
}

static void eng_tick(struct driver *d)
{
	disp_tick(d->h, d->now);
}

static void eng_prefetch(struct driver *d, const struct disp_req *reqs, uint32_t n)
{
	disp_prefetch(d->h, reqs, n);
}

static const struct impl engine_impl = {"engine",  eng_open, eng_cmsg,    eng_amsg,
                                        eng_close, eng_tick, eng_prefetch};
/* The same engine without the burst's prefetch: what the bursts buy. */
static const struct impl engine_seq_impl = {"engine-seq", eng_open, eng_cmsg, eng_amsg,
                                            eng_close,    eng_tick, NULL};

static struct disp_engine *eng_create(struct driver *d, uint32_t agents, uint32_t sessions,
                                      uint32_t queue)
{
	struct disp_skill_conf skill = {.name = SKILL, .queue_capacity = queue};
	struct disp_conf c = {
	        .skills = &skill,
	        .nb_skills = 1,
	        .max_agents = agents,
	        .max_sessions = sessions,
	        .backlog_max = 8,
	        .heartbeat_timeout_ms = UINT32_MAX,
	        .emit = eng_emit,
	        .emit_ctx = d,
	};

	return disp_create(&c);
}

/* Log agents 0 .. agents-1 in, each with the one skill and CAPACITY: the logins refused. */
static uint64_t eng_login_all(struct disp_engine *e, uint32_t agents, uint64_t now)
{
	const struct disp_skill_level lvl = {{SKILL, sizeof(SKILL) - 1}, 3};
	uint64_t refused = 0;

	for (uint32_t a = 0; a < agents; a++) {
		char name[NAME_LEN];
		struct disp_login req = {.agent_id = {name, agent_name(name, a)},
		                         .skills = &lvl,
		                         .nb_skills = 1,
		                         .max_sessions = CAPACITY};

		refused += disp_agent_login(e, AGW, &req, now) < 0;
	}
	return refused;
}

/* ---- the naive baseline ------------------------------------------------------- */

struct naive_agent {
	uint32_t load;
	uint64_t idle_since;
};

struct naive_sess {
	uint32_t gen;
	uint32_t state; /* 0 free, 1 queued, 2 assigned */
	uint32_t agent;
	uint32_t next_free;
	uint64_t opened, ref, msgs;
	char cid[24];
};

struct naive {
	struct naive_agent *agents;
	uint32_t nb_agents;
	struct naive_sess *sess;
	uint32_t nb_sess, free_head;
	uint32_t *q; /* ring of waiting slots */
	uint32_t q_cap, q_head, q_len;
};

static uint64_t naive_id(const struct naive *n, uint32_t slot)
{
	return ((uint64_t)n->sess[slot].gen << 32) | (slot + 1);
}

static struct naive_sess *naive_find(struct naive *n, uint64_t sid, uint32_t state)
{
	uint32_t slot = (uint32_t)sid - 1;

	if (slot >= n->nb_sess || n->sess[slot].gen != (uint32_t)(sid >> 32) ||
	    n->sess[slot].state != state)
		return NULL;
	return &n->sess[slot];
}

static void naive_assign(struct driver *d, uint32_t slot, uint32_t agent)
{
	struct naive *n = d->h;

	n->sess[slot].state = 2;
	n->sess[slot].agent = agent;
	n->agents[agent].load++;
	act_push(d, naive_id(n, slot), agent);
}

/* least loaded with room, then idle the longest: a scan of every agent */
static uint32_t naive_pick(const struct naive *n)
{
	uint32_t best = UINT32_MAX;

	for (uint32_t a = 0; a < n->nb_agents; a++) {
		const struct naive_agent *g = &n->agents[a];

		if (g->load >= CAPACITY)
			continue;
		if (best == UINT32_MAX || g->load < n->agents[best].load ||
		    (g->load == n->agents[best].load && g->idle_since < n->agents[best].idle_since))
			best = a;
	}
	return best;
}

static int naive_open_hint(struct driver *d, uint64_t ref, uint32_t hint)
{
	struct naive *n = d->h;
	uint32_t slot = n->free_head, agent;
	struct naive_sess *s;

	if (slot == UINT32_MAX)
		return -EBUSY;
	s = &n->sess[slot];
	n->free_head = s->next_free;
	s->state = 1;
	s->opened = d->now;
	s->ref = ref;
	s->msgs = 0;
	snprintf(s->cid, sizeof(s->cid), "c%llu", (unsigned long long)ref);
	agent = hint != UINT32_MAX ? hint : naive_pick(n);
	if (agent != UINT32_MAX && n->agents[agent].load < CAPACITY) {
		naive_assign(d, slot, agent);
		return 0;
	}
	if (n->q_len == n->q_cap)
		return -EBUSY;
	n->q[(n->q_head + n->q_len++) % n->q_cap] = slot;
	return 0;
}

static int naive_open(struct driver *d, uint64_t ref)
{
	return naive_open_hint(d, ref, UINT32_MAX);
}

static int naive_cmsg(struct driver *d, uint64_t sid)
{
	struct naive_sess *s = naive_find(d->h, sid, 2);

	if (!s)
		return -EINVAL;
	s->msgs++;
	return 0;
}

static int naive_amsg(struct driver *d, uint64_t sid, uint32_t agent)
{
	struct naive_sess *s = naive_find(d->h, sid, 2);

	if (!s || s->agent != agent)
		return -EPERM;
	s->msgs++;
	return 0;
}

static int naive_close(struct driver *d, uint64_t sid, uint32_t agent)
{
	struct naive *n = d->h;
	struct naive_sess *s = naive_find(n, sid, 2);
	uint32_t slot;

	if (!s || s->agent != agent)
		return -EPERM;
	slot = (uint32_t)(s - n->sess);
	s->state = 0;
	s->gen++;
	s->next_free = n->free_head;
	n->free_head = slot;
	if (--n->agents[agent].load == 0)
		n->agents[agent].idle_since = d->now;
	if (n->q_len) {
		uint32_t head = n->q[n->q_head];

		n->q_head = (n->q_head + 1) % n->q_cap;
		n->q_len--;
		naive_assign(d, head, agent);
	}
	return 0;
}

static void naive_tick(struct driver *d)
{
	(void)d;
}

static const struct impl naive_impl = {"naive",     naive_open, naive_cmsg, naive_amsg,
                                       naive_close, naive_tick, NULL};

static struct naive *naive_create(uint32_t agents, uint32_t sessions, uint32_t queue)
{
	struct naive *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->agents = calloc(agents, sizeof(*n->agents));
	n->sess = calloc(sessions, sizeof(*n->sess));
	n->q = calloc(queue, sizeof(*n->q));
	if (!n->agents || !n->sess || !n->q) {
		free(n->agents);
		free(n->sess);
		free(n->q);
		free(n);
		return NULL;
	}
	n->nb_agents = agents;
	n->nb_sess = sessions;
	n->q_cap = queue;
	for (uint32_t i = 0; i < sessions; i++)
		n->sess[i].next_free = i + 1 < sessions ? i + 1 : UINT32_MAX;
	n->free_head = 0;
	return n;
}

static void naive_destroy(struct naive *n)
{
	if (!n)
		return;
	free(n->agents);
	free(n->sess);
	free(n->q);
	free(n);
}

/* ---- the driver alone ------------------------------------------------------------ */

/*
 * No dispatcher: every call is answered at once, an open by assigning the
 * agent whose close came just before (as least-loaded does here). What is
 * left is the driver's own cost: its random picks in the table of every
 * assigned session (10 MB at 100k agents, whose pages the TLB does not
 * hold), building the requests, the calls. Measured in the same rounds so
 * that the engine's figures can be read net of it.
 */
struct driver_only {
	uint64_t sid;
	uint32_t agent; /* the agent of the last close */
};

static int drv_open(struct driver *d, uint64_t ref)
{
	struct driver_only *x = d->h;

	(void)ref;
	act_push(d, ++x->sid, x->agent);
	return 0;
}

static int drv_cmsg(struct driver *d, uint64_t sid)
{
	(void)d;
	(void)sid;
	return 0;
}

static int drv_amsg(struct driver *d, uint64_t sid, uint32_t agent)
{
	(void)d;
	(void)sid;
	(void)agent;
	return 0;
}

static int drv_close(struct driver *d, uint64_t sid, uint32_t agent)
{
	struct driver_only *x = d->h;

	(void)sid;
	x->agent = agent;
	return 0;
}

static void drv_tick(struct driver *d)
{
	(void)d;
}

static const struct impl driver_impl = {"driver",  drv_open, drv_cmsg, drv_amsg,
                                        drv_close, drv_tick, NULL};

/* ---- one measurement ----------------------------------------------------------- */

static bool is_engine(const struct impl *im)
{
	return im == &engine_impl || im == &engine_seq_impl;
}

#define MAX_ROUNDS 15

struct result {
	const char *impl;
	const char *sweep;
	uint32_t agents;
	uint32_t active;
	uint32_t waiting;
	uint64_t ops;
	double seconds;
	double ops_per_s;
	double ns_per_op;
	double cpu_ns_per_op; /* the same in this thread's CPU time */
	uint64_t failures;
	double round_ns[MAX_ROUNDS]; /* ns/op of every round (the reported result is the median's)
	                              */
	int rounds;
};

/* Take a random assigned session (and its agent) off the list: draw j of the burst. */
static void pick(struct driver *d, uint32_t j, struct act *out)
{
	uint32_t i = (uint32_t)(d->draw[j] % d->nb_act);

	*out = d->act[i];
	d->act[i] = d->act[--d->nb_act];
}

/*
 * n cycles, in bursts of BURST: the burst's sessions are picked first, the
 * implementation is told the burst's requests (if it wants them), then the
 * cycles run in order, each exactly as alone. Every implementation runs
 * through here; sessions assigned during a burst can be picked from the next.
 * The random draws of the next burst are made a burst ahead and their
 * records prefetched meanwhile (a request's fields arrive with it, in the
 * router's received frame). That does not take the driver's 10 MB table at
 * 100k agents out of the figures on this VM (a prefetch does not walk the
 * pages the TLB misses, and the picks wait for those walks): the driver
 * alone is measured (driver_impl) and reported beside.
 */
static void run_cycles(struct driver *d, uint64_t n)
{
	const struct impl *im = d->impl;

	for (uint64_t c = 0; c < n;) {
		uint32_t b = n - c < BURST ? (uint32_t)(n - c) : BURST;
		struct disp_req reqs[4 * BURST];
		struct act pk[BURST];

		if (d->nb_act < b) {
			d->failures++;
			return;
		}
		for (uint32_t j = 0; j < b; j++) {
			struct disp_str name;

			pick(d, j, &pk[j]);
			name = (struct disp_str){pk[j].name, pk[j].name_len};
			reqs[4 * j] =
			        (struct disp_req){DISP_REQ_CUSTOMER_MESSAGE, pk[j].sid, {NULL, 0}};
			reqs[4 * j + 1] =
			        (struct disp_req){DISP_REQ_AGENT_MESSAGE, pk[j].sid, name};
			reqs[4 * j + 2] = (struct disp_req){DISP_REQ_AGENT_CLOSE, pk[j].sid, name};
			reqs[4 * j + 3] = (struct disp_req){DISP_REQ_OPEN, 0, {NULL, 0}};
		}
		for (uint32_t j = 0; j < BURST; j++) {
			d->draw[j] = xorshift(&d->rng);
			__builtin_prefetch(&d->act[d->draw[j] % d->nb_act]);
		}
		if (im->prefetch)
			im->prefetch(d, reqs, 4 * b);
		for (uint32_t j = 0; j < b; j++) {
			uint64_t sid = pk[j].sid;
			uint32_t agent = pk[j].agent;

			d->cur_agent = (struct disp_str){pk[j].name, pk[j].name_len};
			if (im->cmsg(d, sid) | im->amsg(d, sid, agent) | im->close(d, sid, agent) |
			    im->open(d, ++d->ref))
				d->failures++;
			if ((d->ref & (TICK_EVERY - 1)) == 0) {
				d->now++;
				im->tick(d);
			}
		}
		c += b;
	}
}

static int measure(const struct impl *im, const char *sweep, uint32_t agents, uint32_t waiting,
                   struct result *r)
{
	uint32_t opened = waiting ? agents * CAPACITY + waiting : agents * CAPACITY * 3 / 4;
	uint32_t sessions = agents * CAPACITY + waiting + 1024, queue = waiting + 1024;
	struct driver d = {.impl = im, .now = 1, .rng = 0x2545f4914f6cdd1dull};
	uint64_t ops = 0;
	double t0, t, c0;
	int rc = -ENOMEM;

	d.cap_act = agents * CAPACITY + 1;
	d.act = aligned_alloc(32, d.cap_act * sizeof(*d.act));
	if (!d.act)
		goto out_free;

	if (im == &driver_impl) {
		struct driver_only *x = calloc(1, sizeof(*x));

		d.h = x;
		if (!x)
			goto out_free;
		for (uint32_t k = 0; k < opened; k++) {
			x->agent = k % agents;
			if (im->open(&d, ++d.ref) < 0)
				d.failures++;
		}
	} else if (is_engine(im)) {
		d.h = eng_create(&d, agents, sessions, queue);
		if (!d.h)
			goto out_free;
		d.failures += eng_login_all(d.h, agents, d.now);
		for (uint32_t k = 0; k < opened; k++)
			if (im->open(&d, ++d.ref) < 0)
				d.failures++;
	} else {
		d.h = naive_create(agents, sessions, queue);
		if (!d.h)
			goto out_free;
		/* fill round-robin: a scan per open would take minutes at 100k agents */
		for (uint32_t k = 0; k < opened; k++)
			if (naive_open_hint(&d, ++d.ref,
			                    k < agents * CAPACITY ? k % agents : UINT32_MAX) < 0)
				d.failures++;
	}

	/* Under callgrind the setup runs uninstrumented (--instr-atstart=no), fast;
	 * the simulated caches then warm up with the cycles, like the real ones. */
	for (uint32_t j = 0; j < BURST; j++)
		d.draw[j] = xorshift(&d.rng);
	if (g_cg_cycles)
		CALLGRIND_START_INSTRUMENTATION;
	/* warm up (caches, branch predictors), then whole batches until the time is up */
	run_cycles(&d, im != &naive_impl ? 100000 : 2000);
	t0 = now_s();
	c0 = cpu_s();
	if (g_cg_cycles) {
		/* naive costs up to 0.5 M instructions a cycle: a tenth suffices */
		uint64_t n = is_engine(im) ? g_cg_cycles : g_cg_cycles / 10;
		char name[64];

		/* --collect-atstart=no: collection is off until the toggle */
		snprintf(name, sizeof(name), "%s-%s-%u", im->name, sweep,
		         waiting ? waiting : agents);
		CALLGRIND_ZERO_STATS;
		CALLGRIND_TOGGLE_COLLECT;
		run_cycles(&d, n);
		CALLGRIND_TOGGLE_COLLECT;
		CALLGRIND_DUMP_STATS_AT(name);
		CALLGRIND_STOP_INSTRUMENTATION;
		ops = 4 * n;
	} else {
		do {
			run_cycles(&d, 256);
			ops += 4 * 256;
		} while (now_s() - t0 < g_seconds);
	}
	t = now_s() - t0;
	r->cpu_ns_per_op = (cpu_s() - c0) * 1e9 / (double)ops;

	r->impl = im->name;
	r->sweep = sweep;
	r->agents = agents;
	r->active = d.nb_act;
	r->waiting = opened - d.nb_act;
	r->ops = ops;
	r->seconds = t;
	r->ops_per_s = (double)ops / t;
	r->ns_per_op = t * 1e9 / (double)ops;
	r->failures = d.failures;
	rc = 0;

	if (im == &driver_impl)
		free(d.h);
	else if (is_engine(im))
		disp_destroy(d.h);
	else
		naive_destroy(d.h);
out_free:
	free(d.act);
	return rc;
}

/* ---- memory per unit ------------------------------------------------------------ */

/* Bytes the engine holds for this configuration, every agent logged in (a login reserves
 * its least-loaded entries); 0 if it cannot be created. */
static uint64_t engine_bytes(uint32_t agents, uint32_t sessions, uint32_t queue)
{
	struct driver d = {0};
	struct disp_engine *e = eng_create(&d, agents, sessions, queue);
	uint64_t bytes;

	if (!e)
		return 0;
	if (eng_login_all(e, agents, 1)) {
		disp_destroy(e);
		return 0;
	}
	bytes = disp_footprint(e);
	disp_destroy(e);
	return bytes;
}

struct memory {
	double per_session_slot;
	double per_queue_slot;
	double per_agent;
	uint64_t base; /* 1k agents, 64k sessions, queue 1k */
};

static void memory_measure(struct memory *m)
{
	const uint32_t a0 = 1024, s0 = 65536, q0 = 1024, big = 1u << 20;
	uint64_t base = engine_bytes(a0, s0, q0);

	m->base = base;
	m->per_session_slot = ((double)engine_bytes(a0, big, q0) - (double)base) / (big - s0);
	m->per_queue_slot = ((double)engine_bytes(a0, s0, big) - (double)base) / (big - q0);
	m->per_agent = ((double)engine_bytes(128 * a0, s0, q0) - (double)base) / (127 * a0);
}

/* ---- the machine's floor ------------------------------------------------------------ */

/*
 * What this machine charges for random lines at the engine's two footprints,
 * without the engine: per cycle, `lines` independent random lines of an area
 * as large as the engine at 1k (small) or 100k agents (large), each read and
 * written, loaded one burst ahead as a perfect prefetch would (or not at all),
 * around a fixed amount of work calibrated to the engine's own cycle at 1k
 * agents. Its growth is the least that any design touching that many random
 * lines per cycle pays here; the engine's growth is set against it.
 */
#define FLOOR_CYCLES 200000u
#define FLOOR_REPS   5

struct floor_row {
	uint32_t lines;
	bool ahead;
	double small_ns, large_ns; /* per cycle, median of FLOOR_REPS */
};

static const struct {
	uint32_t lines;
	bool ahead;
} floor_cases[] = {{0, true}, {4, true}, {8, true}, {12, true}, {16, true}, {8, false}};
#define NB_FLOOR (sizeof(floor_cases) / sizeof(floor_cases[0]))

struct floor_report {
	uint64_t small_bytes, large_bytes;
	uint32_t work;    /* iterations of the work loop per cycle */
	double target_ns; /* the engine's cycle at 1k agents it was calibrated to */
	struct floor_row rows[NB_FLOOR];
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static volatile uint64_t floor_sink;

/* ns per cycle over an area of `bytes`, median of FLOOR_REPS runs. */
static double floor_cycle_ns(unsigned char *area, uint64_t bytes, uint32_t lines, uint32_t work,
                             bool ahead)
{
	static uint32_t idx[2][BURST * 16];
	uint64_t nlines = bytes / 64, rng = 0x9e3779b97f4a7c15ull, sink = 0;
	double ns[FLOOR_REPS];

	for (int rep = 0; rep < FLOOR_REPS; rep++) {
		int cur = 0;
		double t0;

		for (uint32_t j = 0; j < BURST * lines; j++)
			idx[cur][j] = (uint32_t)(xorshift(&rng) % nlines);
		t0 = now_s();
		for (uint32_t c = 0; c < FLOOR_CYCLES; c += BURST) {
			int nx = cur ^ 1;

			for (uint32_t j = 0; j < BURST * lines; j++) {
				idx[nx][j] = (uint32_t)(xorshift(&rng) % nlines);
				if (ahead)
					__builtin_prefetch(area + (uint64_t)idx[nx][j] * 64, 1);
			}
			for (uint32_t b = 0; b < BURST; b++) {
				uint64_t acc = c + b;

				/* independent of the lines: an out-of-order core overlaps them */
				for (uint32_t w = 0; w < work; w++)
					acc = acc * 6364136223846793005ull + w;
				for (uint32_t k = 0; k < lines; k++)
					area[(uint64_t)idx[cur][b * lines + k] * 64] +=
					        (unsigned char)acc;
				sink += acc;
			}
			cur = nx;
		}
		ns[rep] = (now_s() - t0) * 1e9 / FLOOR_CYCLES;
	}
	floor_sink = sink; /* the work is kept */
	qsort(ns, FLOOR_REPS, sizeof(ns[0]), cmp_double);
	return ns[FLOOR_REPS / 2];
}

/*
 * Calibrate the work to target_ns a cycle, then measure every case at both
 * sizes: the session slots and agents of the agent sweep's ends (what the
 * cycles touch; the text pool, mostly idle, is left out).
 */
static int floor_measure(struct floor_report *fr, const struct memory *m, double target_ns)
{
	unsigned char *small, *large;
	uint32_t work = 256;

	fr->small_bytes =
	        (uint64_t)((1000 * CAPACITY + 1024) * m->per_session_slot + 1000 * m->per_agent);
	fr->large_bytes = (uint64_t)((100000 * CAPACITY + 1024) * m->per_session_slot +
	                             100000 * m->per_agent);
	fr->target_ns = target_ns;
	if (fr->small_bytes < 64 || fr->large_bytes < 64)
		return -1;
	small = malloc(fr->small_bytes);
	large = malloc(fr->large_bytes);
	if (!small || !large) {
		free(small);
		free(large);
		return -1;
	}
	memset(small, 1, fr->small_bytes);
	memset(large, 1, fr->large_bytes);
	for (int i = 0; i < 3; i++) {
		double t = floor_cycle_ns(small, fr->small_bytes, 0, work, true);

		if (t > 0)
			work = (uint32_t)((double)work * target_ns / t + 0.5);
	}
	fr->work = work;
	for (size_t i = 0; i < NB_FLOOR; i++) {
		struct floor_row *r = &fr->rows[i];

		r->lines = floor_cases[i].lines;
		r->ahead = floor_cases[i].ahead;
		r->small_ns = floor_cycle_ns(small, fr->small_bytes, r->lines, work, r->ahead);
		r->large_ns = floor_cycle_ns(large, fr->large_bytes, r->lines, work, r->ahead);
	}
	free(small);
	free(large);
	return 0;
}

/* ---- report ---------------------------------------------------------------------- */

static void print_row(const struct result *r)
{
	printf("%-7s %-7s %8u %8u %8u %10.2f %8.1f%s\n", r->impl, r->sweep, r->agents, r->active,
	       r->waiting, r->ops_per_s / 1e6, r->ns_per_op, r->failures ? "  (failures!)" : "");
}

static void json_row(FILE *f, const struct result *r, bool last)
{
	fprintf(f,
	        "    {\"impl\": \"%s\", \"sweep\": \"%s\", \"agents\": %u, \"active\": %u, "
	        "\"waiting\": %u, \"ops\": %llu, \"seconds\": %.4f, \"ops_per_s\": %.0f, "
	        "\"ns_per_op\": %.2f, \"failures\": %llu, \"ns_per_op_rounds\": [",
	        r->impl, r->sweep, r->agents, r->active, r->waiting, (unsigned long long)r->ops,
	        r->seconds, r->ops_per_s, r->ns_per_op, (unsigned long long)r->failures);
	for (int i = 0; i < r->rounds; i++)
		fprintf(f, "%s%.2f", i ? ", " : "", r->round_ns[i]);
	fprintf(f, "]}%s\n", last ? "" : ",");
}

/* Keep round `round` of a measurement: the reported result becomes the median round's. */
static void keep_round(struct result *med, const struct result *all, int round)
{
	double sorted[MAX_ROUNDS] = {0};
	int n = round + 1, m = 0;

	for (int i = 0; i < n; i++)
		sorted[i] = all[i].ns_per_op;
	qsort(sorted, (size_t)n, sizeof(sorted[0]), cmp_double);
	/* the median of n (the lower one of an even n), and the round that gave it */
	while (all[m].ns_per_op != sorted[(n - 1) / 2])
		m++;
	*med = all[m];
	med->rounds = n;
	for (int i = 0; i < n; i++)
		med->round_ns[i] = all[i].ns_per_op;
}

#define NB_IMPLS 3 /* engine (bursts), engine-seq (no prefetch), naive: the report's order */
#define NB_SIZES 3
static const uint32_t agent_sizes[NB_SIZES] = {1000, 10000, 100000};
static const uint32_t queue_sizes[NB_SIZES] = {10000, 100000, 1000000};
#define QUEUE_AGENTS 1000u

/* One --callgrind window; FILE lists the windows so the report can divide the
 * dumped counts by their ops. 1 if skipped, 0 done, -1 on error. */
static int callgrind_window(FILE *f, const struct impl *im, const char *sweep, uint32_t agents,
                            uint32_t waiting, bool first, uint64_t *failures)
{
	uint32_t size = waiting ? waiting : agents;
	double t0 = now_s();
	struct result r;
	char name[64];

	snprintf(name, sizeof(name), "%s-%s-%u", im->name, sweep, size);

	if (g_only && strcmp(g_only, name))
		return 1;
	if (im == &naive_impl && agents > CG_NAIVE_MAX_AGENTS) {
		printf("  %s-%s-%u: skipped (a scan of every agent per open takes minutes "
		       "under valgrind)\n",
		       im->name, sweep, size);
		return 1;
	}
	if (measure(im, sweep, agents, waiting, &r) < 0)
		return -1;
	printf("  %s-%s-%u: %llu ops, %u assigned, %u waiting, %.0f s under valgrind%s\n", r.impl,
	       r.sweep, size, (unsigned long long)r.ops, r.active, r.waiting, now_s() - t0,
	       r.failures ? "  (failures!)" : "");
	*failures += r.failures;
	if (f)
		fprintf(f,
		        "%s    {\"dump\": \"%s-%s-%u\", \"impl\": \"%s\", \"sweep\": \"%s\", "
		        "\"size\": %u, \"agents\": %u, \"active\": %u, \"waiting\": %u, "
		        "\"ops\": %llu, \"failures\": %llu}",
		        first ? "" : ",\n", r.impl, r.sweep, size, r.impl, r.sweep, size, r.agents,
		        r.active, r.waiting, (unsigned long long)r.ops,
		        (unsigned long long)r.failures);
	return 0;
}

/* --callgrind: a fixed window per implementation, sweep and size, each dumped
 * by callgrind under its name; the counting happens in valgrind. */
static int callgrind_main(const char *json)
{
	const struct impl *impls[NB_IMPLS] = {&engine_impl, &engine_seq_impl, &naive_impl};
	uint64_t failures = 0;
	FILE *f = NULL;
	bool first = true;
	int rc = 1;

	if (!RUNNING_ON_VALGRIND) {
		fprintf(stderr, "bench_dispatch: --callgrind counts only under valgrind; run\n"
		                "  valgrind --tool=callgrind --instr-atstart=no "
		                "--collect-atstart=no --cache-sim=yes "
		                "bench_dispatch --callgrind\n");
		return 2;
	}
	if (json) {
		f = fopen(json, "w");
		if (!f) {
			perror(json);
			return 1;
		}
		fprintf(f,
		        "{\n  \"capacity\": %u,\n  \"ops_per_cycle\": 4,\n  \"cycles\": %llu,\n"
		        "  \"naive_cycles\": %llu,\n  \"naive_max_agents\": %u,\n  \"windows\": "
		        "[\n",
		        CAPACITY, (unsigned long long)g_cg_cycles,
		        (unsigned long long)(g_cg_cycles / 10), CG_NAIVE_MAX_AGENTS);
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* progress, minutes long */
	printf("dispatcher under callgrind: per window after the warm-up %llu cycles (%llu ops) "
	       "for the engine, a tenth for naive; dumped as <impl>-<sweep>-<size>\n",
	       (unsigned long long)g_cg_cycles, (unsigned long long)(4 * g_cg_cycles));
	for (int i = 0; i < NB_IMPLS; i++) {
		for (int k = 0; k < NB_SIZES; k++) {
			int w = callgrind_window(f, impls[i], "agents", agent_sizes[k], 0, first,
			                         &failures);

			if (w < 0)
				goto out_measure;
			first = first && w;
		}
		for (int k = 0; k < NB_SIZES; k++) {
			int w = callgrind_window(f, impls[i], "queue", QUEUE_AGENTS, queue_sizes[k],
			                         first, &failures);

			if (w < 0)
				goto out_measure;
			first = first && w;
		}
	}
	if (f)
		fprintf(f, "\n  ],\n  \"failures\": %llu\n}\n", (unsigned long long)failures);
	rc = failures ? 1 : 0;
	goto out_close;
out_measure:
	perror("measure");
out_close:
	if (f && fclose(f)) {
		perror(json);
		rc = 1;
	}
	return rc;
}

/* --only: one measurement, printed; for profiling and side-by-side runs. */
static int only_main(void)
{
	const struct impl *impls[NB_IMPLS] = {&engine_impl, &engine_seq_impl, &naive_impl};

	for (int k = 0; k < NB_SIZES; k++) {
		char name[64];
		struct result r;

		snprintf(name, sizeof(name), "driver-agents-%u", agent_sizes[k]);
		if (strcmp(name, g_only))
			continue;
		if (measure(&driver_impl, "agents", agent_sizes[k], 0, &r) < 0) {
			perror("measure");
			return 1;
		}
		print_row(&r);
		return r.failures ? 1 : 0;
	}
	for (int i = 0; i < NB_IMPLS; i++) {
		for (int k = 0; k < NB_SIZES; k++) {
			for (int q = 0; q < 2; q++) {
				uint32_t agents = q ? QUEUE_AGENTS : agent_sizes[k];
				uint32_t waiting = q ? queue_sizes[k] : 0;
				const char *sweep = q ? "queue" : "agents";
				char name[64];
				struct result r;

				snprintf(name, sizeof(name), "%s-%s-%u", impls[i]->name, sweep,
				         q ? waiting : agents);
				if (strcmp(name, g_only))
					continue;
				if (measure(impls[i], sweep, agents, waiting, &r) < 0) {
					perror("measure");
					return 1;
				}
				print_row(&r);
				printf("cpu %.1f ns/op\n", r.cpu_ns_per_op);
				return r.failures ? 1 : 0;
			}
		}
	}
	fprintf(stderr, "bench_dispatch: --only %s: no such measurement\n", g_only);
	return 2;
}

int main(int argc, char **argv)
{
	struct result res[NB_IMPLS][2][NB_SIZES]; /* impl, sweep, size: the median round */
	static struct result all[NB_IMPLS][2][NB_SIZES][MAX_ROUNDS];
	struct result drv[NB_SIZES]; /* the driver alone, agent sweep: the median round */
	static struct result drv_all[NB_SIZES][MAX_ROUNDS];
	double net_growth;
	const struct impl *impls[NB_IMPLS] = {&engine_impl, &engine_seq_impl, &naive_impl};
	const char *json = NULL;
	bool callgrind = false;
	double growth[NB_IMPLS][2];
	struct memory mem;
	struct floor_report fr;
	uint64_t failures = 0;
	int cpu;
	FILE *f;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			json = argv[++i];
		} else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
			g_seconds = atof(argv[++i]);
		} else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			g_rounds = atoi(argv[++i]);
			if (g_rounds < 1 || g_rounds > MAX_ROUNDS) {
				fprintf(stderr, "bench_dispatch: --rounds 1..%d\n", MAX_ROUNDS);
				return 2;
			}
		} else if (!strcmp(argv[i], "--callgrind")) {
			callgrind = true;
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			g_only = argv[++i];
		} else if (!strcmp(argv[i], "--cpu") && i + 1 < argc) {
			g_cpu = atoi(argv[++i]);
			if (g_cpu < -1) {
				fprintf(stderr, "bench_dispatch: --cpu N, or -1 for none\n");
				return 2;
			}
		} else if (!strcmp(argv[i], "--cycles") && i + 1 < argc) {
			g_cg_cycles = strtoull(argv[++i], NULL, 10);
		} else {
			fprintf(stderr,
			        "usage: %s [--json FILE] [--seconds S] [--rounds R] [--cpu N] "
			        "[--only "
			        "IMPL-SWEEP-SIZE]\n"
			        "       valgrind --tool=callgrind --instr-atstart=no "
			        "--collect-atstart=no "
			        "[--cache-sim=yes] %s --callgrind [--cycles N] [--json FILE] "
			        "[--only IMPL-SWEEP-SIZE]\n",
			        argv[0], argv[0]);
			return 2;
		}
	}
	if (callgrind) {
		if (!g_cg_cycles)
			g_cg_cycles = 20000;
		return callgrind_main(json);
	}
	g_cg_cycles = 0;
	cpu = pin_cpu();
	if (g_only)
		return only_main();

	memory_measure(&mem);
	printf("dispatcher micro-benchmark: one core (%s %d), 4 ops per cycle "
	       "(customer msg, agent msg, close, open), agents of capacity %u%s\n\n",
	       cpu >= 0 ? "cpu" : "unpinned", cpu, CAPACITY, ", disp_tick every virtual ms");
	printf("%-7s %-7s %8s %8s %8s %10s %8s\n", "impl", "sweep", "agents", "active", "waiting",
	       "Mops/s", "ns/op");
	for (int round = 0; round < g_rounds; round++) {
		printf("-- round %d of %d\n", round + 1, g_rounds);
		for (int i = 0; i < NB_IMPLS; i++) {
			for (int q = 0; q < 2; q++) {
				for (int k = 0; k < NB_SIZES; k++) {
					struct result *r = &all[i][q][k][round];

					if (measure(impls[i], q ? "queue" : "agents",
					            q ? QUEUE_AGENTS : agent_sizes[k],
					            q ? queue_sizes[k] : 0, r) < 0) {
						perror("measure");
						return 1;
					}
					print_row(r);
					failures += r->failures;
					keep_round(&res[i][q][k], all[i][q][k], round);
				}
			}
		}
		for (int k = 0; k < NB_SIZES; k++) {
			if (measure(&driver_impl, "agents", agent_sizes[k], 0, &drv_all[k][round]) <
			    0) {
				perror("measure");
				return 1;
			}
			print_row(&drv_all[k][round]);
			failures += drv_all[k][round].failures;
			keep_round(&drv[k], drv_all[k], round);
		}
	}
	printf("\nthe median round of %d:\n", g_rounds);
	for (int i = 0; i < NB_IMPLS; i++)
		for (int q = 0; q < 2; q++)
			for (int k = 0; k < NB_SIZES; k++)
				print_row(&res[i][q][k]);
	for (int k = 0; k < NB_SIZES; k++)
		print_row(&drv[k]);
	for (int i = 0; i < NB_IMPLS; i++)
		for (int s = 0; s < 2; s++)
			growth[i][s] = res[i][s][NB_SIZES - 1].ns_per_op / res[i][s][0].ns_per_op;
	net_growth = (res[0][0][NB_SIZES - 1].ns_per_op - drv[NB_SIZES - 1].ns_per_op) /
	             (res[0][0][0].ns_per_op - drv[0].ns_per_op);

	printf("\ncost growth (ns/op at the largest size / at the smallest):\n");
	printf("  engine: agents 1k->100k %.2fx, waiting 10k->1M %.2fx (target <= 1.5x)\n",
	       growth[0][0], growth[0][1]);
	printf("  engine-seq (no prefetch): agents 1k->100k %.2fx, waiting 10k->1M %.2fx\n",
	       growth[1][0], growth[1][1]);
	printf("  naive:  agents 1k->100k %.2fx, waiting 10k->1M %.2fx\n", growth[2][0],
	       growth[2][1]);
	printf("  the driver alone (no dispatcher): agents 1k %.1f, 100k %.1f ns/op; the engine "
	       "net "
	       "of it: agents 1k->100k %.2fx\n",
	       drv[0].ns_per_op, drv[NB_SIZES - 1].ns_per_op, net_growth);
	printf("\nengine memory (%s): %.1f B per session slot, %.1f B per queue slot, "
	       "%.1f B per agent; %.1f MiB for 1k agents, 64k sessions, queue 1k\n",
	       "disp_footprint", mem.per_session_slot, mem.per_queue_slot, mem.per_agent,
	       mem.base / 1048576.0);
	printf("  per queued session %.1f B (slot + queue slot; target <= 256), per active session "
	       "%.1f B (slot)\n",
	       mem.per_session_slot + mem.per_queue_slot, mem.per_session_slot);
	printf("  held text (questions, messages) comes on top, from the fixed text pool\n");

	if (floor_measure(&fr, &mem, 4 * res[0][0][0].ns_per_op) < 0) {
		perror("floor");
		return 1;
	}
	printf("\nthis machine's floor: per cycle %u iterations of work (%.0f ns, the engine's "
	       "cycle at 1k agents) and N random lines over %.0f MB (1k agents) or %.0f MB "
	       "(100k agents)\n",
	       fr.work, fr.target_ns, fr.small_bytes / 1048576.0, fr.large_bytes / 1048576.0);
	for (size_t i = 0; i < NB_FLOOR; i++) {
		const struct floor_row *r = &fr.rows[i];

		printf("  %2u lines%-14s %6.0f ns/cycle -> %6.0f ns/cycle: %.2fx\n", r->lines,
		       r->ahead ? ", loaded ahead" : ", not loaded", r->small_ns, r->large_ns,
		       r->large_ns / r->small_ns);
	}
	if (failures)
		printf("\nWARNING: %llu requests failed or were refused\n",
		       (unsigned long long)failures);

	if (json) {
		f = fopen(json, "w");
		if (!f) {
			perror(json);
			return 1;
		}
		fprintf(f,
		        "{\n  \"capacity\": %u,\n  \"ops_per_cycle\": 4,\n  \"seconds_per_run\": "
		        "%.2f,\n  \"rounds\": %d,\n  \"cpu\": %d,\n  \"tick\": %s,\n  \"runs\": "
		        "[\n",
		        CAPACITY, g_seconds, g_rounds, cpu, "true");
		for (int i = 0; i < NB_IMPLS; i++)
			for (int s = 0; s < 2; s++)
				for (int k = 0; k < NB_SIZES; k++)
					json_row(f, &res[i][s][k],
					         i == NB_IMPLS - 1 && s == 1 && k == NB_SIZES - 1);
		fprintf(f, "  ],\n  \"driver\": [\n");
		for (int k = 0; k < NB_SIZES; k++)
			json_row(f, &drv[k], k == NB_SIZES - 1);
		fprintf(f,
		        "  ],\n  \"growth\": {\"engine_agents\": %.3f, \"engine_queue\": %.3f, "
		        "\"engine_seq_agents\": %.3f, \"engine_seq_queue\": %.3f, "
		        "\"naive_agents\": %.3f, \"naive_queue\": %.3f, "
		        "\"engine_agents_net_of_driver\": %.3f},\n",
		        growth[0][0], growth[0][1], growth[1][0], growth[1][1], growth[2][0],
		        growth[2][1], net_growth);
		fprintf(f,
		        "  \"memory\": {\"source\": \"%s\", \"per_session_slot\": %.1f, "
		        "\"per_queue_slot\": %.1f, \"per_agent\": %.1f, \"per_queued_session\": "
		        "%.1f, \"per_active_session\": %.1f, \"base_bytes\": %llu},\n",
		        "disp_footprint", mem.per_session_slot, mem.per_queue_slot, mem.per_agent,
		        mem.per_session_slot + mem.per_queue_slot, mem.per_session_slot,
		        (unsigned long long)mem.base);
		fprintf(f,
		        "  \"floor\": {\"work\": %u, \"target_ns\": %.1f, \"small_bytes\": %llu, "
		        "\"large_bytes\": %llu, \"rows\": [",
		        fr.work, fr.target_ns, (unsigned long long)fr.small_bytes,
		        (unsigned long long)fr.large_bytes);
		for (size_t i = 0; i < NB_FLOOR; i++)
			fprintf(f,
			        "%s\n    {\"lines\": %u, \"ahead\": %s, \"small_ns\": %.1f, "
			        "\"large_ns\": %.1f}",
			        i ? "," : "", fr.rows[i].lines, fr.rows[i].ahead ? "true" : "false",
			        fr.rows[i].small_ns, fr.rows[i].large_ns);
		fprintf(f, "]},\n");
		fprintf(f, "  \"failures\": %llu\n}\n", (unsigned long long)failures);
		fclose(f);
	}
	return failures ? 1 : 0;
}
