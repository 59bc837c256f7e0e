"""UltraFeedback ratings: each aspect's rubric rates a prompt's candidates, at most `texts_per_request` per
request (UltraFeedback rates 4). Every aspect gets its own seeded display order, so a judge's position bias
spreads over the candidates; each candidate's position is kept with its rating. A candidate's score is the
mean of its aspect ratings (N/A excluded). An aspect the judge gave up on fails the whole item, which is
retried on the next run: a score never averages a different set of aspects than the one configured."""

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
    ):
        self.backend, self.aspects, self.seed = backend, list(dict.fromkeys(aspects)), seed
        self.sampling, self.max_reasks = judge_sampling(sampling), max_reasks
        self.texts_per_request = texts_per_request

    def plan(self, item: JudgeItem) -> Plan:
        plan = {}
        for aspect in self.aspects:
            order = list(range(len(item.candidates)))
            random.Random(stable_seed(self.seed, item.key, aspect, "order")).shuffle(order)
            plan[aspect] = balanced_chunks(order, self.texts_per_request)
        return plan

    def judge(self, items: list[JudgeItem]) -> Iterator[Judgment]:
        plans = [self.plan(item) for item in items]
        conversations: dict[Hashable, list[dict]] = {}
        for index, (item, plan) in enumerate(zip(items, plans, strict=True)):
            for aspect, chunks in plan.items():
                for part, chunk in enumerate(chunks):
                    shown = [item.candidates[c] for c in chunk]
                    conversations[(index, aspect, part)] = rating_messages(
                        aspect, item.messages, shown, item.reference
                    )
        expected = [sum(len(chunks) for chunks in plan.values()) for plan in plans]
        answers: dict[int, dict[tuple[str, int], Answer]] = defaultdict(dict)

        def parse(key: Hashable, reply: str) -> list[ParsedRating]:
            index, aspect, part = key
            return parse_ratings(reply, len(plans[index][aspect][part]), allow_na=aspect == "honesty")

        for (index, aspect, part), answer in Asker(self.backend, self.sampling, parse, self.max_reasks).ask(
            conversations
        ):
            answers[index][(aspect, part)] = answer
            if len(answers[index]) == expected[index]:
                yield self.combine(items[index], plans[index], answers.pop(index))

    def combine(self, item: JudgeItem, plan: Plan, answers: dict[tuple[str, int], Answer]) -> Judgment:
        judgment = Judgment(item)
        for answer in answers.values():
            judgment.parse_failures.update(answer.parse_failures)
            judgment.request_failures.update(answer.request_failures)
        given_up = [aspect for (aspect, _), answer in answers.items() if answer.failure]
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
        for rating in ratings:
            numbers = [v for v in rating.aspects.values() if v is not None]
            rating.score = sum(numbers) / len(numbers) if numbers else math.nan
        judgment.ratings = ratings
        return judgment

    def close(self) -> None:
        self.backend.close()
