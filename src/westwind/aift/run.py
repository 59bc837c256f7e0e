"""Running the stage: a shard's generation, judging and (with aift.revisions) revision pairs, the merge,
rebinarizing, and writing the outputs, which are always exactly the last run's (no file of an earlier run
survives beside them)."""

from __future__ import annotations

import json
import random
import shutil
from typing import Any

from westwind.aift.binarize import binarize_all
from westwind.aift.config import AIFTConfig, revision_teacher
from westwind.aift.constitution import pair_rows
from westwind.aift.generate import generate
from westwind.aift.principles import principle_mix
from westwind.aift.prompts import Prompt, in_shard, load_prompts
from westwind.aift.rate import judge
from westwind.aift.revise import revise
from westwind.aift.stats import failure_stats, pair_stats, revision_failure_stats
from westwind.aift.workspace import (
    JUDGED_KEY,
    REVISED_KEY,
    Keys,
    ShardRun,
    Workspace,
    make_keys,
    resolve_models,
)
from westwind.errors import DataError, RunError
from westwind.io import (
    Journal,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    read_json,
    read_jsonl,
    save_dataset_atomic,
)
from westwind.recipe.core import Recipe
from westwind.rounds import round_prompts
from westwind.seeding import stable_seed


class AIFTError(RunError):
    """The run cannot finish as asked (e.g. a merge with missing prompts): one line, exit code 1."""


def load_shard_prompts(recipe: Recipe, index: int, count: int) -> tuple[list[Prompt], dict[str, int]]:
    config = recipe.aift
    source = config.principle_source()
    prompts, counts = load_prompts(config.prompts, config.seed, config.judge.reference_column, source)
    if source is not None:
        check_sources(config, prompts)
    if config.judge.kind == "verifier" and all(p.reference is None for p in prompts):
        raise DataError(
            f"aift prompts: the verifier judge needs a {config.judge.reference_column!r} column "
            "(aift.judge.reference_column); list it in the datasets' `columns`"
        )
    if recipe.rounds.count > 1:  # iterative dDPO: this round's slice of the pool (westwind.rounds)
        pool = len(prompts)
        prompts = round_prompts(prompts, recipe.rounds, recipe.round, config.seed)
        counts = {**counts, "other_rounds": pool - len(prompts), "prompts": len(prompts)}
    mine = [p for p in prompts if in_shard(p.prompt_id, index, count)]
    return mine, {**counts, "in_shard": len(mine)}


def check_sources(config: AIFTConfig, prompts: list[Prompt]) -> None:
    """Every prompt's source has a principle mix in every by-source generator (else one line, exit 2)."""
    sources = sorted({p.source for p in prompts}, key=str)
    for index, generator in enumerate(config.generators):
        mix = principle_mix(generator.principles)
        if mix is None or mix.by_source is None:
            continue
        for source in sources:
            try:
                mix.weights_for(source)
            except ValueError as error:
                raise DataError(f"aift.generators[{index}].{error}") from None


def current_keys(recipe: Recipe, workspace: Workspace):
    models = resolve_models(recipe.aift, recipe, workspace)
    return models, make_keys(recipe.aift, models)


def run_shard(recipe: Recipe, index: int = 0, count: int = 1, progress: bool = True) -> dict[str, Any]:
    """Generate, judge (and revise) this shard's prompts, reusing every finished record. Returns its counts."""
    workspace = Workspace(recipe.stage_dir("aift"))
    prompts, counts = load_shard_prompts(recipe, index, count)
    models, keys = current_keys(recipe, workspace)
    shard_dir = workspace.shard_dir(index, count)
    journals = {name: Journal(shard_dir / f"{name}.jsonl") for name in ("generated", "judged", "revised")}
    run = ShardRun(recipe.aift, prompts, models, keys, workspace, progress)
    try:
        generate(run, journals["generated"])
        judge(run, journals["judged"])
        revise(run, journals["revised"])
    finally:
        for journal in journals.values():
            journal.close()
    judged, revised = finished(workspace, prompts, keys, recipe.aift)
    counts["judged"] = len(judged)
    if recipe.aift.revisions is not None:
        counts["revised"] = len(revised)
    done = {r["prompt_id"] for r in judged}
    if revised is not None:
        done &= {r["prompt_id"] for r in revised}
    counts["unfinished"] = len(prompts) - len(done)  # prompts missing a judgment or a revision
    return counts


