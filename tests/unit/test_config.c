/* SPDX-License-Identifier: MIT */
/*
 * ctl configuration: the example file, defaults, every validation error with
 * its line and key, file errors, --help and docs/configuration.md against
 * the key table, and mutated files that must never crash the loader.
 *
 * Run from the repository root (tests/run.sh does); the example and the docs
 * are also looked for from build/tests/.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ctl.h"

/* Large: kept off the stack. */
static struct ctl_config cfg, cfg2;
static char err[512];

static int parse(const char *text)
{
	return ctl_config_parse("test.yaml", text, strlen(text), &cfg, err, sizeof(err));
}

static uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	return htonl((uint32_t)a << 24 | (uint32_t)b << 16 | (uint32_t)c << 8 | d);
}

/* A file of the repository, from the root or from build/tests/. */
static FILE *open_repo_file(const char *rel, char *path, size_t cap)
{
	static const char *const up[] = {"", "../", "../../"};

	for (size_t i = 0; i < sizeof(up) / sizeof(up[0]); i++) {
		FILE *f;

		snprintf(path, cap, "%s%s", up[i], rel);
		f = fopen(path, "r");
		if (f)
			return f;
	}
	fail_msg("cannot find %s: run the test from the repository root", rel);
	return NULL;
}

/* ---- the example ------------------------------------------------------------ */

/* What deploy/surge.example.yaml says, without its comments. */
static const char example_text[] =
        "router:\n"
        "  address: 10.77.0.1\n"
        "  port: 7700\n"
        "  mtu: 1500\n"
        "dpdk:\n"
        "  eal: [--no-huge, --no-pci, -m, \"512\", \"--vdev=net_af_packet0,iface=srt0\"]\n"
        "  port_id: 0\n"
        "  mbufs: 8191\n"
        "  rx_desc: 1024\n"
        "  tx_desc: 1024\n"
        "limits:\n"
        "  max_agents: 1024\n"
        "  max_sessions: 65536\n"
        "  backlog_max: 64\n"
        "  text_pool_mb: 64\n"
        "  agent_text_max: 200\n"
        "  customer_text_max: 2000\n"
        "  envelopes_per_frame: 64\n"
        "timers:\n"
        "  heartbeat_timeout_ms: 30000\n"
        "  gateway_timeout_ms: 30000\n"
        "  stats_interval_ms: 0\n"
        "log:\n"
        "  level: info\n"
        "gateways:\n"
        "  - id: 1\n"
        "    name: web\n"
        "    role: customer\n"
        "    plaintext: true\n"
        "    allow: 10.77.0.0/24\n"
        "  - id: 2\n"
        "    name: workbench\n"
        "    role: agent\n"
        "    plaintext: true\n"
        "skills:\n"
        "  - name: general\n"
        "    tenant: \"\"\n"
        "    queue_capacity: 1000\n"
        "    sla_answer_ms: 60000\n"
        "    strategy: least-loaded\n"
        "    wrap_up_ms: 0\n"
        "    break_cap_pct: 20\n"
        "    break_max_ms: 1200000\n"
        "    first_response_ms: 60000\n"
        "    reply_overdue_ms: 60000\n"
        "    hold_max_ms: 180000\n"
        "    idle_alert_ms: 900000\n"
        "    reroute_ms: 0\n"
        "    eta_step_ms: 10000\n"
        "  - name: presale\n"
        "    strategy: best-skill\n"
        "    wrap_up_ms: 30000\n"
        "    hours: {open: \"09:00\", close: \"21:00\", days: [mon, tue, wed, thu, fri, sat],\n"
        "            utc_offset: \"+08:00\"}\n"
        "    overflow:\n"
        "      - {after_ms: 30000, to: general}\n"
        "      - {after_ms: 90000, to: aftersale}\n"
        "  - name: aftersale\n";

/* The engine's defaults for a skill group, as dispatch.h states them. */
static void check_skill_defaults(const struct disp_skill_conf *sk, bool hours, bool overflow)
{
	assert_int_equal(sk->queue_capacity, 1000);
	assert_int_equal(sk->sla_answer_ms, 60000);
	assert_int_equal(sk->break_cap_pct, 20);
	assert_int_equal(sk->break_max_ms, 1200000);
	assert_int_equal(sk->first_response_ms, 60000);
	assert_int_equal(sk->reply_overdue_ms, 60000);
	assert_int_equal(sk->hold_max_ms, 180000);
	assert_int_equal(sk->idle_alert_ms, 900000);
	assert_int_equal(sk->reroute_ms, 0);
	assert_int_equal(sk->eta_step_ms, 10000);
	if (hours) {
		/* always open */
		assert_int_equal(sk->hours.open_min, 0);
		assert_int_equal(sk->hours.close_min, 0);
		assert_int_equal(sk->hours.days, 0x7f);
		assert_int_equal(sk->hours.utc_offset_min, 480);
	}
	if (overflow) {
		static const struct disp_overflow none[DISP_MAX_OVERFLOW];

		assert_int_equal(sk->nb_overflow, 0);
		assert_memory_equal(sk->overflow, none, sizeof(none));
	}
}

static void check_example(const struct ctl_config *c)
{
	static const char *const eal[] = {"--no-huge", "--no-pci", "-m", "512",
	                                  "--vdev=net_af_packet0,iface=srt0"};
	static const char *const skills[] = {"general", "presale", "aftersale"};

	assert_int_equal(c->ip, ip4(10, 77, 0, 1));
	assert_int_equal(c->udp_port, 7700);
	assert_int_equal(c->mtu, 1500);
	assert_int_equal(c->nb_eal_args, 5);
	for (uint32_t i = 0; i < 5; i++)
		assert_string_equal(c->eal_args[i], eal[i]);
	assert_int_equal(c->port_id, 0);
	assert_int_equal(c->nb_mbufs, 8191);
	assert_int_equal(c->rx_desc, 1024);
	assert_int_equal(c->tx_desc, 1024);
	assert_int_equal(c->max_agents, 1024);
	assert_int_equal(c->max_sessions, 65536);
	assert_int_equal(c->backlog_max, 64);
	assert_int_equal(c->text_pool_mb, 64);
	assert_int_equal(c->agent_text_max, 200);
	assert_int_equal(c->customer_text_max, 2000);
	assert_int_equal(c->envelopes_per_frame, 64);
	assert_int_equal(c->heartbeat_timeout_ms, 30000);
	assert_int_equal(c->gateway_timeout_ms, 30000);
	assert_int_equal(c->stats_interval_ms, 0);
	assert_int_equal(c->log_level, 2);
	assert_int_equal(c->admin_port, 0);

	assert_int_equal(c->nb_gateways, 2);
	assert_int_equal(c->gateways[0].id, 1);
	assert_string_equal(c->gateways[0].name, "web");
	assert_int_equal(c->gateways[0].role, WIRE_ROLE_CUSTOMER);
	assert_true(c->gateways[0].plaintext);
	assert_false(c->gateways[0].has_key[0]);
	assert_false(c->gateways[0].has_key[1]);
	assert_int_equal(c->gateways[0].allow_net, ip4(10, 77, 0, 0));
	assert_int_equal(c->gateways[0].allow_mask, ip4(255, 255, 255, 0));
	assert_int_equal(c->gateways[1].id, 2);
	assert_string_equal(c->gateways[1].name, "workbench");
	assert_int_equal(c->gateways[1].role, WIRE_ROLE_AGENT);
	assert_true(c->gateways[1].plaintext);
	assert_int_equal(c->gateways[1].allow_net, 0);
	assert_int_equal(c->gateways[1].allow_mask, 0);

	assert_int_equal(c->nb_skills, 3);
	for (uint32_t i = 0; i < 3; i++) {
		assert_string_equal(c->skills[i].name, skills[i]);
		assert_string_equal(c->skills[i].tenant, "");
		check_skill_defaults(&c->skills[i], i != 1, i != 1);
	}
	assert_int_equal(c->skills[0].strategy, DISP_STRATEGY_LEAST_LOADED);
	assert_int_equal(c->skills[0].wrap_up_ms, 0);
	assert_int_equal(c->skills[2].strategy, DISP_STRATEGY_LEAST_LOADED);
	assert_int_equal(c->skills[1].strategy, DISP_STRATEGY_BEST_SKILL);
	assert_int_equal(c->skills[1].wrap_up_ms, 30000);
	assert_int_equal(c->skills[1].hours.open_min, 9 * 60);
	assert_int_equal(c->skills[1].hours.close_min, 21 * 60);
	assert_int_equal(c->skills[1].hours.days, 0x7e); /* Monday to Saturday */
	assert_int_equal(c->skills[1].hours.utc_offset_min, 480);
	assert_int_equal(c->skills[1].nb_overflow, 2);
	assert_int_equal(c->skills[1].overflow[0].after_ms, 30000);
	assert_string_equal(c->skills[1].overflow[0].to_skill, "general");
	assert_int_equal(c->skills[1].overflow[1].after_ms, 90000);
	assert_string_equal(c->skills[1].overflow[1].to_skill, "aftersale");
}

