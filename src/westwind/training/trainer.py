"""What both training stages do around TRL's trainers: resume, save, card, push."""

from __future__ import annotations

import dataclasses
import logging
import shlex
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback, set_seed
from transformers.trainer_callback import ExportableState

from westwind import identity, io
from westwind.errors import RecipeError
from westwind.recipe.core import Recipe
from westwind.training import models
from westwind.training.chat_templates import fold_system_turns

logger = logging.getLogger(__name__)
RECIPE_COPY = "westwind_recipe.yaml"


def setup(config) -> None:
    """Logging and seeds for a stage: TRL's config carries the seed and log level."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(config.seed)


class StageIdentity(TrainerCallback, ExportableState):
    """Stores the stage's config hash in every checkpoint's trainer_state.json (written last, atomically with
    the rest of the state), so a checkpoint always says which inputs made it."""

    def __init__(self, config_hash: str):
        self.config_hash = config_hash

    def state(self) -> dict[str, Any]:
        return {"args": {"config_hash": self.config_hash}, "attributes": {}}


def checkpoint_hash(checkpoint: Path) -> str | None:
    state = io.read_json(Path(checkpoint) / io.TRAINER_STATE) or {}
    stored = (state.get("stateful_callbacks") or {}).get(StageIdentity.__name__) or {}
    return (stored.get("args") or {}).get("config_hash") if isinstance(stored, dict) else None


def absolute_model(model_args):
    """The model section with a local base path made absolute: an adapter's saved base must not depend on
    where training ran."""
    path = Path(model_args.model_name_or_path).expanduser()
    if not path.exists():
        return model_args  # a hub id
    return dataclasses.replace(model_args, model_name_or_path=str(path.resolve()))


def sft_trainer(recipe: Recipe, dataset, config_hash: str | None = None):
    """TRL's SFTTrainer on the recipe's base model (full, LoRA or QLoRA)."""
    from trl import SFTTrainer

    recipe.sft.packing = models.sft_packing(recipe.sft.packing, recipe.model.attn_implementation)
    model_args = absolute_model(recipe.model)
    tokenizer = models.load_tokenizer(model_args.model_name_or_path, model_args)
    model, peft_config = models.sft_model(model_args, tokenizer, mixed_precision(recipe.sft))
    dataset = folded(dataset, tokenizer, "messages")
    return stage_trainer(SFTTrainer, recipe, "sft", model, tokenizer, dataset, peft_config, config_hash)


def dpo_trainer(recipe: Recipe, dataset, policy_path: str, config_hash: str | None = None):
    """TRL's DPOTrainer whose policy and reference both start as the dSFT model (see models.dpo_policy)."""
    from trl import DPOTrainer

    tokenizer = models.load_tokenizer(policy_path, recipe.model)
    merged_dir = Path(recipe.dpo.output_dir) / "sft-merged"
    model, peft_config = models.dpo_policy(
        policy_path, recipe.model, tokenizer, merged_dir, mixed_precision(recipe.dpo)
    )
    dataset = folded(dataset, tokenizer, "prompt")
    reference = None
    if recipe.round > 1 and recipe.rounds.reference == "sft":  # iterative dDPO with a fixed reference
        sft_path = str(Path(recipe.resolve_reference("@sft")).resolve())
        reference = models.reference_model(
            sft_path, recipe.model, tokenizer, merged_dir, mixed_precision(recipe.dpo)
        )
    trainer = stage_trainer(
        DPOTrainer, recipe, "dpo", model, tokenizer, dataset, peft_config, config_hash, ref_model=reference
    )
    models.uniform_dtype_for_fsdp_qlora(trainer.model, recipe.model)  # after TRL adds its "ref" adapter
    return trainer


def mixed_precision(config) -> bool:
    """Whether the stage computes under bf16/fp16 autocast (accelerate's mixed precision)."""
    return bool(config.bf16 or config.fp16)


def folded(dataset, tokenizer, column: str):
    """Every split with system turns folded into the first user turn where the template refuses them."""
    return type(dataset)(
        {name: fold_system_turns(split, tokenizer, column) for name, split in dataset.items()}
    )


