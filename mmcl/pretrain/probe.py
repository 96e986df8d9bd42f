"""``mmcl probe-encoder``: the field's evaluation protocols on a pre-trained encoder (or on its random initialisation).

    mmcl probe-encoder --checkpoint runs/x/encoder.safetensors                           # linear + kNN
    mmcl probe-encoder --checkpoint runs/x/encoder.safetensors --protocols semi --fractions 0.01 0.1 --seeds 1 2 3
    mmcl probe-encoder --checkpoint runs/x/encoder.safetensors --protocols finetune       # all labels
    mmcl probe-encoder --checkpoint runs/x/encoder.safetensors --data cache/prepared/ntu120-xsub   # transfer
    mmcl probe-encoder --random-init configs/pretrain/moco/synthetic.yaml --seeds 1 2 3  # the untrained baseline

- ``linear``: frozen encoder, linear classifier on its global features; learning rate and epoch chosen on the
  validation split, the test split scored once (:func:`mmcl.pretrain.protocols.linear_probe`).
- ``knn``: cosine kNN top-1 of the test split against the training split, for each ``--k``.
- ``semi`` / ``finetune``: the whole network trained with labels by the training engine (``--finetune-config``,
  the encoder as ``model.init``, then ``dotted.key=value`` overrides), on a class-stratified seeded
  ``--fractions`` of the training labels (``semi``: ``data.label_fraction``) or on all of them (``finetune``);
  validation-selected epoch, test scored once. With ``--random-init`` this is training from scratch on the same
  labels.
- **transfer**: ``--data`` names another prepared dataset than the one the encoder was pre-trained on; every
  protocol then runs there (same layout and stream), and the results say so.

Results go to ``--out`` (default ``<checkpoint dir>/probe-<dataset>``): ``metrics.json`` (every protocol, seed and
fraction, with the fine-tuning runs' directories) and ``summary.md`` (a table: mean and spread over seeds).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mmcl.config import load_config
from mmcl.data.prepared import PreparedData
from mmcl.engine.data import build_dataset, build_loader, model_input, resolve_data_root
from mmcl.errors import ConfigError
from mmcl.io import atomic_write_text, write_json
from mmcl.models import create_model
from mmcl.paths import configs_dir
from mmcl.pretrain.config import PretrainConfig
from mmcl.pretrain.protocols import LinearProbeConfig, extract_features, knn_eval, linear_probe

PROTOCOLS = ("linear", "knn", "semi", "finetune")
DEFAULT_FINETUNE = "finetune/synthetic_probe.yaml"


def _stats(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "values": values}


def encoder_source(checkpoint: str | None, random_init: str | None) -> tuple[PretrainConfig, dict]:
    """The pre-training config the encoder comes from and a description of it."""
    from mmcl.config import from_yaml
    from mmcl.models.checkpoint import read_checkpoint_info

    if bool(checkpoint) == bool(random_init):
        raise ConfigError("give exactly one of --checkpoint (a pre-trained encoder) and --random-init (a pre-training "
                          "config whose untrained encoder is probed)")
    if checkpoint:
        info = read_checkpoint_info(checkpoint)
        if "pretrain" not in info.extra:
            raise ConfigError(f"{checkpoint} is not an encoder checkpoint of `mmcl pretrain` (evaluate a trained "
                              "model with `mmcl eval`)")
        cfg = from_yaml(info.config_yaml, schema=PretrainConfig, where=f"the configuration stored in {checkpoint}")
        return cfg, {"encoder": str(checkpoint), "method": info.extra["pretrain"], "epochs": info.extra.get("epoch"),
                     "pretrained_on": info.extra.get("data_root")}
    cfg = load_config(random_init, schema=PretrainConfig)
    return cfg, {"encoder": f"random init of {random_init}", "method": None, "epochs": 0, "pretrained_on": None}


def build_encoder(cfg: PretrainConfig, data: PreparedData, checkpoint: str | None, seed: int) -> torch.nn.Module:
    """The encoder of ``cfg`` for ``data``: the checkpoint's weights, or a random initialisation drawn with ``seed``."""
    layout, num_person = model_input(data, cfg.data)
    torch.manual_seed(seed)
    return create_model(cfg.model.name, num_classes=data.num_classes, layout=layout, in_channels=data.info.channels,
                        num_person=num_person, init=checkpoint or None, **cfg.model.args)


