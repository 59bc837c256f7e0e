"""Procedural tasks with checkable answers for the CPU demo, and the `verifier` that checks them.

Every example is a short user prompt, a worked answer (working, then `Answer: <final>`) and the exact final
answer as `reference`. The teacher works an answer either step by step (one easy operation per line) or in
one go (the whole computation in one line); both are correct, but a tiny student copies the one-go style
far less reliably. dSFT learns both styles, and the verifier-ranked AIFT pairs teach dDPO to work step by
step: that is the measured gain of the CPU demo. The generators are seeded and deterministic;
`write_demo_data` writes the three disjoint demo files that ship in `data/demo/`:

    python -m westwind.demo.tasks --out data/demo --seed 0
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
class Problem:
    """One task instance, solvable two ways: step by step, or in one go."""

    task: str
    prompt: str
    steps: tuple[str, ...]  # the careful working, one line per step
    shortcut: str | None  # the whole computation in one line (None: this task is always worked)
    reference: str  # the exact final answer

    def answer(self, style: str) -> str:
        lines = self.steps if style == "steps" or self.shortcut is None else (self.shortcut,)
        return "\n".join([*lines, f"Answer: {self.reference}"])


@dataclass(frozen=True)
class Example:
    task: str
    prompt: str
    answer: str  # the teacher's worked answer: working line(s), then "Answer: <reference>"
    reference: str
    style: str  # "steps" or "quick"


# ---------------------------------------------------------------- generators


def addition(rng: random.Random) -> Problem:
    """2-digit addition, worked column by column from the ones: `top+bottom+carry=two-digit sum`.

    Fixed widths everywhere (operands, step lines) put every digit a step needs at a fixed distance,
    which a tiny model learns far sooner than a variable-width layout.
    """
    return addition_problem(rng.randint(10, 99), rng.randint(10, 99))


def addition_problem(a: int, b: int) -> Problem:
    steps, carry = [], 0
    for digit_a, digit_b in zip(str(a)[::-1], str(b)[::-1], strict=True):
        total = int(digit_a) + int(digit_b) + carry
        steps.append(f"{digit_a}+{digit_b}+{carry}={total:02d}")
        carry = total // 10
    return Problem("add", f"What is {a} + {b}?", tuple(steps), f"{a}+{b}={a + b}", str(a + b))


def sorting(rng: random.Random) -> Problem:
    """Sort 4 single-digit numbers, worked by taking the smallest remaining number each step.

    No one-go answer: a tiny model sorts digits directly about as well as step by step, so a one-go
    style here would teach dDPO the opposite lesson from the other tasks.
    """
    return sorting_problem([rng.randint(0, 9) for _ in range(4)])


def sorting_problem(numbers: list[int]) -> Problem:
    remaining, steps = list(numbers), []
    while len(remaining) > 1:
        smallest = min(remaining)
        steps.append(f"{' '.join(map(str, remaining))} -> {smallest}")
        remaining.remove(smallest)
    ordered = " ".join(map(str, sorted(numbers)))
    return Problem("sort", f"Sort {' '.join(map(str, numbers))}.", tuple(steps), None, ordered)


def reversal(rng: random.Random) -> Problem:
    """Reverse a made-up word, worked by spelling it forwards then backwards."""
    return reversal_problem(pseudo_word(rng))


def reversal_problem(word: str) -> Problem:
    steps = ("-".join(word), "-".join(reversed(word)))
    return Problem(
        "reverse", f"Reverse the word {word}.", steps, f"{word} reversed is {word[::-1]}", word[::-1]
    )


def digit_sum(rng: random.Random) -> Problem:
    """Add four single digits, worked as a running total: `total+digit=new two-digit total`."""
    return digit_sum_problem([rng.randint(0, 9) for _ in range(4)])


def digit_sum_problem(digits: list[int]) -> Problem:
    steps, total = [], digits[0]
    for digit in digits[1:]:
        steps.append(f"{total:02d}+{digit}={total + digit:02d}")
        total += digit
    terms = " + ".join(map(str, digits))
    return Problem("sum", f"What is {terms}?", tuple(steps), f"{terms.replace(' ', '')}={total}", str(total))


def vowel_removal(rng: random.Random) -> Problem:
    """Drop the vowels of a made-up word, worked by spelling it then listing the kept letters."""
    return vowel_removal_problem(pseudo_word(rng))


def vowel_removal_problem(word: str) -> Problem:
    kept = "".join(letter for letter in word if letter not in VOWELS)
    steps = ("-".join(word), "-".join(kept))
    prompt = f"Remove the vowels from {word}."
    return Problem("vowels", prompt, steps, f"{word} without vowels is {kept}", kept)


def pseudo_word(rng: random.Random, length: int = 5) -> str:
    """A pronounceable non-word: alternating consonants and vowels, starting with either."""
    start = rng.randint(0, 1)
    return "".join(rng.choice(CONSONANTS if (i + start) % 2 == 0 else VOWELS) for i in range(length))


GENERATORS: dict[str, Callable[[random.Random], Problem]] = {
    "add": addition,
    "sort": sorting,
    "reverse": reversal,
    "sum": digit_sum,
    "vowels": vowel_removal,
}
# Each task's prompt, read back: the pattern its generator writes and the builder of the same Problem. Only the
# shapes the generators write parse (2-digit addition, lower-case made-up words, single digits).
PARSERS: dict[str, tuple[re.Pattern[str], Callable[[re.Match[str]], Problem]]] = {
    "add": (
        re.compile(r"What is ([1-9]\d) \+ ([1-9]\d)\?"),
        lambda m: addition_problem(int(m[1]), int(m[2])),
    ),
    "sort": (re.compile(r"Sort (\d(?: \d)+)\."), lambda m: sorting_problem(_digits(m[1], " "))),
    "reverse": (re.compile(r"Reverse the word ([a-z]+)\."), lambda m: reversal_problem(m[1])),
    "sum": (re.compile(r"What is (\d(?: \+ \d)+)\?"), lambda m: digit_sum_problem(_digits(m[1], " + "))),
    "vowels": (re.compile(r"Remove the vowels from ([a-z]+)\."), lambda m: vowel_removal_problem(m[1])),
}


def problem_from_prompt(text: str) -> Problem | None:
    """The Problem a generator would have made for this prompt (surrounding whitespace ignored), else None."""
    for pattern, build in PARSERS.values():
        if match := pattern.fullmatch(text.strip()):
            return build(match)
    return None


def _digits(text: str, separator: str) -> list[int]:
    return [int(digit) for digit in text.split(separator)]


# The CPU demo's task mix (relative weights). Addition gets double weight: it is where working step by step
# pays off most for a tiny student, so it carries most of the dDPO gain.
DEMO_MIX: dict[str, int] = {"add": 2, "reverse": 1, "sort": 1}


def generate(
    count: int,
    seed: int = 0,
    exclude: set[str] | None = None,
    quick_share: float = 0.0,
    mix: dict[str, int] | None = None,
) -> list[Example]:
    """`count` examples with distinct prompts (none in `exclude`), tasks taken in turn by their `mix`
    weights (default DEMO_MIX); a `quick_share` of those with a one-go form answered that way."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    examples: list[Example] = []
    cycle = [task for task, weight in (mix or DEMO_MIX).items() for _ in range(weight)]
    for task in _round_robin(cycle):
        if len(examples) == count:
            return examples
        problem = GENERATORS[task](rng)
        while problem.prompt in seen:
            problem = GENERATORS[task](rng)
        seen.add(problem.prompt)
        style = "quick" if problem.shortcut is not None and rng.random() < quick_share else "steps"
        examples.append(Example(task, problem.prompt, problem.answer(style), problem.reference, style))
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

