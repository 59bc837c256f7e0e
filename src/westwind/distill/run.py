"""The distill stage's work: opening prompts (bootstrapped or from datasets) -> dialogues -> a dSFT dataset.

Layout under `<output_dir>/distill`:

    shards/<i>-of-<N>/instructions.jsonl  one record per teacher reply while bootstrapping (keyed by its inputs)
    shards/<i>-of-<N>/dialogues.jsonl     one record per dialogue (keyed by prompt id + settings fingerprint)
    instructions.jsonl                    the kept instructions, with round and nearest ROUGE-L
    dataset/                              DatasetDict (train[, test]) with `messages` for dSFT (`@distill`)
    train.jsonl, test.jsonl, stats.json   stats: every drop counted by reason

Journals are append-only; work done by any shard is reused by every other run. Bootstrapping is sequential:
each shard replays it from the journals (asking only for missing replies), then writes its slice of dialogues.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from westwind.aift_config import fingerprint_fields
from westwind.distill.config import DistillConfig
from westwind.distill.dialogues import USER_SIMULATOR, DialogueWriter
from westwind.distill.instructions import PROMPT, bootstrap
from westwind.distill.teacher import LazyTeacher
from westwind.errors import RunError
from westwind.io import (
    Journal,
    atomic_write_jsonl,
    atomic_write_text,
    digest,
    read_jsonl,
    save_dataset_atomic,
)
from westwind.prompts import (
    Decontaminator,
    Prompt,
    conversation_text,
    eval_texts,
    in_shard,
    load_prompts,
    normalize_text,
)
from westwind.recipe import Recipe


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        self.shards = root / "shards"
        self.instructions = root / "instructions.jsonl"
        self.dataset = root / "dataset"
        self.stats = root / "stats.json"

    def shard_dir(self, index: int, count: int) -> Path:
        return self.shards / f"{index:05d}-of-{count:05d}"

    def all_records(self, name: str) -> list[dict]:
        return [record for path in sorted(self.shards.glob(f"*/{name}")) for record in read_jsonl(path)]

    def finished(self, name: str, *fields: str) -> dict[tuple, dict]:
        """The last successful record per value of `fields`, over every shard's journal."""
        return {tuple(r.get(f) for f in fields): r for r in self.all_records(name) if r.get("status") == "ok"}


def teacher_fingerprint(config: DistillConfig) -> str:
    return digest([fingerprint_fields(config.teacher), PROMPT], 16)


def dialogue_fingerprint(config: DistillConfig) -> str:
    dialogues = {k: v for k, v in dataclasses.asdict(config.dialogues).items() if k != "prompts"}
    user = fingerprint_fields(config.dialogues.user) if config.dialogues.user else None
    return digest([fingerprint_fields(config.teacher), user, dialogues, USER_SIMULATOR, config.seed], 16)


def contamination_check(recipe: Recipe) -> Callable[[str], bool] | None:
    config = recipe.distill.decontaminate
    if config is None:
        return None
    return Decontaminator(eval_texts(config, recipe.distill.seed), config.ngram)


def opening_prompts(
    recipe: Recipe, teacher: LazyTeacher, journal: Journal | None, progress: bool
) -> tuple[list[Prompt], dict[str, Any]]:
    """The dialogues' first user turns and the counts of how they were made."""
    config, workspace = recipe.distill, Workspace(recipe.stage_dir("distill"))
    is_contaminated = contamination_check(recipe)
    if config.instructions is None:
        prompts, counts = load_prompts(config.dialogues.prompts, config.seed)
        if is_contaminated is not None:
            clean = [p for p in prompts if not is_contaminated(conversation_text(p.messages))]
            counts["contaminated_distill"], prompts = len(prompts) - len(clean), clean
        return prompts, {"prompts": counts}
    journaled = {key: r for (key,), r in workspace.finished("instructions.jsonl", "key").items()}
    kept, counts = bootstrap(
        config.instructions,
        config.seed,
        teacher,
        teacher_fingerprint(config),
        journaled,
        journal,
        is_contaminated,
        progress,
    )
    if journal is None:
        atomic_write_jsonl(workspace.instructions, kept)
    prompts = [Prompt(k["prompt_id"], [{"role": "user", "content": k["instruction"]}]) for k in kept]
    return prompts, {"instructions": counts}


def run_shard(recipe: Recipe, index: int = 0, count: int = 1, progress: bool = True) -> dict[str, int]:
    """Bootstrap (or replay) the instructions, then write this shard's missing dialogues. Returns its counts."""
    config, workspace = recipe.distill, Workspace(recipe.stage_dir("distill"))
    shard_dir = workspace.shard_dir(index, count)
    teacher = LazyTeacher(config.teacher, recipe, config.seed)
    user = LazyTeacher(config.dialogues.user, recipe, config.seed) if config.dialogues.user else teacher
    instructions, dialogues = (
        Journal(shard_dir / "instructions.jsonl"),
        Journal(shard_dir / "dialogues.jsonl"),
    )
    try:
        prompts, _ = opening_prompts(recipe, teacher, instructions, progress)
        mine = [p for p in prompts if in_shard(p.prompt_id, index, count)]
        write_dialogues(
            recipe,
            mine,
            workspace,
            dialogues,
            DialogueWriter(config.dialogues, config.seed, teacher, user),
            progress,
        )
    finally:
        instructions.close()
        dialogues.close()
        teacher.close()
        user.close()
    done = workspace.finished("dialogues.jsonl", "prompt_id", "fingerprint")
    fp = dialogue_fingerprint(config)
    written = sum((p.prompt_id, fp) in done for p in mine)
    return {
        "prompts": len(prompts),
        "in_shard": len(mine),
        "written": written,
        "unfinished": len(mine) - written,
    }


