"""Reward model: TRL's RewardTrainer on preference pairs (default: the AIFT pairs), as InstructGPT trains one.

    accelerate launch scripts/run_rm.py recipes/zephyr-7b.yaml [--learning_rate 1e-5] [--use_peft true]
    accelerate launch -m westwind.stages.rm recipes/zephyr-7b.yaml       # the same, from an installed package

Starts from `rm.model_name_or_path` (default @sft; an adapter is merged into its base first), full or LoRA
(`rm.use_peft`, default model.use_peft). The output `<output_dir>/rm` is always a standalone
AutoModelForSequenceClassification (a LoRA reward model is merged, its adapter kept in `rm/adapter`), so it
works anywhere a model path does, e.g. `judge: {kind: reward_model, model: "@rm"}` in aift or eval.
`rm/metrics.json` (written last) holds its pairwise accuracy on the held-out pairs, scored by that judge.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from westwind.errors import exit_on_user_error
from westwind.recipe.core import Recipe
from westwind.recipe.usage import make_parser as usage_parser
from westwind.recipe.usage import stage_cli

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def reward_model_args(recipe: Recipe):
    """The recipe's model options with the rm stage's own use_peft; quantized (QLoRA) only with an adapter."""
    use_peft = recipe.model.use_peft if recipe.rm_data.use_peft is None else recipe.rm_data.use_peft
    quantized = use_peft and (recipe.model.load_in_4bit or recipe.model.load_in_8bit)
    return dataclasses.replace(
        recipe.model,
        use_peft=use_peft,
        load_in_4bit=quantized and recipe.model.load_in_4bit,
        load_in_8bit=False,
    )


def load_reward_model(start_path: str, model_args, tokenizer, merged_dir: Path):
    """A one-output sequence classifier on the starting model (its head is new), and the PEFT config."""
    from transformers import AutoModelForSequenceClassification
    from trl import get_peft_config

    from westwind.training import models

    if models.is_adapter_dir(start_path):  # a LoRA dSFT model: its adapter merged into the unquantized base
        start_path = models.merge_adapter(start_path, model_args, tokenizer, merged_dir)
    kwargs = models.model_init_kwargs(start_path, model_args, quantize=model_args.use_peft)
    model = AutoModelForSequenceClassification.from_pretrained(start_path, num_labels=1, **kwargs)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        peft_config.task_type = "SEQ_CLS"  # PEFT then trains and saves the new `score` head in full
    return model, peft_config


def reward_trainer(recipe: Recipe, dataset, start_path: str, config_hash: str | None = None):
    from trl import RewardTrainer

    from westwind.training import models
    from westwind.training import trainer as training

    model_args = reward_model_args(recipe)
    tokenizer = models.load_tokenizer(start_path, model_args)
    merged_dir = Path(recipe.rm.output_dir) / "sft-merged"
    model, peft_config = load_reward_model(start_path, model_args, tokenizer, merged_dir)
    return training.stage_trainer(
        RewardTrainer, recipe, "rm", model, tokenizer, dataset, peft_config, config_hash
    )


def make_standalone(recipe: Recipe, tokenizer) -> None:
    """A LoRA reward model becomes a full one (judges load a plain model): its adapter moves to `adapter/`
    and is merged into the unquantized base in place of it."""
    from westwind import merge

    output_dir = Path(recipe.rm.output_dir)
    if not (output_dir / "adapter_config.json").exists():
        return
    adapter_dir = output_dir / "adapter"
    adapter_dir.mkdir(exist_ok=True)
    for name in ADAPTER_FILES:
        (output_dir / name).replace(adapter_dir / name)
    tokenizer.save_pretrained(adapter_dir)  # so the adapter folder loads on its own
    dtype = recipe.model.dtype if recipe.model.dtype not in (None, "auto") else merge.DEFAULT_DTYPE
    model, tokenizer = merge.merged_model(adapter_dir, recipe.model, dtype, sequence_classification=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)


def pairwise_accuracy(model_dir: Path, pairs, dtype: str | None) -> dict[str, Any]:
    """Held-out pairs the saved reward model ranks right (chosen above rejected), scored by the reward_model
    judge that AIFT and eval use; a tie counts as wrong. With a Wilson 95% interval."""
    from westwind.aift.config import JudgeConfig
    from westwind.endpoints import resolve_model
    from westwind.evaluation.significance import wilson_interval
    from westwind.judges import JudgeItem, make_judge

    config = JudgeConfig(kind="reward_model", model=str(model_dir), dtype=dtype)
    judge = make_judge(config, resolve_model(config, None))
    items = [
        JudgeItem(str(i), row["prompt"], [row["chosen"][0]["content"], row["rejected"][0]["content"]])
        for i, row in enumerate(pairs)
    ]
    margins = [judgment.ratings[0].score - judgment.ratings[1].score for judgment in judge.judge(items)]
    judge.close()
    correct = sum(1 for m in margins if m > 0)
    ties = sum(1 for m in margins if m == 0 or math.isnan(m))
    low, high = wilson_interval(correct, len(margins))
    return {
        "held_out_pairs": len(margins),
        "correct": correct,
        "ties": ties,
        "accuracy": correct / len(margins) if margins else None,
        "ci95": [low, high],
        "mean_margin": sum(margins) / len(margins) if margins else None,
    }


def write_metrics(recipe: Recipe, dataset) -> dict[str, Any]:
    from westwind.io import atomic_write_json

    output_dir = Path(recipe.rm.output_dir)
    held_out = dataset.get("test")
    metrics: dict[str, Any] = {"train_pairs": len(dataset["train"])}
    if held_out is not None and len(held_out):
        metrics.update(pairwise_accuracy(output_dir, held_out, recipe.model.dtype))
        low, high = metrics["ci95"]
        print(
            f"westwind: rm held-out accuracy {metrics['accuracy']:.3f} "
            f"(95% CI {low:.3f}-{high:.3f}, {metrics['held_out_pairs']} pairs)"
        )
    else:
        print("westwind: rm has no held-out pairs (rm.test_split_size is 0): no accuracy to report")
    atomic_write_json(output_dir / "metrics.json", metrics)
    return metrics


def finish_on_main_process(recipe: Recipe, tokenizer, dataset) -> dict[str, Any]:
    """Rank 0 alone merges a LoRA reward model and scores the held-out pairs. Both load models, which must
    not happen under ZeRO-3's partitioned loading here: it gathers from ranks that are not loading."""
    from westwind.training import models

    with models.without_zero3_init():
        make_standalone(recipe, tokenizer)
        return write_metrics(recipe, dataset)