# 500 held-out prompts keep the eval's paired comparison tight; 1500 AIFT prompts give dDPO ~1200 pairs.
DEMO_SIZES = {"eval": 500, "prompts": 1500, "sft": 3000}
# The teacher answers this share of the SFT prompts in one go (correct, but a tiny model copies that
# style unreliably); the rest step by step. The dSFT student learns both; the verifier-ranked AIFT pairs
# then teach dDPO which style pays off, which is the measurable gain the demo shows.
QUICK_SHARE = 0.5


def sft_row(example: Example) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": example.prompt},
            {"role": "assistant", "content": example.answer},
        ]
    }


def prompt_row(example: Example) -> dict[str, Any]:
    return {"prompt": example.prompt, "reference": example.reference, "task": example.task}


def demo_splits(
    seed: int = 0, sizes: dict[str, int] | None = None, quick_share: float = QUICK_SHARE
) -> dict[str, list[Example]]:
    """Eval first, then AIFT prompts, then SFT, each excluding every earlier prompt (disjoint splits)."""
    sizes = {**DEMO_SIZES, **(sizes or {})}
    splits: dict[str, list[Example]] = {}
    seen: set[str] = set()
    for offset, name in enumerate(("eval", "prompts", "sft")):
        share = quick_share if name == "sft" else 0.0
        splits[name] = generate(sizes[name], seed=seed * 1000 + offset, exclude=seen, quick_share=share)
        seen.update(example.prompt for example in splits[name])
    return splits


def write_demo_data(
    out_dir: str | Path,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    quick_share: float = QUICK_SHARE,
) -> dict[str, Path]:
    """Write sft.jsonl (messages), prompts.jsonl and eval.jsonl (prompt, reference, task) to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, examples in demo_splits(seed, sizes, quick_share).items():
        make_row = sft_row if name == "sft" else prompt_row
        paths[name] = _write_jsonl(out / f"{name}.jsonl", [make_row(example) for example in examples])
    return paths


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m westwind.demo.tasks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    parser.add_argument("--seed", type=int, default=0)
    for name, size in DEMO_SIZES.items():
        parser.add_argument(f"--{name}-rows", type=int, default=size, dest=name)
    parser.add_argument(
        "--quick-share", type=float, default=QUICK_SHARE, help="share of SFT answers given in one go"
    )
    args = parser.parse_args(argv)
    sizes = {name: getattr(args, name) for name in DEMO_SIZES}
    paths = write_demo_data(args.out, args.seed, sizes, args.quick_share)
    for name, path in paths.items():
        print(f"{name}: {path} ({sum(1 for _ in path.open())} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
