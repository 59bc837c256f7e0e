"""Pairwise A / B / tie, asked in both orders. Orders that disagree make a tie (and are counted: the share of
such pairs is the judge's order-flip rate); a comparison whose reply could not be read (after the re-asks)
is no verdict: it is counted (`gave_up`), never scored as a tie, and the item it belongs to is retried on
the next run."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from westwind.aift.config import SamplingConfig
from westwind.generation import Backend
from westwind.judges.asking import Answer, Asker
from westwind.judges.base import JudgeItem, Judgment, Rating, judge_sampling
from westwind.judges.rubrics import pairwise_messages
from westwind.judges.verdicts import Verdict, parse_verdict

Pair = tuple[Any, str, str]  # (prompt, answer_a, answer_b)
SWAPPED = {"A": "B", "B": "A", "tie": "tie"}


@dataclass
class PairAnswer(Answer[Verdict]):
    orders_agree: bool | None = None  # None: no verdict in one of the orders


def combine(forward: Answer, backward: Answer) -> PairAnswer:
    """Both orders' failures, and the verdict: the forward one when the orders agree, else a tie; none when
    either order failed or gave up."""
    combined = PairAnswer(
        parse_failures=forward.parse_failures + backward.parse_failures,
        request_failures=forward.request_failures + backward.request_failures,
        error=forward.error or backward.error,
        failure=forward.failure or backward.failure,
    )
    if combined.error is None and combined.failure is None:
        combined.orders_agree = forward.value == SWAPPED[backward.value]
        combined.value = forward.value if combined.orders_agree else "tie"
    return combined


class PairwiseJudge:
    def __init__(self, backend: Backend, sampling: SamplingConfig, max_reasks: int = 2):
        self.backend, self.sampling, self.max_reasks = backend, judge_sampling(sampling), max_reasks

    def ask_pairs(self, pairs: list[Pair]) -> Iterator[tuple[int, PairAnswer]]:
        """(pair index, combined answer) as soon as both orders of a pair are settled."""
        conversations: dict[Hashable, list[dict]] = {}
        for index, (prompt, a, b) in enumerate(pairs):
            conversations[(index, "ab")] = pairwise_messages(prompt, a, b)
            conversations[(index, "ba")] = pairwise_messages(prompt, b, a)
        halves: dict[int, dict[str, Answer]] = defaultdict(dict)
        asker = Asker(self.backend, self.sampling, lambda _, reply: parse_verdict(reply), self.max_reasks)
        for (index, order), answer in asker.ask(conversations):
            halves[index][order] = answer
            if len(halves[index]) == 2:
                both = halves.pop(index)
                yield index, combine(both["ab"], both["ba"])

    def verdicts(self, pairs: list[Pair]) -> list[PairAnswer]:
        """Each pair's answer, in order: `value` is None when its requests failed or the judge gave up."""
        found = dict(self.ask_pairs(pairs))
        return [found[index] for index in range(len(pairs))]

    def compare(self, prompt: Any, answer_a: str, answer_b: str) -> Verdict | None:
        """ "A", "B" or "tie"; None when no verdict could be read. A failed request raises."""
        (answer,) = self.verdicts([(prompt, answer_a, answer_b)])
        if answer.error:
            raise RuntimeError(answer.error)
        return answer.value

    def judge(self, items: list[JudgeItem]) -> Iterator[Judgment]:
        """Round-robin: a candidate's score is (wins + ties/2) / (number of other candidates). Each item's
        judgment is yielded once all of its comparisons are settled."""
        pairs, owners = [], []
        for item_index, item in enumerate(items):
            for i in range(len(item.candidates)):
                for j in range(i + 1, len(item.candidates)):
                    pairs.append((item.messages, item.candidates[i], item.candidates[j]))
                    owners.append((item_index, i, j))
        remaining = [0] * len(items)
        for item_index, _, _ in owners:
            remaining[item_index] += 1
        judgments = [Judgment(item) for item in items]
        points = [[0.0] * len(item.candidates) for item in items]
        for item_index, count in enumerate(remaining):
            if count == 0:  # fewer than two candidates: nothing to compare
                yield self.finish(judgments[item_index], points[item_index])
        for pair_index, outcome in self.ask_pairs(pairs):
            item_index, i, j = owners[pair_index]
            judgment = judgments[item_index]
            judgment.parse_failures.update(outcome.parse_failures)
            judgment.request_failures.update(outcome.request_failures)
            judgment.error = judgment.error or outcome.error
            if outcome.failure:
                judgment.parse_failures["gave_up"] += 1
            else:
                judgment.order_check["checked"] += 1
                judgment.order_check["flipped"] += not outcome.orders_agree
                credit = {"A": (1.0, 0.0), "B": (0.0, 1.0), "tie": (0.5, 0.5)}.get(outcome.value, (0.0, 0.0))
                points[item_index][i] += credit[0]
                points[item_index][j] += credit[1]
            remaining[item_index] -= 1
            if remaining[item_index] == 0:
                yield self.finish(judgment, points[item_index])

    @staticmethod
    def finish(judgment: Judgment, item_points: list[float]) -> Judgment:
        gave_up = judgment.parse_failures["gave_up"]
        if not gave_up:
            del judgment.parse_failures["gave_up"]
        if judgment.error is None and gave_up:
            judgment.error = (
                f"the judge gave up on {gave_up} comparison(s) (unparsable replies); retried next run"
            )
        if judgment.error is None:
            others = len(item_points) - 1
            judgment.ratings = [
                Rating(
                    p / others if others else math.nan, rationale={"pairwise": f"{p:g} of {others} points"}
                )
                for p in item_points
            ]
        return judgment

    def close(self) -> None:
        self.backend.close()
