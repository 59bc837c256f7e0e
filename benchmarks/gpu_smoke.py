"""One-shot GPU smoke benchmark: the alignment-handbook's settings against westwind's recipe settings.

    python -m benchmarks.gpu_smoke                 # one CUDA GPU, no network, ~10 minutes
    python -m benchmarks.gpu_smoke --cpu --tiny    # CI: the same code path on a CPU with tiny models

Builds random-weight models locally (the real Mistral-7B architecture for QLoRA, a ~1.1B Llama for full
fine-tuning; a tiny trained tokenizer, so no download) and runs each stage for a few dozen steps twice, in
alternating order: with the handbook's settings for that stage (recipes/zephyr-7b-beta/{sft,dpo}/config_*.yaml
as published) and with the westwind recipe's (recipes/zephyr-7b-qlora.yaml, recipes/zephyr-7b.yaml), both
through westwind's own stage code. Stages: QLoRA dSFT, QLoRA dDPO from that dSFT adapter, full dSFT.

Per run it records tokens/s (non-padding tokens, from the second logged step on, so start-up is excluded),
peak GPU memory, MFU against the GPU's dense bf16 peak (model FLOPs only: 6N per token for full training,
4N for a frozen 4-bit base with adapters, plus 2N for a DPO reference forward; attention FLOPs not counted)
and the training loss, and writes them with the ratios to a JSON file. Random weights make the loss a
sanity check only (equal settings give equal losses), not a quality measure.

Needs torch (CUDA), transformers, trl, peft, accelerate, datasets, tokenizers, pyyaml, bitsandbytes;
uses flash-attn and liger-kernel when importable (scripts/gpu_smoke.sh lists what is missing).
"""

from __future__ import annotations

import argparse
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

from benchmarks.common import FILLER as WORDS

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
OPTIONAL = ["flash_attn", "liger_kernel"]

# Dense bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s (no sparsity).
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
}

# The handbook's published settings per stage (zephyr-7b-beta/sft/config_qlora.yaml, dpo/config_qlora.yaml,
# sft/config_full.yaml); the handbook runs QLoRA on one GPU and does not pack.
HANDBOOK = {
    "qlora_sft": {
        "model": {"lora_r": 16, "lora_alpha": 16, "lora_dropout": 0.05},
        "stage": {"per_device_train_batch_size": 4, "max_length": 2048, "packing": False},
    },
    "qlora_dpo": {
        "model": {"lora_r": 16, "lora_alpha": 16, "lora_dropout": 0.05},
        "stage": {"per_device_train_batch_size": 4, "max_length": 1024, "optim": "paged_adamw_32bit"},
    },
    "full_sft": {
        "model": {},
        "stage": {"per_device_train_batch_size": 16, "max_length": 2048, "packing": False},
    },
}
COMMON = {"activation_checkpointing": True, "activation_checkpointing_kwargs": {"use_reentrant": False}}
# The recipe keys that change speed or memory; the westwind variant takes them from the shipped recipe.
LEVERS = [
    "per_device_train_batch_size",
    "max_length",
    "packing",
    "padding_free",
    "optim",
    "use_liger_kernel",
    "precompute_ref_log_probs",
    "activation_checkpointing",
]
RECIPES = {"qlora_sft": "zephyr-7b-qlora", "qlora_dpo": "zephyr-7b-qlora", "full_sft": "zephyr-7b"}


@dataclass
class Run:
    stage: str
    variant: str
    settings: dict[str, Any]
    tokens: int = 0
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    peak_memory_gb: float | None = None
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
        "--steps", type=int, default=None, help="optimizer steps per run (default 15; 3 tiny)"
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
    steps = args.steps or (3 if args.tiny else 15)
    work = Path(args.work)
    report = run_all(work, steps, args.cpu, args.tiny)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"gpu_smoke: results in {args.out}")
    return 0


