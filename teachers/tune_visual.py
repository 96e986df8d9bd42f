"""Tuning the CLIP image tower (``mmcl tune-teacher``, part ``visual``).

The tower sees the person-cropped frames precompute feeds it; the embeddings of a sample's k frames (L2-normalised
when the teacher normalises them) are mean-pooled, as FAM pools them (or, with ``per_frame``, each frame is scored on
its own with the sample's label: k times the examples, and a held object is learnt from every frame that shows it),
and scored by cosine similarity to one prototype per class at CLIP's temperature: learned prototypes
(``objective: classify``, a classification head on the unit sphere) or, CLIP-style, the frozen text tower's
embeddings of the class descriptions (``objective: clip``). ``method: lora`` trains peft LoRA adapters on
``lora.target_modules`` (open_clip's ``c_fc`` / ``c_proj`` MLP layers and ``attn`` attention by default); ``full``
trains every weight of the tower. The head is a training device only: the teacher keeps the tower. ``max_shift``
translates each training sample's frames by a random offset of up to that many pixels (wrapping around), so that
the tower learns what is in the crop rather than where.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from mmcl.config import to_yaml
from mmcl.errors import ConfigError
from teachers.adapters import lora_config, save_full_visual
from teachers.config import TeacherConfig
from teachers.fit import fingerprint, fit, summary, trainable

if TYPE_CHECKING:
    from teachers.tune import DecodedInputs


class VisualObjective(nn.Module):
    """Mean-pooled frame embeddings -> class logits: cosine similarity to one prototype per class, times CLIP's own
    logit scale. ``classify``: the prototypes are learned (a linear head on the unit sphere); ``clip``: they are the
    frozen text embeddings of the class descriptions. Either way the angles the cache stores, and FAM aligns with,
    are what is trained (a plain linear head on unit-norm features learns mostly its own scale)."""

    def __init__(self, objective: str, dim: int, num_classes: int, class_text: torch.Tensor | None = None,
                 logit_scale: float = 100.0):
        super().__init__()
        self.objective = objective
        self.scale = logit_scale
        if objective == "classify":
            self.prototypes = nn.Parameter(torch.randn(num_classes, dim) / dim ** 0.5)
        else:
            self.register_buffer("prototypes", class_text.float(), persistent=False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(pooled, dim=-1) @ F.normalize(self.prototypes, dim=-1).T


class VisualTuner(nn.Module):
    """The CLIP image tower (LoRA-wrapped or fully trainable) and the objective, as one trainable module."""

    def __init__(self, tower: nn.Module, objective: VisualObjective, normalize: bool, per_frame: bool = False):
        super().__init__()
        self.tower = tower
        self.objective = objective
        self.normalize = normalize
        self.per_frame = per_frame

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (N, k, 3, S, S) -> logits (N, C), or (N, k, C) with ``per_frame``."""
        n, k = pixels.shape[:2]
        emb = self.tower(pixels.flatten(0, 1)).float()
        if self.normalize:
            emb = F.normalize(emb, dim=-1)
        if self.per_frame:
            return self.objective(emb).view(n, k, -1)
        return self.objective(emb.view(n, k, -1).mean(1))


def random_shift(pixels: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Each sample's frames (N, k, 3, S, S) translated together by a random (dy, dx) in [-max_shift, max_shift]
    (torch's global random state, which :func:`teachers.fit.fit` seeds from (seed, epoch): a resumed run repeats it)."""
    if max_shift <= 0:
        return pixels
    offsets = torch.randint(-max_shift, max_shift + 1, (len(pixels), 2))
    return torch.stack([torch.roll(p, (int(dy), int(dx)), (-2, -1)) for p, (dy, dx) in zip(pixels, offsets)])


def tune_visual(config: TeacherConfig, clip, inputs: DecodedInputs, num_classes: int, out: Path, target: Path,
                class_descriptions: list[str] | None, device: torch.device, progress: bool) -> dict:
    """Tune the image tower of the loaded ``clip`` teacher (:class:`teachers.clip.ClipTeacher`) on ``inputs``;
    ``out``: where the state goes, ``target``: the adapter directory."""
    tune = config.tune
    v = tune.visual
    torch.manual_seed(tune.seed)
    tower = clip.model.visual
    if v.method == "lora":
        from peft import get_peft_model

        tower = get_peft_model(tower, lora_config(v.lora))
    else:
        tower.requires_grad_(True)
    class_text = None
    if v.objective == "clip":
        if class_descriptions is None:
            raise ConfigError("tune.visual.objective clip needs class descriptions: pass --class-descriptions (a "
                              "JSON list of {name, description}) or set classes.descriptions in the teacher config")
        class_text = clip.encode_text(class_descriptions).clone()  # out of inference mode: used in the graph
    scale = float(clip.model.logit_scale.exp()) if hasattr(clip.model, "logit_scale") else 100.0
    model = VisualTuner(tower, VisualObjective(v.objective, clip.dim, num_classes, class_text, scale),
                        config.clip.normalize, v.per_frame).to(device)
    key = fingerprint(part="visual", teacher=to_yaml(config), tune=v, seed=tune.seed, names=inputs.names_digest)

    def step(batch):
        pixels = random_shift(torch.stack([item.pixels for item, _ in batch]), v.max_shift).to(device)
        labels = torch.tensor([label for _, label in batch], device=device)
        logits = model(pixels)
        if v.per_frame:
            return F.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1]))
        return F.cross_entropy(logits, labels)

    state = fit("visual", model, step, inputs, v.batch_size, v.epochs, v.lr, v.weight_decay, tune.seed,
                out / "state" / "visual.pt", key, progress=progress)
    model.eval()
    with torch.no_grad():
        correct = 0
        for s in range(0, len(inputs), v.batch_size):
            batch = [inputs[j] for j in range(s, min(s + v.batch_size, len(inputs)))]
            logits = model(torch.stack([item.pixels for item, _ in batch]).to(device))
            logits = logits.mean(1) if v.per_frame else logits
            correct += int((logits.argmax(1).cpu() == torch.tensor([lab for _, lab in batch])).sum())
    if v.method == "lora":
        model.tower.save_pretrained(str(target))
    else:
        save_full_visual(model.tower, target)
    num_trainable = sum(p.numel() for p in trainable(model.tower).values())
    return {"method": v.method, "objective": v.objective, "trainable_parameters": num_trainable,
            "train_top1": correct / max(len(inputs), 1), **summary(state)}
