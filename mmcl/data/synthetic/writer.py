"""Writers of the raw formats: NTU RGB+D ``.skeleton`` text and UTD-MHAD ``_skeleton.mat``.

The ``.skeleton`` layout (REFERENCE section 3), as Kinect v2's SDK dumps it in NTU RGB+D::

    <frame count>
    per frame: <body count>
      per body: bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence handRightState
                isRestricted leanX leanY trackingState
                25
                25 lines: x y z depthX depthY colorX colorY orientationW orientationX orientationY orientationZ
                          trackingState

Numbers are printed like the real files (C++ stream default, 7 significant digits: ``%.7g``), the body id is a
17-digit integer (2**56 plus a counter, as Kinect's ids are), hand states are 1 ("not tracked") with confidence 1.
All writes go to a temporary file that is renamed into place, and the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import os

import numpy as np
import scipy.io

from mmcl.data.synthetic.scene import CameraView
from mmcl.io import atomic_write_bytes, atomic_write_text

_JOINT_LINE = " ".join(["%.7g"] * 11) + " %d\n"
_MAT_TEXT_BYTES = 116  # a MAT-file v5 header starts with 116 bytes of descriptive text
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by mmcl.data.synthetic".ljust(_MAT_TEXT_BYTES)


def format_skeleton(view: CameraView) -> str:
    """The ``.skeleton`` text of one camera view (every body in every frame)."""
    t, m = view.joints.shape[:2]
    cols = np.concatenate([view.joints, view.depth_px, view.color_px, view.orientation], axis=-1)  # (T, M, 25, 11)
    out = [f"{t}\n"]
    for f in range(t):
        out.append(f"{m}\n")
        for b in range(m):
            lean_x, lean_y = view.lean[f, b]
            out.append(f"{int(view.body_ids[b])} 0 1 1 1 1 0 {lean_x:.7g} {lean_y:.7g} 2\n25\n")
            rows = cols[f, b].tolist()
            states = view.tracking[f, b].tolist()
            out.extend(_JOINT_LINE % (*row, state) for row, state in zip(rows, states))
    return "".join(out)


def write_skeleton_file(path: str | os.PathLike, view: CameraView) -> None:
    """Write one NTU-format ``.skeleton`` file."""
    atomic_write_text(path, format_skeleton(view))


def write_utd_skeleton(path: str | os.PathLike, joints: np.ndarray) -> None:
    """Write a UTD-MHAD ``_skeleton.mat``: variable ``d_skel`` of shape (20, 3, T) from joints (T, 20, 3), metres."""
    if joints.ndim != 3 or joints.shape[1:] != (20, 3):
        raise ValueError(f"{path}: expected joints of shape (T, 20, 3), got {joints.shape}")
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"d_skel": np.ascontiguousarray(joints.transpose(1, 2, 0), dtype=np.float64)})
    data = bytearray(buffer.getvalue())
    data[:_MAT_TEXT_BYTES] = _MAT_HEADER  # scipy stamps the creation time here; a fixed text keeps files reproducible
    atomic_write_bytes(path, bytes(data))
