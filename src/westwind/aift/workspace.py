"""The AIFT work folder and the keys that decide which finished work a run may reuse.

Layout under `<output_dir>/aift`:

    shards/<i>-of-<N>/generated.jsonl   one record per (prompt, generator), appended as it finishes
    shards/<i>-of-<N>/judged.jsonl      one record per prompt: its candidates with ratings, appended as each
                                        prompt's judgment finishes
    shards/<i>-of-<N>/revised.jsonl     with aift.revisions: one answer/critique/revision record per prompt
    model-digests.json                  sha256 of model files, by path, size and mtime (a cache)
    ratings.jsonl                       every judged prompt of the last merge, all candidates and ratings
    revisions.jsonl                     with aift.revisions: every revision record of the last merge
    merged-keys.json                    the settings keys of that merge (checked by --rebinarize)
    dataset/                            DatasetDict (train[, test]) for the dpo stage (`@aift`)
    train.jsonl[, test.jsonl], stats.json

Journals are append-only (flush + fsync per record); the last record for a key wins, a truncated last line
is ignored, and a failed record is retried on the next run. A record's key holds everything that produced
it: a generator's settings and its model's content identity (westwind.endpoints), and for a judged prompt
the judge's identity (`judge_identity`: for a verifier its code, for a model judge its settings, model and
the parser's rules), every generator's key, and the prompt's own judge inputs (its
conversation and reference); for a revision record the answerer's and the teacher's settings and identities,
the constitution, the critique and revision requests, and the prompt's conversation. Changing any of them
redoes exactly the affected work.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from westwind.aift.config import AIFTConfig, JudgeConfig, fingerprint_fields, revision_teacher
from westwind.aift.constitution import revision_settings
from westwind.aift.principles import principle_mix
from westwind.aift.prompts import Prompt
from westwind.callables import source_digest
from westwind.endpoints import ResolvedModel, resolve_model
from westwind.io import ShardedJournals, digest
from westwind.judges.parsers import PARSER_VERSION

GENERATED_KEY = ("prompt_id", "generator", "fingerprint")
JUDGED_KEY = ("prompt_id", "fingerprint")
REVISED_KEY = ("prompt_id", "fingerprint")


class Workspace(ShardedJournals):
    def __init__(self, root: Path):
        super().__init__(root)
        self.ratings = root / "ratings.jsonl"
        self.revisions = root / "revisions.jsonl"
        self.merged_keys = (
            root / "merged-keys.json"
        )  # the settings keys ratings/revisions.jsonl were made under
        self.dataset = root / "dataset"
        self.stats = root / "stats.json"
        self.digests = root / "model-digests.json"

    def split_files(self) -> list[Path]:
        return sorted(self.root.glob("*.jsonl"))


def fingerprint(value: Any) -> str:
    return digest(value, 16)


@dataclass
class Keys:
    """The current settings' keys: one per generator, the judge's and (with aift.revisions) the revisions'
    (both to combine with each prompt's inputs)."""

    generators: list[str]
    judge: str
    revisions: str | None = None
    by_source: list[bool] | None = None  # per generator: whether its principle mix depends on the source

    def generated(self, prompt: Prompt, index: int) -> tuple:
        key = self.generators[index]
        if self.by_source and self.by_source[index]:  # the prompt's source picks its principle mix
            key = fingerprint([key, prompt.source])
        return (prompt.prompt_id, index, key)

    def judged(self, prompt: Prompt) -> tuple:
        inputs = [self.judge, prompt.messages, prompt.reference]
        if self.by_source and any(self.by_source):
            inputs.append(prompt.source)
        return (prompt.prompt_id, fingerprint(inputs))

    def settings(self) -> dict[str, Any]:
        """What the merged files depend on besides the prompts (the judge's key holds every generator's)."""
        return {"judge": self.judge, "revisions": self.revisions}

    def revised(self, prompt: Prompt) -> tuple:
        return (prompt.prompt_id, fingerprint([self.revisions, prompt.messages]))


@dataclass
class Models:
    """Each generator's and the judge's resolved model (None for a verifier), and with aift.revisions the
    answerer's and the revising teacher's."""

    generators: list[ResolvedModel]
    judge: ResolvedModel | None
    answerer: ResolvedModel | None = None
    reviser: ResolvedModel | None = None


def resolve_models(config: AIFTConfig, recipe: Any, workspace: Workspace) -> Models:
    generators = [resolve_model(g, recipe, workspace.digests) for g in config.generators]
    judge = None
    if config.judge.kind != "verifier":
        judge = resolve_model(config.judge, recipe, workspace.digests)
    if config.revisions is None:
        return Models(generators, judge)
    answerer = resolve_model(config.revisions.answerer, recipe, workspace.digests)
    reviser = resolve_model(revision_teacher(config), recipe, workspace.digests)
    return Models(generators, judge, answerer, reviser)


def judge_identity(judge: JudgeConfig, model: ResolvedModel | None) -> dict[str, Any]:
    """What decides a judge's verdicts besides the candidates. A verifier: its function's name, the digest of
    its module's source and the user's `version`, and the reference column (nothing else changes a
    verdict). A model judge: its settings, its model's content identity and the reply-reading rules."""
    if judge.kind == "verifier":
        return {
            "kind": judge.kind,
            "function": judge.function,
            "source": source_digest(judge.function),
            "version": None if judge.version is None else str(judge.version),
            "reference_column": judge.reference_column,
        }
    identity = {"settings": fingerprint_fields(judge), "model": model.fingerprint if model else None}
    if judge.kind in ("ultrafeedback", "pairwise"):
        identity["parser"] = PARSER_VERSION
    return identity


def make_keys(config: AIFTConfig, models: Models) -> Keys:
    generators = [
        fingerprint([fingerprint_fields(g), config.seed, m.fingerprint])
        for g, m in zip(config.generators, models.generators, strict=True)
    ]
    judge = fingerprint([judge_identity(config.judge, models.judge), config.seed, generators])
    mixes = [principle_mix(g.principles) for g in config.generators]
    by_source = [m is not None and m.by_source is not None for m in mixes]
    return Keys(generators, judge, revisions_key(config, models), by_source)


def revisions_key(config: AIFTConfig, models: Models) -> str | None:
    if config.revisions is None:
        return None
    answerer = [fingerprint_fields(config.revisions.answerer), models.answerer.fingerprint]
    reviser = [fingerprint_fields(revision_teacher(config)), models.reviser.fingerprint]
    return fingerprint([answerer, reviser, revision_settings(config.revisions), config.seed])


@dataclass
class ShardRun:
    """What generation and judging of one shard share: its settings, prompts, models, keys and folder."""

    config: AIFTConfig
    prompts: list[Prompt]
    models: Models
    keys: Keys
    workspace: Workspace
    progress: bool = True

    def in_chunks(self, todo: list[Prompt], description: str) -> Iterator[tuple[list[Prompt], tqdm]]:
        """`todo` in units of `chunk_size` prompts, with the progress bar (one tick per finished prompt)."""
        with tqdm(total=len(todo), desc=description, unit="prompt", disable=not self.progress) as bar:
            for chunk in chunks(todo, self.config.chunk_size):
                yield chunk, bar


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
