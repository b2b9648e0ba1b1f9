/* SPDX-License-Identifier: MIT */
/*
 * surge-router: loads the configuration, brings up DPDK and the port, and
 * runs the router core on a worker lcore (or on the main lcore when it is
 * the only one) until SIGINT or SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_branch_prediction.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_prefetch.h>

#include "ctl.h"
#include "net.h"
#include "router_pvt.h"

#define SURGE_VERSION "0.1.0"
#define RX_BURST      32

static atomic_int force_quit;
static atomic_int dump_requested;

struct run {
	struct rt_router rt;
	struct net_port port;
	struct net_sock sock;
	const struct ctl_config *cfg;
};

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		atomic_store_explicit(&dump_requested, 1, memory_order_relaxed);
	else
		atomic_store_explicit(&force_quit, 1, memory_order_relaxed);
}

static uint64_t unix_ms(void)
{
	struct timespec ts;

	/* vDSO: no system call */
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The data path: rx burst -> router core -> tx burst, run to completion. */
static int worker_main(void *arg)
{
	struct run *run = arg;
	struct rt_router *rt = &run->rt;
	struct rte_mbuf *pkts[RX_BURST];
	const uint64_t tick_tsc = rte_get_tsc_hz() / 1000; /* 1 ms: the delayed-ack bound */
	const uint64_t stats_tsc = rte_get_tsc_hz() / 1000 * run->cfg->stats_interval_ms;
	uint64_t prev_tick = rte_rdtsc(), prev_stats = prev_tick;

	while (!atomic_load_explicit(&force_quit, memory_order_relaxed)) {
		uint64_t cur = rte_rdtsc();
		uint16_t n;

		if (unlikely(cur - prev_tick > tick_tsc)) {
			rt_set_time(rt, unix_ms());
			rt_tick(rt);
			if (atomic_exchange_explicit(&dump_requested, 0, memory_order_relaxed) ||
			    (stats_tsc && cur - prev_stats > stats_tsc)) {
				rt_dump_stats(rt, stdout);
				prev_stats = cur;
			}
			prev_tick = cur;
		}

		n = net_port_rx(&run->port, pkts, RX_BURST);
		if (n == 0)
			continue;
		rt_set_time(rt, unix_ms());
		for (uint16_t i = 0; i < n; i++) {
			if (i + 1 < n)
				rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void *));
			rt_rx_frame(rt, pkts[i]);
		}
		rt_end_burst(rt);
	}
	return 0;
}

/*
 * The same router core on a kernel UDP socket: one recvmmsg per burst of up
 * to 32 datagrams, waiting at most 1 ms so the delayed acks and timers run.
 */
static void kernel_main(struct run *run)
{
	struct rt_router *rt = &run->rt;
	struct net_sock *s = &run->sock;
	uint64_t prev_tick = 0, prev_stats = 0;

	while (!atomic_load_explicit(&force_quit, memory_order_relaxed)) {
		unsigned n = net_sock_rx(s, 1000);
		uint64_t now = unix_ms();

		rt_set_time(rt, now);
		for (unsigned i = 0; i < n; i++) {
			struct net_rx rx = {
			        .peer = s->rx_peer[i],
			        .payload = s->rx_buf[i],
			        .payload_len = s->rx_len[i],
			};
			rt_rx_datagram(rt, &rx);
		}
		if (n)
			rt_end_burst(rt);
		if (now != prev_tick) {
			rt_tick(rt);
			prev_tick = now;
		}
		if (atomic_exchange_explicit(&dump_requested, 0, memory_order_relaxed) ||
		    (run->cfg->stats_interval_ms &&
		     now - prev_stats > run->cfg->stats_interval_ms)) {
			rt_dump_stats(rt, stdout);
			prev_stats = now;
		}
	}
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: surge-router -c FILE [options] [-- EAL options]\n"
	        "\n"
	        "The routing tier of a customer-service platform: receives gateways' UDP\n"
	        "datagrams (one protobuf surge.v1.Packet each) on a DPDK port and routes\n"
	        "every conversation to an agent of the right skill group.\n"
	        "\n"
	        "options:\n"
	        "  -c, --config FILE   YAML configuration (see docs/configuration.md); required\n"
	        "      --check         validate the configuration, print a summary and exit\n"
	        "      --erase ID      erase customer ID's data from the session store (the\n"
	        "                      router must be stopped): a tombstone now, the log\n"
	        "                      scrubbed at the next checkpoint\n"
	        "      --io KIND       dpdk (default): serve on the DPDK port; kernel: serve on a\n"
	        "                      kernel UDP socket bound to router.address:router.port\n"
	        "                      (no EAL; where DPDK cannot run, and the baseline that\n"
	        "                      make bench measures DPDK against)\n"
	        "  -h, --help          this text, then every configuration key\n"
	        "  -V, --version       print the version and exit\n"
	        "\n"
	        "EAL options after -- are appended to dpdk.eal from the configuration, e.g.\n"
	        "  surge-router -c surge.yaml -- --no-huge --no-pci -m 512 "
	        "--vdev=net_af_packet0,iface=veth0\n"
	        "\n"
	        "signals: SIGINT/SIGTERM stop cleanly (exit 0); SIGUSR1 prints every counter\n"
	        "(Prometheus text format) on stdout. Counters are also printed on exit.\n"
	        "The line \"surge-router: ready ...\" on stdout says it is serving.\n"
	        "\n"
	        "configuration keys:\n");
	ctl_config_print_keys(out);
}

