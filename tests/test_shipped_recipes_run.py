"""Each shipped recipe runs end to end on CPU: its own trainer settings, a tiny model and tiny local data.

For every recipes/*.yaml the test keeps the recipe's training settings (schedule, warmup, packing, LoRA/QLoRA,
beta, loss, checkpointing, seeds, chat template, binarize policy) and swaps only what cannot run here:

- model: the tiny test Llama instead of a 7B/8B hub model; dtype float32 (the CPU has no fast bf16 path and
  the tiny tests everywhere else use float32). `attn_implementation` is kept: a recipe asking for
  flash_attention_2 must fall back to sdpa and say so.
- QLoRA: `load_in_4bit`/nf4 is kept; `bnb_4bit_quant_storage` is set to the float32 dtype, because it must
  equal `dtype` (the recipe itself pairs bfloat16 with bfloat16).
- data: every hub dataset becomes a tiny local jsonl in the same columns; `split` becomes "train".
- aift: the openai generators and judge need servers; one `@sft` transformers generator (n=2) and a
  deterministic verifier judge replace them (and for aift.revisions the tiny `@sft` answers, the tiny base
  revises); the verifier needs a `reference` column, so the prompt datasets' `columns` gain one; dpo gets `drop_invalid_rows: true` because the 2-step tiny generator sometimes
  writes empty completions. Prompts are a tiny local jsonl; binarize and seed are kept.
- speed: max_steps 2, batch 2, no accumulation, max_length 64, bf16 off, save every 2 steps.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aift_helpers import tiny_generator
from conftest import REPO, make_conversations, make_preferences, write_jsonl, write_recipe

# The CPU demo runs in test_demo; its distill variant has the same training sections (test_demo_teacher runs
# its distill stage).
SHIPPED = sorted(path for path in (REPO / "recipes").glob("*.yaml") if not path.stem.startswith("demo-cpu"))
FA2_FALLBACK = "falling back to attn_implementation=sdpa"
SPEED = {
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "max_length": 64,
    "bf16": False,
    "save_steps": 2,
    "logging_steps": 1,
    "dataloader_num_workers": 0,
}
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "OMP_NUM_THREADS": "2",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
}
# Llama-3.1's base tokenizer already holds these reserved special tokens; the llama recipe names them as its
# eos/pad and its template emits them, so the tiny stand-in tokenizer gets them too (no other recipe needs them).
# westwind's own stage keys (data selection), not trainer settings.
DATA_KEYS = {"datasets", "test_split_size", "drop_invalid_rows", "model_name_or_path"}
LLAMA3_TOKENS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|finetune_right_pad_id|>"]


@pytest.fixture(scope="module")
def tiny_llama3(tiny_model: Path, tmp_path_factory) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-llama3")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.add_special_tokens({"additional_special_tokens": LLAMA3_TOKENS})
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.resize_token_embeddings(len(tokenizer))
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out


def full_conversation_pairs(count: int) -> list[dict]:
    """Preference rows as the hub's ultrafeedback_binarized holds them: chosen/rejected full conversations."""
    return [
        {"chosen": row["prompt"] + row["chosen"], "rejected": row["prompt"] + row["rejected"]}
        for row in make_preferences(count, seed=3)
    ]


def local_datasets(datasets: list[dict[str, Any]], local: Path) -> list[dict[str, Any]]:
    """The recipe's dataset entries pointed at `local`, keeping their columns; `@aift` is left as it is."""
    swapped = []
    for entry in datasets:
        if entry["path"] == "@aift":
            swapped.append(entry)
        else:
            swapped.append({**entry, "path": str(local), "split": "train"})
    return swapped


def shrink(recipe: dict[str, Any], model_dir: Path, data: Path, out: Path) -> dict[str, Any]:
    raw = copy.deepcopy(recipe)
    raw["output_dir"] = str(out)
    model = raw["model"]
    model["model_name_or_path"] = str(model_dir)
    model["dtype"] = "float32"
    if model.get("load_in_4bit"):
        model["bnb_4bit_quant_storage"] = (
            "float32"  # must equal dtype; the recipe pairs bfloat16 with bfloat16
        )

    sft_rows = write_jsonl(data / "sft.jsonl", make_conversations(16, seed=1))
    raw["sft"]["datasets"] = local_datasets(raw["sft"]["datasets"], sft_rows)
    raw["sft"].update(SPEED)

    pairs = write_jsonl(data / "pairs.jsonl", full_conversation_pairs(16))
    raw["dpo"]["datasets"] = local_datasets(raw["dpo"]["datasets"], pairs)
    raw["dpo"].update(SPEED)
    if model.get("load_in_4bit") and "precompute_ref_log_probs" not in raw["dpo"]:
        # bitsandbytes' CPU 4-bit inference kernel (the no-grad precompute pass) needs layers at least one quant
        # block (64) wide; the tiny model's are 32, so westwind's precompute default is turned off here only.
        raw["dpo"]["precompute_ref_log_probs"] = False

    prompt_rows = [
        {"prompt": row["messages"][-2]["content"], "reference": row["messages"][-1]["content"]}
        for row in make_conversations(12, seed=2)
    ]
    prompts = write_jsonl(data / "prompts.jsonl", prompt_rows)
    if "aift" in raw:
        aift = raw["aift"]
        aift["prompts"]["datasets"] = local_datasets(aift["prompts"]["datasets"], prompts)
        for entry in aift["prompts"]["datasets"]:
            if entry.get("columns"):
                entry["columns"] = [*entry["columns"], "reference"]  # the verifier judge scores against it
        aift["generators"] = [tiny_generator("@sft", n=2, max_new_tokens=8)]
        aift["judge"] = {"kind": "verifier", "function": "aift_helpers:hash_score"}
        if (
            "revisions" in aift
        ):  # served models too: the tiny @sft answers, the tiny base critiques and revises
            revisions = aift["revisions"]
            revisions.update(answerer={"model": "@sft"}, teacher={"model": "@base"})
            for key in ("sampling", "teacher_sampling"):
                revisions[key] = {**revisions[key], "max_new_tokens": 8}
        # A random tiny model trained for 2 steps sometimes emits eos at once; westwind rightly refuses the
        # resulting empty-completion pairs unless told to drop them.
        raw["dpo"]["drop_invalid_rows"] = True
    if "eval" in raw and "prompts" in raw["eval"]:  # a suites-only eval section keeps its suites off
        raw["eval"]["prompts"] = {"datasets": [{"path": str(prompts)}], "column": "prompt"}
        raw["eval"]["sampling"] = {"max_new_tokens": 8}
    return raw


