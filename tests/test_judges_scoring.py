"""Scoring judges: a reward model (batch-independent) and a verifier callable."""

from __future__ import annotations

import math

import pytest
from aift_helpers import save_tiny_reward_model

from westwind.aift.prompts import to_messages
from westwind.judges import JudgeItem, RewardModelJudge, VerifierJudge
from westwind.recipe.core import ModelArgs


def test_reward_model_scores_are_batch_independent(tiny_model, tmp_path):
    path = save_tiny_reward_model(tiny_model, tmp_path / "rm")
    items = [
        JudgeItem(f"p{i}", to_messages(f"reverse: cat dog {i}"), ["dog cat", "cat", "the the the"])
        for i in range(3)
    ]
    scores = {}
    for batch_size in (1, 4):
        judge = RewardModelJudge(str(path), ModelArgs(model_name_or_path=str(path)), "cpu", batch_size)
        scores[batch_size] = [r.score for j in judge.judge(items) for r in j.ratings]
    assert all(math.isfinite(s) for s in scores[1])
    assert len(set(scores[1])) > 1
    assert scores[4] == pytest.approx(scores[1], abs=1e-4)


def test_verifier_scores_with_the_reference_and_reports_errors():
    items = [JudgeItem("p1", to_messages("What is 2+2?"), ["5", "4", "four"], reference="4")]
    (judgment,) = VerifierJudge("aift_helpers:length_score").judge(items)
    assert [r.score for r in judgment.ratings] == [1.0, 1.0, 4.0]
    flaky = [JudgeItem("p2", to_messages("the moon is"), ["round"])]
    (failed,) = VerifierJudge("aift_helpers:flaky_score").judge(flaky)
    assert failed.ratings is None and "verifier backend unavailable" in failed.error


def test_verifier_import_errors_name_the_callable():
    with pytest.raises(ValueError, match="aift_helpers:nope"):
        VerifierJudge("aift_helpers:nope")
