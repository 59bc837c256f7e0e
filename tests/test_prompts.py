"""AIFT prompt extraction, dedupe, decontamination, capping and sharding."""

from __future__ import annotations

import json

import pytest
from conftest import make_conversations, shared_file, write_jsonl
from trl.scripts.utils import DatasetConfig

from westwind.aift.config import DecontaminationConfig, PromptsConfig
from westwind.aift.prompts import (
    Decontaminator,
    cap,
    eval_texts,
    extract,
    in_shard,
    load_prompts,
    normalize_text,
    parse_shard,
    prompt_id,
    to_messages,
    with_system_prompt,
)
from westwind.errors import DataError


def self_instruct_rows() -> list[dict]:
    path = shared_file("data/self_instruct_seed_tasks.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_string_and_single_user_turn_share_an_id_and_variants_normalize():
    text = "Give 5 restaurants in Seattle for dinner"
    assert prompt_id(to_messages(text)) == prompt_id([{"role": "user", "content": text}])
    assert prompt_id(to_messages("  give 5 RESTAURANTS\nin seattle  for dinner ")) == prompt_id(
        to_messages(text)
    )
    assert normalize_text("ﬁve") == "five"  # NFKC folds the ligature
    assert prompt_id(to_messages(text + "!")) != prompt_id(to_messages(text))


def test_conversations_are_cut_after_the_last_user_turn():
    conversation = make_conversations(1)[0]["messages"]
    messages = to_messages(conversation)
    assert messages[-1]["role"] == "user"
    assert messages == conversation[:-1]
    multi = [*conversation, {"role": "user", "content": "and again?"}, {"role": "assistant", "content": "ok"}]
    assert to_messages(multi)[-1]["content"] == "and again?"
    assert len(to_messages(multi)) == len(multi) - 1


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        None,
        3,
        [{"role": "assistant", "content": "hi"}],
        [{"role": "user"}],
        [{"role": "user", "content": ""}],
    ],
)
def test_unusable_values_are_rejected(value):
    assert to_messages(value) is None


def test_self_instruct_prompts_dedupe_on_normalized_text(tmp_path):
    rows = self_instruct_rows()
    original = write_jsonl(tmp_path / "self_instruct.jsonl", rows)
    variants = [{**row, "instruction": "  " + row["instruction"].upper() + "\n"} for row in rows[:10]]
    augmented = write_jsonl(tmp_path / "augmented.jsonl", rows + variants)

    def load(path):
        return load_prompts(PromptsConfig([DatasetConfig(path=str(path))], column="instruction"), seed=0)

    base_prompts, base_counts = load(original)
    prompts, counts = load(augmented)
    assert [p.prompt_id for p in prompts] == [p.prompt_id for p in base_prompts]
    assert counts["duplicates"] == base_counts["duplicates"] + len(variants)
    assert counts["rows"] == len(rows) + len(variants)
    assert len({normalize_text(p.text) for p in prompts}) == len(prompts)
    assert {p.text for p in prompts} <= {row["instruction"] for row in rows}
    assert all(p.messages == [{"role": "user", "content": p.text}] for p in prompts)


def test_decontamination_flags_ngram_overlap_with_eval_prompts(tmp_path):
    rows = self_instruct_rows()
    long_instructions = [row["instruction"] for row in rows if len(row["instruction"].split()) >= 10]
    long_ones, near_miss = long_instructions[:5], long_instructions[-1]
    # Eval prompts embedding a training prompt in other text, and one sharing only 7 words with one.
    eval_rows = [{"prompt": f"Question {i}: {text} Think step by step."} for i, text in enumerate(long_ones)]
    eval_rows.append({"prompt": " ".join(near_miss.split()[:7]) + " zebra quantum"})
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    evals = write_jsonl(tmp_path / "eval.jsonl", eval_rows)
    config = PromptsConfig(
        [DatasetConfig(path=str(train))],
        column="instruction",
        decontaminate=DecontaminationConfig([DatasetConfig(path=str(evals))], column="prompt", ngram=8),
    )
    prompts, counts = load_prompts(config, seed=0)
    kept = {p.text for p in prompts}
    assert counts["contaminated"] == len(long_ones)
    assert not kept & set(long_ones)
    assert near_miss in kept


def test_decontaminator_matches_short_prompts_exactly():
    flag = Decontaminator(["What is 2 + 2?", "a b c d e f g h i j"], n=5)
    assert flag("what is 2 +   2?")
    assert not flag("What is 2 + 3?")
    assert flag("x y a b c d e z")  # shares the 5-gram "a b c d e"
    assert not flag("a b c d x")


def test_cap_is_seeded_and_keeps_dataset_order():
    prompts, _ = extract([{"prompt": f"task number {i}"} for i in range(50)], "prompt", None)
    first, again, other = cap(prompts, 10, seed=1), cap(prompts, 10, seed=1), cap(prompts, 10, seed=2)
    assert [p.prompt_id for p in first] == [p.prompt_id for p in again]
    assert [p.prompt_id for p in first] != [p.prompt_id for p in other]
    positions = [prompts.index(p) for p in first]
    assert positions == sorted(positions) and len(first) == 10
    assert cap(prompts, None, seed=1) == prompts


def test_max_prompts_and_reference_column(tmp_path):
    rows = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(30)]
    path = write_jsonl(tmp_path / "math.jsonl", rows)
    config = PromptsConfig([DatasetConfig(path=str(path))], max_prompts=12)
    prompts, counts = load_prompts(config, seed=0, reference_column="answer")
    assert len(prompts) == 12 and counts["over_max_prompts"] == len(rows) - 12
    for prompt in prompts:
        number = int(prompt.text.split()[2])
        assert prompt.reference == str(2 * number)


def test_missing_prompt_column_is_a_data_error(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "hi"}])
    with pytest.raises(DataError, match="no column 'prompt'"):
        load_prompts(PromptsConfig([DatasetConfig(path=str(path))]), seed=0)


def test_shards_partition_the_prompts():
    prompts, _ = extract([{"prompt": f"prompt {i}"} for i in range(400)], "prompt", None)
    ids = [p.prompt_id for p in prompts]
    shards = [{i for i in ids if in_shard(i, index, 4)} for index in range(4)]
    assert set().union(*shards) == set(ids)
    assert sum(len(s) for s in shards) == len(ids)
    assert all(60 < len(s) < 140 for s in shards)


@pytest.mark.parametrize("text", ["2/2", "-1/3", "a/b", "3", "1/0"])
def test_parse_shard_rejects_bad_values(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def test_parse_shard_accepts_i_of_n():
    assert parse_shard("3/8") == (3, 8)


def test_eval_sets_may_hold_turn_lists_and_conversations(tmp_path):
    rows = self_instruct_rows()
    first, second, third = (row["instruction"] for row in rows[:3])
    evals = write_jsonl(
        tmp_path / "eval.jsonl",
        [
            {"prompt": ["Hello there.", first]},  # MT-Bench style: the turns as strings
            {"prompt": [{"role": "user", "content": second}, {"role": "assistant", "content": third}]},
        ],
    )
    config = DecontaminationConfig([DatasetConfig(path=str(evals))], column="prompt", ngram=8)
    texts = eval_texts(config, seed=0)
    assert texts == ["Hello there.", first, second]


def test_system_prompt_is_merged_into_an_existing_system_turn():
    user = {"role": "user", "content": "hi"}
    merged = with_system_prompt([{"role": "system", "content": "Be terse."}, user], "P")
    assert merged == [{"role": "system", "content": "P\n\nBe terse."}, user]
    assert with_system_prompt([user], "P") == [{"role": "system", "content": "P"}, user]
