"""Self-Instruct bootstrapping: few-shot prompts of seed and already kept instructions ask the teacher for new
ones; each proposed instruction is filtered (length, unsuitable keywords, duplicates, eval contamination,
ROUGE-L novelty) and every drop is counted by reason, until `target` instructions are kept.

The loop is sequential (a round's prompts show instructions kept in earlier rounds) and deterministic: every
reply is journaled under a key of everything that produced it (prompt, sampling, seed, teacher), so a rerun
replays the journal, asks only for what is missing, and reaches exactly the state of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from westwind.aift.prompts import normalize_text, prompt_id
from westwind.aift.teacher import LazyTeacher, reply
from westwind.distill.config import InstructionsConfig
from westwind.distill.novelty import NoveltyFilter
from westwind.errors import DataError, RunError
from westwind.generation import ChatRequest, resolved_sampling
from westwind.io import Journal, digest
from westwind.seeding import stable_seed

NUMBERED = re.compile(r"^\s*(\d{1,3})\s*[.)]\s*(.*)$")
PROMPT = """Come up with {new} new and diverse task instructions for an AI assistant; we will test the assistant on them.

Requirements:
- Vary the verbs and the kinds of task: open questions, writing, rewriting, classification, advice, reasoning, math, code.
- Each instruction is one or two sentences and can be done by a text-only assistant: nothing that needs to see, draw or open something, or act in the world.
- Do not repeat or paraphrase the examples.

Examples:
{examples}