def frozen_protocols(cfg: PretrainConfig, data: PreparedData, checkpoint: str | None, seed: int,
                     protocols: list[str], ks: list[int]) -> dict:
    """Linear evaluation and kNN of one encoder."""
    encoder = build_encoder(cfg, data, checkpoint, seed)
    loaders = {split: build_loader(build_dataset(data, cfg.data, split, train=False), cfg.data.eval_batch_size,
                                   cfg.data.num_workers) for split in ("train", "val", "test")}
    feats = {split: extract_features(encoder, loader, desc=f"features ({split})") for split, loader in loaders.items()}
    out = {}
    if "linear" in protocols:
        out["linear"] = linear_probe(feats["train"], feats["val"], feats["test"], data.num_classes,
                                     LinearProbeConfig(seed=seed))
    if "knn" in protocols:
        out["knn"] = {f"k={k}": {"val_top1": knn_eval(feats["train"], feats["val"], k),
                                 "test_top1": knn_eval(feats["train"], feats["test"], k)} for k in ks}
    return out


def finetune(cfg: PretrainConfig, data_root: Path, checkpoint: str | None, fraction: float, seed: int,
             finetune_config: str | Path, out: Path, overrides: list[str]) -> dict:
    """Train the encoder's network with labels (a ``fraction`` of them, class-stratified by ``seed``)."""
    from mmcl.engine.trainer import train

    name = f"{'finetune' if checkpoint else 'scratch'}-labels{fraction:g}-seed{seed}"
    train_cfg = load_config(finetune_config, [f"data.root={data_root}", f"data.stream={cfg.data.stream}",
                                              f"data.window={cfg.data.window}", f"data.label_fraction={fraction}",
                                              f"data.label_seed={seed}", f"seed={seed}", f"name={name}",
                                              f"output_dir={out}", f"model.name={cfg.model.name}",
                                              f"model.init={checkpoint or repr('')}", *overrides])
    train_cfg = replace(train_cfg, model=replace(train_cfg.model, args=dict(cfg.model.args)))
    metrics = train(train_cfg)
    return {"test_top1": metrics["top1"], "val_top1": metrics["val_top1"], "best_epoch": metrics["best_epoch"],
            "run": str(out / name)}


def summary(results: dict) -> str:
    """The Markdown table of a probe's ``metrics.json``."""
    lines = [f"# Probe of {results['encoder']}", "",
             f"Evaluated on {results['evaluated_on']}{' (transfer)' if results['transfer'] else ''}; seeds "
             f"{', '.join(map(str, results['seeds']))}; test top-1 (%), mean ± sample standard deviation.", "",
             "| protocol | test top-1 (%) | val top-1 (%) |", "|---|---:|---:|"]

    def cell(stat: dict) -> str:
        return f"{100 * stat['mean']:.2f}" + (f" ± {100 * stat['std']:.2f}" if stat["std"] is not None else "")

    for key, stat in results["summary"].items():
        lines.append(f"| {key} | {cell(stat['test_top1'])} | {cell(stat['val_top1'])} |")
    return "\n".join(lines) + "\n"


