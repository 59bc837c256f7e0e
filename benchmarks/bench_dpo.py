"""dDPO: westwind's `scripts/run_dpo.py` vs the TRL CLI (`trl dpo`) with the alignment-handbook Zephyr-7B-beta
DPO settings and TRL's defaults (a separate frozen reference model), same tiny model, data, batch, steps.

    python benchmarks/bench_dpo.py [--steps 10] [--rounds 1]

Step throughput = steps / train_runtime, and steps / whole-process wall time (which also counts model loads
and, for precompute_ref_log_probs, the reference pass). Peak RSS = the subprocess's own max RSS (wait4).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import (
    REPO,
    build_tiny_model,
    import_floor_mb,
    interleaved_rounds,
    logged_metric,
    preferences,
    print_table,
    run_measured,
    save_result,
    write_jsonl,
)

BATCH = 8
MAX_LENGTH = 256
# alignment-handbook recipes/zephyr-7b-beta/dpo/config_full.yaml; everything else is TRL's default
# (reference model: a second copy of the policy, frozen; precompute_ref_log_probs: false).
ZEPHYR_DPO = {
    "beta": 0.01,
    "learning_rate": 5.0e-7,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,  # the anchor's warmup_ratio 0.1 (a fraction in transformers 5)
    "bf16": True,
    "gradient_checkpointing": True,
    "gradient_checkpointing_kwargs": {"use_reentrant": False},
    "seed": 42,
}
# westwind ships precompute_ref_log_probs: true (recipe.STAGE_DEFAULTS); the control row turns it off.
VARIANTS: dict[str, list[str]] = {
    "westwind (shipped defaults)": [],
    "westwind, precompute off (control)": ["--dpo.precompute_ref_log_probs", "false"],
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
        "dpo": {"model_name_or_path": str(model), "datasets": [{"path": str(data)}], **common_args(steps)},
    }
    path = root / "westwind.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def trl_config(root: Path, model: Path, data: Path, steps: int, **changes: Any) -> Path:
    config = {
        "model_name_or_path": str(model),
        "dataset_name": str(data.parent),
        "output_dir": str(root / "trl"),
        "use_cpu": True,
        **ZEPHYR_DPO,
        **common_args(steps),
        **changes,
    }
    path = root / f"trl-dpo{'-' + '-'.join(changes) if changes else ''}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def measure(command: list[str], log: Path, env: dict[str, str], steps: int) -> dict[str, float]:
    run = run_measured(command, log, env)
    runtime = logged_metric(run.output, "train_runtime")
    if runtime is None:
        raise RuntimeError(f"no train_runtime in {log}")
    return {
        "train_runtime_s": runtime,
        "steps_per_s": steps / runtime,
        "wall_s": run.wall_s,
        "steps_per_wall_s": steps / run.wall_s,
        "peak_rss_mb": run.peak_rss_mb,
        "train_loss": logged_metric(run.output, "train_loss") or float("nan"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="default: steps x batch, so precompute covers exactly one epoch",
    )
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench" / "dpo")
    args = parser.parse_args(argv)

    root: Path = args.work
    args.rows = args.rows or args.steps * BATCH
    model = build_tiny_model(root.parent / "tiny-llama")
    data = write_jsonl(root / "data" / "train.jsonl", preferences(args.rows))
    sides: dict[str, list[str]] = {
        "trl dpo (Zephyr settings)": [
            *[sys.executable, "-m", "trl.cli.main", "dpo"],
            *["--config", str(trl_config(root, model, data, args.steps))],
        ],
        # The control row: TRL's own flag, so the ratio shows where westwind's DPO gain comes from.
        "trl dpo + precompute_ref_log_probs (control)": [
            *[sys.executable, "-m", "trl.cli.main", "dpo"],
            *["--config", str(trl_config(root, model, data, args.steps, precompute_ref_log_probs=True))],
        ],
    }
    recipe = westwind_recipe(root, model, data, args.steps)
    for name, overrides in VARIANTS.items():
        sides[name] = [sys.executable, str(REPO / "scripts" / "run_dpo.py"), str(recipe), *overrides]

    samples = interleaved_rounds(sides, args.rounds, root, functools.partial(measure, steps=args.steps))

    floor = import_floor_mb(root / "logs" / "floor.log")
    baseline = next(iter(sides))
    summary = {
        name: {k: statistics.median(s[k] for s in runs) for k in runs[0]} for name, runs in samples.items()
    }
    base = summary[baseline]
    rows = []
    for name, stats in summary.items():
        stats["steps_per_s_ratio"] = stats["steps_per_s"] / base["steps_per_s"]
        stats["steps_per_wall_s_ratio"] = stats["steps_per_wall_s"] / base["steps_per_wall_s"]
        stats["peak_rss_ratio"] = stats["peak_rss_mb"] / base["peak_rss_mb"]
        stats["rss_above_floor_mb"] = stats["peak_rss_mb"] - floor
        stats["rss_above_floor_ratio"] = stats["rss_above_floor_mb"] / (base["peak_rss_mb"] - floor)
        rows.append(
            [
                name,
                stats["steps_per_s"],
                stats["steps_per_s_ratio"],
                stats["steps_per_wall_s_ratio"],
                stats["peak_rss_mb"],
                stats["peak_rss_ratio"],
                stats["rss_above_floor_ratio"],
            ]
        )
    header = [
        "side",
        "steps/s (train)",
        "× baseline",
        "× baseline (wall)",
        "peak RSS MB",
        "RSS × baseline",
        "RSS above import floor × baseline",
    ]
    print_table(f"dDPO: {args.steps} steps, batch {BATCH}, max_length {MAX_LENGTH}", header, rows)
    result = {
        "benchmark": "dpo",
        "settings": {
            "steps": args.steps,
            "rounds": args.rounds,
            "rows": args.rows,
            "batch": BATCH,
            "max_length": MAX_LENGTH,
        },
        "baseline": baseline,
        "baseline_config": ZEPHYR_DPO,
        "variants": VARIANTS,
        "import_floor_rss_mb": floor,
        "summary": summary,
        "runs": samples,
    }
    print(f"wrote {save_result('dpo', result)}")
    return result


if __name__ == "__main__":
    main()
