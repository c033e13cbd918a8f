#!/usr/bin/env bash
# The ssock tool's subcommands run as programs over loopback, one case per
# CTest test (tests/cli.cmake registers every case_* function below):
#   test_cli.sh CASE PATH/TO/ssock
# Servers listen on port 0 and the port is read from their first line. Nothing
# sleeps: every wait is a `read -t` on a program's output or a `wait` on its
# pid. nc (netcat-openbsd) and socat are required (scripts/deps.sh installs
# them); a case that needs them fails when they are missing, it is not skipped.
set -euo pipefail
case_name=$1
SSOCK=$2
HERE=$(cd "$(dirname "$0")" && pwd)
PEER="python3 $HERE/file_peer.py"
tmp=$(mktemp -d)
declare -A PID OUT ERR IN
cleanup() {
	for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
umask 022

fail() {
	echo "FAIL ($case_name): $*" >&2
	for f in "$tmp"/*.err; do
		[ -s "$f" ] && { echo "--- stderr of $(basename "$f" .err):" >&2; cat "$f" >&2; }
	done
	exit 1
}

need() { command -v "$1" >/dev/null || fail "$1 is not installed (scripts/deps.sh installs it)"; }

# spawn NAME CMD...: runs CMD in the background; its stdout is readable on
# fd ${OUT[NAME]}, its stderr goes to $tmp/NAME.err.
spawn() {
	local name=$1 fd
	shift
	mkfifo "$tmp/$name.out"
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null &
	PID[$name]=$!
	exec {fd}<"$tmp/$name.out"
	OUT[$name]=$fd
}

# spawn_in NAME CMD...: as spawn, and CMD's stdin is a fifo written through
# fd ${IN[NAME]} (say NAME LINE).
spawn_in() {
	local name=$1 fd
	shift
	mkfifo "$tmp/$name.out" "$tmp/$name.in"
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err" <"$tmp/$name.in" &
	PID[$name]=$!
	# in the order the child opens them, or both sides block
	exec {fd}<"$tmp/$name.out"
	OUT[$name]=$fd
	exec {fd}>"$tmp/$name.in"
	IN[$name]=$fd
}

say() { printf '%s\n' "$2" >&"${IN[$1]}"; }

# done_ok NAME: waits for NAME to exit 0.
done_ok() {
	local rc=0
	wait "${PID[$1]}" || rc=$?
	unset "PID[$1]"
	[ "$rc" = 0 ] || fail "$1 exited $rc"
}

# spawn_err NAME CMD...: as spawn, for nc and socat, which announce their
# port on stderr: that is readable on fd ${ERR[NAME]} (see expect_err).
spawn_err() {
	local name=$1 fd
	shift
	mkfifo "$tmp/$name.out" "$tmp/$name.errfifo"
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.errfifo" </dev/null &
	PID[$name]=$!
	# in the order the child opens them, or both sides block
	exec {fd}<"$tmp/$name.out"
	OUT[$name]=$fd
	exec {fd}<"$tmp/$name.errfifo"
	ERR[$name]=$fd
}

# expect NAME REGEX: the next line NAME prints must match REGEX (whole line).
expect() {
	local line
	read -r -t 10 line <&"${OUT[$1]}" || fail "$1: no line (wanted /$2/)"
	[[ $line =~ ^$2$ ]] || fail "$1: wanted /$2/, got '$line'"
	M=("${BASH_REMATCH[@]}")
}

# expect_err NAME REGEX: skips NAME's stderr lines until one matches REGEX.
expect_err() {
	local line
	while read -r -t 10 line <&"${ERR[$1]}"; do
		[[ $line =~ ^$2$ ]] && { M=("${BASH_REMATCH[@]}"); return 0; }
	done
	fail "$1: no line /$2/ on stderr"
}

# expect_eq NAME TEXT: the next line NAME prints must be exactly TEXT.
expect_eq() {
	local line
	read -r -t 10 line <&"${OUT[$1]}" || fail "$1: no line (wanted '$2')"
	[ "$line" = "$2" ] || fail "$1: wanted '$2', got '$line'"
}

# serve NAME ARGS...: starts `ssock ARGS...` and sets PORT from its
# "listening on 127.0.0.1:PORT" line.
serve() {
	local name=$1
	shift
	spawn "$name" "$SSOCK" "$@"
	expect "$name" 'listening on 127\.0\.0\.1:([0-9]+)'
	PORT=${M[1]}
}

# stop NAME: SIGINT; it must exit 0 and print nothing more on stdout
# (except what `rest` allows: a regex for recv-files' summary).
stop() {
	local rc=0 line rest=${2:-}
	kill -INT "${PID[$1]}"
	wait "${PID[$1]}" || rc=$?
	unset "PID[$1]"
	[ "$rc" = 0 ] || fail "$1 exited $rc on SIGINT"
	while IFS= read -r -t 10 line <&"${OUT[$1]}"; do
		[ -n "$rest" ] && [[ $line =~ ^$rest$ ]] && continue
		fail "$1 printed '$line' after the expected output"
	done
}

# run CMD...: runs it to the end; sets RC, STDOUT and STDERR.
run() {
	RC=0
	"$@" >"$tmp/run.out" 2>"$tmp/run.stderr" </dev/null || RC=$?
	STDOUT=$(cat "$tmp/run.out")
	STDERR=$(cat "$tmp/run.stderr")
}

# check_run WANT_RC WANT_STDOUT CMD...
check_run() {
	local rc=$1 out=$2
	shift 2
	run "$@"
	[ "$RC" = "$rc" ] || fail "'$*' exited $RC, wanted $rc (stderr: $STDERR)"
	[ "$STDOUT" = "$out" ] || fail "'$*' printed '$STDOUT', wanted '$out'"
}

# A port nobody listens on: one a listener had, closed again.
closed_port() {
	serve gone listen 127.0.0.1:0
	stop gone
	CLOSED=$PORT
}

# ------------------------------------------------------------ help, usage

case_version_help() {
	run "$SSOCK" --version
	[ "$RC" = 0 ] && [[ $STDOUT =~ ^ssock\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "--version: '$STDOUT'"
	run "$SSOCK" --help
	[ "$RC" = 0 ] || fail "--help exited $RC"
	local all=$STDOUT
	for cmd in echo chat listen send send-file recv-files; do
		grep -q "^  $cmd " <<<"$all" || fail "--help does not list $cmd"
		run "$SSOCK" help "$cmd"
		[ "$RC" = 0 ] && [[ $STDOUT == "usage: ssock $cmd "* ]] || fail "help $cmd: '$STDOUT'"
		local via_help=$STDOUT
		run "$SSOCK" "$cmd" --help
		[ "$RC" = 0 ] && [ "$STDOUT" = "$via_help" ] || fail "$cmd --help differs from help $cmd"
	done
	run "$SSOCK" help help
	[ "$RC" = 0 ] && [ "$STDOUT" = "$all" ] || fail "help help: $RC '$STDOUT'"
}

case_usage_errors() {
	local -a bad=(
		""
		"nonsense"
		"help nonsense"
		"echo"
		"echo --listen"
		"echo --listen 127.0.0.1:0 extra"
		"echo --listen 127.0.0.1:0 --framing bogus"
		"echo --listen 127.0.0.1:0 --reply"
		"chat"
		"chat 127.0.0.1:1 --wait soon"
		"listen"
		"listen 127.0.0.1:0 --dir /tmp"
		"listen 127.0.0.1:0 --udp --framing line"
		"listen 127.0.0.1:0 --max-msg 0"
		"send"
		"send not-an-address hello"
		"send 127.0.0.1:1 hello --wait -5"
		"send-file"
		"send-file 127.0.0.1:1"
		"send-file 127.0.0.1:1 f --framing line"
		"recv-files --listen 127.0.0.1:0"
		"recv-files --dir /tmp"
		"recv-files --listen 127.0.0.1:0 --dir /tmp --max-size lots"
	)
	for args in "${bad[@]}"; do
		# shellcheck disable=SC2086 # word splitting wanted
		run "$SSOCK" $args
		[ "$RC" = 2 ] || fail "'ssock $args' exited $RC, wanted 2"
		[[ $STDERR == "ssock: "* || $STDERR == "usage: "* ]] || fail "'ssock $args' said '$STDERR'"
		grep -q "usage: ssock" <<<"$STDERR" || fail "'ssock $args' printed no usage"
	done
}

# A malformed address is a usage error: the error line, then the usage
# (for every command that takes an address, TCP and UDP).
case_usage_bad_address() {
	local -a bad=(
		"echo --listen 127.0.0.1"
		"echo --listen :abc"
		"echo --listen :99999"
		"echo --listen :-1"
		"echo --udp --listen :abc"
		"chat 127.0.0.1"
		"chat --udp 127.0.0.1:-1"
		"listen :abc"
		"send 127.0.0.1 hello"
		"send-file :99999 /dev/null"
		"recv-files --listen :abc --dir /tmp"
	)
	for args in "${bad[@]}"; do
		# shellcheck disable=SC2086 # word splitting wanted
		run "$SSOCK" $args
		[ "$RC" = 2 ] || fail "'ssock $args' exited $RC, wanted 2"
		[[ $STDERR == "ssock: "* ]] || fail "'ssock $args' said '$STDERR'"
		grep -q "^usage: ssock ${args%% *} " <<<"$STDERR" || fail "'ssock $args' printed no usage: '$STDERR'"
	done
}

# Numbers are whole decimal numbers and nothing else: no sign, no leading
# space, no zero where zero would silently mean "no limit".
case_usage_strict_numbers() {
	local -a opts=(--max-size --max-size --max-size --max-size --max-conns --max-conns --idle-timeout)
	local -a vals=(" -1" "+5" "0" "5 " "0" " 3" "-1")
	local i
	for i in "${!opts[@]}"; do
		run "$SSOCK" recv-files --listen 127.0.0.1:0 --dir "$tmp" "${opts[$i]}" "${vals[$i]}"
		[ "$RC" = 2 ] || fail "recv-files ${opts[$i]} '${vals[$i]}' exited $RC, wanted 2"
		grep -q "^usage: ssock recv-files" <<<"$STDERR" || fail "no usage: '$STDERR'"
	done
	for v in " 5" "+5" "0x10" ""; do
		run "$SSOCK" chat 127.0.0.1:1 --wait "$v"
		[ "$RC" = 2 ] || fail "chat --wait '$v' exited $RC, wanted 2"
		run "$SSOCK" listen 127.0.0.1:0 --max-msg "$v"
		[ "$RC" = 2 ] || fail "listen --max-msg '$v' exited $RC, wanted 2"
		run "$SSOCK" echo --listen 127.0.0.1:0 --max-conns "$v"
		[ "$RC" = 2 ] || fail "echo --max-conns '$v' exited $RC, wanted 2"
	done
	run "$SSOCK" echo --listen 127.0.0.1:0 --max-conns 0
	[ "$RC" = 2 ] || fail "echo --max-conns 0 exited $RC, wanted 2"
	# A number out of range names the range.
	run "$SSOCK" recv-files --listen 127.0.0.1:0 --dir "$tmp" --idle-timeout 2147483648
	[ "$RC" = 2 ] || fail "--idle-timeout 2^31 exited $RC, wanted 2"
	grep -q "0 (off) to 2147483647 milliseconds" <<<"$STDERR" || fail "no range: '$STDERR'"
	run "$SSOCK" echo --listen 127.0.0.1:0 --max-conns 2147483648
	grep -q "from 1 to 2147483647" <<<"$STDERR" || fail "no range: '$STDERR'"
}

# An option that means nothing with --udp is refused, not ignored.
case_usage_udp_max_conns() {
	# (timeout: a tool that took it would serve until killed)
	run timeout 10 "$SSOCK" echo --udp --listen 127.0.0.1:0 --max-conns 5
	[ "$RC" = 2 ] || fail "echo --udp --max-conns exited $RC, wanted 2"
	grep -q "^ssock: --max-conns counts TCP connections" <<<"$STDERR" || fail "said '$STDERR'"
	grep -q "^usage: ssock echo " <<<"$STDERR" || fail "no usage: '$STDERR'"
}

# An option another command takes is named, not its value.
case_usage_option_not_taken() {
	run "$SSOCK" listen 127.0.0.1:0 --dir ""
	[ "$RC" = 2 ] || fail "exited $RC"
	[ "$(head -1 <<<"$STDERR")" = "ssock: listen takes no option --dir" ] || fail "said '$STDERR'"
}

# MSG is required: `send ADDR` alone sends nothing and says so.
case_usage_send_needs_message() {
	run "$SSOCK" send 127.0.0.1:1
	[ "$RC" = 2 ] || fail "'ssock send ADDR' exited $RC, wanted 2"
	grep -q "^usage: ssock send " <<<"$STDERR" || fail "no usage: '$STDERR'"
}

case_version_short() {
	run "$SSOCK" -V
	[ "$RC" = 0 ] && [[ $STDOUT =~ ^ssock\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "-V: rc $RC, '$STDOUT'"
	run "$SSOCK" --help
	grep -q -- "-V, --version" <<<"$STDOUT" || fail "--help does not mention -V"
}

case_runtime_errors() {
	closed_port
	check_run 1 "" "$SSOCK" send "127.0.0.1:$CLOSED" hello
	[ "$STDERR" = "ssock: cannot connect to 127.0.0.1:$CLOSED: connection refused" ] ||
		fail "send to a closed port said '$STDERR'"
	check_run 1 "" "$SSOCK" send-file "127.0.0.1:$CLOSED" "$0"
	[ "$STDERR" = "ssock: cannot connect to 127.0.0.1:$CLOSED: connection refused" ] ||
		fail "send-file to a closed port said '$STDERR'"
	check_run 1 "" "$SSOCK" recv-files --listen 127.0.0.1:0 --dir "$tmp/missing"
	[[ $STDERR == "ssock: cannot open directory $tmp/missing: No such file or directory" ]] ||
		fail "recv-files said '$STDERR'"
	serve busy listen 127.0.0.1:0
	check_run 1 "" "$SSOCK" listen "127.0.0.1:$PORT"
	[ "$STDERR" = "ssock: cannot listen on 127.0.0.1:$PORT: address already in use" ] ||
		fail "listen on a busy port said '$STDERR'"
	stop busy
}

# ------------------------------------------------------------ listen, send

case_listen_send() {
	serve l listen 127.0.0.1:0
	check_run 0 "" "$SSOCK" send "127.0.0.1:$PORT" one "" $'tab\there\\ \x01\xff' "last"
	expect_eq l "one"
	expect_eq l ""
	expect_eq l 'tab\x09here\\ \x01\xff'
	expect_eq l "last"
	stop l
}

case_listen_hex() {
	serve l listen 127.0.0.1:0 --hex
	check_run 0 "" "$SSOCK" send "127.0.0.1:$PORT" AB "" $'\x01\n'
	expect_eq l "4142"
	expect_eq l ""
	expect_eq l "010a"
	stop l
}

case_listen_udp() {
	serve l listen 127.0.0.1:0 --udp
	check_run 0 "" "$SSOCK" send --udp "127.0.0.1:$PORT" one two
	expect_eq l "one"
	expect_eq l "two"
	stop l
}

case_listen_tinyproto() {
	serve l listen 127.0.0.1:0 --framing tinyproto
	check_run 0 "" "$SSOCK" send --framing tinyproto "127.0.0.1:$PORT" one two three
	expect_eq l "one"
	expect_eq l "two"
	expect_eq l "three"
	stop l
}

case_send_reply() {
	local f
	for f in u32 line tinyproto; do
		serve "e_$f" echo --listen 127.0.0.1:0 --framing "$f"
		check_run 0 $'one\n\nthree' "$SSOCK" send --framing "$f" --reply "127.0.0.1:$PORT" one "" three
		check_run 0 "6f6e65" "$SSOCK" send --framing "$f" --reply --hex "127.0.0.1:$PORT" one
		stop "e_$f"
	done
}

case_send_reply_udp() {
	serve e echo --udp --listen 127.0.0.1:0
	check_run 0 $'one\ntwo' "$SSOCK" send --udp --reply "127.0.0.1:$PORT" one two
	stop e
	check_run 1 "" "$SSOCK" send --udp --reply --wait 5000 "127.0.0.1:$PORT" again
	[ "$STDERR" = "ssock: 127.0.0.1:$PORT refused the datagrams (nobody listening?)" ] ||
		fail "udp send to a closed port said '$STDERR'"
}

case_send_reply_missing() {
	serve l listen 127.0.0.1:0
	check_run 1 "" "$SSOCK" send --reply --wait 200 "127.0.0.1:$PORT" hello
	[ "$STDERR" = "ssock: no reply from 127.0.0.1:$PORT to message 1 within 200 ms" ] ||
		fail "missing reply said '$STDERR'"
	expect_eq l "hello"
	stop l
}

# pyserve NAME SCRIPT: runs python3 SCRIPT (with `srv`, a socket listening on
# 127.0.0.1:0, already made) in the background; sets PORT.
pyserve() {
	local name=$1
	spawn "$name" python3 -c "import socket, struct, sys
srv = socket.socket()
srv.bind(('127.0.0.1', 0))
srv.listen(8)
srv.settimeout(10)
print('listening on 127.0.0.1:%d' % srv.getsockname()[1], flush=True)
$2"
	expect "$name" 'listening on 127\.0\.0\.1:([0-9]+)'
	PORT=${M[1]}
}

# What a peer sends reaches the terminal escaped: chat prints one message as
# one line, as listen does, and a raw stream keeps only its newlines.
case_chat_escapes() {
	serve e echo --listen 127.0.0.1:0
	local out
	out=$(printf 'a\033[31mb\\c\302\233d\n' | "$SSOCK" chat "127.0.0.1:$PORT")
	[ "$out" = 'a\x1b[31mb\\c\xc2\x9bd' ] || fail "chat printed '$out'"
	stop e
	serve r echo --listen 127.0.0.1:0 --framing raw
	out=$(printf 'x\033y\n' | "$SSOCK" chat --framing raw "127.0.0.1:$PORT")
	[ "$out" = 'x\x1by' ] || fail "chat --framing raw printed '$out'"
	stop r
	# A message holding a newline is still one line.
	pyserve p "c, _ = srv.accept()
n = struct.unpack('>I', c.recv(4))[0]
c.recv(n)
c.sendall(struct.pack('>I', 9) + b'one\ntwo\x07x')
c.recv(10)"
	out=$(printf 'hi\n' | "$SSOCK" chat "127.0.0.1:$PORT")
	[ "$out" = 'one\x0atwo\x07x' ] || fail "chat printed '$out'"
	wait "${PID[p]}" || fail "the python server failed"
	unset "PID[p]"
	serve u echo --udp --listen 127.0.0.1:0
	out=$(printf 'u\033v\n' | "$SSOCK" chat --udp "127.0.0.1:$PORT")
	[ "$out" = 'u\x1bv' ] || fail "chat --udp printed '$out'"
	stop u
}

# flood PORT N PAYLOAD: N connections one after another, each sends PAYLOAD
# (Python escapes) and closes; at most 30 s in all.
flood() {
	python3 -c "import socket, sys, time
end = time.monotonic() + 30
data = sys.argv[3].encode().decode('unicode_escape').encode('latin-1')
for i in range(int(sys.argv[2])):
    if time.monotonic() > end:
        sys.exit('flood: out of time after %d connections' % i)
    s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
    s.sendall(data)
    s.close()" "$@"
}

# A server's stderr is a pipe nobody reads: per-peer error lines must not stop
# it. 2000 oversized headers, then a good client is served within 5 s; the
# lines that could not be written are counted, not lost silently.
case_echo_stderr_blocked() {
	local hold line
	mkfifo "$tmp/stuck" "$tmp/e.out"
	exec {hold}<>"$tmp/stuck" # a reader that never reads
	"$SSOCK" echo --listen 127.0.0.1:0 --max-msg 16 >"$tmp/e.out" 2>"$tmp/stuck" </dev/null &
	PID[e]=$!
	exec {line}<"$tmp/e.out"
	OUT[e]=$line
	expect e 'listening on 127\.0\.0\.1:([0-9]+)'
	PORT=${M[1]}
	flood "$PORT" 2000 '\xff\xff\xff\xff' || fail "the flood failed"
	check_run 0 "still served" "$SSOCK" send --reply --wait 5000 "127.0.0.1:$PORT" "still served"
	# Now read the pipe: the drop count comes.
	local got=""
	while IFS= read -r -t 10 line <&"$hold"; do
		[[ $line =~ ^ssock:\ \.\.\.\ [0-9]+\ more\ lines\ dropped$ ]] && { got=$line; break; }
	done
	[ -n "$got" ] || fail "no line counted the dropped ones"
	stop e
}

# chat u32 to a line server: nothing comes back, and chat says so.
case_chat_missing_replies() {
	serve e echo --listen 127.0.0.1:0 --framing line
	check_run 0 "" bash -c "printf 'one\ntwo\n' | '$SSOCK' chat --wait 300 127.0.0.1:$PORT"
	[ "$STDERR" = "ssock: 2 of 2 replies missing after 300 ms (does the server at 127.0.0.1:$PORT speak u32?)" ] ||
		fail "chat said '$STDERR'"
	# All replies there: nothing on stderr.
	check_run 0 "one" bash -c "printf 'one\n' | '$SSOCK' chat --framing line 127.0.0.1:$PORT"
	[ -z "$STDERR" ] || fail "chat said '$STDERR'"
	stop e
	# A server that answers the first message only speaks the framing: the
	# hint says so instead of asking about the framing.
	pyserve p "c, _ = srv.accept()
n = struct.unpack('>I', c.recv(4))[0]
m = c.recv(n)
c.sendall(struct.pack('>I', len(m)) + m)
while c.recv(4096):
    pass"
	check_run 0 "one" bash -c "printf 'one\ntwo\n' | '$SSOCK' chat --wait 300 127.0.0.1:$PORT"
	[ "$STDERR" = "ssock: 1 of 2 replies missing after 300 ms (the server at 127.0.0.1:$PORT answered the others: slow? try a longer --wait)" ] ||
		fail "chat said '$STDERR'"
	wait "${PID[p]}" || fail "the python server failed"
	unset "PID[p]"
}

# send-file prints the receiver's refusal escaped.
case_send_file_refusal_escaped() {
	pyserve p "c, _ = srv.accept()
n = struct.unpack('>I', c.recv(4))[0]
c.recv(n)
r = b'X\x1b[2Jgone\xc2\x9b'
c.sendall(struct.pack('>I', len(r)) + r)
c.recv(10)"
	echo data >"$tmp/f"
	run "$SSOCK" send-file "127.0.0.1:$PORT" "$tmp/f"
	[ "$RC" = 1 ] || fail "send-file exited $RC"
	grep -qxF "ssock: $tmp/f was not stored by the receiver: \\x1b[2Jgone\\xc2\\x9b" <<<"$STDERR" ||
		fail "send-file said '$STDERR'"
	wait "${PID[p]}" || fail "the python server failed"
	unset "PID[p]"
}

# --------------------------------------------------- echo --udp and forgery

FORGE="python3 $HERE/udp_forge.py"

# forge SRC_PORT DST_PORT PAYLOAD...: datagrams from 127.0.0.1:SRC_PORT (a raw
# socket writes the headers: needs root; the case is skipped without it).
forge() {
	local rc=0
	$FORGE "$@" || rc=$?
	[ "$rc" = 77 ] && { echo "no raw sockets here: skipped"; exit 77; }
	[ "$rc" = 0 ] || fail "udp_forge.py exited $rc"
}

# cpu_ms PID: the CPU time PID has used, in ms (10 ms steps).
cpu_ms() {
	local stat
	stat=$(cat "/proc/$1/stat") || fail "no process $1"
	stat=${stat##*) }
	local -a f
	read -r -a f <<<"$stat"
	echo $(((f[11] + f[12]) * 1000 / $(getconf CLK_TCK)))
}

# at_rest NAME...: each process uses less than 100 ms of CPU in one second,
# measured after half a second for things to settle. (A measurement over a
# window of time, not a wait for an event: nothing else can show that a
# process is idle.)
at_rest() {
	local quiet name
	declare -A before
	mkfifo "$tmp/quiet"
	exec {quiet}<>"$tmp/quiet"
	read -r -t 0.5 -u "$quiet" || true
	for name in "$@"; do before[$name]=$(cpu_ms "${PID[$name]}"); done
	read -r -t 1 -u "$quiet" || true
	for name in "$@"; do
		local used=$(($(cpu_ms "${PID[$name]}") - before[$name]))
		[ "$used" -lt 100 ] || fail "$name used $used ms of CPU in one second after the attack"
	done
	exec {quiet}>&-
	rm "$tmp/quiet"
}

# A datagram forged to come from the echo server itself: it must not answer
# itself forever (bound to 127.0.0.1, and to 0.0.0.0).
case_udp_echo_forged_self() {
	serve e echo --udp --listen 127.0.0.1:0
	forge "$PORT" "$PORT" "me to me"
	spawn w "$SSOCK" echo --udp --listen 0.0.0.0:0
	expect w 'listening on 0\.0\.0\.0:([0-9]+)'
	local wport=${M[1]}
	forge "$wport" "$wport" "me to me"
	at_rest e w
	check_run 0 "still here" "$SSOCK" send --udp --reply "127.0.0.1:$PORT" "still here"
	check_run 0 "still here" "$SSOCK" send --udp --reply "127.0.0.1:$wport" "still here"
	stop e
	stop w
	grep -q "not answering 127\.0\.0\.1:$PORT: it comes from this server's own address" \
		"$tmp/e.err" || fail "the forged datagram was not reported"
}

# Two echo servers made to answer each other by datagrams forged to come from
# one of them: the game ends, both come to rest, both still serve.
case_udp_echo_forged_loop() {
	serve a echo --udp --listen 127.0.0.1:0
	local pa=$PORT
	serve b echo --udp --listen 127.0.0.1:0
	local pb=$PORT
	forge "$pb" "$pa" one two three four five six seven eight
	at_rest a b
	check_run 0 "a" "$SSOCK" send --udp --reply "127.0.0.1:$pa" a
	check_run 0 "b" "$SSOCK" send --udp --reply "127.0.0.1:$pb" b
	stop a
	stop b
	grep -q "sends this server's replies back" "$tmp/a.err" "$tmp/b.err" ||
		fail "neither server reported the game"
}

# chat and send with --framing tinyproto to a server that is not tinyproto:
# it never sends the handshake byte. One line says so, exit 1 (after the
# handshake's deadline, 10 s: the three run at once).
case_tinyproto_no_handshake() {
	serve e echo --listen 127.0.0.1:0
	local want="ssock: the tinyproto handshake with 127.0.0.1:$PORT did not complete within 10000 ms (does the server speak tinyproto?)"
	printf 'one\ntwo\n' | "$SSOCK" chat --framing tinyproto "127.0.0.1:$PORT" >"$tmp/c.out" 2>"$tmp/c.stderr" &
	PID[c]=$!
	"$SSOCK" send --framing tinyproto "127.0.0.1:$PORT" hi >"$tmp/s.out" 2>"$tmp/s.stderr" </dev/null &
	PID[s]=$!
	"$SSOCK" send --framing tinyproto --reply "127.0.0.1:$PORT" hi >"$tmp/r.out" 2>"$tmp/r.stderr" </dev/null &
	PID[r]=$!
	local n rc
	for n in c s r; do
		rc=0
		wait "${PID[$n]}" || rc=$?
		unset "PID[$n]"
		[ "$rc" = 1 ] || fail "$n exited $rc: $(cat "$tmp/$n.stderr")"
		[ "$(cat "$tmp/$n.stderr")" = "$want" ] || fail "$n said '$(cat "$tmp/$n.stderr")'"
		[ ! -s "$tmp/$n.out" ] || fail "$n printed '$(cat "$tmp/$n.out")'"
	done
	stop e
}

# --------------------------------------------- line and raw with nc, socat

case_nc_line_to_listen() {
	need nc
	serve l listen 127.0.0.1:0 --framing line
	printf 'hello\r\nworld\n\nno newline' | nc -N 127.0.0.1 "$PORT" || fail "nc failed"
	expect_eq l "hello"
	expect_eq l "world"
	expect_eq l ""
	stop l # the partial last line is never delivered
}

case_send_line_to_nc() {
	need nc
	spawn_err nc nc -dlv 127.0.0.1 0
	expect_err nc 'Listening on .* ([0-9]+)'
	check_run 0 "" "$SSOCK" send --framing line "127.0.0.1:${M[1]}" one "two words" ""
	expect_eq nc "one"
	expect_eq nc "two words"
	expect_eq nc ""
	wait "${PID[nc]}" || fail "nc exited $?"
	unset "PID[nc]"
}

case_socat_raw_to_listen() {
	need socat
	serve l listen 127.0.0.1:0 --framing raw
	printf 'raw bytes\001' | socat -u - "TCP:127.0.0.1:$PORT" || fail "socat failed"
	expect_eq l 'raw bytes\x01'
	stop l
}

case_send_raw_to_socat() {
	need socat
	spawn_err socat socat -d -d -u "TCP-LISTEN:0,bind=127.0.0.1" STDOUT
	expect_err socat '.*listening on AF=2 127\.0\.0\.1:([0-9]+)'
	check_run 0 "" "$SSOCK" send --framing raw "127.0.0.1:${M[1]}" 'abc' $'def\n'
	expect_eq socat "abcdef"
	wait "${PID[socat]}" || fail "socat exited $?"
	unset "PID[socat]"
}

case_socat_line_echo() {
	need socat
	serve e echo --listen 127.0.0.1:0 --framing line
	local got
	got=$(printf 'one\r\ntwo\n' | socat -t 10 - "TCP:127.0.0.1:$PORT") || fail "socat failed"
	[ "$got" = $'one\ntwo' ] || fail "socat got '$got' back"
	stop e
}

case_send_to_socat_echo() {
	need socat
	spawn_err socat socat -d -d "TCP-LISTEN:0,bind=127.0.0.1,fork" EXEC:cat
	expect_err socat '.*listening on AF=2 127\.0\.0\.1:([0-9]+)'
	check_run 0 $'one\ntwo' "$SSOCK" send --framing line --reply "127.0.0.1:${M[1]}" one two
	check_run 0 'xyz\x0a' "$SSOCK" send --framing raw --reply "127.0.0.1:${M[1]}" $'xyz\n'
}

# ----------------------------------------------------------- file transfer

# recv NAME ARGS...: starts `ssock recv-files --once` into $tmp/NAME.
recv() {
	local name=$1
	shift
	mkdir -p "$tmp/$name"
	serve "$name" recv-files --once --listen 127.0.0.1:0 --dir "$tmp/$name" "$@"
}

# finish NAME WANT_RC [SUMMARY_REGEX]: waits for a --once receiver to end by
# itself; its last line must be the summary.
finish() {
	local rc=0
	wait "${PID[$1]}" || rc=$?
	unset "PID[$1]"
	[ "$rc" = "$2" ] || fail "$1 exited $rc, wanted $2"
	expect "$1" "recv-files: ${3:-.*}; peak RSS [0-9]+ KiB"
}

# no_leftovers DIR NAME: no file NAME and no temporary file in DIR.
no_leftovers() {
	[ ! -e "$1/$2" ] || fail "$1/$2 exists after a failed transfer"
	local left
	left=$(find "$1" -name '.ssock-part*')
	[ -z "$left" ] || fail "temporary files left: $left"
}

mode_of() { stat -c %a "$1"; }

case_files_several() {
	mkdir "$tmp/src"
	head -c 3145731 /dev/urandom >"$tmp/src/big.bin"
	: >"$tmp/src/empty"
	printf '#!/bin/sh\necho hi\n' >"$tmp/src/run.sh"
	chmod 755 "$tmp/src/run.sh"
	chmod 640 "$tmp/src/big.bin"
	recv rx --stats
	run "$SSOCK" send-file "127.0.0.1:$PORT" "$tmp/src/big.bin" "$tmp/src/empty" "$tmp/src/run.sh"
	[ "$RC" = 0 ] || fail "send-file exited $RC: $STDERR"
	[ -z "$STDERR" ] || fail "send-file said '$STDERR' (stderr is not a terminal: no progress bar)"
	local -a lines
	mapfile -t lines <<<"$STDOUT"
	[ "${#lines[@]}" = 3 ] || fail "send-file printed: $STDOUT"
	[[ ${lines[0]} =~ ^sent\ big\.bin\ \(3145731\ bytes\)\ in\ [0-9.]+\ s,\ .*/s$ ]] || fail "${lines[0]}"
	[[ ${lines[1]} =~ ^sent\ empty\ \(0\ bytes\) ]] || fail "${lines[1]}"
	[[ ${lines[2]} =~ ^sent\ run\.sh\ \(18\ bytes\) ]] || fail "${lines[2]}"
	local f hash
	for f in big.bin:3145731 empty:0 run.sh:18; do
		expect rx "receiving ${f%%:*} \(${f#*:} bytes\) from 127\.0\.0\.1:[0-9]+"
		hash=$(python3 "$HERE/file_peer.py" xxh64 "$tmp/src/${f%%:*}")
		expect rx "received ${f%%:*} \(${f#*:} bytes, xxh64 $hash\) from 127\.0\.0\.1:[0-9]+, peak RSS [0-9]+ KiB"
	done
	finish rx 0 "3 file\(s\) received \(3\.0 MiB\), 0 failed"
	for f in big.bin empty run.sh; do
		cmp "$tmp/src/$f" "$tmp/rx/$f" || fail "$f differs"
	done
	[ "$(mode_of "$tmp/rx/run.sh")" = 755 ] || fail "run.sh has mode $(mode_of "$tmp/rx/run.sh")"
	[ "$(mode_of "$tmp/rx/big.bin")" = 640 ] || fail "big.bin has mode $(mode_of "$tmp/rx/big.bin")"
	no_leftovers "$tmp/rx" nothing
}