static void test_example_text(void **state)
{
	(void)state;
	assert_int_equal(parse(example_text), 0);
	assert_string_equal(err, "");
	check_example(&cfg);
}

static void test_example_file(void **state)
{
	char path[256];
	FILE *f = open_repo_file("deploy/surge.example.yaml", path, sizeof(path));
	int rc;

	(void)state;
	fclose(f);
	rc = ctl_config_load(path, &cfg2, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s: %s", path, err);
	check_example(&cfg2);
	/* the file says no more and no less than the text above */
	assert_int_equal(parse(example_text), 0);
	assert_memory_equal(&cfg, &cfg2, sizeof(cfg));
}

/* ---- defaults and values ------------------------------------------------------- */

#define ROUTER "router:\n  address: 10.77.0.1\n"                                      /* 2 lines */
#define GW     "gateways:\n  - {id: 1, name: web, role: customer, plaintext: true}\n" /* 2 */
#define SK     "skills:\n  - name: general\n"                                         /* 2 lines */

static void test_defaults(void **state)
{
	(void)state;
	memset(&cfg, 0xa5, sizeof(cfg));
	ctl_config_defaults(&cfg);
	assert_int_equal(cfg.ip, 0);
	assert_int_equal(cfg.udp_port, 7700);
	assert_int_equal(cfg.mtu, 1500);
	assert_int_equal(cfg.nb_eal_args, 0);
	assert_int_equal(cfg.port_id, 0);
	assert_int_equal(cfg.nb_mbufs, 8191);
	assert_int_equal(cfg.rx_desc, 1024);
	assert_int_equal(cfg.tx_desc, 1024);
	assert_int_equal(cfg.max_agents, 1024);
	assert_int_equal(cfg.max_sessions, 65536);
	assert_int_equal(cfg.backlog_max, 64);
	assert_int_equal(cfg.text_pool_mb, 64);
	assert_int_equal(cfg.agent_text_max, 200);
	assert_int_equal(cfg.customer_text_max, 2000);
	assert_int_equal(cfg.envelopes_per_frame, WIRE_MAX_ENVELOPES);
	assert_int_equal(cfg.heartbeat_timeout_ms, 30000);
	assert_int_equal(cfg.gateway_timeout_ms, 30000);
	assert_int_equal(cfg.stats_interval_ms, 0);
	assert_int_equal(cfg.log_level, 2);
	assert_int_equal(cfg.nb_gateways, 0);
	assert_int_equal(cfg.nb_skills, 0);
}

static void test_absent_keys_take_defaults(void **state)
{
	(void)state;
	assert_int_equal(parse(ROUTER GW SK), 0);
	memcpy(&cfg2, &cfg, sizeof(cfg));
	ctl_config_defaults(&cfg);
	/* everything but the three required things is the default */
	cfg.ip = cfg2.ip;
	cfg.nb_gateways = cfg2.nb_gateways;
	cfg.gateways[0] = cfg2.gateways[0];
	cfg.nb_skills = cfg2.nb_skills;
	cfg.skills[0] = cfg2.skills[0];
	assert_memory_equal(&cfg, &cfg2, sizeof(cfg));

	assert_int_equal(cfg2.ip, ip4(10, 77, 0, 1));
	assert_int_equal(cfg2.gateways[0].id, 1);
	assert_int_equal(cfg2.gateways[0].allow_net, 0);
	assert_int_equal(cfg2.gateways[0].allow_mask, 0);
	assert_string_equal(cfg2.skills[0].name, "general");
	assert_string_equal(cfg2.skills[0].tenant, "");
	assert_int_equal(cfg2.skills[0].strategy, DISP_STRATEGY_LEAST_LOADED);
	assert_int_equal(cfg2.skills[0].wrap_up_ms, 0);
	check_skill_defaults(&cfg2.skills[0], true, true);
	/* an empty hours mapping or overflow list is the same as none */
	assert_int_equal(parse(ROUTER GW SK "    hours: {}\n    overflow: []\n"), 0);
	assert_memory_equal(&cfg.skills[0], &cfg2.skills[0], sizeof(cfg.skills[0]));
	assert_int_equal(parse(ROUTER GW SK "    hours:\n    overflow:\n"), 0);
	assert_memory_equal(&cfg.skills[0], &cfg2.skills[0], sizeof(cfg.skills[0]));

	/* a gateway's plaintext defaults to false: it then needs a key */
	assert_int_equal(parse(ROUTER "gateways:\n  - {id: 1, name: web, role: customer}\n" SK),
	                 -EINVAL);
	assert_non_null(strstr(err, "cannot be reached"));
}

static void test_every_key_lands(void **state)
{
	static const char text[] =
	        "router: {address: 192.168.7.9, port: 9000, mtu: 9000}\n"
	        "dpdk:\n"
	        "  eal: [-l, \"0-1\", --file-prefix=x]\n"
	        "  port_id: 3\n"
	        "  mbufs: 16383\n"
	        "  rx_desc: 512\n"
	        "  tx_desc: 2048\n"
	        "limits:\n"
	        "  max_agents: 10\n"
	        "  max_sessions: 20\n"
	        "  backlog_max: 30\n"
	        "  text_pool_mb: 4095\n"
	        "  agent_text_max: 50\n"
	        "  customer_text_max: 60\n"
	        "  envelopes_per_frame: 1\n"
	        "timers:\n"
	        "  heartbeat_timeout_ms: 1000\n"
	        "  gateway_timeout_ms: 2000\n"
	        "  stats_interval_ms: 3000\n"
	        "log: {level: debug}\n"
	        "admin: {port: 65535}\n"
	        "gateways:\n"
	        "  - id: 4294967295\n"
	        "    name: abcdefghijklmnopqrstuvwxyz01234\n" /* 31 bytes: the most */
	        "    role: both\n"
	        "    plaintext: no\n"
	        "    allow: 172.16.0.0/12\n"
	        "    keys:\n"
	        "      - id: 1\n"
	        "        hex: 000102030405060708090A0B0C0D0E0F101112131415161718191a1b1c1d1e1f\n"
	        "  - {id: 7, name: x, role: agent, plaintext: yes, allow: 10.1.2.3,\n"
	        "     keys: [{id: 0, hex: ffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
	        "ffffffff}, {id: 1, hex: "
	        "'0000000000000000000000000000000000000000000000000000000000"
	        "000001'}]}\n"
	        "  - {id: 8, name: y, role: customer, plaintext: True, allow: any}\n"
	        "  - {id: 9, name: z, role: customer, plaintext: FALSE, allow: 0.0.0.0/0,\n"
	        "     keys: [{hex: "
	        "0000000000000000000000000000000000000000000000000000000000000000,"
	        " id: 0}]}\n"
	        "skills:\n"
	        "  - name: 012345678901234567890123456789012345678901234567890123456789012\n"
	        "    tenant: shop-42\n"
	        "    queue_capacity: 5\n"
	        "    sla_answer_ms: 30000\n"
	        "    strategy: longest-idle\n"
	        "    wrap_up_ms: 86400000\n"
	        "    break_cap_pct: 100\n"
	        "    break_max_ms: 100\n"
	        "    first_response_ms: 1000\n"
	        "    reply_overdue_ms: 2000\n"
	        "    hold_max_ms: 3000\n"
	        "    idle_alert_ms: 4000\n"
	        "    reroute_ms: 100\n"
	        "    eta_step_ms: 86400000\n"
	        "    hours:\n"
	        "      open: \"23:59\"\n"
	        "      close: 00:00\n" /* plain, as YAML 1.2 reads it */
	        "      days: [sat, sun]\n"
	        "      utc_offset: \"-14:00\"\n"
	        "    overflow:\n" /* to a group of another tenant, and to later groups */
	        "      - {after_ms: 0, to: \"售前\"}\n"
	        "      - {after_ms: 1, to: third}\n"
	        "      - to: fourth\n"
	        "        after_ms: 2\n"
	        "      - {after_ms: 86400000, to: fifth}\n"
	        "  - {name: \"售前\", tenant: 旗舰店, strategy: round-robin,\n"
	        "     hours: {days: [wed], utc_offset: \"+14:00\"}}\n"
	        "  - {name: third, strategy: best-skill, break_cap_pct: 1,\n"
	        "     hours: {open: \"08:30\", close: \"17:45\", utc_offset: \"-03:30\"}}\n"
	        "  - {name: fourth, strategy: fewest-today,\n"
	        "     hours: {open: 09:00, close: 09:00, utc_offset: \"+00:00\"},\n"
	        "     overflow: [{after_ms: 5000, to: third}]}\n"
	        "  - {name: fifth, strategy: random, reroute_ms: 0, hours: ~, overflow: []}\n";
	const struct disp_skill_conf *sk;

	(void)state;
	if (parse(text) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg.ip, ip4(192, 168, 7, 9));
	assert_int_equal(cfg.udp_port, 9000);
	assert_int_equal(cfg.mtu, 9000);
	assert_int_equal(cfg.nb_eal_args, 3);
	assert_string_equal(cfg.eal_args[0], "-l");
	assert_string_equal(cfg.eal_args[1], "0-1");
	assert_string_equal(cfg.eal_args[2], "--file-prefix=x");
	assert_int_equal(cfg.port_id, 3);
	assert_int_equal(cfg.nb_mbufs, 16383);
	assert_int_equal(cfg.rx_desc, 512);
	assert_int_equal(cfg.tx_desc, 2048);
	assert_int_equal(cfg.max_agents, 10);
	assert_int_equal(cfg.max_sessions, 20);
	assert_int_equal(cfg.backlog_max, 30);
	assert_int_equal(cfg.text_pool_mb, 4095);
	assert_int_equal(cfg.agent_text_max, 50);
	assert_int_equal(cfg.customer_text_max, 60);
	assert_int_equal(cfg.envelopes_per_frame, 1);
	assert_int_equal(cfg.heartbeat_timeout_ms, 1000);
	assert_int_equal(cfg.gateway_timeout_ms, 2000);
	assert_int_equal(cfg.stats_interval_ms, 3000);
	assert_int_equal(cfg.log_level, 3);
	assert_int_equal(cfg.admin_port, 65535);

	assert_int_equal(cfg.nb_gateways, 4);
	assert_int_equal(cfg.gateways[0].id, UINT32_MAX);
	assert_string_equal(cfg.gateways[0].name, "abcdefghijklmnopqrstuvwxyz01234");
	assert_int_equal(cfg.gateways[0].role, WIRE_ROLE_BOTH);
	assert_false(cfg.gateways[0].plaintext);
	assert_int_equal(cfg.gateways[0].allow_net, ip4(172, 16, 0, 0));
	assert_int_equal(cfg.gateways[0].allow_mask, ip4(255, 240, 0, 0));
	assert_false(cfg.gateways[0].has_key[0]);
	assert_true(cfg.gateways[0].has_key[1]);
	for (int i = 0; i < 32; i++)
		assert_int_equal(cfg.gateways[0].key[1][i], i);

	assert_int_equal(cfg.gateways[1].role, WIRE_ROLE_AGENT);
	assert_true(cfg.gateways[1].plaintext);
	assert_int_equal(cfg.gateways[1].allow_net, ip4(10, 1, 2, 3));
	assert_int_equal(cfg.gateways[1].allow_mask, ip4(255, 255, 255, 255));
	assert_true(cfg.gateways[1].has_key[0] && cfg.gateways[1].has_key[1]);
	for (int i = 0; i < 32; i++) {
		assert_int_equal(cfg.gateways[1].key[0][i], 0xff);
		assert_int_equal(cfg.gateways[1].key[1][i], i == 31 ? 1 : 0);
	}
	assert_true(cfg.gateways[2].plaintext);
	assert_int_equal(cfg.gateways[2].allow_net, 0);
	assert_int_equal(cfg.gateways[2].allow_mask, 0);
	assert_false(cfg.gateways[3].plaintext);
	assert_int_equal(cfg.gateways[3].allow_net, 0);
	assert_int_equal(cfg.gateways[3].allow_mask, 0);
	assert_true(cfg.gateways[3].has_key[0]);
	assert_false(cfg.gateways[3].has_key[1]);

	assert_int_equal(cfg.nb_skills, 5);
	sk = &cfg.skills[0];
	assert_string_equal(sk->name,
	                    "012345678901234567890123456789012345678901234567890123456789012");
	assert_string_equal(sk->tenant, "shop-42");
	assert_int_equal(sk->queue_capacity, 5);
	assert_int_equal(sk->sla_answer_ms, 30000);
	assert_int_equal(sk->strategy, DISP_STRATEGY_LONGEST_IDLE);
	assert_int_equal(sk->wrap_up_ms, 86400000);
	assert_int_equal(sk->break_cap_pct, 100);
	assert_int_equal(sk->break_max_ms, 100);
	assert_int_equal(sk->first_response_ms, 1000);
	assert_int_equal(sk->reply_overdue_ms, 2000);
	assert_int_equal(sk->hold_max_ms, 3000);
	assert_int_equal(sk->idle_alert_ms, 4000);
	assert_int_equal(sk->reroute_ms, 100);
	assert_int_equal(sk->eta_step_ms, 86400000);
	assert_int_equal(sk->hours.open_min, 23 * 60 + 59);
	assert_int_equal(sk->hours.close_min, 0);
	assert_int_equal(sk->hours.days, 1u << 0 | 1u << 6);
	assert_int_equal(sk->hours.utc_offset_min, -14 * 60);
	assert_int_equal(sk->nb_overflow, DISP_MAX_OVERFLOW);
	for (uint32_t i = 0; i < DISP_MAX_OVERFLOW; i++) {
		static const uint32_t after[] = {0, 1, 2, 86400000};
		static const char *const to[] = {"售前", "third", "fourth", "fifth"};

		assert_int_equal(sk->overflow[i].after_ms, after[i]);
		assert_string_equal(sk->overflow[i].to_skill, to[i]);
	}

	sk = &cfg.skills[1];
	assert_string_equal(sk->name, "售前");
	assert_string_equal(sk->tenant, "旗舰店");
	assert_int_equal(sk->queue_capacity, 1000);
	assert_int_equal(sk->strategy, DISP_STRATEGY_ROUND_ROBIN);
	assert_int_equal(sk->hours.open_min, 0);
	assert_int_equal(sk->hours.close_min, 0);
	assert_int_equal(sk->hours.days, 1u << 3);
	assert_int_equal(sk->hours.utc_offset_min, 14 * 60);
	assert_int_equal(sk->nb_overflow, 0);

	sk = &cfg.skills[2];
	assert_int_equal(sk->strategy, DISP_STRATEGY_BEST_SKILL);
	assert_int_equal(sk->break_cap_pct, 1);
	assert_int_equal(sk->hours.open_min, 8 * 60 + 30);
	assert_int_equal(sk->hours.close_min, 17 * 60 + 45);
	assert_int_equal(sk->hours.days, 0x7f);
	assert_int_equal(sk->hours.utc_offset_min, -(3 * 60 + 30));

	sk = &cfg.skills[3];
	assert_int_equal(sk->strategy, DISP_STRATEGY_FEWEST_TODAY);
	assert_int_equal(sk->hours.utc_offset_min, 0); /* UTC, not the +08:00 default */
	assert_int_equal(sk->hours.open_min, 9 * 60);
	assert_int_equal(sk->hours.close_min, 9 * 60);
	assert_int_equal(sk->nb_overflow, 1);
	assert_int_equal(sk->overflow[0].after_ms, 5000);
	assert_string_equal(sk->overflow[0].to_skill, "third");

	sk = &cfg.skills[4];
	assert_int_equal(sk->strategy, DISP_STRATEGY_RANDOM);
	check_skill_defaults(sk, true, true);
}

/* Writes a configuration with n gateways, n skills and n EAL arguments. */
static char *many(unsigned int n_gw, unsigned int n_skill, unsigned int n_eal)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	fprintf(f, ROUTER "dpdk:\n  eal:\n");
	for (unsigned int i = 0; i < n_eal; i++)
		fprintf(f, "    - --a%u\n", i);
	fprintf(f, "gateways:\n");
	for (unsigned int i = 0; i < n_gw; i++)
		fprintf(f, "  - {id: %u, name: gw%u, role: customer, plaintext: true}\n", i + 1, i);
	fprintf(f, "skills:\n");
	for (unsigned int i = 0; i < n_skill; i++)
		fprintf(f, "  - name: skill%u\n", i);
	fclose(f);
	return text;
}

