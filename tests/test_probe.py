"""``mmcl probe`` on caches whose features are known, and the ``datasets`` export / import of a cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmcl.data.prepared import PreparedData, PreparedInfo, write_prepared
from mmcl.data.synthetic import SOURCE_CLASSES
from teachers.cache import CacheWriter, Chunk, key_hash, merge_index, open_cache, write_class_embeddings, write_manifest

CLASSES = [c.name for c in SOURCE_CLASSES]
SPLITS = {"train": range(1, 7), "val": range(7, 8), "test": range(8, 11)}  # performers
pytestmark = pytest.mark.usefixtures("one_thread")
K, D, P, DT = 3, 24, 2, 8


def write_probe_prepared(out: Path) -> Path:
    """16 classes x 10 performers, one sample each; performers 1-6 train, 7 val, 8-10 test."""
    info = PreparedInfo(dataset="probefix", layout="ntu25", num_person=1, class_names=CLASSES)
    samples, splits = [], {s: [] for s in SPLITS}
    for p in range(1, 11):
        for a in range(len(CLASSES)):
            split = next(s for s, r in SPLITS.items() if p in r)
            splits[split].append(len(samples))
            samples.append((f"S{1 + (p - 1) // 2:03d}C001P{p:03d}R001A{a + 1:03d}", a, np.ones((2, 1, 25, 3))))
    return write_prepared(out, info, samples, splits)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return write_probe_prepared(tmp_path_factory.mktemp("probe") / "prepared")


def make_cache(root: Path, prepared: Path, name: str, visual_fn, seed: int = 0) -> Path:
    """A finished teacher cache whose visual features are ``visual_fn(label, performer, rng)`` (D,) per frame."""
    data = PreparedData(prepared)
    rng = np.random.default_rng(seed)
    key = {"format": 1, "test": name}
    path = root / f"probefix-{name}-{key_hash(key)}"
    CacheWriter.initialise(path, key, f"name: {name}\n")
    writer = CacheWriter(path)
    chunk = Chunk()
    for i, sample in enumerate(data.names):
        label, performer = int(data.labels[i]), int(sample[9:12])
        visual = np.stack([visual_fn(label, performer, rng) for _ in range(K)])
        text = rng.normal(size=(P, DT)).astype(np.float32)
        chunk.add(sample, visual, text, [f"answer {label}", "ünïcode ✓"], i % 7 == 0, (1, 2, 30, 40), 50 + i,
                  "no joint" if i == 3 else None)
        if len(chunk) == 50:
            writer.commit(chunk)
            chunk = Chunk()
    chunk.fail("S999C001P999R001A001", "video not found")
    writer.commit(chunk)
    summary = merge_index(path)
    summary.pop("timing_by_run")
    write_class_embeddings(path, CLASSES, rng.normal(size=(16, DT)), [f"about {c}" for c in CLASSES],
                           rng.normal(size=(16, DT)))
    write_manifest(path, {"format": 1, "dataset": "probefix", "config_name": name, "key_hash": key_hash(key),
                          "prepared": str(prepared), "visual_dim": D, "text_dim": DT, "num_frames": K,
                          "num_prompts": P, **summary})
    return path


def informative(label, performer, rng):
    """The class as a one-hot (scaled) plus noise, except that cup and bottle look the same."""
    x = rng.normal(scale=0.3, size=D).astype(np.float32)
    x[0 if label == 1 else label] += 2.0
    return x


def by_performer(label, performer, rng):
    x = rng.normal(scale=0.1, size=D).astype(np.float32)
    x[performer] += 2.0
    return x


def test_probe_scores_informative_features_high_and_random_ones_at_chance(prepared, tmp_path):
    from teachers.probe import probe_cache, write_results

    good = probe_cache(make_cache(tmp_path, prepared, "good", informative), kinds=("visual",))["features"]["visual"]
    rand = probe_cache(make_cache(tmp_path, prepared, "rand", lambda *a: a[2].normal(size=D).astype(np.float32)),
                       kinds=("visual", "text"))
    cup, book = good["pairs"]
    assert good["test_top1"] > 0.85 and good["p_above_chance"] < 1e-6
    assert book["within_pair"] == 1.0 and good["per_class"]["use a tablet"] == 1.0
    assert 0.2 < cup["within_pair"] < 0.8 and cup["samples"] == 6  # cup and bottle collapsed: a coin toss
    for kind in ("visual", "text"):
        r = rand["features"][kind]
        assert r["test_top1"] < 0.2 and r["p_above_chance"] > 0.01 and r["chance"] == 1 / 16
    nb = good["neighbours_train"]
    assert nb["class"]["nearest_shares"] > 0.8 and nb["performer"]["nearest_shares"] < 0.5
    ident = probe_cache(make_cache(tmp_path, prepared, "ident", by_performer), kinds=("visual",))
    nb = ident["features"]["visual"]["neighbours_train"]
    assert nb["performer"]["nearest_shares"] == 1.0 and abs(nb["performer"]["chance"] - 15 / 95) < 1e-9
    assert nb["setup"]["nearest_shares"] == 1.0 and nb["class"]["nearest_shares"] < 0.3

    write_results([probe_cache(tmp_path / next(p.name for p in tmp_path.glob("probefix-good-*")))], tmp_path / "out",
                  "probe_test", "mmcl probe ...")
    saved = json.loads((tmp_path / "out" / "probe_test.json").read_text())
    assert saved["records"][0]["features"]["visual"]["pairs"][0]["classes"] == [0, 1]
    table = (tmp_path / "out" / "probe_test.md").read_text()
    assert "| good | visual |" in table and "drink from a cup (%)" in table
    assert (tmp_path / "out" / "probe_test.png").stat().st_size > 0


def test_probe_command_and_bad_pairs(prepared, tmp_path, capsys):
    from mmcl.cli import main

    cache = make_cache(tmp_path, prepared, "good", informative)
    assert main(["probe", "--cache", str(cache), "--features", "visual", "--pair", "sit down:stand up",
                 "--out", str(tmp_path), "--name", "p"]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["records"][0]["pairs"] == [["sit down", "stand up"]]
    assert main(["probe", "--cache", str(cache), "--pair", "sit down:fly away"]) == 2
    assert "fly away" in capsys.readouterr().err


def test_export_import_round_trip_is_exact(prepared, tmp_path):
    from mmcl.cli import main

    cache = make_cache(tmp_path / "a", prepared, "shared", informative)
    assert main(["teacher-cache", "export", str(cache), str(tmp_path / "hf")]) == 0
    from datasets import load_from_disk

    table = load_from_disk(str(tmp_path / "hf" / "samples"))
    assert len(table) == 160 and table.features["visual"].shape == (K, D)
    assert main(["teacher-cache", "import", str(tmp_path / "hf"), "--out", str(tmp_path / "b")]) == 0
    back = tmp_path / "b" / cache.name
    a, b = open_cache(cache), open_cache(back)
    assert a.manifest == b.manifest and sorted(a.names) == sorted(b.names) and a.failures == b.failures
    for name in a.names:
        x, y = a[name], b[name]
        assert set(x) == set(y)
        for k in x:
            assert np.array_equal(x[k], y[k]) if isinstance(x[k], np.ndarray) else x[k] == y[k], (name, k)
            assert np.asarray(x[k]).dtype == np.asarray(y[k]).dtype
    ca, cb = a.class_embeddings(), b.class_embeddings()
    assert ca["names"] == cb["names"] and ca["descriptions"] == cb["descriptions"]
    assert all(np.array_equal(ca[k], cb[k]) for k in ("name_embeddings", "description_embeddings"))
    for f in ("key.json", "config.yaml"):
        assert (cache / f).read_bytes() == (back / f).read_bytes()
    assert main(["teacher-cache", "import", str(tmp_path / "hf"), "--out", str(tmp_path / "b")]) == 2  # exists


def test_chance_check_reads_train_and_val_only(prepared, tmp_path, monkeypatch):
    from teachers.probe import chance_check

    data = PreparedData(prepared)
    test_names = {data.names[int(i)] for i in data.split("test")}
    good = open_cache(make_cache(tmp_path, prepared, "good", informative))
    rand = open_cache(make_cache(tmp_path, prepared, "rand", lambda *a: a[2].normal(size=D).astype(np.float32)))
    read = []
    getitem = type(good).__getitem__
    monkeypatch.setattr(type(good), "__getitem__", lambda self, n: read.append(n) or getitem(self, n))
    assert chance_check(good, data, ("visual",))["visual"]["at_chance"] is False
    verdict = chance_check(rand, data, ("visual", "text"))
    assert verdict["visual"]["at_chance"] and verdict["text"]["at_chance"] and verdict["visual"]["val_samples"] == 16
    assert read and not test_names & set(read)
