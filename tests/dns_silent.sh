#!/usr/bin/env bash
# Runs test_resolve's silent_* tests in a network namespace of their own,
# whose resolv.conf names 127.0.0.1 as the name server: there the test starts
# a name server that never answers. Needs root and iproute2 (`ip netns`,
# which bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf);
# without them the test is skipped (exit 77), saying why.
#   dns_silent.sh PATH/TO/test_resolve CASE
set -euo pipefail
bin=$1
case_name=$2
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
	echo "skipped: needs root and iproute2 to make a network namespace" >&2
	exit 77
fi
ns=ssock-dns-$$
cleanup() {
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "/etc/netns/$ns"
}
trap cleanup EXIT
ip netns add "$ns" || { echo "skipped: cannot make a network namespace" >&2; exit 77; }
ip -n "$ns" link set lo up
mkdir -p "/etc/netns/$ns"
# One slow server that never answers: the lookup hangs for 30 s, far
# longer than the attempts under test wait.
printf 'nameserver 127.0.0.1\noptions timeout:30 attempts:1\n' >"/etc/netns/$ns/resolv.conf"
SSOCK_TEST_SILENT_DNS=1 ip netns exec "$ns" "$bin" "$case_name"
