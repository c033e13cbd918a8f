#!/usr/bin/env bash
# scripts/deps.sh asks each Makefile target only for what it uses, and as a
# non-root user names the missing Debian packages instead of failing on one
# the target does not need. One case per CTest test (tests/deps.cmake):
#   test_deps.sh CASE
# Each case runs deps.sh with PATH holding only the programs it names, and
# SSOCK_DEPS_NO_INSTALL=1, so nothing is ever installed.
set -euo pipefail
case_name=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
	echo "FAIL ($case_name): $*" >&2
	exit 1
}

# with PROGRAM...: a PATH directory holding just these programs.
with() {
	rm -rf "$tmp/bin"
	mkdir "$tmp/bin"
	local p
	for p in "$@"; do
		local real
		real=$(command -v "$p") || fail "$p is not installed here"
		ln -s "$real" "$tmp/bin/$p"
	done
}

# deps TARGET...: runs deps.sh; sets RC and OUT (its stderr).
deps() {
	RC=0
	OUT=$(SSOCK_DEPS_NO_INSTALL=1 PATH="$tmp/bin" /bin/bash "$ROOT/scripts/deps.sh" "$@" 2>&1) || RC=$?
}

# Building needs a compiler, cmake and make, and nothing else (no valgrind).
case_build_needs_only_compiler() {
	with cc cmake make
	deps build
	[ "$RC" = 0 ] || fail "deps.sh build exited $RC: $OUT"
	[ -z "$OUT" ] || fail "deps.sh build said: $OUT"
}

# Without what the tests need: the packages, and the command to get them.
case_test_names_missing_packages() {
	with cc cmake make awk
	deps test
	[ "$RC" = 1 ] || fail "deps.sh test exited $RC: $OUT"
	grep -qx "deps: 'make test' needs these Debian packages, which are missing: netcat-openbsd socat python3" <<<"$OUT" ||
		fail "deps.sh test said: $OUT"
	grep -qx "deps: install them with: sudo apt-get install -y netcat-openbsd socat python3 iproute2 pkg-config clang-format" <<<"$OUT" ||
		fail "deps.sh test said: $OUT"
}

# What is optional is named and skipped, not a failure.
case_test_optional_skipped() {
	with cc cmake make nc socat python3 awk
	deps test
	[ "$RC" = 0 ] || fail "deps.sh test exited $RC: $OUT"
	grep -q "^deps: optional package iproute2 is missing: skipping " <<<"$OUT" || fail "said: $OUT"
	grep -q "^deps: optional package pkg-config is missing: skipping " <<<"$OUT" || fail "said: $OUT"
	grep -q "^deps: optional package clang-format is missing: skipping " <<<"$OUT" || fail "said: $OUT"
}

case_valgrind_and_fuzz() {
	with cc cmake make python3
	deps valgrind
	[ "$RC" = 1 ] && grep -q "missing: valgrind$" <<<"$OUT" || fail "deps.sh valgrind: $RC $OUT"
	deps fuzz
	[ "$RC" = 1 ] && grep -q "missing: clang$" <<<"$OUT" || fail "deps.sh fuzz: $RC $OUT"
	deps nonsense
	[ "$RC" = 2 ] || fail "deps.sh nonsense exited $RC"
}

# The Makefile's build target asks for the build's programs only.
case_makefile_targets() {
	# When ctest runs under make, its jobserver settings mean nothing here.
	unset MAKEFLAGS MFLAGS MAKELEVEL
	local t out
	for t in build install; do
		out=$(make -n -C "$ROOT" "$t" 2>/dev/null) || fail "make -n $t failed"
		grep -q "scripts/deps.sh build$" <<<"$out" || fail "make $t does not ask deps.sh for build"
		if grep -q "deps.sh.*\(test\|valgrind\)" <<<"$out"; then
			fail "make $t asks for the tests' programs"
		fi
	done
	out=$(make -n -C "$ROOT" test-valgrind 2>/dev/null) || fail "make -n test-valgrind failed"
	grep -q "scripts/deps.sh valgrind$" <<<"$out" || fail "make test-valgrind does not ask for valgrind"
}

declare -F "case_$case_name" >/dev/null || fail "no such case"
"case_$case_name"
echo "ok: $case_name"
