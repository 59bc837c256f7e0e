"""Shared fixtures: a tiny BPE tokenizer and tiny random Llama/Mistral/Qwen2 models, built offline."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

WORDS = "the a cat dog sun moon river tree stone blue red green quick slow happy small big old new".split()


def generated_sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "." for _ in range(count)]


def make_conversations(count: int, seed: int = 0) -> list[dict]:
    """Tiny dialogues; the assistant repeats the user's words backwards (learnable, checkable)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 5))]
        messages = [
            {"role": "user", "content": "reverse: " + " ".join(words)},
            {"role": "assistant", "content": " ".join(reversed(words))},
        ]
        if rng.random() < 0.3:
            messages.insert(0, {"role": "system", "content": "You are terse."})
        rows.append({"messages": messages})
    return rows


def make_preferences(count: int, seed: int = 0) -> list[dict]:
    rows = []
    for row in make_conversations(count, seed):
        *prompt, answer = row["messages"]
        wrong = " ".join(answer["content"].split()[::-1]) + " the"
        rows.append({"prompt": prompt, "chosen": [answer], "rejected": [{"role": "assistant", "content": wrong}]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="session")
def tiny_corpus() -> list[str]:
    texts = generated_sentences(400)
    for row in make_conversations(200):
        texts += [m["content"] for m in row["messages"]]
    return texts + ["<|user|>\n<|assistant|>\n<|system|>\n reverse: "]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_corpus) -> dict[str, Path]:
    """Paths to saved tiny models, one per architecture, sharing one tokenizer."""
    from westwind.tiny import build_model, build_tokenizer

    root = tmp_path_factory.mktemp("tiny-models")
    tokenizer = build_tokenizer(tiny_corpus, vocab_size=400)
    paths = {}
    for architecture in ("llama", "mistral", "qwen2"):
        out = root / architecture
        tokenizer.save_pretrained(out)
        build_model(architecture, tokenizer, hidden_size=32, num_layers=2, num_heads=4).save_pretrained(out)
        paths[architecture] = out
    return paths


@pytest.fixture(scope="session")
def tiny_model(tiny_models) -> Path:
    return tiny_models["llama"]


@pytest.fixture
def sft_jsonl(tmp_path) -> Path:
    return write_jsonl(tmp_path / "data" / "sft.jsonl", make_conversations(32))


@pytest.fixture
def dpo_jsonl(tmp_path) -> Path:
    return write_jsonl(tmp_path / "data" / "dpo.jsonl", make_preferences(32))


def shared_file(relative: str) -> Path:
    """A file from ../shared; skips (saying why) when the checkout has no ../shared beside it."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"../shared is absent (a user's clone): {path} not found")
    return path
