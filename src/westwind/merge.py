"""`westwind merge RECIPE [--stage sft|dpo] [--out DIR] [--dtype bfloat16] [--push-to-hub REPO]`:
a standalone model (safetensors, tokenizer with its chat template, a model card) from a trained stage.

An adapter stage (LoRA or QLoRA) is merged into its base loaded *unquantized* in `--dtype`: a QLoRA adapter is
never merged into 4-bit weights (rounding the merged weights back to 4 bits would lose the adapter's update).
A full-model stage is copied as it is. Nothing is pushed unless `--push-to-hub` names a repository.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from westwind.errors import RecipeError, exit_on_user_error
from westwind.recipe.core import Recipe, load_recipe

MERGEABLE_STAGES = ("sft", "dpo", "rm")
# The files of a full model worth shipping; optimizer states, trainer pickles and checkpoints stay behind.
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".jinja", ".txt", ".model", ".tiktoken")
NOT_SHIPPED = ("trainer_state.json", "adapter_config.json", ".westwind-stage.json")
DEFAULT_DTYPE = "bfloat16"


def merged_model(adapter_dir: Path, model_args, dtype: str, sequence_classification: bool = False):
    """The adapter merged into its base loaded unquantized in `dtype`, and the tokenizer it was trained with."""
    from peft import PeftModel

    from westwind.training import models  # heavy (torch, transformers): loaded only when merging

    base_path = models.adapter_base(adapter_dir)
    unquantized = dataclasses.replace(model_args, dtype=dtype, load_in_4bit=False, load_in_8bit=False)
    tokenizer = models.load_tokenizer(str(adapter_dir), unquantized)
    if sequence_classification:
        from transformers import AutoModelForSequenceClassification

        base = AutoModelForSequenceClassification.from_pretrained(
            base_path, num_labels=1, **models.model_init_kwargs(base_path, unquantized, quantize=False)
        )
        base.config.pad_token_id = tokenizer.pad_token_id
    else:
        base = models.load_causal_lm(base_path, unquantized, tokenizer, quantize=False)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload(), tokenizer


def merge_adapter(
    adapter_dir: Path, out_dir: Path, model_args, dtype: str, sequence_classification: bool = False
) -> None:
    """Merge `adapter_dir` into its unquantized base and save model + tokenizer to `out_dir` (written to a
    staging folder first, so `out_dir` is either the old result or the whole new one)."""
    merged, tokenizer = merged_model(adapter_dir, model_args, dtype, sequence_classification)
    staging = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging)  # safetensors (transformers 5 writes nothing else)
    tokenizer.save_pretrained(staging)
    _replace_dir(staging, out_dir)


def copy_full_model(stage_dir: Path, out_dir: Path) -> None:
    """A full-model stage needs no merge: its model, tokenizer and recipe copy, without checkpoints."""
    staging = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in sorted(stage_dir.iterdir()):
        if path.is_file() and path.suffix in (*MODEL_FILE_SUFFIXES, ".yaml") and path.name not in NOT_SHIPPED:
            shutil.copy2(path, staging / path.name)
    _replace_dir(staging, out_dir)


def _replace_dir(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        print(f"westwind: replacing {out_dir}")
        shutil.rmtree(out_dir)
    staging.rename(out_dir)


def write_model_card(out_dir: Path, recipe: Recipe, stage: str, how: str) -> None:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=recipe.model.model_name_or_path,
        library_name="transformers",
        tags=["westwind", f"westwind-{stage}", "merged" if how == "merged" else stage],
    )
    body = (
        f"# {out_dir.name}\n\n"
        f"A standalone model from the `{stage}` stage of the westwind recipe `{recipe.path.name}` "
        f"(output `{recipe.stage_dir(stage)}`), base model `{recipe.model.model_name_or_path}`.\n\n"
        + (
            "The stage's adapter was merged into the base model loaded unquantized "
            f"in `{model_dtype(out_dir)}` with `westwind merge`.\n"
            if how == "merged"
            else "The stage trained the full model; `westwind merge` copied it without re-merging.\n"
        )
        + "\nThe tokenizer carries the chat template the model was trained with.\n"
    )
    ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(out_dir / "README.md")


def model_dtype(model_dir: Path) -> str:
    from westwind.io import read_json

    config = read_json(model_dir / "config.json")
    return str(config.get("dtype") or config.get("torch_dtype"))


def push(out_dir: Path, repo_id: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(out_dir))
    print(f"westwind: pushed {out_dir} to https://huggingface.co/{repo_id}")


def merge_stage(recipe: Recipe, stage: str, out_dir: Path, dtype: str) -> str:
    """Merge or copy `stage`'s output into `out_dir`; returns "merged" or "copied"."""
    from westwind.training.models import is_adapter_dir

    stage_dir = recipe.stage_dir(stage)
    if is_adapter_dir(stage_dir):
        merge_adapter(stage_dir, out_dir, recipe.model, dtype, sequence_classification=stage == "rm")
        how = "merged"
    else:
        copy_full_model(stage_dir, out_dir)
        how = "copied"
    write_model_card(out_dir, recipe, stage, how)
    return how


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="westwind merge", description=__doc__)
    parser.add_argument("recipe", type=Path)
    parser.add_argument(
        "--stage", choices=MERGEABLE_STAGES, help="default: dpo when the recipe has it, else sft"
    )
    parser.add_argument("--out", type=Path, help="default: <output_dir>/<stage>-merged")
    parser.add_argument(
        "--dtype", help=f"the merged weights' dtype (default: model.dtype, else {DEFAULT_DTYPE})"
    )
    parser.add_argument("--push-to-hub", metavar="REPO", help="also upload the result (never by default)")
    return parser


def resolve_args(args: argparse.Namespace, overrides: list[str]) -> tuple[Recipe, str, Path, str]:
    """The recipe, stage, output folder and dtype; bad input raises RecipeError before anything loads."""
    recipe = load_recipe(args.recipe, overrides)
    if recipe.rounds.count > 1 and "--round" not in overrides:  # iterative dDPO: the last round, as @dpo
        recipe = load_recipe(args.recipe, [*overrides, "--round", str(recipe.rounds.count)])
    stage = args.stage or ("dpo" if recipe.dpo is not None else "sft")
    if getattr(recipe, stage, None) is None:
        raise RecipeError(recipe.path, stage, f"the recipe has no {stage} section to merge")
    stage_dir = recipe.stage_dir(stage)
    if not (stage_dir / "config.json").exists() and not (stage_dir / "adapter_config.json").exists():
        raise RecipeError(
            recipe.path, stage, f"{stage_dir} holds no trained model: run the {stage} stage first"
        )
    dtype = args.dtype or recipe.model.dtype
    if dtype in (None, "auto"):
        dtype = DEFAULT_DTYPE
    return recipe, stage, args.out or recipe.output_dir / f"{stage}-merged", dtype


def main(argv: list[str]) -> None:
    args, overrides = make_parser().parse_known_args(argv)
    with exit_on_user_error():
        recipe, stage, out_dir, dtype = resolve_args(args, overrides)
    how = merge_stage(recipe, stage, out_dir, dtype)
    print(f"westwind: {stage} {how} into {out_dir}")
    if args.push_to_hub:
        push(out_dir, args.push_to_hub)
