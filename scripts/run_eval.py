"""Evaluation: a model against a baseline on held-out prompts (win rate, 1-10 scores, verifier accuracy).

python scripts/run_eval.py recipes/demo-cpu.yaml [--model @dpo] [--baseline @sft]
"""

from __future__ import annotations

import json
import sys

from westwind.recipe import RecipeError, exit_on_bad_input, load_recipe


def main(argv: list[str]) -> None:
    from westwind.evaluation import evaluate

    with exit_on_bad_input():
        if not argv or argv[0].startswith("-"):
            raise RecipeError("(command line)", "RECIPE", "usage: run_eval.py RECIPE [--key value ...]")
        recipe = load_recipe(argv[0], argv[1:], stage="eval")
        if recipe.eval is None:
            raise RecipeError(recipe.path, "eval", "the recipe has no eval section")
        out_dir = recipe.stage_dir("eval")
        results = evaluate(recipe, recipe.eval, out_dir)
    print(json.dumps({k: results[k] for k in ("models", "win_rate") if k in results}, indent=2))
    print(f"westwind: eval results written to {out_dir / 'results.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
