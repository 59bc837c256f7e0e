"""Dataset mixtures from every source, and row validation for SFT and DPO."""

from __future__ import annotations

import re

import datasets
import pytest
from conftest import make_conversations, make_preferences, tiny_recipe, write_jsonl, write_recipe
from trl.scripts.utils import DatasetConfig

from westwind.errors import DataError, RecipeError
from westwind.recipe.core import load_recipe
from westwind.training import data


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


COLOUR_ROWS = {
    "ultrafeedback-binarized": {
        "prompt": "Name a colour.",
        "prompt_id": "abc",
        "chosen": [user("Name a colour."), assistant("Blue.")],
        "rejected": [user("Name a colour."), assistant("A dog.")],
        "score_chosen": 8.0,
        "score_rejected": 2.0,
    },
    "sharegpt": {
        "conversations": [{"from": "human", "value": "Name a colour."}],
        "chosen": {"from": "gpt", "value": "Blue."},
        "rejected": {"from": "gpt", "value": "A dog."},
    },
}


@pytest.mark.parametrize("shape", COLOUR_ROWS)
def test_common_preference_shapes_are_normalized(tmp_path, shape):
    path = write_jsonl(tmp_path / "prefs.jsonl", [COLOUR_ROWS[shape]])
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


# ---------------------------------------------------------------- bad files and splits


def test_an_empty_file_is_one_clear_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(DataError, match=f"dataset {re.escape(str(path))}: the file is empty"):
        data.sft_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=False)


def test_a_test_split_leaving_no_training_row_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", make_conversations(4))
    with pytest.raises(DataError, match=r"test_split_size: 0.9 of 4 row\(s\) leaves no training row"):
        data.sft_dataset([DatasetConfig(path=str(path))], 0.9, seed=0, drop_invalid=False)


# ---------------------------------------------------------------- common formats


def sharegpt(*turns):
    return [{"from": role, "value": text} for role, text in turns]


def test_sharegpt_rows_become_messages_and_the_conversion_is_said(tmp_path, capsys):
    rows = [
        {"conversations": sharegpt(("system", "Be terse."), ("human", "Hi?"), ("gpt", "Hello."))},
        {"conversations": sharegpt(("human", "Two?"), ("gpt", "2."))},
    ]
    path = write_jsonl(tmp_path / "sharegpt.jsonl", rows)
    train = data.sft_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=False)["train"]
    assert train[0]["messages"] == [
        {"role": "system", "content": "Be terse."},
        user("Hi?"),
        assistant("Hello."),
    ]
    assert "ShareGPT `conversations`" in capsys.readouterr().out


def test_list_of_parts_content_is_joined(tmp_path, capsys):
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    row = {"messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": parts[:1]}]}
    path = write_jsonl(tmp_path / "parts.jsonl", [row, row])
    train = data.sft_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=False)["train"]
    assert train[0]["messages"] == [user("first\nsecond"), assistant("first")]
    assert "list-of-parts content" in capsys.readouterr().out


def test_when_every_row_is_bad_the_format_is_named_not_drop_invalid_rows(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Hi", "output": "Hello"}] * 3)
    for drop_invalid in (False, True):
        with pytest.raises(DataError) as caught:
            data.sft_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=drop_invalid)
        message = str(caught.value)
        assert (
            "every row is invalid" in message and "the format looks wrong: SFT expects `messages`" in message
        )
        assert "drop_invalid_rows" not in message


def test_dropped_rows_are_counted_by_reason_and_unused_columns_named(tmp_path, capsys):
    rows = [{**row, "label": True, "images": []} for row in make_conversations(6)]
    rows[1]["messages"] = [user("a"), user("b")]
    rows[2]["messages"] = [user("a"), user("c")]
    rows[4]["messages"] = [user("a"), assistant("")]
    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    dataset = data.sft_dataset([DatasetConfig(path=str(path))], None, seed=0, drop_invalid=True)
    assert len(dataset["train"]) == 3
    out = capsys.readouterr().out
    assert (
        "dropped 3 invalid row(s) of 6: 2 x message N: expected an assistant turn (roles must alternate), "
        "got user; 1 x message N (assistant) is empty"
    ) in out
    assert out.count("column(s) not used by sft: images, label") == 1


def test_an_sft_folder_holding_both_model_kinds_is_refused(recipe_file):
    recipe = load_recipe(recipe_file, stage="dpo")
    sft_dir = recipe.stage_dir("sft")
    sft_dir.mkdir(parents=True)
    (sft_dir / "config.json").write_text("{}")  # a full model ...
    (sft_dir / "adapter_config.json").write_text("{}")  # ... beside a LoRA adapter left from another run
    with pytest.raises(RecipeError, match="holds both a full model and a LoRA adapter"):
        data.dpo_inputs(recipe)


def test_the_dpo_policy_path_is_absolute(tmp_path, monkeypatch, tiny_model, sft_jsonl, dpo_jsonl):
    """A DPO adapter saves its base (the dSFT folder) by this path: it must not depend on the working dir."""
    monkeypatch.chdir(tmp_path)
    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    raw["output_dir"] = "out"
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", raw), stage="dpo")
    (tmp_path / "out" / "sft").mkdir(parents=True)
    (tmp_path / "out" / "sft" / "config.json").write_text("{}")
    policy, _ = data.dpo_inputs(recipe)
    assert policy == str((tmp_path / "out" / "sft").resolve())
