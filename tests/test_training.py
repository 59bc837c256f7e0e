"""Resuming picks the newest complete checkpoint of this run; one killed mid-save, or made under other inputs,
is never resumed from; rows TRL drops are counted."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import make_conversations, make_preferences, tiny_recipe, write_jsonl, write_recipe

from westwind import identity
from westwind.errors import RecipeError
from westwind.recipe.core import load_recipe
from westwind.training import trainer as training
from westwind.training.trainer import checkpoint_to_resume


def config(output_dir, resume=None, max_steps=-1):
    return SimpleNamespace(output_dir=str(output_dir), resume_from_checkpoint=resume, max_steps=max_steps)


def checkpoint(root, step: int, state: str | None):
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_newest_complete_checkpoint_wins(tmp_path, capsys):
    checkpoint(tmp_path, 4, json.dumps({"global_step": 4}))
    complete = checkpoint(tmp_path, 8, json.dumps({"global_step": 8}))
    checkpoint(tmp_path, 12, None)  # killed before its state was written
    checkpoint(tmp_path, 16, '{"global_st')  # killed while writing it
    assert checkpoint_to_resume(config(tmp_path)) == str(complete)
    printed = capsys.readouterr().out
    assert "ignoring incomplete" in printed and "checkpoint-16" in printed and "checkpoint-12" in printed


def test_no_checkpoint_or_explicit_choice(tmp_path):
    assert checkpoint_to_resume(config(tmp_path / "missing")) is None
    checkpoint(tmp_path, 2, None)
    assert checkpoint_to_resume(config(tmp_path)) is None
    assert checkpoint_to_resume(config(tmp_path, resume="somewhere/checkpoint-9")) == "somewhere/checkpoint-9"


# ---------------------------------------------------------------- what a stage resumes from and starts into

LONG_PROMPT = "reverse: " + " ".join(["quick red river stone"] * 12)


def recipe_for(tmp_path, tiny_model, sft_data, dpo_data, **sections):
    return write_recipe(
        tmp_path / "recipe.yaml", tiny_recipe(tmp_path, tiny_model, sft_data, dpo_data, **sections)
    )


def stage_main(stage: str, recipe, *overrides: str) -> None:
    module = importlib.import_module(f"westwind.stages.{stage}")
    module.cli([str(recipe), *overrides])


def refusal(capsys, stage: str, recipe, *overrides: str) -> str:
    """Run a stage that must refuse: exit 2, no traceback, and one error line (the last on stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        stage_main(stage, recipe, *overrides)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1 and err.strip().endswith(errors[0]), err[-2000:]
    assert errors[0].startswith(f"error: {recipe}: ")
    return errors[0]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_another_models_checkpoint_is_refused_before_anything_loads(
    tmp_path, capsys, tiny_model, sft_jsonl, dpo_jsonl
):
    recipe = recipe_for(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    other = checkpoint(tmp_path / "out" / "sft", 4, json.dumps({"global_step": 4}))
    (other / "config.json").write_text(json.dumps({"hidden_size": 4096}))  # another model's checkpoint
    line = refusal(capsys, "sft", recipe)
    assert "sft.output_dir" in line and "--overwrite_output_dir true" in line and "westwind run" in line
    assert not (tmp_path / "out" / "sft" / "westwind_identity.json").exists()


def test_a_checkpoint_of_this_config_is_resumed_and_one_at_max_steps_says_so(tmp_path, capsys, recipe_file):
    recipe = load_recipe(recipe_file, stage="sft")
    config_hash = identity.stage_hashes(recipe)["sft"]
    output_dir = Path(recipe.sft.output_dir)
    state = {
        "global_step": 4,
        "stateful_callbacks": {"StageIdentity": {"args": {"config_hash": config_hash}}},
    }
    ours = checkpoint(output_dir, 4, json.dumps(state))
    identity.record_hash(output_dir, "sft", config_hash)
    assert training.prepare_output_dir(recipe, "sft", config_hash, overwrite=False) == str(ours)
    assert "checkpoint-4 is at step 4 and max_steps is 4: nothing is left to train" in capsys.readouterr().out
    with pytest.raises(RecipeError, match="made under other inputs"):
        training.prepare_output_dir(recipe, "sft", "another-hash", overwrite=False)


def test_an_explicit_checkpoint_of_other_inputs_is_refused(tmp_path, recipe_file):
    elsewhere = checkpoint(tmp_path / "elsewhere", 2, json.dumps({"global_step": 2}))
    recipe = load_recipe(recipe_file, ["--resume_from_checkpoint", str(elsewhere)], stage="sft")
    with pytest.raises(RecipeError, match="sft.resume_from_checkpoint: .* never resumed from"):
        training.prepare_output_dir(recipe, "sft", identity.stage_hashes(recipe)["sft"], overwrite=False)


@pytest.mark.slow
def test_rerun_with_another_config_refuses_or_equals_a_clean_run(
    tmp_path, capsys, monkeypatch, tiny_model, sft_jsonl, dpo_jsonl
):
    """Config A (LoRA, checkpoints on) then config B (full, another learning rate) into the same folder: the
    rerun refuses with one line; with --overwrite_output_dir it equals a clean B run, with no LoRA leftovers."""
    monkeypatch.chdir(
        tiny_model.parent
    )  # a relative base model path: the adapter must still name it absolutely
    recipe = recipe_for(
        tmp_path, Path(tiny_model.name), sft_jsonl, dpo_jsonl, sft={"save_steps": 2, "learning_rate": 1e-2}
    )
    out = tmp_path / "out" / "sft"
    stage_main("sft", recipe, "--model.use_peft", "true", "--model.lora_r", "4")
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(tiny_model.resolve())
    assert training.checkpoint_hash(out / "checkpoint-4") == identity.recorded_hash(out) is not None

    config_b = ["--learning_rate", "3e-3"]
    assert "made under other inputs" in refusal(capsys, "sft", recipe, *config_b)
    stage_main("sft", recipe, *config_b, "--overwrite_output_dir", "true")
    assert not (out / "adapter_config.json").exists() and not (out / "adapter_model.safetensors").exists()
    stage_main("sft", recipe, *config_b, "--output_dir", str(tmp_path / "clean"))
    rerun, clean = weights(out), weights(tmp_path / "clean" / "sft")
    assert rerun.keys() == clean.keys()
    assert all(torch.equal(rerun[name], clean[name]) for name in clean)

    copy = (out / "westwind_recipe.yaml").read_text()
    assert (
        "# command-line overrides (applied below): --learning_rate 3e-3 --overwrite_output_dir true" in copy
    )
    assert (
        load_recipe(out / "westwind_recipe.yaml").sft.learning_rate == 3e-3
    )  # the copy is the resolved recipe


# ---------------------------------------------------------------- rows TRL drops


def long_and_short_conversations(path: Path, count: int) -> Path:
    rows = make_conversations(count)
    for row in rows[::2]:
        row["messages"] = [{"role": "user", "content": LONG_PROMPT}, row["messages"][-1]]
    return write_jsonl(path, rows)


def long_and_short_preferences(path: Path, count: int) -> Path:
    rows = make_preferences(count)
    for row in rows[::2]:
        row["prompt"] = [{"role": "user", "content": LONG_PROMPT}]
    return write_jsonl(path, rows)


@pytest.mark.parametrize("stage", ["sft", "dpo", "rm"])
def test_rows_trl_drops_are_counted_and_none_left_is_refused(stage, tmp_path, capsys, tiny_model):
    sft_data = long_and_short_conversations(tmp_path / "sft.jsonl", 16)
    dpo_data = long_and_short_preferences(tmp_path / "dpo.jsonl", 16)
    recipe = recipe_for(
        tmp_path,
        tiny_model,
        sft_data,
        dpo_data,
        sft={"max_steps": 1, "max_length": 32},
        dpo={"max_steps": 1, "max_length": 32, "model_name_or_path": str(tiny_model)},
        rm={
            "datasets": [{"path": str(dpo_data)}],
            "model_name_or_path": str(tiny_model),
            "test_split_size": None,
            "max_steps": 1,
            "max_length": 48,  # the reward trainer's limit covers prompt + answer
        },
    )
    stage_main(stage, recipe)
    stats = json.loads((tmp_path / "out" / stage / "data_stats.json").read_text())
    assert stats["train"] == {"rows": 16, "kept": 8, "dropped": 8}
    assert f"westwind: {stage}: TRL dropped 8 of 16 train row(s) (50.0%)" in capsys.readouterr().out

    line = refusal(capsys, stage, recipe, "--max_length", "4", "--output_dir", str(tmp_path / "short"))
    assert f"{stage}.max_length: 4 is too small for every one of the 16 train rows" in line
