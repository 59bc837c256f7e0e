"""Reading judge replies: the rubric's layout strictly first, JSON and loose blocks only when unambiguous;
verdicts only where a format puts one. The corpus in judge_replies.py: no reply misread, every unreadable
one a parse failure."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from aift_helpers import ScriptedBackend
from judge_replies import RATINGS, VERDICTS

from westwind.aift.config import SamplingConfig
from westwind.judges.asking import Asker
from westwind.judges.base import ParseFailure
from westwind.judges.parsers import parse_ratings
from westwind.judges.verdicts import parse_verdict

SAMPLING = SamplingConfig(max_new_tokens=64)


def json_ratings(ratings: list) -> str:
    return json.dumps(
        {"ratings": [{"text": i, "rationale": f"r{i}", "rating": r} for i, r in enumerate(ratings, 1)]}
    )


def ratings_of(reply: str, count: int, allow_na: bool = False) -> list:
    return [(p.rating, p.rationale) for p in parse_ratings(reply, count, allow_na)]


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
    assert ratings_of(reply, 2) == expected


def test_native_layout_gives_the_rationale_types():
    parsed = parse_ratings(NATIVE, 2, allow_na=False)
    assert [p.types for p in parsed] == [[], [1]]


# Replies crafted to fool a search for "a number after rating/score": each names a wrong number first.
ADVERSARIAL = [
    (
        "#### Output for Text 1\nRating: 4\nRationale: Fine.\n\n#### Output for Text 2\n"
        "Rationale: Text 2 is worse than text 1, rating: 1 at best in my view.\nRating: 2\n",
        2,
        [4.0, 2.0],
    ),
    ("Text 1\nRationale: the score: 5 would be too generous here.\nRating: 3\n", 1, [3.0]),
    ("**Text 1**\nThe other text would get a rating: 1.\nRating: **4**\nRationale: ok", 1, [4.0]),
    (
        '{"ratings": [{"text": 1, "rationale": "better than \\"rating\\": 1", "rating": 5}, {"text": 2, "rating": 3',
        2,
        [5.0, 3.0],
    ),
]


@pytest.mark.parametrize(
    ("reply", "count", "expected"), ADVERSARIAL, ids=["rationale", "score", "bold", "json-cut"]
)
def test_a_number_in_a_rationale_never_becomes_the_rating(reply, count, expected):
    assert [p.rating for p in parse_ratings(reply, count, allow_na=False)] == expected


def test_rationale_mentioning_another_text_is_not_a_new_block():
    reply = json_ratings([5, 2]).replace('"r1"', '"Unlike text 2, it is right."')[:-2]  # also cut the tail
    assert [rating for rating, _ in ratings_of(reply, 2)] == [5.0, 2.0]


@pytest.mark.parametrize(
    ("reply", "count", "allow_na", "reason"),
    [
        (TRUNCATED, 2, False, "incomplete"),
        (json_ratings([4]), 2, False, "incomplete"),
        (json_ratings([0, 3]), 2, False, "out_of_range"),
        (json_ratings([4, 6]), 2, False, "out_of_range"),
        (json_ratings([4, "N/A"]), 2, False, "unexpected_na"),
        (json_ratings([4, "excellent"]), 2, False, "not_a_number"),
        (json_ratings([True, 3]), 2, False, "not_a_number"),  # JSON true is not a 1
        ('{"ratings": [{"text": 1, "rating": true}, {"text": 2, "rating": 3', 2, False, "not_a_number"),
        ("#### Output for Text 1\nRating: 4\nRationale: x\nRating: 2\n", 1, False, "ambiguous"),
        ("#### Output for Text 1\nRating: 4\n\n#### Output for Text 1\nRating: 2\n", 1, False, "ambiguous"),
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
    assert ratings_of(reply, 2, allow_na=True) == [(None, "r1"), (3.0, "r2")]
    native = "#### Output for Text 1\nRating: N/A\nRationale: Creative writing.\n"
    assert ratings_of(native, 1, allow_na=True) == [(None, "Creative writing.")]


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


# ---------------------------------------------------------------- the corpus of messy replies (judge_replies.py)


def outcome(parse, *args) -> object:
    try:
        return parse(*args)
    except ParseFailure as failure:
        return f"fail:{failure.reason}"


def test_the_corpus_is_large_and_covers_both_formats():
    assert len(VERDICTS) + len(RATINGS) >= 40
    assert {c.expected for c in VERDICTS} >= {"A", "B", "tie", "fail:no_verdict", "fail:ambiguous"}


@pytest.mark.parametrize("case", VERDICTS, ids=[c.name for c in VERDICTS])
def test_no_verdict_in_the_corpus_is_misread(case):
    assert outcome(parse_verdict, case.reply) == case.expected


@pytest.mark.parametrize("case", RATINGS, ids=[c.name for c in RATINGS])
def test_no_rating_in_the_corpus_is_misread(case):
    got = outcome(parse_ratings, case.reply, case.count, case.allow_na)
    if isinstance(got, list):
        got = [p.rating for p in got]
    assert got == case.expected


def test_an_unreadable_verdict_is_counted_and_re_asked():
    """Prose that once read as "A" is now a parse failure the judge is asked again about."""
    replies = iter(["The second answer is better: a fuller reply.", '{"rationale": "fuller", "winner": "B"}'])
    asker = Asker(ScriptedBackend(lambda messages: next(replies)), SAMPLING, lambda _, r: parse_verdict(r), 1)
    ((_, answer),) = list(asker.ask({"k": [{"role": "user", "content": "compare"}]}))
    assert answer.value == "B" and answer.parse_failures == Counter({"no_verdict": 1})
