"""CPU latency and throughput of the deployed models: PyTorch eager fp32, bf16 autocast, onnxruntime fp32 and int8.

For each deployable checkpoint given:

- the ONNX export (``mmcl export``, verified against PyTorch) and its int8 dynamic quantisation
  (``onnxruntime.quantization.quantize_dynamic``, int8 weights, activations quantised per batch at run time);
- accuracy of every runtime on the test split of the prepared dataset (clips as ``mmcl eval`` feeds them);
  int8 is **kept** only when its top-1 is within 0.5 points of PyTorch fp32's, else reported as dropped;
- batch-1 latency (median and 90th percentile of ``--reps`` calls) and batch-64 throughput (64 / median time of
  ``--reps-64`` calls), the runtimes' calls interleaved so that machine noise hits them alike; ``--threads``
  threads for every runtime.

The script runs as the ``mmcl`` command does: OpenMP's passive wait policy (:mod:`mmcl.cpu`) set before torch
loads. On a shared machine, run it under the heavy-job lock and give ``--timing-lock`` the lock that keeps other
jobs off the cores: every checkpoint's export and accuracy pass run first, then the timed calls of all of them
while that lock is held (waiting at most ``--lock-wait`` seconds for it, else failing); the load average is
recorded::

    flock /tmp/mmcl-heavy.lock python benchmarks/deploy_latency.py \\
        --checkpoints runs/synthetic_ctrgcn_joint/best.safetensors --data cache/synthetic/prepared-seed0 \\
        --timing-lock /tmp/mmcl-suite.lock

Writes ``benchmarks/results/deploy_latency.{json,md,png}`` (README block: ``python benchmarks/readme_tables.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mmcl.cpu import passive_wait_policy

passive_wait_policy()  # before torch loads, as the mmcl command does

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mmcl.config import from_yaml  # noqa: E402
from mmcl.data.prepared import PreparedData  # noqa: E402
from mmcl.deploy.export import export_onnx  # noqa: E402
from mmcl.deploy.runtime import OnnxModel  # noqa: E402
from mmcl.engine.data import build_dataset  # noqa: E402
from mmcl.engine.evaluate import check_compatible  # noqa: E402
from mmcl.io import atomic_path, atomic_write_text, write_json  # noqa: E402
from mmcl.models.checkpoint import load_checkpoint  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
INT8_TOLERANCE = 0.5  # points of test top-1 that int8 may lose against PyTorch fp32 and still be kept
RUNTIMES = ("PyTorch eager fp32", "PyTorch bf16 autocast", "onnxruntime fp32", "onnxruntime int8 dynamic")


def quantize_int8(fp32: Path, out: Path) -> Path:
    """Dynamic int8 quantisation of an exported model, its mmcl metadata kept."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    source, proto = onnx.load(str(fp32)), onnx.load(str(out))
    del proto.metadata_props[:]
    for prop in source.metadata_props:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    proto.metadata_props.add(key="quantization", value="onnxruntime quantize_dynamic, int8 weights (QInt8)")
    onnx.save(proto, str(out))
    return out


def quantized_ops(path: Path) -> dict[str, int]:
    """How many products of a model run in int8 (ConvInteger, MatMulInteger) and how many stay fp32 (Conv, MatMul,
    Gemm)."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    return {"int8": sum(op in ("ConvInteger", "MatMulInteger") for op in ops),
            "fp32": sum(op in ("Conv", "MatMul", "Gemm") for op in ops)}


def runners(model: torch.nn.Module, fp32: Path, int8: Path, threads: int) -> dict[str, Callable]:
    """Runtime name -> function of a clip batch (N, C, T, V, M) float32 -> logits (N, classes) float32."""

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    def bf16(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(torch.from_numpy(x)).float().numpy()

    return dict(zip(RUNTIMES, (eager, bf16, OnnxModel(fp32, threads), OnnxModel(int8, threads))))


def test_clips(checkpoint: Path, data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """The test split as the checkpoint's model takes it (N, C, window, V, M), and its labels."""
    _, info = load_checkpoint(checkpoint)
    data_cfg = from_yaml(info.config_yaml).data
    check_compatible(info, data, data_cfg, checkpoint)
    dataset = build_dataset(data, data_cfg, "test", train=False)
    items = [dataset[i] for i in range(len(dataset))]
    return np.stack([it["skeleton"].numpy() for it in items]), np.array([it["label"] for it in items])


def accuracy(run: Callable, clips: np.ndarray, labels: np.ndarray, batch: int = 64) -> tuple[float, float]:
    logits = np.concatenate([run(clips[i:i + batch]) for i in range(0, len(clips), batch)])
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return 100 * float((top5[:, 0] == labels).mean()), 100 * float((top5 == labels[:, None]).any(1).mean())


