"""The command line reports expected errors on one line with exit status 2; --debug keeps the traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmcl.cli import main, one_line
from mmcl.errors import ConfigError, DataError


def test_expected_error_is_one_line_with_status_2(tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    assert main(["eval", "--checkpoint", str(missing), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mmcl eval: error: ") and str(missing) in err
    assert "Traceback" not in err


def test_debug_flag_reraises(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["eval", "--debug", "--checkpoint", str(tmp_path / "nope.safetensors"), "--data", str(tmp_path)])


def test_environment_variable_shows_the_traceback(tmp_path):
    env = {**os.environ, "MMCL_DEBUG": "1"}
    out = subprocess.run([sys.executable, "-m", "mmcl.cli", "eval", "--checkpoint", str(tmp_path / "x.safetensors"),
                          "--data", str(tmp_path)], capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "Traceback" in out.stderr


def test_one_line_messages():
    assert one_line(DataError("bad sample\n  in file x")) == "bad sample in file x"
    assert one_line(IsADirectoryError(21, "Is a directory", "/d/X.skeleton")) == "Is a directory: /d/X.skeleton"
    assert isinstance(ConfigError("k"), ValueError)
