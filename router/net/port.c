/* SPDX-License-Identifier: MIT */
/*
 * The DPDK port: one rx and one tx queue on a PCI NIC or any vdev
 * (net_af_packet, net_tap, net_null ...), one mbuf pool for both.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "net.h"

#define PORT_RX_DESC    1024
#define PORT_TX_DESC    1024
#define PORT_NB_MBUFS   8191 /* 2^n - 1: the mempool ring's best size */
#define PORT_MTU        1500
#define PORT_MTU_MAX    9000
#define PORT_MBUF_CACHE 256

int net_port_open(struct net_port *port, const struct net_port_conf *conf)
{
	struct rte_eth_conf eth_conf;
	struct rte_eth_dev_info info;
	struct rte_ether_addr mac;
	char pool_name[RTE_MEMPOOL_NAMESIZE];
	uint16_t rx_desc, tx_desc, mtu;
	uint32_t nb_mbufs, cache, room;
	int socket, ret;

	memset(port, 0, sizeof(*port));
	port->port_id = conf->port_id;
	rx_desc = conf->rx_desc ? conf->rx_desc : PORT_RX_DESC;
	tx_desc = conf->tx_desc ? conf->tx_desc : PORT_TX_DESC;
	nb_mbufs = conf->nb_mbufs ? conf->nb_mbufs : PORT_NB_MBUFS;
	mtu = conf->mtu ? conf->mtu : PORT_MTU;
	if (mtu < RTE_ETHER_MIN_MTU || mtu > PORT_MTU_MAX)
		return -EINVAL;
	if (!rte_eth_dev_is_valid_port(port->port_id))
		return -ENODEV;
	ret = rte_eth_dev_info_get(port->port_id, &info);
	if (ret < 0)
		return ret;

	/* a frame must fit one mbuf: the router drops chained ones */
	room = RTE_MBUF_DEFAULT_DATAROOM;
	if ((uint32_t)mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN > room)
		room = (uint32_t)mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
	/* the mempool refuses a per-lcore cache above 2/3 of its size */
	cache = PORT_MBUF_CACHE;
	if (cache > nb_mbufs / 2)
		cache = nb_mbufs / 2;
	socket = rte_eth_dev_socket_id(port->port_id);
	if (socket < 0)
		socket = SOCKET_ID_ANY;
	snprintf(pool_name, sizeof(pool_name), "surge_mbuf_p%u", (unsigned int)port->port_id);
	port->pool = rte_pktmbuf_pool_create(pool_name, nb_mbufs, cache, 0,
	                                     (uint16_t)(room + RTE_PKTMBUF_HEADROOM), socket);
	if (!port->pool)
		return -ENOMEM;

	memset(&eth_conf, 0, sizeof(eth_conf));
	eth_conf.rxmode.mtu = mtu;
	ret = rte_eth_dev_configure(port->port_id, 1, 1, &eth_conf);
	if (ret < 0)
		goto out_free_pool;
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port->port_id, &rx_desc, &tx_desc);
	if (ret < 0)
		goto out_close_dev;
	ret = rte_eth_rx_queue_setup(port->port_id, 0, rx_desc, (unsigned int)socket, NULL,
	                             port->pool);
	if (ret < 0)
		goto out_close_dev;
	ret = rte_eth_tx_queue_setup(port->port_id, 0, tx_desc, (unsigned int)socket, NULL);
	if (ret < 0)
		goto out_close_dev;
	/* some vdevs (net_null) have no MTU to set; the router still sizes frames by mtu */
	ret = rte_eth_dev_set_mtu(port->port_id, mtu);
	if (ret < 0 && ret != -ENOTSUP)
		goto out_close_dev;
	ret = rte_eth_dev_start(port->port_id);
	if (ret < 0)
		goto out_close_dev;
	/*
	 * Frames to other stations are dropped in software anyway (an af_packet
	 * vdev sees whatever the kernel interface sees); a PMD that cannot
	 * switch promiscuous mode is no reason to fail.
	 */
	(void)rte_eth_promiscuous_disable(port->port_id);
	ret = rte_eth_macaddr_get(port->port_id, &mac);
	if (ret < 0)
		goto out_stop_dev;
	memcpy(port->mac, mac.addr_bytes, sizeof(port->mac));
	port->mtu = mtu;
	return 0;

out_stop_dev:
	rte_eth_dev_stop(port->port_id);
out_close_dev:
	/* closing releases the queues that still point into the pool */
	rte_eth_dev_close(port->port_id);
out_free_pool:
	rte_mempool_free(port->pool);
	port->pool = NULL;
	return ret;
}

uint16_t net_port_rx(struct net_port *port, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port->port_id, 0, pkts, n);
}

uint16_t net_port_tx(struct net_port *port, struct rte_mbuf **pkts, uint16_t n)
{
	uint16_t sent = rte_eth_tx_burst(port->port_id, 0, pkts, n);

	if (unlikely(sent < n)) {
		rte_pktmbuf_free_bulk(&pkts[sent], n - sent);
		port->tx_dropped += n - sent;
	}
	return sent;
}

void net_port_close(struct net_port *port)
{
	if (!port->pool)
		return;
	rte_eth_dev_stop(port->port_id);
	rte_eth_dev_close(port->port_id);
	rte_mempool_free(port->pool);
	port->pool = NULL;
}
