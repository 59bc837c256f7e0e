"""UltraFeedback ratings: each aspect's rubric rates a prompt's candidates, at most `texts_per_request` per
request (UltraFeedback rates 4). Every aspect gets its own seeded display order, so a judge's position bias
spreads over the candidates; each candidate's position is kept with its rating. A candidate's score is the
mean of its aspect ratings (N/A excluded). An aspect the judge gave up on fails the whole item, which is
retried on the next run: a score never averages a different set of aspects than the one configured.

Order bias: a seeded `order_check_share` of the requests is asked again with the same texts in reversed
order; `Judgment.order_check` counts those compared (`checked`) and those whose best-rated text changed
(`flipped`). The reversed ratings measure the judge only: scores use the first order's."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Hashable, Iterator

from westwind.aift.config import SamplingConfig
from westwind.generation import Backend
from westwind.judges.asking import Answer, Asker
from westwind.judges.base import JudgeItem, Judgment, Rating, judge_sampling
from westwind.judges.parsers import ParsedRating, parse_ratings
from westwind.judges.rubrics import rating_messages
from westwind.seeding import stable_seed

Plan = dict[str, list[list[int]]]  # aspect -> requests -> candidate indices in display order


def balanced_chunks(order: list[int], cap: int) -> list[list[int]]:
    """`order` cut into the fewest requests of at most `cap` texts, sizes differing by at most one."""
    count = math.ceil(len(order) / cap)
    size, extra = divmod(len(order), count)
    chunks, start = [], 0
    for index in range(count):
        end = start + size + (index < extra)
        chunks.append(order[start:end])
        start = end
    return chunks


class UltraFeedbackJudge:
    def __init__(
        self,
        backend: Backend,
        sampling: SamplingConfig,
        aspects: list[str],
        max_reasks: int,
        seed: int = 0,
        texts_per_request: int = 4,
        order_check_share: float = 0.0,
    ):
        self.backend, self.aspects, self.seed = backend, list(dict.fromkeys(aspects)), seed
        self.sampling, self.max_reasks = judge_sampling(sampling), max_reasks
        self.texts_per_request, self.order_check_share = texts_per_request, order_check_share

    def plan(self, item: JudgeItem) -> Plan:
        plan = {}
        for aspect in self.aspects:
            order = list(range(len(item.candidates)))
            random.Random(stable_seed(self.seed, item.key, aspect, "order")).shuffle(order)
            plan[aspect] = balanced_chunks(order, self.texts_per_request)
        return plan

    def checked(self, item: JudgeItem, aspect: str, part: int, chunk: list[int]) -> bool:
        """Whether this request is also asked in reversed order (a seeded draw per request)."""
        if len(chunk) < 2 or not self.order_check_share:
            return False
        draw = random.Random(stable_seed(self.seed, item.key, aspect, part, "order_check")).random()
        return draw < self.order_check_share

    def conversations(self, index: int, item: JudgeItem, plan: Plan) -> dict[Hashable, list[dict]]:
        """(index, aspect, part[, "reversed"]) -> the judge conversation rating that chunk."""
        conversations: dict[Hashable, list[dict]] = {}
        for aspect, chunks in plan.items():
            for part, chunk in enumerate(chunks):
                orders = [(chunk, ())]
                if self.checked(item, aspect, part, chunk):
                    orders.append((chunk[::-1], ("reversed",)))
                for shown, suffix in orders:
                    texts = [item.candidates[c] for c in shown]
                    conversations[(index, aspect, part, *suffix)] = rating_messages(
                        aspect, item.messages, texts, item.reference
                    )
        return conversations

    def judge(self, items: list[JudgeItem]) -> Iterator[Judgment]:
        plans = [self.plan(item) for item in items]
        conversations: dict[Hashable, list[dict]] = {}
        expected = [0] * len(items)
        for index, (item, plan) in enumerate(zip(items, plans, strict=True)):
            mine = self.conversations(index, item, plan)
            conversations.update(mine)
            expected[index] = len(mine)
        answers: dict[int, dict[tuple, Answer]] = defaultdict(dict)

        def parse(key: Hashable, reply: str) -> list[ParsedRating]:
            index, aspect, part = key[:3]
            return parse_ratings(reply, len(plans[index][aspect][part]), allow_na=aspect == "honesty")

        for key, answer in Asker(self.backend, self.sampling, parse, self.max_reasks).ask(conversations):
            index = key[0]
            answers[index][key[1:]] = answer
            if len(answers[index]) == expected[index]:
                yield self.combine(items[index], plans[index], answers.pop(index))

    def combine(self, item: JudgeItem, plan: Plan, answers: dict[tuple, Answer]) -> Judgment:
        judgment = Judgment(item)
        for answer in answers.values():
            judgment.parse_failures.update(answer.parse_failures)
            judgment.request_failures.update(answer.request_failures)
        given_up = [key[0] for key, answer in answers.items() if answer.failure and len(key) == 2]
        if given_up:
            judgment.parse_failures["gave_up"] += len(given_up)
        errors = [a.error for a in answers.values() if a.error]
        if errors:
            judgment.error = errors[0]
        elif given_up:
            aspects = ", ".join(sorted(set(given_up)))
            judgment.error = f"the judge gave up on {aspects} (unparsable replies); retried next run"
        if judgment.error:
            return judgment
        ratings = [Rating(math.nan) for _ in item.candidates]
        for aspect in self.aspects:  # the configured order, not the answers' (async) order
            for part, chunk in enumerate(plan[aspect]):
                for position, (candidate, parsed) in enumerate(
                    zip(chunk, answers[(aspect, part)].value, strict=True), 1
                ):
                    rating = ratings[candidate]
                    rating.aspects[aspect], rating.rationale[aspect] = parsed.rating, parsed.rationale
                    rating.types[aspect], rating.positions[aspect] = parsed.types, position
                check = answers.get((aspect, part, "reversed"))
                if check is not None:
                    count_order_check(judgment, chunk, answers[(aspect, part)].value, check)
        for rating in ratings:
            numbers = [v for v in rating.aspects.values() if v is not None]
            rating.score = sum(numbers) / len(numbers) if numbers else math.nan
        judgment.ratings = ratings
        return judgment

    def close(self) -> None:
        self.backend.close()


def best_shown(chunk: list[int], parsed: list[ParsedRating]) -> set[int]:
    """The candidates rated highest in one reply (N/A excluded); empty when none has a number."""
    rated = {c: p.rating for c, p in zip(chunk, parsed, strict=True) if p.rating is not None}
    top = max(rated.values(), default=None)
    return {c for c, r in rated.items() if r == top}


def count_order_check(
    judgment: Judgment, chunk: list[int], forward: list[ParsedRating], check: Answer
) -> None:
    """Compare a request's best-rated texts with those of its reversed-order twin."""
    if check.failure:  # the re-asks ran out on the twin: its failures are counted, it measures nothing
        judgment.order_check["unreadable"] += 1
        return
    first, second = best_shown(chunk, forward), best_shown(chunk[::-1], check.value)
    if first and second:
        judgment.order_check["checked"] += 1
        judgment.order_check["flipped"] += first != second
