"""One-shot GPU smoke benchmark: the alignment-handbook's settings beside westwind's recipe settings.

    scripts/gpu_smoke.sh                   # one CUDA GPU, no network, ~10 minutes (python -m benchmarks.gpu_smoke)
    scripts/gpu_smoke.sh --cpu --tiny      # CI: the same code path on a CPU with tiny models

Builds random-weight models locally (the real Mistral-7B architecture for QLoRA, a ~1.1B Llama for full
fine-tuning; a tiny trained tokenizer, so no download) and runs each stage for a few steps twice, in
alternating order: with the handbook's zephyr-7b-beta settings (benchmarks/handbook.py: its recipe files'
values, westwind's differing defaults set back) and with the westwind recipe's (recipes/zephyr-7b-qlora.yaml,
recipes/zephyr-7b.yaml), both through westwind's own stage code. Stages: QLoRA dSFT, QLoRA dDPO from that dSFT
adapter, full dSFT, full dDPO. Gradient accumulation is 1 in every run (tokens/s and memory do not depend on it;
the time limit does). Last, a ZeRO-3 run on the one GPU of the adapter-merge path (LoRA dSFT, then full dDPO
under `accelerate launch --config_file recipes/accelerate/zero3.yaml`, which merges the adapter first).

Per run it records tokens/s (non-padding tokens, from the second logged step on, so start-up is excluded),
peak GPU memory, the model FLOPs per token and MFU against the GPU's dense bf16 peak (benchmarks/mfu.py: 6 per
trained weight, 4 per frozen one, 4-bit weights counted by their logical number, the attention term, a reference
forward only where reference log-probs are not precomputed) and the training loss, and writes them with the
ratios to a JSON file. Random weights make the loss a sanity check only, not a quality measure.

Needs torch (CUDA), transformers, trl, peft, accelerate, datasets, tokenizers, pyyaml, bitsandbytes; uses
flash-attn, liger-kernel and DeepSpeed when importable (scripts/gpu_smoke.sh lists what is missing;
scripts/gpu_wheels.sh gathers them as wheels for a machine without network).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks import mfu
from benchmarks.common import FILLER as WORDS
from benchmarks.handbook import HANDBOOK
from benchmarks.zero3_merge import zero3_merge_run

REPO = Path(__file__).resolve().parents[1]
REQUIRED = [
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "yaml",
    "bitsandbytes",
]
OPTIONAL = ["flash_attn", "liger_kernel", "deepspeed"]
STAGES = ["qlora_sft", "qlora_dpo", "full_sft", "full_dpo"]
# The recipe keys that change speed or memory; the westwind variant takes them from the shipped recipe.
LEVERS = [
    "per_device_train_batch_size",
    "max_length",
    "packing",
    "padding_free",
    "optim",
    "use_liger_kernel",
    "precompute_ref_log_probs",
    "assistant_only_loss",
    "activation_checkpointing",
    "activation_checkpointing_kwargs",
    "learning_rate",
    "beta",
    "bf16",
]
MODEL_KEYS = ("dtype", "use_peft", "load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_quant_storage")
RECIPES = {"qlora_sft": "zephyr-7b-qlora", "qlora_dpo": "zephyr-7b-qlora", "full_sft": "zephyr-7b",
           "full_dpo": "zephyr-7b"}  # fmt: skip


@dataclass
class Run:
    stage: str
    variant: str
    settings: dict[str, Any]
    status: str = "ok"
    tokens: int = 0
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    peak_memory_gb: float | None = None
    flops_per_token: float | None = None
    context: float | None = None
    mfu: float | None = None
    train_loss: float | None = None
    notes: list[str] = field(default_factory=list)


def missing_packages() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (CI), no GPU needed")
    parser.add_argument("--tiny", action="store_true", help="tiny models and sequences (CI)")
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per run (default 10; 3 tiny)"
    )
    parser.add_argument("--work", default="outputs/gpu-smoke", help="models, data and run outputs")
    parser.add_argument("--out", default="outputs/gpu-smoke/results.json")
    args = parser.parse_args(argv)
    missing = missing_packages()
    if missing:
        print(f"gpu_smoke: missing packages: {' '.join(missing)} (bring them as wheels)", file=sys.stderr)
        return 3
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device; use --cpu (with --tiny) to run on a CPU", file=sys.stderr)
        return 3
    steps = args.steps or (3 if args.tiny else 10)
    work = Path(args.work)
    report = run_all(work, steps, args.cpu, args.tiny)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"gpu_smoke: results in {args.out}")
    return 0


def run_all(work: Path, steps: int, cpu: bool, tiny: bool) -> dict[str, Any]:
    import torch

    # Recipes ask for flash_attention_2 on a GPU, as both anchors do; without flash-attn westwind falls back to
    # sdpa and pads instead of packing (said in the log), which is what a user of that machine gets.
    attn = "sdpa" if cpu else "flash_attention_2"
    models = build_models(work / "models", tiny)
    data = build_data(work / "data", tiny)
    runs: list[Run] = []
    for index, stage in enumerate(STAGES):
        order = ["handbook", "westwind"] if index % 2 == 0 else ["westwind", "handbook"]
        for variant in order:
            runs.append(run_one(stage, variant, work, models, data, steps, attn, cpu, tiny))
    merge = Run(
        "zero3_merge", "westwind", {"accelerate_config": "recipes/accelerate/zero3.yaml", "processes": 1}
    )
    runs.append(zero3_merge_run(merge, work, models, data, steps, attn, cpu))
    device = "cpu" if cpu else torch.cuda.get_device_name(0)
    return {
        "device": device,
        "bf16_peak_tflops": None if cpu else mfu.bf16_peak(device),
        "attn_implementation": attn
        if cpu or importlib.util.find_spec("flash_attn")
        else "sdpa (no flash-attn)",
        "steps": steps,
        "tiny": tiny,
        "versions": versions(),
        "runs": [asdict(run) for run in runs],
        "ratios": ratios(runs),
    }


def build_models(root: Path, tiny: bool) -> dict[str, Path]:
    """A Mistral-7B-architecture model and a ~1.1B Llama, random weights, sharing a tiny tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig

    from westwind.demo.tiny import build_tokenizer

    tokenizer = build_tokenizer([" ".join(random.Random(i).choices(WORDS, k=40)) for i in range(200)], 400)
    shapes = {
        "mistral-7b": (MistralConfig, dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                           num_attention_heads=32, num_key_value_heads=8, vocab_size=32000)),
        "llama-1b": (LlamaConfig, dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                                       num_attention_heads=32, num_key_value_heads=4, vocab_size=32000)),
    }  # fmt: skip
    paths = {}
    for name, (config_class, shape) in shapes.items():
        if tiny:  # bitsandbytes' CPU 4-bit kernels need layers at least 64 wide
            shape = {**shape, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": len(tokenizer)}  # fmt: skip
        out = root / name
        if not (out / "config.json").exists():
            config = config_class(**shape, max_position_embeddings=4096, tie_word_embeddings=False,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            device = "cuda" if torch.cuda.is_available() and not tiny else "cpu"
            with torch.device(device):
                model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            del model
            free_memory()
        paths[name] = out
    return paths


def build_data(root: Path, tiny: bool) -> dict[str, Path]:
    """Conversations of varied length (so padding and packing differ) and preference pairs, as JSONL."""
    rng = random.Random(0)
    longest = 24 if tiny else 900  # words; the tiny tokenizer gives ~1-2 tokens a word

    def text() -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(longest // 8, longest)))

    root.mkdir(parents=True, exist_ok=True)
    sft = [{"messages": [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]}
           for _ in range(2000 if not tiny else 64)]  # fmt: skip
    dpo = [{"prompt": [{"role": "user", "content": text()}],
            "chosen": [{"role": "assistant", "content": text()}],
            "rejected": [{"role": "assistant", "content": text()}]} for _ in range(1000 if not tiny else 64)]  # fmt: skip
    paths = {"sft": root / "sft.jsonl", "dpo": root / "dpo.jsonl"}
    for name, rows in (("sft", sft), ("dpo", dpo)):
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths


def variant_settings(stage: str, variant: str, tiny: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model section updates, stage section updates) for one run."""
    section = stage.split("_")[1]
    if variant == "handbook":
        model, values = dict(HANDBOOK[stage]["model"]), dict(HANDBOOK[stage]["stage"])
    else:
        shipped = yaml.safe_load((REPO / "recipes" / f"{RECIPES[stage]}.yaml").read_text())
        model = {k: v for k, v in shipped["model"].items() if k in MODEL_KEYS or k.startswith("lora_")}
        values = {k: shipped[section][k] for k in LEVERS if k in shipped[section]}
    values["gradient_accumulation_steps"] = 1  # the same in both variants: see the module docstring
    if tiny:  # the same shape for both variants, scaled down for a CPU
        values.update(per_device_train_batch_size=2, max_length=64)
        model.pop("lora_target_modules", None)  # PEFT's defaults fit the tiny models too
    return model, values


def run_one(stage, variant, work, models, data, steps, attn, cpu, tiny) -> Run:
    import torch

    from westwind.recipe.core import load_recipe
    from westwind.training import data as westwind_data
    from westwind.training import trainer as training

    model_updates, values = variant_settings(stage, variant, tiny)
    run = Run(stage, variant, {**model_updates, **values})
    adapt_to_cpu(run, model_updates, values, cpu)
    section = stage.split("_")[1]
    base = models["llama-1b" if stage.startswith("full") else "mistral-7b"]
    recipe_path = write_run_recipe(work / "runs" / f"{stage}-{variant}", stage, base, data, model_updates,
                                   values, steps, attn, cpu)  # fmt: skip
    recipe = load_recipe(recipe_path, stage=section)
    with dtype_as_loaded(variant == "handbook"):
        if section == "sft":
            dataset = westwind_data.sft_dataset(recipe.sft_data.datasets, None, 0, False)
            trainer = training.sft_trainer(recipe, dataset)
        else:
            policy, datasets = westwind_data.dpo_inputs(recipe)
            dataset = westwind_data.dpo_dataset(datasets, None, 0, False)
            trainer = training.dpo_trainer(recipe, dataset, policy)
    clock = make_clock()
    trainer.add_callback(clock)
    if not cpu:
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train()
    if stage == "qlora_sft":  # the dDPO runs continue this adapter
        training.save_model(trainer, Path(recipe.sft.output_dir))
    run.tokens, run.seconds = clock.tokens(), clock.seconds()
    run.tokens_per_s = run.tokens / run.seconds if run.seconds else 0.0
    run.train_loss = result.training_loss
    run.context = mfu.token_weighted_context(sequence_lengths(trainer.train_dataset, trainer.args.max_length))
    reference_forward = section == "dpo" and not trainer.args.precompute_ref_log_probs
    params = mfu.count_parameters(trainer.model.named_parameters())
    shape = mfu.model_shape(trainer.model.config)
    run.flops_per_token = mfu.flops_per_token(params, shape, run.context, reference_forward)
    if not cpu:
        run.peak_memory_gb = torch.cuda.max_memory_allocated() / 2**30
        run.mfu = mfu.mfu(run.flops_per_token, run.tokens_per_s, mfu.bf16_peak(torch.cuda.get_device_name(0)))
    del trainer
    free_memory()
    return run


def adapt_to_cpu(run: Run, model_updates: dict[str, Any], values: dict[str, Any], cpu: bool) -> None:
    """What a CPU cannot run, replaced (and said in the run's notes)."""
    if not cpu:
        return
    if str(values.get("optim", "")).startswith("paged_"):
        values["optim"] = "adamw_torch"
        run.notes.append("paged optimizer replaced by adamw_torch on the CPU")
    if values.pop("use_liger_kernel", False):
        run.notes.append("liger kernels off on the CPU")
    if model_updates.get("dtype") == "float16":
        model_updates["dtype"] = "bfloat16"
        run.notes.append("float16 weights loaded as bfloat16 on the CPU")


@contextlib.contextmanager
def dtype_as_loaded(as_loaded: bool):
    """The handbook trains full models in the dtype it loads them in; westwind loads fp32 weights for a full
    run on one GPU (models.full_training_dtype). For the handbook's runs, that choice is switched off."""
    from westwind.training import models

    chooser = models.full_training_dtype
    if as_loaded:
        models.full_training_dtype = lambda model_args, mixed_precision: model_args.dtype
    try:
        yield
    finally:
        models.full_training_dtype = chooser


def sequence_lengths(dataset, max_length: int | None) -> list[int]:
    """Each trained sequence's length (a DPO pair gives two: prompt+chosen, prompt+rejected)."""
    columns = dataset.column_names
    if "seq_lengths" in columns:  # packed rows keep their sequences' lengths
        lengths = [n for row in dataset["seq_lengths"] for n in row]
    elif "chosen_ids" in columns:  # TRL's DPO rows
        prompts = [len(ids) for ids in dataset["prompt_ids"]]
        lengths = [p + len(ids) for p, ids in zip(prompts, dataset["chosen_ids"], strict=True)]
        lengths += [p + len(ids) for p, ids in zip(prompts, dataset["rejected_ids"], strict=True)]
    else:
        lengths = [len(ids) for ids in dataset["input_ids"]]
    return [min(n, max_length) if max_length else n for n in lengths]


def write_run_recipe(root, stage, base, data, model_updates, values, steps, attn, cpu) -> Path:
    model = {"model_name_or_path": str(base), "attn_implementation": attn, "chat_template": "zephyr",
             **model_updates}  # fmt: skip
    stage_values = {"max_steps": steps, "logging_steps": 1, "save_strategy": "no", "report_to": [],
                    "dataloader_num_workers": 0, "use_cpu": cpu, **values}  # fmt: skip
    recipe: dict[str, Any] = {"output_dir": str(root), "model": model}
    sft_data = {"datasets": [{"path": str(data["sft"])}]}
    if stage == "qlora_dpo":
        variant = root.name.split("-", 1)[1]
        recipe["sft"] = {**sft_data, "output_dir": str(root.parent / f"qlora_sft-{variant}" / "sft")}
        recipe["dpo"] = {
            "datasets": [{"path": str(data["dpo"])}],
            "model_name_or_path": "@sft",
            **stage_values,
        }
    elif stage == "full_dpo":
        recipe["dpo"] = {
            "datasets": [{"path": str(data["dpo"])}],
            "model_name_or_path": "@base",
            **stage_values,
        }
    else:
        recipe["sft"] = {**sft_data, **stage_values}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def make_clock():
    """A trainer callback holding (time, tokens seen) at each logged step, to measure after start-up."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[tuple[float, int]] = []

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if logs and "num_tokens" in logs:
                self.marks.append((time.perf_counter(), int(float(logs["num_tokens"]))))

        def tokens(self) -> int:
            return self.marks[-1][1] - self.marks[0][1] if len(self.marks) > 1 else 0

        def seconds(self) -> float:
            return self.marks[-1][0] - self.marks[0][0] if len(self.marks) > 1 else 0.0

    return Clock()


def ratios(runs: list[Run]) -> dict[str, dict[str, float | None]]:
    """westwind / handbook per stage: tokens/s (higher is better) and peak memory (lower is better)."""
    out = {}
    for stage in STAGES:
        pair = {run.variant: run for run in runs if run.stage == stage}
        if set(pair) != {"handbook", "westwind"}:
            continue
        handbook, westwind = pair["handbook"], pair["westwind"]
        speed = westwind.tokens_per_s / handbook.tokens_per_s if handbook.tokens_per_s else None
        memory = (
            westwind.peak_memory_gb / handbook.peak_memory_gb
            if westwind.peak_memory_gb and handbook.peak_memory_gb
            else None
        )
        out[stage] = {"tokens_per_s": speed, "peak_memory": memory}
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in [
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "bitsandbytes",
        "flash-attn",
        "liger-kernel",
        "deepspeed",
    ]:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def print_table(report: dict[str, Any]) -> None:
    """The same columns on a GPU and on a CPU (where peak memory and MFU are "-")."""
    print(f"\n{report['device']}, attention {report['attn_implementation']}, {report['steps']} steps per run")
    print(f"{'stage':<11} {'variant':<9} {'status':<7} {'tokens/s':>10} {'peak GB':>8} {'GFLOP/tok':>9} "
          f"{'MFU':>6} {'loss':>7}")  # fmt: skip
    for run in report["runs"]:
        memory = f"{run['peak_memory_gb']:.1f}" if run["peak_memory_gb"] is not None else "-"
        flops = f"{run['flops_per_token'] / 1e9:.3f}" if run["flops_per_token"] is not None else "-"
        mfu_text = f"{run['mfu']:.1%}" if run["mfu"] is not None else "-"
        loss = f"{run['train_loss']:.3f}" if run["train_loss"] is not None else "-"
        print(f"{run['stage']:<11} {run['variant']:<9} {run['status']:<7} {run['tokens_per_s']:>10.0f} "
              f"{memory:>8} {flops:>9} {mfu_text:>6} {loss:>7}")  # fmt: skip
    for run in report["runs"]:
        for note in run["notes"]:
            print(f"  {run['stage']} {run['variant']}: {note.splitlines()[-1] if note else note}")


if __name__ == "__main__":
    raise SystemExit(main())
