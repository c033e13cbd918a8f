#!/bin/sh
# fuzz/run.sh [SECONDS]: builds the libFuzzer targets with clang in
# build-fuzz/ and runs each for SECONDS (default 60). New corpus entries go
# to build-fuzz/corpus/ (the checked-in seeds in fuzz/corpus/ stay small).
# A crash input is copied to fuzz/crashes/<target>-<name>, where CMake turns
# it into a regression test (and this script replays it before fuzzing).
# Exits 1 if any target crashed or a saved crash crashes again.
set -eu

secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
targets="fuzz_u32 fuzz_line fuzz_tinyproto fuzz_addr"

# clang and its fuzzer runtime (libclang-rt-*-dev on Debian) are all we need.
fuzzer_works() {
	command -v clang >/dev/null 2>&1 || return 1
	tmp=$(mktemp -d)
	printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n);\n%s\n' \
		'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
		>"$tmp/t.c"
	ok=0
	clang -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" >/dev/null 2>&1 || ok=1
	rm -rf "$tmp"
	return $ok
}
if ! fuzzer_works; then
	# As scripts/deps.sh does: install as root, else name the packages.
	if [ "$(id -u)" -ne 0 ]; then
		echo "run.sh: clang cannot link -fsanitize=fuzzer; install its runtime with:" >&2
		echo "run.sh:   sudo apt-get install -y clang libclang-rt-14-dev" >&2
		exit 2
	fi
	echo "run.sh: installing clang and its fuzzer runtime" >&2
	apt-get update -qq
	apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
	fuzzer_works || { echo "run.sh: clang cannot link -fsanitize=fuzzer" >&2; exit 2; }
fi

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DSSOCK_FUZZ=ON -DSSOCK_TESTS=OFF -DSSOCK_EXAMPLES=OFF -DSSOCK_BENCH=OFF >/dev/null
# Only the harnesses: they build from frame.c/addr.c/tinyproto.c alone.
cmake --build "$build" --target $targets -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

failed=0
summary=""
for t in $targets; do
	work=$build/corpus/$t
	art=$build/artifacts/$t
	log=$build/$t.log
	mkdir -p "$work" "$art"
	dict=""
	case $t in
	fuzz_u32) dict=$root/fuzz/u32.dict ;;
	fuzz_line) dict=$root/fuzz/line.dict ;;
	fuzz_tinyproto) dict=$root/fuzz/tinyproto.dict ;;
	fuzz_addr) dict=$root/fuzz/addr.dict ;;
	esac
	# Every crash saved before is a regression test: replay it first.
	for f in "$root"/fuzz/crashes/"$t"-*; do
		[ -f "$f" ] || continue
		if ! "$build/fuzz/$t" "$f" >"$log.replay" 2>&1; then
			echo "   regression: $f crashes again (log $log.replay)"
			failed=1
		fi
	done
	echo "== $t: ${secs}s"
	rc=0
	"$build/fuzz/$t" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
		-artifact_prefix="$art/" ${dict:+-dict="$dict"} \
		"$work" "$root/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
	result=ok
	if [ "$rc" -ne 0 ]; then
		result="CRASHED (exit $rc, log $log)"
		failed=1
		mkdir -p "$root/fuzz/crashes"
		for f in "$art"/*; do
			[ -f "$f" ] || continue
			cp "$f" "$root/fuzz/crashes/$t-$(basename "$f")"
			echo "   saved fuzz/crashes/$t-$(basename "$f")"
		done
		grep -E 'ERROR|invariant failed|SUMMARY' "$log" | head -n 5 || true
	fi
	summary="$summary$(printf '%-15s %12s execs %8s exec/s  %s' "$t" "${execs:-?}" "${rate:-?}" "$result")
"
done

printf '\n%s' "$summary"
exit $failed