case_files_bad_names() {
	recv rx
	mkdir -p "$tmp/rx/a"
	run $PEER "$PORT" name '../x' '/etc/passwd' 'a/b' '' '..' '.' 'a\x00b' 'x..y' $'bell\a'
	[ "$RC" = 0 ] || fail "a bad name was not refused: $STDOUT $STDERR"
	local want="X name contains '/'
X absolute path
X name contains '/'
X empty name
X name is '.' or contains '..'
X name is '.' or contains '..'
X name contains a NUL byte
X name is '.' or contains '..'
X name contains a control character"
	[ "$STDOUT" = "$want" ] || fail "refusals were: $STDOUT"
	finish rx 1 "0 file\(s\) received \(0 B\), 9 failed"
	[ -z "$(ls -A "$tmp/rx/a")" ] && [ "$(ls -A "$tmp/rx")" = a ] || fail "files written: $(ls -AR "$tmp/rx")"
	[ ! -e "$tmp/x" ] || fail "../x was written"
	grep -q "refused '../x' from 127.0.0.1:[0-9]*: name contains '/'" "$tmp/rx.err" ||
		fail "the receiver did not say why"
}

# Names are valid UTF-8 without controls (C0, DEL, C1) or bidirectional
# formatting, and never in the receiver's temporary namespace; a valid UTF-8
# name lands and is printed as it is.
case_files_name_policy() {
	recv rx
	run $PEER "$PORT" name 'a\xc2\x9bb' '\xff' 'caf\xc3' '\xe2\x80\xaeevil' '\xc0\xaf' \
		'\xed\xa0\x80' '.ssock-part.1.1' 'x..' '..x' 'del\x7f'
	[ "$RC" = 0 ] || fail "a bad name was not refused: $STDOUT $STDERR"
	local want="X name contains a control character
X name is not valid UTF-8
X name is not valid UTF-8
X name contains a bidirectional formatting or separator character
X name is not valid UTF-8
X name is not valid UTF-8
X name starts with '.ssock-part' (the receiver's temporary files)
X name is '.' or contains '..'
X name is '.' or contains '..'
X name contains a control character"
	[ "$STDOUT" = "$want" ] || fail "refusals were: $STDOUT"
	finish rx 1 "0 file\(s\) received \(0 B\), 10 failed"
	[ -z "$(ls -A "$tmp/rx")" ] || fail "files written: $(ls -A "$tmp/rx")"
	grep -qF "refused 'a\\xc2\\x9bb' from 127.0.0.1:" "$tmp/rx.err" || fail "the name was not logged escaped"
	if LC_ALL=C grep -q $'\302\233' "$tmp/rx.err"; then fail "a C1 control reached the log"; fi
	mkdir "$tmp/src"
	echo hi >"$tmp/src/résumé.txt"
	recv rx2
	run "$SSOCK" send-file "127.0.0.1:$PORT" "$tmp/src/résumé.txt"
	[ "$RC" = 0 ] || fail "send-file of a UTF-8 name exited $RC: $STDERR"
	expect rx2 "receiving résumé\.txt \(3 bytes\) from .*"
	expect rx2 "received résumé\.txt .*"
	finish rx2 0
	cmp "$tmp/src/résumé.txt" "$tmp/rx2/résumé.txt" || fail "résumé.txt differs"
}

case_files_no_overwrite() {
	mkdir "$tmp/src"
	echo new >"$tmp/src/f.txt"
	echo other >"$tmp/src/g.txt"
	recv rx
	echo old >"$tmp/rx/f.txt"
	run "$SSOCK" send-file "127.0.0.1:$PORT" "$tmp/src/f.txt" "$tmp/src/g.txt"
	[ "$RC" = 1 ] || fail "send-file over an existing file exited $RC"
	[[ $STDOUT =~ ^sent\ g\.txt ]] || fail "the next file was not sent: $STDOUT"
	grep -qx "ssock: $tmp/src/f.txt was not stored by the receiver: a file of that name exists.*" \
		<<<"$STDERR" || fail "send-file said: $STDERR"
	grep -qx "ssock: 1 of 2 file(s) not stored at 127.0.0.1:$PORT" <<<"$STDERR" || fail "$STDERR"
	expect rx "receiving g\.txt .*"
	expect rx "received g\.txt .*"
	finish rx 1
	[ "$(cat "$tmp/rx/f.txt")" = old ] || fail "f.txt was overwritten"
	# With --overwrite it is replaced.
	recv rx2 --overwrite
	echo old >"$tmp/rx2/f.txt"
	run "$SSOCK" send-file "127.0.0.1:$PORT" "$tmp/src/f.txt"
	[ "$RC" = 0 ] || fail "send-file with --overwrite exited $RC: $STDERR"
	expect rx2 "receiving f\.txt .*"
	expect rx2 "received f\.txt .*"
	finish rx2 0
	[ "$(cat "$tmp/rx2/f.txt")" = new ] || fail "f.txt was not replaced"
	no_leftovers "$tmp/rx2" nothing
}

case_files_max_size() {
	head -c 5000 /dev/zero >"$tmp/five"
	recv rx --max-size 4096
	run "$SSOCK" send-file "127.0.0.1:$PORT" "$tmp/five"
	[ "$RC" = 1 ] || fail "an oversized file exited $RC"
	grep -q "over the limit of 4096" <<<"$STDERR" || fail "send-file said: $STDERR"
	finish rx 1
	no_leftovers "$tmp/rx" five
}

# Sender B names its file after sender A's temporary file (the names are
# predictable: .ssock-part.PID.1 for the first). With --overwrite that
# replaced A's content, which was then confirmed to A as stored. Such names
# are refused, with unnamed temporary files and with named ones.
case_files_tmp_namespace() {
	local mode
	for mode in 0 1; do
		mkdir "$tmp/rx$mode"
		SSOCK_TEST_NO_TMPFILE=$mode serve "rx$mode" recv-files --overwrite --listen 127.0.0.1:0 \
			--dir "$tmp/rx$mode"
		spawn_in "a$mode" $PEER "$PORT" hold a.bin
		expect "a$mode" R
		expect "rx$mode" "receiving a\.bin .*"
		run $PEER "$PORT" put ".ssock-part.${PID[rx$mode]}.1" EVIL
		[ "$STDOUT" = "X name starts with '.ssock-part' (the receiver's temporary files)" ] ||
			fail "B was answered '$STDOUT'"
		say "a$mode" go
		expect "a$mode" "K a\.bin"
		done_ok "a$mode"
		python3 -c "import sys; sys.exit(open(sys.argv[1], 'rb').read() != bytes(range(256)) * 64)" \
			"$tmp/rx$mode/a.bin" || fail "a.bin does not hold A's content"
		stop "rx$mode" "received a\.bin .*|recv-files: .*"
		[ "$(ls -A "$tmp/rx$mode")" = a.bin ] || fail "left in DIR: $(ls -A "$tmp/rx$mode")"
	done
}

# A stop by SIGHUP (terminal closed) or with stdout gone (SIGPIPE) removes the
# temporary file of a transfer in progress (named ones, so they can be seen).
case_files_hangup_cleans() {
	export SSOCK_TEST_NO_TMPFILE=1
	recv rx
	spawn_in a $PEER "$PORT" hold a.bin
	expect a R
	expect rx "receiving a\.bin .*"
	[ -n "$(find "$tmp/rx" -name '.ssock-part*')" ] || fail "no temporary file to see"
	kill -HUP "${PID[rx]}"
	finish rx 1 "0 file\(s\) received \(0 B\), 1 failed"
	no_leftovers "$tmp/rx" a.bin
	say a go
	wait "${PID[a]}" || true
	unset "PID[a]"
}

case_files_stdout_closed() {
	export SSOCK_TEST_NO_TMPFILE=1
	recv rx
	eval "exec ${OUT[rx]}<&-" # nobody reads stdout any more: printing fails
	echo data >"$tmp/f"
	run "$SSOCK" send-file "127.0.0.1:$PORT" "$tmp/f"
	[ "$RC" = 0 ] || fail "send-file exited $RC: $STDERR"
	cmp "$tmp/f" "$tmp/rx/f" || fail "f was not stored"
	local rc=0
	wait "${PID[rx]}" || rc=$?
	unset "PID[rx]"
	[ "$rc" = 0 ] || fail "recv-files exited $rc"
	no_leftovers "$tmp/rx" nothing
}

# After SIGKILL the named temporary file stays; the next receiver on the
# directory removes it and says so, but not one another receiver holds.
case_files_stale_after_kill() {
	export SSOCK_TEST_NO_TMPFILE=1
	mkdir "$tmp/d"
	serve rx recv-files --listen 127.0.0.1:0 --dir "$tmp/d"
	spawn_in a $PEER "$PORT" hold a.bin
	expect a R
	expect rx "receiving a\.bin .*"
	kill -9 "${PID[rx]}"
	wait "${PID[rx]}" 2>/dev/null || true
	unset "PID[rx]"
	local stale
	stale=$(cd "$tmp/d" && ls -A)
	[[ $stale == .ssock-part.* ]] || fail "no stale file after SIGKILL: '$stale'"
	say a go
	wait "${PID[a]}" || true
	unset "PID[a]"
	# A live receiver with a transfer of its own, then one more receiver.
	serve live recv-files --listen 127.0.0.1:0 --dir "$tmp/d"
	local live_port=$PORT
	spawn_in b $PEER "$PORT" hold b.bin
	expect b R
	expect live "receiving b\.bin .*"
	serve next recv-files --listen 127.0.0.1:0 --dir "$tmp/d"
	stop next "recv-files: .*"
	grep -qx "ssock: removed $stale from $tmp/d: a temporary file left by a receiver that did not stop cleanly ([0-9]* bytes)" \
		"$tmp/live.err" || fail "the stale file was not reported: $(cat "$tmp/live.err")"
	grep -q "left .ssock-part.* in $tmp/d: in use (another receiver is writing it)" "$tmp/next.err" ||
		fail "the live transfer's file was not reported as in use: $(cat "$tmp/next.err")"
	say b go
	expect b "K b\.bin"
	done_ok b
	stop live "received b\.bin .*|recv-files: .*"
	[ "$(ls -A "$tmp/d")" = b.bin ] || fail "left in DIR: $(ls -A "$tmp/d")"
}

# --once: a port probe (connect, close) is not the first sender.
case_files_once_probe() {
	recv rx
	python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10).close()" "$PORT"
	echo data >"$tmp/f"
	run "$SSOCK" send-file "127.0.0.1:$PORT" "$tmp/f"
	[ "$RC" = 0 ] || fail "send-file after a probe exited $RC: $STDERR"
	expect rx "receiving f .*"
	expect rx "received f .*"
	finish rx 0 "1 file\(s\) received \(5 B\), 0 failed"
}

