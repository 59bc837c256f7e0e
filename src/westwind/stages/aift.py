"""AIFT: sample completions from a pool of models, have a teacher rate them, binarize into preference pairs.

    python scripts/run_aift.py RECIPE [--key value ...]         # everything, resumable (rerun after a crash)
    python scripts/run_aift.py RECIPE --shard 3/8               # one node's slice; then, once all are done:
    python scripts/run_aift.py RECIPE --merge                   # assemble the dataset from the shards
    python scripts/run_aift.py RECIPE --rebinarize --aift.binarize.policy best_vs_worst  # no judging
    python -m westwind.stages.aift RECIPE ...                   # the same, from an installed package

Writes <output_dir>/aift/{dataset/, train.jsonl, test.jsonl, ratings.jsonl, stats.json}; see docs/aift.md.
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
    parser = usage_parser("aift", __doc__)
    mode = add_shard_arguments(parser, "prompts")
    mode.add_argument("--rebinarize", action="store_true", help="rebuild pairs from ratings.jsonl")
    parser.add_argument(
        "--allow-partial", action="store_true", help="merge even if some prompts are unjudged"
    )
    parser.add_argument("--no-push", action="store_true", help="skip aift.push_to_hub")
    return parser


def main(
    recipe: Recipe,
    shard: tuple[int, int] = (0, 1),
    *,
    merge: bool = False,
    rebinarize: bool = False,
    allow_partial: bool = False,
    push: bool = True,
    progress: bool = True,
) -> int:
    """Run (a shard of) AIFT, merge the shards, or rebinarize, for a recipe that passed the aift preflight."""
    from westwind.aift import run as aift  # heavy (datasets, backends): loaded when the stage runs
    from westwind.aift.stats import summary

    if rebinarize:
        stats = aift.rebinarize(recipe, push=push)
    elif merge:
        stats = aift.merge(recipe, allow_partial, push=push)
    else:
        counts = aift.run_shard(recipe, *shard, progress=progress)
        if not shard_done("aift", counts, shard, "prompt"):
            return 0
        stats = aift.merge(recipe, push=push)
    print(summary(stats))
    print(f"dataset: {recipe.stage_dir('aift') / 'dataset'}")
    return 0


def cli(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args, overrides = make_parser().parse_known_args(argv)
    with exit_on_user_error():
        only_journals = args.merge or args.rebinarize  # no endpoint or model is needed
        recipe, shard = sharded_stage_recipe("aift", args.recipe, overrides, args.shard, not only_journals)
        return main(
            recipe,
            shard,
            merge=args.merge,
            rebinarize=args.rebinarize,
            allow_partial=args.allow_partial,
            push=not args.no_push,
            progress=not args.no_progress,
        )


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
