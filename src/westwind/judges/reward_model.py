"""A local AutoModelForSequenceClassification; the score is its first logit for prompt + candidate.
torch, transformers and westwind.training.models are imported inside the methods: heavy, loaded only when used."""

from __future__ import annotations

import math
from collections.abc import Iterator

from westwind.judges.base import JudgeItem, Judgment, Rating


class RewardModelJudge:
    def __init__(self, path: str, model_args, device: str | None = None, batch_size: int = 8):
        import torch  # heavy: loaded only when a reward model judges
        from transformers import AutoModelForSequenceClassification

        from westwind.training.models import load_tokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(path, model_args)
        self.tokenizer.padding_side = "right"
        dtype = model_args.dtype or "auto"
        self.model = (
            AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype).to(self.device).eval()
        )
        self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def judge(self, items: list[JudgeItem]) -> Iterator[Judgment]:
        texts = [
            self.tokenizer.apply_chat_template(
                [*item.messages, {"role": "assistant", "content": candidate}], tokenize=False
            )
            for item in items
            for candidate in item.candidates
        ]
        scores = self.score(texts)
        position = 0
        for item in items:
            count = len(item.candidates)
            yield Judgment(item, [Rating(s) for s in scores[position : position + count]])
            position += count

    def score(self, texts: list[str]) -> list[float]:
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        scores = [math.nan] * len(texts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            inputs = self.tokenizer(
                [texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            with torch.no_grad():
                logits = self.model(**inputs).logits[:, 0].float().tolist()
            for i, value in zip(batch, logits, strict=True):
                scores[i] = value
        return scores

    def close(self) -> None:
        self.model = None
