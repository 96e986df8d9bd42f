"""CPU speed of mmcl's CTR-GCN against a straightforward port of the reference implementation, with the machine's
peak as the yardstick.

The port below follows github.com/Uason-Chen/CTR-GCN ``model/ctrgcn.py`` line by line in structure (one module per
subset, Python loops, a convolution per branch); it lives only here, as the baseline. Both models get the same
weights (the port loads mmcl's state dict with ``strict=True``) and the script checks, before timing anything, that
their fp32 logits agree to 1e-5 (relative to the largest logit; train mode, and eval mode with mmcl's batch norms
folded) and records how far bf16 autocast moves mmcl's logits from the fp32 reference.

For each thread count (``--threads 1 2``: one core, all cores), in one run:

- **peak**: a 2048 x 2048 x 2048 matrix product in fp32 and in bf16, best of 3, before and after the model
  timings (the larger figure is the peak); every model figure is also given as a fraction of it;
- **training step** (forward + backward + SGD, batch 16, T=64, M=2, V=25, 60 classes) and **inference** (eval mode
  under ``torch.inference_mode``, batch 64) of the reference and of mmcl, in fp32 and under
  ``torch.autocast("cpu", torch.bfloat16)`` (what accelerate's ``mixed_precision=bf16`` runs); all variants of one
  kind are interleaved repetition by repetition (order alternating), and the median is reported. Speed-ups are the
  median of the per-repetition ratios against the reference in fp32 (the issue's yardstick) and against the
  reference in the same precision.

GFLOP/s: "useful" uses the reference's FLOPs (``torch.utils.flop_counter``, the published model's work: about 1.94
GMAC per sample forward at T=64, M=2) for every implementation, so the speeds compare like with like; the fraction
of peak uses each implementation's own executed FLOPs against the peak of the precision its products run in.
``--options`` adds what was tried on mmcl's model to a second, interleaved table: BN folding on/off, ``no_grad`` vs
``inference_mode``, channels-last inputs for the temporal convolutions (the model's only oneDNN convolutions), and
with ``--compile`` ``torch.compile`` (bf16).

OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, as the ``mmcl`` command sets it): the machine is shared.

Usage: ``python benchmarks/ctrgcn_speed.py [--threads 1 2] [--reps 3] [--options] [--out benchmarks/results/ctrgcn_speed.json]``
(the Markdown tables and a PNG of the speed-ups against the targets are written beside the JSON; ``--render``
rewrites them from the JSON without measuring).
"""

from __future__ import annotations

from mmcl.cpu import passive_wait_policy

passive_wait_policy()  # before torch loads (see mmcl/cpu.py)

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mmcl.data.layouts import get_layout  # noqa: E402
from mmcl.io import atomic_write_text  # noqa: E402
from mmcl.models import create_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402
from plotting import grouped_bars  # noqa: E402

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
PRECISIONS = ("fp32", "bf16")
FP32_RTOL = 1e-5  # fp32 logits of mmcl vs the reference, relative to the largest logit
BF16_RTOL = 5e-2  # bf16 autocast: 8-bit mantissa (2^-9 relative rounding) compounded over ten units


