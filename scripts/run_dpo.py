"""dDPO: Direct Preference Optimization from the dSFT model with TRL's DPOTrainer.

    accelerate launch scripts/run_dpo.py recipes/zephyr-7b.yaml [--beta 0.05] [--model.use_peft true]

The policy starts from `dpo.model_name_or_path` (default @sft); the reference is that dSFT model in
every mode (see westwind.models.dpo_policy).
"""

from __future__ import annotations

import sys
from pathlib import Path

from westwind.recipe import RecipeError, exit_on_bad_input, load_recipe


def main(argv: list[str]) -> None:
    from trl import DPOTrainer

    from westwind import data, models, training

    with exit_on_bad_input():
        if not argv or argv[0].startswith("-"):
            raise RecipeError("(command line)", "RECIPE", "usage: run_dpo.py RECIPE [--key value ...]")
        recipe = load_recipe(argv[0], argv[1:], stage="dpo")
        if recipe.dpo is None:
            raise RecipeError(recipe.path, "dpo", "the recipe has no dpo section")
        config, stage = recipe.dpo, recipe.dpo_data
        policy_path = recipe.resolve_reference(stage.model_name_or_path)
        if not Path(policy_path).exists() and stage.model_name_or_path.startswith("@"):
            raise RecipeError(
                recipe.path, "dpo.model_name_or_path", f"{policy_path} not found: run that stage first"
            )
        configs = [_resolved(recipe, dataset) for dataset in stage.datasets or [_default_dataset()]]
        training.setup(config)
        dataset = data.dpo_dataset(configs, stage.test_split_size, config.seed, stage.drop_invalid_rows)

    tokenizer = models.load_tokenizer(policy_path, recipe.model)
    merged_dir = Path(config.output_dir) / "sft-merged"
    model, peft_config = models.dpo_policy(policy_path, recipe.model, tokenizer, merged_dir)
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset["train"],
        eval_dataset=dataset.get("test") if config.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.train(resume_from_checkpoint=training.checkpoint_to_resume(config))
    training.finish(trainer, recipe, "dpo")
    trainer.end()


def _default_dataset():
    from trl.scripts.utils import DatasetConfig

    return DatasetConfig(path="@aift")


def _resolved(recipe, dataset):
    import dataclasses

    path = recipe.resolve_reference(dataset.path)
    if dataset.path.startswith("@") and not Path(path).exists():
        raise RecipeError(
            recipe.path, "dpo.datasets", f"{dataset.path} -> {path} not found: run that stage first"
        )
    return dataclasses.replace(dataset, path=path)


if __name__ == "__main__":
    main(sys.argv[1:])
