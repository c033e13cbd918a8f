#!/usr/bin/env bash
# `make demo`: an echo server, several clients at once, messages that keep
# their boundaries, and a clean stop; then UDP echo, and a file transfer
# with its progress bar. Uses only the built tool and examples.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Starts "ssock echo ARGS..." as a coprocess and sets PORT from its
# "listening on HOST:PORT" line (no guessing, no fixed port).
start_echo() {
  coproc SRV { exec "$B/ssock" echo "$@"; }
  local line
  read -r -t 10 line <&"${SRV[0]}" || { echo "demo: server did not start" >&2; exit 1; }
  echo "server: $line"
  PORT=${line##*:}
}

stop_echo() {
  local pid=$SRV_PID
  kill -INT "$pid"
  local rc=0
  wait "$pid" || rc=$?
  echo "server stopped on SIGINT, exit code $rc"
  [ "$rc" = 0 ]
}

say "1. an echo server (u32 framing) on a free port"
start_echo --listen 127.0.0.1:0

say "2. five clients at once, each sending its own lines"
for i in 1 2 3 4 5; do
  printf 'client %d: hello\nclient %d: how are you?\nclient %d: bye now\n' "$i" "$i" "$i" |
    "$B/ssock" chat "127.0.0.1:$PORT" | sed "s/^/  reply to /" &
done
wait_clients() { for job in $(jobs -p); do [ "$job" = "$SRV_PID" ] || wait "$job"; done; }
wait_clients

say "3. boundaries: 'one' and 'two' sent back to back come back as two messages"
"$B/examples/echo_client" "127.0.0.1:$PORT" | sed 's/^/  /'

say "4. a 2048-byte line and an empty line arrive whole (no recv_buffer cut)"
long=$(head -c 2048 /dev/zero | tr '\0' 'x')
printf '%s\n\n' "$long" | "$B/ssock" chat "127.0.0.1:$PORT" |
  awk '{ printf "  reply of %d bytes\n", length($0) }'

stop_echo

say "5. line framing talks to plain TCP peers (here bash's /dev/tcp, as nc would)"
start_echo --listen 127.0.0.1:0 --framing line
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'typed by a person\r\nand another line\npartial line without newline' >&3
for _ in 1 2; do
  IFS= read -r -t 5 reply <&3
  echo "  line back: '$reply'"
done
echo "  (the partial line is not delivered before its newline: when this peer"
echo "   closes, the server reports it below as 'peer closed ... in mid-message')"
exec 3>&-
stop_echo

say "6. UDP: every datagram is one message, echoed to its sender"
start_echo --udp --listen 127.0.0.1:0
printf 'ping over UDP\nsecond datagram\nbye\n' | "$B/ssock" chat --udp "127.0.0.1:$PORT" |
  sed 's/^/  datagram back: /'
stop_echo

say "7. a file transfer: send-file to recv-files, checked with cmp"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ssock-demo.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/in" "$tmp/out"
head -c $((24 * 1024 * 1024)) /dev/urandom >"$tmp/in/payload.bin"
echo "  generated payload.bin, 24 MiB of random bytes"
# The receiver's lines come through a pipe that outlives it (--once: it exits
# after the sender is done); its stderr (its own progress bar) goes to a file
# so the sender's bar, drawn when stderr is a terminal, is the one you see.
exec {RX}< <(exec "$B/ssock" recv-files --once --stats --listen 127.0.0.1:0 --dir "$tmp/out" \
  2>"$tmp/rx.err")
RX_PID=$!
read -r -t 10 line <&"$RX" || { echo "demo: recv-files did not start" >&2; exit 1; }
echo "receiver: $line"
PORT=${line##*:}
"$B/ssock" send-file "127.0.0.1:$PORT" "$tmp/in/payload.bin" | sed 's/^/  sender: /'
while IFS= read -r -t 10 line <&"$RX"; do echo "  receiver: $line"; done
wait "$RX_PID" || { cat "$tmp/rx.err" >&2; echo "demo: recv-files failed" >&2; exit 1; }
cmp "$tmp/in/payload.bin" "$tmp/out/payload.bin"
echo "  cmp: the received file is byte for byte the one sent"

say "done: every client got its own replies, each message whole; the file arrived intact"