# A sender that stalls mid-file is closed after --idle-timeout and its
# temporary file removed.
case_files_idle_timeout() {
	export SSOCK_TEST_NO_TMPFILE=1
	recv rx --idle-timeout 300
	# A connection that never sends anything is closed too (and is no sender
	# for --once).
	run python3 -c "import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
sys.exit(s.recv(1) != b'')" "$PORT"
	[ "$RC" = 0 ] || fail "the silent connection was not closed"
	run $PEER "$PORT" stall a.bin
	[ "$STDOUT" = $'R\nclosed' ] || fail "the stalled sender saw '$STDOUT'"
	expect rx "receiving a\.bin .*"
	finish rx 1
	no_leftovers "$tmp/rx" a.bin
	grep -q "transfer of 'a.bin' from .* broken after 8192 of 16384 bytes; nothing kept (idle for longer than --idle-timeout)" \
		"$tmp/rx.err" || fail "the idle close was not reported: $(cat "$tmp/rx.err")"
}

# --max-conns: one more sender is closed at once, the others go on.
case_files_max_conns() {
	mkdir "$tmp/rx"
	serve rx recv-files --listen 127.0.0.1:0 --dir "$tmp/rx" --max-conns 2
	spawn_in a $PEER "$PORT" hold a.bin
	expect a R
	spawn_in b $PEER "$PORT" hold b.bin
	expect b R
	run python3 -c "import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
try:
    got = s.recv(1)
except ConnectionResetError:
    got = b''
sys.exit(got != b'')" "$PORT"
	[ "$RC" = 0 ] || fail "a third sender was not closed"
	say a go
	say b go
	expect a "K a\.bin"
	expect b "K b\.bin"
	done_ok a
	done_ok b
	stop rx "receiv(ing|ed) [ab]\.bin .*|recv-files: .*"
	grep -q "connection limit reached" "$tmp/rx.err" || fail "the refusal was not reported"
}

