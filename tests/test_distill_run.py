"""The distill stage against a scripted OpenAI-compatible teacher: every drop counted, resume after kill -9,
shards + merge, retries; and the wire protocol against a real `transformers serve`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from conftest import REPO, make_conversations, shared_file, wait_for_records, write_jsonl
from distill_helpers import ScriptedTeacher, distill_section, write_distill_recipe
from test_aift_openai import server  # noqa: F401  (the AIFT tests' `transformers serve` fixture)

from westwind.distill import run
from westwind.errors import RunError
from westwind.io import read_jsonl
from westwind.recipe.core import load_recipe

OUTPUTS = ("instructions.jsonl", "train.jsonl", "test.jsonl")


@pytest.fixture(scope="module")
def teacher():
    with ScriptedTeacher(fault_every=5) as scripted:
        yield scripted


def make_recipe(directory, scripted: ScriptedTeacher, **extra):
    directory.mkdir(parents=True, exist_ok=True)
    seeds = shared_file("data/self_instruct_seed_tasks.jsonl")
    return write_distill_recipe(directory, "unused", distill_section(scripted.endpoint(), seeds, **extra))


def run_all(recipe_path, shards: int = 1) -> dict:
    recipe = load_recipe(recipe_path, stage="distill")
    for index in range(shards):
        run.run_shard(recipe, index, shards, progress=False)
    return run.merge(recipe)


def outputs(recipe_path) -> dict[str, str]:
    root = load_recipe(recipe_path).stage_dir("distill")
    return {name: (root / name).read_text() for name in OUTPUTS}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, teacher):
    injected_before = Counter(teacher.injected)
    recipe_path = make_recipe(tmp_path_factory.mktemp("distill-reference"), teacher)
    stats = run_all(recipe_path)
    return recipe_path, stats, teacher.injected - injected_before


def test_every_proposed_instruction_is_kept_or_counted(reference):
    recipe_path, stats, _ = reference
    counts = stats["instructions"]
    dropped = {k: v for k, v in counts.items() if k.startswith("dropped_")}
    assert counts["kept"] == 12 and counts["target_reached"]
    assert counts["proposed"] == counts["kept"] + sum(dropped.values()) + counts["beyond_target"]
    for reason in ("similar", "unsuitable_keyword", "too_short", "truncated"):
        assert dropped[f"dropped_{reason}"] > 0, reason
    kept = read_jsonl(load_recipe(recipe_path).stage_dir("distill") / "instructions.jsonl")
    assert len({k["prompt_id"] for k in kept}) == 12
    assert all(k["max_rouge_l"] < 0.7 and "picture" not in k["instruction"] for k in kept)


def test_dialogues_are_dsft_rows_and_bad_turns_are_counted(reference):
    recipe_path, stats, injected = reference
    dialogues = stats["dialogues"]
    assert dialogues["dialogues"] == 12 == dialogues["kept"] + sum(dialogues["dropped"].values())
    assert (
        dialogues["dropped_turns"]["truncated_assistant"] > 0 and dialogues["dropped_turns"]["empty_user"] > 0
    )
    assert "3" in dialogues["turns_kept"] and "1" in dialogues["turns_kept"]
    root = load_recipe(recipe_path).stage_dir("distill")
    rows = read_jsonl(root / "train.jsonl") + read_jsonl(root / "test.jsonl")
    assert len(rows) == dialogues["kept"] == sum(stats["rows"].values())
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"] * row["turns"] and 1 <= row["turns"] <= 3
        assert all(m["content"].strip() for m in row["messages"])
    # Every injected fault was retried and counted; none lost an item.
    failures = stats["teacher_failures"]
    assert {k: failures.get(k, 0) for k in injected} == dict(injected) and sum(injected.values()) > 0
    assert failures["failed_items"] == 0


def test_a_rerun_asks_the_teacher_nothing_and_changes_nothing(reference, teacher):
    recipe_path, _, _ = reference
    before, served = outputs(recipe_path), Counter(teacher.served)
    assert run_all(recipe_path)["rows"]
    assert teacher.served == served and outputs(recipe_path) == before


def test_shards_then_merge_equal_a_single_run(reference, teacher, tmp_path):
    served = Counter(teacher.served)
    recipe_path = make_recipe(tmp_path, teacher)
    run_all(recipe_path, shards=2)
    assert outputs(recipe_path) == outputs(reference[0])
    replies = reference[1]["instructions"]["replies"]
    assert teacher.served["instructions"] - served["instructions"] == replies  # shard 1 reused shard 0's


def test_instructions_sharing_an_ngram_with_eval_prompts_are_dropped(reference, teacher, tmp_path):
    recipe_path, stats, _ = reference
    kept = read_jsonl(load_recipe(recipe_path).stage_dir("distill") / "instructions.jsonl")
    eval_prompt = f"Please answer: {kept[0]['instruction'].lower()}"
    eval_set = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": eval_prompt}])
    decontaminate = {"datasets": [{"path": str(eval_set)}], "ngram": 5}
    run_all(make_recipe(tmp_path / "run", teacher, decontaminate=decontaminate))
    recipe = load_recipe(tmp_path / "run" / "recipe.yaml")
    counts = json.loads((recipe.stage_dir("distill") / "stats.json").read_text())["instructions"]
    assert counts["dropped_contaminated"] >= 1 and counts["kept"] == 12  # it, and its near-copies
    texts = [k["instruction"] for k in read_jsonl(recipe.stage_dir("distill") / "instructions.jsonl")]
    assert kept[0]["instruction"] not in texts and texts[1:] != [k["instruction"] for k in kept[1:]]


def test_quality_filter_keeps_the_best_scored_dialogues(reference, teacher, tmp_path):
    quality = {"judge": {"kind": "verifier", "function": "aift_helpers:length_score"}, "keep": 4}
    recipe_path = make_recipe(tmp_path, teacher, quality=quality)
    stats = run_all(recipe_path)
    root = load_recipe(recipe_path).stage_dir("distill")
    every = [
        r
        for name in ("train.jsonl", "test.jsonl")
        for r in read_jsonl(load_recipe(reference[0]).stage_dir("distill") / name)
    ]
    assert stats["quality"] == {"kept": 4, "dropped": {"beyond_keep": len(every) - 4}}
    rows = read_jsonl(root / "train.jsonl") + read_jsonl(root / "test.jsonl")
    assert all(r["quality_score"] == len(r["messages"][-1]["content"]) for r in rows)
    kept = {r["prompt_id"] for r in rows}
    left_out = [len(r["messages"][-1]["content"]) for r in every if r["prompt_id"] not in kept]
    assert len(rows) == 4 and min(r["quality_score"] for r in rows) >= max(left_out)
    # `keep` only selects: a smaller one re-judges nothing.
    journal = root / "shards" / "00000-of-00001" / "quality.jsonl"
    lines = journal.read_text()
    smaller = load_recipe(recipe_path, ["--distill.quality.keep", "2"], stage="distill")
    run.run_shard(smaller, progress=False)
    assert run.merge(smaller)["quality"]["kept"] == 2 and journal.read_text() == lines


def test_failed_requests_fail_the_run_and_the_next_run_retries_them(reference, tmp_path):
    with ScriptedTeacher(fault_every=2) as flaky:
        recipe_path = make_recipe(tmp_path, flaky, teacher={**flaky.endpoint(), "max_retries": 0})
        recipe = load_recipe(recipe_path, stage="distill")
        with pytest.raises(RunError, match="failed after retries"):
            run.run_shard(recipe, progress=False)
        retried = load_recipe(recipe_path, ["--distill.teacher.max_retries", "6"], stage="distill")
        assert run.run_shard(retried, progress=False)["unfinished"] == 0  # max_retries is not a content key
        stats = run.merge(retried)
    assert stats["teacher_failures"]["failed_items"] > 0
    assert outputs(recipe_path) == outputs(reference[0])


def test_kill_9_mid_stage_then_rerun_equals_a_clean_run(reference, tmp_path):
    with ScriptedTeacher(delay=0.1) as slow:
        recipe_path = make_recipe(tmp_path, slow)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        }
        command = [
            sys.executable,
            str(REPO / "scripts" / "run_distill.py"),
            str(recipe_path),
            "--no-progress",
        ]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        shard = load_recipe(recipe_path).stage_dir("distill") / "shards" / "00000-of-00001"
        wait_for_records(shard / "dialogues.jsonl", 4, process, timeout=120)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        written = len(read_jsonl(shard / "dialogues.jsonl"))
        assert written < 12, "the run finished before the kill; slow the teacher down"
        with (shard / "dialogues.jsonl").open("a") as journal:
            journal.write('{"prompt_id": "cut-off mid-wri')  # as if killed inside a write
        served = Counter(slow.served)
        run_all(recipe_path)
        assert slow.served["instructions"] == served["instructions"]  # bootstrapping replayed, not redone
    records = [r for r in read_jsonl(shard / "dialogues.jsonl") if r["status"] == "ok"]
    assert len(records) == len({r["prompt_id"] for r in records}) == 12  # no dialogue written twice
    assert outputs(recipe_path) == outputs(reference[0])


@pytest.mark.slow
def test_dialogues_from_a_prompt_dataset_against_transformers_serve(server, tiny_model, tmp_path):  # noqa: F811
    prompts = write_jsonl(tmp_path / "prompts.jsonl", make_conversations(4, seed=5))
    endpoint = {
        "model": str(tiny_model),
        "backend": "openai",
        "base_url": f"http://{server}/v1",
        "timeout": 60,
    }
    section = {
        "teacher": endpoint,
        "dialogues": {
            "prompts": {"datasets": [{"path": str(prompts)}], "column": "messages"},
            "sampling": {"max_new_tokens": 8},
            "turn_weights": [0, 1],
        },
    }
    recipe = load_recipe(write_distill_recipe(tmp_path, tiny_model, section), stage="distill")
    counts = run.run_shard(recipe, progress=False)
    assert counts["unfinished"] == 0 and counts["prompts"] == 4
    records = read_jsonl(recipe.stage_dir("distill") / "shards" / "00000-of-00001" / "dialogues.jsonl")
    assert [r["status"] for r in records] == ["ok"] * 4 and all(not r["failures"] for r in records)
    # The tiny random model seldom stops by itself: a dialogue is kept, or its cut turn is counted.
    for record in records:
        if record["messages"] is None:
            assert record["dropped_turns"] == {"truncated_assistant": 1}
        else:
            assert record["messages"][-1]["role"] == "assistant"


@pytest.mark.slow
def test_westwind_run_goes_from_seed_tasks_to_an_evaluated_ddpo_model(
    tmp_path, tiny_model, sft_jsonl, dpo_jsonl
):
    """seed tasks -> instructions -> dialogues -> dSFT -> AIFT (rated pairs + Constitutional-AI revisions of
    the dSFT model's answers) -> dDPO -> eval, offline, with every drop counted in report.md."""
    from conftest import tiny_recipe, write_recipe

    from westwind.demo.tasks import generate, prompt_row

    examples = generate(24, seed=5)
    prompts = write_jsonl(tmp_path / "data" / "prompts.jsonl", [prompt_row(e) for e in examples[:12]])
    held_out = write_jsonl(tmp_path / "data" / "eval.jsonl", [prompt_row(e) for e in examples[12:]])
    with ScriptedTeacher(fault_every=7) as scripted:
        recipe = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
        recipe["sft"]["datasets"] = [{"path": "@distill"}]
        recipe["dpo"].update(max_steps=2, per_device_train_batch_size=2)
        recipe["dpo"].pop("datasets")  # default: @aift
        seeds = shared_file("data/self_instruct_seed_tasks.jsonl")
        recipe["distill"] = distill_section(scripted.endpoint(), seeds)
        recipe["aift"] = {
            "prompts": {"datasets": [{"path": str(prompts)}]},
            "generators": [{"model": "@sft", "n": 2, "sampling": {"max_new_tokens": 8}}],
            "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
            "revisions": {
                "answerer": {"model": "@sft"},
                "teacher": scripted.endpoint(),
                # The random-weight student never emits EOS within a few tokens and cut answers are dropped
                # (truncated_answer): a stop string lets some of its answers end.
                "sampling": {"max_new_tokens": 16, "stop": [" "]},
                "teacher_sampling": {"max_new_tokens": 128},
            },
        }
        recipe["eval"] = {
            "prompts": {"datasets": [{"path": str(held_out)}]},
            "sampling": {"max_new_tokens": 8},
            "verifier": "westwind.demo.tasks:verify",
        }
        path = write_recipe(tmp_path / "recipe.yaml", recipe)
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "2",
            "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
        }
        command = [sys.executable, "-m", "westwind.cli", "run", str(path)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    order = [
        result.stdout.index(f"westwind: [{stage}]") for stage in ("distill", "sft", "aift", "dpo", "eval")
    ]
    assert order == sorted(order)
    out = tmp_path / "out"
    assert (out / "dpo" / "config.json").exists() and (out / "eval" / "results.json").exists()
    stats = json.loads((out / "aift" / "stats.json").read_text())
    revisions = stats["revisions"]
    assert revisions["prompts"] == 12 == revisions["pairs"] + sum(revisions["dropped"].values())
    assert revisions["pairs"] > 0 and stats["pairs_by_source"] == {
        "ratings": 12,
        "revisions": revisions["pairs"],
    }
    records = [json.loads(line) for line in (out / "aift" / "revisions.jsonl").read_text().splitlines()]
    assert len(records) == 12 and all(isinstance(r["answer"], str) for r in records)
    report = (out / "report.md").read_text()
    assert "## Distill" in report and "dropped_similar" in report and "| Distill |" in report
    assert "- revisions: " in report and "- pairs by source: " in report
