"""``mmcl export``: a deployable checkpoint as an ONNX file that onnxruntime runs, verified against PyTorch.

    mmcl export --checkpoint runs/x/best.safetensors --format onnx [--out runs/x/best.onnx] [--opset 20]

The graph takes ``skeleton`` (N, C, T, V, M) float32 and gives ``logits`` (N, classes) (:mod:`mmcl.deploy.runtime`
describes the metadata). The batch axis is always dynamic. The time axis is dynamic when the exported graph computes
the model at another number of frames too, which export checks (CTR-GCN: yes; a model whose trace fixes shapes that
depend on the frame count, such as the deformable transformer's attention partitions, keeps the checkpoint's window,
and export says so); mmcl's preprocessing always resizes a clip to the window, so either graph serves ``mmcl predict``.

**Verification.** Before anything is written, onnxruntime runs the serialised graph on seeded random clips of batch
1 and 3 at the window (and batch 2 at 1.5 x the window for a dynamic time axis), and its logits are compared with the
PyTorch model's on the same clips: the relative difference ``max |onnx - torch| / max |torch|`` of every check is
reported, and export fails when one reaches :data:`TOLERANCE` (fp32).

**Exporter.** torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). Both of torch 2.14's
exporters give the same logits for CTR-GCN (relative difference ~3e-7), but the torch.export-based one takes about
55 s for CTR-GCN on a 2-core CPU against 3 s, and needs ``onnxscript`` besides. Tracing records the operations of
one call and turns shape-dependent Python values into constants; the multi-shape verification above is what finds
where that matters (the tracer's own warnings about it are therefore silenced).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmcl.data.layouts import get_layout
from mmcl.data.streams import PSUMNET_STREAMS, skeleton_channels, stream_joints, stream_transform
from mmcl.deploy.predict import trained_input
from mmcl.deploy.runtime import FORMAT, INPUT_NAME, OUTPUT_NAME, OnnxModel, require_onnx
from mmcl.errors import CheckpointError
from mmcl.io import atomic_write_bytes
from mmcl.models.checkpoint import CheckpointInfo, load_checkpoint

TOLERANCE = 1e-4  # fp32 parity: max |onnx - torch| / max |torch|
# The TorchScript exporter's newest opset (onnxruntime >= 1.16 runs it); the deformable model's volumetric grid
# sampling needs 20, CTR-GCN and M-Mixer export at 17 too (--opset 17 for older runtimes).
DEFAULT_OPSET = MAX_OPSET = 20


class ExportError(CheckpointError):
    """The exported graph does not reproduce the PyTorch model (or cannot be built)."""


@dataclass
class Check:
    """One parity check: input shape, largest absolute difference, relative difference."""

    shape: tuple[int, ...]
    max_abs: float
    max_rel: float

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "max_abs_diff": self.max_abs, "max_rel_diff": self.max_rel}


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and measured."""

    path: Path
    checks: list[Check]
    dynamic_time: bool
    time_note: str
    opset: int
    seconds: float

    @property
    def max_rel(self) -> float:
        return max(c.max_rel for c in self.checks)


def preprocessing_description(info: CheckpointInfo) -> dict:
    """How a skeleton file becomes the graph's input, for programs that do not use mmcl (stored in the metadata)."""
    layout = get_layout(info.layout)
    transform = stream_transform(info.stream, info.window, layout)
    clip = transform.clip if info.stream in PSUMNET_STREAMS else transform  # crop and resize
    trained = trained_input(info.config_yaml)
    channels = skeleton_channels(info.stream, info.in_channels)
    description = {
        "joints": f"(T, M, V={layout.num_joints}, C={channels}) per file in layout {info.layout!r} "
                  f"(joint order: {', '.join(layout.joints)}), coordinates as mmcl's prepared format stores them "
                  f"(NTU .skeleton: read as SGN / CTR-GCN's preprocessing reads it)",
        "center": (f"every present person minus actor 1's joint {layout.center} ({layout.joints[layout.center]}) "
                   f"in frame 0; absent persons stay zero" if trained.center else "none"),
        "persons": f"all-zero persons appended up to M={info.num_person}"
                   + (f"; persons after the first {info.num_person} dropped" if trained.drops_persons else ""),
        "layout_to_input": "(T, M, V, C) -> (C, T, V, M)",
        "crop": {"kind": "centre", "keep": clip.test_keep,
                 "frames_cut_each_end": f"int({1 - clip.test_keep:.2f} * T / 2)"},
        "resize": {"frames": info.window, "mode": "linear over time", "align_corners": False},
        "stream": info.stream,
        "normalisation": "none outside the graph: it starts with the model's own batch norm over persons x joints "
                         "x channels (data_bn)",
    }
    if info.stream in PSUMNET_STREAMS:
        part = transform.part.layout
        description["part"] = {
            "joints": list(stream_joints(info.stream)),
            "bones": {"rule": "x[:, :, joint] - x[:, :, parent] within the part, other joints 0",
                      "pairs": [list(p) for p in part.bones]},
            "motion": "x[:, t + 1] - x[:, t], last frame 0, of the part's joints and of its bones",
            "channels": "joint | bone | joint-motion | bone-motion, 3 each (12)"}
    elif info.stream.startswith("bone"):
        description["bones"] = {"rule": "x[:, :, joint] - x[:, :, parent], other joints 0",
                                "pairs": [list(p) for p in layout.bones]}
    if info.stream.endswith("motion"):
        description["motion"] = "x[:, t + 1] - x[:, t], last frame 0 (after the bone step)"
    return description


