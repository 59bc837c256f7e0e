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

from westwind import identity, io, rounds
from westwind.errors import RecipeError, exit_on_user_error
from westwind.identity import round_hashes, stage_hashes  # noqa: F401  (stage_hashes: re-exported for callers)
from westwind.recipe import preflight
from westwind.recipe.core import Recipe, load_recipe
from westwind.stages import MODULES, OUTPUTS, STAGES, TRAINING_STAGES


def is_complete(recipe: Recipe, stage: str, config_hash: str) -> bool:
    directory = recipe.stage_dir(stage)
    marker = io.read_stage_marker(directory)
    if marker is None or not any((directory / name).exists() for name in OUTPUTS[stage]):
        return False
    return marker.get("config_hash") == config_hash


def start_clean(recipe: Recipe, stage: str, config_hash: str, step: str | None = None) -> None:
    """Clear a training stage's folder made under other inputs, then record `config_hash` in it. AIFT and
    eval key their reusable work on what produced it themselves (models by content identity)."""
    if stage not in TRAINING_STAGES:
        return
    directory = recipe.stage_dir(stage)
    problem = identity.foreign_outputs(directory, config_hash)
    if problem:
        print(f"westwind: [{step or stage}] clearing it first: {problem}", flush=True)
        identity.clear(directory)
    identity.record_hash(directory, stage, config_hash)


def mark_complete(recipe: Recipe, stage: str, config_hash: str, seconds: float) -> None:
    io.write_stage_marker(recipe.stage_dir(stage), config_hash, seconds)


def selected_stages(recipe: Recipe, first: str | None, last: str | None) -> list[str]:
    """The steps from --from to --to: stages, and with rounds > 1 each round's (`aift-r2`, `dpo-r2`, ...)."""
    present = all_steps(recipe)
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


def all_steps(recipe: Recipe) -> list[str]:
    present = [s for s in STAGES if getattr(recipe, s) is not None]
    later = [s for s in rounds.ROUND_STAGES if s in present]
    return present + [rounds.step_name(s, k) for k in range(2, recipe.rounds.count + 1) for s in later]


def run_stage(
    stage: str, recipe_path: Path, overrides: list[str], launcher: list[str], step: str | None = None
) -> None:
    """Run one stage in its own process; `step` names it in messages (`aift-r2`: a round's stage)."""
    step = step or stage
    command = [*launcher, "-m", MODULES[stage], str(recipe_path), *overrides]
    print(f"westwind: [{step}] {shlex.join(command)}", flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        print(f"error: stage {step} failed (exit {result.returncode}); rerun to resume it", file=sys.stderr)
        raise SystemExit(result.returncode)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="westwind run", description=__doc__)
    parser.add_argument("recipe", type=Path)
    steps = f"{', '.join(STAGES)}; with rounds also aift-r2, dpo-r2, eval-r2, ..."
    parser.add_argument("--from", dest="first", help=f"first stage to run ({steps})")
    parser.add_argument("--to", dest="last", help=f"last stage to run ({steps})")
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
        steps = selected_stages(recipe, args.first, args.last)
        recipes = round_recipes(args.recipe, overrides, recipe)
        for index, round_recipe in recipes.items():
            mine = [stage for stage, k in map(rounds.parse_step, steps) if k == index]
            earlier = {stage for stage, k in map(rounds.parse_step, steps) if k <= index}
            if mine:
                preflight.check(round_recipe, mine, produced_earlier=earlier)
        hashes = round_hashes(recipe)
    started = time.monotonic()
    for step in steps:
        stage, index = rounds.parse_step(step)
        round_recipe, config_hash = recipes[index], hashes[step]
        if not args.force and is_complete(round_recipe, stage, config_hash):
            print(f"westwind: [{step}] complete with this config; skipped ({round_recipe.stage_dir(stage)})")
            continue
        launcher = shlex.split(args.launcher) if stage in TRAINING_STAGES else [sys.executable]
        stage_started = time.monotonic()
        start_clean(round_recipe, stage, config_hash, step)
        run_stage(stage, args.recipe, round_overrides(overrides, recipe, index), launcher, step)
        mark_complete(round_recipe, stage, config_hash, time.monotonic() - stage_started)
    finish(recipes, time.monotonic() - started)


def round_overrides(overrides: list[str], recipe: Recipe, index: int) -> list[str]:
    """A stage's command line for round `index`: unchanged for a one-round recipe."""
    return overrides if recipe.rounds.count == 1 else [*overrides, "--round", str(index)]


def round_recipes(path: Path | str, overrides: list[str], recipe: Recipe) -> dict[int, Recipe]:
    """Each round's recipe, as its stages will load it (`recipe`: round 1's)."""
    found = {1: recipe}
    for index in range(2, recipe.rounds.count + 1):
        found[index] = load_recipe(path, round_overrides(overrides, recipe, index))
    return found


def finish(recipes: dict[int, Recipe], seconds: float) -> None:
    from westwind.report import summary_lines, write_report
    from westwind.report.rounds import append_rounds_section

    last = recipes[max(recipes)]  # the report's stage sections show the last round (round 1 for one round)
    stage_dirs = {stage: last.stage_dir(stage) for stage in STAGES}
    report = write_report(last.output_dir, stage_dirs)
    if len(recipes) > 1:
        append_rounds_section(report, recipes)
    print(f"\nwestwind: pipeline finished in {seconds / 60:.1f} min")
    for line in summary_lines(last.output_dir, stage_dirs):
        print(line)
    print(f"report: {report}")
