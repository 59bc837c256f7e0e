"""dSFT: westwind's `scripts/run_sft.py` (shipped defaults) vs the TRL CLI (`trl sft`) with the
alignment-handbook Zephyr-7B-beta SFT settings, on the same tiny model, data, batch and step count.

    python benchmarks/bench_sft.py [--steps 20] [--rounds 2]

Effective tokens/s = non-pad tokens trained on (TRL's own `num_tokens` counter) / train_runtime.
Peak RSS = the training subprocess's own max resident set (wait4). Sides run interleaved, `--rounds` times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import (
    REPO,
    build_tiny_model,
    conversations,
    import_floor_mb,
    interleaved_rounds,
    logged_metric,
    print_table,
    run_measured,
    save_result,
    write_jsonl,
)

BATCH = 8
MAX_LENGTH = 256
# alignment-handbook recipes/zephyr-7b-beta/sft/config_full.yaml, sized to the tiny run (same batch/length
# as westwind's side). On this CPU bf16 stays TRL's default (true) with use_cpu, as the anchor would run it.
ZEPHYR_SFT = {
    "bf16": True,
    "gradient_checkpointing": True,
    "gradient_checkpointing_kwargs": {"use_reentrant": False},
    "packing": True,
    "learning_rate": 2.0e-5,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,  # the anchor's warmup_ratio 0.1 (a fraction in transformers 5)
    "seed": 42,
}
# westwind's side is the shipped defaults; these variants are the candidate changes measured alongside.
# "+ packing" is the control row: the same packing as the baseline, so the ratio shows what packing costs here.
VARIANTS: dict[str, list[str]] = {
    "westwind (shipped defaults)": [],
    "westwind + packing (control)": ["--sft.packing", "true"],
    "westwind + bf16 off": ["--sft.bf16", "false"],
    "westwind + bf16 off, no grad ckpt": ["--sft.bf16", "false", "--sft.activation_checkpointing", "false"],
}


def common_args(steps: int) -> dict[str, Any]:
    return {
        "max_steps": steps,
        "per_device_train_batch_size": BATCH,
        "max_length": MAX_LENGTH,
        "logging_steps": steps,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataset_num_proc": 1,
    }


def westwind_recipe(root: Path, model: Path, data: Path, steps: int) -> Path:
    recipe = {
        "output_dir": str(root / "westwind"),
        "model": {"model_name_or_path": str(model)},
        "sft": {"datasets": [{"path": str(data)}], **common_args(steps)},
    }
    path = root / "westwind.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def trl_config(root: Path, model: Path, data: Path, steps: int, **changes: Any) -> Path:
    config = {
        "model_name_or_path": str(model),
        "dataset_name": str(data.parent),  # a folder of .jsonl: datasets loads it as json
        "output_dir": str(root / "trl"),
        "use_cpu": True,
        **ZEPHYR_SFT,
        **common_args(steps),
        **changes,
    }
    path = root / f"trl-sft{'-' + '-'.join(changes) if changes else ''}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def measure(command: list[str], log: Path, env: dict[str, str]) -> dict[str, float]:
    run = run_measured(command, log, env)
    runtime = logged_metric(run.output, "train_runtime")
    tokens = logged_metric(run.output, "num_tokens")
    if runtime is None or tokens is None:
        raise RuntimeError(f"no train_runtime/num_tokens in {log}")
    return {
        "tokens": tokens,
        "train_runtime_s": runtime,
        "tokens_per_s": tokens / runtime,
        "peak_rss_mb": run.peak_rss_mb,
        "train_loss": logged_metric(run.output, "train_loss") or float("nan"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench" / "sft")
    parser.add_argument(
        "--variants",
        default="all",
        help="'all' or 'shipped' (westwind's shipped defaults and the control rows only)",
    )
    args = parser.parse_args(argv)

    root: Path = args.work
    model = build_tiny_model(root.parent / "tiny-llama")
    data = write_jsonl(root / "data" / "train.jsonl", conversations(args.rows))
    variants = (
        VARIANTS if args.variants == "all" else {k: v for k, v in VARIANTS.items() if not v or "control" in k}
    )
    sides: dict[str, list[str]] = {
        "trl sft (Zephyr settings)": [
            sys.executable,
            "-m",
            "trl.cli.main",
            "sft",
            "--config",
            str(trl_config(root, model, data, args.steps)),
        ],
        "trl sft, packing off (control)": [
            *[sys.executable, "-m", "trl.cli.main", "sft", "--config"],
            str(trl_config(root, model, data, args.steps, packing=False)),
        ],
    }
    recipe = westwind_recipe(root, model, data, args.steps)
    for name, overrides in variants.items():
        sides[name] = [sys.executable, str(REPO / "scripts" / "run_sft.py"), str(recipe), *overrides]

    samples = interleaved_rounds(sides, args.rounds, root, measure)

    floor = import_floor_mb(root / "logs" / "floor.log")
    baseline = next(iter(sides))
    summary = {
        name: {k: statistics.median(s[k] for s in runs) for k in runs[0]} for name, runs in samples.items()
    }
    base = summary[baseline]
    rows = []
    for name, stats in summary.items():
        stats["tokens_per_s_ratio"] = stats["tokens_per_s"] / base["tokens_per_s"]
        stats["peak_rss_ratio"] = stats["peak_rss_mb"] / base["peak_rss_mb"]
        stats["rss_above_floor_mb"] = stats["peak_rss_mb"] - floor
        stats["rss_above_floor_ratio"] = stats["rss_above_floor_mb"] / (base["peak_rss_mb"] - floor)
        rows.append(
            [
                name,
                stats["tokens_per_s"],
                stats["tokens_per_s_ratio"],
                stats["peak_rss_mb"],
                stats["peak_rss_ratio"],
                stats["rss_above_floor_ratio"],
            ]
        )
    header = [
        "side",
        "eff. tokens/s",
        "× baseline",
        "peak RSS MB",
        "RSS × baseline",
        "RSS above import floor × baseline",
    ]
    print_table(
        f"dSFT: {args.steps} steps, batch {BATCH}, max_length {MAX_LENGTH}, {args.rounds} round(s)",
        header,
        rows,
    )
    result = {
        "benchmark": "sft",
        "settings": {
            "steps": args.steps,
            "rounds": args.rounds,
            "rows": args.rows,
            "batch": BATCH,
            "max_length": MAX_LENGTH,
        },
        "baseline": baseline,
        "baseline_config": ZEPHYR_SFT,
        "variants": variants,
        "import_floor_rss_mb": floor,
        "summary": summary,
        "runs": samples,
    }
    print(f"wrote {save_result('sft', result)}")
    return result


if __name__ == "__main__":
    main()
