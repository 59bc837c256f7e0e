"""Evaluation: a model against a baseline on held-out prompts (win rate, 1-10 scores, verifier accuracy).

python scripts/run_eval.py recipes/demo-cpu.yaml [--model @dpo] [--baseline @sft]
python -m westwind.stages.eval recipes/demo-cpu.yaml
"""

from __future__ import annotations

import argparse
import json
import sys

from westwind.errors import exit_on_user_error
from westwind.preflight import stage_recipe
from westwind.usage import make_parser as usage_parser


def make_parser() -> argparse.ArgumentParser:
    return usage_parser("eval", __doc__)


def main(argv: list[str]) -> None:
    if any(arg in ("-h", "--help") for arg in argv):
        make_parser().print_help()
        return
    from westwind.evaluation import (
        evaluate,  # heavy (torch, transformers): loaded after the recipe is checked
    )

    with exit_on_user_error():
        recipe = stage_recipe(argv, "eval")
        out_dir = recipe.stage_dir("eval")
        results = evaluate(recipe, recipe.eval, out_dir)
    print(json.dumps({k: results[k] for k in ("models", "win_rate") if k in results}, indent=2))
    print(f"westwind: eval results written to {out_dir / 'results.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
