"""Recipe validation: every bad input names the file and key path, exits 2, and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import yaml
from conftest import REPO, tiny_recipe, write_recipe

from westwind.errors import RecipeError
from westwind.identity import stage_hashes
from westwind.recipe.core import load_recipe, parse_overrides


def recipe_with(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, edit) -> str:
    recipe = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    edit(recipe)
    return str(write_recipe(tmp_path / "recipe.yaml", recipe))


def error_of(path: str, overrides: list[str] | None = None, stage: str | None = None) -> str:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, overrides, stage)
    return str(caught.value)


def test_valid_recipe_resolves_stages_and_chains_dpo_to_sft(recipe_file, tmp_path):
    recipe = load_recipe(recipe_file)
    assert recipe.sft.output_dir == str(tmp_path / "out" / "sft")
    assert recipe.dpo.output_dir == str(tmp_path / "out" / "dpo")
    assert recipe.resolve_reference(recipe.dpo_data.model_name_or_path) == str(tmp_path / "out" / "sft")
    assert recipe.sft.assistant_only_loss is True  # westwind's default
    assert recipe.sft.learning_rate == pytest.approx(3e-3)
    assert recipe.dpo.beta == pytest.approx(0.1)


def test_yaml_exponent_strings_become_floats(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_with(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["dpo"].update(learning_rate="5e-7")
    )
    assert load_recipe(path).dpo.learning_rate == pytest.approx(5e-7)


CASES = {
    "unknown key with hint": (
        lambda r: r["sft"].update(learnin_rate=1e-3),
        "sft.learnin_rate",
        "did you mean learning_rate",
    ),
    "renamed TRL key": (
        lambda r: r["sft"].update(max_seq_length=128),
        "sft.max_seq_length",
        "did you mean max_length",
    ),
    "unknown top-level section": (lambda r: r.update(stf={}), "stf", "unknown key"),
    "wrong type": (lambda r: r["dpo"].update(beta="high"), "dpo.beta", "expected a number"),
    "wrong type in model": (lambda r: r["model"].update(lora_r="big"), "model.lora_r", "expected an integer"),
    "bad enum": (
        lambda r: r["sft"].update(lr_scheduler_type="cosinus"),
        "sft.lr_scheduler_type",
        "is not one of",
    ),
    "bad dpo loss type": (lambda r: r["dpo"].update(loss_type="sigmod"), "dpo.loss_type", "is not one of"),
    "bad TRL choice": (
        lambda r: r["sft"].update(packing_strategy="tight"),
        "sft.packing_strategy",
        "is not one of",
    ),
    "missing model name": (
        lambda r: r["model"].pop("model_name_or_path"),
        "model.model_name_or_path",
        "required",
    ),
    "missing sft datasets": (lambda r: r["sft"].pop("datasets"), "sft.datasets", "required"),
    "missing dataset path": (
        lambda r: r["sft"]["datasets"][0].pop("path"),
        "sft.datasets[0].path",
        "required",
    ),
    "unknown chat template": (
        lambda r: r["model"].update(chat_template="zephir"),
        "model.chat_template",
        "did you mean zephyr",
    ),
    "missing local dataset": (
        lambda r: r["dpo"]["datasets"][0].update(path="data/nope/prefs.jsonl"),
        "dpo.datasets[0].path",
        "does not exist",
    ),
    "quantization without peft": (lambda r: r["model"].update(load_in_4bit=True), "model.use_peft", "QLoRA"),
    "both 4 and 8 bit": (
        lambda r: r["model"].update(load_in_4bit=True, load_in_8bit=True, use_peft=True),
        "model.load_in_4bit",
        "choose one",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_bad_input_names_file_key_and_problem(case, tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    edit, key, problem = CASES[case]
    path = recipe_with(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, edit)
    message = error_of(path)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  model_name_or_path: x\n sft: [\n")
    message = error_of(str(path))
    assert message.startswith(f"{path}: line ") and "invalid YAML" in message


def test_hub_ids_are_not_checked_for_existence(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_with(
        tmp_path,
        tiny_model,
        sft_jsonl,
        dpo_jsonl,
        lambda r: r["sft"]["datasets"][0].update(path="HuggingFaceH4/ultrachat_200k"),
    )
    assert load_recipe(path).sft_data.datasets[0].path == "HuggingFaceH4/ultrachat_200k"


def test_overrides_target_the_stage_and_named_sections(recipe_file):
    recipe = load_recipe(
        recipe_file, ["--learning_rate", "1e-5", "--model.lora_r", "8", "--dpo.beta=0.05"], stage="sft"
    )
    assert recipe.sft.learning_rate == pytest.approx(1e-5)
    assert recipe.model.lora_r == 8
    assert recipe.dpo.beta == pytest.approx(0.05)


def test_top_level_override_moves_every_stage(recipe_file, tmp_path):
    recipe = load_recipe(recipe_file, ["--output_dir", str(tmp_path / "elsewhere")], stage="dpo")
    assert recipe.dpo.output_dir == str(tmp_path / "elsewhere" / "dpo")


def test_checkpointing_defaults_on_under_the_new_name_without_a_library_warning(
    tmp_path, tiny_model, sft_jsonl, dpo_jsonl
):
    """TRL's default (checkpointing on), set under transformers 5's name: no FutureWarning from the library."""
    path = recipe_with(
        tmp_path,
        tiny_model,
        sft_jsonl,
        dpo_jsonl,
        lambda r: [r[s].pop("activation_checkpointing") for s in ("sft", "dpo")],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        recipe = load_recipe(path)
    for config in (recipe.sft, recipe.dpo):
        assert config.activation_checkpointing is True and config.gradient_checkpointing is True


def test_deprecated_key_still_works_with_one_line_naming_the_new_one(
    tmp_path, tiny_model, sft_jsonl, dpo_jsonl, capsys
):
    def old_spelling(raw):
        raw["sft"]["gradient_checkpointing"] = raw["sft"].pop("activation_checkpointing")
        raw["sft"]["gradient_checkpointing_kwargs"] = {"use_reentrant": False}

    old = recipe_with(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, old_spelling)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        recipe = load_recipe(old)
    assert recipe.sft.activation_checkpointing is False
    assert recipe.sft.activation_checkpointing_kwargs == {"use_reentrant": False}
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"westwind: {old}: sft.gradient_checkpointing is deprecated, read as activation_checkpointing: "
        "write activation_checkpointing",
        f"westwind: {old}: sft.gradient_checkpointing_kwargs is deprecated, read as "
        "activation_checkpointing_kwargs: write activation_checkpointing_kwargs",
    ]
    new_path = tmp_path / "new.yaml"
    new_path.write_text(yaml.safe_dump(recipe.raw))  # the old spelling, read in place as the new one
    assert stage_hashes(recipe) == stage_hashes(load_recipe(new_path))


def test_deprecated_key_beside_its_new_name_is_an_error(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_with(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["dpo"].update(gradient_checkpointing=True)
    )
    assert (
        "dpo.gradient_checkpointing: deprecated name of activation_checkpointing, which is also set"
        in error_of(path)
    )


def test_bad_override_is_validated_like_the_file(recipe_file):
    assert "dpo.beta: expected a number" in error_of(str(recipe_file), ["--beta", "x"], stage="dpo")
    with pytest.raises(RecipeError, match="expected --key value"):
        parse_overrides(["beta", "1"], "dpo")


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("script", ["scripts/run_sft.py", "scripts/run_dpo.py", "-m westwind.cli check"])
def test_scripts_exit_2_with_one_line_and_write_nothing(script, tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = recipe_with(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["dpo"].update(bete=0.1))
    before = sorted(p.name for p in tmp_path.iterdir())
    args = script.split() if script.startswith("-m") else [str(REPO / script)]
    result = run(*args, path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {path}: dpo.bete: unknown key (did you mean beta?)"], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no output_dir


def test_check_prints_each_stage_resolved(recipe_file):
    result = run("-m", "westwind.cli", "check", str(recipe_file), "--sft.learning_rate", "2e-4")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout.replace("ok: recipe is valid", ""))
    assert printed["sft"]["learning_rate"] == pytest.approx(2e-4)
    assert printed["dpo"]["model_name_or_path"] == "@sft"
    assert printed["dpo"]["output_dir"].endswith("out/dpo")


def test_training_script_refuses_qlora_under_zero3(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    quantized = {"use_peft": True, "load_in_4bit": True}
    path = recipe_with(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lambda r: r["model"].update(quantized))
    env = {**os.environ, "ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_sft.py"), path],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {path}: ") and "ZeRO-3" in line


def test_dpo_choices_are_read_from_trl_metadata():
    from westwind.recipe.core import DPO_CHOICES

    assert {"sigmoid", "ipo", "hinge", "apo_zero"} <= set(DPO_CHOICES["loss_type"])
    assert (
        DPO_CHOICES["f_divergence_type"][0] == "reverse_kl"
        and "js_divergence" in DPO_CHOICES["f_divergence_type"]
    )


def test_every_reference_names_its_stage_folder_and_every_allowed_list_is_known(recipe_file):
    from westwind.recipe import preflight
    from westwind.recipe.core import REFERENCES

    recipe = load_recipe(recipe_file)
    for name, (stage, folder) in REFERENCES.items():
        path = recipe.resolve_reference(name)
        if stage is None:
            assert path == recipe.model.model_name_or_path
        else:
            assert path == str(recipe.stage_dir(stage) / folder if folder else recipe.stage_dir(stage))
    assert recipe.resolve_reference("org/model") == "org/model"
    assert set(preflight.JUDGE_REFERENCES) <= REFERENCES.keys()
