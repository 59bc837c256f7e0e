"""Self-Instruct pieces: seed file, numbered-list parsing, the unsuitable-keyword rule, the prompt."""

from __future__ import annotations

import pytest
from conftest import shared_file

from westwind.distill.config import UNSUITABLE_KEYWORDS
from westwind.distill.instructions import keyword_pattern, load_seed_tasks, parse_numbered_list
from westwind.errors import DataError


def test_real_seed_tasks_load():
    instructions = load_seed_tasks(shared_file("data/self_instruct_seed_tasks.jsonl"))
    assert len(instructions) == 175 and all(i and "\n" not in i for i in instructions)


def test_a_seed_line_without_instruction_is_a_data_error(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"instruction": "Say hi."}\n{"name": "x"}\n')
    with pytest.raises(DataError, match="line 2: no `instruction`"):
        load_seed_tasks(path)


def test_numbered_list_parsing_joins_continuations_and_cuts_a_truncated_tail():
    text = "Sure! New tasks:\n9. Explain tides.\n10) Write a haiku\n   about autumn.\n\n11. Compare two sorting alg"
    assert parse_numbered_list(text, truncated=False) == (
        ["Explain tides.", "Write a haiku about autumn.", "Compare two sorting alg"],
        0,
    )
    assert parse_numbered_list(text, truncated=True) == (["Explain tides.", "Write a haiku about autumn."], 1)
    assert parse_numbered_list("no list here", truncated=False) == ([], 0)


@pytest.mark.parametrize(
    ("text", "unsuitable"),
    [
        ("Draw a cat.", True),
        ("Describe the graphs below.", True),
        ("Go  to the store and buy milk.", True),
        ("Summarize this FILE.", True),
        ("Explain what a profile is.", False),  # 'file' inside a word does not count
        ("Describe the geography of Peru.", False),
        ("What is a good mapping function?", False),
    ],
)
def test_unsuitable_keywords_match_whole_words(text, unsuitable):
    assert bool(keyword_pattern(list(UNSUITABLE_KEYWORDS)).search(text)) is unsuitable
