"""scripts/slurm/aift_array.slurm and aift_submit.sh, run with fake Slurm tools: the commands they build."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO
from test_launch_check import fake_tool

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
SLURM = REPO / "scripts" / "slurm"
RECIPE = "recipes/zephyr-7b.yaml"


def run(tmp_path: Path, args: list[str], **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run a script with `python`, `westwind` and `sbatch` replaced by loggers (sbatch prints job ids)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("python", "westwind"):
        fake_tool(bin_dir, tool, f'echo "{tool} $*" >> "$LOG"')
    counter = tmp_path / "job-id"
    fake_tool(
        bin_dir,
        "sbatch",
        f'echo "sbatch $*" >> "$LOG"; n=$(( $(cat {counter} 2>/dev/null || echo 100) + 1 )); '
        f'echo $n > {counter}; echo "$n;cluster-a"',
    )
    environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log), "WESTWIND_ROOT": str(tmp_path)}
    result = subprocess.run(
        ["bash", *args], env={**environment, **env}, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    return result, log.read_text().splitlines() if log.exists() else []


def test_array_task_runs_its_shard_of_the_aift_stage(tmp_path):
    array = {"SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0"}
    result, calls = run(
        tmp_path,
        [str(SLURM / "aift_array.slurm"), RECIPE, "--aift.chunk_size", "2048"],
        SLURM_ARRAY_TASK_ID="3",
        **array,
    )
    assert result.returncode == 0, result.stderr
    assert calls == [
        f"python -m westwind.stages.aift {RECIPE} --shard 3/8 --no-progress --aift.chunk_size 2048"
    ]


def test_array_indices_are_counted_from_the_first_task(tmp_path):
    """`--array=1-4` still makes shards 0/4..3/4: every prompt belongs to exactly one task."""
    array = {"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    shards = []
    for task in ("1", "2", "3", "4"):
        result, calls = run(
            tmp_path, [str(SLURM / "aift_array.slurm"), RECIPE], SLURM_ARRAY_TASK_ID=task, **array
        )
        assert result.returncode == 0, result.stderr
        shards.append(calls[-1].split("--shard ")[1].split()[0])
    assert shards == ["0/4", "1/4", "2/4", "3/4"]


def test_array_with_a_step_or_no_array_is_refused(tmp_path):
    stepped = {"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"}
    result, calls = run(
        tmp_path, [str(SLURM / "aift_array.slurm"), RECIPE], SLURM_ARRAY_TASK_ID="2", **stepped
    )
    assert result.returncode == 2 and "contiguous --array=0-3" in result.stderr and not calls
    result, calls = run(tmp_path, [str(SLURM / "aift_array.slurm"), RECIPE])
    assert result.returncode != 0 and "run as a job array" in result.stderr and not calls


def test_merge_mode_merges_every_shard(tmp_path):
    result, calls = run(tmp_path, [str(SLURM / "aift_array.slurm"), "--merge", RECIPE, "--no-push"])
    assert result.returncode == 0, result.stderr
    assert calls == [f"python -m westwind.stages.aift {RECIPE} --merge --no-push"]


def test_submit_checks_then_queues_shards_and_a_dependent_merge(tmp_path):
    script = str(SLURM / "aift_array.slurm")
    result, calls = run(
        tmp_path,
        [str(SLURM / "aift_submit.sh"), RECIPE, "16", "--aift.chunk_size", "2048"],
        AIFT_SBATCH_ARGS="--gres=gpu:2 --partition=gpu",
    )
    assert result.returncode == 0, result.stderr
    assert calls == [
        f"westwind check {RECIPE} --aift.chunk_size 2048",
        f"sbatch --parsable --gres=gpu:2 --partition=gpu --array=0-15 {script} {RECIPE} --aift.chunk_size 2048",
        f"sbatch --parsable --dependency=afterok:101 --gres=gpu:0 --cpus-per-task=8 {script} --merge {RECIPE} "
        "--aift.chunk_size 2048",
    ]
    assert "shards: job 101 (array 0-15); merge: job 102" in result.stdout


def test_submit_refuses_a_bad_shard_count_before_queueing(tmp_path):
    result, calls = run(tmp_path, [str(SLURM / "aift_submit.sh"), RECIPE, "0"])
    assert result.returncode == 2 and "SHARDS must be a positive integer" in result.stderr and not calls
