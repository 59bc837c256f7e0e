"""A corpus of messy judge replies, written by hand for the tests, each with what it must parse to or the
parse failure it must raise. Pairwise replies answer the `{"rationale": ..., "winner": ...}` prompt;
rating replies answer UltraFeedback's `#### Output for Text N` layout (or drift into JSON)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple


class VerdictCase(NamedTuple):
    name: str
    reply: str
    expected: str  # "A", "B", "tie", or "fail:<reason>"


class RatingsCase(NamedTuple):
    name: str
    reply: str
    count: int
    allow_na: bool
    expected: list[float | None] | str  # ratings, or "fail:<reason>"


TEMPLATE_ECHO = (
    "Explain briefly which answer is better, then reply with only this JSON object: "
    '{"rationale": "...", "winner": "A" | "B" | "tie"}'
)

VERDICTS = [
    VerdictCase("json", '{"rationale": "A is correct.", "winner": "A"}', "A"),
    VerdictCase("fenced-lowercase", '```json\n{"rationale": "...", "winner": "b"}\n```', "B"),
    VerdictCase("json-tie", '{"rationale": "Both are fine.", "winner": "tie"}', "tie"),
    VerdictCase(
        "json-after-prose", 'B cites its source; a is vague.\n{"rationale": "sourced", "winner": "B"}', "B"
    ),
    VerdictCase("json-cut-short", '{"rationale": "Answer B is wrong, so", "winner": "A"', "A"),
    VerdictCase("mt-bench-tie", "Both are equally good. [[C]]", "tie"),
    VerdictCase("mt-bench-b", "After weighing both: [[B]]", "B"),
    VerdictCase("label-tie", "Verdict: tie", "tie"),
    VerdictCase("bold-label", "The first misses the edge case.\n\n**Final verdict:** A", "A"),
    VerdictCase("stated-with-article", "Answer B is better: a more complete explanation.", "B"),
    VerdictCase("stated-bold", "### Verdict\n\n**Answer A** is better.", "A"),
    VerdictCase("wins-explained", "B wins - it gives the formula and a worked example.", "B"),
    VerdictCase("better-answer-is", "The better answer is B, since it handles the empty list.", "B"),
    VerdictCase(
        "described-then-winner", "Answer A: accurate but short.\nAnswer B: detailed.\n\nWinner: B", "B"
    ),
    VerdictCase("bare-bold", "Both are close, but one is more precise.\n\n**B**", "B"),
    VerdictCase("bare-tie", "Neither is better.\nTie.", "tie"),
    VerdictCase("article-a-tie", "Better: a tie would be unfair; B is more accurate.", "fail:no_verdict"),
    VerdictCase("article-a-prose", "The second answer is better: a fuller reply.", "fail:no_verdict"),
    VerdictCase("echoed-template", TEMPLATE_ECHO, "fail:no_verdict"),
    VerdictCase(
        "echoed-template-alone", '{"rationale": "...", "winner": "A" | "B" | "tie"}', "fail:no_verdict"
    ),
    VerdictCase("descriptions-only", "A: explains the steps clearly\nB: skips a step", "fail:no_verdict"),
    VerdictCase("sentence-with-A", "A tie is the fairest call, as both are wrong.", "fail:no_verdict"),
    VerdictCase("undecided", "I cannot decide.", "fail:no_verdict"),
    VerdictCase(
        "label-with-article", "Winner: a more detailed answer would be preferable.", "fail:no_verdict"
    ),
    VerdictCase("json-bad-value", '{"rationale": "...", "winner": "A or B"}', "fail:no_verdict"),
    VerdictCase(
        "changed-mind", "Winner: A\nOn reflection, A misreads the question.\nWinner: B", "fail:ambiguous"
    ),
    VerdictCase(
        "echoed-tags",
        "[[A]] if A is better, [[B]] if B is better, [[C]] for a tie.\n\n[[A]]",
        "fail:ambiguous",
    ),
    VerdictCase("json-and-line-disagree", '{"rationale": "x", "winner": "A"}\nVerdict: B', "fail:ambiguous"),
]


def json_ratings(ratings: list[Any], key: str = "rating") -> str:
    return json.dumps(
        {"ratings": [{"text": i, "rationale": f"r{i}", key: r} for i, r in enumerate(ratings, 1)]}
    )


def native(ratings: list[str], typed: bool = False) -> str:
    blocks = []
    for index, rating in enumerate(ratings, 1):
        types = "Type: None\nRationale: fine.\n" if typed else ""
        blocks.append(f"#### Output for Text {index}\n{types}Rating: {rating}\nRationale: reason {index}.")
    return "\n\n".join(blocks)


ECHOED_RUBRIC = (
    '#### Output for Text 1\nType: [type numbers separated by commas, or "None"]\n'
    "Rationale: [why, in short sentences]\nRating: [1-5]\nRationale: [why, in short sentences]"
)
NAMES = '[{"name": "Ann"}, {"name": "Bob"}, {"name": "Cy"}, {"name": "Di"}]'

RATINGS = [
    RatingsCase("native", native(["4", "3"], typed=True), 2, False, [4.0, 3.0]),
    RatingsCase("native-four", native(["5", "1", "3", "2"]), 4, False, [5.0, 1.0, 3.0, 2.0]),
    RatingsCase(
        "bold-fields",
        "#### Output for Text 1\n**Rating:** 4\n**Rationale:** ok\n\n#### Output for Text 2\n**Rating**: **2**\n"
        "Rationale: weak",
        2,
        False,
        [4.0, 2.0],
    ),
    RatingsCase("out-of-five", native(["**4/5**", "3 / 5"]), 2, False, [4.0, 3.0]),
    RatingsCase("half-point", native(["4.5", "2"]), 2, False, [4.5, 2.0]),
    RatingsCase("comment-in-parentheses", native(["4 (solid)", "2"]), 2, False, [4.0, 2.0]),
    RatingsCase("na-honesty", native(["N/A", "5"]), 2, True, [None, 5.0]),
    RatingsCase("na-lowercase", native(["n/a", "**N/A** (creative writing)"]), 2, True, [None, None]),
    RatingsCase("na-not-allowed", native(["N/A", "5"]), 2, False, "fail:unexpected_na"),
    RatingsCase("loose-blocks", "Text 1:\nRating: 5\n\nText 2:\nRating: 3\n", 2, False, [5.0, 3.0]),
    RatingsCase("json", json_ratings([4, 2]), 2, False, [4.0, 2.0]),
    RatingsCase("json-score-key", '[{"text": 1, "score": 4}, {"text": 2, "score": 1}]', 2, False, [4.0, 1.0]),
    RatingsCase("json-na-string", json_ratings(["N/A", 3]), 2, True, [None, 3.0]),
    RatingsCase("json-null-helpfulness", json_ratings([None, 3]), 2, False, "fail:unexpected_na"),
    RatingsCase(
        "json-nested-key",
        '{"evaluation": [{"text": 1, "rating": 3}, {"text": 2, "rating": 4}]}',
        2,
        False,
        [3.0, 4.0],
    ),
    RatingsCase(
        "names-then-fenced-ratings",
        f"The authors were {NAMES}.\n```json\n{json_ratings([2, 5])}\n```",
        2,
        False,
        [2.0, 5.0],
    ),
    RatingsCase("quoted-names-list", f"Here are the people mentioned: {NAMES}", 4, True, "fail:no_ratings"),
    RatingsCase(
        "json-missing-rating-field",
        '{"ratings": [{"text": 1, "rating": 4}, {"text": 2, "comment": "fine"}]}',
        2,
        True,
        "fail:incomplete",
    ),
    RatingsCase("fifth-text-native", native(["4", "3", "5", "2", "1"]), 4, False, "fail:extra_texts"),
    RatingsCase("fifth-text-json", json_ratings([4, 3, 5, 2, 1]), 4, False, "fail:extra_texts"),
    RatingsCase(
        "zero-based-ids", '[{"text": 0, "rating": 4}, {"text": 1, "rating": 2}]', 2, False, "fail:extra_texts"
    ),
    RatingsCase("three-of-four", native(["4", "3", "5"]), 4, False, "fail:incomplete"),
    RatingsCase("echoed-rubric", ECHOED_RUBRIC, 1, False, "fail:not_a_number"),
    RatingsCase(
        "prose", "Text 1 is better than text 2; I'd give it a 4 and text 2 a 2.", 2, False, "fail:no_ratings"
    ),
    RatingsCase("out-of-ten", native(["8/10", "6/10"]), 2, False, "fail:not_a_number"),
    RatingsCase("six", native(["6", "3"]), 2, False, "fail:out_of_range"),
    RatingsCase("json-true", json_ratings([True, 3]), 2, False, "fail:not_a_number"),
    RatingsCase(
        "two-ratings-one-block",
        "#### Output for Text 1\nRating: 4\nRationale: x\nRating: 2\n",
        1,
        False,
        "fail:ambiguous",
    ),
]
