#!/usr/bin/env python3
"""Checks that every C block in README.md marked `<!-- file: PATH -->` is
exactly that file, so the README's examples are the ones built and run."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
readme = (root / "README.md").read_text()
blocks = re.findall(r"<!-- file: (\S+) -->\n```c\n(.*?)```", readme, re.S)
if not blocks:
    sys.exit("README.md has no marked example blocks")
bad = 0
for path, code in blocks:
    text = (root / path).read_text()
    if text != code:
        print(f"README.md block for {path} differs from the file")
        bad += 1
print(f"{len(blocks) - bad} passed, {bad} failed")
sys.exit(1 if bad else 0)
