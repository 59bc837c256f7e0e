"""What both training stages do around TRL's trainers: resume, save, card, push."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from transformers import set_seed

from westwind import io, models
from westwind.recipe import Recipe

logger = logging.getLogger(__name__)
RECIPE_COPY = "westwind_recipe.yaml"


def setup(config) -> None:
    """Logging and seeds for a stage: TRL's config carries the seed and log level."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(config.seed)


def sft_trainer(recipe: Recipe, dataset):
    """TRL's SFTTrainer on the recipe's base model (full, LoRA or QLoRA)."""
    from trl import SFTTrainer

    recipe.sft.packing = models.sft_packing(recipe.sft.packing, recipe.model.attn_implementation)
    tokenizer = models.load_tokenizer(recipe.model.model_name_or_path, recipe.model)
    model, peft_config = models.sft_model(recipe.model, tokenizer)
    return _trainer(SFTTrainer, recipe.sft, model, tokenizer, dataset, peft_config)


def dpo_trainer(recipe: Recipe, dataset, policy_path: str):
    """TRL's DPOTrainer whose policy and reference both start as the dSFT model (see models.dpo_policy)."""
    from trl import DPOTrainer

    tokenizer = models.load_tokenizer(policy_path, recipe.model)
    merged_dir = Path(recipe.dpo.output_dir) / "sft-merged"
    model, peft_config = models.dpo_policy(policy_path, recipe.model, tokenizer, merged_dir)
    trainer = _trainer(DPOTrainer, recipe.dpo, model, tokenizer, dataset, peft_config)
    models.uniform_dtype_for_fsdp_qlora(trainer.model, recipe.model)  # after TRL adds its "ref" adapter
    return trainer


def _trainer(trainer_cls, config, model, tokenizer, dataset, peft_config):
    return trainer_cls(
        model=model,
        args=config,
        train_dataset=dataset["train"],
        eval_dataset=dataset.get("test") if config.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def checkpoint_to_resume(config) -> str | None:
    """An explicit resume_from_checkpoint wins; otherwise the newest complete checkpoint in output_dir, if any.

    transformers writes trainer_state.json last, so a run killed while saving leaves a newer checkpoint without
    a readable one; resuming from it would crash, so it is skipped (and said).
    """
    if config.resume_from_checkpoint:
        return config.resume_from_checkpoint
    for checkpoint in io.checkpoints(Path(config.output_dir)):
        if io.is_complete_checkpoint(checkpoint):
            print(f"westwind: resuming from {checkpoint}")
            return str(checkpoint)
        print(f"westwind: ignoring incomplete {checkpoint} (the run stopped while saving it)")
    return None


def finish(trainer, recipe: Recipe, stage: str) -> None:
    """Save the model and tokenizer (with its chat template), a model card naming the recipe, and the recipe."""
    config = trainer.args
    output_dir = Path(config.output_dir)
    save_model(trainer, output_dir)
    trainer.save_state()  # trainer_state.json beside the model: the report's loss curves
    if trainer.accelerator.is_main_process:
        shutil.copyfile(recipe.path, output_dir / RECIPE_COPY)
        trainer.create_model_card(model_name=output_dir.name, tags=["westwind", f"westwind-{stage}", stage])
        _note_recipe_in_card(output_dir / "README.md", recipe, stage)
        processes = trainer.accelerator.num_processes
        trainer.accelerator.print(
            f"westwind: {stage} model saved to {output_dir} (trained on {processes} process(es))"
        )
    if config.push_to_hub:
        trainer.push_to_hub()
    trainer.accelerator.wait_for_everyone()


def save_model(trainer, output_dir: Path) -> None:
    """The trainer's own save, made to work under FSDP.

    transformers writes an FSDP model only from a full state dict (SHARDED_STATE_DICT, fsdp_qlora.yaml's
    checkpoint format, saves no model at all), and PEFT cannot pick the adapter out of it while FSDP's wrappers
    rename the modules, so an FSDP adapter is saved from the gathered state dict (models.save_adapter).
    """
    if not trainer.is_fsdp_enabled:
        trainer.save_model(str(output_dir))
        return
    trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not hasattr(model, "peft_config"):
        trainer.save_model(str(output_dir))
        return
    state_dict = trainer.accelerator.get_state_dict(trainer.model)  # a collective: every rank takes part
    if trainer.accelerator.is_main_process:
        models.save_adapter(model, state_dict, output_dir)
        trainer.processing_class.save_pretrained(output_dir)


def _note_recipe_in_card(card: Path, recipe: Recipe, stage: str) -> None:
    text = card.read_text() if card.exists() else ""
    note = (
        f"\n\n## westwind\n\nTrained by the `{stage}` stage of the westwind recipe `{recipe.path.name}` "
        f"(copied beside this card as `{RECIPE_COPY}`), base model `{recipe.model.model_name_or_path}`.\n"
    )
    card.write_text(text + note)
