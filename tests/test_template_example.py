"""`westwind check`'s rendered example equals, token for token, what TRL's trainers receive for the same row;
check refuses empty local data; the lint runs in `westwind check`; system turns fold in chat and dSFT rows."""

from __future__ import annotations

import pytest
from conftest import make_conversations, make_preferences, tiny_recipe, write_recipe
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM, AutoTokenizer

from westwind.cli import main as westwind
from westwind.training.chat_templates import FOLD_MESSAGE, apply_chat_template_choice
from westwind.training.template_example import dpo_tokens, render, sft_tokens
from westwind.training.trainer import folded

ROW = make_conversations(1)[0]["messages"]


@pytest.fixture
def tokenizer(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    apply_chat_template_choice(tokenizer, "zephyr")
    return tokenizer


@pytest.mark.parametrize("loss", [True, False])
def test_sft_example_is_what_the_sft_trainer_receives(tokenizer, tiny_model, tmp_path, loss):
    from trl import SFTConfig, SFTTrainer

    rows = make_conversations(4, seed=5)
    config = SFTConfig(
        output_dir=str(tmp_path), max_length=256, report_to=[], bf16=False, assistant_only_loss=loss
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    for row, received in zip(rows, trainer.train_dataset, strict=True):
        ids, mask = sft_tokens(tokenizer, row["messages"], loss)
        assert ids == received["input_ids"]
        assert mask == [int(label != -100) for label in received.get("labels", received["input_ids"])]
        assert 0 < sum(mask) < len(ids) if loss else sum(mask) == len(ids)


def test_dpo_example_is_what_the_dpo_trainer_receives(tokenizer, tiny_model, tmp_path):
    from trl import DPOConfig, DPOTrainer

    rows = make_preferences(4, seed=5)
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=DPOConfig(output_dir=str(tmp_path), max_length=256, report_to=[], bf16=False),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    for row, received in zip(rows, trainer.train_dataset, strict=True):
        tokens = dpo_tokens(tokenizer, row)
        for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
            assert tokens[key] == received[key]


def test_render_brackets_loss_runs_and_names_special_tokens(tokenizer):
    ids, mask = sft_tokens(tokenizer, ROW, True)
    text = render(tokenizer, ids, mask, color=False)
    assert text.startswith("<s>·<|user|>") or text.startswith("<s>·")
    answer = ROW[-1]["content"]
    bracketed = text[text.index("[") + 1 : text.index("]")]
    assert bracketed.replace("·", "").replace(" ", "") == (answer + "</s>").replace(" ", "")
    assert text.count("[") == 1  # one assistant turn: one run of loss tokens
    assert "\033[32m" in render(tokenizer, ids, mask, color=True)


# ---------------------------------------------------------------- `westwind check`


def check(argv, capsys) -> tuple[int, str, str]:
    try:
        westwind(["check", *argv])
        code = 0
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_check_prints_one_example_per_training_stage(recipe_file, capsys):
    code, out, err = check([str(recipe_file)], capsys)
    assert code == 0, err
    assert "sft example (" in out and "dpo example (" in out
    assert out.count("inference prompt (AIFT, eval, chat): ") == 2
    assert "special tokens: <s> (id" in out and "</s> (id" in out
    code, out, _ = check([str(recipe_file), "--no-example"], capsys)
    assert code == 0 and "sft example" not in out
    code, out, _ = check([str(recipe_file), "--example", "3"], capsys)
    assert code == 0 and "row 3" in out


def test_a_dpo_example_is_built_from_the_first_dsft_conversation_when_its_data_does_not_exist(tokenizer):
    from westwind.recipe.template_check import Row, pair_from_sft
    from westwind.training.template_example import show_dpo

    pair = pair_from_sft(Row("sft", "sft.jsonl, row 0", {"messages": ROW}))
    assert pair.values["prompt"] == ROW[:-1] and pair.values["chosen"] == ROW[-1:]
    text = show_dpo(tokenizer, pair.values, pair.source, color=False)
    assert "a pair built from the first dSFT conversation" in text
    assert "[" + ROW[-1]["content"].split()[0] in text.replace("·", "")


@pytest.mark.parametrize(
    "content, problem",
    [("", "the file is empty"), ('{"messages": [{"role": "user", "content": "hi"}]}\n', "no valid row")],
)
def test_check_refuses_an_empty_dataset_or_one_with_no_valid_row(
    tmp_path, tiny_model, dpo_jsonl, capsys, content, problem
):
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, tiny_model, data, dpo_jsonl))
    code, _, err = check([str(recipe)], capsys)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {recipe}: sft.datasets[0].path:"), err
    assert problem in errors[0]


def test_check_refuses_a_lint_error_with_one_line(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, capsys):
    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    raw["sft"]["assistant_only_loss"] = False
    raw["model"]["chat_template"] = (
        "{{ bos_token }}{{ bos_token }}{% for m in messages %}{{ m['content'] + eos_token }}{% endfor %}"
    )
    code, _, err = check([str(write_recipe(tmp_path / "r.yaml", raw))], capsys)
    assert code == 2
    assert "model.chat_template: bos: " in err and "write the BOS once" in err


# ---------------------------------------------------------------- a system turn under a template that refuses one


def test_dsft_rows_fold_the_system_turn_where_the_template_refuses_it(tiny_model, capsys):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    apply_chat_template_choice(tokenizer, "gemma")
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, *ROW]}]
    dataset = folded(DatasetDict({"train": Dataset.from_list(rows)}), tokenizer, "messages")
    messages = dataset["train"][0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "Be brief.\n\n" + ROW[0]["content"]
    tokenizer.apply_chat_template(messages, tokenize=False)  # renders: it would raise with the system turn


def test_chat_system_prompt_folds_under_a_template_that_refuses_it(tiny_model, capsys, monkeypatch):
    from westwind.training import chat_templates

    monkeypatch.setattr(chat_templates, "_said_folding", set())  # said once per process: say it again here
    westwind(
        [
            "chat",
            str(tiny_model),
            "--chat-template",
            "gemma",
            "--system",
            "Be brief.",
            "--once",
            "hi",
            "--max-new-tokens",
            "2",
        ]
    )
    assert FOLD_MESSAGE in capsys.readouterr().err
