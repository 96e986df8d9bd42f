"""Test oracle: a plain port of SGN's NTU preprocessing (github.com/microsoft/SGN, data/ntu/), one file at a time.

It follows the logic of ``get_raw_skes_data.py`` (get_raw_bodies_data), ``get_raw_denoised_data.py`` (denoising_*,
get_one_actor_points, remove_missing_frames, get_two_actors_points, the per-sample body of get_raw_denoised_data) and
``seq_transformation.py`` (seq_translation) step by step, with the same numpy calls on the same array layouts, and
without logging. It is deliberately written independently of (and much slower than) ``mmcl.data.ntu``.

One deliberate reading: the spread test ``x_spread <= 0.8 * y_spread`` compared numpy float32 scalars with a Python
float; under numpy 1.x (when the standard data were made) that product was float64, so it is written in float64 here.

Only used by tests.
"""

from __future__ import annotations

import numpy as np

LENGTH_THRESHOLD = 11
SPREAD_RATIO = 0.8
SPREAD_FRACTION = 0.69754


def raw_bodies(path):
    """get_raw_bodies_data: per bodyID its stacked joints (n*25, 3), colours (n, 25, 2), interval and motion."""
    with open(path, "r") as fh:
        text_lines = fh.readlines()
    total_frames = int(text_lines[0].strip("\r\n"))
    dropped = []
    bodies = {}
    frame_counter = -1
    cursor = 1
    for f in range(total_frames):
        count = int(text_lines[cursor].strip("\r\n"))
        cursor += 1
        if count == 0:
            dropped.append(f)
            continue
        frame_counter += 1
        frame_joints = np.zeros((count, 25, 3), dtype=np.float32)
        frame_colors = np.zeros((count, 25, 2), dtype=np.float32)
        for b in range(count):
            body_id = text_lines[cursor].strip("\r\n").split()[0]
            cursor += 1
            joint_count = int(text_lines[cursor].strip("\r\n"))
            cursor += 1
            for j in range(joint_count):
                fields = text_lines[cursor].strip("\r\n").split()
                frame_joints[b, j, :] = np.array(fields[:3], dtype=np.float32)
                frame_colors[b, j, :] = np.array(fields[5:7], dtype=np.float32)
                cursor += 1
            if body_id in bodies:
                entry = bodies[body_id]
                entry["joints"] = np.vstack((entry["joints"], frame_joints[b]))
                entry["colors"] = np.vstack((entry["colors"], frame_colors[b, np.newaxis]))
                entry["interval"].append(entry["interval"][-1] + 1)
            else:
                entry = {"joints": frame_joints[b], "colors": frame_colors[b, np.newaxis], "interval": [frame_counter]}
            bodies[body_id] = entry
    assert len(dropped) < total_frames, f"all {total_frames} frames of {path} have no body"
    if len(bodies) > 1:
        for entry in bodies.values():
            entry["motion"] = np.sum(np.var(entry["joints"], axis=0))
    return {"data": bodies, "num_frames": total_frames - len(dropped)}


def _spread_valid_frames(points):
    keep = []
    for i in range(points.shape[0]):
        xs = points[i, :, 0]
        ys = points[i, :, 1]
        if float(xs.max() - xs.min()) <= SPREAD_RATIO * float(ys.max() - ys.min()):
            keep.append(i)
    return keep


def _denoise_length(bodies):
    for body_id, entry in list(bodies.items()):
        if len(entry["interval"]) <= LENGTH_THRESHOLD:
            del bodies[body_id]
    return bodies


def _denoise_spread(bodies):
    for body_id, entry in list(bodies.items()):
        if len(bodies) == 1:
            break
        keep = _spread_valid_frames(entry["joints"].reshape(-1, 25, 3))
        n = len(entry["interval"])
        noisy = n - len(keep)
        if noisy == 0:
            continue
        if noisy / float(n) >= SPREAD_FRACTION:
            del bodies[body_id]
        else:
            good = entry["joints"].reshape(-1, 25, 3)[keep]
            entry["motion"] = min(entry["motion"], np.sum(np.var(good.reshape(-1, 3), axis=0)))
    return bodies


