"""The transformers backend: local batched generation with per-sequence seeds. torch, transformers and
westwind.training.models are imported inside the methods: heavy, loaded only when a model runs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

from westwind.aift.config import TransformersOptions
from westwind.generation.base import (
    ChatRequest,
    Completion,
    Result,
    as_list,
    chat_prompt_ids,
    cut_at_stop,
    free_accelerator_memory,
)
from westwind.seeding import stable_seed
from westwind.training.chat_templates import render_prompt


class SeededSampler:
    """Sampling with one random stream per sequence (Gumbel-max: argmax of logits/T + Gumbel noise is a draw
    from softmax(logits/T)), so a completion depends on its own seed only, not on the batch it lands in:
    resumed, sharded and differently batched runs produce the same samples."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        import torch

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids, scores):
        import torch
        from transformers import TopPLogitsWarper

        scores = scores.float() / self.temperature
        if self.top_p < 1:
            scores = TopPLogitsWarper(self.top_p)(input_ids, scores)
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
        return scores + gumbel.to(scores.device)


class TransformersBackend:
    """Local batched generation: left padding, length-bucketed batches, the chat template, eos/stop strings."""

    name = "transformers"

    def __init__(self, options: TransformersOptions, path: str, model_args):
        import torch

        from westwind.training.models import load_causal_lm, load_tokenizer

        self.device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = options.batch_size
        self.tokenizer = load_tokenizer(path, model_args)
        self.tokenizer.padding_side = "left"
        self.model = load_causal_lm(path, model_args, self.tokenizer, quantize=False).to(self.device).eval()
        eos = {self.tokenizer.eos_token_id, *as_list(self.model.generation_config.eos_token_id)}
        self.eos_token_ids = sorted(i for i in eos if i is not None)

    def run(self, requests: list[ChatRequest]) -> Iterator[Result]:
        for batch in self.batches(requests):
            for request, completions in zip(batch, self.generate_batch(batch), strict=True):
                yield Result(request, completions)

    def batches(self, requests: list[ChatRequest]) -> list[list[ChatRequest]]:
        """Requests with equal sampling settings, sorted by prompt length, cut to `batch_size` sequences each."""
        groups: dict[str, list[tuple[int, ChatRequest]]] = {}
        for request in requests:
            key = json.dumps([dataclasses.asdict(request.sampling), request.n])
            groups.setdefault(key, []).append(
                (len(chat_prompt_ids(self.tokenizer, request.messages)), request)
            )
        batches = []
        for members in groups.values():
            members.sort(key=lambda item: item[0])
            per_batch = max(1, self.batch_size // members[0][1].n)
            batches += [[r for _, r in members[i : i + per_batch]] for i in range(0, len(members), per_batch)]
        return batches

    def generate_batch(self, batch: list[ChatRequest]) -> list[list[Completion]]:
        import torch
        from transformers import LogitsProcessorList

        sampling, n = batch[0].sampling, batch[0].n
        rows = [(request, sample) for request in batch for sample in range(n)]
        texts = [render_prompt(self.tokenizer, r.messages) for r, _ in rows]
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "eos_token_id": self.eos_token_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
            # Sampling happens in SeededSampler; generate() itself only takes the argmax.
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
        if sampling.temperature > 0:
            seeds = [stable_seed(request.seed, sample) for request, sample in rows]
            sampler = SeededSampler(seeds, sampling.temperature, sampling.top_p)
            kwargs["logits_processor"] = LogitsProcessorList([sampler])
        if sampling.stop:
            kwargs.update(stop_strings=sampling.stop, tokenizer=self.tokenizer)
        with torch.no_grad():
            output = self.model.generate(**inputs, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        completions = [self.to_completion(tokens, sampling.stop) for tokens in new_tokens]
        return [completions[i * n : (i + 1) * n] for i in range(len(batch))]

    def to_completion(self, tokens, stop: list[str]) -> Completion:
        ids = tokens.tolist()
        ended = any(i in self.eos_token_ids for i in ids)
        text, stopped = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), stop)
        return Completion(text.strip(), "stop" if ended or stopped else "length")

    def close(self) -> None:
        self.model = None
        free_accelerator_memory()
