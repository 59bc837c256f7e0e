"""Two real processes (gloo DDP on CPU) run run_sft and run_dpo end to end.

`accelerate launch --num_processes 2 --cpu` silently starts one process; torchrun starts two.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import REPO, tiny_recipe, write_recipe

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(script: str, recipe, *overrides: str) -> str:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launcher += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    command = [*launcher, str(REPO / "scripts" / script), str(recipe), *overrides]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def global_step(output_dir) -> int:
    states = sorted(output_dir.glob("checkpoint-*/trainer_state.json"))
    return json.loads(states[-1].read_text())["global_step"]


@pytest.mark.slow
def test_ddp_two_processes_sft_then_dpo(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    # One epoch over 32 rows at 4 per device: 4 steps on 2 processes (8 on one).
    per_stage = {
        "max_steps": -1,
        "num_train_epochs": 1,
        "per_device_train_batch_size": 4,
        "save_strategy": "epoch",
    }
    raw = tiny_recipe(
        tmp_path,
        tiny_model,
        sft_jsonl,
        dpo_jsonl,
        sft=per_stage,
        dpo={**per_stage, "precompute_ref_log_probs": True},
    )
    recipe = write_recipe(tmp_path / "recipe.yaml", raw)

    assert "trained on 2 process(es)" in torchrun("run_sft.py", recipe)
    assert global_step(tmp_path / "out" / "sft") == 4
    assert "trained on 2 process(es)" in torchrun("run_dpo.py", recipe)
    assert global_step(tmp_path / "out" / "dpo") == 4
