#!/usr/bin/env bash
# Runs examples/echo_client against `ssock echo` on a free port and checks
# that the two messages come back as two replies.
set -euo pipefail
tool=$1 client=$2
coproc SRV { exec "$tool" echo --listen 127.0.0.1:0; }
pid=$SRV_PID
trap 'kill "$pid" 2>/dev/null || true' EXIT
read -r -t 10 line <&"${SRV[0]}"
port=${line##*:}
out=$("$client" "127.0.0.1:$port")
expected=$'reply 1: one\nreply 2: two'
if [ "$out" != "$expected" ]; then
  printf 'unexpected output:\n%s\n' "$out" >&2
  exit 1
fi
kill -INT "$pid"
wait "$pid"
echo "echo_client got both replies whole"