def run_all(work: Path, steps: int, cpu: bool, tiny: bool) -> dict[str, Any]:
    import torch

    attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") and not cpu else "sdpa"
    models = build_models(work / "models", tiny)
    data = build_data(work / "data", tiny)
    runs: list[Run] = []
    for index, stage in enumerate(["qlora_sft", "qlora_dpo", "full_sft"]):
        order = ["handbook", "westwind"] if index % 2 == 0 else ["westwind", "handbook"]
        for variant in order:
            runs.append(run_one(stage, variant, work, models, data, steps, attn, cpu, tiny))
    device = "cpu" if cpu else torch.cuda.get_device_name(0)
    return {
        "device": device,
        "bf16_peak_tflops": None if cpu else bf16_peak(device),
        "attn_implementation": attn,
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
    section = "dpo" if stage == "qlora_dpo" else "sft"
    if variant == "handbook":
        model, values = dict(HANDBOOK[stage]["model"]), {**COMMON, **HANDBOOK[stage]["stage"]}
    else:
        shipped = yaml.safe_load((REPO / "recipes" / f"{RECIPES[stage]}.yaml").read_text())
        model = {
            k: v for k, v in shipped["model"].items() if k.startswith("lora_") and k != "lora_target_modules"
        }
        values = {k: shipped[section][k] for k in LEVERS if k in shipped[section]}
    if tiny:  # the same shape for both variants, scaled down for a CPU
        values.update(per_device_train_batch_size=2, max_length=64)
    return model, values


def run_one(stage, variant, work, models, data, steps, attn, cpu, tiny) -> Run:
    import torch

    from westwind.recipe.core import load_recipe
    from westwind.training import data as westwind_data
    from westwind.training import trainer as training

    model_updates, values = variant_settings(stage, variant, tiny)
    run = Run(stage, variant, {**model_updates, **values})
    if cpu and str(values.get("optim", "")).startswith("paged_"):
        values["optim"] = "adamw_torch"
        run.notes.append("paged optimizer replaced by adamw_torch on the CPU")
    if cpu and values.pop("use_liger_kernel", False):
        run.notes.append("liger kernels off on the CPU")
    section = "dpo" if stage == "qlora_dpo" else "sft"
    base = models["llama-1b" if stage == "full_sft" else "mistral-7b"]
    recipe_path = write_run_recipe(work / "runs" / f"{stage}-{variant}", stage, base, data, model_updates,
                                   values, steps, attn, cpu)  # fmt: skip
    recipe = load_recipe(recipe_path, stage=section)
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
    if not cpu:
        run.peak_memory_gb = torch.cuda.max_memory_allocated() / 2**30
        peak = bf16_peak(torch.cuda.get_device_name(0))
        flops = flops_per_token(trainer.model, stage, bool(values.get("precompute_ref_log_probs")))
        run.mfu = flops * run.tokens_per_s / (peak * 1e12) if peak else None
    del trainer
    free_memory()
    return run


def write_run_recipe(root, stage, base, data, model_updates, values, steps, attn, cpu) -> Path:
    quantized = stage != "full_sft"
    model = {"model_name_or_path": str(base), "dtype": "bfloat16", "attn_implementation": attn,
             "chat_template": "zephyr", **model_updates}  # fmt: skip
    if quantized:
        model.update(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_quant_storage="bfloat16",
                     use_peft=True, lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                         "gate_proj", "up_proj", "down_proj"])  # fmt: skip
    stage_values = {"max_steps": steps, "logging_steps": 1, "save_strategy": "no", "bf16": True,
                    "learning_rate": 2e-4 if stage != "qlora_dpo" else 5e-6, "report_to": [],
                    "dataloader_num_workers": 0, "use_cpu": cpu, **values}  # fmt: skip
    recipe: dict[str, Any] = {"output_dir": str(root), "model": model}
    if stage == "qlora_dpo":
        sft_output = root.parent / f"qlora_sft-{root.name.split('-', 1)[1]}" / "sft"
        recipe["sft"] = {"datasets": [{"path": str(data["sft"])}], "output_dir": str(sft_output)}
        recipe["dpo"] = {"datasets": [{"path": str(data["dpo"])}], "model_name_or_path": "@sft",
                         "beta": 0.01, **stage_values}  # fmt: skip
    else:
        recipe["sft"] = {"datasets": [{"path": str(data["sft"])}], **stage_values}
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


def flops_per_token(model, stage: str, precomputed_reference: bool) -> float:
    """Model FLOPs per trained token, embeddings excluded (see the module docstring)."""
    params = sum(p.numel() * (2 if "Params4bit" in type(p).__name__ else 1)
                 for name, p in model.named_parameters() if "embed" not in name)  # fmt: skip
    per_token = (6 if stage == "full_sft" else 4) * params
    if stage == "qlora_dpo" and not precomputed_reference:
        per_token += 2 * params
    return float(per_token)


def bf16_peak(device_name: str) -> float | None:
    for name, peak in BF16_PEAK_TFLOPS.items():  # most specific names first
        if all(part in device_name for part in name.split()):
            return peak
    return None


def ratios(runs: list[Run]) -> dict[str, dict[str, float | None]]:
    """westwind / handbook per stage: tokens/s (higher is better) and peak memory (lower is better)."""
    out = {}
    for stage in {run.stage for run in runs}:
        pair = {run.variant: run for run in runs if run.stage == stage}
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
    print(f"\n{report['device']}, attention {report['attn_implementation']}, {report['steps']} steps per run")
    print(f"{'stage':<10} {'variant':<9} {'tokens/s':>10} {'peak GB':>8} {'MFU':>6} {'loss':>7}")
    for run in report["runs"]:
        memory = f"{run['peak_memory_gb']:.1f}" if run["peak_memory_gb"] is not None else "-"
        mfu = f"{run['mfu']:.1%}" if run["mfu"] is not None else "-"
        loss = f"{run['train_loss']:.3f}" if run["train_loss"] is not None else "-"
        print(
            f"{run['stage']:<10} {run['variant']:<9} {run['tokens_per_s']:>10.0f} {memory:>8} {mfu:>6} {loss:>7}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