static void test_limits_at_most(void **state)
{
	char *text = many(CTL_MAX_GATEWAYS, CTL_MAX_SKILLS, CTL_MAX_EAL_ARGS);

	(void)state;
	if (parse(text) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg.nb_gateways, CTL_MAX_GATEWAYS);
	assert_int_equal(cfg.nb_skills, CTL_MAX_SKILLS);
	assert_int_equal(cfg.nb_eal_args, CTL_MAX_EAL_ARGS);
	assert_int_equal(cfg.gateways[CTL_MAX_GATEWAYS - 1].id, CTL_MAX_GATEWAYS);
	assert_string_equal(cfg.skills[CTL_MAX_SKILLS - 1].name, "skill255");
	assert_string_equal(cfg.eal_args[CTL_MAX_EAL_ARGS - 1], "--a31");
	free(text);
}

/* ---- errors ------------------------------------------------------------------ */

struct bad {
	const char *text;
	unsigned int line;   /* 1-based line the message must name */
	const char *key;     /* key path the message must name, or NULL */
	const char *problem; /* text the message must contain */
};

static const char hex64[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

static void expect_error(const char *text, unsigned int line, const char *key, const char *problem)
{
	char want[128];
	int rc;

	memset(err, 'x', sizeof(err));
	rc = parse(text);
	if (rc != -EINVAL)
		fail_msg("expected -EINVAL, got %d (%s) for:\n%s", rc, err, text);
	snprintf(want, sizeof(want), "test.yaml:%u: ", line);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("expected line %u in \"%s\" for:\n%s", line, err, text);
	if (key) {
		snprintf(want, sizeof(want), ": %s: ", key);
		if (!strstr(err, want))
			fail_msg("expected key %s in \"%s\"", key, err);
	}
	if (!strstr(err, problem))
		fail_msg("expected \"%s\" in \"%s\"", problem, err);
	/* lower case after the location, no full stop */
	assert_true(err[strlen(err) - 1] != '.');
}

static void test_errors(void **state)
{
	static char long_gw_name[512], long_skill_name[512], bad_hex_char[512], short_hex[512],
	        long_eal[1024];
	char name32[33], name64[65], arg256[257];

	(void)state;
	memset(name32, 'n', 32);
	name32[32] = '\0';
	memset(name64, 's', 64);
	name64[64] = '\0';
	memset(arg256, 'a', 256);
	arg256[256] = '\0';
	snprintf(long_gw_name, sizeof(long_gw_name),
	         ROUTER "gateways:\n  - {id: 1, name: %s, role: customer, plaintext: true}\n" SK,
	         name32);
	snprintf(long_skill_name, sizeof(long_skill_name), ROUTER GW "skills:\n  - name: %s\n",
	         name64);
	snprintf(bad_hex_char, sizeof(bad_hex_char),
	         ROUTER "gateways:\n  - id: 1\n    name: web\n    role: agent\n    keys:\n"
	                "      - {id: 0, hex: %.63sg}\n" SK,
	         hex64);
	snprintf(short_hex, sizeof(short_hex),
	         ROUTER "gateways:\n  - id: 1\n    name: web\n    role: agent\n    keys:\n"
	                "      - {id: 0, hex: %.62s}\n" SK,
	         hex64);
	snprintf(long_eal, sizeof(long_eal), ROUTER "dpdk:\n  eal: [-m, %s]\n" GW SK, arg256);

	const struct bad cases[] = {
	        /* sections and keys */
	        {ROUTER "routr:\n  port: 1\n" GW SK, 3, "routr",
	         "unknown section (did you mean router?)"},
	        {ROUTER "fancy:\n  port: 1\n" GW SK, 3, "fancy", "unknown section"},
	        {ROUTER "  prot: 7700\n" GW SK, 3, "router.prot",
	         "unknown key (did you mean port?)"},
	        {ROUTER "  colour: red\n" GW SK, 3, "router.colour", "unknown key"},
	        {ROUTER
	         "gateways:\n  - {id: 1, name: web, role: customer, plaintext: true, alow: any}"
	         "\n" SK,
	         4, "gateways[0].alow", "unknown key (did you mean allow?)"},
	        {ROUTER GW "skills:\n  - {name: a, queue: 5}\n", 6, "skills[0].queue",
	         "unknown key"},
	        {ROUTER "  address: 10.77.0.2\n" GW SK, 3, "router.address", "duplicate key"},
	        {ROUTER GW SK "router:\n  port: 1\n", 7, "router", "duplicate section"},
	        {ROUTER GW SK "gateways: []\n", 7, "gateways", "duplicate section"},
	        {"router: 5\n" GW SK, 1, "router", "expected a mapping of keys, not a scalar"},
	        {ROUTER "gateways:\n  id: 1\n" SK, 4, "gateways", "expected a list of gateways"},
	        {ROUTER GW "skills: general\n", 5, "skills", "expected a list of skill groups"},
	        {"- router\n- gateways\n", 1, NULL, "expected a mapping of sections"},
	        {ROUTER "? [a, b]\n: 1\n" GW SK, 3, NULL, "a key must be a name, not a list"},
	        /* wrong types */
	        {ROUTER "  port: abc\n" GW SK, 3, "router.port", "expected an unsigned integer"},
	        {ROUTER "  port: -1\n" GW SK, 3, "router.port", "expected an unsigned integer"},
	        {ROUTER "  port: +80\n" GW SK, 3, "router.port", "expected an unsigned integer"},
	        {ROUTER "  port: 0x10\n" GW SK, 3, "router.port", "expected an unsigned integer"},
	        {ROUTER "  port: 010\n" GW SK, 3, "router.port", "expected an unsigned integer"},
	        {ROUTER "  port: 80.5\n" GW SK, 3, "router.port", "expected an unsigned integer"},
	        {ROUTER "  port:\n" GW SK, 3, "router.port", "expected an unsigned integer"},
	        {ROUTER "  port: {a: 1}\n" GW SK, 3, "router.port",
	         "expected an unsigned integer, not a mapping"},
	        {ROUTER "limits:\n  max_agents: 1e3\n" GW SK, 4, "limits.max_agents",
	         "expected an unsigned integer, got \"1e3\""},
	        {ROUTER "gateways:\n  - {id: 1, name: web, role: customer, plaintext: maybe}\n" SK,
	         4, "gateways[0].plaintext", "expected true or false, got \"maybe\""},
	        {ROUTER "log:\n  level: verbose\n" GW SK, 4, "log.level",
	         "expected one of error, warning, info, debug, got \"verbose\""},
	        {ROUTER "gateways:\n  - {id: 1, name: web, role: robot, plaintext: true}\n" SK, 4,
	         "gateways[0].role", "expected one of customer, agent, both"},
	        {ROUTER "dpdk:\n  eal: --no-huge\n" GW SK, 4, "dpdk.eal",
	         "expected a list of strings"},
	        {ROUTER "dpdk:\n  eal: [[-m]]\n" GW SK, 4, "dpdk.eal[0]",
	         "expected a string, not a list"},
	        {ROUTER GW "skills:\n  - [general]\n", 6, "skills[0]",
	         "expected a mapping of keys"},
	        /* ranges */
	        {ROUTER "  port: 70000\n" GW SK, 3, "router.port",
	         "70000 is out of range 1..65535"},
	        {ROUTER "  port: 0\n" GW SK, 3, "router.port", "out of range 1..65535"},
	        {ROUTER "  port: 99999999999999999999999\n" GW SK, 3, "router.port",
	         "out of range"},
	        {ROUTER "  mtu: 100\n" GW SK, 3, "router.mtu", "out of range 576..9000"},
	        {ROUTER "limits:\n  envelopes_per_frame: 65\n" GW SK, 4,
	         "limits.envelopes_per_frame", "65 is out of range 1..64"},
	        {ROUTER "limits:\n  text_pool_mb: 4096\n" GW SK, 4, "limits.text_pool_mb",
	         "out of range 1..4095"},
	        {ROUTER "timers:\n  gateway_timeout_ms: 5\n" GW SK, 4, "timers.gateway_timeout_ms",
	         "out of range 100..86400000"},
	        {ROUTER GW "skills:\n  - {name: a, queue_capacity: 0}\n", 6,
	         "skills[0].queue_capacity", "out of range 1..1000000"},
	        /* required things */
	        {"router:\n  port: 7700\n" GW SK, 1, "router.address", "missing required key"},
	        {GW SK, 1, "router.address", "missing required key"},
	        {"log: {level: info}\n" GW SK, 1, "router.address", "missing required key"},
	        {ROUTER "gateways: []\n" SK, 3, "gateways", "at least one gateway is required"},
	        {ROUTER "gateways:\n" SK, 3, "gateways", "at least one gateway is required"},
	        {ROUTER SK, 1, "gateways", "at least one gateway is required"},
	        {ROUTER GW "skills:\n", 5, "skills", "at least one skill is required"},
	        {ROUTER GW, 1, "skills", "at least one skill is required"},
	        {ROUTER "gateways:\n  - {id: 1, name: web, plaintext: true}\n" SK, 4,
	         "gateways[0].role", "missing required key"},
	        {ROUTER "gateways:\n  - {name: web, role: agent, plaintext: true}\n" SK, 4,
	         "gateways[0].id", "missing required key"},
	        {ROUTER GW "skills:\n  - tenant: x\n", 6, "skills[0].name", "missing required key"},
	        /* gateways */
	        {ROUTER GW "  - id: 1\n    name: app\n    role: customer\n    plaintext: true\n" SK,
	         5, "gateways[1].id", "duplicate gateway id 1"},
	        {ROUTER GW "  - id: 2\n    name: web\n    role: customer\n    plaintext: true\n" SK,
	         6, "gateways[1].name", "duplicate gateway name \"web\""},
	        {ROUTER "gateways:\n  - {id: 0, name: web, role: customer, plaintext: true}\n" SK,
	         4, "gateways[0].id", "gateway id 0 is reserved"},
	        {ROUTER
	         "gateways:\n  - {id: 4294967296, name: w, role: agent, plaintext: true}\n" SK,
	         4, "gateways[0].id", "out of range"},
	        {long_gw_name, 4, "gateways[0].name", "too long: 32 bytes (at most 31)"},
	        {ROUTER "gateways:\n  - {id: 1, name: \"\", role: customer, plaintext: true}\n" SK,
	         4, "gateways[0].name", "must not be empty"},
	        {ROUTER
	         "gateways:\n  - {id: 1, name: \"a\\tb\", role: customer, plaintext: true}\n" SK,
	         4, "gateways[0].name", "contains a control character"},
	        {ROUTER
	         "gateways:\n  - {id: 1, name: \"a\\0b\", role: customer, plaintext: true}\n" SK,
	         4, "gateways[0].name", "contains a nul byte"},
	        {ROUTER
	         "gateways:\n  - id: 1\n    name: web\n    role: agent\n    plaintext: false\n" SK,
	         4, "gateways[0]", "cannot be reached, since AEAD needs a key"},
	        {ROUTER "gateways:\n  - id: 1\n    name: web\n    role: agent\n    keys: []\n" SK,
	         4, "gateways[0]", "cannot be reached"},
	        {ROUTER "gateways:\n  - {id: 1, name: web, role: agent, plaintext: true,\n"
	                "     allow: 10.77.0.0/33}\n" SK,
	         5, "gateways[0].allow", "bad prefix length"},
	        {ROUTER "gateways:\n  - {id: 1, name: w, role: agent, plaintext: true, allow: "
	                "10.77.0.5/24}\n" SK,
	         4, "gateways[0].allow",
	         "host bits set in \"10.77.0.5/24\" (the network is 10.77.0.0/24)"},
	        {ROUTER
	         "gateways:\n  - {id: 1, name: w, role: agent, plaintext: true, allow: web}\n" SK,
	         4, "gateways[0].allow", "expected an IPv4 network"},
	        {ROUTER "gateways:\n  - {id: 1, name: w, role: agent, plaintext: true, allow: "
	                "10.1.1/8}\n" SK,
	         4, "gateways[0].allow", "expected an IPv4 network"},
	        {ROUTER "gateways:\n  - {id: 1, name: w, role: agent, plaintext: true, allow: "
	                "0.0.0.0/8}\n" SK,
	         4, "gateways[0].allow", "not a usable network"},
	        {short_hex, 8, "gateways[0].keys[0].hex",
	         "expected exactly 64 hex digits, got 62 characters"},
	        {bad_hex_char, 8, "gateways[0].keys[0].hex", "expected exactly 64 hex digits"},
	        {ROUTER "gateways:\n  - id: 1\n    name: web\n    role: agent\n    keys:\n"
	                "      - id: 2\n        hex: 00\n" SK,
	         8, "gateways[0].keys[0].id", "2 is out of range 0..1"},
	        {ROUTER "gateways:\n  - id: 1\n    name: web\n    role: agent\n    keys:\n"
	                "      - {id: 0}\n" SK,
	         8, "gateways[0].keys[0].hex", "missing required key"},
	        {ROUTER
	         "gateways:\n  - id: 1\n    name: web\n    role: agent\n    keys:\n"
	         "      - {id: 0, hex: 0000000000000000000000000000000000000000000000000000000000"
	         "000000}\n"
	         "      - {id: 0, hex: 1111111111111111111111111111111111111111111111111111111111"
	         "111111}\n" SK,
	         9, "gateways[0].keys[1].id", "duplicate key id 0"},
	        {ROUTER
	         "gateways:\n  - id: 1\n    name: web\n    role: agent\n    keys: {id: 0}\n" SK,
	         7, "gateways[0].keys", "expected a list of {id, hex} keys"},
	        /* skills */
	        {ROUTER GW "skills:\n  - name: general\n  - name: presale\n  - name: general\n", 8,
	         "skills[2].name", "duplicate skill name \"general\""},
	        {long_skill_name, 6, "skills[0].name", "too long: 64 bytes (at most 63)"},
	        {ROUTER GW "skills:\n  - {name: x, tenant: [a]}\n", 6, "skills[0].tenant",
	         "expected a string, not a list"},
	        /* a skill group's rules (SK's entry is at line 6, its keys from line 7) */
	        {ROUTER GW SK "    strategy: fastest\n", 7, "skills[0].strategy",
	         "expected one of least-loaded, longest-idle, round-robin, best-skill, "
	         "fewest-today, random, got \"fastest\""},
	        {ROUTER GW SK "    strategy: Random\n", 7, "skills[0].strategy", "expected one of"},
	        {ROUTER GW SK "    strategy: [random]\n", 7, "skills[0].strategy",
	         "expected a name, not a list"},
	        {ROUTER GW SK "    break_cap_pct: 101\n", 7, "skills[0].break_cap_pct",
	         "101 is out of range 1..100"},
	        {ROUTER GW SK "    break_cap_pct: 0\n", 7, "skills[0].break_cap_pct",
	         "0 is out of range 1..100"},
	        {ROUTER GW SK "    wrap_up_ms: 86400001\n", 7, "skills[0].wrap_up_ms",
	         "86400001 is out of range 0..86400000"},
	        {ROUTER GW SK "    reroute_ms: 99\n", 7, "skills[0].reroute_ms",
	         "99 is out of range: 0 (off) or 100..86400000"},
	        {ROUTER GW SK "    reroute_ms: 86400001\n", 7, "skills[0].reroute_ms",
	         "out of range 0..86400000"},
	        {ROUTER GW SK "    eta_step_ms: 0\n", 7, "skills[0].eta_step_ms",
	         "0 is out of range 100..86400000"},
	        {ROUTER GW SK "    strategy: random\n    strategy: random\n", 8,
	         "skills[0].strategy", "duplicate key"},
	        /* hours */
	        {ROUTER GW SK "    hours: always\n", 7, "skills[0].hours",
	         "expected a mapping of keys, not a scalar"},
	        {ROUTER GW SK "    hours: {opn: \"09:00\"}\n", 7, "skills[0].hours.opn",
	         "unknown key (did you mean open?)"},
	        {ROUTER GW SK "    hours:\n      open: \"09:00\"\n      open: \"10:00\"\n", 9,
	         "skills[0].hours.open", "duplicate key"},
	        {ROUTER GW SK "    hours: {open: \"9:00\"}\n", 7, "skills[0].hours.open",
	         "expected a time as HH:MM (00:00..23:59), got \"9:00\""},
	        {ROUTER GW SK "    hours:\n      open: \"08:00\"\n      close: \"24:00\"\n", 9,
	         "skills[0].hours.close", "expected a time as HH:MM (00:00..23:59), got \"24:00\""},
	        {ROUTER GW SK "    hours: {close: \"12:60\"}\n", 7, "skills[0].hours.close",
	         "got \"12:60\""},
	        {ROUTER GW SK "    hours: {open: \"12.30\"}\n", 7, "skills[0].hours.open",
	         "expected a time as HH:MM"},
	        {ROUTER GW SK "    hours: {open: \"09:00 \"}\n", 7, "skills[0].hours.open",
	         "expected a time as HH:MM"},
	        {ROUTER GW SK "    hours: {open: 900}\n", 7, "skills[0].hours.open",
	         "expected a time as HH:MM"},
	        {ROUTER GW SK "    hours: {open: [9]}\n", 7, "skills[0].hours.open",
	         "expected a time as HH:MM, not a list"},
	        {ROUTER GW SK "    hours:\n      days:\n        - mon\n        - Funday\n", 10,
	         "skills[0].hours.days[1]",
	         "expected one of sun, mon, tue, wed, thu, fri, sat, got \"Funday\""},
	        {ROUTER GW SK "    hours: {days: [monday]}\n", 7, "skills[0].hours.days[0]",
	         "got \"monday\""},
	        {ROUTER GW SK "    hours: {days: [mon, fri, mon]}\n", 7, "skills[0].hours.days[2]",
	         "duplicate day mon"},
	        {ROUTER GW SK "    hours: {days: []}\n", 7, "skills[0].hours.days",
	         "at least one day is required"},
	        {ROUTER GW SK "    hours:\n      days:\n", 8, "skills[0].hours.days",
	         "at least one day is required"},
	        {ROUTER GW SK "    hours: {days: mon}\n", 7, "skills[0].hours.days",
	         "expected a list of days such as [mon, tue], not a scalar"},
	        {ROUTER GW SK "    hours: {days: [[mon]]}\n", 7, "skills[0].hours.days[0]",
	         "expected a day, not a list"},
	        {ROUTER GW SK "    hours: {utc_offset: \"08:00\"}\n", 7,
	         "skills[0].hours.utc_offset",
	         "expected an offset as +HH:MM or -HH:MM, got \"08:00\""},
	        {ROUTER GW SK "    hours: {utc_offset: \"+8\"}\n", 7, "skills[0].hours.utc_offset",
	         "expected an offset as +HH:MM or -HH:MM"},
	        {ROUTER GW SK "    hours: {utc_offset: 480}\n", 7, "skills[0].hours.utc_offset",
	         "expected an offset"},
	        {ROUTER GW SK "    hours: {utc_offset: \"+08:60\"}\n", 7,
	         "skills[0].hours.utc_offset", "expected an offset"},
	        {ROUTER GW SK "    hours: {utc_offset: \"+14:01\"}\n", 7,
	         "skills[0].hours.utc_offset", "+14:01 is out of range -14:00..+14:00"},
	        {ROUTER GW SK "    hours: {utc_offset: \"-15:00\"}\n", 7,
	         "skills[0].hours.utc_offset", "-15:00 is out of range -14:00..+14:00"},
	        /* overflow */
	        {ROUTER GW SK "    overflow: general\n", 7, "skills[0].overflow",
	         "expected a list of {after_ms, to} steps, not a scalar"},
	        {ROUTER GW SK "    overflow: [general]\n", 7, "skills[0].overflow[0]",
	         "expected a mapping of keys, not a scalar"},
	        {ROUTER GW SK "    overflow:\n      - {after_ms: 1000}\n  - name: b\n", 8,
	         "skills[0].overflow[0].to", "missing required key"},
	        {ROUTER GW SK "    overflow:\n      - {to: b}\n  - name: b\n", 8,
	         "skills[0].overflow[0].after_ms", "missing required key"},
	        {ROUTER GW SK "    overflow:\n      - {after: 1000, to: b}\n  - name: b\n", 8,
	         "skills[0].overflow[0].after", "unknown key"},
	        {ROUTER GW SK "    overflow:\n      - {after_ms: 86400001, to: b}\n  - name: b\n",
	         8, "skills[0].overflow[0].after_ms", "86400001 is out of range 0..86400000"},
	        {ROUTER GW SK "    overflow:\n      - {after_ms: 1000, to: \"\"}\n", 8,
	         "skills[0].overflow[0].to", "must not be empty"},
	        {ROUTER GW SK "    overflow:\n      - {after_ms: 2000, to: b}\n"
	                      "      - to: c\n        after_ms: 2000\n"
	                      "  - name: b\n  - name: c\n",
	         10, "skills[0].overflow[1].after_ms",
	         "2000 is not after the previous step's 2000 (after_ms must increase)"},
	        {ROUTER GW SK "    overflow:\n      - {after_ms: 2000, to: b}\n"
	                      "      - {after_ms: 1000, to: c}\n  - name: b\n  - name: c\n",
	         9, "skills[0].overflow[1].after_ms", "1000 is not after the previous step's 2000"},
	        {ROUTER GW SK "    overflow:\n      - {after_ms: 1000, to: b}\n"
	                      "      - {after_ms: 2000, to: b}\n  - name: b\n",
	         9, "skills[0].overflow[1].to",
	         "duplicate target \"b\" (as skills[0].overflow[0])"},
	        {ROUTER GW SK "    overflow:\n      - {after_ms: 1000, to: b}\n"
	                      "      - {after_ms: 2000, to: c}\n      - {after_ms: 3000, to: d}\n"
	                      "      - {after_ms: 4000, to: e}\n      - {after_ms: 5000, to: f}\n",
	         12, "skills[0].overflow[4]", "too many overflow steps (at most 4)"},
	        /* targets are checked once every group is read */
	        {ROUTER GW SK "    overflow:\n      - {after_ms: 1000, to: b}\n"
	                      "      - after_ms: 2000\n        to: genral\n  - name: b\n",
	         10, "skills[0].overflow[1].to",
	         "unknown skill group \"genral\" (did you mean general?)"},
	        {ROUTER GW "skills:\n  - name: a\n  - name: b\n    overflow:\n"
	                   "      - {after_ms: 1000, to: zzzzzz}\n",
	         9, "skills[1].overflow[0].to", "unknown skill group \"zzzzzz\""},
	        {ROUTER GW "skills:\n  - name: a\n  - name: b\n    overflow:\n"
	                   "      - {after_ms: 1000, to: a}\n      - {after_ms: 2000, to: b}\n",
	         10, "skills[1].overflow[1].to", "overflow to its own group \"b\""},
	        /* the first error in the file wins over a later group's bad value */
	        {ROUTER GW SK "    overflow: [{after_ms: 1000, to: nowhere}]\n"
	                      "  - {name: b, strategy: fast}\n",
	         8, "skills[1].strategy", "expected one of"},
	        /* addresses */
	        {"router:\n  address: 10.77.0\n" GW SK, 2, "router.address",
	         "expected an IPv4 address, got \"10.77.0\""},
	        {"router:\n  address: 300.1.1.1\n" GW SK, 2, "router.address",
	         "expected an IPv4 address"},
	        {"router:\n  address: 0.0.0.0\n" GW SK, 2, "router.address",
	         "not a unicast address"},
	        {"router:\n  address: 239.1.1.1\n" GW SK, 2, "router.address",
	         "not a unicast address"},
	        /* eal */
	        {long_eal, 4, "dpdk.eal[1]", "too long: 256 bytes (at most 255)"},
	        /* yaml itself */
	        {ROUTER " port: 1\n" GW SK, 3, NULL, "invalid yaml: "},
	        {ROUTER GW SK "skills: [a\n", 8, NULL, "invalid yaml: "},
	        {"router: &r\n  address: 10.77.0.1\n" GW SK, 1, NULL,
	         "yaml anchors are not supported"},
	        {ROUTER GW SK "log: *r\n", 7, NULL, "yaml aliases are not supported"},
	        {ROUTER GW SK "---\nrouter: {}\n", 7, NULL, "only one yaml document is allowed"},
	        {ROUTER GW "skills:\n  - name: \xff\xfe\n", 6, NULL, "invalid yaml: "},
	        {ROUTER GW SK "\x01\n", 7, NULL, "invalid yaml: "},
	        {"", 1, NULL, "configuration is empty"},
	        {"# nothing but a comment\n\n", 1, NULL, "configuration is empty"},
	        {"~\n", 1, NULL, "configuration is empty"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_error(cases[i].text, cases[i].line, cases[i].key, cases[i].problem);
}

static void test_too_many(void **state)
{
	char *text;

	(void)state;
	/* ROUTER, "dpdk:", "  eal:", then one line each */
	text = many(1, 1, CTL_MAX_EAL_ARGS + 1);
	expect_error(text, 5 + CTL_MAX_EAL_ARGS, "dpdk.eal[32]",
	             "too many eal arguments (at most 32)");
	free(text);
	text = many(CTL_MAX_GATEWAYS + 1, 1, 0);
	expect_error(text, 6 + CTL_MAX_GATEWAYS, "gateways[256]",
	             "too many gateways (at most 256)");
	free(text);
	text = many(1, CTL_MAX_SKILLS + 1, 0);
	expect_error(text, 8 + CTL_MAX_SKILLS, "skills[256]", "too many skills (at most 256)");
	free(text);
}

/* Every timer of a skill group: its edges are accepted, one past them refused. */
static void test_skill_timer_ranges(void **state)
{
	static const struct {
		const char *key;
		uint32_t min;
		size_t offset;
	} timers[] = {
	        {"wrap_up_ms", 0, offsetof(struct disp_skill_conf, wrap_up_ms)},
	        {"break_max_ms", 100, offsetof(struct disp_skill_conf, break_max_ms)},
	        {"first_response_ms", 100, offsetof(struct disp_skill_conf, first_response_ms)},
	        {"reply_overdue_ms", 100, offsetof(struct disp_skill_conf, reply_overdue_ms)},
	        {"hold_max_ms", 100, offsetof(struct disp_skill_conf, hold_max_ms)},
	        {"idle_alert_ms", 100, offsetof(struct disp_skill_conf, idle_alert_ms)},
	        {"reroute_ms", 0, offsetof(struct disp_skill_conf, reroute_ms)},
	        {"eta_step_ms", 100, offsetof(struct disp_skill_conf, eta_step_ms)},
	};
	const uint32_t max = 86400000;
	char text[256], key[64];

	(void)state;
	for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
		const uint32_t ok[] = {timers[i].min, 100, 60000, max};
		uint32_t v;

		for (size_t j = 0; j < sizeof(ok) / sizeof(ok[0]); j++) {
			snprintf(text, sizeof(text), ROUTER GW SK "    %s: %u\n", timers[i].key,
			         ok[j]);
			if (parse(text) != 0)
				fail_msg("%s: %s", timers[i].key, err);
			memcpy(&v, (const char *)&cfg.skills[0] + timers[i].offset, sizeof(v));
			assert_int_equal(v, ok[j]);
		}
		snprintf(key, sizeof(key), "skills[0].%s", timers[i].key);
		snprintf(text, sizeof(text), ROUTER GW SK "    %s: %u\n", timers[i].key, max + 1);
		expect_error(text, 7, key, "out of range");
		if (timers[i].min == 100) {
			snprintf(text, sizeof(text), ROUTER GW SK "    %s: 99\n", timers[i].key);
			expect_error(text, 7, key, "99 is out of range 100..86400000");
			snprintf(text, sizeof(text), ROUTER GW SK "    %s: 0\n", timers[i].key);
			expect_error(text, 7, key, "0 is out of range 100..86400000");
		}
		snprintf(text, sizeof(text), ROUTER GW SK "    %s: 1s\n", timers[i].key);
		expect_error(text, 7, key, "expected an unsigned integer, got \"1s\"");
	}
	/* reroute_ms: 0 is off, and below 100 ms there is nothing to re-route by */
	expect_error(ROUTER GW SK "    reroute_ms: 1\n", 7, "skills[0].reroute_ms",
	             "1 is out of range: 0 (off) or 100..86400000");
}

/* Overflow may name a group of another tenant, and a group before or after it. */
static void test_overflow_targets(void **state)
{
	(void)state;
	assert_int_equal(parse(ROUTER GW "skills:\n"
	                                 "  - {name: a, tenant: shop-1,\n"
	                                 "     overflow: [{after_ms: 100, to: c}]}\n"
	                                 "  - {name: b, tenant: shop-2,\n"
	                                 "     overflow: [{after_ms: 100, to: a}]}\n"
	                                 "  - {name: c, overflow: [{after_ms: 0, to: b},\n"
	                                 "                         {after_ms: 1, to: a}]}\n"),
	                 0);
	assert_int_equal(cfg.nb_skills, 3);
	assert_string_equal(cfg.skills[0].overflow[0].to_skill, "c");
	assert_string_equal(cfg.skills[1].overflow[0].to_skill, "a");
	assert_int_equal(cfg.skills[2].nb_overflow, 2);
	assert_string_equal(cfg.skills[2].overflow[1].to_skill, "a");
	/* the steps a group does not use stay zero */
	assert_int_equal(cfg.skills[0].overflow[1].after_ms, 0);
	assert_string_equal(cfg.skills[0].overflow[1].to_skill, "");
}

/* The message quotes bad values without their control characters, and never a key. */
static void test_error_quotes_safely(void **state)
{
	(void)state;
	expect_error(ROUTER "  port: \"1\\n2\\e[31m\"\n" GW SK, 3, "router.port", "\"1?2?[31m\"");
	expect_error(ROUTER "gateways:\n  - {id: 1, name: w, role: agent,\n"
	                    "     keys: [{id: 0, hex: s3cr3tpassw0rd}]}\n" SK,
	             5, "gateways[0].keys[0].hex", "64 hex digits");
	assert_null(strstr(err, "s3cr3t"));
}

static void test_error_buffer(void **state)
{
	char small[12];
	int rc;

	(void)state;
	memset(small, 'x', sizeof(small));
	rc = ctl_config_parse("test.yaml", "router: 1\n", 10, &cfg, small, sizeof(small));
	assert_int_equal(rc, -EINVAL);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(ctl_config_parse("t", "x: 1\n", 5, &cfg, NULL, 0), -EINVAL);
	assert_int_equal(ctl_config_parse(NULL, NULL, 0, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "configuration is empty"));
	/* success clears it */
	memset(err, 'x', sizeof(err));
	assert_int_equal(parse(example_text), 0);
	assert_string_equal(err, "");
}

static void test_failure_leaves_cfg(void **state)
{
	(void)state;
	assert_int_equal(parse(example_text), 0);
	memcpy(&cfg2, &cfg, sizeof(cfg));
	assert_int_equal(parse("router:\n  address: 10.0.0.9\n  port: 9\n" GW
	                       "  - {id: 1, name: dup, role: agent, plaintext: true}\n" SK),
	                 -EINVAL);
	assert_memory_equal(&cfg, &cfg2, sizeof(cfg));
}

/* ---- files ------------------------------------------------------------------- */

static void test_file_not_found(void **state)
{
	int rc;

	(void)state;
	memset(err, 'x', sizeof(err));
	rc = ctl_config_load("/nonexistent/surge.yaml", &cfg, err, sizeof(err));
	assert_int_equal(rc, -ENOENT);
	assert_non_null(strstr(err, "cannot open /nonexistent/surge.yaml"));
	assert_non_null(strstr(err, strerror(ENOENT)));
}

static void test_file_errors(void **state)
{
	char path[] = "/tmp/surge-test-config-XXXXXX";
	char want[128];
	int fd, rc;
	FILE *f;

	(void)state;
	rc = ctl_config_load("/", &cfg, err, sizeof(err));
	assert_int_equal(rc, -EISDIR);
	assert_non_null(strstr(err, "cannot read /"));

	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(ROUTER GW SK "limits:\n  max_sessions: lots\n", f);
	fclose(f);
	rc = ctl_config_load(path, &cfg, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	snprintf(want, sizeof(want), "%s:8: limits.max_sessions: expected an unsigned integer",
	         path);
	assert_non_null(strstr(err, want));

	f = fopen(path, "w");
	assert_non_null(f);
	fputs("", f);
	fclose(f);
	rc = ctl_config_load(path, &cfg, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "configuration is empty"));

	/* a megabyte of comments is not a configuration */
	f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < 20000; i++)
		fputs("# ........................................................\n", f);
	fclose(f);
	rc = ctl_config_load(path, &cfg, err, sizeof(err));
	assert_int_equal(rc, -EFBIG);
	assert_non_null(strstr(err, path));
	unlink(path);
}

/* ---- --help and the docs ----------------------------------------------------------- */

static const char *const all_keys[] = {
        "router.address",
        "router.port",
        "router.mtu",
        "dpdk.eal",
        "dpdk.port_id",
        "dpdk.mbufs",
        "dpdk.rx_desc",
        "dpdk.tx_desc",
        "limits.max_agents",
        "limits.max_sessions",
        "limits.backlog_max",
        "limits.text_pool_mb",
        "limits.agent_text_max",
        "limits.customer_text_max",
        "limits.envelopes_per_frame",
        "timers.heartbeat_timeout_ms",
        "timers.gateway_timeout_ms",
        "timers.stats_interval_ms",
        "log.level",
        "admin.port",
        "store.dir",
        "store.durability",
        "store.commit_delay_us",
        "store.segment_mb",
        "store.checkpoint_mb",
        "store.retention_days",
        "store.ring_mb",
        "store.history_customers",
        "store.key_hex",
        "gateways[].id",
        "gateways[].name",
        "gateways[].role",
        "gateways[].plaintext",
        "gateways[].allow",
        "gateways[].keys",
        "gateways[].keys[].id",
        "gateways[].keys[].hex",
        "skills[].name",
        "skills[].tenant",
        "skills[].queue_capacity",
        "skills[].sla_answer_ms",
        "skills[].strategy",
        "skills[].wrap_up_ms",
        "skills[].break_cap_pct",
        "skills[].break_max_ms",
        "skills[].first_response_ms",
        "skills[].reply_overdue_ms",
        "skills[].hold_max_ms",
        "skills[].idle_alert_ms",
        "skills[].reroute_ms",
        "skills[].eta_step_ms",
        "skills[].hours",
        "skills[].hours.open",
        "skills[].hours.close",
        "skills[].hours.days",
        "skills[].hours.utc_offset",
        "skills[].overflow",
        "skills[].overflow[].after_ms",
        "skills[].overflow[].to",
};
#define NB_KEYS (sizeof(all_keys) / sizeof(all_keys[0]))

/* The output of ctl_config_print_keys, malloc'd. */
static char *help_text(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	ctl_config_print_keys(f);
	fclose(f);
	return text;
}

/* The line of `text` that starts (after blanks) with `key` and a blank. */
static const char *help_line(const char *text, const char *key)
{
	for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
		const char *p = line + strspn(line, " ");

		if (strncmp(p, key, strlen(key)) == 0 && p[strlen(key)] == ' ')
			return line;
		if (!strchr(line, '\n'))
			break;
	}
	return NULL;
}

