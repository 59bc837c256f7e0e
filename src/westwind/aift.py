"""The AIFT pipeline: prompts -> candidates -> ratings -> preference pairs. Resumable, shardable.

Layout under `<output_dir>/aift`:

    shards/<i>-of-<N>/generated.jsonl   one record per (prompt, generator), appended as it finishes
    shards/<i>-of-<N>/judged.jsonl      one record per prompt: its candidates with ratings
    ratings.jsonl                       side file: every judged prompt, all candidates and ratings
    dataset/                            DatasetDict (train[, test]) for the dpo stage (`@aift`)
    train.jsonl, test.jsonl, stats.json

Journals are append-only (flush + fsync per record); the last record for a key wins, a truncated last line
is ignored, and a failed record is retried on the next run. Work done by any shard is reused by every other
run, so the shard count may change between runs. Records carry a fingerprint of the settings that produced
them: changing a generator or the judge redoes exactly the affected work.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from westwind.aift_config import AIFTConfig, GeneratorConfig, fingerprint_fields
from westwind.binarize import binarize_all, is_rated
from westwind.errors import DataError, RecipeError, RunError
from westwind.generation import (
    ChatRequest,
    Result,
    build_backend,
    draw_principle,
    resolved_sampling,
    stable_seed,
    with_system_prompt,
)
from westwind.io import (
    Journal,
    atomic_write_jsonl,
    atomic_write_text,
    digest,
    read_jsonl,
    save_dataset_atomic,
)
from westwind.judges import JudgeItem, Judgment, VerifierImportError, load_callable, make_judge
from westwind.prompts import Prompt, in_shard, load_prompts, normalize_text
from westwind.recipe import Recipe

logger = logging.getLogger(__name__)


class AIFTError(RunError):
    """The run cannot finish as asked (e.g. a merge with missing prompts): one line, exit code 1."""


# ---------------------------------------------------------------- work layout and fingerprints


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        self.shards = root / "shards"
        self.ratings = root / "ratings.jsonl"
        self.dataset = root / "dataset"
        self.stats = root / "stats.json"

    def shard_dir(self, index: int, count: int) -> Path:
        return self.shards / f"{index:05d}-of-{count:05d}"

    def all_records(self, name: str) -> list[dict]:
        records = []
        for path in sorted(self.shards.glob(f"*/{name}")):
            records += read_jsonl(path)
        return records


def fingerprint(value: Any) -> str:
    return digest(value, 16)


def generator_fingerprints(config: AIFTConfig) -> list[str]:
    return [fingerprint([fingerprint_fields(g), config.seed]) for g in config.generators]


def judge_fingerprint(config: AIFTConfig) -> str:
    return fingerprint([fingerprint_fields(config.judge), config.seed, generator_fingerprints(config)])


def latest_ok(records: Iterable[dict], key_fields: tuple[str, ...]) -> dict[tuple, dict]:
    """The last successful record per key (records are in append order)."""
    found: dict[tuple, dict] = {}
    for record in records:
        if record.get("status") == "ok":
            found[tuple(record.get(k) for k in key_fields)] = record
    return found


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------- generation


def generator_label(generator: GeneratorConfig) -> str:
    return generator.name or generator.model


def generation_requests(
    prompt: Prompt, index: int, generator: GeneratorConfig, seed: int
) -> list[ChatRequest]:
    """One request with n samples, or n one-sample requests each under its own drawn principle."""
    sampling = resolved_sampling(generator.sampling, default_temperature=1.0)
    base_seed = stable_seed(seed, prompt.prompt_id, index)
    if not generator.principles:
        return [ChatRequest((prompt.prompt_id, None, 0), prompt.messages, sampling, generator.n, base_seed)]
    requests = []
    for sample in range(generator.n):
        principle, system = draw_principle(stable_seed(base_seed, sample, "principle"))
        messages = with_system_prompt(prompt.messages, system)
        key = (prompt.prompt_id, principle, sample)
        requests.append(ChatRequest(key, messages, sampling, 1, base_seed + sample))
    return requests


class PromptCollector:
    """Gathers a prompt's request results and journals one record once all of them are in."""

    def __init__(self, journal: Journal, index: int, generator: GeneratorConfig, fp: str, expected: int, bar):
        self.journal, self.index, self.generator, self.fp = journal, index, generator, fp
        self.expected, self.bar = expected, bar
        self.results: dict[str, list[Result]] = defaultdict(list)

    def __call__(self, result: Result) -> None:
        prompt_id = result.request.key[0]
        self.results[prompt_id].append(result)
        if len(self.results[prompt_id]) == self.expected:
            # Results arrive in completion order (async backends); candidates are stored in request order.
            results = sorted(self.results.pop(prompt_id), key=lambda r: r.request.key[2])
            self.journal.append(self.record(prompt_id, results))
            self.bar.update(1)

    def record(self, prompt_id: str, results: list[Result]) -> dict:
        failures = sum((r.failures for r in results), Counter())
        errors = [r.error for r in results if r.error]
        record = {"prompt_id": prompt_id, "generator": self.index, "fingerprint": self.fp}
        if errors:
            return {**record, "status": "failed", "error": errors[0], "failures": dict(failures)}
        candidates = [
            self.candidate(result, sample, completion)
            for result in results
            for sample, completion in enumerate(result.completions)
        ]
        return {**record, "status": "ok", "candidates": candidates, "failures": dict(failures)}

    def candidate(self, result: Result, sample: int, completion) -> dict:
        generator, request = self.generator, result.request
        return {
            "text": completion.text,
            "finish_reason": completion.finish_reason,
            "model": generator_label(generator),
            "backend": generator.backend,
            "principle": request.key[1],
            "params": {
                "model": generator.model,
                "sampling": dataclasses.asdict(request.sampling),
                "seed": request.seed,
                "sample": sample,
            },
        }


