"""Distill: a teacher writes the dSFT data. Seed tasks -> bootstrapped instructions (Self-Instruct) ->
multi-turn dialogues (UltraChat-style) -> a `messages` dataset for the sft stage (`@distill`).

    python scripts/run_distill.py RECIPE [--key value ...]      # everything, resumable (rerun after a crash)
    python scripts/run_distill.py RECIPE --shard 3/8            # one node's slice of the dialogues; then:
    python scripts/run_distill.py RECIPE --merge                # assemble the dataset from the shards
    python -m westwind.stages.distill RECIPE ...                # the same, from an installed package

Writes <output_dir>/distill/{dataset/, instructions.jsonl, train.jsonl, test.jsonl, stats.json}; see
docs/distill.md.
"""

from __future__ import annotations

import argparse
import logging
import sys

from westwind import preflight
from westwind.errors import RecipeError, RunError, exit_on_user_error
from westwind.recipe import load_recipe
from westwind.usage import make_parser as usage_parser


def make_parser() -> argparse.ArgumentParser:
    parser = usage_parser("distill", __doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--shard", help="i/N: write only this deterministic slice of the dialogues")
    mode.add_argument("--merge", action="store_true", help="build the dataset from all shards' dialogues")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str]) -> int:
    from westwind.distill import run  # heavy (datasets, backends): loaded when the stage runs
    from westwind.prompts import parse_shard

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args, overrides = make_parser().parse_known_args(argv)
    with exit_on_user_error():
        if args.merge:  # assembles journals only: no endpoint or seed file is needed
            recipe = load_recipe(args.recipe, overrides, stage="distill")
            if recipe.distill is None:
                raise RecipeError(recipe.path, "distill", "the recipe has no distill section")
        else:
            recipe = preflight.stage_recipe([args.recipe, *overrides], "distill")
        try:
            index, count = parse_shard(args.shard) if args.shard else (0, 1)
        except ValueError as error:
            raise RecipeError("(command line)", "--shard", str(error)) from None
        if not args.merge:
            counts = run.run_shard(recipe, index, count, progress=not args.no_progress)
            print(f"shard {index}/{count}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            if count > 1:
                print("when every shard is done: westwind distill RECIPE --merge")
                return 0
            if counts["unfinished"]:
                raise RunError(f"{counts['unfinished']} dialogue(s) failed; rerun to retry them")
        stats = run.merge(recipe)
    print(run.summary(stats))
    print(f"dataset: {recipe.stage_dir('distill') / 'dataset'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
