#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The session store on a full disk (crash_store --fill): on a small
# filesystem (a loop-mounted 32 MiB ext4 image, else a 16 MiB tmpfs) that a
# filler file helps fill, the store appends until it fails; the process stays
# up, the store reports unhealthy with ENOSPC and every acknowledged record is
# in the log. Then the filler is deleted: recovery succeeds and new appends
# become durable.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin="$BUILD/tests/crash_store"
[ -x "$bin" ] || { echo "skip: $bin is not built (make)"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "skip: mounting a small filesystem needs root"; exit 77; }

work=$(mktemp -d /tmp/surge-full-disk.XXXXXX)
mnt="$work/mnt"
mkdir -p "$mnt"
cleanup() {
	if mountpoint -q "$mnt"; then
		umount "$mnt" 2>/dev/null || umount -l "$mnt"
	fi
	rm -rf "$work"
}
trap cleanup EXIT

fs=
if truncate -s 32M "$work/img" && mkfs.ext4 -q -F "$work/img" >/dev/null 2>&1 &&
	mount -o loop "$work/img" "$mnt" 2>/dev/null; then
	fs="ext4 on a loop device (32 MiB)"
elif mount -t tmpfs -o size=16m surge-full-disk "$mnt" 2>/dev/null; then
	fs="tmpfs (16 MiB)"
else
	echo "skip: neither a loop-mounted ext4 image nor a tmpfs can be mounted here"
	exit 77
fi
echo "filesystem: $fs"
# Freed at the end to make room: more than a segment (1 MiB) and its successor.
dd if=/dev/zero of="$mnt/filler" bs=1M count=4 status=none && sync
df -h "$mnt" | tail -n 1
timeout --kill-after=5 30 "$bin" --fill "$mnt/store" --filler "$mnt/filler"
rc=$?
[ $rc -eq 124 ] && echo "timed out after 30 s"
exit $rc