static void print_summary(const struct ctl_config *cfg)
{
	char ip[16];

	net_ip_str(cfg->ip, ip, sizeof(ip));
	printf("config ok: %s:%u, %u gateway(s), %u skill group(s), %u EAL argument(s)\n", ip,
	       cfg->udp_port, cfg->nb_gateways, cfg->nb_skills, cfg->nb_eal_args);
}

static void say_ready(const struct ctl_config *cfg, const char *how)
{
	char ip[16];

	net_ip_str(cfg->ip, ip, sizeof(ip));
	printf("surge-router: ready on %s:%u, %s, %u gateway(s), %u skill group(s)\n", ip,
	       cfg->udp_port, how, cfg->nb_gateways, cfg->nb_skills);
	fflush(stdout);
}

/* The admin endpoint, when configured. 0, or a negative errno (said on stderr). */
static int start_admin(struct rt_router *rt, const struct ctl_config *cfg)
{
	int ret = rt_admin_start(rt, cfg->admin_port);

	if (ret < 0)
		fprintf(stderr,
		        "surge-router: cannot serve the admin endpoint on 127.0.0.1:%u: %s\n",
		        cfg->admin_port, strerror(-ret));
	else if (cfg->admin_port)
		printf("surge-router: admin endpoint on http://127.0.0.1:%u/\n", cfg->admin_port);
	return ret;
}