static void test_print_keys(void **state)
{
	char *text = help_text();
	unsigned int lines = 0;

	(void)state;
	for (size_t i = 0; i < NB_KEYS; i++)
		if (!help_line(text, all_keys[i]))
			fail_msg("--help does not list %s:\n%s", all_keys[i], text);
	for (const char *p = text; *p; p++)
		lines += *p == '\n';
	/* no key in the table that this test does not know of */
	assert_int_equal(lines, NB_KEYS);
	/* "section.key  type  default  description" */
	assert_non_null(strstr(help_line(text, "router.port"), " u16 "));
	assert_non_null(strstr(help_line(text, "router.port"), " 7700 "));
	assert_non_null(strstr(help_line(text, "router.address"), " required "));
	assert_non_null(strstr(help_line(text, "log.level"), " info "));
	assert_non_null(strstr(help_line(text, "log.level"), "error|warning|info|debug"));
	assert_non_null(strstr(help_line(text, "skills[].queue_capacity"), " 1000 "));
	assert_non_null(strstr(help_line(text, "limits.envelopes_per_frame"), "[1..64]"));
	assert_non_null(strstr(help_line(text, "skills[].strategy"), " least-loaded "));
	assert_non_null(strstr(help_line(text, "skills[].strategy"),
	                       "[least-loaded|longest-idle|round-robin|best-skill|fewest-today|"
	                       "random]"));
	assert_non_null(strstr(help_line(text, "skills[].break_cap_pct"), " 20 "));
	assert_non_null(strstr(help_line(text, "skills[].break_cap_pct"), "[1..100]"));
	assert_non_null(strstr(help_line(text, "skills[].break_max_ms"), " 1200000 "));
	assert_non_null(strstr(help_line(text, "skills[].idle_alert_ms"), " 900000 "));
	assert_non_null(strstr(help_line(text, "skills[].hours.utc_offset"), " +08:00 "));
	assert_non_null(strstr(help_line(text, "skills[].overflow[].to"), " required "));
	free(text);
}

