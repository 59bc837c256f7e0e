"""Shared fixtures: a tiny BPE tokenizer and tiny random Llama/Mistral/Qwen2 models, built offline."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sun",
    "moon",
    "river",
    "tree",
    "stone",
    "blue",
    "red",
    "green",
    "quick",
    "slow",
    "happy",
    "small",
    "big",
    "old",
    "new",
]


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
        rows.append(
            {"prompt": prompt, "chosen": [answer], "rejected": [{"role": "assistant", "content": wrong}]}
        )
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
    from westwind.demo.tiny import build_model, build_tokenizer

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


def tiny_recipe(tmp_path: Path, model_dir: Path, sft_data: Path, dpo_data: Path, **sections) -> dict:
    """A small valid recipe as a dict; `sections` (e.g. sft={...}) update the defaults."""
    recipe = {
        "output_dir": str(tmp_path / "out"),
        "model": {"model_name_or_path": str(model_dir), "dtype": "float32", "chat_template": "zephyr"},
        "sft": {
            "datasets": [{"path": str(sft_data)}],
            "max_steps": 4,
            "per_device_train_batch_size": 8,
            "learning_rate": 3e-3,
            "bf16": False,
            "activation_checkpointing": False,
            "logging_steps": 1,
            "max_length": 64,
            "save_steps": 1000,
            "dataloader_num_workers": 0,
        },
        "dpo": {
            "datasets": [{"path": str(dpo_data)}],
            "max_steps": 3,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-4,
            "bf16": False,
            "activation_checkpointing": False,
            "logging_steps": 1,
            "max_length": 64,
            "beta": 0.1,
        },
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(recipe.get(section), dict):
            recipe[section].update(values)
        else:
            recipe[section] = values
    return recipe


def write_recipe(path: Path, recipe: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def recipe_file(tmp_path, tiny_model, sft_jsonl, dpo_jsonl) -> Path:
    return write_recipe(tmp_path / "recipe.yaml", tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl))


def wait_for_records(path: Path, count: int, process: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until the journal at `path` holds `count` records (to kill a stage mid-run); fail if the process
    exits first or the records do not come in time."""
    from westwind.io import read_jsonl

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the stage exited early ({process.returncode}):\n{process.stdout.read()[-3000:]}")
        if path.exists() and len(read_jsonl(path)) >= count:
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no {count} records in {path} within {timeout}s")
