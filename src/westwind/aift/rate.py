"""Judging: each prompt's candidates (once every generator has produced its share) go to the teacher;
each prompt's judgment is journaled as soon as the judge yields it."""

from __future__ import annotations

import math

from westwind.aift.prompts import Prompt
from westwind.aift.workspace import GENERATED_KEY, JUDGED_KEY, Keys, ShardRun
from westwind.io import Journal
from westwind.judges import JudgeItem, Judgment, Rating, make_judge


def ready_candidates(
    prompts: list[Prompt], keys: Keys, generated: dict[tuple, dict]
) -> dict[str, list[dict]]:
    """Each prompt's candidates, in generator order, once every generator has produced its share."""
    ready = {}
    for prompt in prompts:
        wanted = [keys.generated(prompt, i) for i in range(len(keys.generators))]
        if all(k in generated for k in wanted):
            ready[prompt.prompt_id] = [c for k in wanted for c in generated[k]["candidates"]]
    return ready


def rated_candidate(candidate: dict, rating: Rating) -> dict:
    rated = {
        **candidate,
        "score": rating.score if math.isfinite(rating.score) else None,
        "aspects": rating.aspects,
        "rationale": rating.rationale,
    }
    if rating.types:
        rated["types"] = rating.types
    if rating.positions:
        rated["positions"] = rating.positions
    return rated


def judged_record(judgment: Judgment, prompt: Prompt, candidates: list[dict], key: str) -> dict:
    record = {
        "prompt_id": prompt.prompt_id,
        "fingerprint": key,
        "parse_failures": dict(judgment.parse_failures),
        "request_failures": dict(judgment.request_failures),
    }
    if judgment.order_check:
        record["order_check"] = dict(judgment.order_check)
    if prompt.source is not None:
        record["source"] = prompt.source
    if judgment.error is not None:
        return {**record, "status": "failed", "error": judgment.error}
    rated = [rated_candidate(c, r) for c, r in zip(candidates, judgment.ratings, strict=True)]
    return {
        **record,
        "status": "ok",
        "prompt": prompt.messages,
        "reference": prompt.reference,
        "candidates": rated,
    }


def judge(run: ShardRun, journal: Journal) -> None:
    config, prompts, keys, workspace = run.config, run.prompts, run.keys, run.workspace
    judged = workspace.finished("judged.jsonl", *JUDGED_KEY)
    ready = ready_candidates(prompts, keys, workspace.finished("generated.jsonl", *GENERATED_KEY))
    todo = [p for p in prompts if p.prompt_id in ready and keys.judged(p) not in judged]
    if not todo:
        return
    teacher = make_judge(config.judge, run.models.judge, config.seed)
    by_id = {p.prompt_id: p for p in todo}
    try:
        for chunk, bar in run.in_chunks(todo, f"judge ({config.judge.kind})"):
            items = [
                JudgeItem(p.prompt_id, p.messages, [c["text"] for c in ready[p.prompt_id]], p.reference)
                for p in chunk
            ]
            for judgment in teacher.judge(items):
                prompt = by_id[judgment.item.key]
                key = keys.judged(prompt)[1]
                journal.append(judged_record(judgment, prompt, ready[prompt.prompt_id], key))
                bar.update(1)
    finally:
        teacher.close()
