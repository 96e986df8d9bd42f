"""Building the co-learning heads of a training run: :func:`build_colearner` turns the ``colearn`` section of a
training config into a :class:`CoLearner` (FAM, FRM, the open-vocabulary projection, the cross-modal variants M-Mixer
and 3D deformable) and wraps the training split so its items carry the cached teacher features (and, with
``colearn.fam.source: online``, the decoded frames the CLIP tower embeds at each step, :mod:`mmcl.colearn.online`).
Before any head is built, a linear probe checks that the cached features the heads read tell the classes apart
(``colearn.teacher.check``, :func:`check_teacher`). The deployable model is the backbone alone, or, with a
cross-modal variant, the backbone plus that variant's skeleton-only path (:mod:`mmcl.models.crossmodal`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import sys

import torch
from torch import nn
from torch.utils.data import Dataset

from mmcl.colearn.config import ColearnConfig
from mmcl.colearn.crossmodal import PATCH_KEY
from mmcl.colearn.data import TeacherFeatures
from mmcl.colearn.deformable import DeformableHead
from mmcl.colearn.fam import FAM
from mmcl.colearn.frm import FRM
from mmcl.colearn.mmixer import MMixerHead
from mmcl.colearn.online import PIXELS_KEY, OnlineVisual, TeacherFrames, build_online_visual
from mmcl.colearn.openvocab import OpenVocabHead
from mmcl.errors import ConfigError


class CoLearner(nn.Module):
    """The training-time heads; ``forward(backbone_outputs, batch)`` -> {loss name: weighted loss}. ``online``: the
    CLIP image tower that embeds the batch's frames into its ``visual`` features first (online FAM), or None."""

    def __init__(self, heads: dict[str, nn.Module], online: OnlineVisual | None = None):
        super().__init__()
        self.heads = nn.ModuleDict(heads)
        self.online = online

    def forward(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        if self.online is not None:
            batch = {**batch, "visual": self.online(batch[PIXELS_KEY])}
        losses: dict[str, torch.Tensor] = {}
        for head in self.heads.values():
            losses.update(head(out, batch))
        return losses

    def deployable(self, backbone: nn.Module) -> nn.Module:
        """The skeleton-only model to checkpoint: the backbone, unless a head trains a skeleton-only path of its own."""
        paths = [name for name, head in self.heads.items() if hasattr(head, "deployable")]
        if len(paths) > 1:
            raise ValueError(f"heads {paths} each define a skeleton-only path; enable one of them")
        return self.heads[paths[0]].deployable(backbone) if paths else backbone


def teacher_cache_dir(cfg: ColearnConfig, dataset_name: str) -> Path:
    """The cache directory named by ``colearn.teacher``: explicit, or derived from the teacher config's hash."""
    if cfg.teacher.cache:
        return Path(cfg.teacher.cache)
    if not cfg.teacher.config:
        raise ValueError("co-learning needs teacher features: set colearn.teacher.config (a teacher config name or "
                         "YAML, as given to `mmcl precompute`) or colearn.teacher.cache (a cache directory)")
    from teachers.cache import resolve_cache_dir
    from teachers.config import load_config

    return resolve_cache_dir(load_config(cfg.teacher.config), dataset_name)


def check_dim(expected: int, found: int, key: str, cache: Path) -> None:
    """A configured feature size (0: any) must be the cache's."""
    if expected and expected != found:
        raise ValueError(f"{key} is {expected} but the teacher cache {cache} holds features of size {found}")


def class_text_embeddings(cache, data, kind: str = "description") -> torch.Tensor:
    """The cache's class-name or class-description embeddings (C, D_t), checked against the dataset's classes."""
    classes = cache.class_embeddings()
    key = f"{kind}_embeddings"
    if key not in classes:
        raise ValueError(f"the teacher cache {cache.path} holds no class {kind}s; precompute it with "
                         f"--class-descriptions")
    if list(classes["names"]) != data.class_names:
        raise ValueError(f"the class embeddings in {cache.path} are for other classes than {data.root}'s")
    return torch.from_numpy(classes[key])


def _fam(cfg: ColearnConfig, backbone: nn.Module, data, features: TeacherFeatures) -> nn.Module:
    where = features.cache.path if cfg.fam.source == "cache" else f"the CLIP tower of {cfg.teacher.config}"
    check_dim(cfg.fam.visual_dim, features.visual_shape[1], "colearn.fam.visual_dim", where)
    return FAM(cfg.fam, features.visual_shape[1], backbone.feature_dim)


def _frm(cfg: ColearnConfig, backbone: nn.Module, data, features: TeacherFeatures) -> nn.Module:
    check_dim(cfg.frm.text_dim, features.text_shape[1], "colearn.frm.text_dim", features.cache.path)
    class_text = class_text_embeddings(features.cache, data) if cfg.frm.mode == "soft_label" else None
    return FRM(cfg.frm, features.text_shape[1], data.num_classes, class_text)


def _openvocab(cfg: ColearnConfig, backbone: nn.Module, data, features: TeacherFeatures) -> nn.Module:
    if cfg.openvocab.target not in ("description", "name"):
        raise ValueError(f"colearn.openvocab.target must be 'description' or 'name', got {cfg.openvocab.target!r}")
    class_text = class_text_embeddings(features.cache, data, cfg.openvocab.target)
    return OpenVocabHead(cfg.openvocab, backbone.feature_dim, class_text.shape[1], class_text)


def _mmixer(cfg: ColearnConfig, backbone: nn.Module, data, features: TeacherFeatures) -> nn.Module:
    check_dim(cfg.mmixer.visual_dim, features.visual_shape[1], "colearn.mmixer.visual_dim", features.cache.path)
    return MMixerHead(cfg.mmixer, data.num_classes, backbone.feature_dim, *features.visual_shape)


def _deformable(cfg: ColearnConfig, backbone: nn.Module, data, features: TeacherFeatures) -> nn.Module:
    check_dim(cfg.deformable.visual_dim, features.visual_shape[1], "colearn.deformable.visual_dim",
              features.cache.path)
    if cfg.deformable.patch_dim and PATCH_KEY not in features[0]:
        raise ValueError(f"colearn.deformable.patch_dim is {cfg.deformable.patch_dim} but the training items carry "
                         f"no patch tokens (the teacher cache {features.cache.path} holds per-frame features only); "
                         f"set it to 0")
    return DeformableHead(cfg.deformable, data.num_classes, backbone.feature_dim, *features.visual_shape,
                          backbone.layout_name)


# Config section -> builder of its head: (colearn config, backbone, prepared data, training features) -> module.
HEAD_BUILDERS: dict[str, Callable[..., nn.Module]] = {"fam": _fam, "frm": _frm, "openvocab": _openvocab,
                                                     "mmixer": _mmixer, "deformable": _deformable}


def check_teacher(cfg: ColearnConfig, cache, data, kinds: tuple[str, ...]) -> dict:
    """``colearn.teacher.check``: probe the cache's ``kinds`` features (training split -> validation split, never the
    test split); features at chance are reported loudly (``warn``) or stop the run (``refuse``). Returns the verdict
    per kind (empty when ``ignore``)."""
    mode = cfg.teacher.check
    if mode not in ("ignore", "warn", "refuse"):
        raise ConfigError(f"colearn.teacher.check must be ignore, warn or refuse, got {mode!r}")
    if mode == "ignore" or not kinds:
        return {}
    from teachers.probe import chance_check

    verdict = chance_check(cache, data, kinds, cfg.teacher.check_alpha)
    for kind, v in verdict.items():
        if not v["at_chance"]:
            continue
        nb = v["neighbours_train"]
        identity = (f"; on the training split a sample's nearest neighbour shares its performer {100 * nb['performer']['nearest_shares']:.0f}% "
                    f"of the time, its class {100 * nb['class']['nearest_shares']:.0f}%" if "performer" in nb else "")
        message = (f"the {kind} features of the teacher cache {cache.path} are at chance: a linear probe scores "
                   f"{100 * v['val_top1']:.1f}% on the validation split ({v['val_samples']} samples; chance "
                   f"{100 * v['chance']:.1f}%, p = {v['p_above_chance']:.2g}){identity}. Co-learning with them is "
                   f"expected to cost accuracy, not add it: tune the teacher (mmcl tune-teacher) or use another; "
                   f"colearn.teacher.check=ignore trains anyway")
        if mode == "refuse":
            raise ConfigError(message)
        print(f"\n{'!' * 100}\nWARNING: {message}\n{'!' * 100}\n", file=sys.stderr, flush=True)
    return verdict


def _videos(cfg: ColearnConfig, data) -> Path:
    if cfg.teacher.videos:
        return Path(cfg.teacher.videos)
    if data.info.dataset == "synthetic":
        return Path(data.info.source).parent / "videos"  # the generated set keeps videos/ beside skeletons/
    raise ConfigError("colearn.fam.source online reads the training videos: set colearn.teacher.videos")


def build_colearner(cfg: ColearnConfig, backbone: nn.Module, data, train_set: Dataset) -> tuple[CoLearner | None, Dataset]:
    """The co-learning heads of ``cfg`` and the training set joined with what they read (unchanged if none): cached
    teacher features, and for online FAM the decoded frames."""
    if not cfg.enabled:
        return None, train_set
    if cfg.fam.source not in ("cache", "online"):
        raise ConfigError(f"colearn.fam.source must be cache or online, got {cfg.fam.source!r}")
    online = cfg.fam.enabled and cfg.fam.source == "online"
    visual_kinds = cfg.mmixer.enabled or cfg.deformable.enabled or (cfg.fam.enabled and not online)
    text_kinds = cfg.frm.enabled or cfg.openvocab.enabled
    features, tower = train_set, None
    if visual_kinds or text_kinds:
        from teachers.cache import open_cache

        cache = open_cache(teacher_cache_dir(cfg, data.info.dataset))
        features = TeacherFeatures(train_set, cache, cfg.teacher.missing)
        check_teacher(cfg, cache, data, ("visual",) * bool(visual_kinds) + ("text",) * bool(text_kinds))
    if online:
        if not cfg.teacher.config:
            raise ConfigError("colearn.fam.source online runs the CLIP tower of colearn.teacher.config: set it")
        from teachers.config import load_config

        teacher = load_config(cfg.teacher.config)
        tower, preprocess = build_online_visual(teacher, cfg.fam.tower, cfg.fam.lora_rank, cfg.fam.lora_alpha,
                                                cfg.fam.lora_targets or teacher.tune.visual.lora.target_modules)
        features = TeacherFrames(features, data, list(train_set.indices), str(_videos(cfg, data)), teacher,
                                 preprocess, tower_dim=tower.dim)
    heads = {name: build(cfg, backbone, data, features) for name, build in HEAD_BUILDERS.items()
             if getattr(cfg, name).enabled}
    return CoLearner(heads, tower), features
