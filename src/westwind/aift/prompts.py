"""AIFT prompts: extract from a dataset mixture, dedupe on normalized text, decontaminate, cap, shard."""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from westwind.aift.config import DecontaminationConfig, PromptsConfig
from westwind.aift.principles import DATASET_SOURCE
from westwind.errors import DataError
from westwind.training.data import load_mixture


@dataclass
class Prompt:
    prompt_id: str
    messages: list[dict[str, str]]  # ends with the user turn
    reference: Any = None  # for verifier judges
    source: str | None = None  # where it came from, for by-source principle mixes (None: not asked for)

    @property
    def text(self) -> str:
        return self.messages[-1]["content"]


def normalize_text(text: str) -> str:
    """Case-, width- and whitespace-insensitive form used for ids, dedupe and n-grams."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def conversation_text(messages: list[dict[str, str]]) -> str:
    """A single user turn is its content, so a string prompt and the same prompt as messages share an id."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def with_system_prompt(messages: list[dict[str, str]], system: str) -> list[dict[str, str]]:
    """Prepend `system` (merged into an existing system turn: many templates allow only one)."""
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{system}\n\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": system}, *messages]


def prompt_id(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(normalize_text(conversation_text(messages)).encode()).hexdigest()


def to_messages(value: Any) -> list[dict[str, str]] | None:
    """A string, or a conversation cut after its last user turn; None when neither gives a usable prompt."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}] if value.strip() else None
    if not isinstance(value, list):
        return None
    turns = []
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return None
        turns.append({"role": str(message.get("role")), "content": message["content"]})
    users = [i for i, m in enumerate(turns) if m["role"] == "user"]
    if not users or not turns[users[-1]]["content"].strip():
        return None
    return turns[: users[-1] + 1]


SOURCE_COLUMN = "__westwind_source__"  # the mixture entry's path, added when `source: @dataset`


def extract(
    rows: Iterable[dict[str, Any]],
    column: str,
    reference_column: str | None,
    source_column: str | None = None,
) -> tuple[list[Prompt], int]:
    """Prompts from dataset rows, and how many rows had no usable prompt."""
    prompts, invalid = [], 0
    for row in rows:
        messages = to_messages(row.get(column))
        if messages is None:
            invalid += 1
            continue
        reference = row.get(reference_column) if reference_column else None
        source = row.get(source_column) if source_column else None
        prompts.append(
            Prompt(prompt_id(messages), messages, reference, None if source is None else str(source))
        )
    return prompts, invalid


def with_entry_source(dataset: Any, path: str) -> Any:
    return dataset.add_column(SOURCE_COLUMN, [path] * len(dataset))


def dedupe(prompts: list[Prompt]) -> list[Prompt]:
    """The first occurrence of each normalized prompt, in order."""
    seen: set[str] = set()
    kept = []
    for prompt in prompts:
        if prompt.prompt_id not in seen:
            seen.add(prompt.prompt_id)
            kept.append(prompt)
    return kept


def word_ngrams(text: str, n: int) -> set[str]:
    words = normalize_text(text).split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


class Decontaminator:
    """Flags prompts sharing a word n-gram with any eval prompt, or equal to one after normalization."""

    def __init__(self, eval_texts: Iterable[str], n: int):
        self.n = n
        self.exact: set[str] = set()
        self.ngrams: set[str] = set()
        for text in eval_texts:
            self.exact.add(normalize_text(text))
            self.ngrams |= word_ngrams(text, n)

    def __call__(self, text: str) -> bool:
        return normalize_text(text) in self.exact or not self.ngrams.isdisjoint(word_ngrams(text, self.n))


def eval_texts(config: DecontaminationConfig, seed: int) -> list[str]:
    """Every user-side text of the eval set: a string, each string of a list of turns (MT-Bench), or the
    user turns of a conversation."""
    dataset = load_mixture(config.datasets, seed)
    if config.column not in dataset.column_names:
        raise DataError(f"decontamination set: no column {config.column!r} (has {dataset.column_names})")
    texts = []
    for value in dataset[config.column]:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and item.get("role") in (None, "user"):
                item = item.get("content")
            if isinstance(item, str) and item.strip():
                texts.append(item)
    return texts


def cap(prompts: list[Prompt], max_prompts: int | None, seed: int) -> list[Prompt]:
    """A seeded sample of `max_prompts`, kept in dataset order."""
    if max_prompts is None or len(prompts) <= max_prompts:
        return prompts
    keep = set(random.Random(seed).sample(range(len(prompts)), max_prompts))
    return [p for i, p in enumerate(prompts) if i in keep]


def load_prompts(
    config: PromptsConfig, seed: int, reference_column: str | None = None, source: str | None = None
) -> tuple[list[Prompt], dict[str, int]]:
    """The deduplicated, decontaminated, capped prompt list and the counts of each step. `source` (a column,
    or @dataset for the mixture entry's path) gives each prompt its source; a duplicate keeps the first's."""
    by_entry = source == DATASET_SOURCE
    dataset = load_mixture(config.datasets, seed, with_entry_source if by_entry else None)
    if config.column not in dataset.column_names:
        raise DataError(f"aift prompts: no column {config.column!r} (has {dataset.column_names})")
    if reference_column not in dataset.column_names:
        reference_column = None
    source_column = SOURCE_COLUMN if by_entry else source
    if source_column is not None and source_column not in dataset.column_names:
        raise DataError(
            f"aift prompts: the generators' principles are drawn by source but there is no column "
            f"{source_column!r} (has {dataset.column_names}); list it in the datasets' `columns`"
        )
    prompts, invalid = extract(dataset, config.column, reference_column, source_column)
    counts = {"rows": len(dataset), "invalid": invalid}
    unique = dedupe(prompts)
    counts["duplicates"] = len(prompts) - len(unique)
    if config.decontaminate is not None:
        is_contaminated = Decontaminator(eval_texts(config.decontaminate, seed), config.decontaminate.ngram)
        clean = [p for p in unique if not is_contaminated(conversation_text(p.messages))]
        counts["contaminated"] = len(unique) - len(clean)
        unique = clean
    kept = cap(unique, config.max_prompts, seed)
    counts["over_max_prompts"] = len(unique) - len(kept)
    counts["prompts"] = len(kept)
    if not kept:
        raise DataError("aift prompts: no prompts left after dedupe/decontamination")
    return kept, counts


def parse_shard(text: str) -> tuple[int, int]:
    """`i/N` -> (i, N) with 0 <= i < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < N")
    return index, count


def in_shard(prompt_id_hex: str, index: int, count: int) -> bool:
    return int(prompt_id_hex[:16], 16) % count == index
