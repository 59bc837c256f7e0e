"""scripts/gpu_smoke.sh (benchmarks/gpu_smoke.py) runs end to end in its --cpu --tiny mode, so it cannot rot."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
from conftest import REPO


@pytest.mark.slow  # six tiny training runs (QLoRA dSFT, QLoRA dDPO from its adapter, full dSFT, x2): ~1-2 min
def test_gpu_smoke_cpu_tiny_measures_both_variants_of_every_stage(tmp_path):
    out = tmp_path / "results.json"
    command = [str(REPO / "scripts" / "gpu_smoke.sh"), "--cpu", "--tiny", "--steps", "2"]
    command += ["--work", str(tmp_path / "work"), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads(out.read_text())
    runs = {(run["stage"], run["variant"]): run for run in report["runs"]}
    assert set(runs) == {
        (s, v) for s in ("qlora_sft", "qlora_dpo", "full_sft") for v in ("handbook", "westwind")
    }
    for run in runs.values():
        assert run["tokens"] > 0 and run["tokens_per_s"] > 0
        assert math.isfinite(run["train_loss"])
    assert runs["qlora_sft", "westwind"]["settings"]["packing"] is True  # from recipes/zephyr-7b-qlora.yaml
    assert runs["qlora_sft", "handbook"]["settings"]["packing"] is False
    assert set(report["ratios"]) == {"qlora_sft", "qlora_dpo", "full_sft"}
    assert report["device"] == "cpu" and report["runs"][0]["mfu"] is None  # no GPU peak to compare with
    assert "tokens/s" in result.stdout


def test_gpu_smoke_names_missing_packages(tmp_path):
    env = {**os.environ, "PYTHON": str(tmp_path / "python")}
    fake = tmp_path / "python"
    fake.write_text('#!/bin/bash\necho "bitsandbytes trl"\n')
    fake.chmod(0o755)
    result = subprocess.run([str(REPO / "scripts" / "gpu_smoke.sh")], capture_output=True, text=True, env=env)
    assert result.returncode == 3 and "needs these Python packages: bitsandbytes trl" in result.stderr
