"""Iterative dDPO (westwind.rounds): each round's recipe, folders, references, prompt slices and chained hashes;
`rounds: 1` is exactly the one-round run."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_recipe, write_recipe

from westwind import io, rounds
from westwind.errors import RecipeError
from westwind.identity import dataset_entries, dataset_identity, round_hashes, stage_hashes
from westwind.pipeline import round_recipes, selected_stages
from westwind.recipe import preflight
from westwind.recipe.core import load_recipe
from westwind.stages import STAGES


@pytest.fixture
def rounds_raw(tmp_path, tiny_model, sft_jsonl, dpo_jsonl) -> dict:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"prompt": "question {i}"}}\n' for i in range(10)))
    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    raw["dpo"].pop("datasets")  # default: @aift
    raw["aift"] = {
        "prompts": {"datasets": [{"path": str(prompts)}]},
        "generators": [
            {"model": "@sft", "n": 2, "sampling": {"max_new_tokens": 8}},
            {"model": "@base", "n": 1, "sampling": {"max_new_tokens": 8}},
        ],
        "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
    }
    raw["eval"] = {"prompts": {"datasets": [{"path": str(prompts)}]}, "sampling": {"max_new_tokens": 8}}
    return raw


def recipe_of(tmp_path: Path, raw: dict, *overrides: str):
    return load_recipe(write_recipe(tmp_path / "recipe.yaml", raw), list(overrides))


def one_round_hashes(raw: dict, output_dir: Path) -> dict[str, str]:
    """The hash chain as it was before rounds existed (a copy of the old identity.stage_hashes)."""
    hashes, upstream = {}, ""
    for stage in STAGES:
        section = raw.get(stage)
        if section is None:
            continue
        section = {
            k: v for k, v in section.items() if k not in ("overwrite_output_dir", "resume_from_checkpoint")
        }
        payload = {
            "stage": section,
            "model": raw["model"],
            "output_dir": str(output_dir),
            "data": [dataset_identity(entry) for entry in dataset_entries(section)],
            "upstream": upstream,
        }
        upstream = hashes[stage] = io.digest(payload)
    return hashes


def test_one_round_is_exactly_the_run_without_rounds(tmp_path, rounds_raw):
    plain = recipe_of(tmp_path, rounds_raw)
    expected = one_round_hashes(rounds_raw, plain.output_dir)
    for variant in (
        recipe_of(tmp_path, {**rounds_raw, "rounds": 1}),
        recipe_of(tmp_path, rounds_raw, "--rounds", "1"),
    ):
        assert stage_hashes(variant) == round_hashes(variant) == expected
        assert variant.raw == {**rounds_raw, **({"rounds": 1} if "rounds" in variant.raw else {})}
        assert [variant.stage_dir(s) for s in STAGES] == [plain.stage_dir(s) for s in STAGES]
        assert (
            variant.resolve_reference("@dpo")
            == plain.resolve_reference("@dpo")
            == str(plain.output_dir / "dpo")
        )
        assert selected_stages(variant, None, None) == ["sft", "aift", "dpo", "eval"]
    assert stage_hashes(plain) == expected


def test_round_two_samples_trains_and_evaluates_the_previous_rounds_model(tmp_path, rounds_raw):
    rounds_raw["rounds"] = {"count": 3, "samples_per_prompt": 4, "mix_previous_pairs": True}
    second = recipe_of(tmp_path, rounds_raw, "--round", "2")
    out = second.output_dir
    assert [g.model for g in second.aift.generators] == ["@dpo-r1", "@base"]
    assert [g.n for g in second.aift.generators] == [4, 1]  # the round's policy gets samples_per_prompt
    assert second.dpo_data.model_name_or_path == "@dpo-r1"
    assert [d.path for d in second.dpo_data.datasets] == ["@aift-r1", "@aift-r2"]
    assert second.eval.model == "@dpo-r2"
    assert (second.stage_dir("aift"), second.stage_dir("dpo"), second.stage_dir("eval")) == (
        out / "aift-r2",
        out / "dpo-r2",
        out / "eval-r2",
    )
    assert second.stage_dir("sft") == out / "sft"
    assert second.resolve_reference("@dpo-r1") == str(out / "dpo")
    assert second.resolve_reference("@aift-r1") == str(out / "aift" / "dataset")
    assert second.resolve_reference("@aift") == str(out / "aift-r2" / "dataset")
    assert second.resolve_reference("@dpo") == str(out / "dpo-r3")  # the last round's model
    first = recipe_of(tmp_path, rounds_raw)
    assert [g.model for g in first.aift.generators] == ["@sft", "@base"] and first.eval.model == "@dpo-r1"
    assert first.dpo_data.model_name_or_path == "@sft" and first.stage_dir("dpo") == out / "dpo"


def test_rounds_step_names_and_from_to(tmp_path, rounds_raw):
    recipe = recipe_of(tmp_path, {**rounds_raw, "rounds": 2})
    steps = ["sft", "aift", "dpo", "eval", "aift-r2", "dpo-r2", "eval-r2"]
    assert selected_stages(recipe, None, None) == steps
    assert selected_stages(recipe, "aift-r2", "dpo-r2") == ["aift-r2", "dpo-r2"]
    assert selected_stages(recipe, "dpo", None) == steps[2:]
    with pytest.raises(RecipeError, match="'dpo-r3' is not a stage"):
        selected_stages(recipe, "dpo-r3", None)
    assert set(round_hashes(recipe)) == set(steps)


def test_each_round_passes_the_preflight_before_anything_runs(tmp_path, rounds_raw):
    path = write_recipe(tmp_path / "recipe.yaml", {**rounds_raw, "rounds": 2})
    recipe = load_recipe(path, [])
    for index, round_recipe in round_recipes(path, [], recipe).items():
        assert round_recipe.round == index
        preflight.check(
            round_recipe, ["aift", "dpo", "eval"], produced_earlier={"sft", "aift", "dpo", "eval"}
        )
    alone = load_recipe(path, ["--round", "2"], stage="aift")
    with pytest.raises(RecipeError, match=r"@dpo-r1 -> .*dpo not found: run the dpo stage first"):
        preflight.check(alone, ["aift"], produced_earlier=set())


def test_a_change_in_round_one_changes_every_later_round_and_nothing_before(tmp_path, rounds_raw):
    rounds_raw["rounds"] = 3
    before = round_hashes(recipe_of(tmp_path, rounds_raw))
    after = round_hashes(recipe_of(tmp_path, rounds_raw, "--dpo.beta", "0.3"))
    changed = {step for step in before if before[step] != after[step]}
    assert changed == {"dpo", "eval", "aift-r2", "dpo-r2", "eval-r2", "aift-r3", "dpo-r3", "eval-r3"}
    samples = round_hashes(
        recipe_of(tmp_path, {**rounds_raw, "rounds": {"count": 3, "samples_per_prompt": 3}})
    )
    assert {s for s in before if before[s] != samples[s]} == {
        "aift-r2",
        "dpo-r2",
        "eval-r2",
        "aift-r3",
        "dpo-r3",
        "eval-r3",
    }
    reference = round_hashes(recipe_of(tmp_path, {**rounds_raw, "rounds": {"count": 3, "reference": "sft"}}))
    assert {s for s in before if before[s] != reference[s]} == {
        "dpo-r2",
        "eval-r2",
        "aift-r3",
        "dpo-r3",
        "eval-r3",
    }
    # a stage process of round 2 computes the same hashes as the pipeline
    second = recipe_of(tmp_path, rounds_raw, "--round", "2")
    assert stage_hashes(second)["dpo"] == before["dpo-r2"] and stage_hashes(second)["sft"] == before["sft"]


def test_disjoint_prompt_slices_cover_the_pool_once(tmp_path):
    pool = list(range(101))
    config = rounds.RoundsConfig(count=3)
    slices = [rounds.round_prompts(pool, config, k, seed=0) for k in (1, 2, 3)]
    assert sorted(sum(slices, [])) == pool and {len(s) for s in slices} <= {33, 34}
    assert (
        slices[0]
        == rounds.round_prompts(pool, config, 1, seed=0)
        != rounds.round_prompts(pool, config, 1, seed=1)
    )
    assert all(s == sorted(s) for s in slices)  # kept in pool order
    assert rounds.round_prompts(pool, rounds.RoundsConfig(count=3, prompts="same"), 2, 0) == pool
    assert rounds.round_prompts(pool, rounds.RoundsConfig(), 1, 0) == pool


@pytest.mark.parametrize(
    ("value", "extra", "problem"),
    [
        (0, [], "rounds.count: 0 is out of range"),
        ({"count": 2, "reference": "base"}, [], "rounds.reference"),
        ({"count": 2, "bogus": 1}, [], "rounds.bogus"),
        (2, ["--round", "3"], "round: 3 is out of range: this recipe has rounds 1..2"),
        (None, ["--round", "2"], "round: 2 is out of range: this recipe has rounds 1..1"),
    ],
)
def test_bad_rounds_are_one_line_bad_input(tmp_path, rounds_raw, capsys, value, extra, problem):
    from westwind.cli import check

    raw = copy.deepcopy(rounds_raw)
    if value is not None:
        raw["rounds"] = value
    path = write_recipe(tmp_path / "recipe.yaml", raw)
    with pytest.raises(SystemExit) as exited:
        check([str(path), *extra])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and problem in lines[0], lines


# ---------------------------------------------------------------- end to end


def steps_in(stdout: str, word: str) -> list[str]:
    """Steps the pipeline ran (word="ran") or skipped as complete (word="skipped"), in order."""
    found = []
    for line in stdout.splitlines():
        if not line.startswith("westwind: ["):
            continue
        step = line[len("westwind: [") : line.index("]")]
        was_skipped = "complete with this config; skipped" in line
        if (word == "skipped") == was_skipped and step not in found:
            found.append(step)
    return found


def tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.fixture
def two_rounds(tmp_path, tiny_model, sft_jsonl, dpo_jsonl) -> Path:
    from conftest import write_jsonl

    from westwind.demo.tasks import generate, prompt_row

    examples = generate(36, seed=5)
    prompts = write_jsonl(tmp_path / "data" / "prompts.jsonl", [prompt_row(e) for e in examples[:24]])
    held_out = write_jsonl(tmp_path / "data" / "eval.jsonl", [prompt_row(e) for e in examples[24:]])
    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    raw["dpo"].pop("datasets")
    raw["aift"] = {
        "prompts": {"datasets": [{"path": str(prompts)}]},
        "generators": [{"model": "@sft", "n": 3, "sampling": {"max_new_tokens": 8, "temperature": 1.0}}],
        "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
    }
    raw["eval"] = {
        "prompts": {"datasets": [{"path": str(held_out)}]},
        "sampling": {"max_new_tokens": 8},
        "verifier": "westwind.demo.tasks:verify",
    }
    raw["rounds"] = {"count": 2, "reference": "sft"}
    return write_recipe(tmp_path / "recipe.yaml", raw)


@pytest.mark.slow
def test_two_rounds_resume_after_kill_and_a_round_one_change_equals_a_clean_run(two_rounds, tmp_path):
    import os
    import signal

    from conftest import wait_for_records
    from test_pipeline import ENV, westwind_run

    clean_out = tmp_path / "clean"
    clean = westwind_run(two_rounds, "--output_dir", str(clean_out), "--dpo.beta", "0.3")
    steps = ["sft", "aift", "dpo", "eval", "aift-r2", "dpo-r2", "eval-r2"]
    assert steps_in(clean, "ran") == steps
    import json

    results = json.loads((clean_out / "eval-r2" / "results.json").read_text())
    assert (
        set(results["models"]) == {"dpo-r2", "sft"} and results["models"]["dpo-r2"]["accuracy"]["total"] == 12
    )
    assert json.loads((clean_out / "eval" / "results.json").read_text())["paired"]["model"] == "dpo-r1"
    stats = [json.loads((clean_out / f / "stats.json").read_text()) for f in ("aift", "aift-r2")]
    assert [s["prompts"]["prompts"] for s in stats] == [12, 12]  # disjoint halves of the 24 prompts
    assert [s["prompts"]["other_rounds"] for s in stats] == [12, 12]
    assert list(stats[0]["candidates_by_model"]) == ["@sft"]
    assert list(stats[1]["candidates_by_model"]) == ["@dpo-r1"]  # round 2 samples round 1's model
    report = (clean_out / "report.md").read_text()
    assert "## Rounds (iterative dDPO)" in report and "| 2 | dpo-r2 |" in report
    assert (clean_out / "plots" / "rounds_accuracy.png").exists()
    assert len(json.loads((clean_out / "rounds.json").read_text())) == 2

    out = tmp_path / "out"
    command = [sys.executable, "-m", "westwind.cli", "run", str(two_rounds)]
    env = {**ENV, "AIFT_TEST_JUDGE_DELAY": "0.2"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_records(out / "aift-r2" / "shards" / "00000-of-00001" / "judged.jsonl", 2, process, timeout=600)
    os.killpg(process.pid, signal.SIGKILL)  # kill -9 the pipeline and its stage in round 2
    process.wait()
    resumed = westwind_run(two_rounds)
    assert steps_in(resumed, "skipped") == steps[:4] and steps_in(resumed, "ran") == steps[4:]

    changed = westwind_run(two_rounds, "--dpo.beta", "0.3")  # a change in round 1
    assert steps_in(changed, "skipped") == ["sft", "aift"]
    assert steps_in(changed, "ran") == ["dpo", "eval", "aift-r2", "dpo-r2", "eval-r2"]
    for folder in ("dpo", "dpo-r2"):
        rerun, fresh = tensors(out / folder), tensors(clean_out / folder)
        assert all(torch_equal(rerun[name], fresh[name]) for name in fresh), folder
    pairs = [(out / f / "train.jsonl").read_text() for f in ("aift-r2",)]
    assert pairs == [(clean_out / "aift-r2" / "train.jsonl").read_text()]


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_merge_takes_the_last_round_unless_told(tmp_path, rounds_raw):
    import argparse

    from westwind.merge import resolve_args

    out = Path(rounds_raw["output_dir"])
    for folder in ("dpo", "dpo-r2"):
        (out / folder).mkdir(parents=True)
        (out / folder / "config.json").write_text("{}")
    path = write_recipe(tmp_path / "recipe.yaml", {**rounds_raw, "rounds": 2})
    args = argparse.Namespace(recipe=path, stage=None, out=None, dtype=None)
    assert resolve_args(args, [])[0].stage_dir("dpo") == out / "dpo-r2"
    assert resolve_args(args, ["--round", "1"])[0].stage_dir("dpo") == out / "dpo"
