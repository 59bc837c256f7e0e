"""Shared pieces of the westwind benchmarks: tiny model and data, measured subprocesses, result files.

Every figure the benchmarks report is a ratio of two sides run back to back in one process tree on the
same machine, so the shared CPU's load moves both sides alike.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "self_instruct_seed_tasks.jsonl"
RESULTS = REPO / "benchmarks" / "results"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
    "PYTHONWARNINGS": "ignore",
    "OMP_NUM_THREADS": "1",  # the 2-core VM is shared: one thread per side keeps the ratio steadier
}

FILLER = [
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


def seed_pairs() -> list[tuple[str, str]]:
    """(user, assistant) pairs from the self-instruct seed tasks; generated ones if the file is absent."""
    pairs: list[tuple[str, str]] = []
    if SHARED_DATA.is_file():
        for line in SHARED_DATA.read_text().splitlines():
            task = json.loads(line)
            for instance in task["instances"]:
                user = task["instruction"] + (f"\n\n{instance['input']}" if instance["input"] else "")
                pairs.append((user, instance["output"]))
    if not pairs:
        rng = random.Random(0)
        for _ in range(200):
            words = lambda n: " ".join(rng.choice(FILLER) for _ in range(n))  # noqa: E731
            pairs.append((words(rng.randint(5, 40)), words(int(rng.paretovariate(1.2) * 20))))
    return pairs


def conversations(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Chats of 1-4 turns (geometric: most are one turn), so lengths are long-tailed like real dSFT data."""
    rng = random.Random(seed)
    pairs = seed_pairs()
    rows = []
    for _ in range(count):
        turns = 1
        while turns < 4 and rng.random() < 0.35:
            turns += 1
        messages = []
        for user, assistant in rng.sample(pairs, turns):
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        rows.append({"messages": messages})
    return rows


def preferences(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Prompt / chosen / rejected rows: the rejected answer is another task's answer."""
    rng = random.Random(seed)
    pairs = seed_pairs()
    rows = []
    for _ in range(count):
        (user, chosen), (_, rejected) = rng.sample(pairs, 2)
        rows.append(
            {
                "prompt": [{"role": "user", "content": user}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def build_tiny_model(out: Path, hidden_size: int = 128, num_layers: int = 4, vocab_size: int = 1024) -> Path:
    """A random-weight Llama (westwind.demo.tiny) with a BPE tokenizer trained on the benchmark texts."""
    from westwind.demo.tiny import build_model, build_tokenizer

    if (out / "config.json").is_file():
        return out
    texts = [text for pair in seed_pairs() for text in pair]
    tokenizer = build_tokenizer(texts, vocab_size=vocab_size)
    model = build_model("llama", tokenizer, hidden_size=hidden_size, num_layers=num_layers, num_heads=4)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out


@dataclass
class Measured:
    """One subprocess: exit status, output, wall time and its own peak resident memory."""

    returncode: int
    output: str
    wall_s: float
    peak_rss_mb: float


def run_measured(command: list[str], log: Path, env: dict[str, str] | None = None) -> Measured:
    """Run `command`; peak RSS is the child's own ru_maxrss from wait4 (not the cumulative RUSAGE_CHILDREN)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(command, env=env or ENV, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    output = log.read_text()
    if process.returncode != 0:
        print(output[-3000:], file=sys.stderr)
        raise RuntimeError(f"benchmark command failed ({process.returncode}): {' '.join(command)}")
    return Measured(process.returncode, output, wall, usage.ru_maxrss / 1024)  # ru_maxrss is KiB on Linux


def fresh_env(cache: Path) -> dict[str, str]:
    """ENV with an empty datasets cache: no run reuses another's tokenized data or TRL's precomputed reference
    log-probs (TRL stores those beside the dataset's cache files, so a second run would skip the precompute)."""
    return {**ENV, "HF_DATASETS_CACHE": str(cache / "datasets")}


def interleaved_rounds(
    sides: dict[str, list[str]], rounds: int, root: Path, measure: Callable[..., dict[str, float]]
) -> dict[str, list[dict[str, float]]]:
    """Every side once per round, in reversed order every other round (so neither side always runs first on a
    warm machine), each with fresh caches. `measure(command, log, env)` returns one run's numbers."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for round_index in range(rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for name in order:
            tag = f"r{round_index}-{list(sides).index(name)}"
            env = fresh_env(root / "cache" / tag)
            samples[name].append(measure(sides[name], root / "logs" / f"{tag}.log", env))
            print(f"  round {round_index + 1}: {name}: {samples[name][-1]}", flush=True)
    return samples


def logged_metric(output: str, name: str) -> float | None:
    """The last value of `name` in the Trainer's printed log dicts (`'name': 1.5` or `'name': '1.5'`)."""
    values = re.findall(rf"'{re.escape(name)}': '?([-+0-9.eE]+)'?", output)
    return float(values[-1]) if values else None


def save_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in header]] + [
        [f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def import_floor_mb(log: Path) -> float:
    """Peak RSS of a process that only imports torch + TRL's trainers: the part of every side's peak RSS
    that no setting can change. With a tiny model it is most of the total, so we also report RSS above it."""
    command = [
        sys.executable,
        "-c",
        "import torch, transformers, trl; from trl import SFTTrainer, DPOTrainer",
    ]
    return run_measured(command, log).peak_rss_mb
