"""The UltraFeedback rubric prompts: UltraFeedback's reply layout, types for truthfulness/helpfulness, world
knowledge for truthfulness; the shared UltraFeedback-style annotation data reads back through our parser."""

from __future__ import annotations

import json
import re

import pytest
from conftest import shared_file

from westwind.aift.config import ASPECTS
from westwind.aift.prompts import to_messages
from westwind.judges.parsers import parse_ratings
from westwind.judges.rubrics import RUBRICS, TYPED_ASPECTS, rating_messages


def shown_texts(messages: list[dict]) -> list[str]:
    user = next(m["content"] for m in messages if m["role"] == "user")
    return [m.group(2) for m in re.finditer(r"<text (\d+)>\n(.*?)\n</text \1>", user, re.DOTALL)]


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
        ratings = [5, 3, 1, 4][: len(row["completions"])]
        reply = fill_native_template(row["text"], ratings)
        assert [p.rating for p in parse_ratings(reply, len(ratings), allow_na=aspect == "honesty")] == ratings


@pytest.mark.parametrize("aspect", ASPECTS)
def test_rubrics_ask_for_ultrafeedbacks_layout_with_types_where_it_does(aspect):
    user = rating_messages(aspect, to_messages("Capital of France?"), ["Paris", "Lyon"], reference="Paris")[1]
    blocks = user["content"].split("## Your answer", 1)[1]
    assert blocks.count("#### Output for Text") == 2
    assert ("Type:" in blocks) == (aspect in TYPED_ASPECTS)
    assert blocks.index("Rating:") > (blocks.index("Type:") if aspect in TYPED_ASPECTS else 0)
    # World knowledge goes to truthfulness only, as in UltraFeedback, and only when there is a reference.
    assert ("World knowledge" in user["content"]) == (aspect == "truthfulness")
    plain = rating_messages(aspect, to_messages("Capital of France?"), ["Paris", "Lyon"])[1]["content"]
    assert "World knowledge" not in plain
