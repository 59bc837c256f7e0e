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

from westwind.errors import exit_on_user_error
from westwind.recipe.core import Recipe
from westwind.recipe.usage import add_shard_arguments, shard_done, sharded_stage_recipe
from westwind.recipe.usage import make_parser as usage_parser


def make_parser() -> argparse.ArgumentParser:
    parser = usage_parser("distill", __doc__)
    add_shard_arguments(parser, "dialogues")
    return parser


def main(
    recipe: Recipe, shard: tuple[int, int] = (0, 1), *, merge: bool = False, progress: bool = True
) -> int:
    """Distil (a shard of) the dSFT data, or merge the shards, for a recipe that passed the distill preflight."""
    from westwind.distill import run  # heavy (datasets, backends): loaded when the stage runs

    if not merge:
        counts = run.run_shard(recipe, *shard, progress=progress)
        if not shard_done("distill", counts, shard, "dialogue"):
            return 0
    stats = run.merge(recipe)
    print(run.summary(stats))
    print(f"dataset: {recipe.stage_dir('distill') / 'dataset'}")
    return 0


def cli(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args, overrides = make_parser().parse_known_args(argv)
    with exit_on_user_error():
        # --merge assembles journals only: no endpoint or seed file is needed
        recipe, shard = sharded_stage_recipe("distill", args.recipe, overrides, args.shard, not args.merge)
        return main(recipe, shard, merge=args.merge, progress=not args.no_progress)


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
