#!/usr/bin/env bash
# scripts/deps.sh WHAT...: makes sure the programs WHAT needs are there, for
# each Makefile target asking only for what that target uses:
#   build     a C compiler, cmake, make; python3-dev if possible
#                                                     (make, make install)
#   demo      build + what scripts/demo.sh runs      (make demo)
#   test      build + nc, socat, python3; ss, pkg-config, clang-format,
#             python3-dev and python3-pip if possible (make test)
#   valgrind  build + valgrind, python3              (make test-valgrind)
#   fuzz      clang, cmake, make                     (make fuzz; fuzz/run.sh
#                                                     checks clang's fuzzer
#                                                     runtime itself)
# Quiet and quick when everything is there. When something is missing: as
# root it is installed with apt-get (Debian); otherwise the missing Debian
# packages and the command that installs them are printed, and it fails
# (what is only optional is named, skipped, and does not fail).
# SSOCK_DEPS_NO_INSTALL=1 never installs, also as root (the tests use it).
set -euo pipefail

need=() # required: "command package"
want=() # optional: "command package what-is-skipped-without-it"
for what in "$@"; do
	case $what in
	build | demo | test | valgrind)
		need+=("cc gcc" "cmake cmake" "make make")
		;;&
	demo)
		# Everything else demo.sh runs is in every Debian (coreutils, sed,
		# diffutils, mawk), but a trimmed image may lack awk.
		need+=("awk mawk" "cmp diffutils")
		;;
	test)
		need+=("nc netcat-openbsd" "socat socat" "python3 python3")
		want+=("ss iproute2 the examples test's check of the client address"
			"pkg-config pkg-config the test of the installed pkg-config file"
			"clang-format clang-format the check that every C file is formatted")
		;;
	valgrind)
		need+=("valgrind valgrind" "python3 python3")
		;;
	fuzz)
		need+=("clang clang" "cmake cmake" "make make")
		;;
	build | demo | test | valgrind) ;;
	*)
		echo "deps: unknown target '$what' (build, demo, test, valgrind or fuzz)" >&2
		exit 2
		;;
	esac
done

# The Python package (python/, issue 11): `make` builds it when Debian's
# python3 has its headers (python3-dev; a python3 first on PATH that is not
# Debian's, pyenv's say, brings its own), and its tests install it with
# Debian's pip (python3-pip). Without them the package, or that test, is
# skipped. An entry whose "command" starts with @ names a check made here.
py_headers() {
	"$1" -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' 2>/dev/null
}
for what in "$@"; do
	case $what in
	build | test)
		[ -x /usr/bin/python3 ] && py_headers /usr/bin/python3 ||
			want+=("@python3-dev python3-dev the Python package (python/)")
		;;&
	test)
		[ -x /usr/bin/python3 ] && /usr/bin/python3 -m pip --version >/dev/null 2>&1 ||
			want+=("@python3-pip python3-pip the Python package's pip-install test")
		;;
	esac
done

missing=() skipped=()
for entry in "${need[@]}"; do
	read -r cmd pkg <<<"$entry"
	command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
for entry in "${want[@]}"; do
	read -r cmd pkg why <<<"$entry"
	command -v "$cmd" >/dev/null 2>&1 || skipped+=("$pkg:$why")
done
# Each package once, in order (bash only: awk may be what is missing).
dedup() {
	local -A seen=()
	local x
	OUTPUT=()
	for x in "$@"; do
		[ -n "${seen[$x]:-}" ] || OUTPUT+=("$x")
		seen[$x]=1
	done
}
dedup "${missing[@]}"
missing=("${OUTPUT[@]}")
dedup "${skipped[@]}"
skipped=("${OUTPUT[@]}")
[ ${#missing[@]} -eq 0 ] && [ ${#skipped[@]} -eq 0 ] && exit 0

install=("${missing[@]}")
for s in "${skipped[@]}"; do install+=("${s%%:*}"); done
if [ "$EUID" = 0 ] && [ "${SSOCK_DEPS_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null; then
	echo "deps: installing ${install[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${install[@]}" >/dev/null
	exit 0
fi

for s in "${skipped[@]}"; do
	echo "deps: optional package ${s%%:*} is missing: skipping ${s#*:}" >&2
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: 'make $*' needs these Debian packages, which are missing: ${missing[*]}" >&2
	echo "deps: install them with: sudo apt-get install -y ${install[*]}" >&2
	exit 1
fi
echo "deps: to have them: sudo apt-get install -y ${install[*]}" >&2
exit 0
