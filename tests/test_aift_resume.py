"""kill -9 in the middle of judging, then resume: nothing redone, nothing lost, the same dataset."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from aift_helpers import REPO, tiny_generator, write_recipe
from conftest import make_conversations, wait_for_records, write_jsonl
from datasets import load_from_disk

from westwind.aift import run as aift
from westwind.io import read_jsonl
from westwind.recipe.core import load_recipe

PROMPTS = 8


def section(prompts_path, model) -> dict:
    return {
        "prompts": {"datasets": [{"path": str(prompts_path)}], "column": "messages"},
        "generators": [tiny_generator(model, n=2, max_new_tokens=8)],
        "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
        "test_split_size": 0.25,
        "chunk_size": 2,
        "seed": 3,
    }


def script(recipe_path, delay: float) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
        "AIFT_TEST_JUDGE_DELAY": str(delay),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, str(REPO / "scripts" / "run_aift.py"), str(recipe_path), "--no-progress"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_kill_during_judging_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_model):
    rows = make_conversations(PROMPTS, seed=4)
    for index, row in enumerate(rows):
        row["messages"][-2]["content"] += f" #{index}"
        row["reference"] = str(index)
    prompts_path = write_jsonl(tmp_path / "prompts.jsonl", rows)

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    uninterrupted = write_recipe(tmp_path / "a", tiny_model, section(prompts_path, tiny_model))
    recipe = load_recipe(uninterrupted, stage="aift")
    aift.run_shard(recipe, progress=False)
    aift.merge(recipe, push=False)

    interrupted = write_recipe(tmp_path / "b", tiny_model, section(prompts_path, tiny_model))
    shard = load_recipe(interrupted).stage_dir("aift") / "shards" / "00000-of-00001"
    process = script(interrupted, delay=0.25)  # 0.5 s of judging per prompt
    wait_for_records(shard / "judged.jsonl", 2, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    judged_before = read_jsonl(shard / "judged.jsonl")
    generated_before = (shard / "generated.jsonl").read_text()
    assert 2 <= len(judged_before) < PROMPTS
    with (shard / "judged.jsonl").open("a") as journal:
        journal.write('{"prompt_id": "cut-off mid-wri')  # as if killed inside a write

    resumed = script(interrupted, delay=0)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output[-3000:]
    assert "AIFT summary" in output

    judged_after = read_jsonl(shard / "judged.jsonl")
    assert judged_after[: len(judged_before)] == judged_before
    assert Counter(r["prompt_id"] for r in judged_after) == Counter({r["prompt_id"]: 1 for r in judged_after})
    assert len(judged_after) == PROMPTS
    assert (shard / "generated.jsonl").read_text() == generated_before  # no candidate regenerated

    expected = load_from_disk(load_recipe(uninterrupted).resolve_reference("@aift"))
    actual = load_from_disk(load_recipe(interrupted).resolve_reference("@aift"))
    assert set(actual) == set(expected) == {"train", "test"}
    for split in expected:
        assert actual[split].to_list() == expected[split].to_list()
    ratings = [load_recipe(p).stage_dir("aift") / "ratings.jsonl" for p in (uninterrupted, interrupted)]
    assert read_jsonl(ratings[0]) == read_jsonl(ratings[1])