def generate(
    recipe: Recipe, prompts: list[Prompt], workspace: Workspace, journal: Journal, progress: bool
) -> None:
    config = recipe.aift
    fingerprints = generator_fingerprints(config)
    done = latest_ok(workspace.all_records("generated.jsonl"), ("prompt_id", "generator", "fingerprint"))
    for index, generator in enumerate(config.generators):
        todo = [p for p in prompts if (p.prompt_id, index, fingerprints[index]) not in done]
        if not todo:
            continue
        backend = build_backend(generator, recipe, config.seed)
        per_prompt = generator.n if generator.principles else 1
        with tqdm(
            total=len(todo),
            desc=f"generate {generator_label(generator)}",
            unit="prompt",
            disable=not progress,
        ) as bar:
            collect = PromptCollector(journal, index, generator, fingerprints[index], per_prompt, bar)
            try:
                for chunk in chunks(todo, config.chunk_size):
                    requests = [
                        r for p in chunk for r in generation_requests(p, index, generator, config.seed)
                    ]
                    backend.run(requests, collect)
            finally:
                backend.close()


# ---------------------------------------------------------------- judging


def candidates_for(
    prompts: list[Prompt], config: AIFTConfig, generated: dict[tuple, dict]
) -> dict[str, list[dict]]:
    """Each prompt's candidates, in generator order, once every generator has produced its share."""
    fingerprints = generator_fingerprints(config)
    ready = {}
    for prompt in prompts:
        keys = [(prompt.prompt_id, i, fp) for i, fp in enumerate(fingerprints)]
        if all(k in generated for k in keys):
            ready[prompt.prompt_id] = [c for k in keys for c in generated[k]["candidates"]]
    return ready


def judged_record(judgment: Judgment, prompt: Prompt, candidates: list[dict], fp: str) -> dict:
    record = {
        "prompt_id": prompt.prompt_id,
        "fingerprint": fp,
        "parse_failures": dict(judgment.parse_failures),
        "request_failures": dict(judgment.request_failures),
    }
    if judgment.error is not None:
        return {**record, "status": "failed", "error": judgment.error}
    rated = [
        {
            **c,
            "score": r.score if math.isfinite(r.score) else None,
            "aspects": r.aspects,
            "rationale": r.rationale,
        }
        for c, r in zip(candidates, judgment.ratings, strict=True)
    ]
    return {
        **record,
        "status": "ok",
        "prompt": prompt.messages,
        "reference": prompt.reference,
        "candidates": rated,
    }


