"""The `westwind` console: check, run, init-model, new-recipe."""

from __future__ import annotations

import importlib
import sys

USAGE = """usage: westwind COMMAND [ARGS]

commands:
  check RECIPE [--key value ...]   validate a recipe (no model loads) and print each stage's resolved config
  run RECIPE [--from S] [--to S]   run dSFT -> AIFT -> dDPO -> eval, skipping finished stages
  sft | aift | dpo | eval RECIPE [...]   one stage alone: the same as python scripts/run_<stage>.py
  init-model --out DIR ...         build a tiny tokenizer + random-weight model from scratch (CPU demo)
  new-recipe --from R --model M --out PATH   fork a recipe for another base model
  launch-check RECIPE [ACCELERATE_CONFIG]    refuse broken combinations (e.g. QLoRA + ZeRO-3) before launch
"""

# Each command is a module with main(argv); imported only when used, so `check` stays light.
COMMANDS = {
    "run": "westwind.pipeline",
    "init-model": "westwind.init_model",
    "new-recipe": "westwind.new_recipe",
    "launch-check": "westwind.launch_check",
}


STAGE_SCRIPTS = {"sft": "run_sft.py", "aift": "run_aift.py", "dpo": "run_dpo.py", "eval": "run_eval.py"}


def run_stage_script(stage: str, argv: list[str]) -> None:
    import runpy

    from westwind.pipeline import SCRIPTS

    sys.argv = [str(SCRIPTS / STAGE_SCRIPTS[stage]), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


def check(argv: list[str]) -> None:
    from westwind.recipe import RecipeError, exit_on_bad_input, load_recipe, summarize

    with exit_on_bad_input():
        if not argv or argv[0].startswith("-"):
            raise RecipeError(
                "(command line)", "RECIPE", "usage: westwind check RECIPE [--section.key value ...]"
            )
        recipe = load_recipe(argv[0], argv[1:])
    print(summarize(recipe))
    print("ok: recipe is valid")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command == "check":
        check(rest)
    elif command in STAGE_SCRIPTS:
        run_stage_script(command, rest)
    elif command in COMMANDS:
        importlib.import_module(COMMANDS[command]).main(rest)
    else:
        print(f"error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
