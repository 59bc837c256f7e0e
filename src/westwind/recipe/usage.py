"""`--help` for the stages: every key a recipe section takes, with its one-line help, generated from the config
dataclasses' field metadata (TRL's configs carry `metadata={"help": ...}`), never from a hand-kept copy."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from typing import Any

from westwind.errors import RecipeError, RunError, exit_on_user_error
from westwind.recipe import schema
from westwind.recipe.core import SECTION_CLASSES, Recipe, load_recipe
from westwind.recipe.preflight import stage_recipe

HELP_WIDTH = 100


def make_parser(stage: str, description: str) -> argparse.ArgumentParser:
    """The stage's parser: RECIPE plus `--key value` overrides; the epilog lists the section's keys."""
    parser = argparse.ArgumentParser(
        prog=f"westwind {stage}",
        description=description,
        epilog=keys_help(stage),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("recipe", help="the recipe YAML")
    return parser


def keys_help(stage: str) -> str:
    lines = [
        f"overrides: --KEY VALUE sets {stage}.KEY; --SECTION.KEY VALUE sets any other section's key.",
        f"\n{stage}: keys",
    ]
    for cls in SECTION_CLASSES[stage]:
        lines += _field_lines(cls, prefix="")
    lines.append("\nmodel: keys (--model.KEY)")
    lines += _field_lines(SECTION_CLASSES["model"][0], prefix="")
    return "\n".join(lines)


def _field_lines(cls: type, prefix: str, depth: int = 0) -> list[str]:
    lines = []
    for field in dataclasses.fields(cls):
        if not field.init or field.name.startswith("_"):
            continue
        name = f"{prefix}{field.name}"
        renamed = schema.DEPRECATED_KEYS.get(field.name)
        lines.append(f"  {name:<34} {f'deprecated: write {renamed}' if renamed else _one_line(field)}")
        nested = _nested_dataclass(cls, field)
        if nested is not None and depth < 2:
            lines += _field_lines(nested, prefix=f"{name}.", depth=depth + 1)
    return lines


def _one_line(field: dataclasses.Field) -> str:
    text = " ".join(str(field.metadata.get("help", "")).split())
    if not text:
        text = f"({_type_name(field.type)})"
    return text if len(text) <= HELP_WIDTH else text[: HELP_WIDTH - 3].rstrip() + "..."


def _type_name(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def _nested_dataclass(cls: type, field: dataclasses.Field) -> type | None:
    """The dataclass a field holds (directly, optionally, or as list items), for nested keys."""
    try:
        annotation = typing.get_type_hints(cls).get(field.name)
    except Exception:  # forward references TRL's configs cannot resolve here: no nesting shown
        return None
    stack = [annotation]
    while stack:
        current = stack.pop()
        if dataclasses.is_dataclass(current):
            return current
        stack += list(typing.get_args(current))
    return None


def stage_cli(stage: str, argv: list[str], description: str, main: Callable[[Recipe], object]) -> None:
    """A stage's command line: `--help`, or the recipe checked by the stage's preflight, then `main(recipe)`."""
    if any(arg in ("-h", "--help") for arg in argv):
        make_parser(stage, description).print_help()
        return
    with exit_on_user_error():
        recipe = stage_recipe(argv, stage)
    main(recipe)


# ---------------------------------------------------------------- sharded stages (aift, distill)


def add_shard_arguments(parser: argparse.ArgumentParser, work: str) -> argparse._MutuallyExclusiveGroup:
    """--shard i/N | --merge (more modes may join the returned group), and --no-progress."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--shard", help=f"i/N: process only this deterministic slice of the {work}")
    mode.add_argument("--merge", action="store_true", help="build the dataset from all shards' results")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return mode


def sharded_stage_recipe(
    stage: str, recipe_path: str, overrides: list[str], shard: str | None, preflight_needed: bool
) -> tuple[Recipe, tuple[int, int]]:
    """The recipe (preflighted unless only journals are assembled) and the shard (index, count)."""
    from westwind.aift.prompts import parse_shard  # lazy: datasets comes with it

    if preflight_needed:
        recipe = stage_recipe([recipe_path, *overrides], stage)
    else:
        recipe = load_recipe(recipe_path, overrides, stage=stage)
        if getattr(recipe, stage) is None:
            raise RecipeError(recipe.path, stage, f"the recipe has no {stage} section")
    try:
        return recipe, parse_shard(shard) if shard else (0, 1)
    except ValueError as error:
        raise RecipeError("(command line)", "--shard", str(error)) from None


def shard_done(stage: str, counts: dict, shard: tuple[int, int], unit: str) -> bool:
    """Say what a shard did; True when the shards should now be merged (a single, complete run)."""
    index, count = shard
    print(f"shard {index}/{count}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if count > 1:
        print(f"when every shard is done: westwind {stage} RECIPE --merge")
        return False
    if counts["unfinished"]:
        raise RunError(f"{counts['unfinished']} {unit}(s) failed; rerun to retry them")
    return True
