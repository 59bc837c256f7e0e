"""The distill stage's work: opening prompts (bootstrapped or from datasets) -> dialogues -> a dSFT dataset.

Layout under `<output_dir>/distill`:

    shards/<i>-of-<N>/instructions.jsonl  one record per teacher reply while bootstrapping (keyed by its inputs)
    shards/<i>-of-<N>/dialogues.jsonl     one record per dialogue (keyed by prompt id + settings fingerprint)
    shards/<i>-of-<N>/quality.jsonl       with distill.quality: the judge's score of each dialogue
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

from westwind.aift.config import fingerprint_fields
from westwind.aift.prompts import (
    Decontaminator,
    Prompt,
    conversation_text,
    eval_texts,
    in_shard,
    load_prompts,
    normalize_text,
)
from westwind.aift.teacher import LazyJudge, LazyTeacher
from westwind.distill.config import DistillConfig
from westwind.distill.dialogues import USER_SIMULATOR, DialogueWriter
from westwind.distill.instructions import PROMPT, bootstrap
from westwind.distill.quality import score_dialogues, select
from westwind.errors import RunError
from westwind.io import (
    Journal,
    ShardedJournals,
    atomic_write_jsonl,
    atomic_write_text,
    digest,
    save_splits,
)
from westwind.recipe.core import Recipe


class Workspace(ShardedJournals):
    def __init__(self, root: Path):
        super().__init__(root)
        self.instructions = self.root / "instructions.jsonl"
        self.stats = self.root / "stats.json"


def teacher_fingerprint(config: DistillConfig) -> str:
    return digest([fingerprint_fields(config.teacher), PROMPT], 16)


def dialogue_fingerprint(config: DistillConfig) -> str:
    dialogues = {k: v for k, v in dataclasses.asdict(config.dialogues).items() if k != "prompts"}
    user = fingerprint_fields(config.dialogues.user) if config.dialogues.user else None
    return digest([fingerprint_fields(config.teacher), user, dialogues, USER_SIMULATOR, config.seed], 16)


def quality_fingerprint(config: DistillConfig) -> str:
    """Scores depend on the dialogues and the judge; `keep` and `min_score` only select, at merge time."""
    return digest([dialogue_fingerprint(config), fingerprint_fields(config.quality.judge), config.seed], 16)


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


class Product:
    """One journaled product per opening prompt (dialogues, quality scores): its journal name and fingerprint."""

    def __init__(self, name: str, fingerprint: str, write_chunk: Callable[[list[Prompt]], list]):
        self.name, self.fingerprint, self.write_chunk = name, fingerprint, write_chunk

    def missing(self, prompts: list[Prompt], workspace: Workspace) -> list[Prompt]:
        done = workspace.finished(f"{self.name}.jsonl", "prompt_id", "fingerprint")
        return [p for p in prompts if (p.prompt_id, self.fingerprint) not in done]

    def records(self, prompts: list[Prompt], workspace: Workspace) -> list[dict]:
        """This product's record for every prompt, in prompt order; RunError if any is missing."""
        done = workspace.finished(f"{self.name}.jsonl", "prompt_id", "fingerprint")
        found = [
            done[(p.prompt_id, self.fingerprint)] for p in prompts if (p.prompt_id, self.fingerprint) in done
        ]
        if len(found) < len(prompts):
            raise RunError(
                f"{len(prompts) - len(found)} of {len(prompts)} {self.name} are not written yet (failed or not "
                "run): rerun the distill stage (with the same --shard values) to retry them"
            )
        return found

    def write(
        self, prompts: list[Prompt], workspace: Workspace, shard_dir: Path, chunk_size: int, progress: bool
    ):
        todo = self.missing(prompts, workspace)
        journal = Journal(shard_dir / f"{self.name}.jsonl")
        try:
            with tqdm(total=len(todo), desc=self.name, unit="prompt", disable=not progress) as bar:
                for start in range(0, len(todo), chunk_size):
                    for item in self.write_chunk(todo[start : start + chunk_size]):
                        journal.append(item.record(self.fingerprint))
                        bar.update(1)
        finally:
            journal.close()


