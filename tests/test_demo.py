"""The default CPU demo, in full: dDPO must beat dSFT on the held-out prompts (the Zephyr result in miniature)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def westwind(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "westwind.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_default_demo_ddpo_beats_dsft(tmp_path):
    base = tmp_path / "base"
    westwind("init-model", "--out", str(base), "--data", "data/demo/sft.jsonl")
    out = tmp_path / "demo"
    stdout = westwind(
        "run", "recipes/demo-cpu.yaml", "--output_dir", str(out), "--model.model_name_or_path", str(base)
    )

    results = json.loads((out / "eval" / "results.json").read_text())
    dsft, ddpo = results["models"]["sft"]["accuracy"], results["models"]["dpo"]["accuracy"]
    assert dsft["total"] == ddpo["total"] == 200
    print(f"dSFT {dsft['correct']}/200, dDPO {ddpo['correct']}/200, win rate {results['win_rate']}")
    assert ddpo["correct"] > dsft["correct"], (dsft, ddpo)
    assert results["win_rate"]["wins"] > results["win_rate"]["losses"]

    report = (out / "report.md").read_text()
    assert (
        f"{ddpo['correct']} / {ddpo['total']}" in report and f"{dsft['correct']} / {dsft['total']}" in report
    )
    assert all((out / "plots" / name).exists() for name in ("eval.png",))
    assert str(out / "report.md") in stdout
