"""README tables are generated from benchmarks/results/: they must match their files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_tables)


def test_readme_blocks_match_their_files():
    text = (ROOT / "README.md").read_text()
    _, changed = readme_tables.fill(text)
    assert not changed, f"README blocks out of date: {changed}; run python benchmarks/readme_tables.py"


def test_fill_replaces_the_block_and_drops_the_title(tmp_path):
    (tmp_path / "r.md").write_text("# Title\n\n| a |\n|---|\n| 1 |\n")
    text = "intro\n<!-- results: r.md -->\nstale\n<!-- /results -->\nend\n"
    new, changed = readme_tables.fill(text, tmp_path)
    assert changed == ["r.md"]
    assert new == "intro\n<!-- results: r.md -->\n| a |\n|---|\n| 1 |\n<!-- /results -->\nend\n"
    assert readme_tables.fill(new, tmp_path) == (new, [])


def test_block_headings_sit_below_the_readme_section(tmp_path):
    (tmp_path / "r.md").write_text("# Title\n\n## 1 thread\n\nx\n\n### detail\n\n```bash\n# a comment\n```\n")
    text = "# mmcl\n\n```bash\n# not a heading\n```\n\n### Speed\n\n<!-- results: r.md -->\n<!-- /results -->\n"
    new, _ = readme_tables.fill(text, tmp_path)
    assert "#### 1 thread\n\nx\n\n##### detail\n\n```bash\n# a comment\n```\n" in new
    assert readme_tables.fill(new, tmp_path) == (new, [])


def test_missing_source_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.md"):
        readme_tables.fill("<!-- results: nope.md -->\n<!-- /results -->\n", tmp_path)
