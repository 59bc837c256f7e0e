"""Running the stage: a shard's generation and judging, the merge, rebinarizing, and writing the outputs,
which are always exactly the last run's (no file of an earlier run survives beside them)."""

from __future__ import annotations

import json
import shutil
from typing import Any

from westwind.aift.generate import generate
from westwind.aift.rate import judge
from westwind.aift.stats import failure_stats, pair_stats
from westwind.aift.workspace import JUDGED_KEY, ShardRun, Workspace, latest_ok, make_keys, resolve_models
from westwind.binarize import binarize_all
from westwind.errors import DataError, RunError
from westwind.io import Journal, atomic_write_jsonl, atomic_write_text, read_jsonl, save_dataset_atomic
from westwind.prompts import Prompt, in_shard, load_prompts
from westwind.recipe import Recipe


class AIFTError(RunError):
    """The run cannot finish as asked (e.g. a merge with missing prompts): one line, exit code 1."""


def load_shard_prompts(recipe: Recipe, index: int, count: int) -> tuple[list[Prompt], dict[str, int]]:
    config = recipe.aift
    prompts, counts = load_prompts(config.prompts, config.seed, config.judge.reference_column)
    if config.judge.kind == "verifier" and all(p.reference is None for p in prompts):
        raise DataError(
            f"aift prompts: the verifier judge needs a {config.judge.reference_column!r} column "
            "(aift.judge.reference_column); list it in the datasets' `columns`"
        )
    mine = [p for p in prompts if in_shard(p.prompt_id, index, count)]
    return mine, {**counts, "in_shard": len(mine)}


def current_keys(recipe: Recipe, workspace: Workspace):
    models = resolve_models(recipe.aift, recipe, workspace)
    return models, make_keys(recipe.aift, models)


def run_shard(recipe: Recipe, index: int = 0, count: int = 1, progress: bool = True) -> dict[str, Any]:
    """Generate and judge this shard's prompts, reusing every finished record. Returns its counts."""
    workspace = Workspace(recipe.stage_dir("aift"))
    prompts, counts = load_shard_prompts(recipe, index, count)
    models, keys = current_keys(recipe, workspace)
    shard_dir = workspace.shard_dir(index, count)
    generated, judged = Journal(shard_dir / "generated.jsonl"), Journal(shard_dir / "judged.jsonl")
    run = ShardRun(recipe.aift, prompts, models, keys, workspace, progress)
    try:
        generate(run, generated)
        judge(run, judged)
    finally:
        generated.close()
        judged.close()
    done = latest_ok(workspace.all_records("judged.jsonl"), JUDGED_KEY)
    counts["judged"] = sum(keys.judged(p) in done for p in prompts)
    counts["unfinished"] = len(prompts) - counts["judged"]
    return counts


def merge(recipe: Recipe, allow_partial: bool = False, push: bool = True) -> dict[str, Any]:
    """Collect every shard's judged records for the current prompts and settings, then binarize and save."""
    workspace = Workspace(recipe.stage_dir("aift"))
    prompts, prompt_counts = load_shard_prompts(recipe, 0, 1)
    prompt_counts.pop("in_shard")
    _, keys = current_keys(recipe, workspace)
    judged = latest_ok(workspace.all_records("judged.jsonl"), JUDGED_KEY)
    records = [judged[keys.judged(p)] for p in prompts if keys.judged(p) in judged]
    missing = len(prompts) - len(records)
    if missing and not allow_partial:
        raise AIFTError(
            f"{missing} of {len(prompts)} prompts are not judged yet (failed or not run): rerun run_aift.py "
            "(with the same --shard values) to retry them, or pass --allow-partial"
        )
    records.sort(key=lambda r: r["prompt_id"])
    atomic_write_jsonl(workspace.ratings, records)
    stats = {"prompts": {**prompt_counts, "missing": missing}, **failure_stats(workspace, prompts, keys)}
    return finish(recipe, workspace, records, stats, push)


def rebinarize(recipe: Recipe, push: bool = True) -> dict[str, Any]:
    """Rebuild the pairs from ratings.jsonl under the recipe's (new) binarize policy; no model runs."""
    workspace = Workspace(recipe.stage_dir("aift"))
    if not workspace.ratings.exists():
        raise AIFTError(f"{workspace.ratings} does not exist: run (or --merge) the AIFT stage first")
    records = read_jsonl(workspace.ratings)
    previous = json.loads(workspace.stats.read_text()) if workspace.stats.exists() else {}
    kept = {
        k: previous[k]
        for k in ("prompts", "generation_failures", "judge_failures", "parse_failures")
        if k in previous
    }
    return finish(recipe, workspace, records, kept, push)


def write_stats(workspace: Workspace, stats: dict) -> None:
    atomic_write_text(workspace.stats, json.dumps(stats, indent=2, sort_keys=True) + "\n")


def clear_outputs(workspace: Workspace, keep: set[str]) -> None:
    """Remove the dataset and split files an earlier run left, except the splits named in `keep`."""
    if not keep:
        shutil.rmtree(workspace.dataset, ignore_errors=True)
    for path in workspace.split_files():
        if path != workspace.ratings and path.stem not in keep:
            path.unlink()


def finish(
    recipe: Recipe, workspace: Workspace, records: list[dict], stats: dict, push: bool
) -> dict[str, Any]:
    # Heavy (datasets, and westwind.data with it): loaded only when a dataset is written.
    from datasets import Dataset

    from westwind.data import split

    config = recipe.aift
    rows, dropped = binarize_all(records, config.binarize, config.seed)
    stats.update(pair_stats(records, rows, dropped, config))
    if not rows:
        clear_outputs(workspace, keep=set())
        write_stats(workspace, stats)
        raise AIFTError(
            f"no preference pairs: every judged prompt was dropped ({dict(dropped)}); see {workspace.stats}"
        )
    dataset = split(Dataset.from_list(rows), config.test_split_size, config.seed)
    stats["pairs"] = {name: len(part) for name, part in dataset.items()}
    save_dataset_atomic(dataset, workspace.dataset)
    for name, part in dataset.items():
        atomic_write_jsonl(workspace.root / f"{name}.jsonl", part.to_list())
    clear_outputs(workspace, keep=set(dataset))
    write_stats(workspace, stats)
    if push and config.push_to_hub:
        dataset.push_to_hub(config.push_to_hub)
    return stats
