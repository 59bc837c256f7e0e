"""dSFT: supervised fine-tuning on teacher-written dialogues with TRL's SFTTrainer.

accelerate launch scripts/run_sft.py recipes/zephyr-7b.yaml [--learning_rate 1e-5] [--model.lora_r 8]
accelerate launch -m westwind.stages.sft recipes/zephyr-7b.yaml       # the same, from an installed package
"""

from __future__ import annotations

import sys

from westwind.errors import exit_on_user_error
from westwind.recipe import load_stage_recipe


def main(argv: list[str]) -> None:
    from westwind import data, training  # heavy (torch, TRL): loaded after the recipe is checked

    with exit_on_user_error():
        recipe = load_stage_recipe(argv, "sft")
        config, stage = recipe.sft, recipe.sft_data
        training.setup(config)
        config_hash, checkpoint = training.start(recipe, "sft")
        with config.main_process_first(desc="dataset"):  # rank 0 builds the cache, the others read it
            dataset = data.sft_dataset(
                stage.datasets, stage.test_split_size, config.seed, stage.drop_invalid_rows
            )
        trainer = training.sft_trainer(recipe, dataset, config_hash)
    training.train(trainer, recipe, "sft", config_hash, checkpoint)
    trainer.end()


if __name__ == "__main__":
    main(sys.argv[1:])