def _denoise(bodies):
    bodies = _denoise_length(bodies)
    if len(bodies) == 1:
        return list(bodies.items())
    bodies = _denoise_spread(bodies)
    if len(bodies) == 1:
        return list(bodies.items())
    ranked = sorted(((body_id, entry["motion"]) for body_id, entry in bodies.items()), key=lambda x: x[1],
                    reverse=True)
    return [(body_id, bodies[body_id]) for body_id, _ in ranked]


def _one_actor(entry, num_frames):
    joints = np.zeros((num_frames, 75), dtype=np.float32)
    colors = np.ones((num_frames, 1, 25, 2), dtype=np.float32) * np.nan
    first, last = entry["interval"][0], entry["interval"][-1]
    joints[first:last + 1] = entry["joints"].reshape(-1, 75)
    colors[first:last + 1, 0] = entry["colors"]
    return joints, colors


def _two_actors(raw):
    num_frames = raw["num_frames"]
    ranked = _denoise(raw["data"])
    if len(ranked) == 1:
        return _one_actor(ranked[0][1], num_frames)
    joints = np.zeros((num_frames, 150), dtype=np.float32)
    colors = np.ones((num_frames, 2, 25, 2), dtype=np.float32) * np.nan
    _, main = ranked.pop(0)
    s1, e1 = main["interval"][0], main["interval"][-1]
    joints[s1:e1 + 1, :75] = main["joints"].reshape(-1, 75)
    colors[s1:e1 + 1, 0] = main["colors"]
    s2, e2 = 0, 0
    while ranked:
        _, other = ranked.pop(0)
        s, e = other["interval"][0], other["interval"][-1]
        if min(e1, e) - max(s1, s) <= 0:
            joints[s:e + 1, :75] = other["joints"].reshape(-1, 75)
            colors[s:e + 1, 0] = other["colors"]
            s1, e1 = min(s, s1), max(e, e1)
        elif min(e2, e) - max(s2, s) <= 0:
            joints[s:e + 1, 75:] = other["joints"].reshape(-1, 75)
            colors[s:e + 1, 1] = other["colors"]
            s2, e2 = min(s, s2), max(e, e2)
    return joints, colors


def _remove_missing(joints, colors):
    row_sum = joints.sum(axis=1)
    valid = np.where(row_sum != 0)[0]
    gone = np.where(row_sum == 0)[0]
    if len(gone) > 0:
        joints = joints[valid]
        colors[gone] = np.nan
    return joints, colors


def _translate(joints):
    n = joints.shape[0]
    two = joints.shape[1] == 150
    if two:
        gone1 = np.where(joints[:, :75].sum(axis=1) == 0)[0]
        gone2 = np.where(joints[:, 75:].sum(axis=1) == 0)[0]
    i = 0
    while i < n:
        if np.any(joints[i, :75] != 0):
            break
        i += 1
    origin = np.copy(joints[i, 3:6])
    for f in range(n):
        joints[f] -= np.tile(origin, 50 if two else 25)
    if two and len(gone1) > 0:
        joints[gone1, :75] = np.zeros((len(gone1), 75), dtype=np.float32)
    if two and len(gone2) > 0:
        joints[gone2, 75:] = np.zeros((len(gone2), 75), dtype=np.float32)
    return joints


def sgn_sample(path):
    """The sample before padding: joints (T, 75 or 150) translated, and SGN's colours (rows of removed frames NaN)."""
    raw = raw_bodies(path)
    if len(raw["data"]) == 1:
        joints, colors = _one_actor(next(iter(raw["data"].values())), raw["num_frames"])
    else:
        joints, colors = _two_actors(raw)
        joints, colors = _remove_missing(joints, colors)
    return _translate(joints), colors


def sgn_joints(path):
    """(T, 2, 25, 3): the 75- or 150-wide rows as two actors, a single actor padded with zeros (NTU-60 style)."""
    joints, _ = sgn_sample(path)
    if joints.shape[1] == 75:
        joints = np.hstack((joints, np.zeros_like(joints)))
    return joints.reshape(-1, 2, 25, 3)