static void test_docs_name_every_key(void **state)
{
	char path[256], *docs, *text = help_text();
	size_t len;
	FILE *f = open_repo_file("docs/configuration.md", path, sizeof(path));

	(void)state;
	docs = calloc(1, 1 << 20);
	assert_non_null(docs);
	len = fread(docs, 1, (1 << 20) - 1, f);
	fclose(f);
	assert_true(len > 0);
	/* every key --help prints: the table itself, not this test's list */
	for (const char *line = text; *line;) {
		const char *p = line + strspn(line, " ");
		const char *end = strchr(p, ' ');
		char key[64];
		char row[80];

		assert_non_null(end);
		assert_true((size_t)(end - p) < sizeof(key));
		memcpy(key, p, (size_t)(end - p));
		key[end - p] = '\0';
		/* documented in a table row of its own: "| `key` |" */
		snprintf(row, sizeof(row), "| `%s` |", key);
		if (!strstr(docs, row))
			fail_msg("%s does not document %s (no row \"%s\")", path, key, row);
		line = strchr(line, '\n');
		if (!line)
			break;
		line++;
	}
	free(docs);
	free(text);
}

/* ---- no input crashes it ----------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void test_mutations_never_crash(void **state)
{
	static const char pieces[] = ":-[]{},&*!|>'\"#?\n \t0123456789x\\";
	const char *env = getenv("SURGE_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	size_t base = strlen(example_text);
	char *buf = malloc(2 * base + 64);
	unsigned int ok = 0;

	(void)state;
	assert_non_null(buf);
	printf("test_config: seed %llu (set SURGE_SEED to repeat)\n", (unsigned long long)seed);
	rng_state = seed;
	for (int iter = 0; iter < 3000; iter++) {
		size_t len = base;
		int edits = 1 + (int)(rng() % 4), rc;

		memcpy(buf, example_text, base);
		for (int e = 0; e < edits; e++) {
			size_t at = len ? rng() % len : 0, n;

			switch (rng() % 4) {
			case 0: /* overwrite a byte */
				if (len)
					buf[at] = rng() % 3 ? pieces[rng() % (sizeof(pieces) - 1)]
					                    : (char)rng();
				break;
			case 1: /* delete a run */
				n = rng() % 16;
				if (n > len - at)
					n = len - at;
				memmove(buf + at, buf + at + n, len - at - n);
				len -= n;
				break;
			case 2: /* insert a byte */
				if (len < 2 * base + 32) {
					memmove(buf + at + 1, buf + at, len - at);
					buf[at] = pieces[rng() % (sizeof(pieces) - 1)];
					len++;
				}
				break;
			default: /* cut the file short */
				len = at;
				break;
			}
		}
		memset(err, 'x', sizeof(err));
		rc = ctl_config_parse("fuzz.yaml", buf, len, &cfg, err, sizeof(err));
		if (rc == 0) {
			ok++;
			assert_true(cfg.nb_gateways >= 1 && cfg.nb_gateways <= CTL_MAX_GATEWAYS);
			assert_true(cfg.nb_skills >= 1 && cfg.nb_skills <= CTL_MAX_SKILLS);
			assert_true(cfg.ip != 0);
			continue;
		}
		if (rc != -EINVAL)
			fail_msg("seed %llu iteration %d: rc %d", (unsigned long long)seed, iter,
			         rc);
		assert_true(strlen(err) < sizeof(err));
		if (strncmp(err, "fuzz.yaml:", 10) != 0)
			fail_msg("seed %llu iteration %d: \"%s\"", (unsigned long long)seed, iter,
			         err);
	}
	printf("test_config: %u of 3000 mutated files were still valid\n", ok);
	free(buf);
}

