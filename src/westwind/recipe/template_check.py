"""The chat-template lint of a recipe (westwind.training.template_lint) and `westwind check`'s rendered examples.

The lint needs the tokenizer. When it cannot be had here (a hub-only or gated tokenizer, offline), it is skipped
with one line saying why, and the recipe still validates. Errors raise RecipeError (exit 2, one line naming the
rule and the fix); warnings and notes are printed. TRL is imported only when a tokenizer is linted.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from westwind.errors import DataError, RecipeError
from westwind.recipe.core import Recipe, looks_local

LINTED_STAGES = ("sft", "dpo", "aift", "eval")  # the stages that render chats with model.chat_template
EXAMPLE_STAGES = ("sft", "dpo")
_subjects: dict[tuple, Any] = {}  # one tokenizer load and one lint per recipe model section and process
_findings: dict[tuple, list] = {}


def lint_recipe(recipe: Recipe, stages: Iterable[str]) -> None:
    """Run the template lint for `stages` of `recipe`: print warnings and notes, raise the first error."""
    if not any(stage in LINTED_STAGES for stage in stages):
        return
    from westwind.training.template_lint import ERROR  # lazy: imports TRL

    first_time = _subject_key(recipe) not in _findings
    for finding in recipe_findings(recipe) or []:
        if finding.level == ERROR:
            raise RecipeError(recipe.path, finding.key, finding.line())
        if first_time:
            print(f"westwind: {finding.level}: {finding.key}: {finding.line()}", file=sys.stderr)


def recipe_findings(recipe: Recipe) -> list | None:
    """The lint's findings for the recipe's model section (once per process), or None when it was skipped."""
    key = _subject_key(recipe)
    if key not in _findings:
        subject = load_subject(recipe)
        if subject is None:
            return None
        from westwind.training.template_lint import lint  # lazy: imports TRL

        _findings[key] = lint(subject)
    return _findings[key]


def lint_summary(recipe: Recipe) -> list[str]:
    """What the lint found, one line each, for `westwind new-recipe` (which reports and does not refuse)."""
    try:
        found = recipe_findings(recipe)
    except RecipeError as error:
        return [f"error: {error.key}: {error.problem}"]
    if found is None:
        return ["template lint skipped (see above)"]
    return [f"{f.level}: {f.key}: {f.line()}" for f in found] or ["template lint: no finding"]


def _subject_key(recipe: Recipe) -> tuple:
    model = recipe.model
    loss = bool(recipe.sft is not None and recipe.sft.assistant_only_loss)
    return (model.model_name_or_path, model.model_revision, model.chat_template, model.pad_token, loss)


def load_subject(recipe: Recipe):
    """The lint's Subject for the recipe's base model, or None (said once) when its tokenizer is not here."""
    key = _subject_key(recipe)
    if key not in _subjects:
        _subjects[key] = _load_subject(recipe)
    return _subjects[key]


def _load_subject(recipe: Recipe):
    from westwind.training import models  # lazy: transformers and TRL
    from westwind.training.template_lint import Subject

    model = recipe.model
    path = model.model_name_or_path
    if looks_local(path) and not Path(path).expanduser().exists():
        return _skip(f"{path} does not exist yet")
    try:
        tokenizer = models.load_raw_tokenizer(path, model, **_hub_options(path))
    except Exception as error:  # noqa: BLE001 - gated, hub-only offline, network: the lint is skipped, said why
        reason = next(iter(str(error).strip().splitlines()), type(error).__name__)
        return _skip(f"the tokenizer of {path} cannot be loaded here ({reason[:160]})")
    own = tokenizer.chat_template
    own = own.get("default") if isinstance(own, dict) else own
    if built_from_scratch(path):
        own = None  # random weights: no format (or BOS) was ever learned with the template init-model saved
    try:
        models.prepare_tokenizer(tokenizer, model)
    except ValueError as error:
        raise RecipeError(recipe.path, "model.chat_template", str(error)) from None
    loss = bool(recipe.sft is not None and recipe.sft.assistant_only_loss)
    stops = set(generation_stop_ids(path))
    if recipe.sft is not None and recipe.sft.eos_token:  # TRL makes it the EOS the dSFT model is saved with
        stops.add(tokenizer.convert_tokens_to_ids(recipe.sft.eos_token))
    return Subject(tokenizer, own, model.chat_template, loss, frozenset(stops))


def built_from_scratch(path: str) -> bool:
    """A model `westwind init-model` built (the CPU demo's student): random weights, not chat-tuned."""
    from westwind.demo.init_model import MANIFEST  # lazy: the demo's modules

    return (Path(path).expanduser() / MANIFEST).is_file()


def _hub_options(path: str) -> dict[str, Any]:
    """A hub id is read from the local cache only when the hub is off (HF_HUB_OFFLINE)."""
    if looks_local(path) or Path(path).expanduser().exists():
        return {}
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return {"local_files_only": True} if offline else {}


def _skip(why: str) -> None:
    print(f"westwind: template lint skipped: {why}", file=sys.stderr)
    return None


def generation_stop_ids(path: str) -> list[int]:
    """The stop tokens in a local model folder's generation_config.json (the hub's are not fetched)."""
    config = Path(path).expanduser() / "generation_config.json"
    if not config.is_file():
        return []
    stops = json.loads(config.read_text()).get("eos_token_id")
    return [] if stops is None else [stops] if isinstance(stops, int) else list(stops)


# ---------------------------------------------------------------- `westwind check`: data and examples


@dataclass
class Row:
    stage: str
    source: str  # where the row comes from, said above its rendering
    values: dict[str, Any]  # normalized: {"messages"} for sft, {"prompt", "chosen", "rejected"} for dpo


def check_data_and_examples(recipe: Recipe, example: int | None, show: bool = True) -> None:
    """Refuse a local dataset that is empty or has no valid row; print one rendered row per training stage
    (`example`: the row's index in the stage's first local dataset; None: its first valid row)."""
    rows = {stage: stage_row(recipe, stage, example) for stage in EXAMPLE_STAGES if getattr(recipe, stage)}
    if not show:
        return
    subject = load_subject(recipe)
    if subject is None:
        print("westwind: no rendered example (the tokenizer is not here)")
        return
    from westwind.training.template_example import show_dpo, show_sft  # lazy: imports TRL

    color = sys.stdout.isatty()
    if rows.get("dpo") is None and rows.get("sft") is not None and recipe.dpo is not None:
        rows["dpo"] = pair_from_sft(rows["sft"])
    for stage, row in rows.items():
        if row is None:
            print(f"\n{stage}: no example (its data is not local or does not exist yet)")
        elif stage == "sft":
            print(
                show_sft(
                    subject.tokenizer, row.values["messages"], subject.assistant_only_loss, row.source, color
                )
            )
        else:
            print(show_dpo(subject.tokenizer, row.values, row.source, color))


def pair_from_sft(row: Row) -> Row:
    *prompt, answer = row.values["messages"]
    rejected = {"role": "assistant", "content": "(a rejected answer)"}
    source = f"a pair built from the first dSFT conversation ({row.source}; the dDPO data does not exist yet)"
    return Row("dpo", source, {"prompt": prompt, "chosen": [answer], "rejected": [rejected]})


def stage_row(recipe: Recipe, stage: str, index: int | None) -> Row | None:
    """Row `index` of the stage's first local dataset (default: its first valid row); every local dataset of
    the stage is checked to be non-empty with a valid row. None when no dataset of the stage is local yet."""
    from westwind.training import data  # lazy: datasets

    extras = getattr(recipe, f"{stage}_data")
    configs = extras.datasets or ([data.DatasetConfig(path="@aift")] if stage == "dpo" else [])
    chosen = None
    for position, config in enumerate(configs):
        path = recipe.resolve_reference(config.path) if config.path.startswith("@") else config.path
        if not Path(path).expanduser().exists():
            continue
        key = f"{stage}.datasets[{position}].path" if extras.datasets else f"{stage}.datasets"
        row = valid_row(recipe, stage, config, path, key, index if chosen is None else None)
        chosen = chosen or row
    return chosen


def valid_row(recipe: Recipe, stage: str, config, path: str, key: str, index: int | None) -> Row | None:
    import dataclasses

    import datasets

    from westwind.training import data  # lazy: datasets

    normalize, problem_of = (
        (data.to_messages, data.sft_row_problem)
        if stage == "sft"
        else (data.to_preference, data.preference_problem)
    )
    datasets.disable_progress_bars()  # `westwind check` prints the example, not the loader's bars
    try:
        dataset = data.load_dataset_config(dataclasses.replace(config, path=path))
    except DataError as error:
        raise RecipeError(recipe.path, key, str(error)) from None
    first_problem = None
    for number, raw in enumerate(dataset):
        row = normalize(raw)
        problem = problem_of(row)
        if problem is None and (index is None or number >= index):
            return Row(stage, f"{config.path}, row {number}", row)
        if index is not None and number == index and problem:
            raise RecipeError(recipe.path, key, f"row {number} (--example) is not valid: {problem}")
        first_problem = first_problem or problem
    if index is not None and index >= len(dataset):
        raise RecipeError(recipe.path, key, f"--example {index}: {config.path} has {len(dataset)} row(s)")
    raise RecipeError(
        recipe.path,
        key,
        f"{config.path}: no valid row (row 0: {first_problem}); {data.EXPECTED_FORMAT[stage]}",
    )
