"""Evaluation: a model against a baseline on held-out prompts (win rate, 1-10 scores, verifier accuracy).

python scripts/run_eval.py recipes/demo-cpu.yaml [--model @dpo] [--baseline @sft]
python -m westwind.stages.eval recipes/demo-cpu.yaml
"""

from __future__ import annotations

import argparse
import json
import sys

from westwind.errors import exit_on_user_error
from westwind.recipe.core import Recipe
from westwind.recipe.usage import make_parser as usage_parser
from westwind.recipe.usage import stage_cli


def make_parser() -> argparse.ArgumentParser:
    return usage_parser("eval", __doc__)


def main(recipe: Recipe) -> None:
    """Evaluate the recipe's model against its baseline (the eval preflight has passed)."""
    from westwind.evaluation.run import (
        evaluate,  # heavy (torch, transformers): loaded after the recipe is checked
    )

    out_dir = recipe.stage_dir("eval")
    with exit_on_user_error():
        results = evaluate(recipe, recipe.eval, out_dir)
    print(json.dumps({k: results[k] for k in ("models", "win_rate") if k in results}, indent=2))
    print(f"westwind: eval results written to {out_dir / 'results.json'}")


def cli(argv: list[str]) -> None:
    stage_cli("eval", argv, __doc__, main)


if __name__ == "__main__":
    cli(sys.argv[1:])
