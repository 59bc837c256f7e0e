"""dSFT: supervised fine-tuning on teacher-written dialogues with TRL's SFTTrainer.

accelerate launch scripts/run_sft.py recipes/zephyr-7b.yaml [--learning_rate 1e-5] [--model.lora_r 8]
"""

from __future__ import annotations

import sys

from westwind.recipe import RecipeError, exit_on_bad_input, load_recipe


def main(argv: list[str]) -> None:
    from trl import SFTTrainer

    from westwind import data, models, training

    with exit_on_bad_input():
        if not argv or argv[0].startswith("-"):
            raise RecipeError("(command line)", "RECIPE", "usage: run_sft.py RECIPE [--key value ...]")
        recipe = load_recipe(argv[0], argv[1:], stage="sft")
        if recipe.sft is None:
            raise RecipeError(recipe.path, "sft", "the recipe has no sft section")
        config, stage = recipe.sft, recipe.sft_data
        training.setup(config)
        dataset = data.sft_dataset(
            stage.datasets, stage.test_split_size, config.seed, stage.drop_invalid_rows
        )

    tokenizer = models.load_tokenizer(recipe.model.model_name_or_path, recipe.model)
    model, peft_config = models.sft_model(recipe.model, tokenizer)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset["train"],
        eval_dataset=dataset.get("test") if config.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.train(resume_from_checkpoint=training.checkpoint_to_resume(config))
    training.finish(trainer, recipe, "sft")
    trainer.end()


if __name__ == "__main__":
    main(sys.argv[1:])
