"""Test-only helpers for the AIFT stage: deterministic verifiers, recipe writing, a tiny reward model."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def hash_score(prompt: Any, completion: str, reference: Any) -> float:
    """A deterministic 'verifier': a score in [0, 1) from the completion's text. Optionally slow, so a test
    can kill a run in the middle of judging (AIFT_TEST_JUDGE_DELAY seconds per candidate)."""
    time.sleep(float(os.environ.get("AIFT_TEST_JUDGE_DELAY", "0")))
    digest = hashlib.sha256(f"{prompt}|{completion}|{reference}".encode()).digest()
    return digest[0] / 256


def flaky_score(prompt: Any, completion: str, reference: Any) -> float:
    """Raises for prompts mentioning 'moon' until AIFT_TEST_FIXED is set: a failure a rerun recovers from."""
    if "moon" in str(prompt) and not os.environ.get("AIFT_TEST_FIXED"):
        raise RuntimeError("verifier backend unavailable")
    return hash_score(prompt, completion, reference)


def length_score(prompt: Any, completion: str, reference: Any) -> float:
    return float(len(completion))


def write_recipe(directory: Path, model: Path | str, aift: dict[str, Any], name: str = "recipe.yaml") -> Path:
    # The tiny tokenizer's own ChatML template ends turns with <|im_end|> while its EOS is </s> (like a Qwen base):
    # the template lint refuses that pairing, so the recipe names westwind's chatml, which makes <|im_end|> the EOS.
    model_section = {"model_name_or_path": str(model), "chat_template": "chatml"}
    recipe = {"output_dir": str(directory / "out"), "model": model_section, "aift": aift}
    path = directory / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def tiny_generator(model: Path | str, n: int = 2, max_new_tokens: int = 6, **extra: Any) -> dict[str, Any]:
    return {
        "model": str(model),
        "backend": "transformers",
        "n": n,
        "batch_size": 4,
        "device": "cpu",
        "sampling": {"max_new_tokens": max_new_tokens, "temperature": 1.0},
        **extra,
    }


def save_tiny_reward_model(tokenizer_dir: Path, out: Path) -> Path:
    """A random-weight LlamaForSequenceClassification (1 label) sharing the tiny model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class ScriptedBackend:
    """A stand-in judge backend: answers each request with `reply(messages)`, lazily (one result per step
    of the iteration, as a real backend yields them), and records what it was asked."""

    name = "scripted"

    def __init__(self, reply: Callable[[list[dict]], str]):
        self.reply = reply
        self.requests: list = []

    def run(self, requests) -> Iterator:
        from westwind.generation import Completion, Result

        for request in requests:
            self.requests.append(request)
            yield Result(request, [Completion(self.reply(request.messages))])

    def close(self) -> None:
        pass


def native_ratings(ratings: list, types: bool = False) -> str:
    """A reply in the rubric's own layout (UltraFeedback's `#### Output for Text N` blocks)."""
    blocks = []
    for index, rating in enumerate(ratings, 1):
        lines = [f"#### Output for Text {index}"]
        if types:
            lines += ["Type: 1, 2", f"Rationale: types of text {index}."]
        lines += [f"Rating: {rating}", f"Rationale: r{index}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
