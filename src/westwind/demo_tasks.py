"""Procedural tasks with checkable answers for the CPU demo, and the `verifier` that checks them.

Every example is a short user prompt, a worked answer (a few reasoning lines, then `Answer: <final>`) and
the exact final answer as `reference`. The generators are seeded and deterministic; `write_demo_data`
writes the three disjoint demo files that ship in `data/demo/`:

    python -m westwind.demo_tasks --out data/demo --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


@dataclass(frozen=True)
class Example:
    task: str
    prompt: str
    answer: str  # the worked answer: reasoning lines, then "Answer: <reference>"
    reference: str


# ---------------------------------------------------------------- generators


def addition(rng: random.Random) -> Example:
    """3-digit addition, worked column by column from the ones: `top+bottom+carry=two-digit sum`.

    Fixed widths everywhere (operands, step lines) put every digit a step needs at a fixed distance,
    which a tiny model learns far sooner than a variable-width layout.
    """
    a, b = rng.randint(100, 999), rng.randint(100, 999)
    lines, carry = [], 0
    for digit_a, digit_b in zip(str(a)[::-1], str(b)[::-1], strict=True):
        total = int(digit_a) + int(digit_b) + carry
        lines.append(f"{digit_a}+{digit_b}+{carry}={total:02d}")
        carry = total // 10
    return _example("add", f"What is {a} + {b}?", lines, str(a + b))


def sorting(rng: random.Random) -> Example:
    """Sort 4 single-digit numbers, worked by taking the smallest remaining number each step."""
    numbers = [rng.randint(0, 9) for _ in range(4)]
    remaining, lines = list(numbers), []
    while len(remaining) > 1:
        smallest = min(remaining)
        lines.append(f"{' '.join(map(str, remaining))} -> {smallest}")
        remaining.remove(smallest)
    prompt = f"Sort {' '.join(map(str, numbers))}."
    return _example("sort", prompt, lines, " ".join(map(str, sorted(numbers))))


def reversal(rng: random.Random) -> Example:
    """Reverse a made-up word, worked by spelling it forwards then backwards."""
    word = pseudo_word(rng)
    lines = ["-".join(word), "-".join(reversed(word))]
    return _example("reverse", f"Reverse the word {word}.", lines, word[::-1])


def vowel_removal(rng: random.Random) -> Example:
    """Drop the vowels of a made-up word, worked by spelling it then listing the kept letters."""
    word = pseudo_word(rng)
    kept = "".join(letter for letter in word if letter not in VOWELS)
    lines = ["-".join(word), "-".join(kept)]
    return _example("vowels", f"Remove the vowels from {word}.", lines, kept)


def pseudo_word(rng: random.Random, length: int = 5) -> str:
    """A pronounceable non-word: alternating consonants and vowels, starting with either."""
    start = rng.randint(0, 1)
    return "".join(rng.choice(CONSONANTS if (i + start) % 2 == 0 else VOWELS) for i in range(length))


def _example(task: str, prompt: str, lines: list[str], reference: str) -> Example:
    return Example(task, prompt, "\n".join([*lines, f"Answer: {reference}"]), reference)


GENERATORS: dict[str, Callable[[random.Random], Example]] = {
    "add": addition,
    "sort": sorting,
    "reverse": reversal,
    "vowels": vowel_removal,
}


def generate(count: int, seed: int = 0, exclude: set[str] | None = None) -> list[Example]:
    """`count` examples with distinct prompts (none in `exclude`), tasks taken in turn."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    examples: list[Example] = []
    for task in _round_robin(list(GENERATORS)):
        if len(examples) == count:
            return examples
        example = GENERATORS[task](rng)
        while example.prompt in seen:
            example = GENERATORS[task](rng)
        seen.add(example.prompt)
        examples.append(example)
    return examples


def _round_robin(tasks: list[str]) -> Iterator[str]:
    while True:
        yield from tasks


# ---------------------------------------------------------------- verifier

ANSWER_LINE = re.compile(r"answer\s*:[ \t]*([^\n]*)", re.IGNORECASE)


def normalize(text: str) -> str:
    """Collapse whitespace and commas, drop surrounding punctuation; case is kept (it can matter)."""
    text = text.replace(",", " ")
    text = " ".join(text.split())
    return text.strip(" .!\"'`*")


def extract_answer(completion: Any) -> str | None:
    """The text after the first `Answer:`; a conversational completion uses its last message."""
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        completion = completion[-1].get("content")
    if not isinstance(completion, str):
        return None
    match = ANSWER_LINE.search(completion)
    return normalize(match.group(1)) if match else None


def verify(prompt: Any, completion: Any, reference: Any) -> float:
    """1.0 when the completion's final answer equals the reference after normalization, else 0.0."""
    answer = extract_answer(completion)
    if answer is None or reference is None:
        return 0.0
    return 1.0 if answer == normalize(str(reference)) else 0.0


# ---------------------------------------------------------------- demo files

DEMO_SIZES = {"eval": 200, "prompts": 500, "sft": 3000}


def sft_row(example: Example) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": example.prompt},
            {"role": "assistant", "content": example.answer},
        ]
    }


def prompt_row(example: Example) -> dict[str, Any]:
    return {"prompt": example.prompt, "reference": example.reference, "task": example.task}


def demo_splits(seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, list[Example]]:
    """Eval first, then AIFT prompts, then SFT, each excluding every earlier prompt (disjoint splits)."""
    sizes = {**DEMO_SIZES, **(sizes or {})}
    splits: dict[str, list[Example]] = {}
    seen: set[str] = set()
    for offset, name in enumerate(("eval", "prompts", "sft")):
        splits[name] = generate(sizes[name], seed=seed * 1000 + offset, exclude=seen)
        seen.update(example.prompt for example in splits[name])
    return splits


def write_demo_data(
    out_dir: str | Path, seed: int = 0, sizes: dict[str, int] | None = None
) -> dict[str, Path]:
    """Write sft.jsonl (messages), prompts.jsonl and eval.jsonl (prompt, reference, task) to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, examples in demo_splits(seed, sizes).items():
        make_row = sft_row if name == "sft" else prompt_row
        paths[name] = _write_jsonl(out / f"{name}.jsonl", [make_row(example) for example in examples])
    return paths


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m westwind.demo_tasks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    parser.add_argument("--seed", type=int, default=0)
    for name, size in DEMO_SIZES.items():
        parser.add_argument(f"--{name}-rows", type=int, default=size, dest=name)
    args = parser.parse_args(argv)
    paths = write_demo_data(args.out, args.seed, {name: getattr(args, name) for name in DEMO_SIZES})
    for name, path in paths.items():
        print(f"{name}: {path} ({sum(1 for _ in path.open())} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
