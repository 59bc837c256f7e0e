"""dDPO: Direct Preference Optimization from the dSFT model with TRL's DPOTrainer.

    accelerate launch scripts/run_dpo.py recipes/zephyr-7b.yaml [--beta 0.05] [--model.use_peft true]
    accelerate launch -m westwind.stages.dpo recipes/zephyr-7b.yaml       # the same, from an installed package

The policy starts from `dpo.model_name_or_path` (default @sft); the reference is that dSFT model in
every mode (see westwind.models.dpo_policy).
"""

from __future__ import annotations

import argparse
import sys

from westwind.errors import exit_on_user_error
from westwind.preflight import stage_recipe
from westwind.usage import make_parser as usage_parser


def make_parser() -> argparse.ArgumentParser:
    return usage_parser("dpo", __doc__)


def main(argv: list[str]) -> None:
    if any(arg in ("-h", "--help") for arg in argv):
        make_parser().print_help()
        return
    from westwind import data, training  # heavy (torch, TRL): loaded after the recipe is checked

    with exit_on_user_error():
        recipe = stage_recipe(argv, "dpo")
        config = recipe.dpo
        policy_path, datasets = data.dpo_inputs(recipe)
        training.setup(config)
        stage = recipe.dpo_data
        with config.main_process_first(desc="dataset"):  # rank 0 builds the cache, the others read it
            dataset = data.dpo_dataset(datasets, stage.test_split_size, config.seed, stage.drop_invalid_rows)

    trainer = training.dpo_trainer(recipe, dataset, policy_path)
    trainer.train(resume_from_checkpoint=training.checkpoint_to_resume(config))
    training.finish(trainer, recipe, "dpo")
    trainer.end()


if __name__ == "__main__":
    main(sys.argv[1:])
