"""The `westwind` console: check, run, init-model, import-gguf, new-recipe."""

from __future__ import annotations

import importlib
import sys

from westwind.callables import load_callable
from westwind.stages import MODULES

USAGE = """usage: westwind COMMAND [ARGS]

commands:
  check RECIPE [--example N | --no-example] [--key value ...]   validate a recipe (no model loads), print each
                                   stage's resolved config and one row per training stage, token by token
  run RECIPE [--from S] [--to S]   run [distill ->] dSFT -> AIFT -> (rm) -> dDPO -> eval, skipping finished stages
  distill | sft | aift | rm | dpo | eval RECIPE [...]   one stage alone (python -m westwind.stages.<stage>)
  init-model --out DIR ...         build a tiny tokenizer + random-weight model from scratch (CPU demo)
  import-gguf FILE --out DIR       a GGUF checkpoint as a safetensors model folder (tokenizer, template, card)
  new-recipe --from R --model M --out PATH   fork a recipe for another base model
  launch-check RECIPE [ACCELERATE_CONFIG]    refuse broken combinations (e.g. QLoRA + ZeRO-3) before launch
  merge RECIPE [--stage S] [--out DIR] [--dtype D] [--push-to-hub REPO]   a standalone model from a stage
  chat MODEL_OR_RECIPE[@stage] [--once PROMPT]   talk to a model in the terminal (streams tokens)
"""

# Each command is a `module:function(argv)`; imported only when used, so `check` stays light.
COMMANDS = {
    "run": "westwind.pipeline:main",
    "init-model": "westwind.demo.init_model:main",
    "import-gguf": "westwind.training.gguf:main",
    "new-recipe": "westwind.recipe.new_recipe:main",
    "launch-check": "westwind.recipe.launch_command:main",
    "merge": "westwind.merge:main",
    "chat": "westwind.chat:main",
}


def run_stage(stage: str, argv: list[str]) -> None:
    """`westwind sft RECIPE ...` runs the stage module in this process, as `python -m westwind.stages.sft` would."""
    result = importlib.import_module(MODULES[stage]).cli(argv)
    raise SystemExit(result or 0)


def check(argv: list[str]) -> None:
    from westwind.errors import RecipeError, exit_on_user_error
    from westwind.pipeline import round_recipes
    from westwind.recipe import preflight
    from westwind.recipe.core import load_recipe
    from westwind.recipe.summary import summarize
    from westwind.recipe.template_check import check_data_and_examples
    from westwind.rounds import ROUND_STAGES
    from westwind.stages import STAGES

    with exit_on_user_error():
        argv, example, show = example_option(argv)
        if not argv or argv[0].startswith("-"):
            raise RecipeError("(command line)", "RECIPE", CHECK_USAGE)
        overrides, stage = argv[1:], None
        if overrides[:1] == ["--stage"]:  # the overrides are read as that stage reads them (--beta: dpo.beta)
            if len(overrides) < 2 or overrides[1] not in STAGES:
                raise RecipeError("(command line)", "--stage", f"one of {', '.join(STAGES)}; {CHECK_USAGE}")
            stage, overrides = overrides[1], overrides[2:]
        recipe = load_recipe(argv[0], overrides, stage=stage)
        preflight.check(recipe, [s for s in STAGES if getattr(recipe, s) is not None])
        for index, later in round_recipes(argv[0], overrides, recipe).items():  # iterative dDPO's rounds 2..
            if index > 1:
                preflight.check(
                    later, [s for s in ROUND_STAGES if getattr(later, s) is not None], set(STAGES)
                )
        print(summarize(recipe))
        check_data_and_examples(recipe, example, show)
    print("ok: recipe is valid")


CHECK_USAGE = (
    "usage: westwind check RECIPE [--example N | --no-example] [--stage STAGE] [--section.key value ...]"
)


def example_option(argv: list[str]) -> tuple[list[str], int | None, bool]:
    """argv without --example N / --no-example; the example row (None: the first valid one); whether to show it."""
    from westwind.errors import RecipeError

    rest, example, show = [], None, True
    args = iter(argv)
    for arg in args:
        if arg == "--no-example":
            show = False
        elif arg == "--example":
            value = next(args, "")
            if not value.isdigit():
                raise RecipeError("(command line)", "--example", f"expects a row number, got {value!r}")
            example = int(value)
        else:
            rest.append(arg)
    return rest, example, show


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command == "check":
        check(rest)
    elif command in MODULES:
        run_stage(command, rest)
    elif command in COMMANDS:
        load_callable(COMMANDS[command])(rest)
    else:
        print(f"error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
