"""What stats.json and the summary report: the current settings' work only (earlier settings' records stay
in the journals as history, but are not counted), pairs, drops, scores, and the judge's position bias."""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter, defaultdict
from typing import Any

from westwind.aift.binarize import is_rated
from westwind.aift.config import AIFTConfig
from westwind.aift.prompts import Prompt, normalize_text
from westwind.aift.workspace import Keys, Workspace


def failure_stats(workspace: Workspace, prompts: list[Prompt], keys: Keys) -> dict[str, Any]:
    """Failures recorded for the current prompts under the current settings, by reason: retried transport
    errors, failed items (later retried or not), parse failures."""
    generated = {keys.generated(p, i) for p in prompts for i in range(len(keys.generators))}
    judged = {keys.judged(p) for p in prompts}
    generation, judging, parsing = Counter(), Counter(), Counter()
    for record in workspace.all_records("generated.jsonl"):
        if (record.get("prompt_id"), record.get("generator"), record.get("fingerprint")) in generated:
            generation.update(record.get("failures", {}))
            generation["failed_items"] += record.get("status") == "failed"
    for record in workspace.all_records("judged.jsonl"):
        if (record.get("prompt_id"), record.get("fingerprint")) in judged:
            judging.update(record.get("request_failures", {}))
            judging["failed_items"] += record.get("status") == "failed"
            parsing.update(record.get("parse_failures", {}))
    return {
        "generation_failures": dict(generation),
        "judge_failures": dict(judging),
        "parse_failures": dict(parsing),
    }


def revision_failure_stats(workspace: Workspace, prompts: list[Prompt], keys: Keys) -> dict[str, int]:
    """aift.revisions: retried transport failures by reason, and failed items, for the current settings."""
    revised = {keys.revised(p) for p in prompts}
    counts = Counter()
    for record in workspace.all_records("revised.jsonl"):
        if (record.get("prompt_id"), record.get("fingerprint")) in revised:
            counts.update(record.get("failures", {}))
            counts["failed_items"] += record.get("status") == "failed"
    return dict(counts)


def score_by_position(candidates: list[dict]) -> dict[str, Any]:
    """Mean aspect rating by the position a text was shown at (1-based). Candidates are shuffled per
    aspect, so without position bias the means agree up to noise; a judge preferring text 1 shows here."""
    by_position: dict[int, list[float]] = defaultdict(list)
    for candidate in candidates:
        for aspect, position in (candidate.get("positions") or {}).items():
            rating = (candidate.get("aspects") or {}).get(aspect)
            if isinstance(rating, int | float):
                by_position[position].append(rating)
    return {
        str(position): {"mean": round(statistics.fmean(values), 4), "ratings": len(values)}
        for position, values in sorted(by_position.items())
    }


def principles_by_source(records: list[dict]) -> dict[str, dict[str, int]]:
    """Candidates by principle, per prompt source (prompts with a source: by-source principle mixes)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        if "source" in record:
            counts[str(record["source"])].update(str(c.get("principle")) for c in record["candidates"])
    return {source: dict(sorted(c.items())) for source, c in sorted(counts.items())}


def order_flips(records: list[dict], judge_kind: str) -> dict[str, Any] | None:
    """How often the judge's outcome changed with the display order: for pairwise, the share of pairs whose
    two orders disagree; for ultrafeedback, the share of reversed-order re-asks whose best text changed."""
    totals = Counter()
    for record in records:
        totals.update(record.get("order_check") or {})
    if not totals:
        return None
    checked, flipped = totals["checked"], totals["flipped"]
    what = "pairs asked in both orders" if judge_kind == "pairwise" else "requests re-asked in reversed order"
    return {
        "judge": judge_kind,
        "checked": checked,
        "flipped": flipped,
        "rate": flipped / checked if checked else None,
        "unreadable": totals["unreadable"],
        "what": what,
    }


def pair_stats(records: list[dict], rows: list[dict], dropped: Counter, config: AIFTConfig) -> dict[str, Any]:
    candidates = [c for r in records for c in r["candidates"]]
    scores = [c["score"] for c in candidates if is_rated(c)]
    ratios = [len(r["chosen"][0]["content"]) / max(1, len(r["rejected"][0]["content"])) for r in rows]
    stats = {
        "judged": len(records),
        "candidates": len(candidates),
        "candidates_by_model": dict(Counter(c.get("model", "") for c in candidates)),
        "candidates_by_principle": dict(Counter(str(c.get("principle")) for c in candidates)),
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
    positions = score_by_position(candidates)
    if positions:
        stats["score_by_position"] = positions
    by_source = principles_by_source(records)
    if by_source:
        stats["principles_by_source"] = by_source
    flips = order_flips(records, config.judge.kind)
    if flips:
        stats["order_flips"] = flips
    return stats


def revision_lines(stats: dict[str, Any]) -> list[str]:
    if "revisions" not in stats:
        return []
    revisions = stats["revisions"]
    return [
        f"  pairs by source: {stats.get('pairs_by_source')}",
        f"  revisions: prompts {revisions['prompts']}, pairs {revisions['pairs']}, "
        f"dropped {revisions['dropped'] or 'none'}, by principle {revisions['pairs_by_principle']}",
        f"  revision failures: {stats.get('revision_failures') or 'none'}",
    ]


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
        *revision_lines(stats),
        f"  parse failures: {stats.get('parse_failures') or 'none'}",
        f"  generation failures: {stats.get('generation_failures') or 'none'}",
        f"  judge failures: {stats.get('judge_failures') or 'none'}",
        f"  score histogram: {stats.get('score_histogram')}",
        f"  chosen/rejected length ratio: {stats.get('length_ratio_chosen_rejected')}",
    ]
    if stats.get("principles_by_source"):
        lines.append(f"  principles by source: {stats['principles_by_source']}")
    if stats.get("order_flips"):
        flips = stats["order_flips"]
        rate = "n/a" if flips["rate"] is None else f"{100 * flips['rate']:.1f}%"
        lines.append(f"  order-flip rate: {rate} ({flips['flipped']} of {flips['checked']} {flips['what']})")
    if stats.get("score_by_position"):
        means = ", ".join(f"{p}: {v['mean']:.2f}" for p, v in stats["score_by_position"].items())
        lines.append(f"  mean rating by display position (position bias): {means}")
    return "\n".join(lines)