Continue the list with {new} new tasks, numbered {first} to {last}, one per line, and write nothing else."""


def load_seed_tasks(path: str | Path) -> list[str]:
    """The instructions of a Self-Instruct seed file (JSONL: `instruction`, optional `instances`)."""
    instructions = []
    for number, line in enumerate(Path(path).expanduser().read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            task = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}: line {number}: not JSON") from None
        instruction = task.get("instruction") if isinstance(task, dict) else None
        if not isinstance(instruction, str) or not instruction.strip():
            raise DataError(f"{path}: line {number}: no `instruction` string")
        instructions.append(" ".join(instruction.split()))
    if not instructions:
        raise DataError(f"{path}: no seed tasks")
    return instructions


def parse_numbered_list(text: str, truncated: bool) -> tuple[list[str], int]:
    """The items of a numbered list (continuation lines joined), and how many were cut off (the last item of a
    reply that hit max_new_tokens)."""
    items: list[str] = []
    for line in text.splitlines():
        match = NUMBERED.match(line)
        if match:
            items.append(match.group(2).strip())
        elif items and line.strip():
            items[-1] = f"{items[-1]} {line.strip()}"
    items = [item for item in items if item]
    if truncated and items:
        return items[:-1], 1
    return items, 0


def keyword_pattern(keywords: list[str]) -> re.Pattern | None:
    if not keywords:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, k.split())) for k in keywords)
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


@dataclasses.dataclass
class Bootstrap:
    """The state of the loop: what is kept, the novelty index, and every count."""

    config: InstructionsConfig
    seeds: list[str]
    decontaminated: Callable[[str], bool] | None
    kept: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    counts: Counter = dataclasses.field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.novelty = NoveltyFilter(self.config.rouge_threshold)
        self.seen = set()
        for seed in self.seeds:
            self.novelty.add(seed)
            self.seen.add(normalize_text(seed))
        self.forbidden = keyword_pattern(self.config.unsuitable_keywords)

    @property
    def done(self) -> bool:
        return len(self.kept) >= self.config.target

    def drop_reason(self, text: str) -> str | None:
        words = len(text.split())
        if words < self.config.min_words:
            return "too_short"
        if words > self.config.max_words:
            return "too_long"
        if self.forbidden is not None and self.forbidden.search(text):
            return "unsuitable_keyword"
        if normalize_text(text) in self.seen:
            return "duplicate"
        if self.decontaminated is not None and self.decontaminated(text):
            return "contaminated"
        return None

    def consider(self, text: str, round_index: int) -> None:
        if self.done:
            self.counts["beyond_target"] += 1
            return
        reason = self.drop_reason(text)
        if reason is None:
            verdict = self.novelty.admit(text)
            reason = None if verdict.novel else "similar"
        if reason is not None:
            self.counts[f"dropped_{reason}"] += 1
            return
        self.seen.add(normalize_text(text))
        record = {"prompt_id": prompt_id([{"role": "user", "content": text}]), "instruction": text}
        self.kept.append({**record, "round": round_index, "max_rouge_l": round(verdict.score, 4)})

    def prompt(self, round_index: int, request: int, seed: int) -> list[dict[str, str]]:
        rng = random.Random(stable_seed(seed, "instructions", round_index, request))
        config = self.config
        examples = rng.sample(self.seeds, min(config.seeds_per_prompt, len(self.seeds)))
        generated = [k["instruction"] for k in self.kept]
        examples += rng.sample(generated, min(config.generated_per_prompt, len(generated)))
        rng.shuffle(examples)
        listed = "\n".join(f"{i}. {text}" for i, text in enumerate(examples, start=1))
        first = len(examples) + 1
        text = PROMPT.format(
            new=config.new_per_prompt, examples=listed, first=first, last=first + config.new_per_prompt - 1
        )
        return [{"role": "user", "content": text}]


def bootstrap(
    config: InstructionsConfig,
    seed: int,
    teacher: LazyTeacher,
    teacher_fingerprint: str,
    journaled: dict[str, dict],
    journal: Journal | None,
    decontaminated: Callable[[str], bool] | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Kept instructions and counts. `journaled`: finished replies by key; missing ones are asked for (and
    appended to `journal`), or, with no journal (a merge), reported as missing."""
    state = Bootstrap(config, load_seed_tasks(config.seed_tasks), decontaminated)
    sampling = resolved_sampling(config.sampling, default_temperature=1.0)
    rounds = 0
    with tqdm(total=config.target, desc="instructions", unit="kept", disable=not progress) as bar:
        while not state.done and rounds < config.max_rounds:
            requests = []
            for index in range(config.requests_per_round):
                messages = state.prompt(rounds, index, seed)
                request_seed = stable_seed(seed, "instructions", rounds, index)
                key = digest([messages, dataclasses.asdict(sampling), request_seed, teacher_fingerprint], 32)
                requests.append(ChatRequest(key, messages, sampling, 1, request_seed))
            records = fetch(requests, teacher, journaled, journal)
            for record in records:
                state.counts["replies"] += 1
                items, cut = parse_numbered_list(record["text"], record["finish_reason"] == "length")
                state.counts["dropped_truncated"] += cut
                state.counts["unparsable_replies"] += not items and not cut
                state.counts["proposed"] += len(items) + cut
                for item in items:
                    state.consider(item, rounds)
            rounds += 1
            bar.update(len(state.kept) - bar.n)
    counts = {"seed_tasks": len(state.seeds), "rounds": rounds, **state.counts, "kept": len(state.kept)}
    counts["target_reached"] = state.done
    return state.kept, counts


def fetch(
    requests: list[ChatRequest], teacher: LazyTeacher, journaled: dict[str, dict], journal: Journal | None
) -> list[dict]:
    """Each request's journaled reply, asking the teacher for the missing ones."""
    missing = [r for r in requests if r.key not in journaled]
    if missing and journal is None:
        raise RunError(f"{len(missing)} instruction request(s) not done yet: run the distill stage first")
    failed = 0
    for request, result in zip(missing, teacher.complete(missing), strict=True):
        answer = reply(result)
        record = {"key": request.key, "failures": dict(result.failures)}
        if answer is None:
            failed += 1
            journal.append({**record, "status": "failed", "error": result.error})
            continue
        record = {**record, "status": "ok", "text": answer[0], "finish_reason": answer[1]}
        journal.append(record)
        journaled[request.key] = record
    if failed:
        raise RunError(f"{failed} instruction request(s) failed after retries; rerun to retry them")
    return [journaled[r.key] for r in requests]