def run_stage(stage: str, recipe: Path) -> str:
    """Runs one stage script; returns its stdout (where westwind prints what it decided)."""
    command = [sys.executable, str(REPO / "scripts" / f"run_{stage}.py"), str(recipe)]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, f"run_{stage}.py failed:\n{(result.stdout + result.stderr)[-4000:]}"
    return result.stdout


def assert_trainer_used(stage_dir: Path, section: dict[str, Any]) -> None:
    """Every trainer setting the (shrunk) recipe gives the stage reached the trainer as written."""
    import torch

    args = torch.load(stage_dir / "checkpoint-2" / "training_args.bin", weights_only=False)
    for key, wanted in section.items():
        if key in DATA_KEYS:
            continue
        used = getattr(args, key)
        assert getattr(used, "value", used) == wanted, (
            f"{stage_dir.name}.{key}: recipe {wanted!r}, ran {used!r}"
        )


def assert_adapter_matches(stage_dir: Path, model: dict[str, Any]) -> None:
    adapter = json.loads((stage_dir / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (model["lora_r"], model["lora_alpha"])
    assert adapter["lora_dropout"] == model["lora_dropout"]
    assert sorted(adapter["target_modules"]) == sorted(model["lora_target_modules"])


def assert_saved_model(stage_dir: Path, adapter: bool) -> None:
    expected = "adapter_config.json" if adapter else "config.json"
    assert (stage_dir / expected).is_file(), f"{stage_dir} lacks {expected}: {sorted(os.listdir(stage_dir))}"
    assert (stage_dir / "checkpoint-2").is_dir(), "save_steps 2 with max_steps 2 should leave checkpoint-2"


@pytest.mark.slow
@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda path: path.stem)
def test_shipped_recipe_runs_every_stage(shipped: Path, tmp_path: Path, tiny_model: Path, request) -> None:
    recipe = yaml.safe_load(shipped.read_text())
    needs_llama3_tokens = "<|eot_id|>" in yaml.safe_dump(recipe)
    model_dir = request.getfixturevalue("tiny_llama3") if needs_llama3_tokens else tiny_model
    raw = shrink(recipe, model_dir, tmp_path / "data", tmp_path / "out")
    recipe_path = write_recipe(tmp_path / shipped.name, raw)
    asks_fa2 = recipe["model"].get("attn_implementation") == "flash_attention_2"
    adapter = bool(recipe["model"].get("use_peft"))

    sft_output = run_stage("sft", recipe_path)
    assert_saved_model(tmp_path / "out" / "sft", adapter)
    packs_for_fa2 = asks_fa2 and raw["sft"].get("packing")
    # Packing was set for flash-attention, which is absent here: westwind pads instead, and says so.
    assert_trainer_used(
        tmp_path / "out" / "sft", {**raw["sft"], **({"packing": False} if packs_for_fa2 else {})}
    )
    assert ("dSFT pads instead of packing" in sft_output) == bool(packs_for_fa2)
    if adapter:
        assert_adapter_matches(tmp_path / "out" / "sft", raw["model"])
    if asks_fa2:
        assert sft_output.count(FA2_FALLBACK) == 1, sft_output[-3000:]
    else:
        assert FA2_FALLBACK not in sft_output

    if "aift" in raw:
        run_stage("aift", recipe_path)
        dataset_dir = tmp_path / "out" / "aift" / "dataset"
        assert dataset_dir.is_dir() and any(dataset_dir.iterdir())
        stats = json.loads((tmp_path / "out" / "aift" / "stats.json").read_text())
        if "revisions" in raw["aift"]:
            counts = stats["revisions"]
            assert counts["prompts"] == 12 == counts["pairs"] + sum(counts["dropped"].values())

    dpo_output = run_stage("dpo", recipe_path)
    assert_saved_model(tmp_path / "out" / "dpo", adapter)
    assert_trainer_used(tmp_path / "out" / "dpo", raw["dpo"])
    if adapter:
        assert_adapter_matches(tmp_path / "out" / "dpo", raw["model"])
    if asks_fa2:
        assert dpo_output.count(FA2_FALLBACK) == 1, dpo_output[-3000:]

    if "eval" in raw:
        run_stage("eval", recipe_path)
