"""CPU speed of mmcl's CTR-GCN against a straightforward port of the reference implementation.

The port below follows github.com/Uason-Chen/CTR-GCN ``model/ctrgcn.py`` line by line in structure (one module per
subset, Python loops, a convolution per branch); it lives only here, as the baseline. Both models get the same
weights (the port loads mmcl's state dict with ``strict=True``) and the script checks that their logits agree to
1e-4 (relative, fp32, train and eval mode) before timing anything.

Measured, for fp32 and bf16 (``torch.autocast`` on CPU):
- training step: forward + backward + SGD step, batch 16 (default), T=64, M=2, V=25, 60 classes;
- inference: eval mode, no grad, batch 64, samples per second.
Repetitions of the two implementations are interleaved (order alternating) so that machine noise hits both alike;
the median is reported. GFLOP/s use the reference model's FLOPs counted by ``torch.utils.flop_counter`` (the work
the published model does: about 1.94 GMAC per sample forward at T=64, M=2) for both implementations, so the
figures compare like with like; mmcl's own (smaller) executed FLOP count is reported beside them.

Usage: ``python benchmarks/ctrgcn_speed.py [--threads N] [--reps 5] [--out benchmarks/results/ctrgcn_speed.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from mmcl.data.layouts import get_layout
from mmcl.io import atomic_write_text
from mmcl.models import create_model

# ---------------------------------------------------------------------------------------------------------------
# Straightforward port of the reference model (the baseline).
# ---------------------------------------------------------------------------------------------------------------


def _conv_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    nn.init.constant_(conv.bias, 0)


class RefTemporalConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        pad = (kernel + (kernel - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(cin, cout, (kernel, 1), padding=(pad, 0), stride=(stride, 1), dilation=(dilation, 1))
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class RefMultiScaleTCN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 5, stride: int = 1, dilations: tuple = (1, 2)) -> None:
        super().__init__()
        bc = cout // (len(dilations) + 2)
        self.branches = nn.ModuleList([
            nn.Sequential(nn.Conv2d(cin, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(inplace=True),
                          RefTemporalConv(bc, bc, kernel, stride, d))
            for d in dilations])
        self.branches.append(nn.Sequential(nn.Conv2d(cin, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(inplace=True),
                                           nn.MaxPool2d((3, 1), (stride, 1), (1, 0)), nn.BatchNorm2d(bc)))
        self.branches.append(nn.Sequential(nn.Conv2d(cin, bc, 1, stride=(stride, 1)), nn.BatchNorm2d(bc)))

    def forward(self, x: Tensor) -> Tensor:
        outs = []
        for branch in self.branches:
            outs.append(branch(x))
        return torch.cat(outs, 1)


class RefCTRGC(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        rel = 8 if cin in (3, 9) else cin // 8
        self.conv1, self.conv2 = nn.Conv2d(cin, rel, 1), nn.Conv2d(cin, rel, 1)
        self.conv3, self.conv4 = nn.Conv2d(cin, cout, 1), nn.Conv2d(rel, cout, 1)

    def forward(self, x: Tensor, a: Tensor, alpha: Tensor) -> Tensor:
        x1, x2, x3 = self.conv1(x).mean(-2), self.conv2(x).mean(-2), self.conv3(x)
        x1 = torch.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))
        x1 = self.conv4(x1) * alpha + a.unsqueeze(0).unsqueeze(0)
        return torch.einsum("ncuv,nctv->nctu", x1, x3)


class RefUnitGCN(nn.Module):
    def __init__(self, cin: int, cout: int, adjacency: np.ndarray) -> None:
        super().__init__()
        self.convs = nn.ModuleList([RefCTRGC(cin, cout) for _ in range(adjacency.shape[0])])
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout)) if cin != cout
                     else (lambda x: x))
        self.PA = nn.Parameter(torch.from_numpy(adjacency.astype(np.float32)))
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = None
        for i in range(len(self.convs)):
            z = self.convs[i](x, self.PA[i], self.alpha)
            y = z + y if y is not None else z
        y = self.bn(y)
        y += self.down(x)
        return self.relu(y)


class RefResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, stride=(stride, 1))
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class RefUnit(nn.Module):
    def __init__(self, cin: int, cout: int, adjacency: np.ndarray, stride: int = 1, residual: bool = True) -> None:
        super().__init__()
        self.gcn1 = RefUnitGCN(cin, cout, adjacency)
        self.tcn1 = RefMultiScaleTCN(cout, cout, 5, stride)
        self.relu = nn.ReLU(inplace=True)
        if not residual:
            self.residual = lambda x: 0
        elif cin == cout and stride == 1:
            self.residual = lambda x: x
        else:
            self.residual = RefResidual(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.tcn1(self.gcn1(x)) + self.residual(x))


class RefCTRGCN(nn.Module):
    """The reference ``Model`` (weights are loaded from mmcl's model, so its initialisation is not repeated)."""

    def __init__(self, num_class: int, num_point: int, num_person: int, adjacency: np.ndarray,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.data_bn = nn.BatchNorm1d(num_person * in_channels * num_point)
        b = 64
        self.l1 = RefUnit(in_channels, b, adjacency, residual=False)
        self.l2, self.l3, self.l4 = (RefUnit(b, b, adjacency) for _ in range(3))
        self.l5 = RefUnit(b, 2 * b, adjacency, stride=2)
        self.l6, self.l7 = (RefUnit(2 * b, 2 * b, adjacency) for _ in range(2))
        self.l8 = RefUnit(2 * b, 4 * b, adjacency, stride=2)
        self.l9, self.l10 = (RefUnit(4 * b, 4 * b, adjacency) for _ in range(2))
        self.fc = nn.Linear(4 * b, num_class)

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, v, m = x.size()
        x = x.permute(0, 4, 3, 1, 2).contiguous().view(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).contiguous().view(n * m, c, t, v)
        for unit in (self.l1, self.l2, self.l3, self.l4, self.l5, self.l6, self.l7, self.l8, self.l9, self.l10):
            x = unit(x)
        x = x.view(n, m, x.size(1), -1).mean(3).mean(1)
        return self.fc(x)


# ---------------------------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------------------------

IMPLS = ("reference", "mmcl")


def _autocast(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")


def check_equal(ref: nn.Module, ours: nn.Module, x: Tensor, rtol: float = 1e-4) -> dict[str, float]:
    """Relative max difference of the logits, train and eval mode (fp32); raises if above ``rtol``."""
    diffs = {}
    for mode in ("train", "eval"):
        ref.train(mode == "train")
        ours.train(mode == "train")
        with torch.no_grad():
            a, b = ref(x), ours(x)
        diffs[mode] = ((a - b).abs().max() / a.abs().max()).item()
        if not diffs[mode] <= rtol:
            raise SystemExit(f"outputs differ in {mode} mode: relative difference {diffs[mode]:.2e} > {rtol}")
    return diffs


def make_train_step(model: nn.Module, x: Tensor, y: Tensor, dtype: str) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=4e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(dtype):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def make_infer(model: nn.Module, x: Tensor, dtype: str) -> Callable[[], None]:
    def infer() -> None:
        with torch.no_grad(), _autocast(dtype):
            model(x)

    return infer


def count_flops(fn: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def time_interleaved(fns: dict[str, Callable[[], None]], reps: int, warmup: int, desc: str) -> dict[str, list[float]]:
    """Wall-clock seconds of each call, implementations alternating (ABAB, then BABA, ...)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for rep in tqdm(range(reps), desc=desc, leave=False):
        for name in (names if rep % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    layout = get_layout("ntu25")
    torch.manual_seed(0)
    ours = create_model("ctrgcn", num_classes=args.classes, layout="ntu25", num_person=2)
    ref = RefCTRGCN(args.classes, layout.num_joints, 2, layout.adjacency())
    ref.load_state_dict(ours.state_dict(), strict=True)
    models = {"reference": ref, "mmcl": ours}

    gen = torch.Generator().manual_seed(0)
    x_train = torch.randn(args.batch, 3, args.frames, layout.num_joints, 2, generator=gen)
    y_train = torch.randint(0, args.classes, (args.batch,), generator=gen)
    x_infer = torch.randn(args.infer_batch, 3, args.frames, layout.num_joints, 2, generator=gen)
    equal = check_equal(ref, ours, x_train[:4])
    print(f"logits agree: relative difference train {equal['train']:.1e}, eval {equal['eval']:.1e}")

    # FLOPs per sample (fp32 counts; autocast does not change the number of operations).
    flops = {}
    for name, model in models.items():
        model.train()
        one = x_train[:2]
        flops[name] = {
            "train_step": count_flops(lambda: F.cross_entropy(model(one), y_train[:2]).backward()) / 2,
            "forward": count_flops(lambda: model(one)) / 2,
        }
        model.zero_grad(set_to_none=True)

    results: dict = {}
    for dtype in args.dtypes:
        for model in models.values():
            model.train()
        train = time_interleaved({n: make_train_step(m, x_train, y_train, dtype) for n, m in models.items()},
                                 args.reps, args.warmup, f"train {dtype}")
        for model in models.values():
            model.eval()
        infer = time_interleaved({n: make_infer(m, x_infer, dtype) for n, m in models.items()},
                                 args.reps, args.warmup, f"inference {dtype}")
        res = {}
        for name in IMPLS:
            step = statistics.median(train[name])
            batch_time = statistics.median(infer[name])
            res[name] = {
                "train_step_s": step,
                "train_step_s_all": train[name],
                "train_gflops_per_s": flops["reference"]["train_step"] * args.batch / step / 1e9,
                "infer_samples_per_s": args.infer_batch / batch_time,
                "infer_batch_s_all": infer[name],
                "infer_gflops_per_s": flops["reference"]["forward"] * args.infer_batch / batch_time / 1e9,
            }
        # Speed-ups: median over the interleaved pairs (robust to noise that hits one repetition), and the ratio of
        # the medians.
        res["speedup_train"] = statistics.median(r / m for r, m in zip(train["reference"], train["mmcl"]))
        res["speedup_infer"] = statistics.median(r / m for r, m in zip(infer["reference"], infer["mmcl"]))
        res["speedup_train_of_medians"] = res["reference"]["train_step_s"] / res["mmcl"]["train_step_s"]
        res["speedup_infer_of_medians"] = res["mmcl"]["infer_samples_per_s"] / res["reference"]["infer_samples_per_s"]
        results[dtype] = res
        print(f"{dtype}: train step reference {res['reference']['train_step_s']:.3f} s, mmcl "
              f"{res['mmcl']['train_step_s']:.3f} s (x{res['speedup_train']:.2f}); inference "
              f"{res['reference']['infer_samples_per_s']:.1f} vs {res['mmcl']['infer_samples_per_s']:.1f} "
              f"samples/s (x{res['speedup_infer']:.2f})")

    return {
        "config": {"batch": args.batch, "frames": args.frames, "joints": layout.num_joints, "persons": 2,
                   "classes": args.classes, "infer_batch": args.infer_batch, "reps": args.reps,
                   "warmup": args.warmup, "threads": args.threads},
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version(), "load_average_start": load_start,
                    "load_average_end": os.getloadavg()},
        "flops_per_sample": flops,
        "flops_note": ("torch.utils.flop_counter.FlopCounterMode, fp32; GFLOP/s of both implementations use the "
                       "reference's count (the published model's work)"),
        "logits_relative_difference": equal,
        "results": results,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(report: dict) -> str:
    cfg, flops = report["config"], report["flops_per_sample"]
    lines = [
        "# CTR-GCN CPU speed: mmcl vs straightforward reference port",
        "",
        f"{report['machine']['cpu']}, {cfg['threads']} thread(s), torch {report['machine']['torch']}, "
        f"1-minute load average {report['machine']['load_average_start'][0]:.1f} at the start, "
        f"{report['machine']['load_average_end'][0]:.1f} at the end (other jobs share the cores).",
        f"Training step: batch {cfg['batch']}, T={cfg['frames']}, V={cfg['joints']}, M={cfg['persons']}, "
        f"{cfg['classes']} classes, forward + backward + SGD. Inference: eval, no grad, batch {cfg['infer_batch']}. "
        f"Median of {cfg['reps']} interleaved repetitions (after {cfg['warmup']} warm-up). Speed-up: median of the "
        "per-repetition ratios (in brackets: ratio of the medians).",
        f"FLOPs per sample (FlopCounterMode): reference forward {flops['reference']['forward'] / 1e9:.2f} GFLOP "
        f"({flops['reference']['forward'] / 2e9:.2f} GMAC), training step {flops['reference']['train_step'] / 1e9:.2f}"
        f" GFLOP; mmcl executes {flops['mmcl']['forward'] / 1e9:.2f} / {flops['mmcl']['train_step'] / 1e9:.2f} GFLOP "
        "for the same function. GFLOP/s below use the reference's count for both.",
        "",
        "| precision | implementation | train step (s) | train GFLOP/s | inference (samples/s) | inference GFLOP/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for dtype, res in report["results"].items():
        for name in IMPLS:
            r = res[name]
            lines.append(f"| {dtype} | {name} | {r['train_step_s']:.3f} | {r['train_gflops_per_s']:.1f} | "
                         f"{r['infer_samples_per_s']:.1f} | {r['infer_gflops_per_s']:.1f} |")
        lines.append(f"| {dtype} | **speed-up** | **x{res['speedup_train']:.2f}** "
                     f"(x{res['speedup_train_of_medians']:.2f}) | | **x{res['speedup_infer']:.2f}** "
                     f"(x{res['speedup_infer_of_medians']:.2f}) | |")
    diff = report["logits_relative_difference"]
    lines += ["", f"Logits of the two implementations (same weights, fp32): relative difference "
                  f"{diff['train']:.1e} (train mode), {diff['eval']:.1e} (eval mode).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    default_out = Path(__file__).resolve().parent / "results" / "ctrgcn_speed.json"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--batch", type=int, default=16, help="training batch size")
    parser.add_argument("--infer-batch", type=int, default=64, help="inference batch size")
    parser.add_argument("--frames", type=int, default=64, help="frames per clip (T)")
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per implementation")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--out", type=Path, default=default_out, help="JSON report; the markdown table goes beside it")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.threads < 1:
        parser.error("--reps and --threads must be >= 1")
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    atomic_write_text(args.out.with_suffix(".md"), md)
    print(md)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