def judge(
    recipe: Recipe, prompts: list[Prompt], workspace: Workspace, journal: Journal, progress: bool
) -> None:
    config = recipe.aift
    fp = judge_fingerprint(config)
    judged = latest_ok(workspace.all_records("judged.jsonl"), ("prompt_id", "fingerprint"))
    generated = latest_ok(workspace.all_records("generated.jsonl"), ("prompt_id", "generator", "fingerprint"))
    ready = candidates_for(prompts, config, generated)
    todo = [p for p in prompts if p.prompt_id in ready and (p.prompt_id, fp) not in judged]
    if not todo:
        return
    teacher = make_judge(config.judge, recipe, config.seed)
    by_id = {p.prompt_id: p for p in todo}

    with tqdm(
        total=len(todo), desc=f"judge ({config.judge.kind})", unit="prompt", disable=not progress
    ) as bar:

        def on_judgment(judgment: Judgment) -> None:
            prompt = by_id[judgment.item.key]
            journal.append(judged_record(judgment, prompt, ready[prompt.prompt_id], fp))
            bar.update(1)

        try:
            for chunk in chunks(todo, config.chunk_size):
                items = [
                    JudgeItem(p.prompt_id, p.messages, [c["text"] for c in ready[p.prompt_id]], p.reference)
                    for p in chunk
                ]
                teacher.judge(items, on_judgment)
        finally:
            teacher.close()


# ---------------------------------------------------------------- running a shard


def check_inputs(recipe: Recipe) -> None:
    """Fail before loading any model when @sft/@rm points at nothing or the verifier cannot be imported."""
    config = recipe.aift
    if config.judge.kind == "verifier":
        try:
            load_callable(config.judge.function)
        except VerifierImportError as error:
            raise RecipeError(recipe.path, "aift.judge.function", str(error)) from None
    endpoints = [(f"aift.generators[{i}].model", g) for i, g in enumerate(config.generators)]
    endpoints.append(("aift.judge.model", config.judge))
    for key, endpoint in endpoints:
        if endpoint.model in ("@sft", "@rm") and endpoint.backend != "openai":
            path = Path(recipe.resolve_reference(endpoint.model))
            if not path.exists():
                raise RecipeError(
                    recipe.path,
                    key,
                    f"{endpoint.model} is {path}, which does not exist yet (run {endpoint.model[1:]})",
                )


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


def run_shard(recipe: Recipe, index: int = 0, count: int = 1, progress: bool = True) -> dict[str, Any]:
    """Generate and judge this shard's prompts, reusing every finished record. Returns its counts."""
    check_inputs(recipe)
    workspace = Workspace(recipe.stage_dir("aift"))
    prompts, counts = load_shard_prompts(recipe, index, count)
    shard_dir = workspace.shard_dir(index, count)
    generated, judged = Journal(shard_dir / "generated.jsonl"), Journal(shard_dir / "judged.jsonl")
    try:
        generate(recipe, prompts, workspace, generated, progress)
        judge(recipe, prompts, workspace, judged, progress)
    finally:
        generated.close()
        judged.close()
    fp = judge_fingerprint(recipe.aift)
    done = latest_ok(workspace.all_records("judged.jsonl"), ("prompt_id", "fingerprint"))
    counts["judged"] = sum((p.prompt_id, fp) in done for p in prompts)
    counts["unfinished"] = len(prompts) - counts["judged"]
    return counts


# ---------------------------------------------------------------- merge, binarize, save


def merge(recipe: Recipe, allow_partial: bool = False, push: bool = True) -> dict[str, Any]:
    """Collect every shard's judged records for the current prompts and settings, then binarize and save."""
    workspace = Workspace(recipe.stage_dir("aift"))
    prompts, prompt_counts = load_shard_prompts(recipe, 0, 1)
    prompt_counts.pop("in_shard")
    fp = judge_fingerprint(recipe.aift)
    judged = latest_ok(workspace.all_records("judged.jsonl"), ("prompt_id", "fingerprint"))
    records = [judged[(p.prompt_id, fp)] for p in prompts if (p.prompt_id, fp) in judged]
    missing = len(prompts) - len(records)
    if missing and not allow_partial:
        raise AIFTError(
            f"{missing} of {len(prompts)} prompts are not judged yet (failed or not run): rerun run_aift.py "
            "(with the same --shard values) to retry them, or pass --allow-partial"
        )
    records.sort(key=lambda r: r["prompt_id"])
    atomic_write_jsonl(workspace.ratings, records)
    stats = {"prompts": {**prompt_counts, "missing": missing}, **failure_stats(workspace)}
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


