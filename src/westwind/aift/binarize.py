"""Turn a judged prompt (candidates with scores) into one chosen/rejected pair for dDPO.

Policies: `best_vs_random` (Zephyr: chosen = highest score, rejected = random among strictly lower) and
`best_vs_worst`. With `min_margin`, the rejected side is drawn only among candidates at least that far below
the chosen one. Ties at the top are broken at random; empty texts and identical texts are never paired (a pair whose two
sides match teaches nothing). All randomness is seeded per prompt id, so results do not depend on order,
sharding or resumption.

Scores are compared exactly: each is rounded to `SCORE_DECIMALS` decimal places and read as a fraction, so
a mean of aspect ratings such as 13/3 - 10/3 (0.9999999999999996 in floating point) is a margin of exactly
1 and kept at `min_margin: 1.0`, and two means that differ only by rounding error are a tie.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction
from typing import Any

from westwind.aift.config import BinarizeConfig
from westwind.aift.prompts import normalize_text
from westwind.seeding import stable_seed


def is_rated(candidate: dict[str, Any]) -> bool:
    score = candidate.get("score")
    return isinstance(score, int | float) and math.isfinite(score)


SCORE_DECIMALS = 9


def exact(value: float) -> Fraction:
    """`value` rounded to SCORE_DECIMALS places, as an exact fraction (what ties and margins compare)."""
    return Fraction(f"{value:.{SCORE_DECIMALS}f}")


def rationale_text(candidate: dict[str, Any]) -> str:
    rationale = candidate.get("rationale") or {}
    if isinstance(rationale, str):
        return rationale
    return "\n".join(f"{aspect}: {text}" for aspect, text in rationale.items() if text)


def pick_pair(
    candidates: list[dict[str, Any]], config: BinarizeConfig, rng: random.Random
) -> tuple[dict | None, dict | None, str | None]:
    """(chosen, rejected, None), or (None, None, the reason no pair is made)."""
    if len(candidates) < 2:
        return None, None, "single_candidate"
    # An empty completion is not an answer, whatever a judge scored it: it makes no pair (dpo would reject it).
    candidates = [c for c in candidates if c["text"].strip()]
    if len(candidates) < 2:
        return None, None, "empty_texts"
    rated = [c for c in candidates if is_rated(c)]
    if len(rated) < 2:
        return None, None, "unrated"
    score = {id(c): exact(c["score"]) for c in rated}
    best = max(score.values())
    if config.min_chosen_score is not None and best < exact(config.min_chosen_score):
        return None, None, "low_chosen_score"
    chosen = rng.choice([c for c in rated if score[id(c)] == best])
    distinct = [c for c in rated if normalize_text(c["text"]) != normalize_text(chosen["text"])]
    if not distinct:
        return None, None, "identical_texts"
    lower = [c for c in distinct if score[id(c)] < best]
    if lower and config.min_margin > 0:
        # Draw only among candidates that leave the margin: a random pick below it would waste the prompt.
        lower = [c for c in lower if best - score[id(c)] >= exact(config.min_margin)]
        if not lower:
            return None, None, "below_margin"
    if config.policy == "best_vs_worst" and lower:
        worst = min(score[id(c)] for c in lower)
        lower = [c for c in lower if score[id(c)] == worst]
    if not lower:
        if config.drop_ties:
            return None, None, "tie"
        if config.min_margin > 0:
            return None, None, "below_margin"
        lower = distinct  # all score the same as the chosen one: a zero-margin pair
    rejected = rng.choice(lower)
    return chosen, rejected, None


def binarize(
    record: dict[str, Any], config: BinarizeConfig, seed: int
) -> tuple[dict[str, Any] | None, str | None]:
    """A TRL conversational preference row for one judged prompt, or (None, why it was dropped)."""
    rng = random.Random(stable_seed(seed, record["prompt_id"], "binarize"))
    chosen, rejected, reason = pick_pair(record["candidates"], config, rng)
    if reason is not None:
        return None, reason
    return {
        "prompt": record["prompt"],
        "prompt_id": record["prompt_id"],
        "chosen": [{"role": "assistant", "content": chosen["text"]}],
        "rejected": [{"role": "assistant", "content": rejected["text"]}],
        "score_chosen": float(chosen["score"]),
        "score_rejected": float(rejected["score"]),
        "model_chosen": chosen.get("model", ""),
        "model_rejected": rejected.get("model", ""),
        "rationale_chosen": rationale_text(chosen),
        "rationale_rejected": rationale_text(rejected),
    }, None


def binarize_all(
    records: list[dict[str, Any]], config: BinarizeConfig, seed: int
) -> tuple[list[dict[str, Any]], Counter]:
    """Pairs in record order, and the count of prompts dropped for each reason."""
    rows, dropped = [], Counter()
    for record in records:
        row, reason = binarize(record, config, seed)
        if row is None:
            dropped[reason] += 1
        else:
            rows.append(row)
    return rows, dropped
