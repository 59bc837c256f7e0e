"""benchmarks/gpu_smoke.py's last run: westwind's adapter-merge path under DeepSpeed ZeRO-3 on one GPU."""

from __future__ import annotations

import gc
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ZERO3_TIMEOUT_S = 300


def zero3_merge_run(run, work: Path, models, data, steps: int, attn: str, cpu: bool):
    """A LoRA dSFT, then full dDPO from it under ZeRO-3 on this one GPU: the adapter is merged (rank 0 alone,
    ZeRO-3 hidden) and the merged model loaded under zero.Init. One process cannot show a cross-rank hang; it
    shows that the merge path runs under a live DeepSpeed config. Fills in `run` (a gpu_smoke.Run)."""
    if cpu or importlib.util.find_spec("deepspeed") is None:
        run.status = "skipped"
        run.notes.append("needs a CUDA GPU and DeepSpeed" if cpu else "DeepSpeed is not installed")
        return run
    import torch

    from westwind.recipe.core import load_recipe
    from westwind.training import data as westwind_data
    from westwind.training import trainer as training

    root = work / "runs" / "zero3_merge"
    stage = {"max_steps": steps, "logging_steps": 1, "save_strategy": "no", "report_to": [], "bf16": True,
             "per_device_train_batch_size": 2, "max_length": 512}  # fmt: skip
    recipe_file = root / "recipe.yaml"
    root.mkdir(parents=True, exist_ok=True)
    recipe_file.write_text(yaml.safe_dump({
        "output_dir": str(root),
        "model": {"model_name_or_path": str(models["llama-1b"]), "dtype": "bfloat16", "attn_implementation": attn,
                  "chat_template": "zephyr", "use_peft": True},
        "sft": {"datasets": [{"path": str(data["sft"])}], **stage, "max_steps": 2},
        "dpo": {"datasets": [{"path": str(data["dpo"])}], "model_name_or_path": "@sft", **stage},
    }, sort_keys=False))  # fmt: skip
    recipe = load_recipe(recipe_file, stage="sft")
    trainer = training.sft_trainer(
        recipe, westwind_data.sft_dataset(recipe.sft_data.datasets, None, 0, False)
    )
    trainer.train()
    training.save_model(trainer, Path(recipe.sft.output_dir))
    del trainer
    gc.collect()
    torch.cuda.empty_cache()
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "recipes" / "accelerate" / "zero3.yaml"), "--num_processes", "1",
               "-m", "westwind.stages.dpo", str(recipe_file), "--model.use_peft", "false"]  # fmt: skip
    started = time.perf_counter()
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=ZERO3_TIMEOUT_S, env=os.environ
        )
    except subprocess.TimeoutExpired:
        run.status = "failed"
        run.notes.append(f"no result after {ZERO3_TIMEOUT_S} s (a hang?)")
        return run
    run.seconds = time.perf_counter() - started
    merged = (root / "dpo" / "sft-merged" / "config.json").is_file()
    run.status = "ok" if result.returncode == 0 and merged else "failed"
    run.notes.append(f"exit {result.returncode}; merged model {'written' if merged else 'missing'}")
    if run.status == "failed":
        run.notes.append(result.stderr[-1500:])
    return run
