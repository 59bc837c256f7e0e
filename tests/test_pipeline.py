"""`westwind run`: all four stages in order, skipping finished ones, rerunning what a config change touches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, make_conversations, tiny_recipe, write_jsonl, write_recipe

from westwind import identity
from westwind.demo.tasks import generate, prompt_row
from westwind.pipeline import stage_hashes, start_clean
from westwind.recipe.core import load_recipe

ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "2",
    "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
}


def westwind_run(recipe, *args: str) -> str:
    command = [sys.executable, "-m", "westwind.cli", "run", str(recipe), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def ran(stdout: str) -> list[str]:
    return [
        stage
        for stage in ("sft", "aift", "dpo", "eval")
        if f"westwind: [{stage}] " in stdout and f"[{stage}] complete" not in stdout
    ]


def skipped(stdout: str) -> list[str]:
    return [
        stage
        for stage in ("sft", "aift", "dpo", "eval")
        if f"[{stage}] complete with this config; skipped" in stdout
    ]


@pytest.fixture
def full_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    examples = generate(40, seed=5)
    prompts = write_jsonl(tmp_path / "data" / "prompts.jsonl", [prompt_row(e) for e in examples[:24]])
    held_out = write_jsonl(tmp_path / "data" / "eval.jsonl", [prompt_row(e) for e in examples[24:]])
    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    raw["dpo"].pop("datasets")  # default: @aift
    raw["aift"] = {
        "prompts": {"datasets": [{"path": str(prompts)}]},
        "generators": [
            {"model": "@sft", "n": 2, "sampling": {"max_new_tokens": 8, "temperature": 1.0}},
            {"model": "@base", "n": 1, "sampling": {"max_new_tokens": 8, "temperature": 1.0}},
        ],
        "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
        "binarize": {"policy": "best_vs_random"},
    }
    raw["eval"] = {
        "prompts": {"datasets": [{"path": str(held_out)}]},
        "sampling": {"max_new_tokens": 8},
        "verifier": "westwind.demo.tasks:verify",
    }
    return write_recipe(tmp_path / "recipe.yaml", raw)


@pytest.mark.slow
def test_run_skips_finished_stages_and_reruns_what_changed(full_recipe, tmp_path):
    out = tmp_path / "out"
    first = westwind_run(full_recipe)
    assert ran(first) == ["sft", "aift", "dpo", "eval"]
    results = json.loads((out / "eval" / "results.json").read_text())
    assert set(results["models"]) == {"dpo", "sft"}
    assert results["models"]["dpo"]["accuracy"]["total"] == 16
    win = results["win_rate"]
    assert win["judge"] == "verifier" and win["wins"] + win["ties"] + win["losses"] + win["failed"] == 16
    assert (out / "report.md").exists()

    again = westwind_run(full_recipe)
    assert skipped(again) == ["sft", "aift", "dpo", "eval"] and ran(again) == []

    changed = westwind_run(full_recipe, "--dpo.beta", "0.3")
    assert skipped(changed) == ["sft", "aift"] and ran(changed) == ["dpo", "eval"]


@pytest.mark.slow
def test_from_and_to_limit_the_run(full_recipe, tmp_path):
    only_sft = westwind_run(full_recipe, "--to", "sft")
    assert ran(only_sft) == ["sft"]
    assert not (tmp_path / "out" / "aift").exists()
    forced = westwind_run(full_recipe, "--from", "sft", "--to", "sft", "--force")
    assert ran(forced) == ["sft"]


def test_bad_stage_range_is_bad_input(full_recipe):
    command = [sys.executable, "-m", "westwind.cli", "run", str(full_recipe), "--from", "eval", "--to", "sft"]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1] == f"error: {full_recipe}: --from/--to: eval comes after sft"
    )


# ---------------------------------------------------------------- folders made under other inputs


def test_a_training_folder_made_under_other_inputs_is_cleared_before_the_stage_runs(full_recipe):
    recipe = load_recipe(full_recipe)
    hashes = stage_hashes(recipe)
    dpo_dir = recipe.stage_dir("dpo")
    (dpo_dir / "sft-merged").mkdir(parents=True)  # merged from another dSFT adapter
    (dpo_dir / "adapter_config.json").write_text("{}")
    (dpo_dir / "notes.txt").write_text("the user's")
    identity.record_hash(dpo_dir, "dpo", "another-hash")
    start_clean(recipe, "dpo", hashes["dpo"])
    assert sorted(p.name for p in dpo_dir.iterdir()) == ["notes.txt", identity.IDENTITY_FILE]
    assert identity.recorded_hash(dpo_dir) == hashes["dpo"]


def test_aift_and_eval_folders_are_left_to_their_own_keys(full_recipe):
    recipe = load_recipe(full_recipe)
    for stage in ("aift", "eval"):
        folder = recipe.stage_dir(stage)
        folder.mkdir(parents=True)
        (folder / "kept.jsonl").write_text("{}\n")  # keyed by the models' content identity: reusable
        start_clean(recipe, stage, "another-hash")
        assert [p.name for p in folder.iterdir()] == ["kept.jsonl"]


@pytest.mark.slow
def test_a_changed_data_file_reruns_sft_to_what_a_clean_run_gives(full_recipe, tmp_path, sft_jsonl):
    """With checkpoints on, the rerun after a data change must not resume the old run's checkpoint."""
    from safetensors.torch import load_file

    from westwind.stages import sft

    first = westwind_run(full_recipe, "--to", "sft", "--sft.save_steps", "2")
    assert ran(first) == ["sft"]
    pipeline_hash = stage_hashes(load_recipe(full_recipe, ["--sft.save_steps", "2"]))["sft"]
    # the stage records the same hash as the pipeline computes
    assert identity.recorded_hash(tmp_path / "out" / "sft") == pipeline_hash
    write_jsonl(sft_jsonl, make_conversations(32, seed=7))
    second = westwind_run(full_recipe, "--to", "sft", "--sft.save_steps", "2")
    assert ran(second) == ["sft"] and "clearing it first" in second
    clean_dir = tmp_path / "clean"
    sft.cli([str(full_recipe), "--save_steps", "2", "--output_dir", str(clean_dir)])  # in-process: faster
    rerun = load_file(tmp_path / "out" / "sft" / "model.safetensors")
    clean = load_file(clean_dir / "sft" / "model.safetensors")
    assert all(torch.equal(rerun[name], clean[name]) for name in clean)