def write_dialogues(
    recipe: Recipe,
    prompts: list[Prompt],
    workspace: Workspace,
    journal: Journal,
    writer: DialogueWriter,
    progress: bool,
) -> None:
    config = recipe.distill
    fp = dialogue_fingerprint(config)
    done = workspace.finished("dialogues.jsonl", "prompt_id", "fingerprint")
    todo = [p for p in prompts if (p.prompt_id, fp) not in done]
    with tqdm(total=len(todo), desc="dialogues", unit="dialogue", disable=not progress) as bar:
        for start in range(0, len(todo), config.chunk_size):
            for dialogue in writer.write(todo[start : start + config.chunk_size]):
                journal.append(dialogue.record(fp))
                bar.update(1)


# ---------------------------------------------------------------- merge and stats


def merge(recipe: Recipe) -> dict[str, Any]:
    """Every shard's dialogues for the current prompts and settings -> deduped rows -> dataset + stats."""
    from datasets import Dataset

    from westwind.data import split

    config, workspace = recipe.distill, Workspace(recipe.stage_dir("distill"))
    prompts, stats = opening_prompts(recipe, LazyTeacher(config.teacher, recipe, config.seed), None, False)
    fp = dialogue_fingerprint(config)
    done = workspace.finished("dialogues.jsonl", "prompt_id", "fingerprint")
    records = [done[(p.prompt_id, fp)] for p in prompts if (p.prompt_id, fp) in done]
    if len(records) < len(prompts):
        raise RunError(
            f"{len(prompts) - len(records)} of {len(prompts)} dialogues are not written yet (failed or not "
            "run): rerun the distill stage (with the same --shard values) to retry them"
        )
    rows, dialogue_stats = dialogue_rows(records)
    stats["dialogues"] = dialogue_stats
    stats["teacher_failures"] = failure_counts(workspace)
    if not rows:
        atomic_write_text(workspace.stats, json.dumps(stats, indent=2, sort_keys=True) + "\n")
        raise RunError(f"no dialogues: every one was dropped; see {workspace.stats}")
    dataset = split(Dataset.from_list(rows), config.test_split_size, config.seed)
    save_dataset_atomic(dataset, workspace.dataset)
    for name, part in dataset.items():
        atomic_write_jsonl(workspace.root / f"{name}.jsonl", part.to_list())
    stats["rows"] = {name: len(part) for name, part in dataset.items()}
    atomic_write_text(workspace.stats, json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return stats


def dialogue_rows(records: list[dict]) -> tuple[list[dict], dict[str, Any]]:
    """dSFT rows from dialogue records (in prompt order), deduped on normalised text, and their counts."""
    rows, seen, dropped, dropped_turns = [], set(), Counter(), Counter()
    turns, wanted = Counter(), Counter()
    for record in records:
        dropped_turns.update(record["dropped_turns"])
        wanted[str(record["turns_wanted"])] += 1
        messages = record["messages"]
        if messages is None:
            dropped["no_good_first_answer"] += 1
            continue
        text = normalize_text(conversation_text(messages))
        if text in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(text)
        answered = sum(m["role"] == "assistant" for m in messages)
        turns[str(answered)] += 1
        rows.append({"messages": messages, "prompt_id": record["prompt_id"], "turns": answered})
    stats = {
        "dialogues": len(records),
        "kept": len(rows),
        "dropped": dict(dropped),
        "dropped_turns": dict(dropped_turns),
        "turns_wanted": dict(wanted),
        "turns_kept": dict(turns),
    }
    return rows, stats


def failure_counts(workspace: Workspace) -> dict[str, int]:
    """Retried transport failures by reason, and items that failed for good (retried by a later run)."""
    counts: Counter = Counter()
    for name in ("instructions.jsonl", "dialogues.jsonl"):
        for record in workspace.all_records(name):
            counts.update(record.get("failures", {}))
            counts["failed_items"] += record.get("status") == "failed"
    return dict(counts)


def summary(stats: dict[str, Any]) -> str:
    """The stats a person checks after a run, one topic per line."""
    lines = ["distill summary"]
    for section in ("instructions", "prompts", "dialogues"):
        if section in stats:
            values = {k: v for k, v in stats[section].items() if not isinstance(v, dict) or v}
            lines.append(f"  {section}: " + ", ".join(f"{k} {v}" for k, v in values.items()))
    lines.append(f"  teacher failures: {stats.get('teacher_failures') or 'none'}")
    lines.append(f"  rows: {stats.get('rows')}")
    return "\n".join(lines)
