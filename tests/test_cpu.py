"""The OpenMP wait-policy guard for shared CPUs."""

from __future__ import annotations

import os
import subprocess
import sys

from mmcl import cli, cpu


def test_passive_wait_policy_keeps_a_users_choice(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cpu.passive_wait_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert cpu.passive_wait_policy() is ("torch" not in sys.modules)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_mmcl_command_sets_the_policy_before_torch_loads():
    """In a fresh interpreter, a command's module sees the policy set and torch not yet imported."""
    code = ("import os, sys, types\n"
            "from mmcl import cli\n"
            "mod = types.ModuleType('policy_probe')\n"
            "mod.add_arguments = lambda parser: None\n"
            "mod.run = lambda args: print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
            "sys.modules['policy_probe'] = mod\n"
            "cli.COMMANDS['policy_probe'] = ('policy_probe', 'policy_probe')\n"
            "cli.main(['policy_probe'])\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["PASSIVE", "False"]
    assert "policy_probe" not in cli.COMMANDS
