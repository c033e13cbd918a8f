#!/usr/bin/env bash
# Runs one pair of example programs (examples/) over loopback and checks, line
# by line, what the server and its clients print.
#   run_examples.sh CASE PROGRAM...     (paths come from CMake: tests/examples.cmake)
# Servers are started on port 0 and the port is read from their first line
# ("listening on HOST:PORT"). Nothing sleeps: every wait is a `read -t` on a
# program's output or a `wait` on its pid; servers are stopped with SIGINT and
# must exit 0 without printing anything more.
set -euo pipefail
case_name=$1
shift
tmp=$(mktemp -d)
declare -A PID IN OUT
cleanup() {
	for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
	echo "FAIL ($case_name): $*" >&2
	for f in "$tmp"/*.err; do
		[ -s "$f" ] && { echo "--- stderr of $(basename "$f" .err):" >&2; cat "$f" >&2; }
	done
	exit 1
}

# spawn NAME CMD...: runs CMD in the background with its stdin and stdout on
# fifos, so the test can type lines to it (say) and read its lines (expect).
spawn() {
	local name=$1 fd
	shift
	mkfifo "$tmp/$name.in" "$tmp/$name.out"
	# The child must not hold the other programs' fifo ends (hangup would
	# then not reach them); exec keeps $! the program's own pid.
	(
		for fd in "${IN[@]}" "${OUT[@]}"; do eval "exec $fd>&-"; done
		exec "$@"
	) <"$tmp/$name.in" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	PID[$name]=$!
	exec {fd}>"$tmp/$name.in"
	IN[$name]=$fd
	exec {fd}<"$tmp/$name.out"
	OUT[$name]=$fd
}

say() { printf '%s\n' "$2" >&"${IN[$1]}"; }

# Closes NAME's stdin: the program sees end of input.
hangup() { eval "exec ${IN[$1]}>&-"; }

# expect NAME REGEX: the next line NAME prints must match REGEX (whole line);
# the groups are left in M.
expect() {
	local line
	read -r -t 10 line <&"${OUT[$1]}" || fail "$1: no line (wanted /$2/)"
	[[ $line =~ ^$2$ ]] || fail "$1: wanted /$2/, got '$line'"
	M=("${BASH_REMATCH[@]}")
}

# expect_eq NAME TEXT: the next line NAME prints must be exactly TEXT.
expect_eq() {
	local line
	read -r -t 10 line <&"${OUT[$1]}" || fail "$1: no line (wanted '$2')"
	[ "$line" = "$2" ] || fail "$1: wanted '$2', got '$line'"
}

# finish NAME [RC]: waits for NAME to exit with RC (default 0) and checks that
# it printed nothing more.
finish() {
	local rc=0 line
	wait "${PID[$1]}" || rc=$?
	unset "PID[$1]"
	[ "$rc" = "${2:-0}" ] || fail "$1 exited with $rc, wanted ${2:-0}"
	rc=0
	read -r -t 10 line <&"${OUT[$1]}" || rc=$?
	[ "$rc" = 1 ] || fail "$1: more output after the end: '$line'"
}

stop() {
	kill -INT "${PID[$1]}"
	finish "$1" 0
}

# run INPUT CMD...: runs CMD to the end with INPUT on stdin; sets OUTPUT, RC.
run() {
	local input=$1
	shift
	RC=0
	OUTPUT=$(printf '%s' "$input" | "$@" 2>"$tmp/run.err") || RC=$?
}

check_run() { # check_run RC EXPECTED_OUTPUT
	[ "$RC" = "$1" ] || fail "client exited with $RC, wanted $1; output: '$OUTPUT'"
	[ "$OUTPUT" = "$2" ] || fail "client printed:"$'\n'"$OUTPUT"$'\n'"wanted:"$'\n'"$2"
}

start_server() { # start_server PROGRAM ARGS...: sets ADDR (127.0.0.1:PORT)
	spawn srv "$@"
	expect srv 'listening on 127\.0\.0\.1:([0-9]+)'
	ADDR=127.0.0.1:${M[1]}
}

PEER='(127\.0\.0\.1:[0-9]+)'

# echo SERVER CLIENT: the README's first example prints where it listens (the
# real port for port 0), serves the client (two messages, two replies), and
# stops on SIGINT with exit code 0, whatever its stdin is.
case_echo() {
	start_server "$1" 127.0.0.1:0
	run "" "$2" "$ADDR"
	check_run 0 $'reply 1: one\nreply 2: two'
	run "" "$2" "$ADDR"
	check_run 0 $'reply 1: one\nreply 2: two'
	stop srv
	# With stdin at its end from the start, it still serves until stopped.
	spawn eof "$1" 127.0.0.1:0
	hangup eof
	expect eof 'listening on 127\.0\.0\.1:([0-9]+)'
	run "" "$2" "127.0.0.1:${M[1]}"
	check_run 0 $'reply 1: one\nreply 2: two'
	kill -TERM "${PID[eof]}"
	finish eof 0
}

# simplesockets SERVER CLIENT...: each client sends messages back to back and
# gets each back whole (an empty one, and one longer than simplesockets'
# 2048-byte recv_buffer); the server sees each message and each departure.
case_simplesockets() {
	local server=$1 client big peer
	shift
	start_server "$server" 127.0.0.1:0
	big=$(printf 'x%.0s' $(seq 3000))
	for client in "$@"; do
		run "" "$client" "$ADDR" one two "" "$big"
		check_run 0 "reply 1 (3 bytes): one"$'\n'"reply 2 (3 bytes): two"$'\n'"reply 3 (0 bytes): "$'\n'"reply 4 (3000 bytes): $big"
		expect srv "$PEER connected"
		peer=${M[1]}
		for n in 3 3 0 3000; do expect_eq srv "$peer sent $n bytes"; done
		expect_eq srv "$peer disconnected (closed by the client)"
		run "" "$client" "$ADDR"
		check_run 0 "reply 1 (4 bytes): Test"
		expect srv "$PEER connected"
		peer=${M[1]}
		expect_eq srv "$peer sent 4 bytes"
		expect_eq srv "$peer disconnected (closed by the client)"
	done
	stop srv
}

case_simplesockets_inbox() { case_simplesockets "$@"; }
case_simplesockets_callbacks() { case_simplesockets "$@"; }

# hello SERVER CLIENT: client A stays connected while client B is served in
# full (no one-at-a-time), and each reply names its client's real address.
case_hello() {
	local pa pb local_a
	start_server "$1" 127.0.0.1:0
	spawn a "$2" "$ADDR"
	expect_eq a "Connected to $ADDR"
	expect srv "Connection received from $PEER"
	pa=${M[1]}
	# The address the server reports is A's own end of the connection.
	if command -v ss >/dev/null; then
		local_a=$(ss -Htn state established dst "$ADDR" | awk '{print $3}')
		[ "$local_a" = "$pa" ] || fail "server says the client is $pa, the kernel says $local_a"
	fi

	run $'hi there\n\nsecond line\n' "$2" "$ADDR"
	expect srv "Connection received from $PEER"
	pb=${M[1]}
	check_run 0 "Connected to $ADDR
Got this string from server:
Hello, $pb. I got this from you: 'hi there'

Can't send empty string!
Ctrl-D to exit
Got this string from server:
Hello, $pb. I got this from you: 'second line'

Okay. Leaving. Bye"
	expect_eq srv "Received 'hi there' from $pb"
	expect_eq srv "Received 'second line' from $pb"
	expect_eq srv "End of file from $pb"

	say a "from A"
	expect_eq a "Got this string from server:"
	expect_eq a "Hello, $pa. I got this from you: 'from A'"
	expect_eq a ""
	expect_eq srv "Received 'from A' from $pa"
	hangup a
	expect_eq a "Okay. Leaving. Bye"
	finish a
	expect_eq srv "End of file from $pa"
	stop srv
}

# greeter SERVER CLIENT: eight clients at once each get the whole greeting
# before the server closes (a graceful close loses nothing).
case_greeter() {
	local i rc
	start_server "$1" 127.0.0.1:0
	for i in 1 2 3 4 5 6 7 8; do "$2" "$ADDR" >"$tmp/g$i.out" 2>"$tmp/g$i.err" & PID[g$i]=$!; done
	for i in 1 2 3 4 5 6 7 8; do
		rc=0
		wait "${PID[g$i]}" || rc=$?
		unset "PID[g$i]"
		[ "$rc" = 0 ] || fail "greeter client $i exited with $rc"
		[ "$(cat "$tmp/g$i.out")" = "Thank you for connecting" ] || fail "client $i got '$(cat "$tmp/g$i.out")'"
		expect srv "Got a connection from $PEER"
	done
	stop srv
}

# bye SERVER CLIENT: two clients at once; `bye` ends a client's connection
# (the server closes it), also when it arrives in one packet with another line.
case_bye() {
	local pa pb s line rc
	start_server "$1" 127.0.0.1:0
	spawn a "$2" "$ADDR"
	expect_eq a "From Server : This is from Client"
	expect srv "New connection added: $PEER"
	pa=${M[1]}
	expect_eq srv "From client $pa: This is from Client"

	run $'hello\nbye\nnever sent\n' "$2" "$ADDR"
	check_run 0 $'From Server : This is from Client\nFrom Server : hello'
	expect srv "New connection added: $PEER"
	pb=${M[1]}
	expect_eq srv "From client $pb: This is from Client"
	expect_eq srv "From client $pb: hello"
	expect_eq srv "Client at $pb disconnected..."

	run "" "$2" "$ADDR" # end of input counts as bye
	check_run 0 "From Server : This is from Client"
	expect srv "New connection added: $PEER"
	pb=${M[1]}
	expect_eq srv "From client $pb: This is from Client"
	expect_eq srv "Client at $pb disconnected..."

	# A raw peer writes "one\n<ESC>[31mred\nbye\n" at once: two echoes, then the
	# server closes. The server prints the escape byte as '?', not raw.
	exec {s}<>"/dev/tcp/127.0.0.1/${ADDR##*:}"
	printf 'one\n\033[31mred\nbye\n' >&"$s"
	read -r -t 10 line <&"$s" || fail "raw peer: no echo"
	[ "$line" = one ] || fail "raw peer got '$line'"
	read -r -t 10 line <&"$s" || fail "raw peer: no second echo"
	[ "$line" = $'\033[31mred' ] || fail "raw peer got '$line'"
	rc=0
	read -r -t 10 line <&"$s" || rc=$?
	[ "$rc" = 1 ] || fail "raw peer: server did not close after bye (got '$line')"
	exec {s}<&-
	expect srv "New connection added: $PEER"
	pb=${M[1]}
	expect_eq srv "From client $pb: one"
	expect_eq srv "From client $pb: ?[31mred"
	expect_eq srv "Client at $pb disconnected..."

	say a "still here"
	expect_eq a "From Server : still here"
	expect_eq srv "From client $pa: still here"
	say a bye
	finish a
	expect_eq srv "Client at $pa disconnected..."
	stop srv
}

# tinyproto SERVER SSOCK_TOOL: speaks the tinyproto framing (the tool's chat
# --framing tinyproto is its client); listens on 127.0.0.1 and [::1]; the
# limit of 2 refuses a third client while the two go on; a freed slot is
# usable again.
case_tinyproto() {
	local tool=$2 p6 pa pb
	grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null || {
		echo "no IPv6 loopback: skipped"
		exit 77
	}
	start_server "$1" 127.0.0.1:0 '[::1]:0'
	expect srv 'listening on \[::1\]:([0-9]+)'
	p6=${M[1]}

	spawn a "$tool" chat --framing tinyproto "$ADDR"
	expect srv "$PEER connected, 1 active"
	pa=${M[1]}
	say a ping
	expect_eq a ping
	expect_eq srv "$pa sent 4 bytes"

	spawn b "$tool" chat --framing tinyproto "[::1]:$p6"
	expect srv '(\[::1\]:[0-9]+) connected, 2 active'
	pb=${M[1]}
	say b "over IPv6"
	expect_eq b "over IPv6"
	expect_eq srv "$pb sent 9 bytes"

	run $'refused?\n' "$tool" chat --framing tinyproto "$ADDR"
	check_run 1 ""
	expect srv "$PEER: accept: connection limit reached"

	say a "still served"
	expect_eq a "still served"
	expect_eq srv "$pa sent 12 bytes"
	hangup a
	finish a
	expect_eq srv "$pa disconnected (closed by the client), 1 active"

	run $'again\n' "$tool" chat --framing tinyproto "$ADDR"
	check_run 0 again
	expect srv "$PEER connected, 2 active"
	pa=${M[1]}
	expect_eq srv "$pa sent 5 bytes"
	expect_eq srv "$pa disconnected (closed by the client), 1 active"

	hangup b
	finish b
	expect_eq srv "$pb disconnected (closed by the client), 0 active"
	stop srv
}

# udp SERVER CLIENT: two clients at once, a 3000-byte datagram comes back
# whole, `bye` ends a client; with no server the client says so and exits 1.
case_udp() {
	local pa pb big port
	start_server "$1" 127.0.0.1:0
	spawn a "$2" "$ADDR"
	expect_eq a "Message from Server: Hello server, from UDP client!"
	expect srv "Message from $PEER: Hello server, from UDP client!"
	pa=${M[1]}

	big=$(printf 'y%.0s' $(seq 3000))
	run "hi"$'\n'"$big"$'\n'"bye"$'\n'"never sent"$'\n' "$2" "$ADDR"
	check_run 0 "Message from Server: Hello server, from UDP client!
Message from Server: hi
Message from Server: $big"
	expect srv "Message from $PEER: Hello server, from UDP client!"
	pb=${M[1]}
	expect_eq srv "Message from $pb: hi"
	expect_eq srv "Message from $pb: $big"
	expect_eq srv "$pb said bye"

	say a "still here"
	expect_eq a "Message from Server: still here"
	expect_eq srv "Message from $pa: still here"
	hangup a # end of input counts as bye
	finish a
	expect_eq srv "$pa said bye"
	port=${ADDR##*:}
	stop srv

	# Nothing listens on that port now: the kernel's refusal is reported.
	run "" "$2" "127.0.0.1:$port"
	check_run 1 ""
	grep -q "connection refused" "$tmp/run.err" || fail "no refusal reported: $(cat "$tmp/run.err")"
}

"case_$case_name" "$@"
echo "ok: $case_name"
