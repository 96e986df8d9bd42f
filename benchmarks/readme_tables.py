"""Fill README.md's result tables from the files the benchmarks and ablations write into ``benchmarks/results/``.

A README block names its source file and is replaced by that file's content (its leading ``# `` title dropped, its
other headings moved one level below the README section that holds the block, so that a file's ``## 1 thread(s)`` does
not become a section of the README)::

    <!-- results: benchmarks/results/ctrgcn_speed.md -->
    ...generated, never edited by hand...
    <!-- /results -->

Usage: ``python benchmarks/readme_tables.py`` rewrites README.md; ``--check`` only reports blocks that differ from
their files (exit status 1), which the test suite runs so that a figure typed by hand cannot drift.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mmcl.io import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- results: (?P<src>[^\s]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)
HEADING = re.compile(r"^(#{1,6}) ")


def headings(lines: list[str]) -> list[tuple[int, int]]:
    """(line index, level) of the Markdown headings in ``lines``, fenced code blocks skipped."""
    found, fenced = [], False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            found.append((i, len(m[1])))
    return found


def render(src: Path, level: int = 1) -> str:
    """The text a block shows for ``src`` inside a README section of heading ``level``: the file without a leading
    level-1 title, its shallowest remaining heading one level below ``level``, ending in one newline."""
    if not src.is_file():
        raise FileNotFoundError(f"README block names {src}, which does not exist (run the benchmark that writes it)")
    lines = src.read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    found = headings(lines)
    if found:
        shift = min(6, level + 1) - min(lvl for _, lvl in found)
        for i, lvl in found:
            lines[i] = "#" * max(1, min(6, lvl + shift)) + lines[i][lvl:]
    return "\n".join(lines).rstrip("\n") + "\n"


def fill(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """``text`` with every block regenerated, and the sources whose block changed."""
    changed: list[str] = []

    def replace(m: re.Match) -> str:
        outside = BLOCK.sub(lambda b: b.group(1) + b.group(4), text[:m.start()])  # generated headings do not count
        above = headings(outside.splitlines())
        body = render(root / m["src"], above[-1][1] if above else 1)
        if body != m["body"]:
            changed.append(m["src"])
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(replace, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="report stale blocks instead of rewriting them")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    new, changed = fill(text, args.readme.parent)
    if args.check:
        for src in changed:
            print(f"{args.readme}: the block of {src} differs from the file; run python benchmarks/readme_tables.py")
        return 1 if changed else 0
    if changed:
        atomic_write_text(args.readme, new)
        print(f"updated {len(changed)} block(s): {', '.join(changed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
