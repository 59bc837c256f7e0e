"""The pairwise judge: both orders, disagreement is a tie, an unreadable verdict is no verdict."""

from __future__ import annotations

import re
from collections import Counter

from aift_helpers import ScriptedBackend

from westwind.aift.config import SamplingConfig
from westwind.aift.prompts import to_messages
from westwind.judges import JudgeItem, PairwiseJudge

SAMPLING = SamplingConfig(max_new_tokens=512)


def answers_in(messages) -> tuple[str, str]:
    user = messages[-1]["content"] if messages[-1]["role"] == "user" else messages[1]["content"]
    found = re.search(r"## Answer A\n(.*?)\n\n## Answer B\n(.*?)\n\n", user, re.DOTALL)
    return found.group(1), found.group(2)


def longer_wins(messages) -> str:
    a, b = answers_in(messages)
    return '{"winner": "%s"}' % ("A" if len(a) > len(b) else "B")


def test_pairwise_compare_runs_both_orders():
    backend = ScriptedBackend(longer_wins)
    judge = PairwiseJudge(backend, SAMPLING)
    assert judge.compare("Explain DNS.", "a long, detailed answer", "short") == "A"
    assert (
        judge.compare([{"role": "user", "content": "Explain DNS."}], "short", "a long, detailed answer")
        == "B"
    )
    assert len(backend.requests) == 4
    always_a = PairwiseJudge(ScriptedBackend(lambda m: "[[A]]"), SAMPLING)
    assert always_a.compare("q", "x", "y") == "tie"  # position bias: the orders disagree


def test_an_unreadable_verdict_is_no_verdict_not_a_tie():
    confused = PairwiseJudge(ScriptedBackend(lambda m: "hmm"), SAMPLING, max_reasks=1)
    (answer,) = confused.verdicts([("q", "x", "y")])
    assert answer.value is None and answer.failure == "no_verdict"
    assert answer.parse_failures == Counter({"no_verdict": 4})
    assert confused.compare("q", "x", "y") is None


def test_pairwise_round_robin_scores():
    item = JudgeItem("p", to_messages("q"), ["bb", "a", "cccc"])
    (judgment,) = PairwiseJudge(ScriptedBackend(longer_wins), SAMPLING).judge([item])
    assert [r.score for r in judgment.ratings] == [0.5, 0.0, 1.0]


def test_a_failed_comparison_is_left_out_counted_and_the_item_retried():
    def unreadable_for_the_short_one(messages):
        return "hmm" if "a" in answers_in(messages) else longer_wins(messages)

    item = JudgeItem("p", to_messages("q"), ["bb", "a", "cccc"])
    (judgment,) = PairwiseJudge(ScriptedBackend(unreadable_for_the_short_one), SAMPLING, max_reasks=0).judge(
        [item]
    )
    assert judgment.ratings is None and "gave up on 2 comparison(s)" in judgment.error
    assert judgment.parse_failures == Counter({"no_verdict": 4, "gave_up": 2})


def test_each_items_judgment_is_yielded_as_soon_as_its_comparisons_are_done():
    backend = ScriptedBackend(longer_wins)
    items = [JudgeItem(f"p{i}", to_messages(f"q{i}"), ["bb", "a", "cccc"]) for i in range(3)]
    answered_at_yield = [len(backend.requests) for _ in PairwiseJudge(backend, SAMPLING).judge(items)]
    assert answered_at_yield == [6, 12, 18]  # 3 pairs x 2 orders per item, not all 18 before the first


def test_pairs_whose_orders_disagree_are_counted_as_order_flips():
    item = JudgeItem("p", to_messages("q"), ["bb", "a", "cccc"])
    (biased,) = PairwiseJudge(ScriptedBackend(lambda m: "[[A]]"), SAMPLING).judge([item])
    assert biased.order_check == Counter({"checked": 3, "flipped": 3})
    (fair,) = PairwiseJudge(ScriptedBackend(longer_wins), SAMPLING).judge([item])
    assert fair.order_check == Counter({"checked": 3, "flipped": 0})
    (answer,) = PairwiseJudge(ScriptedBackend(lambda m: "[[A]]"), SAMPLING).verdicts([("q", "x", "y")])
    assert answer.value == "tie" and answer.orders_agree is False
