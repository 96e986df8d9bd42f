"""The training state ``--resume`` continues from (``<run>/state/``), read without running code from it.

accelerate's ``save_state`` writes the model (``model.safetensors``), the optimizer (``optimizer.bin``), the RNG
states (``random_states_<rank>.pkl``) and, with fp16, the gradient scaler; its ``load_state`` reads the pickled ones
with ``torch.load(weights_only=True)``, which rebuilds tensors, numbers and numpy's RNG state and nothing else. The
trainer's own progress (epoch, best epoch, history) is ``trainer_state.json``. accelerate's
``register_for_checkpointing`` is not used: it pickles an object's state into ``custom_checkpoint_<i>.pkl`` and loads
that with ``weights_only=False``, which would run whatever code the file holds. A state directory written by an
earlier mmcl (with that file) is converted once, its pickle read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from accelerate import Accelerator

from mmcl.errors import CheckpointError
from mmcl.io import replace_dir, write_json

STATE_FILE = "trainer_state.json"
LEGACY_PICKLE = "custom_checkpoint_0.pkl"


@dataclass
class TrainerState:
    """Progress saved with the training state."""

    epoch: int = -1  # last finished epoch
    best_epoch: int = -1
    best_val_top1: float = -1.0
    global_step: int = 0
    history: list[dict] = field(default_factory=list)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict, where: str = "the training state") -> None:
        """Set the fields from ``state``, which must hold each of them with its type."""
        types = {"epoch": int, "best_epoch": int, "best_val_top1": (int, float), "global_step": int, "history": list}
        if not isinstance(state, dict) or set(state) != {f.name for f in fields(self)}:
            raise CheckpointError(f"{where}: expected the fields {', '.join(types)}, found "
                                  f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
        for key, kind in types.items():
            if not isinstance(state[key], kind) or isinstance(state[key], bool):
                raise CheckpointError(f"{where}: {key} = {state[key]!r} is not a {getattr(kind, '__name__', 'number')}")
        if not all(isinstance(h, dict) for h in state["history"]):
            raise CheckpointError(f"{where}: history must be a list of per-epoch records")
        for key in types:
            setattr(self, key, state[key])


def save_state(accelerator: Accelerator, run_dir: Path, state: TrainerState) -> None:
    """Replace ``run_dir/state`` atomically with the current training state (every process calls it)."""
    tmp = run_dir / "state.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / STATE_FILE, state.state_dict())
        replace_dir(tmp, run_dir / "state")
    accelerator.wait_for_everyone()


def read_pickle(path: Path):
    """A pickled state file read with ``torch.load(weights_only=True)`` (tensors, numbers, containers, numpy's RNG
    state; no code runs); anything else is a :class:`CheckpointError` naming the file."""
    from accelerate.utils import load as weights_only_load

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return weights_only_load(path, map_location="cpu")
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError, ... of a corrupt or crafted file
        text = " ".join(str(e).split())
        found = re.search(r"(?:trusted source\.|WeightsUnpickler error:) *((?:(?!WeightsUnpickler error:).)*?) *"
                          r"Check the documentation", text)
        why = (f"the weights-only unpickler refuses it: {found.group(1)[:160]}; a pickle can run code"
               if found else f"{type(e).__name__}: {text[:200]}")
        raise CheckpointError(f"{path}: not a state file mmcl wrote ({why})") from None


def _convert_legacy(state_dir: Path) -> None:
    """An earlier mmcl's ``custom_checkpoint_0.pkl`` (the trainer state, pickled) as ``trainer_state.json``."""
    legacy = state_dir / LEGACY_PICKLE
    raw = read_pickle(legacy)
    TrainerState().load_state_dict(raw, where=str(legacy))
    write_json(state_dir / STATE_FILE, raw)
    legacy.unlink()


def load_state(accelerator: Accelerator, state_dir: Path, state: TrainerState) -> None:
    """Restore the prepared model, optimizer and RNG states and ``state`` from ``state_dir``; a missing, corrupt or
    foreign file is a :class:`CheckpointError` naming it."""
    pickles = sorted(p.name for p in state_dir.glob("custom_checkpoint_*.pkl"))
    if pickles and not (state_dir / STATE_FILE).exists() and pickles == [LEGACY_PICKLE]:
        if accelerator.is_main_process:
            _convert_legacy(state_dir)
        accelerator.wait_for_everyone()
    elif pickles:
        raise CheckpointError(f"{state_dir}: unexpected {', '.join(pickles)} (mmcl's state holds no custom pickles; "
                              f"it is not loaded); remove it to resume")
    for name in (STATE_FILE, "model.safetensors", "optimizer.bin", f"random_states_{accelerator.process_index}.pkl"):
        if not (state_dir / name).is_file():
            raise CheckpointError(f"{state_dir}: {name} is missing; this state cannot be resumed")
    # Each pickle first on its own, so an error names it (and accelerate would skip an unreadable RNG file with a
    # log line: the resumed run would silently differ).
    for name in ("optimizer.bin", f"random_states_{accelerator.process_index}.pkl", "scaler.pt"):
        if (state_dir / name).exists():
            read_pickle(state_dir / name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            accelerator.load_state(str(state_dir))
    except Exception as e:  # safetensors, torch.load (weights_only) and load_state_dict errors of a foreign file
        raise CheckpointError(f"{state_dir}: cannot restore the training state ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:300]})") from None
    try:
        raw = json.loads((state_dir / STATE_FILE).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{state_dir / STATE_FILE}: not valid JSON ({e})") from None
    state.load_state_dict(raw, where=str(state_dir / STATE_FILE))
