"""LIMA-style selection ("less but better"): an AIFT judge scores each dialogue's last assistant turn in its
context; the merge keeps dialogues scored at least `min_score`, then the best `keep` of them. Every dialogue
left out is counted (`unrated`, `below_min_score`, `beyond_keep`)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

from westwind.aift.teacher import LazyJudge
from westwind.distill.config import QualityConfig
from westwind.judges import JudgeItem


@dataclasses.dataclass
class Score:
    prompt_id: str
    value: float | None = None  # None: no dialogue to rate, or the judge could not rate it
    error: str | None = None
    failures: Counter = dataclasses.field(default_factory=Counter)

    def record(self, fingerprint: str) -> dict[str, Any]:
        record = {"prompt_id": self.prompt_id, "fingerprint": fingerprint, "failures": dict(self.failures)}
        if self.error is not None:
            return {**record, "status": "failed", "error": self.error}
        return {**record, "status": "ok", "score": self.value}


def score_dialogues(dialogues: list[dict], judge: LazyJudge) -> list[Score]:
    """A Score per dialogue record (in order); a dropped dialogue gets none without asking the judge."""
    scores = [Score(record["prompt_id"]) for record in dialogues]
    rated = [
        (score, record["messages"])
        for score, record in zip(scores, dialogues, strict=True)
        if record["messages"]
    ]
    items = [
        JudgeItem(score.prompt_id, messages[:-1], [messages[-1]["content"]]) for score, messages in rated
    ]
    for (score, _), judgment in zip(rated, judge.rate(items), strict=True):
        score.failures.update(judgment.request_failures + judgment.parse_failures)
        score.error = judgment.error
        if judgment.error is None and math.isfinite(judgment.ratings[0].score):
            score.value = judgment.ratings[0].score
    return scores


def select(
    rows: list[dict], scores: dict[str, float | None], config: QualityConfig
) -> tuple[list[dict], Counter]:
    """The rows that pass `min_score` and rank in the best `keep` (ties: earlier rows first), in their order."""
    dropped: Counter = Counter()
    passing = []
    for index, row in enumerate(rows):
        score = scores.get(row["prompt_id"])
        if score is None:
            dropped["unrated"] += 1
        elif config.min_score is not None and score < config.min_score:
            dropped["below_min_score"] += 1
        else:
            passing.append((index, score))
    best = sorted(passing, key=lambda item: (-item[1], item[0]))[: config.keep]
    dropped["beyond_keep"] = len(passing) - len(best)
    chosen = sorted(index for index, _ in best)
    return [{**rows[i], "quality_score": scores[rows[i]["prompt_id"]]} for i in chosen], +dropped
