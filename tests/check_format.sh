#!/usr/bin/env bash
# Every C file of the project is as .clang-format makes it (see STYLE.md):
# prints the files that are not and fails. Skipped (77) without clang-format
# or outside a git checkout (the file list is git's).
set -euo pipefail
root=$1
cd "$root"
if ! command -v clang-format >/dev/null || ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo "skipped: needs clang-format and a git checkout" >&2
	exit 77
fi
bad=0
while IFS= read -r -d '' f; do
	[ -e "$f" ] || continue
	if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
		echo "not formatted: $f (clang-format -i $f)"
		bad=$((bad + 1))
	fi
done < <(git ls-files -z -- '*.c' '*.h')
echo "$bad file(s) not formatted"
[ "$bad" = 0 ]
