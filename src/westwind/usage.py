"""`--help` for the stages: every key a recipe section takes, with its one-line help, generated from the config
dataclasses' field metadata (TRL's configs carry `metadata={"help": ...}`), never from a hand-kept copy."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from typing import Any

from westwind.errors import exit_on_user_error
from westwind.preflight import stage_recipe
from westwind.recipe import SECTION_CLASSES, Recipe

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
        lines.append(f"  {name:<34} {_one_line(field)}")
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
