"""Evaluation: a model against a baseline on held-out prompts (win rate, 1-10 scores, verifier accuracy),
then the published suites in eval.suites (MT-Bench, Arena-Hard; docs/eval.md).

python scripts/run_eval.py recipes/demo-cpu.yaml [--model @dpo] [--baseline @sft]
python -m westwind.stages.eval recipes/demo-cpu.yaml
westwind eval RECIPE --suite mt_bench [--model PATH|@sft]   # one suite alone, on any model
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
    from westwind.evaluation import arena_hard, mt_bench
    from westwind.evaluation.run import (
        evaluate,  # heavy (torch, transformers): loaded after the recipe is checked
    )
    from westwind.evaluation.suites import selected_suites

    config, out_dir = recipe.eval, recipe.stage_dir("eval")
    if config.suite is None and config.prompts is not None:
        with exit_on_user_error():
            results = evaluate(recipe, config, out_dir)
        print(json.dumps({k: results[k] for k in ("models", "win_rate") if k in results}, indent=2))
        print(f"westwind: eval results written to {out_dir / 'results.json'}")
    names = selected_suites(config.suites, config.suite)
    if not names and config.prompts is None:
        print(
            "westwind: eval: no prompts and the suites are off (eval.suites.enabled); run one with --suite NAME"
        )
    with exit_on_user_error():
        runs = {"mt_bench": mt_bench.run, "arena_hard": arena_hard.run}
        scores = {name: runs[name](recipe, config.suites, config.model, out_dir / name) for name in names}
    for name, result in scores.items():
        print(f"westwind: {name}: score {result.get('score')} -> {out_dir / name / 'scores.json'}")
    if config.suite is not None:  # run alone, outside `westwind run`, which writes the report itself
        from westwind.report import write_report
        from westwind.stages import STAGES

        report = write_report(recipe.output_dir, {stage: recipe.stage_dir(stage) for stage in STAGES})
        print(f"westwind: report: {report}")


def cli(argv: list[str]) -> None:
    stage_cli("eval", argv, __doc__, main)


if __name__ == "__main__":
    cli(sys.argv[1:])
