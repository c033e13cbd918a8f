#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds a consumer program
# against it twice: with find_package(ssock) and with pkg-config.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/tests/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
pcdir=$(find "$tmp/prefix" -name ssock.pc -printf '%h\n' | head -n1)
libdir=$(dirname "$pcdir")
LD_LIBRARY_PATH="$libdir" "$tmp/consumer/consumer"
"$tmp/consumer/consumer_static"
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs ssock)
cc "$src/tests/consumer/main.c" $flags -o "$tmp/pc_consumer"
LD_LIBRARY_PATH="$libdir" "$tmp/pc_consumer"
echo "find_package(ssock) and pkg-config both work"
