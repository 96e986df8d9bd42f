"""Fill README.md's result tables from the files the benchmarks and ablations write into ``benchmarks/results/``.

A README block names its source file and is replaced by that file's content (its leading ``# `` title dropped)::

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


def render(src: Path) -> str:
    """The text a block shows for ``src``: the file without a leading level-1 title, ending in one newline."""
    if not src.is_file():
        raise FileNotFoundError(f"README block names {src}, which does not exist (run the benchmark that writes it)")
    lines = src.read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    return "\n".join(lines).rstrip("\n") + "\n"


def fill(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """``text`` with every block regenerated, and the sources whose block changed."""
    changed: list[str] = []

    def replace(m: re.Match) -> str:
        body = render(root / m["src"])
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