# 20 senders push refused headers and never read the answers: the receiver
# stops reading them (or closes them); its memory stays bounded.
case_files_memory_non_readers() {
	mkdir "$tmp/rx"
	# ASan keeps freed memory in quarantine (256 MiB by default): keep it small.
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4 \
		serve rx recv-files --listen 127.0.0.1:0 --dir "$tmp/rx" --max-size 1
	local before after
	before=$(awk '/^VmRSS/ {print $2}' "/proc/${PID[rx]}/status")
	python3 -c "import select, socket, struct, sys, time
hdr = b'H\x01' + struct.pack('>QI', 1000, 0o644) + b'f'
blob = (struct.pack('>I', len(hdr)) + hdr) * 20000
socks = []
for i in range(20):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(('127.0.0.1', int(sys.argv[1])))
    s.setblocking(False)
    socks.append(s)
end = time.monotonic() + 20
pushed = 0
while socks and time.monotonic() < end and pushed < 400 << 20:
    _, w, _ = select.select([], socks, [], 2)
    if not w:
        break  # the receiver reads none of them any more
    for s in w:
        try:
            pushed += s.send(blob)
        except OSError:
            socks.remove(s)
            s.close()
print(pushed, len(socks))" "$PORT" >"$tmp/push.out" || fail "the pushing senders failed"
	after=$(awk '/^VmHWM/ {print $2}' "/proc/${PID[rx]}/status")
	echo "pushed $(cat "$tmp/push.out") (bytes, senders still open); RSS ${before} KiB, peak ${after} KiB"
	[ $((after - before)) -lt 32768 ] || fail "the receiver grew by $((after - before)) KiB"
	stop rx "recv-files: .*"
}

