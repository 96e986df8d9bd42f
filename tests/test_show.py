"""``mmcl show``: readable GIF / MP4 animations with the expected frame count, labels and predictions."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch
from PIL import Image

from mmcl.cli import main
from mmcl.data.layouts import get_layout
from mmcl.data.prepared import PreparedData
from mmcl.models import create_model
from mmcl.models.checkpoint import CheckpointInfo, save_checkpoint
from mmcl.viz import show


def test_a_raw_file_becomes_a_gif_with_one_frame_per_skeleton_frame(tmp_path, capsys):
    t = np.linspace(0, 1, 5, dtype=np.float32)
    joints = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)[None] + t[:, None, None]
    np.save(tmp_path / "clip.npy", joints)  # (T, V, C): one person, Kinect v1 layout
    out = tmp_path / "clip.gif"
    assert main(["show", str(tmp_path / "clip.npy"), "--layout", "kinect_v1_20", "--label", "wave", "--out",
                 str(out), "--view", "20,-60"]) == 0
    assert "clip: 5 frames, true wave" in capsys.readouterr().out
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5
        first = np.asarray(gif.convert("RGB"))
        gif.seek(4)
        last = np.asarray(gif.convert("RGB"))
    assert not np.array_equal(first, last)  # the skeleton moves
    assert not list(tmp_path.glob("*.tmp*"))


def test_raw_files_need_a_known_layout(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 1, 20, 3), np.float32))
    with pytest.raises(ValueError, match="x.npy: 20 joints per frame; name the layout with --layout"):
        show.read_raw(tmp_path / "x.npy")
    with pytest.raises(ValueError, match="layout 'ntu25' needs"):
        show.read_raw(tmp_path / "x.npy", "ntu25")
    with pytest.raises(ValueError, match="view 'diagonal'"):
        show.parse_view("diagonal")


def test_confusion_pair_mp4_with_top5_bars(small_prepared, tmp_path, one_thread, capsys):
    data = PreparedData(small_prepared)
    torch.manual_seed(0)
    net = create_model("ctrgcn", num_classes=data.num_classes)
    checkpoint = save_checkpoint(tmp_path / "m.safetensors", net, CheckpointInfo(
        "ctrgcn", net.registry_args, data.class_names, "ntu25", 3, 2, "joint", 8, "seed: 0\n", {}))
    out = tmp_path / "pair.mp4"
    assert main(["show", "--data", str(small_prepared), "--pair", data.class_names[0], "1", "--checkpoint",
                 str(checkpoint), "--stride", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    test = data.split("test")
    lengths = []
    for label in (0, 1):
        i = next(int(i) for i in test if data.labels[i] == label)  # one test clip per class in the small set
        lengths.append(len(data.joints(i)))
        assert f"{data.names[i]}: {lengths[-1]} frames, true {data.class_names[label]}; top-1" in printed
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == math.ceil(max(lengths) / 8)
    assert frames[0].shape[1] > frames[0].shape[0]  # two panels side by side


def test_panel_draws_every_bone_of_the_layout():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    for layout in ("ntu25", "kinect_v1_20", "nwucla20"):
        v = get_layout(layout).num_joints
        clip = show.Clip(np.ones((2, 2, v, 3), np.float32) * np.arange(v)[None, None, :, None], layout, "x")
        clip.joints[1, 1] = 0  # the second person leaves in frame 2
        fig = plt.figure()
        panel = show._Panel(fig, (GridSpec(1, 1)[0, 0],), clip, (10, -90), with_bars=False)
        panel.draw(1)
        bones, points = panel.persons[0]
        assert len(bones) == len(get_layout(layout).inward) and len(points.get_data_3d()[0]) == v
        assert all(len(b.get_data_3d()[0]) == 0 for b in panel.persons[1][0])  # absent: nothing drawn
        plt.close(fig)
