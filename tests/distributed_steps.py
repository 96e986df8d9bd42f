"""Helper of tests/test_distributed.py: one epoch of the trainer per run, on one process or under torchrun.

    python tests/distributed_steps.py OUT NAME:override,override ... [-- common overrides]

For each ``NAME:overrides`` the trainer's :func:`setup` and :func:`train_one_epoch` run with the common overrides
plus the run's own; process 0 writes ``OUT/NAME.json`` (the epoch's loss and top-1) and ``OUT/NAME.safetensors``
(the module's parameters and buffers after the epoch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from mmcl.config import load_config
from mmcl.engine.trainer import cpu_processes, setup, train_one_epoch


def main(argv: list[str]) -> None:
    out, runs = Path(argv[0]), argv[1:]
    common = runs[runs.index("--") + 1:] if "--" in runs else []
    runs = runs[:runs.index("--")] if "--" in runs else runs
    cpu_processes()
    for spec in runs:
        name, _, overrides = spec.partition(":")
        cfg = load_config(None, [*common, *filter(None, overrides.split(",")), f"output_dir={out / 'runs'}",
                                 f"name={name}"])
        run = setup(cfg)
        record = train_one_epoch(run, 0)
        if run.accelerator.is_main_process:
            state = run.accelerator.unwrap_model(run.module).state_dict()
            save_file({k: v.detach().contiguous() for k, v in state.items()}, str(out / f"{name}.safetensors"))
            (out / f"{name}.json").write_text(json.dumps({k: record[k] for k in ("train_loss", "train_top1")}))
        run.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1:])
