"""Evaluation pieces: 1-10 single-answer ratings under westwind's own prompt (not MT-Bench: see test_suites.py) and
score-based win rates."""

from __future__ import annotations

import math
import shutil
import types

import pytest
from aift_helpers import ScriptedBackend

from westwind.aift.config import JudgeConfig, SamplingConfig
from westwind.aift.prompts import Prompt, prompt_id
from westwind.evaluation import run as evaluation
from westwind.evaluation.run import (
    generate_answers,
    paired,
    parse_single_rating,
    single_answer_scores,
    win_rate,
)
from westwind.io import read_jsonl
from westwind.judges import ParseFailure


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


def test_single_answer_scores_leave_out_unreadable_replies():
    judge = JudgeConfig(kind="pairwise", model="m", sampling=SamplingConfig(max_new_tokens=6), max_reasks=1)
    backend = ScriptedBackend(lambda m: "[[7]]" if "red cat" in m[-1]["content"] else "no idea")
    items = prompts(["reverse: red cat", "reverse: big dog", "reverse: blue sun"])
    scores = single_answer_scores(backend, judge, items, ["cat red", "dog big", "sun"])
    assert scores == {"mean": 7.0, "scored": 1, "failed": 2}
    assert len(backend.requests) == 5  # the two unreadable replies were re-asked once


def test_pairwise_win_rate_counts_an_unreadable_verdict_as_failed_not_a_tie(monkeypatch):
    def verdicts(messages):
        return "hmm" if "prompt b" in messages[-1]["content"] else '{"winner": "A"}'

    monkeypatch.setattr(evaluation, "build_backend", lambda *args: ScriptedBackend(verdicts))
    judge = JudgeConfig(kind="pairwise", model="m", sampling=SamplingConfig(max_new_tokens=6), max_reasks=0)
    result = win_rate(judge, None, prompts(["prompt a", "prompt b"]), ["x", "y"], ["z", "w"])
    # "A" in both orders: the orders disagree, a tie; the unreadable one is no verdict.
    assert (result["wins"], result["ties"], result["losses"], result["failed"]) == (0, 1, 0, 1)
    flips = result["order_flips"]  # that tie is an order flip; the unreadable pair is not counted
    assert (flips["checked"], flips["flipped"], flips["rate"]) == (1, 1, 1.0)
    # Every unreadable reply is counted by reason: prompt b's, in both orders.
    assert (result["parse_failures"], result["request_failures"]) == ({"no_verdict": 2}, {})


def test_win_rate_under_a_verifier_counts_wins_ties_and_losses():
    judge = JudgeConfig(kind="verifier", function="westwind.demo.tasks:verify")
    items = prompts(["a", "b", "c", "d"])
    for item, reference in zip(items, ["1", "2", "3", "4"], strict=True):
        item.reference = reference
    model = ["Answer: 1", "Answer: 2", "Answer: 9", "Answer: 9"]
    baseline = ["Answer: 0", "Answer: 2", "Answer: 3", "Answer: 9"]
    result = win_rate(judge, None, items, model, baseline)
    assert (result["wins"], result["ties"], result["losses"], result["failed"]) == (1, 2, 1, 0)
    assert result["rate"] == pytest.approx((1 + 2 / 2) / 4)


def test_cached_answers_are_reused_only_for_the_same_model(tiny_model, tmp_path):
    model = tmp_path / "dpo"
    shutil.copytree(tiny_model, model)
    config = types.SimpleNamespace(sampling=SamplingConfig(max_new_tokens=4), batch_size=4)
    items = prompts(["reverse: red cat", "reverse: big dog"])
    path = tmp_path / "answers-dpo.jsonl"
    generate_answers(None, str(model), items, config, path, seed=0)
    first = read_jsonl(path)
    stamp = path.stat().st_mtime_ns
    generate_answers(None, str(model), items, config, path, seed=0)
    assert read_jsonl(path) == first and path.stat().st_mtime_ns == stamp  # reused, not rewritten
    weights = next(model.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-2] ^= 0x40  # the model was retrained in place
    weights.write_bytes(bytes(data))
    generate_answers(None, str(model), items, config, path, seed=0)
    assert path.stat().st_mtime_ns != stamp and read_jsonl(path)[0]["key"] != first[0]["key"]


def test_paired_counts_per_prompt_outcomes_and_tests_them():
    model = [True] * 12 + [False] * 2 + [True] * 5 + [False] * 6
    baseline = [False] * 12 + [True] * 2 + [True] * 5 + [False] * 6
    result = paired(model, baseline)
    assert (result["wins"], result["ties"], result["losses"]) == (12, 11, 2)
    assert result["gain"] == pytest.approx((17 - 7) / 25)
    assert result["sign_test_p"] == pytest.approx(sum(math.comb(14, k) for k in (12, 13, 14)) / 2**14)
    assert result["ci95"][0] < result["gain"] < result["ci95"][1]
    assert paired(baseline, model)["sign_test_p"] > 0.99  # one-sided: the worse model is not significant


def test_each_extra_baseline_gets_its_own_answers_accuracy_and_paired_test(monkeypatch, tmp_path):
    from trl.scripts.utils import DatasetConfig

    from westwind.aift.config import PromptsConfig
    from westwind.evaluation.config import EvalConfig

    data = tmp_path / "eval.jsonl"
    data.write_text("".join(f'{{"prompt": "What is {i} + 1?", "reference": "{i + 1}"}}\n' for i in range(6)))
    right = [f"Answer: {i + 1}" for i in range(6)]
    canned = {"@dpo": right, "@sft": right[:3] + ["Answer: 0"] * 3, "@base": ["Answer: 0"] * 6}
    monkeypatch.setattr(evaluation, "generate_answers", lambda r, ref, prompts, *a: list(canned[ref]))
    monkeypatch.setattr(evaluation, "training_overlap", lambda *a: {})
    config = EvalConfig(
        prompts=PromptsConfig(datasets=[DatasetConfig(path=str(data))]),
        sampling=SamplingConfig(max_new_tokens=8),
        extra_baselines=["@base"],
        verifier="westwind.demo.tasks:verify",
    )
    recipe = types.SimpleNamespace(aift=None, resolve_reference=lambda ref: ref)
    results = evaluation.evaluate(recipe, config, tmp_path / "eval")
    assert [results["models"][name]["accuracy"]["correct"] for name in ("dpo", "sft", "base")] == [6, 3, 0]
    assert (results["paired"]["baseline"], results["paired"]["wins"]) == ("sft", 3)
    [extra] = results["extra_paired"]
    assert (extra["model"], extra["baseline"], extra["wins"], extra["losses"]) == ("dpo", "base", 6, 0)
    assert read_jsonl(tmp_path / "eval" / "per_prompt.jsonl")[0]["correct"] == {
        "dpo": True,
        "sft": True,
        "base": False,
    }


def test_extra_baselines_must_differ_from_the_model_and_baseline():
    from trl.scripts.utils import DatasetConfig

    from westwind.aift.config import PromptsConfig
    from westwind.evaluation.config import EvalConfig

    with pytest.raises(ValueError, match="must all differ"):
        EvalConfig(
            prompts=PromptsConfig(datasets=[DatasetConfig(path="eval.jsonl")]),
            sampling=SamplingConfig(max_new_tokens=8),
            extra_baselines=["@sft"],
        )
