"""Binarization policies and their edge cases, and --rebinarize on UltraFeedback-style completions."""

from __future__ import annotations

import json
import math

import pytest
from aift_helpers import write_recipe
from conftest import shared_file

from westwind.aift import run as aift
from westwind.aift.binarize import binarize, binarize_all
from westwind.aift.config import BinarizeConfig
from westwind.aift.prompts import prompt_id, to_messages
from westwind.aift.workspace import Workspace
from westwind.io import atomic_write_jsonl
from westwind.recipe.core import load_recipe


def record(scores: list, texts: list[str] | None = None, prompt: str = "Name a colour.") -> dict:
    texts = texts or [f"answer {i}" for i in range(len(scores))]
    messages = to_messages(prompt)
    return {
        "prompt_id": prompt_id(messages),
        "prompt": messages,
        "candidates": [
            {"text": t, "score": s, "model": f"m{i}", "rationale": {"helpfulness": f"why {i}"}}
            for i, (t, s) in enumerate(zip(texts, scores, strict=True))
        ],
    }


def pair_scores(row: dict) -> tuple[float, float]:
    return row["score_chosen"], row["score_rejected"]


def test_best_vs_random_takes_the_best_and_a_strictly_lower_one():
    rejected_texts = set()
    for seed in range(40):
        row, reason = binarize(record([3.0, 5.0, 2.0, 5.0, 1.0]), BinarizeConfig(), seed)
        assert reason is None
        assert row["score_chosen"] == 5.0 and row["score_rejected"] < 5.0
        rejected_texts.add(row["rejected"][0]["content"])
    assert rejected_texts == {"answer 0", "answer 2", "answer 4"}  # every lower candidate gets drawn


def test_best_vs_worst_takes_the_lowest():
    row, _ = binarize(record([3.0, 4.5, 1.0, 2.0]), BinarizeConfig(policy="best_vs_worst"), 0)
    assert pair_scores(row) == (4.5, 1.0)
    assert row["chosen"] == [{"role": "assistant", "content": "answer 1"}]
    assert row["rejected"] == [{"role": "assistant", "content": "answer 2"}]


def test_row_is_trl_conversational_preference_format_with_provenance():
    row, _ = binarize(record([1.0, 4.0]), BinarizeConfig(), 0)
    assert row["prompt"] == [{"role": "user", "content": "Name a colour."}]
    assert row["prompt_id"] == prompt_id(row["prompt"])
    assert (row["model_chosen"], row["model_rejected"]) == ("m1", "m0")
    assert (row["rationale_chosen"], row["rationale_rejected"]) == (
        "helpfulness: why 1",
        "helpfulness: why 0",
    )


@pytest.mark.parametrize("policy", ["best_vs_random", "best_vs_worst"])
def test_all_ties_are_dropped_or_kept_at_zero_margin(policy):
    tied = record([4.0, 4.0, 4.0])
    assert binarize(tied, BinarizeConfig(policy=policy), 0) == (None, "tie")
    row, reason = binarize(tied, BinarizeConfig(policy=policy, drop_ties=False), 0)
    assert reason is None and pair_scores(row) == (4.0, 4.0)
    assert row["chosen"] != row["rejected"]


def test_single_candidate_and_unrated_candidates_make_no_pair():
    assert binarize(record([5.0]), BinarizeConfig(), 0) == (None, "single_candidate")
    assert binarize(record([math.nan, None, 3.0]), BinarizeConfig(), 0) == (None, "unrated")
    assert binarize(record([math.nan, math.nan]), BinarizeConfig(), 0) == (None, "unrated")


def test_nan_scores_are_never_chosen_or_rejected():
    for seed in range(20):
        row, _ = binarize(record([math.nan, 2.0, None, 4.0, float("inf")]), BinarizeConfig(), seed)
        assert pair_scores(row) == (4.0, 2.0)


def test_margin_and_minimum_chosen_score():
    assert binarize(record([3.0, 3.5]), BinarizeConfig(min_margin=1.0), 0) == (None, "below_margin")
    assert binarize(record([1.0, 3.5]), BinarizeConfig(min_margin=1.0), 0)[1] is None
    assert binarize(record([1.0, 2.5]), BinarizeConfig(min_chosen_score=3.0), 0) == (None, "low_chosen_score")
    # best_vs_random may draw a close candidate that misses the margin; best_vs_worst takes the widest gap
    assert (
        binarize(record([1.0, 4.0, 5.0]), BinarizeConfig(policy="best_vs_worst", min_margin=3.5), 0)[1]
        is None
    )


def test_identical_texts_are_never_paired():
    same = record([5.0, 2.0, 1.0], texts=["Paris.", " paris. ", "PARIS."])
    assert binarize(same, BinarizeConfig(), 0) == (None, "identical_texts")
    row, _ = binarize(record([5.0, 4.0, 1.0], texts=["Paris.", "paris.", "Lyon."]), BinarizeConfig(), 0)
    assert row["rejected"][0]["content"] == "Lyon."


def test_choices_depend_on_the_prompt_id_not_on_record_order():
    records = [record([5.0, 5.0, 1.0, 2.0, 3.0], prompt=f"question {i}") for i in range(12)]
    forward, _ = binarize_all(records, BinarizeConfig(), seed=7)
    backward, _ = binarize_all(records[::-1], BinarizeConfig(), seed=7)
    assert forward == backward[::-1]
    other_seed, _ = binarize_all(records, BinarizeConfig(), seed=8)
    assert other_seed != forward


