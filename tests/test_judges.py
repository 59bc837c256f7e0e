"""Judges: the UltraFeedback rating parser and rater, pairwise A/B/tie, reward model and verifier scoring."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable

import pytest
from aift_helpers import save_tiny_reward_model
from conftest import shared_file

from westwind.aift_config import ASPECTS, JudgeConfig, SamplingConfig
from westwind.generation import Completion, Result
from westwind.judges import (
    RUBRICS,
    JudgeItem,
    PairwiseJudge,
    ParseFailure,
    RewardModelJudge,
    UltraFeedbackJudge,
    VerifierJudge,
    parse_ratings,
    parse_verdict,
    rating_messages,
)
from westwind.prompts import to_messages

SAMPLING = SamplingConfig(max_new_tokens=512)


class ScriptedBackend:
    """Answers each request with `reply(messages)`; records what it was asked."""

    name = "scripted"

    def __init__(self, reply: Callable[[list[dict]], str]):
        self.reply = reply
        self.requests = []

    def run(self, requests, on_result) -> None:
        for request in requests:
            self.requests.append(request)
            on_result(Result(request, [Completion(self.reply(request.messages))]))

    def close(self) -> None:
        pass


def shown_texts(messages: list[dict]) -> list[str]:
    user = next(m["content"] for m in messages if m["role"] == "user")
    return [m.group(2) for m in re.finditer(r"<text (\d+)>\n(.*?)\n</text \1>", user, re.DOTALL)]


def aspect_of(messages: list[dict]) -> str:
    user = next(m["content"] for m in messages if m["role"] == "user")
    return next(a for a in ASPECTS if RUBRICS[a] in user)


def json_ratings(ratings: list) -> str:
    return json.dumps(
        {"ratings": [{"text": i, "rationale": f"r{i}", "rating": r} for i, r in enumerate(ratings, 1)]}
    )


# ---------------------------------------------------------------- parsing realistic judge replies

WELL_FORMED = json_ratings([4, 2])
MARKDOWN = (
    "Here is my assessment of the two texts.\n\n```json\n"
    '{\n  "ratings": [\n    {"text": 1, "rationale": "Follows the format.", "rating": 5},\n'
    '    {"text": 2, "rationale": "Ignores the word limit.", "rating": "2"}\n  ]\n}\n```\nLet me know!'
)
NATIVE = (
    "#### Output for Text 1\nType: None\nRationale: No hallucination.\nRating: 4\n"
    "Rationale: Accurate, though it is less detailed than text 2 in places.\n\n"
    "#### Output for Text 2\nType: 1\nRationale: One invented name.\nRating: 3/5\nRationale: Partly made up."
)
TRUNCATED = '{"ratings": [{"text": 1, "rationale": "Correct and complete.", "rating": 5}, {"text": 2, "rationale": "Mis'
TRUNCATED_AFTER_RATINGS = '{"ratings": [{"text": 1, "rationale": "Good.", "rating": 4}, {"text": 2, "rationale": "Bad.", "rating": 1'


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (WELL_FORMED, [(4.0, "r1"), (2.0, "r2")]),
        (MARKDOWN, [(5.0, "Follows the format."), (2.0, "Ignores the word limit.")]),
        (
            NATIVE,
            [(4.0, "Accurate, though it is less detailed than text 2 in places."), (3.0, "Partly made up.")],
        ),
        (TRUNCATED_AFTER_RATINGS, [(4.0, "Good."), (1.0, "Bad.")]),
    ],
    ids=["json", "markdown", "ultrafeedback-native", "cut-after-ratings"],
)
def test_parse_ratings_reads_realistic_replies(reply, expected):
    assert parse_ratings(reply, 2, allow_na=False) == expected


def test_rationale_mentioning_another_text_is_not_a_new_block():
    reply = json_ratings([5, 2]).replace('"r1"', '"Unlike text 2, it is right."')[:-2]  # also cut the tail
    assert [rating for rating, _ in parse_ratings(reply, 2, allow_na=False)] == [5.0, 2.0]


@pytest.mark.parametrize(
    ("reply", "count", "allow_na", "reason"),
    [
        (TRUNCATED, 2, False, "incomplete"),
        (json_ratings([4]), 2, False, "incomplete"),
        (json_ratings([0, 3]), 2, False, "out_of_range"),
        (json_ratings([4, 6]), 2, False, "out_of_range"),
        (json_ratings([4, "N/A"]), 2, False, "unexpected_na"),
        (json_ratings([4, "excellent"]), 2, False, "not_a_number"),
        ("I think both texts are fine, really.", 2, False, "no_ratings"),
        ("", 1, True, "no_ratings"),
    ],
)
def test_parse_ratings_failures_have_reasons(reply, count, allow_na, reason):
    with pytest.raises(ParseFailure) as failure:
        parse_ratings(reply, count, allow_na)
    assert failure.value.reason == reason


def test_na_is_allowed_for_honesty_only():
    reply = json_ratings(["N/A", 3]) + "\n"
    assert parse_ratings(reply, 2, allow_na=True) == [(None, "r1"), (3.0, "r2")]
    native = "#### Output for Text 1\nRating: N/A\nRationale: Creative writing.\n"
    assert parse_ratings(native, 1, allow_na=True) == [(None, "Creative writing.")]


def fill_native_template(annotation_text: str, ratings: list[int]) -> str:
    """Answer a shared UltraFeedback annotation prompt in the output format it specifies itself."""
    section = annotation_text.split("### Output", 1)[1].split("---", 1)[0]
    for index, rating in enumerate(ratings, 1):
        section = section.replace(f"[Rating for text {index}]", str(rating))
    section = re.sub(r"\[List of numeric identifiers[^\]]*\]", "None", section)
    return re.sub(r"\[Rationale[^\]]*\]", "Because.", section)


@pytest.mark.parametrize("aspect", ASPECTS)
def test_ultrafeedback_style_annotation_prompts(aspect):
    path = shared_file(f"data/ultrafeedback_style/create_annotation_mix_out_full_{aspect}-full.jsonl")
    for row in map(json.loads, path.read_text().splitlines()):
        assert row["aspect"] == aspect
        messages = rating_messages(aspect, to_messages(row["raw_text"]), row["completions"])
        user = messages[-1]["content"]
        assert row["raw_text"] in user and RUBRICS[aspect] in user
        assert shown_texts(messages) == row["completions"]
        assert ("N/A" in user) == (aspect == "honesty")
        # The reference annotation format (its own prompt) is one our parser reads.
        ratings = [5, 3, 1, 4][: len(row["completions"])]
        reply = fill_native_template(row["text"], ratings)
        assert [r for r, _ in parse_ratings(reply, len(ratings), allow_na=aspect == "honesty")] == ratings


# ---------------------------------------------------------------- the UltraFeedback judge


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
    return json_ratings(ratings)


def test_ultrafeedback_scores_map_back_through_the_shuffle():
    items = [
        JudgeItem(f"p{i}", to_messages(f"prompt {i}"), ["answer q1", "answer q4", "story q3", "answer q2"])
        for i in range(6)
    ]
    backend = ScriptedBackend(quality_judge)
    judgments = []
    UltraFeedbackJudge(backend, SAMPLING, list(ASPECTS), max_reasks=1, seed=0).judge(items, judgments.append)
    assert len(judgments) == len(items) and len(backend.requests) == 4 * len(items)
    assert {tuple(shown_texts(r.messages)) for r in backend.requests} != {
        tuple(items[0].candidates)
    }  # shuffled
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
        assert not judgment.parse_failures and judgment.error is None


def test_position_bias_is_spread_over_candidates():
    """A judge that always prefers the first text shown favours a different candidate per prompt."""

    def first_is_best(messages):
        return json_ratings([5] + [2] * (len(shown_texts(messages)) - 1))

    items = [JudgeItem(f"prompt-{i}", to_messages(f"q{i}"), ["a", "b", "c"]) for i in range(30)]
    judgments = []
    UltraFeedbackJudge(ScriptedBackend(first_is_best), SAMPLING, ["helpfulness"], 0, seed=3).judge(
        items, judgments.append
    )
    winners = Counter(max(range(3), key=lambda c: j.ratings[c].score) for j in judgments)
    assert set(winners) == {0, 1, 2} and max(winners.values()) < 20


def test_unparsable_replies_are_reasked_then_counted():
    def recovers_when_reasked(messages):
        reasked = messages[-1]["role"] == "user" and "could not be read" in messages[-1]["content"]
        return quality_judge(messages) if reasked else "Both are decent answers."

    item = JudgeItem("p", to_messages("hi"), ["answer q3", "answer q4"])
    judgments = []
    UltraFeedbackJudge(ScriptedBackend(recovers_when_reasked), SAMPLING, list(ASPECTS), 2).judge(
        [item], judgments.append
    )
    assert [r.score for r in judgments[0].ratings] == [3.25, 4.25]
    assert judgments[0].parse_failures == Counter({"no_ratings": 4})

    backend = ScriptedBackend(lambda messages: "Both are decent answers.")
    judgments = []
    UltraFeedbackJudge(backend, SAMPLING, list(ASPECTS), max_reasks=1).judge([item], judgments.append)
    assert len(backend.requests) == 8  # each aspect asked twice, then given up
    assert judgments[0].parse_failures == Counter({"no_ratings": 8, "gave_up": 4})
    assert all(math.isnan(r.score) for r in judgments[0].ratings)


def test_judge_config_forces_temperature_zero_and_needs_max_new_tokens():
    with pytest.raises(ValueError, match="temperature 0"):
        JudgeConfig(
            kind="ultrafeedback", model="m", sampling=SamplingConfig(max_new_tokens=8, temperature=0.7)
        )
    with pytest.raises(ValueError, match="sampling"):
        JudgeConfig(kind="pairwise", model="m")


# ---------------------------------------------------------------- pairwise


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ('{"rationale": "A is correct.", "winner": "A"}', "A"),
        ('```json\n{"rationale": "...", "winner": "b"}\n```', "B"),
        ("Both are equally good. [[C]]", "tie"),
        ("After weighing both: [[B]]", "B"),
        ("Verdict: tie", "tie"),
        ('{"rationale": "Answer B is wrong, so", "winner": "A"', "A"),  # truncated JSON, pattern fallback
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_parse_verdict_failure():
    with pytest.raises(ParseFailure):
        parse_verdict("I cannot decide.")


def answers_in(messages) -> tuple[str, str]:
    user = messages[-1]["content"] if messages[-1]["role"] == "user" else messages[1]["content"]
    found = re.search(r"## Answer A\n(.*?)\n\n## Answer B\n(.*?)\n\n", user, re.DOTALL)
    return found.group(1), found.group(2)


def test_pairwise_compare_runs_both_orders():
    longer_wins = ScriptedBackend(
        lambda m: '{"winner": "%s"}' % ("A" if len(answers_in(m)[0]) > len(answers_in(m)[1]) else "B")
    )
    judge = PairwiseJudge(longer_wins, SAMPLING)
    assert judge.compare("Explain DNS.", "a long, detailed answer", "short") == "A"
    assert (
        judge.compare([{"role": "user", "content": "Explain DNS."}], "short", "a long, detailed answer")
        == "B"
    )
    assert len(longer_wins.requests) == 4

    always_a = PairwiseJudge(ScriptedBackend(lambda m: "[[A]]"), SAMPLING)
    assert always_a.compare("q", "x", "y") == "tie"  # position bias: the orders disagree

    confused = PairwiseJudge(ScriptedBackend(lambda m: "hmm"), SAMPLING, max_reasks=1)
    assert confused.compare("q", "x", "y") == "tie"
    assert confused.parse_failures == Counter({"no_verdict": 4})


def test_pairwise_round_robin_scores():
    backend = ScriptedBackend(
        lambda m: '{"winner": "%s"}' % ("A" if len(answers_in(m)[0]) > len(answers_in(m)[1]) else "B")
    )
    judgments = []
    item = JudgeItem("p", to_messages("q"), ["bb", "a", "cccc"])
    PairwiseJudge(backend, SAMPLING).judge([item], judgments.append)
    assert [r.score for r in judgments[0].ratings] == [0.5, 0.0, 1.0]


# ---------------------------------------------------------------- reward model and verifier


def test_reward_model_scores_are_batch_independent(tiny_model, tmp_path):
    path = save_tiny_reward_model(tiny_model, tmp_path / "rm")
    items = [
        JudgeItem(f"p{i}", to_messages(f"reverse: cat dog {i}"), ["dog cat", "cat", "the the the"])
        for i in range(3)
    ]
    scores = {}
    for batch_size in (1, 4):
        judge = RewardModelJudge(
            JudgeConfig(kind="reward_model", model=str(path), batch_size=batch_size, device="cpu")
        )
        judgments = []
        judge.judge(items, judgments.append)
        scores[batch_size] = [r.score for j in judgments for r in j.ratings]
    assert all(math.isfinite(s) for s in scores[1])
    assert len(set(scores[1])) > 1
    assert scores[4] == pytest.approx(scores[1], abs=1e-4)


def test_verifier_scores_with_the_reference_and_reports_errors():
    items = [JudgeItem("p1", to_messages("What is 2+2?"), ["5", "4", "four"], reference="4")]
    judgments = []
    VerifierJudge("aift_helpers:length_score").judge(items, judgments.append)
    assert [r.score for r in judgments[0].ratings] == [1.0, 1.0, 4.0]

    flaky = [JudgeItem("p2", to_messages("the moon is"), ["round"])]
    VerifierJudge("aift_helpers:flaky_score").judge(flaky, judgments.append)
    assert judgments[1].ratings is None and "verifier backend unavailable" in judgments[1].error


def test_verifier_import_errors_name_the_callable():
    with pytest.raises(ValueError, match="aift_helpers:nope"):
        VerifierJudge("aift_helpers:nope")
