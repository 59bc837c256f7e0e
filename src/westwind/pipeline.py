"""`westwind run RECIPE`: dSFT -> AIFT -> dDPO -> eval, each stage its own process, skipping finished ones.

A stage is skipped when its outputs are complete and its hash (westwind.identity.stage_hashes: its section, the
model section, the output root, its data's identity and every upstream stage's hash) matches the one recorded
next to its outputs. A stage that runs starts from a folder holding only work made under the same inputs: one
made under other inputs is cleared first.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from westwind import identity, io
from westwind.errors import RecipeError, exit_on_user_error
from westwind.identity import stage_hashes
from westwind.recipe import preflight
from westwind.recipe.core import Recipe, load_recipe
from westwind.stages import MODULES, OUTPUTS, STAGES, TRAINING_STAGES


def is_complete(recipe: Recipe, stage: str, config_hash: str) -> bool:
    directory = recipe.stage_dir(stage)
    marker = io.read_stage_marker(directory)
    if marker is None or not any((directory / name).exists() for name in OUTPUTS[stage]):
        return False
    return marker.get("config_hash") == config_hash


def start_clean(recipe: Recipe, stage: str, config_hash: str) -> None:
    """Clear a training stage's folder made under other inputs, then record `config_hash` in it. AIFT and
    eval key their reusable work on what produced it themselves (models by content identity)."""
    if stage not in TRAINING_STAGES:
        return
    directory = recipe.stage_dir(stage)
    problem = identity.foreign_outputs(directory, config_hash)
    if problem:
        print(f"westwind: [{stage}] clearing it first: {problem}", flush=True)
        identity.clear(directory)
    identity.record_hash(directory, stage, config_hash)


def mark_complete(recipe: Recipe, stage: str, config_hash: str, seconds: float) -> None:
    io.write_stage_marker(recipe.stage_dir(stage), config_hash, seconds)


def selected_stages(recipe: Recipe, first: str | None, last: str | None) -> list[str]:
    present = [s for s in STAGES if getattr(recipe, s) is not None]
    for name, value in (("--from", first), ("--to", last)):
        if value is not None and value not in present:
            raise RecipeError(
                recipe.path, name, f"{value!r} is not a stage of this recipe ({', '.join(present)})"
            )
    start = present.index(first) if first else 0
    end = present.index(last) + 1 if last else len(present)
    if start >= end:
        raise RecipeError(recipe.path, "--from/--to", f"{first} comes after {last}")
    return present[start:end]


def run_stage(stage: str, recipe_path: Path, overrides: list[str], launcher: list[str]) -> None:
    command = [*launcher, "-m", MODULES[stage], str(recipe_path), *overrides]
    print(f"westwind: [{stage}] {shlex.join(command)}", flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        print(f"error: stage {stage} failed (exit {result.returncode}); rerun to resume it", file=sys.stderr)
        raise SystemExit(result.returncode)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="westwind run", description=__doc__)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--from", dest="first", choices=STAGES, help="first stage to run")
    parser.add_argument("--to", dest="last", choices=STAGES, help="last stage to run")
    parser.add_argument("--force", action="store_true", help="rerun selected stages even when complete")
    parser.add_argument(
        "--launcher",
        default=shlex.join([sys.executable]),
        help="how to start a training stage, e.g. 'accelerate launch --config_file recipes/accelerate/ddp.yaml'",
    )
    return parser.parse_known_args(argv)


def main(argv: list[str]) -> None:
    args, overrides = parse_args(argv)
    with exit_on_user_error():
        recipe = load_recipe(args.recipe, overrides)
        stages = selected_stages(recipe, args.first, args.last)
        preflight.check(recipe, stages, produced_earlier=set(stages))
        hashes = stage_hashes(recipe)
    started = time.monotonic()
    for stage in stages:
        if not args.force and is_complete(recipe, stage, hashes[stage]):
            print(f"westwind: [{stage}] complete with this config; skipped ({recipe.stage_dir(stage)})")
            continue
        launcher = shlex.split(args.launcher) if stage in TRAINING_STAGES else [sys.executable]
        stage_started = time.monotonic()
        start_clean(recipe, stage, hashes[stage])
        run_stage(stage, args.recipe, overrides, launcher)
        mark_complete(recipe, stage, hashes[stage], time.monotonic() - stage_started)
    finish(recipe, time.monotonic() - started)


def finish(recipe: Recipe, seconds: float) -> None:
    from westwind.report import summary_lines, write_report

    stage_dirs = {stage: recipe.stage_dir(stage) for stage in STAGES}
    report = write_report(recipe.output_dir, stage_dirs)
    print(f"\nwestwind: pipeline finished in {seconds / 60:.1f} min")
    for line in summary_lines(recipe.output_dir, stage_dirs):
        print(line)
    print(f"report: {report}")
