"""The multimodal-LLM teacher through transformers: one canvas image per video, P prompts, greedy answers as text.

Any chat vision-language model that ``AutoProcessor`` + ``AutoModelForImageTextToText`` load works (Qwen2-VL,
Qwen2.5-VL, LLaVA, ...). Each prompt becomes one user turn ``[image, text]`` (after an optional system turn) through
the processor's own chat template; the templated prompts are built once. Generation is greedy, left-padded and
batched over (sample, prompt) pairs, ``runtime.llm_batch_size`` sequences per ``generate`` call.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from teachers.config import LLMConfig, expand_prompts

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def chat_text(processor, prompt: str, system_prompt: str | None = None) -> str:
    """One prompt as the model's chat template writes it: [system turn], user turn [image, prompt], assistant cue."""
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]})
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


class LLMTeacher:
    """A vision-language model that answers the configured prompts about one image per sample."""

    def __init__(self, config: LLMConfig, device: torch.device | str = "cpu", batch_size: int = 16):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.config = config
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.prompts = expand_prompts(config)
        from teachers.adapters import has_processor, load_language_adapter

        tuned_processor = bool(config.adapter) and has_processor(config.adapter)
        self.processor = (AutoProcessor.from_pretrained(config.adapter) if tuned_processor
                          else AutoProcessor.from_pretrained(config.model, revision=config.revision))
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            raise ValueError(f"llm.model {config.model}: the tokenizer has no pad token; batched generation needs one")
        model = AutoModelForImageTextToText.from_pretrained(config.model, revision=config.revision,
                                                            dtype=TORCH_DTYPES[config.dtype])
        if config.adapter:
            model = load_language_adapter(model, config.adapter, len(self.tokenizer))
        self.model = model.to(self.device).eval()
        self.templated = [chat_text(self.processor, p, config.system_prompt) for p in self.prompts]

    @torch.inference_mode()
    def answer(self, images: list[np.ndarray]) -> list[list[str]]:
        """Canvases (H, W, 3) uint8, one per sample -> for each sample its P answers, in prompt order."""
        pairs = [(i, p) for i in range(len(images)) for p in range(len(self.prompts))]
        pil = [Image.fromarray(im) for im in images]
        flat: list[str] = []
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start:start + self.batch_size]
            inputs = self.processor(text=[self.templated[p] for _, p in batch], images=[pil[i] for i, _ in batch],
                                    padding=True, return_tensors="pt").to(self.device, dtype=self.model.dtype)
            out = self.model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False,
                                      num_beams=1, pad_token_id=self.tokenizer.pad_token_id)
            new_tokens = out[:, inputs["input_ids"].shape[1]:]
            flat.extend(t.strip() for t in self.processor.batch_decode(new_tokens, skip_special_tokens=True))
        p = len(self.prompts)
        return [flat[i * p:(i + 1) * p] for i in range(len(images))]
