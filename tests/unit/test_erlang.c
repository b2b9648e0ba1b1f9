/* SPDX-License-Identifier: MIT */
/*
 * erlang: the dispatcher driven in virtual time (bench/sim.c) as an M/M/c
 * queue (Poisson arrivals, exponential handling, c agents of capacity 1, one
 * skill, FIFO) must show the service level and mean wait of the Erlang C
 * formula: within 2 percentage points and 5% at loads 0.7, 0.85 and 0.95.
 *
 * The sample mean of the waits converges slowly under heavy load (its
 * relative standard deviation is about 50/sqrt(customers) at 0.95, where a
 * busy period spans hundreds of customers), so the counts below are chosen to
 * put the 5% bound about 3.5 standard deviations away; each load runs as two
 * independent replications on two threads, and their means are compared.
 * Seed from SURGE_SEED, else the time; printed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"

#define AGENTS      20u
#define HANDLE_S    300.0 /* mean handling time */
#define TARGET_S    60.0  /* service-level threshold: the platform's default target */
#define REPLICAS    2u
#define MAX_WAIT_RE 0.05 /* relative */
#define MAX_SL_PP   2.0  /* percentage points */

static uint64_t seed;

struct replica {
	struct bench_sim_conf conf;
	struct bench_sim_result res;
	int rc;
};

static void *replica_run(void *arg)
{
	struct replica *r = arg;

	r->rc = bench_sim_run(&r->conf, &r->res);
	return NULL;
}

static void check_load(double rho, uint64_t customers, uint64_t salt)
{
	double lambda = rho * AGENTS / HANDLE_S, wait = 0, sl = 0, pw = 0, eng = 0;
	struct replica rep[REPLICAS];
	pthread_t th[REPLICAS];
	struct bench_erlang ec;

	assert_int_equal(bench_erlang_c(AGENTS, lambda, HANDLE_S, TARGET_S, &ec), 0);
	for (unsigned i = 0; i < REPLICAS; i++) {
		rep[i].conf = (struct bench_sim_conf){
		        .agents = AGENTS,
		        .arrival_per_s = lambda,
		        .handle_mean_s = HANDLE_S,
		        .target_s = TARGET_S,
		        .warmup = customers / 20,
		        .customers = customers,
		        .seed = seed * 64 + salt * REPLICAS + i,
		};
		assert_int_equal(pthread_create(&th[i], NULL, replica_run, &rep[i]), 0);
	}
	for (unsigned i = 0; i < REPLICAS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (unsigned i = 0; i < REPLICAS; i++) {
		assert_int_equal(rep[i].rc, 0);
		assert_int_equal(rep[i].res.customers, customers);
		wait += rep[i].res.mean_wait_s / REPLICAS;
		sl += rep[i].res.service_level / REPLICAS;
		pw += rep[i].res.p_wait / REPLICAS;
		eng += rep[i].res.engine_service_level / REPLICAS;
	}
	printf("rho %.2f: %u x %" PRIu64 " customers: wait %.2f s (Erlang C %.2f, %+.2f%%), "
	       "service level %.2f%% (%.2f%%, %+.2f pp), P(wait) %.4f (%.4f)",
	       rho, REPLICAS, customers, wait, ec.mean_wait_s,
	       100.0 * (wait / ec.mean_wait_s - 1.0), 100.0 * sl, 100.0 * ec.service_level,
	       100.0 * (sl - ec.service_level), pw, ec.p_wait);
	if (eng >= 0)
		printf(", engine's own service level %.2f%%", 100.0 * eng);
	printf("\n");
	assert_true(fabs(wait / ec.mean_wait_s - 1.0) <= MAX_WAIT_RE);
	assert_true(fabs(100.0 * (sl - ec.service_level)) <= MAX_SL_PP);
}

static void test_formula(void **state)
{
	struct bench_erlang ec;

	(void)state;
	/* one server: C = rho, W = rho / (mu - lambda) */
	assert_int_equal(bench_erlang_c(1, 0.5, 1.0, 0.0, &ec), 0);
	assert_true(fabs(ec.p_wait - 0.5) < 1e-12);
	assert_true(fabs(ec.mean_wait_s - 1.0) < 1e-12);
	assert_true(fabs(ec.service_level - 0.5) < 1e-12);
	/* two servers, A = 1: C = 1/3 (textbook), W = C / (2 mu - lambda) */
	assert_int_equal(bench_erlang_c(2, 1.0, 1.0, 1.0, &ec), 0);
	assert_true(fabs(ec.p_wait - 1.0 / 3.0) < 1e-12);
	assert_true(fabs(ec.mean_wait_s - 1.0 / 3.0) < 1e-12);
	assert_true(fabs(ec.service_level - (1.0 - exp(-1.0) / 3.0)) < 1e-12);
	/* the classic call-centre example: 10 agents, A = 8 -> C ~ 0.409 */
	assert_int_equal(bench_erlang_c(10, 8.0, 1.0, 0.0, &ec), 0);
	assert_true(fabs(ec.p_wait - 0.40918) < 1e-4);
	/* no steady state at or above c */
	assert_int_equal(bench_erlang_c(2, 2.0, 1.0, 0.0, &ec), -EINVAL);
	assert_int_equal(bench_erlang_c(0, 1.0, 1.0, 0.0, &ec), -EINVAL);
	assert_int_equal(bench_erlang_c(2, 1.0, 1.0, -1.0, &ec), -EINVAL);
}

static void test_bad_conf(void **state)
{
	struct bench_sim_conf c = {
	        .agents = 2, .arrival_per_s = 1, .handle_mean_s = 2, .customers = 10};
	struct bench_sim_result r;

	(void)state;
	assert_int_equal(bench_sim_run(&c, &r), -EINVAL); /* load 2 on 2 agents */
	c.handle_mean_s = 1;
	c.agents = 0;
	assert_int_equal(bench_sim_run(&c, &r), -EINVAL);
	c.agents = 2;
	c.customers = 0;
	assert_int_equal(bench_sim_run(&c, &r), -EINVAL);
	c.customers = 10;
	assert_int_equal(bench_sim_run(NULL, &r), -EINVAL);
	assert_int_equal(bench_sim_run(&c, &r), 0);
	assert_int_equal(r.customers, 10);
}

/* light load: few wait, so many customers for a stable share of waiters */
static void test_load_070(void **state)
{
	(void)state;
	check_load(0.70, 1500000, 1);
}

static void test_load_085(void **state)
{
	(void)state;
	check_load(0.85, 2000000, 2);
}

static void test_load_095(void **state)
{
	(void)state;
	check_load(0.95, 7000000, 3);
}

int main(void)
{
	const char *env = getenv("SURGE_SEED");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_formula),  cmocka_unit_test(test_bad_conf),
	        cmocka_unit_test(test_load_070), cmocka_unit_test(test_load_085),
	        cmocka_unit_test(test_load_095),
	};

	seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	printf("erlang: seed %" PRIu64 " (SURGE_SEED to reproduce)\n", seed);
	return cmocka_run_group_tests_name("erlang", tests, NULL, NULL);
}
