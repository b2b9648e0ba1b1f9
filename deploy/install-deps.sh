#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Installs everything surge needs to build, test and run its demo, from
# Debian 12's packages. Idempotent: when every package is present it only
# asks dpkg and exits (well under a second). Run as root (or with sudo).
set -euo pipefail

packages=(
	build-essential pkg-config make gcc clang
	dpdk dpdk-dev libdpdk-dev
	liburing-dev
	libprotobuf-c-dev protobuf-c-compiler
	libcmocka-dev
	libssl-dev
	libyaml-dev
	libmicrohttpd-dev
	curl
	iproute2 iputils-ping ethtool procps python3
	clang-format clang-tidy cppcheck
	valgrind
	redis-server redis-tools
)

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
else
	sudo=""
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