def finished(
    workspace: Workspace, prompts: list[Prompt], keys: Keys, config: AIFTConfig
) -> tuple[list[dict], list[dict] | None]:
    """The current settings' judged records and (with aift.revisions) revision records, in prompt order."""
    judged = workspace.finished("judged.jsonl", *JUDGED_KEY)
    judged_records = [judged[keys.judged(p)] for p in prompts if keys.judged(p) in judged]
    if config.revisions is None:
        return judged_records, None
    revised = workspace.finished("revised.jsonl", *REVISED_KEY)
    return judged_records, [revised[keys.revised(p)] for p in prompts if keys.revised(p) in revised]


def merge(recipe: Recipe, allow_partial: bool = False, push: bool = True) -> dict[str, Any]:
    """Collect every shard's judged records for the current prompts and settings, then binarize and save."""
    workspace = Workspace(recipe.stage_dir("aift"))
    prompts, prompt_counts = load_shard_prompts(recipe, 0, 1)
    prompt_counts.pop("in_shard")
    _, keys = current_keys(recipe, workspace)
    records, revisions = finished(workspace, prompts, keys, recipe.aift)
    missing = len(prompts) - len(records)
    unrevised = len(prompts) - len(revisions) if revisions is not None else 0
    if (missing or unrevised) and not allow_partial:
        raise AIFTError(
            f"{missing} of {len(prompts)} prompts are not judged yet and {unrevised} not revised (failed or "
            "not run): rerun run_aift.py (with the same --shard values) to retry them, or pass --allow-partial"
        )
    records.sort(key=lambda r: r["prompt_id"])
    atomic_write_jsonl(workspace.ratings, records)
    atomic_write_json(workspace.merged_keys, keys.settings())
    stats = {"prompts": {**prompt_counts, "missing": missing}, **failure_stats(workspace, prompts, keys)}
    if revisions is not None:
        revisions.sort(key=lambda r: r["prompt_id"])
        atomic_write_jsonl(workspace.revisions, revisions)
        stats["revision_failures"] = revision_failure_stats(workspace, prompts, keys)
        stats["prompts"]["unrevised"] = unrevised
    return finish(recipe, workspace, records, revisions, stats, push)


def rebinarize(recipe: Recipe, push: bool = True) -> dict[str, Any]:
    """Rebuild the pairs from ratings.jsonl (and revisions.jsonl) under the recipe's (new) binarize policy;
    no model runs. Refused when those files were merged under other generator, judge or revision settings."""
    workspace = Workspace(recipe.stage_dir("aift"))
    if not workspace.ratings.exists():
        raise AIFTError(f"{workspace.ratings} does not exist: run (or --merge) the AIFT stage first")
    if (
        workspace.merged_keys.exists()
        and read_json(workspace.merged_keys) != current_keys(recipe, workspace)[1].settings()
    ):
        raise AIFTError(
            f"{workspace.ratings.name} was made under other generator, judge or revision settings than the "
            "recipe's: run the AIFT stage (without --rebinarize) to redo what they change"
        )
    records = read_jsonl(workspace.ratings)
    revisions = None
    if recipe.aift.revisions is not None:
        if not workspace.revisions.exists():
            raise AIFTError(f"{workspace.revisions} does not exist: run the AIFT stage with aift.revisions")
        revisions = read_jsonl(workspace.revisions)
    previous = json.loads(workspace.stats.read_text()) if workspace.stats.exists() else {}
    names = ["prompts", "generation_failures", "judge_failures", "parse_failures"]
    if revisions is not None:
        names.append("revision_failures")
    kept = {k: previous[k] for k in names if k in previous}
    if revisions is None and "prompts" in kept:
        kept["prompts"] = {k: v for k, v in kept["prompts"].items() if k != "unrevised"}
    return finish(recipe, workspace, records, revisions, kept, push)