def make_parser() -> argparse.ArgumentParser:
    return usage_parser("rm", __doc__)


def main(recipe: Recipe) -> None:
    """Train the reward model of a recipe that passed the rm preflight, then score its held-out pairs."""
    from westwind.training import data  # heavy (torch, TRL): loaded after the recipe is checked
    from westwind.training import trainer as training

    config, extras = recipe.rm, recipe.rm_data
    training.setup(config)
    with exit_on_user_error():
        start_path, datasets = data.dpo_inputs(recipe, "rm")
        config_hash, checkpoint = training.start(recipe, "rm")
        with config.main_process_first(desc="dataset"):  # rank 0 builds the cache first
            dataset = data.dpo_dataset(
                datasets, extras.test_split_size, config.seed, extras.drop_invalid_rows
            )
        trainer = reward_trainer(recipe, dataset, start_path, config_hash)
    training.train(trainer, recipe, "rm", config_hash, checkpoint)
    if trainer.accelerator.is_main_process:
        finish_on_main_process(recipe, trainer.processing_class, dataset)
    trainer.accelerator.wait_for_everyone()
    trainer.end()


def cli(argv: list[str]) -> None:
    stage_cli("rm", argv, __doc__, main)


if __name__ == "__main__":
    cli(sys.argv[1:])