# The file work runs on the main thread, not on the server's loop: while the
# main thread is stuck (here on a stdout nobody reads; a slow disk does the
# same), the loop still serves: a sender over --max-conns is closed at once.
case_files_loop_not_blocked() {
	local hold i long
	mkdir "$tmp/rx" "$tmp/src"
	long=$(printf 'n%.0s' $(seq 240))
	for i in $(seq 1 150); do echo "$i" >"$tmp/src/$long.$i"; done
	mkfifo "$tmp/rx.out"
	"$SSOCK" recv-files --listen 127.0.0.1:0 --dir "$tmp/rx" --max-conns 1 \
		>"$tmp/rx.out" 2>"$tmp/rx.err" </dev/null &
	PID[rx]=$!
	exec {hold}<"$tmp/rx.out"
	OUT[rx]=$hold
	expect rx 'listening on 127\.0\.0\.1:([0-9]+)'
	PORT=${M[1]}
	# 150 files of two long lines each: more than a pipe holds, unread.
	"$SSOCK" send-file "127.0.0.1:$PORT" "$tmp/src"/* >"$tmp/tx.out" 2>"$tmp/tx.err" &
	PID[tx]=$!
	python3 -c "import glob, socket, sys, time
port = int(sys.argv[1])
def closed(s, within):
    s.settimeout(within)
    try:
        return s.recv(1) == b''
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
# Until the receiver's stdout is full: a thread of it is then stuck in a
# write. (No event says so: /proc is looked at, for 20 s at most.)
def stuck():
    for t in glob.glob('/proc/%s/task/*/wchan' % sys.argv[2]):
        with open(t) as f:
            if 'pipe_write' in f.read():
                return True
    return False
t0 = time.monotonic()
while time.monotonic() - t0 < 20:
    if stuck():
        break
    time.sleep(0.01)
else:
    sys.exit('the receiver never blocked on stdout')
extra = socket.create_connection(('127.0.0.1', port), timeout=10)
if not closed(extra, 5):
    sys.exit('the sender over --max-conns was not closed')
" "$PORT" "${PID[rx]}" || fail "the loop was blocked"
	# Read stdout again: everything completes.
	local line n=0
	while IFS= read -r -t 10 line <&"$hold"; do
		[[ $line == received* ]] && n=$((n + 1))
		[ "$n" = 150 ] && break
	done
	[ "$n" = 150 ] || fail "only $n files were received"
	done_ok tx
	stop rx "recv-files: .*"
}