def write_stats(workspace: Workspace, stats: dict) -> None:
    atomic_write_text(workspace.stats, json.dumps(stats, indent=2, sort_keys=True) + "\n")


def clear_outputs(workspace: Workspace, keep: set[str], revisions: bool) -> None:
    """Remove the dataset and split files an earlier run left, except the splits named in `keep` (and
    revisions.jsonl when this run made revision pairs)."""
    if not keep:
        shutil.rmtree(workspace.dataset, ignore_errors=True)
    merged = {workspace.ratings, *([workspace.revisions] if revisions else [])}
    for path in workspace.split_files():
        if path not in merged and path.stem not in keep:
            path.unlink()


def finish(
    recipe: Recipe,
    workspace: Workspace,
    records: list[dict],
    revisions: list[dict] | None,
    stats: dict,
    push: bool,
) -> dict[str, Any]:
    config = recipe.aift
    rated, dropped = binarize_all(records, config.binarize, config.seed)
    stats.update(pair_stats(records, rated, dropped, config))
    rows = [{**row, "source": "ratings"} for row in rated]
    if revisions is not None:
        rows = [{**row, "principle": None} for row in rows]
        revised, stats["revisions"] = pair_rows(
            revisions, config.revisions.answerer.model, revision_teacher(config).model
        )
        rows += revised
        stats["pairs_by_source"] = {"ratings": len(rated), "revisions": len(revised)}
    if not rows:
        clear_outputs(workspace, keep=set(), revisions=revisions is not None)
        write_stats(workspace, stats)
        revision_drops = stats.get("revisions", {}).get("dropped", {})
        raise AIFTError(
            f"no preference pairs: every judged prompt was dropped ({dict(dropped)}"
            + (f"; revisions: {revision_drops}" if revisions is not None else "")
            + f"); see {workspace.stats}"
        )
    dataset = split_by_prompt(rows, config.test_split_size, config.seed)
    stats["pairs"] = {name: len(part) for name, part in dataset.items()}
    save_dataset_atomic(dataset, workspace.dataset)
    for name, part in dataset.items():
        atomic_write_jsonl(workspace.root / f"{name}.jsonl", part.to_list())
    clear_outputs(workspace, keep=set(dataset), revisions=revisions is not None)
    write_stats(workspace, stats)
    if push and config.push_to_hub:
        dataset.push_to_hub(config.push_to_hub)
    return stats


def split_by_prompt(rows: list[dict], test_split_size: float | None, seed: int):
    """westwind.training.data's seeded train/test split of the rated pairs; a revision pair joins the split holding
    its prompt's rated pair (else a seeded draw), so that no prompt is in both splits."""
    # Heavy (datasets, and westwind.training.data with it): loaded only when a dataset is written.
    from datasets import Dataset, DatasetDict

    from westwind.training.data import split

    rated = [row for row in rows if row["source"] == "ratings"]
    revised = [row for row in rows if row["source"] != "ratings"]
    if not test_split_size or not revised:
        return split(Dataset.from_list(rows), test_split_size, seed)
    features = Dataset.from_list(rows).features  # one schema for every split (None-only columns included)
    parts: dict[str, list[dict]] = {"train": [], "test": []}
    if len(rated) > 1:
        for name, part in split(Dataset.from_list(rated, features=features), test_split_size, seed).items():
            parts[name] = part.to_list()
    home = {row["prompt_id"]: name for name, part in parts.items() for row in part}
    for row in revised + ([] if len(rated) > 1 else rated):
        draw = random.Random(stable_seed(seed, row["prompt_id"], "split")).random()
        parts[home.get(row["prompt_id"]) or ("test" if draw < test_split_size else "train")].append(row)
    if not parts["train"]:
        raise DataError(f"test_split_size: {test_split_size} of {len(rows)} pair(s) leaves no training pair")
    return DatasetDict(
        {name: Dataset.from_list(part, features=features) for name, part in parts.items() if part}
    )