def failure_stats(workspace: Workspace) -> dict[str, Any]:
    """Every failure any run recorded, by reason: retried transport errors, failed items, parse failures."""
    generation, judging, parsing = Counter(), Counter(), Counter()
    for record in workspace.all_records("generated.jsonl"):
        generation.update(record.get("failures", {}))
        generation["failed_items"] += record.get("status") == "failed"
    for record in workspace.all_records("judged.jsonl"):
        judging.update(record.get("request_failures", {}))
        judging["failed_items"] += record.get("status") == "failed"
        parsing.update(record.get("parse_failures", {}))
    return {
        "generation_failures": dict(generation),
        "judge_failures": dict(judging),
        "parse_failures": dict(parsing),
    }


def finish(
    recipe: Recipe, workspace: Workspace, records: list[dict], stats: dict, push: bool
) -> dict[str, Any]:
    from westwind.data import split

    config = recipe.aift
    rows, dropped = binarize_all(records, config.binarize, config.seed)
    stats.update(pair_stats(records, rows, dropped, config))
    atomic_write_text(workspace.stats, json.dumps(stats, indent=2, sort_keys=True) + "\n")
    if not rows:
        raise AIFTError(
            f"no preference pairs: every judged prompt was dropped ({dict(dropped)}); see {workspace.stats}"
        )
    from datasets import Dataset

    dataset = split(Dataset.from_list(rows), config.test_split_size, config.seed)
    save_dataset_atomic(dataset, workspace.dataset)
    for name, part in dataset.items():
        atomic_write_jsonl(workspace.root / f"{name}.jsonl", part.to_list())
    stats["pairs"] = {name: len(part) for name, part in dataset.items()}
    atomic_write_text(workspace.stats, json.dumps(stats, indent=2, sort_keys=True) + "\n")
    if push and config.push_to_hub:
        dataset.push_to_hub(config.push_to_hub)
    return stats


def pair_stats(records: list[dict], rows: list[dict], dropped: Counter, config: AIFTConfig) -> dict[str, Any]:
    candidates = [c for r in records for c in r["candidates"]]
    scores = [c["score"] for c in candidates if is_rated(c)]
    ratios = [len(r["chosen"][0]["content"]) / max(1, len(r["rejected"][0]["content"])) for r in rows]
    return {
        "judged": len(records),
        "candidates": len(candidates),
        "candidates_by_model": dict(Counter(c.get("model", "") for c in candidates)),
        "rated_candidates": len(scores),
        # Many duplicates usually mean a server ignored temperature/seed: such samples make no pairs.
        "duplicate_candidates": sum(
            len(r["candidates"]) - len({normalize_text(c["text"]) for c in r["candidates"]}) for r in records
        ),
        "dropped": dict(dropped),
        "score_histogram": histogram(scores),
        "length_ratio_chosen_rejected": {
            "mean": statistics.fmean(ratios) if ratios else None,
            "median": statistics.median(ratios) if ratios else None,
        },
        "binarize": dataclasses.asdict(config.binarize),
    }


def histogram(scores: list[float], bins: int = 8) -> dict[str, int]:
    """Counts per equal-width bin over the observed range, keyed by the bin's lower edge."""
    if not scores:
        return {}
    low, high = min(scores), max(scores)
    if low == high:
        return {f"{low:g}": len(scores)}
    width = (high - low) / bins
    counts = Counter(min(bins - 1, int((s - low) / width)) for s in scores)
    return {f"{low + i * width:.3g}": counts.get(i, 0) for i in range(bins)}


def summary(stats: dict[str, Any]) -> str:
    """The stats a person checks after a run, one topic per line."""
    prompts = stats.get("prompts", {})
    lines = [
        "AIFT summary",
        "  prompts: " + ", ".join(f"{k} {v}" for k, v in prompts.items()),
        f"  candidates: {stats.get('candidates')} ({stats.get('rated_candidates')} rated) from "
        + ", ".join(f"{m} {n}" for m, n in stats.get("candidates_by_model", {}).items()),
        f"  judged prompts: {stats.get('judged')}; duplicate candidates: {stats.get('duplicate_candidates')}",
        f"  pairs: {stats.get('pairs')}; dropped: {stats.get('dropped') or 'none'}",
        f"  parse failures: {stats.get('parse_failures') or 'none'}",
        f"  generation failures: {stats.get('generation_failures') or 'none'}",
        f"  judge failures: {stats.get('judge_failures') or 'none'}",
        f"  score histogram: {stats.get('score_histogram')}",
        f"  chosen/rejected length ratio: {stats.get('length_ratio_chosen_rejected')}",
    ]
    return "\n".join(lines)
