"""Input streams by name (``data.stream``, a checkpoint's ``stream``): what a model reads from a skeleton clip.

- the **modality streams**, one 3-channel modality of the whole skeleton: CTR-GCN's ``joint``, ``bone``,
  ``joint_motion``, ``bone_motion`` and BRL's ``skip``, ``skip_motion`` (:class:`mmcl.data.transforms.ClipTransform`);
- PSUMNet's **part streams**, the four modalities of one body part stacked into 12 channels (:mod:`mmcl.data.parts`):
  ``psumnet_body``, ``psumnet_hand``, ``psumnet_leg``, and ``psumnet_leg_released``, the leg with the release's
  off-by-one bone pairs (and, for the model, its leg graph: ``leg_graph="released"``), for its checkpoints.

A stream's name says everything its input needs, so a checkpoint rebuilds its input from its ``stream`` alone
(:func:`stream_transform`), and the model arguments a stream implies (:func:`stream_model_args`) are derived from it
rather than configured twice. This module imports neither numpy nor torch (the config loader validates names with it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmcl.errors import DataError

if TYPE_CHECKING:
    from mmcl.data.layouts import Layout

MODALITY_STREAMS = ("joint", "bone", "joint_motion", "bone_motion", "skip", "skip_motion")
# stream -> (PSUMNet part, leg graph)
PSUMNET_STREAMS: dict[str, tuple[str, str]] = {
    "psumnet_body": ("body", "intended"),
    "psumnet_hand": ("hand", "intended"),
    "psumnet_leg": ("leg", "intended"),
    "psumnet_leg_released": ("leg", "released"),
}
STREAMS = MODALITY_STREAMS + tuple(PSUMNET_STREAMS)
PSUMNET_MODEL = "psumnet"  # the registry name of the model that reads the part streams


def check_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise DataError(f"unknown stream {stream!r}; streams: {', '.join(STREAMS)}")


def input_channels(stream: str, skeleton_channels: int) -> int:
    """Channels per joint of the model input for ``stream`` on skeletons of ``skeleton_channels`` (3 for xyz)."""
    check_stream(stream)
    if stream in PSUMNET_STREAMS:
        if skeleton_channels != 3:
            raise DataError(f"the {stream} stream reads xyz joints (3 channels per joint), got {skeleton_channels}")
        return 12
    return skeleton_channels


def skeleton_channels(stream: str, model_channels: int) -> int:
    """The inverse of :func:`input_channels`: channels per joint of the skeletons a model of ``stream`` reads."""
    check_stream(stream)
    return 3 if stream in PSUMNET_STREAMS else model_channels


def stream_model_args(stream: str) -> dict[str, Any]:
    """Model factory arguments implied by the stream: PSUMNet's ``stream`` (part) and ``leg_graph``; else none."""
    check_stream(stream)
    if stream in PSUMNET_STREAMS:
        part, leg_graph = PSUMNET_STREAMS[stream]
        return {"stream": part, "leg_graph": leg_graph}
    return {}


def stream_joints(stream: str) -> tuple[int, ...] | None:
    """The joints of the stored layout (NTU-25) a part stream keeps, in its order; ``None`` for all of them."""
    check_stream(stream)
    if stream not in PSUMNET_STREAMS:
        return None
    from mmcl.data.parts import PART_JOINTS

    return PART_JOINTS[PSUMNET_STREAMS[stream][0]]


def stream_transform(stream: str, window: int, layout: Layout, train: bool = False, **clip_options: Any):
    """The per-clip transform of ``stream`` on clips of ``layout``: crop-resize (+ rotation when training) to
    ``window`` frames, then the stream's modality (:class:`~mmcl.data.transforms.ClipTransform`) or part input
    (:class:`~mmcl.data.parts.PartStreamTransform`: crop and rotation first, as in the PSUMNet release).
    ``clip_options``: the other :class:`ClipTransform` fields (``p_interval``, ``random_rotation``, ...)."""
    from mmcl.data.transforms import ClipTransform

    check_stream(stream)
    if stream in PSUMNET_STREAMS:
        from mmcl.data.parts import PartInput, PartStreamTransform

        if layout.name != "ntu25":
            raise DataError(f"the {stream} stream cuts its part from NTU-25 skeletons; these clips have layout "
                            f"{layout.name!r} (map them with data.layout: ntu25)")
        clip = ClipTransform(window=window, stream="joint", bones=layout.bones, train=train, **clip_options)
        return PartStreamTransform(stream, clip, PartInput(*PSUMNET_STREAMS[stream]))
    return ClipTransform(window=window, stream=stream, bones=layout.bones, train=train, **clip_options)