def ultrafeedback_style_records() -> list[dict]:
    """The shared UltraFeedback-style prompts with their four models' completions, as AIFT ratings records."""
    by_prompt: dict[str, dict] = {}
    for model in range(4):
        path = shared_file(f"data/ultrafeedback_style/generate_responses_out_model{model}_input_file.jsonl")
        for line in path.read_text().splitlines():
            row = json.loads(line)
            messages = to_messages(row["text"])
            entry = by_prompt.setdefault(
                row["prompt_hash"], {"prompt_id": prompt_id(messages), "prompt": messages, "candidates": []}
            )
            for output in row["outputs"]:
                candidate = {
                    "text": output["text"],
                    "model": f"model{model}",
                    "finish_reason": output["finish_reason"],
                }
                entry["candidates"].append({**candidate, "score": 3.0 + model / 4})
    return list(by_prompt.values())


def write_ratings(tmp_path, records: list[dict], policy: str = "best_vs_random"):
    recipe_path = write_recipe(
        tmp_path,
        "unused-model",
        {
            "prompts": {"datasets": [{"path": "unused"}]},
            "generators": [{"model": "unused", "sampling": {"max_new_tokens": 8}}],
            "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
            "binarize": {"policy": policy},
        },
    )
    recipe = load_recipe(recipe_path, stage="aift")
    workspace = Workspace(recipe.stage_dir("aift"))
    atomic_write_jsonl(workspace.ratings, records)
    return recipe_path, workspace


def test_rebinarize_ultrafeedback_style_completions(tmp_path):
    records = ultrafeedback_style_records()
    assert all(len(r["candidates"]) == 4 for r in records)
    # The four models wrote the same text for each prompt: no pair may come from them.
    recipe_path, workspace = write_ratings(tmp_path, records)
    with pytest.raises(aift.AIFTError, match="identical_texts"):
        aift.rebinarize(load_recipe(recipe_path, stage="aift"), push=False)
    stats = json.loads(workspace.stats.read_text())
    assert stats["dropped"] == {"identical_texts": len(records)}

    # Add a cut-off copy of each answer (a max_new_tokens truncation) rated lowest.
    for entry in records:
        full = entry["candidates"][0]["text"]
        truncated = {
            "text": full[: len(full) // 3],
            "model": "truncated",
            "finish_reason": "length",
            "score": 1.5,
        }
        entry["candidates"].append(truncated)
    atomic_write_jsonl(workspace.ratings, records)
    for policy, expected_rejected in (("best_vs_worst", 1.5), ("best_vs_random", 1.5)):
        stats = aift.rebinarize(
            load_recipe(recipe_path, [f"--aift.binarize.policy={policy}"], stage="aift"), push=False
        )
        assert stats["pairs"] == {"train": len(records)} and stats["binarize"]["policy"] == policy
        rows = [json.loads(line) for line in (workspace.root / "train.jsonl").read_text().splitlines()]
        assert {r["prompt_id"] for r in rows} == {r["prompt_id"] for r in records}
        for row in rows:
            assert (row["model_chosen"], row["score_chosen"]) == ("model3", 3.75)
            assert (row["model_rejected"], row["score_rejected"]) == ("truncated", expected_rejected)
            assert len(row["chosen"][0]["content"]) > len(row["rejected"][0]["content"])
        assert stats["length_ratio_chosen_rejected"]["median"] > 2.5


@pytest.mark.parametrize("policy", ["best_vs_random", "best_vs_worst"])
def test_empty_completions_are_never_paired(policy):
    config = BinarizeConfig(policy=policy)
    for seed in range(20):
        row, reason = binarize(record([9.0, 5.0, 1.0], ["", "Blue.", "  "]), config, seed)
        assert row is None and reason == "empty_texts"
        row, reason = binarize(record([9.0, 5.0, 1.0], ["   ", "Blue.", "A dog."]), config, seed)
        assert reason is None
        assert row["chosen"][0]["content"] == "Blue." and row["rejected"][0]["content"] == "A dog."


def test_min_margin_draws_only_among_candidates_that_meet_it():
    config = BinarizeConfig(policy="best_vs_random", min_margin=1.0)
    for seed in range(30):
        row, reason = binarize(record([5.0, 4.9, 1.0], ["Best.", "Close.", "Far."]), config, seed)
        assert reason is None and row["score_rejected"] == 1.0
    row, reason = binarize(record([5.0, 4.9], ["Best.", "Close."]), config, 0)
    assert row is None and reason == "below_margin"


@pytest.mark.parametrize(
    ("scores", "min_margin", "reason"),
    [
        ([13 / 3, 10 / 3], 1.0, None),  # 0.9999999999999996 in floating point: exactly 1
        ([(4 + 5 + 4) / 3, (3 + 4 + 3) / 3], 1.0, None),  # the same margin from three aspect ratings
        ([2.3, 1.3], 1.0, None),  # 2.3 - 1.3 = 0.9999999999999998
        ([13 / 3, 10 / 3 + 0.001], 1.0, "below_margin"),  # a real shortfall stays one
        ([3.0, 2.0 + 1e-12], 1.0, None),  # below SCORE_DECIMALS: rounding error, not a rating difference
    ],
)
def test_margins_are_compared_exactly(scores, min_margin, reason):
    assert binarize(record(scores), BinarizeConfig(min_margin=min_margin), 0)[1] == reason


def test_scores_equal_up_to_rounding_error_are_a_tie():
    # 0.1 + 0.2 and 0.3 differ in the 17th digit: the same rating, so a tie, not a pair with margin 5e-17.
    assert binarize(record([0.1 + 0.2, 0.3]), BinarizeConfig(), 0) == (None, "tie")
    assert binarize(record([(1 + 2 + 4) / 3, 7 / 3]), BinarizeConfig(), 0) == (None, "tie")