@dataclasses.dataclass
class Models:
    """The models a run may ask, each built on first use."""

    teacher: LazyTeacher
    user: LazyTeacher
    judge: LazyJudge | None = None

    @classmethod
    def of(cls, recipe: Recipe) -> Models:
        config = recipe.distill
        teacher = LazyTeacher(config.teacher, recipe, config.seed)
        user = LazyTeacher(config.dialogues.user, recipe, config.seed) if config.dialogues.user else teacher
        judge = LazyJudge(config.quality.judge, recipe, config.seed) if config.quality else None
        return cls(teacher, user, judge)

    def close(self) -> None:
        for model in (self.teacher, self.user, self.judge):
            if model is not None:
                model.close()


def products(recipe: Recipe, workspace: Workspace, models: Models) -> list[Product]:
    config = recipe.distill
    writer = DialogueWriter(config.dialogues, config.seed, models.teacher, models.user)
    made = [Product("dialogues", dialogue_fingerprint(config), writer.write)]
    if config.quality is not None:

        def score(prompts: list[Prompt]) -> list:
            done = workspace.finished("dialogues.jsonl", "prompt_id", "fingerprint")
            keys = [(p.prompt_id, made[0].fingerprint) for p in prompts]
            return score_dialogues([done[k] for k in keys if k in done], models.judge)

        made.append(Product("quality", quality_fingerprint(config), score))
    return made


def run_shard(recipe: Recipe, index: int = 0, count: int = 1, progress: bool = True) -> dict[str, int]:
    """Bootstrap (or replay) the instructions, then write this shard's missing dialogues (and quality scores).
    Returns its counts."""
    config, workspace = recipe.distill, Workspace(recipe.stage_dir("distill"))
    shard_dir = workspace.shard_dir(index, count)
    models = Models.of(recipe)
    instructions = Journal(shard_dir / "instructions.jsonl")
    try:
        prompts, _ = opening_prompts(recipe, models.teacher, instructions, progress)
        mine = [p for p in prompts if in_shard(p.prompt_id, index, count)]
        made = products(recipe, workspace, models)
        for product in made:
            product.write(mine, workspace, shard_dir, config.chunk_size, progress)
    finally:
        instructions.close()
        models.close()
    unfinished = sum(len(product.missing(mine, workspace)) for product in made)
    return {"prompts": len(prompts), "in_shard": len(mine), "unfinished": unfinished}


# ---------------------------------------------------------------- merge and stats


def merge(recipe: Recipe) -> dict[str, Any]:
    """Every shard's records for the current prompts and settings -> deduped rows -> datasets + stats."""
    from datasets import Dataset

    from westwind.training.data import split

    config, workspace = recipe.distill, Workspace(recipe.stage_dir("distill"))
    models = Models.of(recipe)  # a merge asks no model anything: none is built
    prompts, stats = opening_prompts(recipe, models.teacher, None, False)
    records = {p.name: p.records(prompts, workspace) for p in products(recipe, workspace, models)}
    rows, stats["dialogues"] = dialogue_rows(records["dialogues"])
    if config.quality is not None:
        scores = {r["prompt_id"]: r["score"] for r in records["quality"]}
        rows, dropped = select(rows, scores, config.quality)
        stats["quality"] = {"kept": len(rows), "dropped": dict(dropped)}
    stats["teacher_failures"] = failure_counts(workspace)
    if not rows:
        atomic_write_text(workspace.stats, json.dumps(stats, indent=2, sort_keys=True) + "\n")
        raise RunError(f"no dialogues: every one was dropped; see {workspace.stats}")
    stats["rows"] = save_splits(
        split(Dataset.from_list(rows), config.test_split_size, config.seed), workspace.root
    )
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
    for name in ("instructions.jsonl", "dialogues.jsonl", "quality.jsonl"):
        for record in workspace.all_records(name):
            counts.update(record.get("failures", {}))
            counts["failed_items"] += record.get("status") == "failed"
    return dict(counts)


def summary(stats: dict[str, Any]) -> str:
    """The stats a person checks after a run, one topic per line."""
    lines = ["distill summary"]
    for section in ("instructions", "prompts", "dialogues", "quality"):
        if section in stats:
            values = {k: v for k, v in stats[section].items() if not isinstance(v, dict) or v}
            lines.append(f"  {section}: " + ", ".join(f"{k} {v}" for k, v in values.items()))
    lines.append(f"  teacher failures: {stats.get('teacher_failures') or 'none'}")
    lines.append(f"  rows: {stats.get('rows')}")
    return "\n".join(lines)
