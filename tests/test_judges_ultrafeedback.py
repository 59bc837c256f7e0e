"""The UltraFeedback judge against a scripted stand-in backend: scores map back through per-aspect shuffles,
pools larger than texts_per_request are chunked, positions are kept, a given-up aspect fails the item."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest
from aift_helpers import ScriptedBackend, native_ratings
from test_judges_rubrics import shown_texts

from westwind.aift.config import ASPECTS, JudgeConfig, SamplingConfig
from westwind.aift.prompts import to_messages
from westwind.aift.rate import rated_candidate
from westwind.aift.stats import order_flips, score_by_position, summary
from westwind.judges import JudgeItem, UltraFeedbackJudge
from westwind.judges.rubrics import RUBRICS, TYPED_ASPECTS
from westwind.recipe.core import load_recipe
from westwind.report.formatting import order_flip_text

SAMPLING = SamplingConfig(max_new_tokens=512)


def aspect_of(messages: list[dict]) -> str:
    user = next(m["content"] for m in messages if m["role"] == "user")
    return next(a for a in ASPECTS if RUBRICS[a] in user)


def quality_judge(messages: list[dict]) -> str:
    """Rates a text by the quality number written in it ('q3' -> 3); honesty is N/A for 'story' texts."""
    aspect = aspect_of(messages)
    ratings = []
    for text in shown_texts(messages):
        if aspect == "honesty" and "story" in text:
            ratings.append("N/A")
        else:
            quality = int(re.search(r"q(\d)", text).group(1))
            ratings.append(min(5, quality + (1 if aspect == "helpfulness" else 0)))
    return native_ratings(ratings, types=aspect in TYPED_ASPECTS)


def run(judge: UltraFeedbackJudge, items: list[JudgeItem]) -> list:
    return list(judge.judge(items))


def test_ultrafeedback_scores_map_back_through_the_shuffle():
    items = [
        JudgeItem(f"p{i}", to_messages(f"prompt {i}"), ["answer q1", "answer q4", "story q3", "answer q2"])
        for i in range(6)
    ]
    backend = ScriptedBackend(quality_judge)
    judgments = run(UltraFeedbackJudge(backend, SAMPLING, list(ASPECTS), max_reasks=1, seed=0), items)
    assert len(judgments) == len(items) and len(backend.requests) == 4 * len(items)
    assert {tuple(shown_texts(r.messages)) for r in backend.requests} != {tuple(items[0].candidates)}
    assert all(r.sampling.temperature == 0 for r in backend.requests)
    for judgment in judgments:
        scores = [rating.score for rating in judgment.ratings]
        assert scores == [
            pytest.approx(5 / 4),
            pytest.approx(17 / 4),
            pytest.approx(10 / 3),
            pytest.approx(9 / 4),
        ]
        assert judgment.ratings[2].aspects["honesty"] is None  # N/A excluded from the mean
        assert set(judgment.ratings[0].aspects) == set(ASPECTS)
        assert judgment.ratings[0].types["truthfulness"] == [1, 2]
        assert not judgment.parse_failures and judgment.error is None


def test_each_aspect_draws_its_own_order_and_positions_are_kept():
    items = [JudgeItem(f"p{i}", to_messages(f"q{i}"), ["q1 a", "q2 b", "q3 c", "q4 d"]) for i in range(5)]
    backend = ScriptedBackend(quality_judge)
    judgments = run(UltraFeedbackJudge(backend, SAMPLING, list(ASPECTS), 0, seed=1), items)
    orders = {
        (r.messages[1]["content"].split("## Instruction\n")[1][:2], aspect_of(r.messages)): tuple(
            shown_texts(r.messages)
        )
        for r in backend.requests
    }
    per_item = [{orders[(f"q{i}", a)] for a in ASPECTS} for i in range(5)]
    assert any(len(distinct) > 1 for distinct in per_item)  # a new order per aspect, not per prompt
    for judgment in judgments:
        for candidate, rating in zip(judgment.item.candidates, judgment.ratings, strict=True):
            for aspect in ASPECTS:
                key = (judgment.item.messages[0]["content"], aspect)
                assert orders[key][rating.positions[aspect] - 1] == candidate


def test_large_pools_are_chunked_to_texts_per_request():
    candidates = [f"answer q{1 + i % 5}" for i in range(7)]
    item = JudgeItem("p", to_messages("q"), candidates)
    backend = ScriptedBackend(quality_judge)
    judge = UltraFeedbackJudge(backend, SAMPLING, ["instruction_following"], 0, texts_per_request=4)
    (judgment,) = run(judge, [item])
    assert sorted(len(shown_texts(r.messages)) for r in backend.requests) == [3, 4]
    assert [r.score for r in judgment.ratings] == [float(1 + i % 5) for i in range(7)]


def test_position_bias_is_spread_over_candidates_and_visible_in_stats():
    """A judge that always prefers the first text shown favours a different candidate per prompt, and the
    mean rating by display position shows the bias."""

    def first_is_best(messages):
        return native_ratings([5] + [2] * (len(shown_texts(messages)) - 1))

    items = [JudgeItem(f"prompt-{i}", to_messages(f"q{i}"), ["a", "b", "c"]) for i in range(30)]
    judge = UltraFeedbackJudge(ScriptedBackend(first_is_best), SAMPLING, ["helpfulness"], 0, seed=3)
    judgments = run(judge, items)
    winners = Counter(max(range(3), key=lambda c: j.ratings[c].score) for j in judgments)
    assert set(winners) == {0, 1, 2} and max(winners.values()) < 20
    candidates = [
        rated_candidate({"text": t}, r)
        for j in judgments
        for t, r in zip(j.item.candidates, j.ratings, strict=True)
    ]
    by_position = score_by_position(candidates)
    assert by_position == {
        "1": {"mean": 5.0, "ratings": 30},
        "2": {"mean": 2.0, "ratings": 30},
        "3": {"mean": 2.0, "ratings": 30},
    }
    assert "by display position (position bias): 1: 5.00, 2: 2.00, 3: 2.00" in summary(
        {"score_by_position": by_position}
    )


def test_world_knowledge_reaches_the_truthfulness_rubric():
    item = JudgeItem(
        "p", to_messages("Capital of Australia?"), ["Canberra q5", "Sydney q1"], reference="Canberra"
    )
    backend = ScriptedBackend(quality_judge)
    run(UltraFeedbackJudge(backend, SAMPLING, ["truthfulness", "helpfulness"], 0), [item])
    by_aspect = {aspect_of(r.messages): r.messages[1]["content"] for r in backend.requests}
    assert "World knowledge" in by_aspect["truthfulness"] and "Canberra\n" in by_aspect["truthfulness"]
    assert "World knowledge" not in by_aspect["helpfulness"]


def test_unparsable_replies_are_reasked_then_fail_the_item():
    def recovers_when_reasked(messages):
        reasked = messages[-1]["role"] == "user" and "could not be read" in messages[-1]["content"]
        return quality_judge(messages) if reasked else "Both are decent answers."

    item = JudgeItem("p", to_messages("hi"), ["answer q3", "answer q4"])
    (judgment,) = run(
        UltraFeedbackJudge(ScriptedBackend(recovers_when_reasked), SAMPLING, list(ASPECTS), 2), [item]
    )
    assert [r.score for r in judgment.ratings] == [3.25, 4.25]
    assert judgment.parse_failures == Counter({"no_ratings": 4})

    backend = ScriptedBackend(lambda messages: "Both are decent answers.")
    (judgment,) = run(UltraFeedbackJudge(backend, SAMPLING, list(ASPECTS), max_reasks=1), [item])
    assert len(backend.requests) == 8  # each aspect asked twice, then given up
    assert judgment.parse_failures == Counter({"no_ratings": 8, "gave_up": 4})
    assert judgment.ratings is None and "gave up" in judgment.error


def test_one_given_up_aspect_fails_the_item_instead_of_averaging_the_others():
    def honesty_unreadable(messages):
        return "No idea." if aspect_of(messages) == "honesty" else quality_judge(messages)

    item = JudgeItem("p", to_messages("hi"), ["answer q3", "answer q4"])
    (judgment,) = run(
        UltraFeedbackJudge(ScriptedBackend(honesty_unreadable), SAMPLING, list(ASPECTS), 0), [item]
    )
    assert judgment.ratings is None and "honesty" in judgment.error
    assert judgment.parse_failures["gave_up"] == 1


def test_judge_config_forces_temperature_zero_and_needs_max_new_tokens():
    with pytest.raises(ValueError, match="temperature 0"):
        JudgeConfig(
            kind="ultrafeedback", model="m", sampling=SamplingConfig(max_new_tokens=8, temperature=0.7)
        )
    with pytest.raises(ValueError, match="sampling"):
        JudgeConfig(kind="pairwise", model="m")


def test_duplicate_aspects_are_rejected_at_validation(tmp_path):
    from aift_helpers import write_recipe

    section = {
        "prompts": {"datasets": [{"path": str(tmp_path / "p.jsonl")}]},
        "generators": [{"model": "m", "sampling": {"max_new_tokens": 4}}],
        "judge": {
            "kind": "ultrafeedback",
            "model": "m",
            "sampling": {"max_new_tokens": 64},
            "aspects": ["helpfulness", "helpfulness"],
        },
    }
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    from westwind.errors import RecipeError

    with pytest.raises(RecipeError, match="aift.judge: aspects lists helpfulness more than once"):
        load_recipe(write_recipe(tmp_path, "m", section))


def test_nan_scores_stay_unrated():
    item = JudgeItem("p", to_messages("hi"), ["story q1", "story q2"])
    (judgment,) = run(UltraFeedbackJudge(ScriptedBackend(quality_judge), SAMPLING, ["honesty"], 0), [item])
    assert all(math.isnan(r.score) for r in judgment.ratings)


def first_is_best(messages):
    return native_ratings([5] + [2] * (len(shown_texts(messages)) - 1))


def test_order_checks_measure_how_often_the_best_text_changes():
    """Asked again in reversed order, a judge preferring the first text shown picks another best text every
    time; a judge reading the texts picks the same one. The check never changes a score."""
    items = [JudgeItem(f"p{i}", to_messages(f"q{i}"), ["q1 a", "q4 b", "q3 c"]) for i in range(8)]
    biased = UltraFeedbackJudge(
        ScriptedBackend(first_is_best), SAMPLING, ["helpfulness"], 0, order_check_share=1
    )
    judgments = run(biased, items)
    assert all(j.order_check == Counter({"checked": 1, "flipped": 1}) for j in judgments)

    backend = ScriptedBackend(quality_judge)
    fair = UltraFeedbackJudge(backend, SAMPLING, list(ASPECTS), 0, seed=2, order_check_share=1)
    checked = run(fair, items)
    assert len(backend.requests) == 2 * len(ASPECTS) * len(items)
    assert sum((j.order_check for j in checked), Counter()) == Counter({"checked": 32, "flipped": 0})
    plain = run(UltraFeedbackJudge(ScriptedBackend(quality_judge), SAMPLING, list(ASPECTS), 0, seed=2), items)
    assert [[r.score for r in j.ratings] for j in checked] == [[r.score for r in j.ratings] for j in plain]
    assert all(not j.order_check for j in plain)


def test_order_check_share_is_a_seeded_sample_of_the_requests():
    items = [JudgeItem(f"p{i}", to_messages(f"q{i}"), ["q1 a", "q4 b"]) for i in range(50)]
    backend = ScriptedBackend(quality_judge)
    judge = UltraFeedbackJudge(backend, SAMPLING, ["helpfulness", "honesty"], 0, order_check_share=0.25)
    first = [j.order_check["checked"] for j in run(judge, items)]
    assert 10 <= sum(first) <= 40 and len(backend.requests) == 100 + sum(first)
    again = UltraFeedbackJudge(
        ScriptedBackend(quality_judge), SAMPLING, ["helpfulness", "honesty"], 0, order_check_share=0.25
    )
    assert [j.order_check["checked"] for j in run(again, items)] == first


def test_an_unreadable_order_check_is_counted_and_does_not_fail_the_item():
    def unreadable_when_reversed(messages):
        return "I'd rather not." if shown_texts(messages)[0] == "q4 b" else quality_judge(messages)

    item = JudgeItem("p", to_messages("q"), ["q1 a", "q4 b"])
    judge = UltraFeedbackJudge(
        ScriptedBackend(unreadable_when_reversed),
        SAMPLING,
        ["instruction_following"],
        0,
        seed=0,
        order_check_share=1,
    )
    (judgment,) = run(judge, [item])
    assert judgment.error is None and judgment.ratings is not None
    assert judgment.order_check["unreadable"] == 1 and judgment.parse_failures["no_ratings"] == 1


def test_order_flip_rate_in_stats_summary_and_report():
    records = [
        {"order_check": {"checked": 3, "flipped": 1}},
        {"order_check": {"checked": 1, "flipped": 0}},
        {},
    ]
    flips = order_flips(records, "ultrafeedback")
    assert flips["checked"] == 4 and flips["flipped"] == 1 and flips["rate"] == 0.25
    assert order_flips([{}], "ultrafeedback") is None
    line = "order-flip rate: 25.0% (1 of 4 requests re-asked in reversed order)"
    assert line in summary({"order_flips": flips})
    assert "25.0% (1 of 4 requests re-asked in reversed order)" in order_flip_text(flips)
