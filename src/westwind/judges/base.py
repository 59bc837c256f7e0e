"""What every judge takes and yields: items (a prompt and its candidates) and judgments (their ratings)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from westwind.aift.config import SamplingConfig


@dataclass
class JudgeItem:
    key: str  # the prompt id
    messages: list[dict[str, str]]  # the prompt conversation, ending with the user turn
    candidates: list[str]
    reference: Any = None  # a per-prompt reference (verifier answer key, ultrafeedback world knowledge)


@dataclass
class Rating:
    score: float  # NaN when the candidate could not be rated
    aspects: dict[str, float | None] = field(default_factory=dict)  # None: N/A
    rationale: dict[str, str] = field(default_factory=dict)
    types: dict[str, list[int] | None] = field(default_factory=dict)  # ultrafeedback's rationale types
    positions: dict[str, int] = field(default_factory=dict)  # where the text was shown (1-based), per aspect


@dataclass
class Judgment:
    item: JudgeItem
    ratings: list[Rating] | None = None  # None when `error` is set
    error: str | None = None  # a request failed for good or the judge gave up: retried on the next run
    parse_failures: Counter = field(default_factory=Counter)  # unparsable replies, by reason
    request_failures: Counter = field(default_factory=Counter)  # retried transport failures, by reason
    # Order bias: requests asked in both display orders (`checked`) and those whose outcome changed with the
    # order (`flipped`: the pairwise verdict, or ultrafeedback's best-rated candidate). Empty: none checked.
    order_check: Counter = field(default_factory=Counter)


class Judge(Protocol):
    def judge(self, items: list[JudgeItem]) -> Iterator[Judgment]:
        """A judgment per item, each as soon as it is finished (in any order)."""
        ...

    def close(self) -> None: ...


class ParseFailure(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def judge_sampling(sampling: SamplingConfig) -> SamplingConfig:
    return dataclasses.replace(sampling, temperature=0.0, top_p=1.0, stop=list(sampling.stop))