def _trace(model: torch.nn.Module, example: torch.Tensor, opset: int, dynamic_time: bool) -> bytes:
    axes = {0: "batch", 2: "time"} if dynamic_time else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # the exporter's notes that it is the legacy one (chosen above) and about its own internals
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        # about GRUs traced at batch > 1 (the verification runs batch 1 and 3) and strided slices it leaves unfolded
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, do_constant_folding=True)
    return buffer.getvalue()


def _check(session: OnnxModel, batch: torch.Tensor, reference: np.ndarray) -> Check:
    out = session(batch.numpy())
    diff = float(np.abs(out.astype(np.float64) - reference).max())
    return Check(tuple(batch.shape), diff, diff / max(float(np.abs(reference).max()), 1e-12))


def _with_metadata(graph: bytes, entries: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_model_from_string(graph)
    onnx.checker.check_model(proto)
    del proto.metadata_props[:]
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET,
                seed: int = 0) -> ExportResult:
    """Export a deployable checkpoint to ONNX, verify it with onnxruntime and write it atomically.

    Raises:
        ExportError: when onnxruntime's logits differ from PyTorch's by :data:`TOLERANCE` or more (nothing written).
    """
    require_onnx()
    if not 7 <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} outside 7..{MAX_OPSET} (the TorchScript exporter's range)")
    start = time.perf_counter()
    checkpoint = Path(checkpoint)
    out = Path(out) if out else checkpoint.with_suffix(".onnx")
    model, info = load_checkpoint(checkpoint)
    model = model.float().eval()
    window = info.window
    v = len(stream_joints(info.stream) or get_layout(info.layout).joints)  # a part stream's joints
    generator = torch.Generator().manual_seed(seed)

    def clips(n: int, t: int) -> torch.Tensor:
        return torch.randn(n, info.in_channels, t, v, info.num_person, generator=generator)

    example = clips(2, window)
    at_window = [clips(1, window), clips(3, window)]
    longer = clips(2, window + window // 2)
    with torch.no_grad():  # also fills caches that depend on the frame count before tracing
        references = {id(x): model(x).double().numpy() for x in [example, *at_window, longer]}

    metadata = {"format": FORMAT, **info.to_metadata(),
                "preprocessing": json.dumps(preprocessing_description(info)),
                "source_checkpoint": checkpoint.name, "source_sha256": _sha256(checkpoint),
                "exporter": f"torch {torch.__version__} TorchScript exporter, opset {opset}"}
    for dynamic_time in (True, False):
        try:
            with torch.no_grad():
                graph = _trace(model, example, opset, dynamic_time)
        except torch.onnx.errors.OnnxExporterError as e:
            raise ExportError(f"{checkpoint}: torch's exporter cannot write {info.model} at opset {opset}: {e}") from e
        shape = ["batch", info.in_channels, "time" if dynamic_time else window, v, info.num_person]
        metadata["input"] = json.dumps({"name": INPUT_NAME, "axes": "N, C, T, V, M", "shape": shape,
                                        "dtype": "float32", "output": f"{OUTPUT_NAME} (N, {info.num_classes})"})
        session = OnnxModel(_with_metadata(graph, metadata))
        checks = [_check(session, x, references[id(x)]) for x in at_window]
        worst = max(c.max_rel for c in checks)
        if worst >= TOLERANCE:
            raise ExportError(f"{checkpoint}: onnxruntime's logits differ from PyTorch's (relative difference "
                              f"{worst:.2e} >= {TOLERANCE:.0e}): "
                              + "; ".join(f"{c.shape}: {c.max_rel:.2e}" for c in checks) + f"; {out} not written")
        if not dynamic_time:
            break
        try:
            checks.append(_check(session, longer, references[id(longer)]))
            if checks[-1].max_rel < TOLERANCE:
                time_note = f"dynamic (checked at {window} and {longer.shape[2]} frames)"
                break
            reason = f"relative difference {checks[-1].max_rel:.2e} at {longer.shape[2]} frames"
        except Exception as e:  # onnxruntime's error for a shape the trace fixed
            reason = f"{longer.shape[2]} frames do not run: {str(e).splitlines()[0][:200]}"
        time_note = (f"fixed at the window, {window} frames (the traced graph is not the model at other lengths: "
                     f"{reason})")
    metadata["verification"] = json.dumps({"tolerance": TOLERANCE, "metric": "max |onnx - torch| / max |torch|",
                                           "checks": [c.as_dict() for c in checks], "time_axis": time_note})
    atomic_write_bytes(out, _with_metadata(graph, metadata))
    return ExportResult(out, checks, dynamic_time, time_note, opset, time.perf_counter() - start)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="deployable checkpoint (.safetensors)")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="output format")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: the checkpoint's name, .onnx)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (7..{MAX_OPSET})")


def run(args: argparse.Namespace) -> int:
    result = export_onnx(args.checkpoint, args.out, args.opset)
    for c in result.checks:
        print(f"  onnxruntime vs PyTorch, input {c.shape}: max relative difference {c.max_rel:.2e} "
              f"(max abs {c.max_abs:.2e})")
    print(f"{args.checkpoint} -> {result.path} (opset {result.opset}; batch axis dynamic; time axis "
          f"{result.time_note}); verified: max relative difference {result.max_rel:.2e} < {TOLERANCE:.0e} "
          f"[{result.seconds:.1f} s]")
    return 0