def stage_trainer(
    trainer_cls, recipe: Recipe, stage: str, model, tokenizer, dataset, peft_config, config_hash, **extra
):
    """TRL's trainer for a stage, counting the rows TRL drops and storing the config hash in every checkpoint."""
    config = getattr(recipe, stage)
    try:
        return counting(trainer_cls)(
            **extra,
            model=model,
            args=config,
            train_dataset=dataset["train"],
            eval_dataset=dataset.get("test") if config.eval_strategy != "no" else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[StageIdentity(config_hash)] if config_hash else None,
        )
    except NoRowsLeft as error:
        raise RecipeError(
            recipe.path,
            f"{stage}.max_length",
            f"{config.max_length} is too small for every one of the {error.rows} {error.split} rows "
            f"({DROP_REASONS[stage]}); raise it{DROP_HINTS[stage]}",
        ) from None


# ---------------------------------------------------------------- the output folder


def start(recipe: Recipe, stage: str) -> tuple[str, str | None]:
    """The stage's config hash, and the checkpoint to resume from once output_dir is known to hold only this
    run's work (bad input: RecipeError). Before any data or model loads."""
    config = getattr(recipe, stage)
    config_hash = identity.stage_hashes(recipe)[stage]
    overwrite = getattr(recipe, f"{stage}_data").overwrite_output_dir
    with config.main_process_first(desc="output folder"):  # rank 0 clears (when asked) before the others look
        checkpoint = prepare_output_dir(recipe, stage, config_hash, overwrite)
    return config_hash, checkpoint


def train(trainer, recipe: Recipe, stage: str, config_hash: str, checkpoint: str | None) -> None:
    """Record the rows TRL dropped, claim output_dir for this run, train, save."""
    claim_output_dir(trainer.args, stage, config_hash)
    write_data_stats(trainer.args, count_dropped_rows(trainer, stage))
    trainer.train(resume_from_checkpoint=checkpoint)
    finish(trainer, recipe, stage)


def prepare_output_dir(recipe: Recipe, stage: str, config_hash: str, overwrite: bool) -> str | None:
    """Make sure output_dir holds nothing from another run, and pick the checkpoint to resume from.

    Outputs or checkpoints made under other inputs are refused with one line (or cleared when `overwrite`);
    `westwind run` clears them itself before starting the stage. Runs on every rank; only rank 0 clears.
    """
    config = getattr(recipe, stage)
    output_dir, key = Path(config.output_dir), f"{stage}.output_dir"
    if config.resume_from_checkpoint:
        _check_checkpoint(recipe, stage, Path(config.resume_from_checkpoint), config_hash)
        return config.resume_from_checkpoint
    problem = identity.foreign_outputs(output_dir, config_hash) or _foreign_checkpoint(
        output_dir, config_hash
    )
    if problem and not overwrite:
        raise RecipeError(
            recipe.path,
            key,
            f"{problem}; delete {output_dir}, rerun with --overwrite_output_dir true to clear it, "
            "or use `westwind run`, which clears it",
        )
    if problem and config.should_save:
        print(f"westwind: overwrite_output_dir: clearing {output_dir} ({problem})")
        identity.clear(output_dir)
    return checkpoint_to_resume(config)


def _foreign_checkpoint(output_dir: Path, config_hash: str) -> str | None:
    for checkpoint in io.checkpoints(output_dir):
        if io.is_complete_checkpoint(checkpoint) and checkpoint_hash(checkpoint) != config_hash:
            return f"{checkpoint} was made under other inputs (or by an older westwind)"
    return None


def _check_checkpoint(recipe: Recipe, stage: str, checkpoint: Path, config_hash: str) -> None:
    found = checkpoint_hash(checkpoint)
    if found != config_hash:
        made = "other inputs" if found else "unrecorded inputs"
        raise RecipeError(
            recipe.path,
            f"{stage}.resume_from_checkpoint",
            f"{checkpoint} was made under {made}, not this stage's config and data; it is never resumed from",
        )


def claim_output_dir(config, stage: str, config_hash: str) -> None:
    """Record that output_dir now holds this run's work; a finished-stage marker from before no longer holds."""
    if config.should_save:
        output_dir = Path(config.output_dir)
        (output_dir / io.STAGE_MARKER).unlink(missing_ok=True)
        identity.record_hash(output_dir, stage, config_hash)


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
            _say_if_nothing_left(config, checkpoint)
            return str(checkpoint)
        print(f"westwind: ignoring incomplete {checkpoint} (the run stopped while saving it)")
    return None


