"""The recipe's `distill:` section: strict keys, its preflight, `@distill` in sft.datasets, the stage table."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import shared_file, tiny_recipe, write_recipe
from distill_helpers import distill_section

from westwind.errors import RecipeError
from westwind.recipe import preflight
from westwind.recipe.core import load_recipe
from westwind.stages import OUTPUTS, STAGES

TEACHER = {"model": "teacher", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"}


def make(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, distill=None, sft_from_distill=True):
    recipe = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    if distill is not None:
        recipe["distill"] = distill
    if sft_from_distill:
        recipe["sft"]["datasets"] = [{"path": "@distill"}]
    return write_recipe(tmp_path / "recipe.yaml", recipe)


def section(**extra):
    return distill_section(TEACHER, shared_file("data/self_instruct_seed_tasks.jsonl"), **extra)


def test_distill_runs_first_and_sft_reads_its_dataset(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    assert STAGES[0] == "distill" and OUTPUTS["distill"] == ("dataset/dataset_dict.json",)
    recipe = load_recipe(make(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, section()))
    preflight.check(recipe, ["distill", "sft"])  # the pipeline: distill runs before sft
    assert recipe.resolve_reference("@distill") == str(tmp_path / "out" / "distill" / "dataset")
    assert (
        recipe.distill.instructions.rouge_threshold == 0.7
        and "go to" in recipe.distill.instructions.unsuitable_keywords
    )


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (lambda s: s["dialogues"].update(turns=3), "distill.dialogues.turns", "unknown key"),
        (
            lambda s: s["dialogues"].update(prompts={"datasets": [{"path": "x.jsonl"}]}),
            "distill",
            "exactly one of distill.instructions and distill.dialogues.prompts",
        ),
        (lambda s: s["dialogues"].update(turn_weights=[0, 0]), "distill.dialogues", "positive sum"),
        (lambda s: s["instructions"].update(min_words=9, max_words=3), "distill.instructions", "min_words"),
        (
            lambda s: s["instructions"].update(seed_tasks="/nonexistent.jsonl"),
            "distill.instructions.seed_tasks",
            "not found",
        ),
    ],
)
def test_bad_distill_sections_are_refused(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, edit, key, problem):
    distill = section()
    edit(distill)
    with pytest.raises(RecipeError) as caught:
        preflight.check(load_recipe(make(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, distill)), STAGES[:2])
    assert caught.value.key == key and problem in caught.value.problem


def test_a_malformed_seed_file_exits_2_before_anything_is_written(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "Say hi."}\nnot json\n')
    path = make(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, section(instructions={"seed_tasks": str(seeds)}))
    result = subprocess.run(
        [sys.executable, "-m", "westwind.cli", "distill", str(path)], capture_output=True, text=True
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr
    assert "distill.instructions.seed_tasks" in errors[0] and "line 2: not JSON" in errors[0]
    assert not (tmp_path / "out").exists()


def test_at_distill_without_a_distill_section_is_refused(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    recipe = load_recipe(make(tmp_path, tiny_model, sft_jsonl, dpo_jsonl))
    with pytest.raises(RecipeError, match="names the distill stage, which this recipe does not have"):
        preflight.check(recipe, ["sft"])


def test_at_revisions_is_gone_revision_pairs_are_an_aift_option(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    path = make(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, section())
    recipe = load_recipe(path, ["--dpo.datasets", '[{"path": "@revisions"}]'])
    with pytest.raises(RecipeError, match="unknown reference '@revisions'"):
        preflight.check(recipe, ["distill", "sft", "dpo"])