def probe(checkpoint: str | None = None, random_init: str | None = None, data_root: str | None = None,
          protocols: list[str] = ("linear", "knn"), ks: list[int] = (1,), fractions: list[float] = (0.01, 0.1),
          seeds: list[int] = (1,), finetune_config: str | Path | None = None, out: str | Path | None = None,
          overrides: list[str] = ()) -> dict:
    """Run the protocols; write ``metrics.json`` and ``summary.md`` into ``out``; return the results."""
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        raise ConfigError(f"unknown protocol(s) {', '.join(unknown)}; protocols: {', '.join(PROTOCOLS)}")
    cfg, source = encoder_source(checkpoint, random_init)
    if data_root:
        cfg = replace(cfg, data=replace(cfg.data, root=str(data_root)))
    root = resolve_data_root(cfg.data)
    data = PreparedData(root)
    out = Path(out) if out else Path(checkpoint or ".").resolve().parent / f"probe-{data.info.dataset}"
    pretrained_on = source["pretrained_on"]
    results = {**source, "evaluated_on": str(root.resolve()), "dataset": data.info.dataset,
               "transfer": pretrained_on is not None and Path(pretrained_on).resolve() != root.resolve(),
               "seeds": list(seeds), "protocols": list(protocols)}
    per_seed = {seed: frozen_protocols(cfg, data, checkpoint, seed, list(protocols), list(ks)) for seed in seeds
                } if {"linear", "knn"} & set(protocols) else {}
    if "linear" in protocols:
        results["linear"] = {str(s): r["linear"] for s, r in per_seed.items()}
    if "knn" in protocols:
        results["knn"] = {str(s): r["knn"] for s, r in per_seed.items()}
    finetune_config = finetune_config or configs_dir() / DEFAULT_FINETUNE
    for protocol, fracs in (("semi", fractions), ("finetune", [1.0])):
        if protocol in protocols:
            results[protocol] = {f"{f:g}": {str(s): finetune(cfg, root, checkpoint, f, s, finetune_config, out,
                                                             list(overrides)) for s in seeds} for f in fracs}
    results["summary"] = _summarise(results)
    write_json(out / "metrics.json", results)
    atomic_write_text(out / "summary.md", summary(results))
    print(summary(results))
    return results


def _summarise(results: dict) -> dict:
    rows = {}
    if "linear" in results:
        runs = list(results["linear"].values())
        rows["linear"] = {m: _stats([r[m] for r in runs]) for m in ("test_top1", "val_top1")}
    for k in next(iter(results.get("knn", {}).values()), {}):
        runs = [r[k] for r in results["knn"].values()]
        rows[f"kNN {k}"] = {m: _stats([r[m] for r in runs]) for m in ("test_top1", "val_top1")}
    for protocol in ("semi", "finetune"):
        for fraction, by_seed in results.get(protocol, {}).items():
            runs = list(by_seed.values())
            label = f"{'fine-tuned' if results['method'] else 'from scratch'}, {100 * float(fraction):g} % labels"
            rows[label] = {m: _stats([r[m] for r in runs]) for m in ("test_top1", "val_top1")}
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="encoder checkpoint written by `mmcl pretrain` (RUN/encoder.safetensors)")
    source.add_argument("--random-init", metavar="CONFIG", help="probe the untrained encoder of this pre-training config")
    parser.add_argument("--data", default=None, help="prepared dataset to evaluate on (default: the pre-training one; "
                                                     "another one is a transfer evaluation)")
    parser.add_argument("--protocols", nargs="+", default=["linear", "knn"], choices=PROTOCOLS)
    parser.add_argument("--k", type=int, nargs="+", default=[1], help="kNN neighbours (default: 1, as the release)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1], help="label fractions of `semi`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="seeds: linear-probe initialisation, label subset, fine-tuning run (and random init)")
    parser.add_argument("--finetune-config", default=None,
                        help=f"training config of `semi` / `finetune` (default: configs/{DEFAULT_FINETUNE})")
    parser.add_argument("--out", default=None, help="output folder (default: <checkpoint dir>/probe-<dataset>)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides of the fine-tuning config")


def run(args: argparse.Namespace) -> int:
    probe(args.checkpoint, args.random_init, args.data, args.protocols, args.k, args.fractions, args.seeds,
          args.finetune_config, args.out, args.overrides)
    return 0