def _autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def relative_difference(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def check_logits(ref: nn.Module, ours: nn.Module, x: Tensor) -> dict[str, float]:
    """mmcl's logits against the reference's fp32 logits: fp32 (must be within ``FP32_RTOL``) and bf16 autocast
    (within ``BF16_RTOL``), train mode and eval mode (batch norms folded). Copies run, so the running statistics of
    the timed models stay untouched."""
    diffs = {}
    for mode in ("train", "eval"):
        with torch.no_grad():
            expected = copy.deepcopy(ref).train(mode == "train")(x)
            for precision in PRECISIONS:
                with _autocast(precision):
                    got = copy.deepcopy(ours).train(mode == "train")(x)
                diffs[f"{precision}_{mode}"] = relative_difference(got, expected)
    for key, value in diffs.items():
        limit = FP32_RTOL if key.startswith("fp32") else BF16_RTOL
        if not value <= limit:
            raise SystemExit(f"mmcl's logits ({key}) differ from the reference's by {value:.2e} > {limit}")
    return diffs


def make_train_step(model: nn.Module, x: Tensor, y: Tensor, precision: str) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=4e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(precision):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def make_infer(model: nn.Module, x: Tensor, precision: str, inference_mode: bool = True) -> Callable[[], None]:
    def infer() -> None:
        with (torch.inference_mode() if inference_mode else torch.no_grad()), _autocast(precision):
            model(x)

    return infer


def count_flops(fn: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(precision: str, size: int = 2048, reps: int = 3) -> float:
    """GFLOP/s of the best of ``reps`` square matrix products."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen).to(dtype) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def time_interleaved(fns: dict[str, Callable[[], None]], reps: int, warmup: int, desc: str) -> dict[str, list[float]]:
    """Wall-clock seconds of each call, the functions alternating (ABC..., then ...CBA, ...)."""
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


def speedup(baseline: list[float], times: list[float]) -> float:
    """Median over repetitions of baseline time / time (pairs from the same repetition)."""
    return statistics.median(b / t for b, t in zip(baseline, times))


def measure_threads(models: dict[str, nn.Module], inputs: dict[str, Tensor], flops: dict, threads: int,
                    args: argparse.Namespace) -> dict:
    """Peak, training and inference of every (implementation, precision) at ``threads`` threads."""
    torch.set_num_threads(threads)
    load = os.getloadavg()
    peak_before = {p: matmul_peak(p) for p in PRECISIONS}
    variants = [(impl, p) for p in PRECISIONS for impl in IMPLS]
    for model in models.values():
        model.train()
    train = time_interleaved({f"{i} {p}": make_train_step(models[i], inputs["x_train"], inputs["y_train"], p)
                              for i, p in variants}, args.reps, args.warmup, f"train, {threads} thread(s)")
    for model in models.values():
        model.eval()
    infer = time_interleaved({f"{i} {p}": make_infer(models[i], inputs["x_infer"], p) for i, p in variants},
                             args.reps, args.warmup, f"inference, {threads} thread(s)")
    peak_after = {p: matmul_peak(p) for p in PRECISIONS}
    peak = {p: max(peak_before[p], peak_after[p]) for p in PRECISIONS}
    rows = {}
    for impl, p in variants:
        name = f"{impl} {p}"
        step, batch_s = statistics.median(train[name]), statistics.median(infer[name])
        n_train, n_infer = args.batch, args.infer_batch
        rows[name] = {
            "train_step_s": step, "train_step_s_all": train[name],
            "train_useful_gflops_per_s": flops["reference"]["train_step"] * n_train / step / 1e9,
            "train_fraction_of_peak": flops[impl]["train_step"] * n_train / step / 1e9 / peak[p],
            "train_speedup_vs_reference_fp32": speedup(train["reference fp32"], train[name]),
            "train_speedup_vs_reference_same_precision": speedup(train[f"reference {p}"], train[name]),
            "infer_samples_per_s": n_infer / batch_s, "infer_batch_s_all": infer[name],
            "infer_useful_gflops_per_s": flops["reference"]["forward"] * n_infer / batch_s / 1e9,
            "infer_fraction_of_peak": flops[impl]["forward"] * n_infer / batch_s / 1e9 / peak[p],
            "infer_speedup_vs_reference_fp32": speedup(infer["reference fp32"], infer[name]),
            "infer_speedup_vs_reference_same_precision": speedup(infer[f"reference {p}"], infer[name]),
        }
        print(f"{threads} thread(s), {name}: train step {step:.3f} s "
              f"(x{rows[name]['train_speedup_vs_reference_fp32']:.2f} vs reference fp32), inference "
              f"{rows[name]['infer_samples_per_s']:.1f} samples/s (x{rows[name]['infer_speedup_vs_reference_fp32']:.2f})")
    return {"threads": threads, "peak_gflops_per_s": peak, "peak_before": peak_before, "peak_after": peak_after,
            "load_average_start": load, "load_average_end": os.getloadavg(), "rows": rows}


def measure_options(ours: nn.Module, inputs: dict[str, Tensor], args: argparse.Namespace) -> dict:
    """mmcl's model with each switch against its default, interleaved, at the first thread count."""
    torch.set_num_threads(args.threads[0])
    load = os.getloadavg()
    unfolded = copy.deepcopy(ours)
    unfolded.fold_bn = False
    x = inputs["x_infer"]
    results = {"threads": args.threads[0], "load_average_start": load, "inference": {}, "train": {},
               "temporal_convs": {}}
    compile_s = {}
    for precision in PRECISIONS:
        ours.eval()
        unfolded.eval()
        fns = {"default (BN folded, inference_mode)": make_infer(ours, x, precision),
               "BN not folded": make_infer(unfolded, x, precision),
               "no_grad instead of inference_mode": make_infer(ours, x, precision, inference_mode=False)}
        if args.compile and precision == "bf16":
            torch._dynamo.reset()
            model = torch.compile(copy.deepcopy(ours).eval())
            start = time.perf_counter()
            make_infer(model, x, precision)()
            compile_s[f"inference {precision}"] = time.perf_counter() - start
            fns["torch.compile"] = make_infer(model, x, precision)
        times = time_interleaved(fns, args.reps, args.warmup, f"options, inference {precision}")
        base = times["default (BN folded, inference_mode)"]
        results["inference"][precision] = {
            name: {"batch_s": statistics.median(t), "speedup_vs_default": speedup(base, t), "batch_s_all": t}
            for name, t in times.items()}
        if args.compile and precision == "bf16":
            torch._dynamo.reset()
            step = make_train_step(torch.compile(copy.deepcopy(ours).train()), inputs["x_train"], inputs["y_train"],
                                   precision)
            start = time.perf_counter()
            step()
            compile_s[f"train {precision}"] = time.perf_counter() - start
            ours.train()
            times = time_interleaved({"default": make_train_step(ours, inputs["x_train"], inputs["y_train"],
                                                                 precision),
                                      "torch.compile": step}, args.reps, args.warmup, f"options, train {precision}")
            results["train"][precision] = {
                name: {"step_s": statistics.median(t), "speedup_vs_default": speedup(times["default"], t),
                       "step_s_all": t} for name, t in times.items()}
        results["temporal_convs"][precision] = time_temporal_convs(ours, inputs["x_train"], precision, args)
    results["compile_s"] = compile_s
    results["load_average_end"] = os.getloadavg()
    return results


def time_temporal_convs(model: nn.Module, x: Tensor, precision: str, args: argparse.Namespace) -> dict:
    """The model's temporal convolutions (the only oneDNN convolutions; everything else runs as matrix products on
    NCHW tensors) at the training batch's shapes, forward + backward, in NCHW and with channels-last inputs (the
    conversions counted)."""
    shapes = []
    t = x.shape[2]
    n = x.shape[0] * x.shape[4]
    for unit in model.units:
        stride = unit.tcn1.stride
        for branch in unit.tcn1.branches[:2]:
            conv = branch[3].conv
            shapes.append((conv, (n, conv.in_channels, t, x.shape[3])))
        t = (t - 1) // stride + 1

    def run(channels_last: bool) -> Callable[[], None]:
        def fn() -> None:
            for conv, shape in shapes:
                inp = torch.ones(shape, requires_grad=True)
                if channels_last:
                    inp = inp.contiguous(memory_format=torch.channels_last)
                with _autocast(precision):
                    out = conv(inp)
                out.contiguous().float().sum().backward()
        return fn

    times = time_interleaved({"NCHW": run(False), "channels-last": run(True)}, args.reps, args.warmup,
                             f"options, temporal convolutions {precision}")
    return {name: {"s": statistics.median(v), "speedup_vs_default": speedup(times["NCHW"], v), "s_all": v}
            for name, v in times.items()}


MATMUL_OPS = {"aten::bmm": (0, 1), "aten::baddbmm": (1, 2), "aten::baddbmm_": (1, 2), "aten::mm": (0, 1),
              "aten::addmm": (1, 2)}  # op -> positions of its two factors among the recorded input shapes


def _matmul_flops(op: str, shapes: list) -> float | None:
    """FLOPs of one call of a matrix-product op from its recorded input shapes."""
    if op not in MATMUL_OPS:
        return None
    a, b = (shapes[i] for i in MATMUL_OPS[op])
    if len(a) == 3 and len(b) == 3:
        return 2.0 * a[0] * a[1] * a[2] * b[2]
    if len(a) == 2 and len(b) == 2:
        return 2.0 * a[0] * a[1] * b[1]
    return None


def profile_step(fn: Callable[[], None], top: int) -> dict:
    """torch.profiler over one call of ``fn`` (after one warm-up): the ops with the most self time, and the matrix
    products grouped by shape with their achieved GFLOP/s."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    by_name = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in by_name)
    ops = [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total} for e in sorted(by_name, key=lambda e: -e.self_cpu_time_total)]
    products = []
    for e in prof.key_averages(group_by_input_shape=True):
        flops = _matmul_flops(e.key, e.input_shapes)
        if flops:
            products.append({"op": e.key, "shapes": [list(x) for x in e.input_shapes if x], "calls": e.count,
                             "self_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total,
                             "gflops_per_s": flops * e.count / (e.self_cpu_time_total / 1e6) / 1e9})
    products.sort(key=lambda r: -r["self_ms"])
    return {"total_ms": total / 1e3, "ops": ops[:top], "matmuls": products[:top]}


def profile_all(models: dict[str, nn.Module], inputs: dict[str, Tensor], args: argparse.Namespace) -> dict:
    """Per-op profiles of the reference and mmcl, training step and inference, fp32 and bf16, one thread."""
    torch.set_num_threads(1)
    out = {"threads": 1, "load_average_start": os.getloadavg()}
    for impl in IMPLS:
        for precision in PRECISIONS:
            models[impl].train()
            out[f"{impl} {precision} train"] = profile_step(
                make_train_step(models[impl], inputs["x_train"], inputs["y_train"], precision), args.profile_top)
            models[impl].eval()
            out[f"{impl} {precision} inference"] = profile_step(
                make_infer(models[impl], inputs["x_infer"], precision), args.profile_top)
    out["load_average_end"] = os.getloadavg()
    return out


def profile_markdown(report: dict) -> str:
    prof = report["profile"]
    cfg = report["config"]
    lines = [
        "# CTR-GCN on CPU: where the time goes (torch.profiler, per op)",
        "",
        f"{report['machine']['cpu']}, 1 thread, torch {report['machine']['torch']}; training step batch "
        f"{cfg['batch']}, inference batch {cfg['infer_batch']}, T={cfg['frames']} (as in ctrgcn_speed.md); one "
        f"profiled call after a warm-up. 1-minute load average {prof['load_average_start'][0]:.1f} / "
        f"{prof['load_average_end'][0]:.1f}: the machine is shared, so the profiler's times include waiting for "
        "the core; compare shares within a table.",
        "",
        "Matrix products are listed by input shapes with the GFLOP/s they reached. Shapes `[N*C, T, 25] x "
        "[N*C, 25, 25]` (and their transposes in the backward) are CTR-GC's channel-wise aggregation: one 25x25 "
        "topology per sample and channel, so tens of thousands of tiny products; `[N, C', K] x [N, K, T*V]` are the "
        "1x1 convolutions; `[1, C, 625]` + `[N, C, R] x [N, R, 625]` the topologies.",
    ]
    for name, p in ((k, v) for k, v in prof.items() if isinstance(v, dict)):
        lines += ["", f"## {name}: {p['total_ms']:.0f} ms of self CPU time", "",
                  "| op | calls | self (ms) | share |", "|---|---:|---:|---:|"]
        lines += [f"| `{o['op']}` | {o['calls']} | {o['self_ms']:.1f} | {100 * o['share']:.1f}% |" for o in p["ops"]]
        lines += ["", "| matrix product | shapes | calls | self (ms) | share | GFLOP/s |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| `{m['op']}` | {' x '.join(str(x) for x in m['shapes'][-2:])} | {m['calls']} | "
                  f"{m['self_ms']:.1f} | {100 * m['share']:.1f}% | {m['gflops_per_s']:.1f} |" for m in p["matmuls"]]
    lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    layout = get_layout("ntu25")
    torch.manual_seed(0)
    ours = create_model("ctrgcn", num_classes=args.classes, layout="ntu25", num_person=2)
    ref = RefCTRGCN(args.classes, layout.num_joints, 2, layout.adjacency())
    ref.load_state_dict(ours.state_dict(), strict=True)
    models = {"reference": ref, "mmcl": ours}
    gen = torch.Generator().manual_seed(0)
    inputs = {"x_train": torch.randn(args.batch, 3, args.frames, layout.num_joints, 2, generator=gen),
              "y_train": torch.randint(0, args.classes, (args.batch,), generator=gen),
              "x_infer": torch.randn(args.infer_batch, 3, args.frames, layout.num_joints, 2, generator=gen)}
    torch.set_num_threads(args.threads[0])
    logits = check_logits(ref, ours, inputs["x_train"][:4])
    print("logits vs the fp32 reference: " + ", ".join(f"{k} {v:.1e}" for k, v in logits.items()))

    # FLOPs per sample (fp32 counts; autocast does not change the number of operations).
    flops = {}
    for name, model in models.items():
        model.train()
        one = inputs["x_train"][:2]
        flops[name] = {
            "train_step": count_flops(lambda: F.cross_entropy(model(one), inputs["y_train"][:2]).backward()) / 2,
            "forward": count_flops(lambda: model(one)) / 2,
        }
        model.zero_grad(set_to_none=True)
    ref.load_state_dict(ours.state_dict())  # the counting passes moved the running statistics

    sections = [measure_threads(models, inputs, flops, threads, args) for threads in args.threads]
    return {
        "config": {"batch": args.batch, "frames": args.frames, "joints": layout.num_joints, "persons": 2,
                   "classes": args.classes, "infer_batch": args.infer_batch, "reps": args.reps,
                   "warmup": args.warmup, "threads": args.threads},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "flops_per_sample": flops,
        "flops_note": ("torch.utils.flop_counter.FlopCounterMode, fp32; useful GFLOP/s use the reference's count "
                       "(the published model's work), fractions of peak each implementation's own"),
        "logits_relative_difference": logits,
        "logits_tolerance": {"fp32": FP32_RTOL, "bf16": BF16_RTOL},
        "by_threads": sections,
        "options": measure_options(ours, inputs, args) if args.options else None,
        "profile": profile_all(models, inputs, args) if args.profile else None,
    }



TARGETS = {("mmcl fp32", "train"): 2.0, ("mmcl fp32", "infer"): 2.5, ("mmcl bf16", "train"): 3.0,
           ("mmcl bf16", "infer"): 5.0}  # issue 15: speed-ups against the reference in fp32


def target_needs(report: dict, sec: dict) -> dict:
    """Per target: the fraction of its precision's peak mmcl's own FLOPs would have to run at to reach it (the
    reference's median time over the target), next to the fraction reached now."""
    cfg, flops, peak = report["config"], report["flops_per_sample"]["mmcl"], sec["peak_gflops_per_s"]
    ref = sec["rows"]["reference fp32"]
    ref_s = {"train": ref["train_step_s"], "infer": cfg["infer_batch"] / ref["infer_samples_per_s"]}
    work = {"train": flops["train_step"] * cfg["batch"], "infer": flops["forward"] * cfg["infer_batch"]}
    out = {}
    for (name, kind), target in TARGETS.items():
        precision = name.split()[1]
        label = "training step" if kind == "train" else "inference"
        out[(precision, label)] = {
            "target": target, "required_fraction": work[kind] * target / ref_s[kind] / 1e9 / peak[precision],
            "fraction": sec["rows"][name][f"{kind}_fraction_of_peak"]}
    return out


def best_products(profile: dict) -> dict[str, float]:
    """The highest GFLOP/s any matrix-product shape reached in mmcl's profiles, per precision and kind."""
    return {name.removeprefix("mmcl "): max(m["gflops_per_s"] for m in p["matmuls"])
            for name, p in profile.items() if name.startswith("mmcl ") and isinstance(p, dict)}


def markdown(report: dict, profile: dict | None = None) -> str:
    cfg, flops, m = report["config"], report["flops_per_sample"], report["machine"]
    lines = [
        "# CTR-GCN CPU speed: mmcl vs straightforward reference port",
        "",
        f"{m['cpu']} ({m['cores']} cores, {m['cpu_capability']}), torch {m['torch']}, OpenMP wait policy "
        f"{m['omp_wait_policy']}. Training step: batch {cfg['batch']}, T={cfg['frames']}, V={cfg['joints']}, "
        f"M={cfg['persons']}, {cfg['classes']} classes, forward + backward + SGD. Inference: eval mode, "
        f"inference_mode, batch {cfg['infer_batch']}. bf16: `torch.autocast(\"cpu\", torch.bfloat16)`. Median of "
        f"{cfg['reps']} interleaved repetitions (after {cfg['warmup']} warm-up); speed-up: median of the "
        "per-repetition ratios. The machine is shared with other jobs (load averages below): compare ratios within "
        "a table, not absolute times across runs.",
        f"FLOPs per sample (FlopCounterMode): reference forward {flops['reference']['forward'] / 1e9:.2f} GFLOP "
        f"({flops['reference']['forward'] / 2e9:.2f} GMAC), training step {flops['reference']['train_step'] / 1e9:.2f}"
        f" GFLOP; mmcl executes {flops['mmcl']['forward'] / 1e9:.2f} / {flops['mmcl']['train_step'] / 1e9:.2f} GFLOP "
        "for the same function. Useful GFLOP/s count the reference's FLOPs for both; % of peak counts each one's own "
        "against the matrix-product peak of its precision.",
    ]
    for sec in report["by_threads"]:
        peak = sec["peak_gflops_per_s"]
        lines += [
            "",
            f"## {sec['threads']} thread(s)",
            "",
            f"Peak (2048^3 matrix product, best before/after): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 "
            f"{peak['bf16']:.0f} GFLOP/s. 1-minute load average {sec['load_average_start'][0]:.1f} at the start, "
            f"{sec['load_average_end'][0]:.1f} at the end.",
            "",
            "| precision | implementation | train step (s) | x ref fp32 | x ref same prec. | useful GFLOP/s | % of peak "
            "| inference (samples/s) | x ref fp32 | x ref same prec. | useful GFLOP/s | % of peak |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in sec["rows"].items():
            impl, precision = name.split()

            def mark(kind: str, value: float) -> str:
                target = TARGETS.get((name, kind))
                text = f"x{value:.2f}"
                return f"**{text}** (target x{target:.1f})" if target else text

            lines.append(
                f"| {precision} | {impl} | {r['train_step_s']:.3f} | "
                f"{mark('train', r['train_speedup_vs_reference_fp32'])} | "
                f"x{r['train_speedup_vs_reference_same_precision']:.2f} | {r['train_useful_gflops_per_s']:.1f} | "
                f"{100 * r['train_fraction_of_peak']:.0f}% | {r['infer_samples_per_s']:.1f} | "
                f"{mark('infer', r['infer_speedup_vs_reference_fp32'])} | "
                f"x{r['infer_speedup_vs_reference_same_precision']:.2f} | {r['infer_useful_gflops_per_s']:.1f} | "
                f"{100 * r['infer_fraction_of_peak']:.0f}% |")
        lines += ["", "What the targets require: " + "; ".join(
            f"{what} x{need['target']:.1f} needs mmcl at {100 * need['required_fraction']:.0f}% of the {precision} "
            f"peak (now {100 * need['fraction']:.0f}%)"
            for (precision, what), need in target_needs(report, sec).items()) + "."]
    one = next((s["peak_gflops_per_s"] for s in report["by_threads"] if s["threads"] == 1), None)
    if profile and one:
        lines += ["", f"The fastest matrix-product shape in mmcl's profiles (`{report['profile']}`, 1 thread) reaches "
                  + "; ".join(f"{name}: {best:.0f} GFLOP/s ({100 * best / one[name.split()[0]]:.0f}% of the peak)"
                              for name, best in best_products(profile).items())
                  + ": the whole step, with its batch norms, activations and copies, runs below that."]
    diff = report["logits_relative_difference"]
    lines += ["", "Logits against the reference's fp32 logits (same weights; max |difference| / max |logit|): fp32 "
                  f"{diff['fp32_train']:.1e} (train mode), {diff['fp32_eval']:.1e} (eval, BN folded), tolerance "
                  f"{report['logits_tolerance']['fp32']:.0e}; bf16 autocast {diff['bf16_train']:.1e} / "
                  f"{diff['bf16_eval']:.1e}, tolerance {report['logits_tolerance']['bf16']:.0e}.", ""]
    opts = report.get("options")
    if opts:
        lines += [f"## Switches tried on mmcl's model ({opts['threads']} thread(s), load average "
                  f"{opts['load_average_start'][0]:.1f} / {opts['load_average_end'][0]:.1f})", "",
                  "| kind | precision | variant | time (s) | x default |", "|---|---|---|---:|---:|"]
        for kind, key in (("inference", "batch_s"), ("train", "step_s")):
            for precision, table in opts[kind].items():
                for name, r in table.items():
                    lines.append(f"| {kind} | {precision} | {name} | {r[key]:.3f} | x{r['speedup_vs_default']:.2f} |")
        for precision, table in opts["temporal_convs"].items():
            for name, r in table.items():
                lines.append(f"| temporal convolutions, forward + backward | {precision} | {name} | {r['s']:.3f} | "
                             f"x{r['speedup_vs_default']:.2f} |")
        if opts["compile_s"]:
            lines += ["", "torch.compile, first call (compilation): " + ", ".join(
                f"{k} {v:.0f} s" for k, v in opts["compile_s"].items()) + "."]
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> Path:
    """Speed-ups against the reference in fp32 per thread count, training step and inference, with the targets."""
    groups, series = [], {name: [] for name in ("mmcl fp32", "mmcl bf16", "reference bf16")}
    targets: dict[str, list[float | None]] = {name: [] for name in series}
    for sec in report["by_threads"]:
        for kind, label in (("train", "train step"), ("infer", "inference")):
            groups.append(f"{label}, {sec['threads']} thr.")
            for name in series:
                series[name].append(sec["rows"][name][f"{kind}_speedup_vs_reference_fp32"])
                targets[name].append(TARGETS.get((name, kind)))
    return grouped_bars(path, groups, series, "x reference fp32 (higher is faster)",
                        f"CTR-GCN on {report['machine']['cpu']}: speed-up over the reference port in fp32",
                        targets, (1.0, "reference fp32"))


def main(argv: list[str] | None = None) -> int:
    default_out = Path(__file__).resolve().parent / "results" / "ctrgcn_speed.json"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1],
                        help="thread counts to measure (default: 1 and all cores)")
    parser.add_argument("--batch", type=int, default=16, help="training batch size")
    parser.add_argument("--infer-batch", type=int, default=64, help="inference batch size")
    parser.add_argument("--frames", type=int, default=64, help="frames per clip (T)")
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per variant")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--options", action="store_true", help="also time the switches on mmcl's model")
    parser.add_argument("--compile", action="store_true",
                        help="with --options: include torch.compile (bf16 only: compiling takes minutes)")
    parser.add_argument("--profile", action="store_true",
                        help="also write per-op profiles (one thread) to <out stem>_profile.md / .json")
    parser.add_argument("--profile-top", type=int, default=12, help="ops and matrix-product shapes listed")
    parser.add_argument("--out", type=Path, default=default_out, help="JSON report; the markdown table goes beside it")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: rewrite the Markdown and PNG from the JSON at --out (and its profile)")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(args.out.read_text())
        profile_path = args.out.with_name(report["profile"]) if report.get("profile") else None
        profile = json.loads(profile_path.read_text()) if profile_path else None
        atomic_write_text(args.out.with_suffix(".md"), markdown(report, profile))
        plot(report, args.out.with_suffix(".png"))
        return 0
    if args.reps < 1 or min(args.threads) < 1:
        parser.error("--reps and --threads must be >= 1")
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    profile = report["profile"]
    if profile is not None:
        profile_path = args.out.with_name(args.out.stem + "_profile.json")
        atomic_write_text(profile_path, json.dumps(report["profile"], indent=2) + "\n")
        atomic_write_text(profile_path.with_suffix(".md"), profile_markdown(report))
        report["profile"] = profile_path.name
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    md = markdown(report, profile)
    atomic_write_text(args.out.with_suffix(".md"), md)
    plot(report, args.out.with_suffix(".png"))
    print(md)
    print(f"wrote {args.out} and its .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
