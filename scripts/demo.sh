#!/usr/bin/env bash
# `make demo`: an echo server, several clients at once, messages that keep
# their boundaries, and a clean stop. Uses only the built tool and examples.
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
echo "  (the partial line is not delivered before its newline)"
exec 3>&-
stop_echo

say "done: every client got its own replies, each message whole"
