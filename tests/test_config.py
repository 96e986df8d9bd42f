"""mmcl.config: one loader for every schema; errors name the file or the command line; resolving has no side effects."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mmcl.config import ConfigError, TrainConfig, check, check_model, load_config
from mmcl.paths import configs_dir


@dataclass
class Inner:
    size: int = 3
    names: list[str] = field(default_factory=list)


@dataclass
class Schema:
    """A schema the way a new kind of config (pre-training, ...) would declare one."""

    name: str = "x"
    rate: float = 0.1
    inner: Inner = field(default_factory=Inner)

    def validate(self) -> None:
        check(self.inner.size > 0, "inner.size", self.inner.size, "> 0")


def test_a_new_schema_needs_only_a_dataclass_and_a_file(tmp_path):
    (tmp_path / "base.yaml").write_text("rate: 0.5\ninner:\n  size: 4\n  names: [a]\n")
    (tmp_path / "top.yaml").write_text("_base_: base.yaml\ninner:\n  size: 5\n")
    cfg = load_config(tmp_path / "top.yaml", ["inner.names=[b, c]"], schema=Schema)
    assert cfg == Schema(name="x", rate=0.5, inner=Inner(size=5, names=["b", "c"]))


def test_each_error_names_the_file_or_the_command_line_that_holds_the_key(tmp_path):
    base, top = tmp_path / "base.yaml", tmp_path / "top.yaml"
    base.write_text("inner:\n  size: many\n")
    top.write_text("_base_: base.yaml\nrate: 0.5\n")
    with pytest.raises(ConfigError, match=rf"^{base.resolve()}: invalid value for config key 'inner.size'"):
        load_config(top, schema=Schema)
    base.write_text("inner:\n  size: 0\n")
    with pytest.raises(ConfigError, match=rf"^{base.resolve()}: inner.size = 0; expected > 0"):
        load_config(top, schema=Schema)
    with pytest.raises(ConfigError, match=r"^the command line: inner.size = -1; expected > 0"):
        load_config(top, ["inner.size=-1"], schema=Schema)
    with pytest.raises(ConfigError, match=r"unknown config key 'inner.nmes' in the command line; did you mean "
                                          r"'inner.names'"):
        load_config(top, ["inner.nmes=[a]"], schema=Schema)
    with pytest.raises(ConfigError, match=r"unknown config key 'size' in the command line; did you mean 'inner.size'"):
        load_config(None, ["size=3"], schema=Schema)
    top.write_text("_base_: top.yaml\n")
    with pytest.raises(ConfigError, match="includes itself through _base_"):
        load_config(top, schema=Schema)
    top.write_text("rate: [\n")
    with pytest.raises(ConfigError, match=rf"{top.resolve()}: invalid YAML"):
        load_config(top, schema=Schema)
    with pytest.raises(ConfigError, match="not of the form dotted.key=value"):
        load_config(None, ["rate"], schema=Schema)


def test_every_config_in_the_repository_loads():
    from mmcl.engine.ablate import AblationPlan
    from mmcl.pretrain.config import PretrainConfig
    from teachers.config import TeacherConfig

    schemas = {"teachers": TeacherConfig, "ablation": AblationPlan, "pretrain": PretrainConfig}
    files = [f for f in sorted(configs_dir().rglob("*.yaml"))
             if f.relative_to(configs_dir()).parts[0] != "zeroshot"]  # label mappings: mmcl.zeroshot.labelmap
    assert len(files) > 60
    for f in files:
        schema = schemas.get(f.relative_to(configs_dir()).parts[0], TrainConfig)
        load_config(f, schema=schema, checks=[check_model] if schema is TrainConfig else [])  # model args too



def test_shown_path_names_no_machine_directory_for_paths_in_or_beside_the_checkout(tmp_path, monkeypatch):
    from mmcl.paths import shown_path

    checkout = tmp_path / "repo"
    (checkout / "benchmarks").mkdir(parents=True)
    monkeypatch.chdir(checkout)
    assert shown_path(checkout / "benchmarks" / "r.json") == "benchmarks/r.json"
    assert shown_path(tmp_path / "cache" / "teachers") == "../cache/teachers"
    assert shown_path("/") == "/"  # not below the checkout's parent: as given
    monkeypatch.chdir("/tmp")  # a checkout whose parent is the root: no "../" path for everything on the machine
    assert shown_path("/usr/lib") == "/usr/lib"
