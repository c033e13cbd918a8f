#!/usr/bin/env bash
# Instructions per echoed message in a server's own user space, counted by
# callgrind: repeatable on a noisy machine, where timings are not.
#
#   bench/callgrind.sh [SERVER...]      (default: ssock epoll-u32)
#
# Two loads, 64-byte u32 messages: pingpong with 100 connections (every
# connection has one message waiting at each wakeup) and pipeline (10
# connections with 64 messages waiting each). bench/cgdriver.py holds the
# batching fixed (it stops the server while it writes a round), runs each
# server twice under callgrind and takes the difference, so start-up and
# connection set-up cancel out. Needs build-bench/ (bench/run.sh builds it;
# this script builds it when it is missing) and valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BENCH_BUILD_DIR:-build-bench}
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(ssock epoll-u32)

if [ ! -x "$B/bench/bench_epoll_u32" ] || [ ! -x "$B/ssock" ]; then
	cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DSSOCK_BENCH=ON -DSSOCK_TESTS=OFF \
		-DSSOCK_EXAMPLES=OFF >/dev/null
	cmake --build "$B" -j "$(nproc)" >/dev/null
fi
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 2; }

server_cmd() {
	case $1 in
	ssock) CMD=("$B/ssock" echo --listen 127.0.0.1:0) ;;
	epoll-u32) CMD=("$B/bench/bench_epoll_u32" --listen 127.0.0.1:0) ;;
	*) echo "callgrind.sh: unknown server $1 (ssock or epoll-u32)" >&2; exit 2 ;;
	esac
}

printf '%-10s %14s %14s\n' server 'pingpong 100' 'pipeline 10x64'
for s in "${servers[@]}"; do
	server_cmd "$s"
	pp=$(python3 bench/cgdriver.py --conns 100 --depth 1 -- "${CMD[@]}")
	pipe=$(python3 bench/cgdriver.py --conns 10 --depth 64 -- "${CMD[@]}")
	printf '%-10s %14s %14s\n' "$s" "$pp" "$pipe"
done
echo "(instructions per echoed message, server user space; lower is cheaper)"
