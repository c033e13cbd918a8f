#!/usr/bin/env bash
# tests/valgrind.sh BUILD_DIR [CTEST_ARGS...]: runs each test binary that
# ctest selects (default: -L net -LE "load|sanitized", the integration tests without the
# heaviest load ones) under valgrind memcheck, two at a time. A test fails on
# any memcheck error or a definite/indirect leak, or if it fails itself.
# Scripts (the examples' runners) are skipped: valgrind would check bash.
set -euo pipefail
build=${1:?usage: valgrind.sh BUILD_DIR [CTEST_ARGS...]}
shift
[ $# -gt 0 ] || set -- -L net -LE "load|sanitized"
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 2; }
logs=$build/valgrind
rm -rf "$logs"
mkdir -p "$logs"
# One line per test: name, then its environment (VAR=VALUE words) and its
# command (build paths have no spaces). Disabled tests are left out.
(cd "$build" && ctest --show-only=json-v1 "$@") | python3 -c '
import json, sys
for t in json.load(sys.stdin)["tests"]:
    cmd = t.get("command") or []
    props = {p["name"]: p["value"] for p in t.get("properties", [])}
    if props.get("DISABLED") or not cmd or cmd[0].endswith((".sh", ".py", "python3")):
        continue
    print(" ".join([t["name"]] + list(props.get("ENVIRONMENT", [])) + cmd))
' >"$logs/list"
export SSOCK_LOAD_SCALE=10 # counts a test may shrink under valgrind
run_one() {
	local name=$1 env=()
	shift
	while [[ $1 == *=* ]]; do
		env+=("$1")
		shift
	done
	local log=$logs/$name.log
	if env "${env[@]}" valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
		--errors-for-leak-kinds=definite,indirect --track-fds=no "$@" >"$log" 2>&1; then
		echo "ok   $name"
	else
		echo "FAIL $name (exit $?, log $log)"
		tail -n 15 "$log" | sed 's/^/    | /' # CI keeps only what is printed
	fi
}
export -f run_one
export logs
start=$SECONDS
results=$(xargs -P "$(nproc)" -L 1 bash -c 'run_one "$@"' _ <"$logs/list")
echo "$results"
n=$(grep -c . <<<"$results" || true)
failed=$(grep -c '^FAIL' <<<"$results" || true)
echo "valgrind: $n tests, $failed failed, $((SECONDS - start)) s"
[ "$failed" -eq 0 ]