# A peer that breaks the protocol in WAY: the receiver answers X (or sees the
# connection end), keeps nothing, and --once exits 1.
broken_peer() {
	local way=$1 want=$2
	recv rx
	run $PEER "$PORT" "$way" victim.bin
	[ "$RC" = 0 ] || fail "peer ($way): $STDOUT $STDERR"
	[[ $STDOUT =~ $want ]] || fail "peer ($way) got: $STDOUT"
	expect rx "receiving victim\.bin \(16384 bytes\) from .*"
	finish rx 1
	no_leftovers "$tmp/rx" victim.bin
}

case_files_bad_checksum() { broken_peer badsum $'R\nX checksum mismatch \(xxh64 0123456789abcdef announced, [0-9a-f]{16} received\)$'; }
case_files_short_data() { broken_peer short $'R\nX size mismatch: 16384 bytes announced, 8192 received$'; }
case_files_too_much_data() { broken_peer toomuch $'R\nX more data than the announced size$'; }

case_files_peer_gone() {
	broken_peer cut '^R$'
	grep -q "transfer of 'victim.bin' from .* broken after 8192 of 16384 bytes; nothing kept" \
		"$tmp/rx.err" || fail "the receiver did not report the broken transfer"
}

# The real sender killed mid-file: the receiver is stopped as soon as the file
# starts, so the sender can only fill the socket buffers before it is killed.
case_files_sender_killed() {
	truncate -s 64M "$tmp/huge"
	recv rx
	spawn tx "$SSOCK" send-file "127.0.0.1:$PORT" "$tmp/huge"
	expect rx "receiving huge \(67108864 bytes\) from .*"
	kill -STOP "${PID[rx]}"
	kill -9 "${PID[tx]}"
	wait "${PID[tx]}" 2>/dev/null || true
	unset "PID[tx]"
	kill -CONT "${PID[rx]}"
	finish rx 1
	no_leftovers "$tmp/rx" huge
	grep -q "transfer of 'huge' from .* broken after [0-9]* of 67108864 bytes; nothing kept" \
		"$tmp/rx.err" || fail "the receiver did not report the broken transfer"
}

declare -F "case_$case_name" >/dev/null || fail "no such case"
"case_$case_name"
echo "ok: $case_name"
