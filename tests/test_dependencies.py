"""pyproject.toml declares exactly the third-party packages that mmcl, teachers/ and benchmarks/ import."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# tensorboard: loaded by accelerate's tensorboard tracker; timm: by open_clip, for the tiny CLIP's image tower
NOT_IMPORTED = {"tensorboard", "timm"}
IMPORTED_EXTRAS = ("deploy",)  # optional extras mmcl imports where their feature runs (ONNX export and inference)


def imported_modules(*folders: str) -> set[str]:
    """Top-level modules imported anywhere in ``folders`` (absolute imports only), less the folders' own modules (a
    benchmark importing a sibling script)."""
    found, own = set(), set()
    for folder in folders:
        own |= {path.stem for path in (ROOT / folder).glob("*.py")}
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - own - set(sys.stdlib_module_names) - {"mmcl", "teachers", "__future__"}


def distributions(modules: set[str], requirements: list[Requirement]) -> set[str]:
    """The distributions that provide ``modules``; a module of a requirement whose marker excludes this machine
    (decord on ARM) counts under its own name."""
    owners = packages_distributions()
    elsewhere = {canonicalize_name(r.name) for r in requirements if r.marker and not r.marker.evaluate()}
    missing = sorted(m for m in modules if m not in owners and canonicalize_name(m) not in elsewhere)
    assert not missing, f"imported but not installed: {missing}"
    return {canonicalize_name(owners[m][0]) if m in owners else canonicalize_name(m) for m in modules}


def test_the_declared_dependencies_are_the_imported_ones():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11's TOML reader")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    declared = {canonicalize_name(r.name) for r in requirements}
    extras = project["optional-dependencies"]
    dev_requirements = [Requirement(r) for r in extras["dev"]]
    dev = {canonicalize_name(r.name) for r in dev_requirements} - {"mmcl"}
    dev |= {canonicalize_name(Requirement(r).name)  # the extras dev pulls in: mmcl[demo,deploy]
            for own in dev_requirements if canonicalize_name(own.name) == "mmcl" for extra in own.extras
            for r in extras[extra]}
    optional = {canonicalize_name(Requirement(r).name) for extra in IMPORTED_EXTRAS for r in extras[extra]}
    imported = distributions(imported_modules("mmcl", "teachers"), requirements)
    assert imported == (declared | optional) - NOT_IMPORTED
    # the benchmarks also use what the dev extra adds (psutil; onnx and onnxruntime through mmcl[deploy])
    assert distributions(imported_modules("benchmarks"), requirements) <= declared | dev