static int serve_kernel(const struct ctl_config *cfg)
{
	static struct run run;
	int ret;

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGUSR1, on_signal);
	ret = net_sock_open(&run.sock, cfg->ip, cfg->udp_port);
	if (ret < 0) {
		fprintf(stderr, "surge-router: cannot bind UDP port %u: %s\n", cfg->udp_port,
		        strerror(-ret));
		return EXIT_FAILURE;
	}
	run.cfg = cfg;
	ret = rt_init(&run.rt, cfg, NULL, &run.sock);
	if (ret < 0) {
		fprintf(stderr, "surge-router: cannot set up the router: %s\n", strerror(-ret));
		net_sock_close(&run.sock);
		return EXIT_FAILURE;
	}
	if (start_admin(&run.rt, cfg) < 0) {
		rt_fini(&run.rt);
		net_sock_close(&run.sock);
		return EXIT_FAILURE;
	}
	say_ready(cfg, "kernel UDP socket");
	kernel_main(&run);
	printf("surge-router: stopping\n");
	rt_admin_stop(&run.rt);
	rt_dump_stats(&run.rt, stdout);
	rt_fini(&run.rt);
	net_sock_close(&run.sock);
	return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"check", no_argument, NULL, 'k'},
	        {"io", required_argument, NULL, 'i'},
	        {"help", no_argument, NULL, 'h'},
	        {"version", no_argument, NULL, 'V'},
	        {"erase", required_argument, NULL, 'e'},
	        {NULL, 0, NULL, 0},
	};
	static struct ctl_config cfg;
	static struct run run;
	struct net_port_conf pconf;
	const char *config_path = NULL, *erase = NULL;
	char err[512];
	char *eal_argv[CTL_MAX_EAL_ARGS + 64];
	int eal_argc = 0, opt, ret, check_only = 0, kernel_io = 0, status = EXIT_FAILURE;
	unsigned int worker;

	while ((opt = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'k':
			check_only = 1;
			break;
		case 'e':
			erase = optarg;
			break;
		case 'i':
			kernel_io = strcmp(optarg, "kernel") == 0;
			if (!kernel_io && strcmp(optarg, "dpdk") != 0) {
				fprintf(stderr, "surge-router: --io must be dpdk or kernel\n");
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		case 'V':
			printf("surge-router %s\n", SURGE_VERSION);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!config_path) {
		fprintf(stderr, "surge-router: no configuration given (-c FILE)\n");
		usage(stderr);
		return 2;
	}
	ret = ctl_config_load(config_path, &cfg, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "surge-router: %s\n", err);
		return EXIT_FAILURE;
	}
	if (check_only) {
		print_summary(&cfg);
		return EXIT_SUCCESS;
	}
	if (erase) {
		ret = rt_store_erase(&cfg, erase);
		if (ret < 0) {
			fprintf(stderr, "surge-router: cannot erase %s: %s\n", erase,
			        strerror(-ret));
			return EXIT_FAILURE;
		}
		printf("surge-router: customer %s erased: gone from the history now, scrubbed "
		       "from the log at the next checkpoint\n",
		       erase);
		return EXIT_SUCCESS;
	}

	if (kernel_io)
		return serve_kernel(&cfg);

	eal_argv[eal_argc++] = argv[0];
	for (uint32_t i = 0; i < cfg.nb_eal_args; i++)
		eal_argv[eal_argc++] = cfg.eal_args[i];
	for (int i = optind; i < argc && eal_argc < (int)(sizeof(eal_argv) / sizeof(*eal_argv));
	     i++)
		eal_argv[eal_argc++] = argv[i];

	ret = rte_eal_init(eal_argc, eal_argv);
	if (ret < 0) {
		fprintf(stderr, "surge-router: cannot initialise DPDK EAL: %s\n",
		        rte_strerror(rte_errno));
		return EXIT_FAILURE;
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGUSR1, on_signal);

	pconf = (struct net_port_conf){
	        .port_id = cfg.port_id,
	        .rx_desc = cfg.rx_desc,
	        .tx_desc = cfg.tx_desc,
	        .nb_mbufs = cfg.nb_mbufs,
	        .mtu = cfg.mtu,
	};
	ret = net_port_open(&run.port, &pconf);
	if (ret < 0) {
		fprintf(stderr,
		        "surge-router: cannot open DPDK port %u: %s (%u port(s) available)\n",
		        cfg.port_id, strerror(-ret), rte_eth_dev_count_avail());
		goto out_cleanup_eal;
	}
	run.cfg = &cfg;
	ret = rt_init(&run.rt, &cfg, &run.port, NULL);
	if (ret < 0) {
		fprintf(stderr, "surge-router: cannot set up the router: %s\n", strerror(-ret));
		goto out_close_port;
	}

	if (start_admin(&run.rt, &cfg) < 0) {
		rt_fini(&run.rt);
		goto out_close_port;
	}
	snprintf(err, sizeof(err), "dpdk port %u, mac %02x:%02x:%02x:%02x:%02x:%02x", cfg.port_id,
	         run.port.mac[0], run.port.mac[1], run.port.mac[2], run.port.mac[3],
	         run.port.mac[4], run.port.mac[5]);
	say_ready(&cfg, err);

	/* One worker owns all state; the main lcore only waits for it. */
	worker = rte_get_next_lcore(-1, 1, 0);
	if (worker < RTE_MAX_LCORE) {
		rte_eal_remote_launch(worker_main, &run, worker);
		while (!atomic_load_explicit(&force_quit, memory_order_relaxed))
			usleep(50 * 1000);
		rte_eal_mp_wait_lcore();
	} else {
		worker_main(&run);
	}

	printf("surge-router: stopping\n");
	rt_admin_stop(&run.rt);
	rt_dump_stats(&run.rt, stdout);
	rt_fini(&run.rt);
	status = EXIT_SUCCESS;
out_close_port:
	net_port_close(&run.port);
out_cleanup_eal:
	rte_eal_cleanup();
	return status;
}