def _say_if_nothing_left(config, checkpoint: Path) -> None:
    """A checkpoint at or past the planned steps (max_steps, or the total the run planned from its epochs)."""
    state = io.read_json(checkpoint / io.TRAINER_STATE) or {}
    step, total = (
        state.get("global_step", 0),
        config.max_steps if config.max_steps > 0 else state.get("max_steps", 0),
    )
    if total > 0 and step >= total:
        print(
            f"westwind: {checkpoint.name} is at step {step} and max_steps is {total}: "
            "nothing is left to train; its weights are saved as the final model"
        )


def finish(trainer, recipe: Recipe, stage: str) -> None:
    """Save the model and tokenizer (with its chat template), a model card naming the recipe, and the recipe."""
    config = trainer.args
    output_dir = Path(config.output_dir)
    save_model(trainer, output_dir)
    trainer.save_state()  # trainer_state.json beside the model: the report's loss curves
    if trainer.accelerator.is_main_process:
        io.atomic_write_text(output_dir / RECIPE_COPY, resolved_recipe_text(recipe))
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
        f"(saved resolved beside this card as `{RECIPE_COPY}`), base model `{recipe.model.model_name_or_path}`"
        f"{_overrides_note(recipe)}.\n"
    )
    card.write_text(text + note)


def _overrides_note(recipe: Recipe) -> str:
    return f", command-line overrides `{shlex.join(recipe.overrides)}`" if recipe.overrides else ""


def resolved_recipe_text(recipe: Recipe) -> str:
    """The recipe as this run used it (overrides applied), headed by its source file and the overrides."""
    header = [f"# westwind: the recipe this model was trained with: {recipe.path.resolve()}"]
    header.append(
        f"# command-line overrides (applied below): {shlex.join(recipe.overrides)}"
        if recipe.overrides
        else "# command-line overrides: none"
    )
    return "\n".join(header) + "\n" + yaml.safe_dump(recipe.raw, sort_keys=False)


# ---------------------------------------------------------------- rows TRL drops

DROP_REASONS = {
    "sft": "no completion token left after truncation",
    "dpo": "the prompt alone fills max_length",
    "rm": "chosen or rejected is longer than max_length",
}
DROP_HINTS = {"sft": " or set truncation_mode: keep_end", "dpo": "", "rm": ""}


class NoRowsLeft(Exception):
    def __init__(self, split: str, rows: int):
        super().__init__(f"TRL dropped all {rows} {split} rows")
        self.split, self.rows = split, rows


def counting(trainer_cls: type) -> type:
    """TRL's trainer class, noting the rows its own dataset preparation keeps per split (TRL's filters decide
    which rows go), and stopping before anything (e.g. precomputed reference log-probs) meets an empty set."""

    class Counting(trainer_cls):
        def _prepare_dataset(self, dataset, *args, **kwargs):
            prepared = super()._prepare_dataset(dataset, *args, **kwargs)
            split = kwargs.get("dataset_name", args[-1])
            self.__dict__.setdefault("row_counts", {})[split] = (len(dataset), len(prepared))
            if len(prepared) == 0:  # training (or evaluating) on nothing fails deep inside TRL
                raise NoRowsLeft(split, len(dataset))
            return prepared

    Counting.__name__ = Counting.__qualname__ = trainer_cls.__name__
    return Counting


def count_dropped_rows(trainer, stage: str) -> dict[str, Any]:
    """The rows TRL dropped per split, printed with their share once, for the stage's data_stats.json.
    Packed splits are left out: packing truncates nothing and drops no row."""
    config = trainer.args
    stats: dict[str, Any] = {"max_length": config.max_length}
    if hasattr(config, "truncation_mode"):  # the reward trainer drops long rows; it has no truncation side
        stats["truncation_mode"] = config.truncation_mode
    packed = {"train": getattr(config, "packing", False)}
    packed["eval"] = packed["train"] if getattr(config, "eval_packing", None) is None else config.eval_packing
    for split, (rows, kept) in getattr(trainer, "row_counts", {}).items():
        if packed.get(split):
            continue
        stats[split] = {"rows": rows, "kept": kept, "dropped": rows - kept}
        if kept < rows:
            trainer.accelerator.print(
                f"westwind: {stage}: TRL dropped {rows - kept} of {rows} {split} row(s) ({(rows - kept) / rows:.1%}): "
                f"{DROP_REASONS[stage]} at max_length {config.max_length}"
            )
    return stats


def write_data_stats(config, stats: dict[str, Any]) -> None:
    if config.should_save:
        io.atomic_write_json(Path(config.output_dir) / identity.DATA_STATS, stats)
