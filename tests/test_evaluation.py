"""Evaluation pieces: MT-Bench-style single-answer ratings and score-based win rates."""

from __future__ import annotations

import math

import pytest

from westwind.aift_config import JudgeConfig, SamplingConfig
from westwind.evaluation import paired, parse_single_rating, single_answer_scores, win_rate
from westwind.generation import build_backend
from westwind.judges import ParseFailure
from westwind.prompts import Prompt, prompt_id


@pytest.mark.parametrize(
    ("reply", "rating"),
    [
        ("The answer is correct and concise. Rating: [[8]]", 8.0),
        ("Helpful but shallow.\n\n[[ 6 ]]", 6.0),
        ("Compared with [[3]] earlier drafts this is better: [[7.5]]", 7.5),  # the last rating wins
    ],
)
def test_single_rating_parses_realistic_replies(reply, rating):
    assert parse_single_rating(None, reply) == rating


@pytest.mark.parametrize("reply", ["I would give it an 8.", "Rating: [[11]]", "[[0]]", ""])
def test_single_rating_rejects_missing_or_out_of_range(reply):
    with pytest.raises(ParseFailure):
        parse_single_rating(None, reply)


def prompts(texts: list[str]) -> list[Prompt]:
    return [
        Prompt(prompt_id([{"role": "user", "content": t}]), [{"role": "user", "content": t}], "x")
        for t in texts
    ]


def test_single_answer_scores_count_every_prompt_with_a_real_backend(tiny_model):
    judge = JudgeConfig(
        kind="pairwise", model=str(tiny_model), sampling=SamplingConfig(max_new_tokens=6), max_reasks=1
    )
    backend = build_backend(judge)
    items = prompts(["reverse: red cat", "reverse: big dog", "reverse: blue sun"])
    scores = single_answer_scores(backend, judge, items, ["cat red", "dog big", "sun"])
    # A random tiny judge cannot follow the format: nothing is dropped silently, every prompt is scored or failed.
    assert scores["scored"] + scores["failed"] == 3


def test_win_rate_under_a_verifier_counts_wins_ties_and_losses():
    judge = JudgeConfig(kind="verifier", function="westwind.demo_tasks:verify")
    items = prompts(["a", "b", "c", "d"])
    for item, reference in zip(items, ["1", "2", "3", "4"], strict=True):
        item.reference = reference
    model = ["Answer: 1", "Answer: 2", "Answer: 9", "Answer: 9"]
    baseline = ["Answer: 0", "Answer: 2", "Answer: 3", "Answer: 9"]
    result = win_rate(judge, None, items, model, baseline)
    assert (result["wins"], result["ties"], result["losses"], result["failed"]) == (1, 2, 1, 0)
    assert result["rate"] == pytest.approx((1 + 2 / 2) / 4)


def test_paired_counts_per_prompt_outcomes_and_tests_them():
    model = [True] * 12 + [False] * 2 + [True] * 5 + [False] * 6
    baseline = [False] * 12 + [True] * 2 + [True] * 5 + [False] * 6
    result = paired(model, baseline)
    assert (result["wins"], result["ties"], result["losses"]) == (12, 11, 2)
    assert result["gain"] == pytest.approx((17 - 7) / 25)
    assert result["sign_test_p"] == pytest.approx(sum(math.comb(14, k) for k in (12, 13, 14)) / 2**14)
    assert result["ci95"][0] < result["gain"] < result["ci95"][1]
    assert paired(baseline, model)["sign_test_p"] > 0.99  # one-sided: the worse model is not significant
