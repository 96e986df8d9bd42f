"""Memory benchmark of the prepared format: iterate an NTU-120-sized dataset through ``SkeletonDataset``.

::

    python benchmarks/prepared_memory.py --samples 20000   # quick: ~3.6 GB on disk
    python benchmarks/prepared_memory.py                   # NTU-120 size: 113,945 samples, ~20.5 GB on disk

Builds a prepared dataset of N samples x 300 frames x 2 persons x 25 joints x 3 float32 (filler values; checks the free
disk space first; reuses the dataset when it is already there and resumes a build that was cut short), then iterates
it in training mode with every transform (the ``bone_motion`` stream: crop-resize, rotation, bone, motion) twice:
in this process, and through a torch DataLoader with 2 workers (shuffled, batches of 64). It reports throughput and
peak resident memory: this process's for the first pass; for the DataLoader pass the largest sum over this process and
its workers (sampled every 50 ms; a worker's RSS counts pages it shares with its parent, so the sum over-estimates),
plus getrusage's high-water marks. The target is a peak below 2 GiB; the exit status is 1 when it is missed. The
figures go to a JSON report (``--report``, default ``<out>.json`` beside the dataset directory).
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mmcl.data.dataset import SkeletonDataset
from mmcl.data.prepared import PreparedData, PreparedDataError, PreparedInfo, PreparedWriter
from mmcl.io import write_json

NTU120_SAMPLES = 113_945
FRAME_SHAPE = (2, 25, 3)
LIMIT_BYTES = 2 * 1024**3
GiB = 1024**3


class PeakRSS:
    """Track the peak resident memory of this process (and its children) from a background thread."""

    def __init__(self, children: bool, interval: float = 0.05):
        self.children = children
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._process = psutil.Process()

    def sample(self) -> int:
        procs = [self._process] + (self._process.children(recursive=True) if self.children else [])
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass  # a worker that exited between listing and reading
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.peak = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())


def build(out: Path, samples: int, frames: int) -> float | None:
    """Write the filler dataset (resuming a cut build); returns seconds spent, or None when it already existed."""
    try:
        if PreparedData(out).info.num_samples == samples:
            return None
        raise SystemExit(f"{out} holds a prepared dataset of another size; remove it or pass another --out")
    except PreparedDataError:
        pass
    needed = samples * frames * int(np.prod(FRAME_SHAPE)) * 4
    partial = out.with_name(out.name + ".partial")
    written = (partial / "joints.f32").stat().st_size if (partial / "joints.f32").exists() else 0
    free = shutil.disk_usage(out.parent).free
    print(f"dataset needs {needed / 1e9:.1f} GB on disk ({written / 1e9:.1f} GB already written); "
          f"{free / 1e9:.1f} GB free under {out.parent}")
    if needed - written > free - GiB:
        raise SystemExit("not enough free disk space (keeping 1 GiB spare); use --samples N for a smaller run")
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.5, size=(frames, *FRAME_SHAPE)).astype(np.float32)
    info = PreparedInfo(dataset="memory-benchmark", layout="ntu25", num_person=FRAME_SHAPE[0],
                        class_names=[f"class_{k:03d}" for k in range(120)], source="benchmarks/prepared_memory.py")
    start = time.perf_counter()
    with PreparedWriter(out, info) as writer:
        for i in tqdm(range(samples), desc="building", unit="sample", mininterval=2):
            name = f"sample_{i:06d}"
            if not writer.done(name):
                writer.add(name, i % 120, base + np.float32(0.01 * (i % 97)))
        writer.finalize({"train": range(samples)}, "all samples in train (benchmark)")
    return time.perf_counter() - start


def iterate_in_process(ds: SkeletonDataset) -> dict:
    with PeakRSS(children=False) as rss:
        start = time.perf_counter()
        for i in tqdm(range(len(ds)), desc="in-process pass", unit="sample", mininterval=2):
            ds[i]
        seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 1), "samples_per_s": round(len(ds) / seconds, 1), "peak_rss_bytes": rss.peak}


def iterate_loader(ds: SkeletonDataset, workers: int, batch_size: int) -> dict:
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    with PeakRSS(children=True) as rss:
        start = time.perf_counter()
        seen = 0
        for batch in tqdm(loader, desc=f"DataLoader pass ({workers} workers)", unit="batch", mininterval=2):
            seen += len(batch["label"])
        seconds = time.perf_counter() - start
    if seen != len(ds):
        raise RuntimeError(f"the DataLoader gave {seen} samples, expected {len(ds)}")
    return {"workers": workers, "batch_size": batch_size, "seconds": round(seconds, 1),
            "samples_per_s": round(seen / seconds, 1), "peak_rss_sum_bytes": rss.peak,
            "largest_worker_maxrss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=NTU120_SAMPLES, help="samples (default: NTU-120's 113,945)")
    parser.add_argument("--frames", type=int, default=300, help="frames per sample (default 300)")
    parser.add_argument("--out", type=Path, help="dataset directory (default: <tmp>/mmcl_prepared_memory_<samples>)")
    parser.add_argument("--report", type=Path, help="JSON report (default: <out>.json)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out or Path(tempfile.gettempdir()) / f"mmcl_prepared_memory_{args.samples}"
    report_path = args.report or out.with_name(out.name + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)

    build_seconds = build(out, args.samples, args.frames)
    data = PreparedData(out)
    ds = SkeletonDataset(data, "train", stream="bone_motion", train=True)
    single = iterate_in_process(ds)
    loader = iterate_loader(ds, args.workers, args.batch_size)
    self_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = max(single["peak_rss_bytes"], loader["peak_rss_sum_bytes"], self_maxrss)
    report = {
        "samples": len(data), "frames_per_sample": args.frames, "dataset_dir": str(out),
        "dataset_bytes": (out / "joints.f32").stat().st_size,
        "build_seconds": None if build_seconds is None else round(build_seconds, 1),
        "in_process": single, "dataloader": loader, "process_maxrss_bytes": self_maxrss,
        "peak_bytes": peak, "limit_bytes": LIMIT_BYTES, "passed": peak < LIMIT_BYTES,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": psutil.cpu_count(),
                    "memory_bytes": psutil.virtual_memory().total},
    }
    write_json(report_path, report)
    print(f"dataset: {len(data)} samples, {report['dataset_bytes'] / 1e9:.1f} GB at {out}")
    print(f"in-process pass: {single['samples_per_s']} samples/s, peak RSS {single['peak_rss_bytes'] / 2**20:.0f} MiB")
    print(f"DataLoader pass ({args.workers} workers): {loader['samples_per_s']} samples/s, peak RSS (main + workers) "
          f"{loader['peak_rss_sum_bytes'] / 2**20:.0f} MiB")
    print(f"peak {peak / 2**20:.0f} MiB, limit {LIMIT_BYTES / 2**20:.0f} MiB: {'pass' if report['passed'] else 'FAIL'}")
    print(f"report: {report_path}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
