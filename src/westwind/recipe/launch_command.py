"""`westwind launch-check`: the recipe against the accelerate config it will be launched with, before a launch
(the checks themselves are in westwind.recipe.launch_check)."""

from __future__ import annotations

from westwind.errors import RecipeError, exit_on_user_error
from westwind.recipe.core import load_recipe
from westwind.recipe.launch_check import check_launch_compatibility, load_accelerate_config
from westwind.stages import STAGES

LAUNCH_USAGE = "usage: westwind launch-check RECIPE [ACCELERATE_CONFIG] [--stage STAGE [--key value ...]]"


def main(argv: list[str]) -> None:
    """`westwind launch-check RECIPE [ACCELERATE_CONFIG] [--stage STAGE OVERRIDES...]`: exit 2 with one line if
    the recipe and the launcher cannot work together. With --stage, the overrides are read as that stage reads
    them (`--beta 0.02` is dpo.beta for dpo); the stage runs its own preflight when it starts."""
    with exit_on_user_error():
        recipe_path, config_path, stage, overrides = parse_launch_command_line(argv)
        config = load_accelerate_config(config_path) if config_path else None
        recipe = load_recipe(recipe_path, overrides, stage=stage)
        check_launch_compatibility(recipe, config)
    print("ok: recipe and launcher are compatible")


def parse_launch_command_line(args: list[str]) -> tuple[str, str | None, str | None, list[str]]:
    """RECIPE, the accelerate config or None, the stage or None, and the stage's overrides."""
    positional = []
    while args and not args[0].startswith("-") and len(positional) < 2:
        positional, args = [*positional, args[0]], args[1:]
    stage = None
    if args[:1] == ["--stage"] and len(args) > 1:
        stage, args = args[1], args[2:]
    if not positional or (args and stage is None) or stage not in (None, *STAGES):
        raise RecipeError("(command line)", "RECIPE", LAUNCH_USAGE)
    return positional[0], positional[1] if len(positional) > 1 else None, stage, args
