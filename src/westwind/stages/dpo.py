"""dDPO: Direct Preference Optimization from the dSFT model with TRL's DPOTrainer.

    accelerate launch scripts/run_dpo.py recipes/zephyr-7b.yaml [--beta 0.05] [--model.use_peft true]
    accelerate launch -m westwind.stages.dpo recipes/zephyr-7b.yaml       # the same, from an installed package

The policy starts from `dpo.model_name_or_path` (default @sft); the reference is that dSFT model in
every mode (see westwind.models.dpo_policy).
"""

from __future__ import annotations

import sys

from westwind.errors import exit_on_user_error
from westwind.recipe import load_stage_recipe


def main(argv: list[str]) -> None:
    from westwind import data, training  # heavy (torch, TRL): loaded after the recipe is checked

    with exit_on_user_error():
        recipe = load_stage_recipe(argv, "dpo")
        config = recipe.dpo
        policy_path, datasets = data.dpo_inputs(recipe)
        training.setup(config)
        config_hash, checkpoint = training.start(recipe, "dpo")
        stage = recipe.dpo_data
        with config.main_process_first(desc="dataset"):  # rank 0 builds the cache, the others read it
            dataset = data.dpo_dataset(datasets, stage.test_split_size, config.seed, stage.drop_invalid_rows)
        trainer = training.dpo_trainer(recipe, dataset, policy_path, config_hash)
    training.train(trainer, recipe, "dpo", config_hash, checkpoint)
    trainer.end()


if __name__ == "__main__":
    main(sys.argv[1:])
