"""A user callable `function(prompt, completion, reference) -> float` on the last user turn."""

from __future__ import annotations

from collections.abc import Iterator

from westwind.callables import load_callable
from westwind.judges.base import JudgeItem, Judgment, Rating


class VerifierJudge:
    """An exception from the callable fails the item (retried on the next run), not the run."""

    def __init__(self, spec: str):
        self.function = load_callable(spec)

    def judge(self, items: list[JudgeItem]) -> Iterator[Judgment]:
        for item in items:
            try:
                scores = [
                    float(self.function(item.messages[-1]["content"], c, item.reference))
                    for c in item.candidates
                ]
            except Exception as error:  # a user callable: record it against the item, keep going
                yield Judgment(item, error=f"verifier raised {type(error).__name__}: {error}")
                continue
            yield Judgment(item, [Rating(score) for score in scores])

    def close(self) -> None:
        pass
