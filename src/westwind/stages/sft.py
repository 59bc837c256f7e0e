"""dSFT: supervised fine-tuning on teacher-written dialogues with TRL's SFTTrainer.

accelerate launch scripts/run_sft.py recipes/zephyr-7b.yaml [--learning_rate 1e-5] [--model.lora_r 8]
accelerate launch -m westwind.stages.sft recipes/zephyr-7b.yaml       # the same, from an installed package
"""

from __future__ import annotations

import argparse
import sys

from westwind.errors import exit_on_user_error
from westwind.recipe.core import Recipe
from westwind.recipe.usage import make_parser as usage_parser
from westwind.recipe.usage import stage_cli


def make_parser() -> argparse.ArgumentParser:
    return usage_parser("sft", __doc__)


def main(recipe: Recipe) -> None:
    """Train the dSFT model of a recipe that passed the sft preflight."""
    from westwind.training import data  # heavy (torch, TRL): loaded after the recipe is checked
    from westwind.training import trainer as training

    config, stage = recipe.sft, recipe.sft_data
    training.setup(config)
    with exit_on_user_error():
        config_hash, checkpoint = training.start(recipe, "sft")
        with config.main_process_first(desc="dataset"):  # rank 0 builds the cache first
            datasets = data.resolved_datasets(recipe, stage.datasets)
            dataset = data.sft_dataset(datasets, stage.test_split_size, config.seed, stage.drop_invalid_rows)
        trainer = training.sft_trainer(recipe, dataset, config_hash)
    training.train(trainer, recipe, "sft", config_hash, checkpoint)
    trainer.end()


def cli(argv: list[str]) -> None:
    stage_cli("sft", argv, __doc__, main)


if __name__ == "__main__":
    cli(sys.argv[1:])