static void test_store_section(void **state)
{
	static const char base[] = ROUTER GW SK;
	char text[512];

	(void)state;
	assert_int_equal(parse(base), 0);
	assert_string_equal(cfg.store_dir, "/var/lib/surge");
	assert_int_equal(cfg.store_policy, CTL_STORE_SYNC);
	assert_false(cfg.store_has_key);
	snprintf(text, sizeof(text), "%sstore: {dir: /tmp/x, durability: \"interval:25\"}\n", base);
	assert_int_equal(parse(text), 0);
	assert_int_equal(cfg.store_policy, CTL_STORE_INTERVAL);
	assert_int_equal(cfg.store_interval_ms, 25);
	snprintf(text, sizeof(text), "%sstore: {durability: none, key_hex: %s}\n", base,
	         "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
	assert_int_equal(parse(text), 0);
	assert_int_equal(cfg.store_policy, CTL_STORE_NONE);
	assert_true(cfg.store_has_key);
	assert_int_equal(cfg.store_key[31], 0x1f);
	snprintf(text, sizeof(text), "%sstore: {durability: \"interval:0\"}\n", base);
	assert_int_equal(parse(text), -EINVAL);
	assert_non_null(strstr(err, "store.durability"));
	snprintf(text, sizeof(text), "%sstore: {durability: always}\n", base);
	assert_int_equal(parse(text), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_store_section),
	        cmocka_unit_test(test_example_text),
	        cmocka_unit_test(test_example_file),
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_absent_keys_take_defaults),
	        cmocka_unit_test(test_every_key_lands),
	        cmocka_unit_test(test_limits_at_most),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_too_many),
	        cmocka_unit_test(test_skill_timer_ranges),
	        cmocka_unit_test(test_overflow_targets),
	        cmocka_unit_test(test_error_quotes_safely),
	        cmocka_unit_test(test_error_buffer),
	        cmocka_unit_test(test_failure_leaves_cfg),
	        cmocka_unit_test(test_file_not_found),
	        cmocka_unit_test(test_file_errors),
	        cmocka_unit_test(test_print_keys),
	        cmocka_unit_test(test_docs_name_every_key),
	        cmocka_unit_test(test_mutations_never_crash),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
