"""Dataset mixtures from every source, and row validation for SFT and DPO."""

from __future__ import annotations

import re

import datasets
import pytest
from conftest import make_conversations, make_preferences, write_jsonl
from trl.scripts.utils import DatasetConfig

from westwind import data
from westwind.errors import DataError


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


@pytest.mark.parametrize("source", ["jsonl", "json", "parquet", "save_to_disk", "save_to_disk_dict"])
def test_every_local_source_loads_the_same_rows(tmp_path, source):
    rows = make_conversations(10)
    dataset = datasets.Dataset.from_list(rows)
    if source == "jsonl":
        path = write_jsonl(tmp_path / "d.jsonl", rows)
    elif source == "json":
        path = tmp_path / "d.json"
        dataset.to_json(path, lines=False)
    elif source == "parquet":
        path = tmp_path / "d.parquet"
        dataset.to_parquet(path)
    elif source == "save_to_disk":
        path = tmp_path / "disk"
        dataset.save_to_disk(path)
    else:
        path = tmp_path / "disk_dict"
        datasets.DatasetDict({"train_sft": dataset, "test_sft": dataset.select([0])}).save_to_disk(path)
    split = "train_sft" if source == "save_to_disk_dict" else "train"
    loaded = data.load_dataset_config(DatasetConfig(path=str(path), split=split))
    assert loaded["messages"] == dataset["messages"]


def test_missing_split_and_columns_are_named(tmp_path):
    path = tmp_path / "dict"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(make_conversations(3))}).save_to_disk(path)
    with pytest.raises(DataError, match="no split 'train_prefs'"):
        data.load_dataset_config(DatasetConfig(path=str(path), split="train_prefs"))
    with pytest.raises(DataError, match=r"no column\(s\) \['text'\]"):
        data.load_dataset_config(DatasetConfig(path=str(path), columns=["text"]))


def test_unreachable_hub_dataset_is_a_clear_error():
    with pytest.raises(DataError, match="dataset someone/not-here: could not load"):
        data.load_dataset_config(DatasetConfig(path="someone/not-here"))


def test_fractions_set_the_mixture_shares(tmp_path):
    big = write_jsonl(tmp_path / "big.jsonl", make_conversations(40, seed=1))
    small = write_jsonl(tmp_path / "small.jsonl", make_conversations(10, seed=2))
    configs = [DatasetConfig(path=str(big), fraction=0.75), DatasetConfig(path=str(small), fraction=0.25)]
    mixed = data.load_mixture(configs, seed=0)
    # Capped so nothing is oversampled: all 10 small rows are a quarter, so 30 big rows join them.
    assert len(mixed) == 40
    small_messages = datasets.load_dataset("json", data_files=str(small), split="train")["messages"]
    assert sum(m in small_messages for m in mixed["messages"]) == 10


def test_split_is_seeded(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", make_conversations(50))
    first = data.sft_dataset([DatasetConfig(path=str(path))], 0.2, seed=3, drop_invalid=False)
    second = data.sft_dataset([DatasetConfig(path=str(path))], 0.2, seed=3, drop_invalid=False)
    assert len(first["test"]) == 10
    assert first["test"]["messages"] == second["test"]["messages"]


BAD_CONVERSATIONS = {
    "unknown role": ([{"role": "tool", "content": "x"}, assistant("y")], "role 'tool'"),
    "not alternating": ([user("a"), user("b"), assistant("c")], "roles must alternate"),
    "empty turn": ([user("a"), assistant("  ")], "is empty"),
    "late system": (
        [user("a"), {"role": "system", "content": "s"}, assistant("c")],
        "system turn may only come first",
    ),
    "ends with user": ([user("a"), assistant("b"), user("c")], "last turn must be the assistant's"),
    "starts with assistant": ([assistant("a")], "expected a user turn"),
}


@pytest.mark.parametrize("case", BAD_CONVERSATIONS, ids=list(BAD_CONVERSATIONS))
def test_bad_sft_row_names_dataset_and_index(tmp_path, case):
    messages, problem = BAD_CONVERSATIONS[case]
    rows = make_conversations(5)
    rows.insert(3, {"messages": messages})
    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    with pytest.raises(DataError) as caught:
        data.sft_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=False)
    assert f"dataset {path}, row 3: " in str(caught.value)
    assert problem in str(caught.value)


def test_opt_in_drops_bad_rows_and_counts_them(tmp_path, capsys):
    rows = make_conversations(6)
    rows[1] = {"messages": [user("a"), user("b")]}
    rows[4] = {"messages": [user("a"), assistant("")]}
    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    dataset = data.sft_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=True)
    assert len(dataset["train"]) == 4
    assert "dropped 2 invalid row(s) of 6" in capsys.readouterr().out


def test_conversational_preferences_pass_through(tmp_path):
    rows = make_preferences(4)
    path = write_jsonl(tmp_path / "dpo.jsonl", rows)
    train = data.dpo_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=False)["train"]
    assert train[0] == {k: rows[0][k] for k in ("prompt", "chosen", "rejected")}


def test_ultrafeedback_binarized_shape_is_normalized(tmp_path):
    row = {
        "prompt": "Name a colour.",
        "prompt_id": "abc",
        "chosen": [user("Name a colour."), assistant("Blue.")],
        "rejected": [user("Name a colour."), assistant("A dog.")],
        "score_chosen": 8.0,
        "score_rejected": 2.0,
    }
    path = write_jsonl(tmp_path / "uf.jsonl", [row])
    train = data.dpo_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=False)["train"]
    assert train[0] == {
        "prompt": [user("Name a colour.")],
        "chosen": [assistant("Blue.")],
        "rejected": [assistant("A dog.")],
    }


def test_string_preferences_become_conversations(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."}])
    train = data.dpo_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=False)["train"]
    assert train[0]["prompt"] == [user("Hi?")] and train[0]["chosen"] == [assistant("Hello.")]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"prompt": "Hi?", "chosen": "Same.", "rejected": "Same."}, "chosen and rejected are identical"),
        ({"prompt": "Hi?", "chosen": "", "rejected": "No."}, "chosen: message 1 (assistant) is empty"),
        (
            {"prompt": [user("a"), assistant("b")], "chosen": "c", "rejected": "d"},
            "last turn must be the user's",
        ),
    ],
)
def test_bad_preference_rows_are_reported(tmp_path, row, problem):
    path = write_jsonl(tmp_path / "p.jsonl", [*make_preferences(2), row])
    with pytest.raises(DataError, match=f"row 2: .*{re.escape(problem)}"):
        data.dpo_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=False)
