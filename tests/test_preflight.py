"""The preflight: what the schema cannot see, refused by `westwind check` and by each stage before anything loads,
with exit 2 and one line `error: FILE: KEY: problem`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO, tiny_recipe, write_recipe

from westwind.errors import RecipeError
from westwind.recipe import preflight
from westwind.recipe.core import load_recipe

EVAL_PROMPTS = REPO / "data" / "demo" / "eval.jsonl"


def recipe_path(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, edit=None, name="recipe.yaml"):
    recipe = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    recipe["eval"] = {
        "prompts": {"datasets": [{"path": str(EVAL_PROMPTS)}], "max_prompts": 4},
        "sampling": {"max_new_tokens": 4},
        "verifier": "westwind.demo.tasks:verify",
    }
    if edit:
        edit(recipe)
    return write_recipe(tmp_path / name, recipe)


def westwind(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "westwind.cli", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def problem_of(path, stages=("sft", "aift", "dpo", "eval"), produced_earlier=None) -> str:
    recipe = load_recipe(path)
    with pytest.raises(RecipeError) as caught:
        preflight.check(recipe, [s for s in stages if getattr(recipe, s) is not None], produced_earlier)
    return str(caught.value)


def test_valid_recipe_passes_check(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    result = westwind("check", str(recipe_path(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)))
    assert result.returncode == 0, result.stderr
    assert "ok: recipe is valid" in result.stdout


def test_misspelled_verifier_exits_2_from_check(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(
        tmp_path,
        tiny_model,
        sft_jsonl,
        dpo_jsonl,
        lambda r: r["eval"].update(verifier="westwind.demo.tasks:verifyy"),
    )
    line = one_error_line(westwind("check", str(path)))
    assert line.startswith(f"error: {path}: eval.verifier: ") and "verifyy" in line


def test_a_verifier_under_its_old_module_name_is_told_the_new_spelling(
    tmp_path, tiny_model, sft_jsonl, dpo_jsonl
):
    path = recipe_path(
        tmp_path,
        tiny_model,
        sft_jsonl,
        dpo_jsonl,
        lambda r: r["eval"].update(verifier="westwind.demo_tasks:verify"),
    )
    line = one_error_line(westwind("check", str(path)))
    assert line.startswith(f"error: {path}: eval.verifier: ") and "write westwind.demo.tasks:verify" in line


def test_missing_local_model_exits_2_with_init_model_hint(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    student = tmp_path / "out" / "base"
    path = recipe_path(
        tmp_path,
        tiny_model,
        sft_jsonl,
        dpo_jsonl,
        lambda r: r["model"].update(model_name_or_path=str(student)),
    )
    line = one_error_line(westwind("check", str(path)))
    assert line.startswith(f"error: {path}: model.model_name_or_path: local model folder does not exist")
    assert "westwind init-model" in line


def test_missing_model_elsewhere_has_no_init_model_hint(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(
        tmp_path,
        tiny_model,
        sft_jsonl,
        dpo_jsonl,
        lambda r: r["model"].update(model_name_or_path="./nowhere/model"),
    )
    message = problem_of(path)
    assert "does not exist: ./nowhere/model" in message and "init-model" not in message


def test_model_folder_without_tokenizer_files(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    bare = tmp_path / "bare-model"
    bare.mkdir()
    (bare / "config.json").write_text((tiny_model / "config.json").read_text())
    path = recipe_path(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["model"].update(model_name_or_path=str(bare))
    )
    assert "holds no tokenizer files" in problem_of(path)


RANGES = {
    "negative learning rate": ("sft", "learning_rate", -1e-5, "sft.learning_rate"),
    "zero learning rate": ("sft", "learning_rate", 0, "sft.learning_rate"),
    "zero beta": ("dpo", "beta", 0, "dpo.beta"),
    "negative beta": ("dpo", "beta", -0.1, "dpo.beta"),
    "zero batch size": ("dpo", "per_device_train_batch_size", 0, "dpo.per_device_train_batch_size"),
    "zero accumulation": ("sft", "gradient_accumulation_steps", 0, "sft.gradient_accumulation_steps"),
    "zero max_length": ("sft", "max_length", 0, "sft.max_length"),
    "test split of 1": ("sft", "test_split_size", 1.0, "sft.test_split_size"),
    "negative test split": ("dpo", "test_split_size", -0.1, "dpo.test_split_size"),
    "lora dropout of 1": ("model", "lora_dropout", 1.0, "model.lora_dropout"),
}


@pytest.mark.parametrize("case", RANGES.values(), ids=RANGES.keys())
def test_out_of_range_values_are_refused(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, case):
    section, key, value, where = case

    def edit(recipe):
        recipe[section][key] = value
        if section == "model":
            recipe["model"]["use_peft"] = True

    path = recipe_path(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, edit)
    assert f": {where}: {float(value):g}" in problem_of(path).replace(f"{value}", f"{float(value):g}")


def test_out_of_range_value_exits_2_from_check(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    line = one_error_line(westwind("check", str(path), "--dpo.beta", "0"))
    assert line == f"error: {path}: dpo.beta: 0.0 is out of range: must be > 0"


def test_dataset_fraction_out_of_range(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["sft"]["datasets"][0].update(fraction=1.5)
    )
    assert "sft.datasets[0].fraction: 1.5 is out of range" in problem_of(path)


def test_lora_keys_without_use_peft_are_refused(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["model"].update(lora_r=8, lora_alpha=16)
    )
    message = problem_of(path)
    assert ": model.lora_r: " in message and "use_peft" in message and "lora_alpha" in message


def test_lora_target_modules_preset_is_allowed_and_said(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, capsys):
    path = recipe_path(
        tmp_path,
        tiny_model,
        sft_jsonl,
        dpo_jsonl,
        lambda r: r["model"].update(lora_target_modules=["q_proj"]),
    )
    preflight.check(load_recipe(path), ["sft"])
    assert "model.lora_target_modules is unused" in capsys.readouterr().err


def test_4bit_keys_without_load_in_4bit_are_refused(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["model"].update(bnb_4bit_quant_type="nf4")
    )
    assert ": model.bnb_4bit_quant_type: " in problem_of(path)


def test_invalid_attention_implementation(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["model"].update(attn_implementation="flash")
    )
    message = problem_of(path)
    assert ": model.attn_implementation: unknown attention implementation 'flash'" in message
    assert "sdpa" in message


@pytest.mark.parametrize(
    "name", ["sdpa", "eager", "flash_attention_2", "paged|sdpa", "kernels-community/flash-attn"]
)
def test_known_attention_implementations_pass(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, name):
    path = recipe_path(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["model"].update(attn_implementation=name)
    )
    preflight.check(load_recipe(path), ["sft"])


def test_unwritable_output_dir(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    """/proc refuses new folders even to root (whom file modes do not stop)."""
    path = recipe_path(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r.update(output_dir="/proc/westwind-run")
    )
    assert ": sft.output_dir: cannot write to /proc/westwind-run/sft" in problem_of(path)


def test_output_dir_that_is_a_file(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = recipe_path(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r.update(output_dir=str(blocker))
    )
    assert "is not a folder" in problem_of(path) or "not writable" in problem_of(path)


def test_stage_alone_needs_upstream_outputs(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    message = problem_of(path, stages=("dpo",), produced_earlier=set())
    assert ": dpo.model_name_or_path: @sft -> " in message and "run the sft stage first" in message
    preflight.check(load_recipe(path), ["dpo"])  # within a whole run sft comes first: fine
    # without datasets, dpo takes @aift, and this recipe has no aift stage
    no_data = recipe_path(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["dpo"].pop("datasets"), "b.yaml"
    )
    assert ": dpo.datasets: @aift names the aift stage" in problem_of(no_data, stages=("sft", "dpo"))


def test_unknown_reference(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["eval"].update(model="@dop"))
    assert ": eval.model: unknown reference '@dop'" in problem_of(path)


def test_missing_api_key_variable_is_named_not_printed(
    tmp_path, tiny_model, sft_jsonl, dpo_jsonl, monkeypatch
):
    monkeypatch.delenv("WESTWIND_TEST_KEY", raising=False)
    judge = {
        "kind": "pairwise",
        "model": "teacher",
        "backend": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "WESTWIND_TEST_KEY",
        "sampling": {"max_new_tokens": 8},
    }
    path = recipe_path(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["eval"].update(judge=judge))
    assert ": eval.judge.api_key_env: environment variable WESTWIND_TEST_KEY is not set" in problem_of(path)
    monkeypatch.setenv("WESTWIND_TEST_KEY", "sk-secret-value")
    preflight.check(load_recipe(path), ["eval"], produced_earlier={"sft", "dpo"})


def test_stage_pad_token_moves_to_the_model_section(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["sft"].update(pad_token="<pad>")
    )
    with pytest.raises(RecipeError, match=r": sft.pad_token: set it once, as model.pad_token"):
        load_recipe(path)


def test_training_stage_refuses_before_loading_and_writes_nothing(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    result = subprocess.run(
        [sys.executable, "-m", "westwind.stages.sft", str(path), "--learning_rate", "-1"],
        capture_output=True,
        text=True,
    )
    assert one_error_line(result) == f"error: {path}: sft.learning_rate: -1.0 is out of range: must be > 0"
    assert not (tmp_path / "out").exists()


def test_padding_free_without_flash_attention_exits_2(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_path(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    line = one_error_line(westwind("check", str(path), "--sft.padding_free", "true"))
    assert line.startswith(f"error: {path}: sft.padding_free: true needs a flash-attention kernel")
    assert "not the default (sdpa)" in line
    stage_relative = one_error_line(westwind("check", str(path), "--stage", "dpo", "--padding_free", "true"))
    assert stage_relative.startswith(f"error: {path}: dpo.padding_free: true needs a flash-attention kernel")
    flash = load_recipe(
        path, ["--model.attn_implementation", "flash_attention_2", "--sft.padding_free", "true"]
    )
    preflight.check(flash, ["sft"])  # the kernel is asked for: accepted (models.sft_packing says what runs)
