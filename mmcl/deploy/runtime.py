"""Running an exported model (``mmcl export``) with onnxruntime: :class:`OnnxModel`.

An mmcl ONNX file takes one input, ``skeleton`` (N, C, T, V, M) float32, the clips exactly as the checkpoint's
PyTorch model takes them, and gives one output, ``logits`` (N, classes). Its metadata (``metadata_props``) holds the
deployable checkpoint's metadata (model, class names, layout, stream, window, ...) under the same keys, so
:attr:`OnnxModel.info` is the :class:`CheckpointInfo` the checkpoint had, plus:

- ``format``: :data:`FORMAT`;
- ``input``: JSON: the input's name, axes and shape (``"batch"`` / ``"time"`` for dynamic axes);
- ``preprocessing``: JSON: how a skeleton file becomes the input (persons, crop, resize, stream; for programs that do
  not use mmcl);
- ``verification``: JSON: the parity check run on export (inputs, max relative difference to PyTorch);
- ``source_checkpoint``, ``source_sha256``, ``exporter``.

``onnx`` and ``onnxruntime`` are the optional ``deploy`` extra (``pip install -e ".[deploy]"``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mmcl.errors import CheckpointError, DataError
from mmcl.models.checkpoint import CheckpointInfo

FORMAT = "mmcl-onnx-v1"
INPUT_NAME, OUTPUT_NAME = "skeleton", "logits"


def require_onnx() -> None:
    """Fail with the install command when the optional ``deploy`` extra is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ImportError(f"ONNX export and inference need the deploy extra ({e.name} is missing): "
                          f"pip install -e \".[deploy]\"") from e


def read_info(meta: dict[str, str], where: str | os.PathLike) -> CheckpointInfo:
    """The checkpoint metadata an mmcl ONNX file carries; ``where`` names the file in errors."""
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not an ONNX file written by `mmcl export` (metadata format "
                              f"{meta.get('format')!r}, expected {FORMAT!r})")
    try:
        return CheckpointInfo.from_metadata(meta)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{where}: incomplete mmcl metadata ({type(e).__name__}: {e})") from None


class OnnxModel:
    """An mmcl ONNX file in an onnxruntime CPU session: ``model(batch)`` maps clips (N, C, T, V, M) to logits.

    Args:
        source: the ``.onnx`` file, or its bytes.
        threads: onnxruntime's intra-op threads (None: its default, all cores).
    """

    def __init__(self, source: str | os.PathLike | bytes, threads: int | None = None):
        require_onnx()
        import onnx
        import onnxruntime as ort

        self.path = Path("<bytes>") if isinstance(source, bytes) else Path(source)
        if not isinstance(source, bytes) and not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        try:
            proto = onnx.load_model_from_string(source) if isinstance(source, bytes) else onnx.load(str(source))
        except Exception as e:  # onnx raises DecodeError and others on a file that is not ONNX
            raise CheckpointError(f"{self.path}: not a readable ONNX model: {type(e).__name__}: {e}") from None
        self.metadata = {p.key: p.value for p in proto.metadata_props}
        self.info = read_info(self.metadata, self.path)
        try:
            self.input = json.loads(self.metadata["input"])
            if len(self.input["shape"]) != 5:
                raise ValueError(f"input shape {self.input['shape']}")
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{self.path}: ONNX metadata 'input' missing or unreadable ({type(e).__name__}: "
                                  f"{e})") from None
        options = ort.SessionOptions()
        options.log_severity_level = 4  # failures come back as exceptions; do not print them twice
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own error types for a graph it cannot load
            raise CheckpointError(f"{self.path}: onnxruntime cannot load the graph: "
                                  f"{str(e).splitlines()[0][:300]}") from None

    @property
    def dynamic_time(self) -> bool:
        """Whether the graph takes any number of frames (else exactly the checkpoint's window)."""
        return self.input["shape"][2] == "time"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N, classes) float32 of clips ``batch`` (N, C, T, V, M)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        expected = self.input["shape"]
        if batch.ndim != 5 or any(isinstance(e, int) and s != e for s, e in zip(batch.shape, expected)):
            raise DataError(f"{self.path} takes {INPUT_NAME} of shape ({', '.join(map(str, expected))}), "
                            f"got {batch.shape}")
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
