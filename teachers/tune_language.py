"""Tuning the vision-language teacher (``mmcl tune-teacher``, part ``language``): peft LoRA from answers.

Each example is one (canvas, prompt, answer) of a training sample: the canvas precompute gives the model, the prompt
through the same chat template (:func:`teachers.llm.chat_text`), and the answer followed by the end-of-turn token;
the loss is next-token cross-entropy on the answer's tokens only. A word-level tokenizer that cannot spell the answers
(the tiny model's) gets the missing words as new tokens (:func:`extend_vocabulary`); their embedding and output rows
are then trained in full and saved with the adapter, with the extended processor beside it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from mmcl.config import to_yaml
from mmcl.errors import ConfigError
from teachers.adapters import lora_config
from teachers.config import TeacherConfig
from teachers.fit import fingerprint, fit, summary, trainable
from teachers.llm import TORCH_DTYPES, chat_text

if TYPE_CHECKING:
    from teachers.tune import DecodedInputs


def extend_vocabulary(tokenizer, texts: list[str]) -> list[str]:
    """Add the words of ``texts`` that ``tokenizer`` maps to its unknown token (a word-level tokenizer's gaps) as new
    tokens; returns them. A byte-level tokenizer (no unknown token) is left as it is."""
    from tokenizers import AddedToken

    unk = tokenizer.unk_token_id
    if unk is None:
        return []
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    missing: dict[str, None] = {}
    for text in texts:
        for piece, _ in (pre.pre_tokenize_str(text) if pre is not None else [(w, None) for w in text.split()]):
            if piece not in missing and unk in tokenizer(piece, add_special_tokens=False)["input_ids"]:
                missing[piece] = None
    words = list(missing)
    if words:
        tokenizer.add_tokens([AddedToken(w, single_word=w.isalnum(), normalized=False) for w in words])
    return words


class LanguageExamples(torch.utils.data.Dataset):
    """(canvas, prompt, answer) examples -> processor inputs with labels on the answer tokens only.

    A sample's image tensors are computed once (kept when the inputs are kept in memory), and a prompt's token ids
    once per image geometry: the processor's expansion of the image placeholder depends on the image grid alone.
    """

    def __init__(self, inputs: DecodedInputs, answers: dict[str, dict[str, str]], processor,
                 system_prompt: str | None = None):
        self.inputs, self.processor, self.system_prompt = inputs, processor, system_prompt
        self.templated: dict[str, str] = {}
        self.images: dict[int, dict[str, torch.Tensor]] = {}
        self.prompt_tokens: dict[tuple, dict[str, torch.Tensor]] = {}
        data = inputs.inputs.data
        self.examples: list[tuple[int, str, str]] = []
        for j, pos in enumerate(inputs.positions):
            name = data.names[inputs.inputs.indices[pos]]
            for prompt, answer in answers.get(name, {}).items():
                self.examples.append((j, prompt, answer))
        self.eos = processor.tokenizer.eos_token_id

    def __len__(self) -> int:
        return len(self.examples)

    def template(self, prompt: str) -> str:
        if prompt not in self.templated:
            self.templated[prompt] = chat_text(self.processor, prompt, self.system_prompt)
        return self.templated[prompt]

    def _image(self, j: int) -> dict[str, torch.Tensor]:
        from PIL import Image

        if j in self.images:
            return self.images[j]
        image = dict(self.processor.image_processor(images=[Image.fromarray(self.inputs[j][0].canvas)],
                                                    return_tensors="pt"))
        if self.inputs.keep:
            self.images[j] = image
        return image

    def _prompt(self, prompt: str, j: int, image: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from PIL import Image

        geometry = tuple((k, tuple(v.shape), tuple(v.flatten().tolist()) if k != "pixel_values" else None)
                         for k, v in sorted(image.items()))
        key = (prompt, geometry)
        if key not in self.prompt_tokens:
            enc = self.processor(text=[self.template(prompt)], images=[Image.fromarray(self.inputs[j][0].canvas)],
                                 return_tensors="pt")
            self.prompt_tokens[key] = {k: v[0] for k, v in enc.items() if k not in image}
        return self.prompt_tokens[key]

    def __getitem__(self, i: int) -> dict:
        j, prompt, answer = self.examples[i]
        image = self._image(j)
        tokens = self._prompt(prompt, j, image)
        answer_ids = torch.tensor(self.processor.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.eos])
        prompt_len = len(tokens["input_ids"])
        out = dict(image)
        out["input_ids"] = torch.cat([tokens["input_ids"], answer_ids])
        out["labels"] = torch.cat([torch.full((prompt_len,), -100), answer_ids])
        for key, value in tokens.items():
            if key != "input_ids":  # per-token side inputs (attention mask, token types), extended over the answer
                fill = 1 if key == "attention_mask" else 0
                out[key] = torch.cat([value, torch.full((len(answer_ids),), fill, dtype=value.dtype)])
        return out


def collate_language(items: list[dict], pad_id: int) -> dict:
    """Right-pad the per-token tensors of a batch; concatenate the image tensors along their first dimension."""
    length = max(len(it["input_ids"]) for it in items)
    batch: dict[str, torch.Tensor] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if values[0].dim() == 1:
            fill = {"input_ids": pad_id, "labels": -100}.get(key, 0)
            batch[key] = torch.stack([F.pad(v, (0, length - len(v)), value=fill) for v in values])
        else:
            batch[key] = torch.cat(values)
    return batch


def tune_language(config: TeacherConfig, inputs: DecodedInputs, answers: dict[str, dict[str, str]], out: Path,
                  target: Path, device: torch.device, progress: bool) -> dict:
    """LoRA-tune the configured vision-language model (its base, without ``llm.adapter``) on the answers of the
    training samples in ``inputs``; ``out``: where the state goes, ``target``: the adapter directory."""
    tune = config.tune
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    lang = tune.language
    torch.manual_seed(tune.seed)
    processor = AutoProcessor.from_pretrained(config.llm.model, revision=config.llm.revision)
    model = AutoModelForImageTextToText.from_pretrained(config.llm.model, revision=config.llm.revision,
                                                        dtype=TORCH_DTYPES[config.llm.dtype])
    for key, value in lang.image_processor.items():
        if not hasattr(processor.image_processor, key):
            raise ConfigError(f"tune.language.image_processor.{key}: the image processor of {config.llm.model} has "
                              f"no such setting")
        setattr(processor.image_processor, key, value)
    examples_answers = sorted({a for prompts in answers.values() for a in prompts.values()})
    added = extend_vocabulary(processor.tokenizer, examples_answers)
    modules = list(lang.modules_to_save)
    if added:
        model.resize_token_embeddings(len(processor.tokenizer))
        modules += ["embed_tokens", "lm_head"]
    model = get_peft_model(model, lora_config(lang.lora, modules_to_save=modules or None)).to(device)
    dataset = LanguageExamples(inputs, answers, processor, config.llm.system_prompt)
    if not len(dataset):
        raise ConfigError("no answer in the answers file belongs to a training sample with a decoded video")
    key = fingerprint(part="language", teacher=to_yaml(config), tune=lang, seed=tune.seed,
                      names=inputs.names_digest, examples=len(dataset), added=added)
    pad = processor.tokenizer.pad_token_id

    def step(batch):
        batch = {k: v.to(device) for k, v in batch.items()}
        return model(**batch).loss

    state = fit("language", model, step, dataset, lang.batch_size, lang.epochs, lang.lr, lang.weight_decay,
                tune.seed, out / "state" / "language.pt", key,
                collate=lambda items: collate_language(items, pad),
                num_workers=0 if inputs.keep else config.runtime.num_workers,  # kept inputs: cached in this process
                progress=progress)
    model.save_pretrained(str(target))
    if added or lang.image_processor:
        processor.save_pretrained(str(target))
    check = check_answers(model, processor, dataset, lang.check_samples, device)
    num_trainable = sum(p.numel() for p in trainable(model).values())
    return {"examples": len(dataset), "added_tokens": added, "trainable_parameters": num_trainable,
            "answer_check": check, **summary(state)}


@torch.no_grad()
def check_answers(model, processor, dataset: LanguageExamples, samples: int, device: torch.device) -> dict:
    """Greedy answers of the tuned model for the first ``samples`` training samples against the file's answers:
    the share of exact matches (word by word, case and spacing ignored) and a few examples."""
    from PIL import Image

    model.eval()
    chosen = sorted({j for j, _, _ in dataset.examples})[:samples]
    rows = [e for e in dataset.examples if e[0] in set(chosen)]
    tokenizer = processor.tokenizer
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    matches, shown = 0, []
    for s in range(0, len(rows), 16):
        part = rows[s:s + 16]
        enc = processor(text=[dataset.template(p) for _, p, _ in part],
                        images=[Image.fromarray(dataset.inputs[j][0].canvas) for j, _, _ in part],
                        padding=True, return_tensors="pt").to(device)
        longest = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for _, _, a in part) + 2
        gen = model.generate(**enc, max_new_tokens=longest, do_sample=False, num_beams=1,
                             pad_token_id=tokenizer.pad_token_id)
        texts = processor.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for (_, prompt, answer), text in zip(part, texts):
            ok = _words(text) == _words(answer)
            matches += ok
            if len(shown) < 8:
                shown.append({"prompt": prompt, "answer": answer, "generated": text.strip()})
    tokenizer.padding_side = side
    return {"examples": len(rows), "exact": matches / max(len(rows), 1), "shown": shown}


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())
