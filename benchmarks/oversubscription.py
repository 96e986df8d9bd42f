"""A training step on a shared CPU: how much one competing busy process slows it, per thread policy.

Each measurement is a fresh Python process (OpenMP reads its wait policy once, at start-up) that times CTR-GCN
training steps of the main job's shape (batch 16, 32 frames, 25 joints, 2 persons, 16 classes, bf16 autocast as
``configs/synthetic/ctrgcn_joint.yaml``). Policies:

- ``all cores, spinning``: torch's default, one thread per core, GNU OpenMP's default wait (a thread that waits
  spins for a while, ``GOMP_SPINCOUNT`` = 300,000 iterations, then sleeps);
- ``all cores, passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once);
- ``all cores, spin N``: the same with ``GOMP_SPINCOUNT=N`` (a shorter spin before sleeping);
- ``1 thread``;
- ``free cores, passive``: threads chosen from the cores that other processes leave free (:func:`free_cores`, from
  ``/proc/stat`` over 0.3 s), passive wait.

mmcl's guard is the passive wait policy with one thread per core (:mod:`mmcl.cpu`, set by the ``mmcl`` command).

Each policy runs with the machine as it is ("quiet") and with one extra process spinning in a Python loop
("1 competitor"); policies and conditions are interleaved over ``--rounds`` rounds. A round's slowdown is its
competitor step over its quiet step (median over the steps); the table gives the median over rounds, and each
policy's steps against the default's in the same round and condition. The 1-minute load average is recorded: the
machine is shared, and "quiet" means "without the added competitor", not idle.

Usage: ``python benchmarks/oversubscription.py [--rounds 3] [--steps 3] [--policies NAME ...]
[--out benchmarks/results/oversubscription.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
POLICIES = {  # name -> (threads: 0 = the free cores, -1 = all cores; OpenMP environment)
    "all cores, spinning": (-1, {}),
    "all cores, passive": (-1, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "all cores, spin 10000": (-1, {"GOMP_SPINCOUNT": "10000"}),
    "all cores, spin 1000": (-1, {"GOMP_SPINCOUNT": "1000"}),
    "1 thread": (1, {}),
    "free cores, passive": (0, {"OMP_WAIT_POLICY": "PASSIVE"}),
}
DEFAULT = "all cores, spinning"
CONDITIONS = ("quiet", "1 competitor")


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (first line of /proc/stat; idle and iowait are not busy)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def free_cores(interval: float = 0.3) -> int:
    """Cores that other processes leave free over ``interval`` seconds (this process's own use not counted)."""
    cores = os.cpu_count() or 1
    busy0, total0 = _cpu_jiffies()
    own0 = sum(os.times()[:2])
    time.sleep(interval)
    busy1, total1 = _cpu_jiffies()
    own1 = sum(os.times()[:2])
    others = (busy1 - busy0) - (own1 - own0) * os.sysconf("SC_CLK_TCK")
    busy = others / max((total1 - total0) / cores, 1)
    return max(1, min(cores, round(cores - busy)))


def child(threads: int, steps: int, warmup: int) -> dict:
    """Runs in the measured process: time ``steps`` training steps after ``warmup`` ones."""
    import torch
    import torch.nn.functional as F

    from mmcl.models import create_model

    chosen = {-1: os.cpu_count() or 1, 0: free_cores()}.get(threads, threads)
    torch.set_num_threads(chosen)
    torch.manual_seed(0)
    model = create_model("ctrgcn", num_classes=16, layout="ntu25", num_person=2).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=4e-4)
    x, y = torch.randn(16, 3, 32, 25, 2), torch.randint(0, 16, (16,))
    times = []
    for k in range(warmup + steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return {"threads": chosen, "step_s": times}


def measure(policy: str, steps: int, warmup: int) -> dict:
    threads, omp_env = POLICIES[policy]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(omp_env)
    out = subprocess.run([sys.executable, __file__, "--child", str(threads), "--steps", str(steps),
                          "--warmup", str(warmup)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    load_start = os.getloadavg()
    policies = [DEFAULT] + [p for p in args.policies if p != DEFAULT]
    # samples[policy][condition][round]: that measurement's step times
    samples = {p: {c: [] for c in CONDITIONS} for p in policies}
    threads = {p: {c: [] for c in CONDITIONS} for p in policies}
    loads = []
    order = [(p, c) for c in CONDITIONS for p in policies]
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for policy, condition in (order if r % 2 == 0 else order[::-1]):
            competitor = None
            if condition != "quiet":
                competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.5)
            try:
                res = measure(policy, args.steps, args.warmup)
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()
            samples[policy][condition].append(res["step_s"])
            threads[policy][condition].append(res["threads"])
            print(f"round {r + 1}: {policy:22s} {condition:13s} threads {res['threads']}  "
                  f"step {statistics.median(res['step_s']):.3f} s", flush=True)
    step = {p: {c: [statistics.median(x) for x in samples[p][c]] for c in CONDITIONS} for p in policies}
    results = {}
    for policy in policies:
        s = step[policy]
        results[policy] = {
            "step_s": {c: statistics.median(s[c]) for c in CONDITIONS}, "step_s_by_round": s,
            "step_s_all": samples[policy], "threads": threads[policy],
            "slowdown": statistics.median(b / a for a, b in zip(s["quiet"], s["1 competitor"])),
            "vs_default": {c: statistics.median(x / d for x, d in zip(s[c], step[DEFAULT][c])) for c in CONDITIONS},
        }
    return {
        "config": {"rounds": args.rounds, "steps": args.steps, "warmup": args.warmup, "batch": 16, "frames": 32,
                   "precision": "bf16 autocast"},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_average_start": load_start, "load_average_end": os.getloadavg(),
                    "load_average_by_round": loads},
        "results": results,
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    loads = ", ".join(f"{x:.1f}" for x in m["load_average_by_round"])
    lines = [
        "# Training step on a shared CPU: one competing busy process",
        "",
        f"{m['cpu']}, {m['cores']} cores; CTR-GCN training step of the main job's shape (batch 16, T=32, bf16 "
        f"autocast), each policy in a fresh process; {report['config']['rounds']} interleaved rounds x "
        f"{report['config']['steps']} steps. 1-minute load average at the start of each round: {loads} (a shared "
        "machine: 'quiet' means without the added competitor, not idle). Slowdown: competitor / quiet step of the "
        "same round, median over rounds; time vs default: the step over the default policy's in the same round and "
        "condition (below 1: faster).",
        "",
        "| policy | threads (quiet / competitor) | step, quiet (s) | step, 1 competitor (s) | **slowdown** | "
        "time vs default, quiet | time vs default, competitor |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for policy, r in report["results"].items():
        t = "/".join(f"{min(r['threads'][c])}-{max(r['threads'][c])}" if min(r['threads'][c]) != max(
            r['threads'][c]) else str(r['threads'][c][0]) for c in CONDITIONS)
        lines.append(f"| {policy} | {t} | {r['step_s']['quiet']:.3f} | {r['step_s']['1 competitor']:.3f} | "
                     f"**x{r['slowdown']:.2f}** | x{r['vs_default']['quiet']:.2f} | "
                     f"x{r['vs_default']['1 competitor']:.2f} |")
    lines.append("")
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES),
                        help="policies to measure (the default one is always measured)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "oversubscription.json")
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.steps, args.warmup)))
        return 0
    from mmcl.io import atomic_write_text

    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    atomic_write_text(args.out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
