"""scripts/gpu_smoke.sh (benchmarks/gpu_smoke.py) runs end to end in its --cpu --tiny mode, so it cannot rot."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
from conftest import REPO


@pytest.mark.slow  # eight tiny training runs (QLoRA dSFT, QLoRA dDPO from its adapter, full dSFT, full dDPO, x2)
def test_gpu_smoke_cpu_tiny_measures_both_variants_of_every_stage(tmp_path):
    out = tmp_path / "results.json"
    command = [str(REPO / "scripts" / "gpu_smoke.sh"), "--cpu", "--tiny", "--steps", "2"]
    command += ["--work", str(tmp_path / "work"), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads(out.read_text())
    runs = {(run["stage"], run["variant"]): run for run in report["runs"]}
    stages = ("qlora_sft", "qlora_dpo", "full_sft", "full_dpo")
    assert set(runs) == {(s, v) for s in stages for v in ("handbook", "westwind")} | {
        ("zero3_merge", "westwind")
    }
    for stage in stages:
        for variant in ("handbook", "westwind"):
            run = runs[stage, variant]
            assert run["status"] == "ok" and run["tokens"] > 0 and run["tokens_per_s"] > 0
            assert math.isfinite(run["train_loss"]) and run["flops_per_token"] > 0 and run["context"] > 0
    assert runs["qlora_sft", "westwind"]["settings"]["packing"] is True  # from recipes/zephyr-7b-qlora.yaml
    handbook_sft, handbook_dpo = (
        runs["qlora_sft", "handbook"]["settings"],
        runs["qlora_dpo", "handbook"]["settings"],
    )
    assert handbook_sft["packing"] is False and handbook_sft["assistant_only_loss"] is False
    assert handbook_dpo["precompute_ref_log_probs"] is False and handbook_dpo["dtype"] == "float16"
    assert runs["full_sft", "handbook"]["settings"]["learning_rate"] == 2.0e-5  # sft/config_full.yaml
    # the handbook's DPO runs its reference forward; westwind precomputes it: the same model costs more per token
    assert runs["full_dpo", "handbook"]["flops_per_token"] > runs["full_dpo", "westwind"]["flops_per_token"]
    assert runs["zero3_merge", "westwind"]["status"] == "skipped"
    assert set(report["ratios"]) == set(stages)
    assert report["device"] == "cpu" and report["runs"][0]["mfu"] is None  # no GPU peak to compare with
    header = "stage       variant   status    tokens/s  peak GB GFLOP/tok    MFU    loss"
    assert header in result.stdout.splitlines()  # the table a GPU run prints


def test_gpu_smoke_names_missing_packages(tmp_path):
    env = {**os.environ, "PYTHON": str(tmp_path / "python")}
    fake = tmp_path / "python"
    fake.write_text('#!/bin/bash\necho "bitsandbytes trl"\n')
    fake.chmod(0o755)
    result = subprocess.run([str(REPO / "scripts" / "gpu_smoke.sh")], capture_output=True, text=True, env=env)
    assert result.returncode == 3 and "needs these Python packages: bitsandbytes trl" in result.stderr