def interleaved_times(fns: dict[str, Callable], x: np.ndarray, reps: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each function on ``x``, calls interleaved (order rotating each repetition)."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name](x)
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            start = time.perf_counter()
            fns[name](x)
            times[name].append(time.perf_counter() - start)
    return times


def prepare_checkpoint(checkpoint: Path, data: PreparedData, threads: int, work: Path) -> dict:
    """Export and quantise a checkpoint and score every runtime on the test split (untimed)."""
    model, info = load_checkpoint(checkpoint)
    export = export_onnx(checkpoint, work / f"{checkpoint.parent.name}.onnx")
    int8 = quantize_int8(export.path, work / f"{checkpoint.parent.name}.int8.onnx")
    fns = runners(model, export.path, int8, threads)
    clips, labels = test_clips(checkpoint, data)
    rows = {}
    for name, run in tqdm(fns.items(), desc=f"{checkpoint.parent.name}: accuracy", leave=False):
        top1, top5 = accuracy(run, clips, labels)
        rows[name] = {"top1": top1, "top5": top5}
    drop = rows[RUNTIMES[0]]["top1"] - rows[RUNTIMES[3]]["top1"]
    rows[RUNTIMES[3]]["kept"] = drop <= INT8_TOLERANCE
    rows[RUNTIMES[3]]["top1_drop_points"] = drop
    entry = {"checkpoint": str(checkpoint), "model": info.model, "classes": info.num_classes,
             "input": list(clips.shape[1:]), "test_samples": len(labels), "onnx_max_rel_diff": export.max_rel,
             "onnx_time_axis": export.time_note, "onnx_bytes": export.path.stat().st_size,
             "int8_bytes": int8.stat().st_size, "int8_ops": quantized_ops(int8), "runtimes": rows}
    return {"entry": entry, "fns": fns, "clips": clips}


def time_checkpoint(prepared: dict, reps: int, reps64: int) -> None:
    """Batch-1 latency and batch-64 throughput of every runtime, into the prepared entry's rows."""
    fns, clips, rows = prepared["fns"], prepared["clips"], prepared["entry"]["runtimes"]
    one = interleaved_times(fns, clips[:1], reps)
    batch = np.concatenate([clips] * (64 // len(clips) + 1))[:64]
    many = interleaved_times(fns, batch, reps64, warmup=1)
    for name in fns:
        rows[name].update({
            "latency_ms_median": 1000 * statistics.median(one[name]),
            "latency_ms_p90": 1000 * float(np.percentile(one[name], 90)),
            "throughput_per_s": 64 / statistics.median(many[name]),
        })


@contextlib.contextmanager
def held(lock: Path | None, wait: float, busy_ok: bool = False):
    """Hold ``lock`` (flock) for the block, waiting in line at most ``wait`` seconds; yields whether it is held.
    When it is not free in time: stop (nothing measured), or with ``busy_ok`` measure without it."""
    if lock is None:
        yield False
        return

    def give_up(signum, frame):
        raise TimeoutError

    with open(lock, "a") as f:
        previous = signal.signal(signal.SIGALRM, give_up)
        signal.alarm(max(1, round(wait)))
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
            got = True
        except TimeoutError:
            if not busy_ok:
                raise SystemExit(f"{lock} not free within {wait:.0f} s: nothing measured, run again later") from None
            print(f"{lock} not free within {wait:.0f} s: timing without it (recorded in the results)", flush=True)
            got = False
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        try:
            yield got
        finally:
            if got:
                fcntl.flock(f, fcntl.LOCK_UN)


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Deployed models on CPU: latency, throughput and accuracy per runtime",
        "",
        f"{m['cpu']}, {m['threads']} thread(s) for every runtime; torch {m['torch']}, onnxruntime "
        f"{m['onnxruntime']}, mmcl at {m.get('code', 'an unrecorded commit')}. Batch-1 latency: median (90th "
        f"percentile) of {result['reps']} calls; batch-64 throughput: 64 / median of {result['reps_64']} calls; "
        f"the runtimes' calls interleaved. Test top-1 / top-5 "
        f"on the {result['dataset']} test split. **The machine is shared** ({os.cpu_count()} cores; the timed calls "
        f"took {m['timing_seconds']:.0f} s, timing lock: {m['timing_lock']}; 1-minute load average "
        f"{m['load_start']:.1f} at their start, {m['load_end']:.1f} at their end): absolute times are noisy, "
        f"ratios within a model are measured side by side. int8 dynamic quantisation is kept only when its top-1 is "
        f"within {INT8_TOLERANCE} points of PyTorch fp32's. Plot: `{result['png']}`.",
        "",
        "| model | runtime | test top-1 (%) | top-5 (%) | batch-1 latency (ms) | batch-64 (clips/s) "
        "| speed-up vs eager fp32 (batch 64) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for entry in result["models"]:
        base = entry["runtimes"][RUNTIMES[0]]["throughput_per_s"]
        for name, row in entry["runtimes"].items():
            label = name
            if "kept" in row:
                label += " (kept)" if row["kept"] else f" (dropped: -{row['top1_drop_points']:.1f} points)"
            lines.append(f"| {entry['name']} | {label} | {row['top1']:.2f} | {row['top5']:.2f} | "
                         f"{row['latency_ms_median']:.1f} ({row['latency_ms_p90']:.1f}) | "
                         f"{row['throughput_per_s']:.1f} | x{row['throughput_per_s'] / base:.2f} |")
    lines += ["", "ONNX exports: " + "; ".join(
        f"{e['name']}: {e['onnx_bytes'] / 2**20:.1f} MiB fp32, {e['int8_bytes'] / 2**20:.1f} MiB int8, "
        f"{e['int8_ops']['int8']} products int8 and {e['int8_ops']['fp32']} fp32 after quantisation, max relative "
        f"difference to PyTorch {e['onnx_max_rel_diff']:.1e}, time axis {e['onnx_time_axis'].split(' (')[0]}"
        for e in result["models"]) + ". quantize_dynamic quantises products whose weights are constants of the graph "
        "(temporal convolutions, linear layers); CTR-GCN's 1x1 convolutions run as batched products of broadcast "
        "weights and stay fp32."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """Batch-1 latency and batch-64 throughput per runtime (one bar group per model), test top-1 on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2 + 0.9 * len(result["models"])))
    height = 0.8 / len(RUNTIMES)
    colors = plt.get_cmap("tab10").colors
    for ax, key, xlabel in ((axes[0], "latency_ms_median", "batch-1 latency, median (ms), lower is better"),
                            (axes[1], "throughput_per_s", "batch-64 throughput (clips/s), higher is better")):
        for k, entry in enumerate(result["models"]):
            for j, name in enumerate(RUNTIMES):
                row = entry["runtimes"][name]
                y = k + (j - (len(RUNTIMES) - 1) / 2) * height
                dropped = row.get("kept") is False
                ax.barh(y, row[key], height, color=colors[j], hatch="//" if dropped else None,
                        label=name if k == 0 else None)
                ax.text(row[key], y, f" {row['top1']:.1f}%" + (" (dropped)" if dropped else ""), va="center",
                        fontsize=7)
        ax.set_yticks(range(len(result["models"])), [e["name"] for e in result["models"]])
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.margins(x=0.25)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(RUNTIMES), fontsize=8)
    m = result["machine"]
    fig.suptitle(f"Deployed models on CPU ({m['threads']} threads, shared machine: load {m['load_start']:.1f} -> "
                 f"{m['load_end']:.1f}); labels: test top-1", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def code_version() -> str:
    """The commit the measured code is at (``+changes`` when the worktree differs from it)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", type=Path, required=True, help="deployable checkpoints")
    parser.add_argument("--names", nargs="+", default=None, help="row names (default: the registry names)")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset whose test split scores them")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=30, help="batch-1 calls per runtime")
    parser.add_argument("--reps-64", type=int, default=5, help="batch-64 calls per runtime")
    parser.add_argument("--timing-lock", type=Path, default=None,
                        help="lock file (flock) to hold while timing, e.g. the one that keeps other jobs off the CPU")
    parser.add_argument("--lock-wait", type=float, default=60.0, help="seconds to wait for --timing-lock")
    parser.add_argument("--busy-ok", action="store_true",
                        help="time without --timing-lock when it is not free in time (recorded) instead of stopping")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deploy_latency")
    args = parser.parse_args(argv)
    import onnxruntime

    torch.set_num_threads(args.threads)
    data = PreparedData(args.data)
    with tempfile.TemporaryDirectory() as work:
        prepared = [prepare_checkpoint(checkpoint, data, args.threads, Path(work)) for checkpoint in args.checkpoints]
        with held(args.timing_lock, args.lock_wait, args.busy_ok) as lock_held:
            load_start, timing_start = os.getloadavg()[0], time.perf_counter()
            for p in tqdm(prepared, desc="timing", leave=False):
                time_checkpoint(p, args.reps, args.reps_64)
            timing_seconds, load_end = time.perf_counter() - timing_start, os.getloadavg()[0]
    models = []
    for k, p in enumerate(prepared):
        entry = p["entry"]
        entry["name"] = args.names[k] if args.names else entry["model"]
        models.append(entry)
        print(f"{entry['name']}: " + ", ".join(f"{n} {r['top1']:.1f}% {r['latency_ms_median']:.1f} ms "
                                               f"{r['throughput_per_s']:.0f}/s" for n, r in entry["runtimes"].items()))
    result = {"dataset": data.info.dataset, "data": str(args.data), "reps": args.reps, "reps_64": args.reps_64,
              "machine": {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
                          "onnxruntime": onnxruntime.__version__, "load_start": load_start, "load_end": load_end,
                          "timing_seconds": timing_seconds,
                          "timing_lock": (f"{args.timing_lock} held" if lock_held else
                                          f"{args.timing_lock} NOT held (busy for {args.lock_wait:.0f} s)"
                                          if args.timing_lock else "none"),
                          "date": time.strftime("%Y-%m-%d"), "code": code_version()},
              "command": "python benchmarks/deploy_latency.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "png": str(args.out.with_suffix(".png").relative_to(ROOT)) if args.out.is_relative_to(ROOT)
              else str(args.out.with_suffix(".png")),
              "models": models}
    write_json(args.out.with_suffix(".json"), result)
    atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    plot(result, args.out.with_suffix(".png"))
    print(f"-> {args.out.with_suffix('.json')}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
