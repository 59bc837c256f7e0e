"""dDPO: Direct Preference Optimization from the dSFT model with TRL's DPOTrainer.

    accelerate launch scripts/run_dpo.py recipes/zephyr-7b.yaml [--beta 0.05] [--model.use_peft true]
    accelerate launch -m westwind.stages.dpo recipes/zephyr-7b.yaml       # the same, from an installed package

The policy starts from `dpo.model_name_or_path` (default @sft); the reference is that dSFT model in
every mode (see westwind.training.models.dpo_policy).
"""

from __future__ import annotations

import argparse
import sys

from westwind.errors import exit_on_user_error
from westwind.recipe.core import Recipe
from westwind.recipe.usage import make_parser as usage_parser
from westwind.recipe.usage import stage_cli


def make_parser() -> argparse.ArgumentParser:
    return usage_parser("dpo", __doc__)


def main(recipe: Recipe) -> None:
    """Train the dDPO model of a recipe that passed the dpo preflight."""
    from westwind.training import data  # heavy (torch, TRL): loaded after the recipe is checked
    from westwind.training import trainer as training

    config, stage = recipe.dpo, recipe.dpo_data
    training.setup(config)
    with exit_on_user_error():
        policy_path, datasets = data.dpo_inputs(recipe)
        config_hash, checkpoint = training.start(recipe, "dpo")
        with config.main_process_first(desc="dataset"):  # rank 0 builds the cache first
            dataset = data.dpo_dataset(datasets, stage.test_split_size, config.seed, stage.drop_invalid_rows)
        trainer = training.dpo_trainer(recipe, dataset, policy_path, config_hash)
    training.train(trainer, recipe, "dpo", config_hash, checkpoint)
    trainer.end()


def cli(argv: list[str]) -> None:
    stage_cli("dpo", argv, __doc__, main)


if __name__ == "__main__":
    cli(sys.argv[1:])
