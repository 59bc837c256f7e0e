"""One preflight per stage, before anything loads: what the schema alone cannot see.

`westwind check` runs it for every stage of a recipe; each stage runs it for itself (`stage_recipe`); the
pipeline runs it for the stages it will launch. A problem raises RecipeError (`FILE: KEY: problem`, exit 2).

Checked here: numeric ranges (rates, beta, batch sizes, fractions, token limits), LoRA/4-bit keys that would be
ignored, the attention implementation, references (@base, @distill, @sft, @aift, @dpo) and whether what they name exists,
local model folders (and their tokenizer files), writable output folders, callables (verifiers) importable,
named API-key variables present (their values are never printed), launch compatibility, and the chat
template lint (recipe/template_check.py: the tokenizer loads, no model does).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from westwind.callables import CallableImportError, load_callable
from westwind.errors import DataError, RecipeError
from westwind.recipe.core import REFERENCES, Recipe, load_recipe, looks_local
from westwind.recipe.template_check import lint_recipe
from westwind.rounds import split_reference
from westwind.stages import STAGES

# Where each kind of @reference (westwind.recipe.core.REFERENCES) may be used.
MODEL_REFERENCES = ("@base", "@sft", "@dpo")  # models that write: generators, answerers, eval
JUDGE_REFERENCES = (*MODEL_REFERENCES, "@rm")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
# Without use_peft these would be ignored while full training runs: refused. lora_target_modules alone is the
# per-family preset that new-recipe writes for `--model.use_peft true`; it is allowed and said to be unused.
LORA_PRESET = "lora_target_modules"
LORA_KEYS = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_parameters",
    "lora_modules_to_save",
    "lora_task_type",
    "use_rslora",
    "use_dora",
)
BNB_4BIT_KEYS = ("bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_quant_storage")
ATTENTION_EXTRA = ("eager",)
PREFERENCE_STAGES = ("rm", "dpo")  # trained on preference pairs (default @aift), from a model (default @sft)


@dataclass(frozen=True)
class Range:
    """A value's meaningful range; `None` values are not checked (the key is unset)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is out of range
    high_open: bool = False

    def problem(self, value: Any) -> str | None:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        return f"{value} is out of range: must be {self.describe()}" if too_low or too_high else None

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


POSITIVE = Range(0, low_open=True)
AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, low_open=True, high_open=True)
PROBABILITY = Range(0, 1, high_open=True)
TRAINER_RANGES = {
    "learning_rate": POSITIVE,
    "per_device_train_batch_size": AT_LEAST_ONE,
    "per_device_eval_batch_size": AT_LEAST_ONE,
    "gradient_accumulation_steps": AT_LEAST_ONE,
    "num_train_epochs": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "max_grad_norm": NON_NEGATIVE,
    "warmup_steps": NON_NEGATIVE,
    "save_total_limit": AT_LEAST_ONE,
    "max_length": AT_LEAST_ONE,
    "max_prompt_length": AT_LEAST_ONE,
    "max_completion_length": AT_LEAST_ONE,
    "beta": POSITIVE,
    "label_smoothing": Range(0, 0.5),
    "rpo_alpha": NON_NEGATIVE,
}
MODEL_RANGES = {"lora_r": AT_LEAST_ONE, "lora_alpha": POSITIVE, "lora_dropout": PROBABILITY}
STAGE_DATA_RANGES = {"test_split_size": FRACTION}
DATASET_RANGES = {"fraction": Range(0, 1, low_open=True)}


# ---------------------------------------------------------------- entry points


def stage_recipe(argv: list[str], stage: str) -> Recipe:
    """A stage's command line, `RECIPE [--key value ...]`, as a validated recipe that passed its preflight.
    The stage runs alone: what its references name must exist now."""
    if not argv or argv[0].startswith("-"):
        raise RecipeError("(command line)", "RECIPE", f"usage: westwind {stage} RECIPE [--key value ...]")
    recipe = load_recipe(argv[0], argv[1:], stage=stage)
    if getattr(recipe, stage) is None:
        raise RecipeError(recipe.path, stage, f"the recipe has no {stage} section")
    check(recipe, [stage], produced_earlier=set())
    return recipe


def check(recipe: Recipe, stages: Iterable[str], produced_earlier: set[str] | None = None) -> None:
    """Preflight `stages` of `recipe`. `produced_earlier`: stages that will have run before these (the pipeline,
    `westwind check`), so their outputs need not exist yet; None: every stage of the recipe that comes before."""
    stages = list(stages)
    check_model(recipe)
    for stage in stages:
        upstream = produced_earlier
        if upstream is None:
            upstream = {s for s in STAGES[: STAGES.index(stage)] if getattr(recipe, s) is not None}
        CHECKS[stage](recipe, Context(recipe, stage, upstream))
    lint_recipe(recipe, stages)  # chat template and special tokens; loads the tokenizer, never a model


@dataclass
class Context:
    recipe: Recipe
    stage: str
    produced_earlier: set[str]

    def fail(self, key: str, problem: str) -> RecipeError:
        return RecipeError(self.recipe.path, key, problem)

    def reference(self, value: str, key: str, allowed: tuple[str, ...]) -> str:
        """Resolve @base/@sft/@aift/@dpo; a stage's output must exist unless that stage runs earlier."""
        if not value.startswith("@"):
            return value
        stands_for, name = round_reference(value, self.recipe)
        if stands_for not in allowed:
            raise self.fail(key, f"unknown reference {value!r} (here: {', '.join(allowed)})")
        path = self.recipe.resolve_reference(value)
        producer = REFERENCES[name][0]
        if producer is None:
            return path
        if getattr(self.recipe, producer) is None and not Path(path).exists():
            raise self.fail(key, f"{value} names the {producer} stage, which this recipe does not have")
        if producer not in self.produced_earlier and not Path(path).exists():
            raise self.fail(key, f"{value} -> {path} not found: run the {producer} stage first")
        return path


def round_reference(value: str, recipe: Recipe) -> tuple[str, str]:
    """What a reference may stand for, and the reference it is. A round's model (`@dpo-r2`, westwind.rounds)
    stands where @sft may (a later round starts from it), a round's pairs (`@aift-r2`) where @aift may; only
    rounds the recipe has."""
    by_round = split_reference(value)
    if by_round is None or by_round[1] > recipe.rounds.count:
        return value, value
    name = by_round[0]
    return ("@sft" if name == "@dpo" else name), name


# ---------------------------------------------------------------- the model section


def check_model(recipe: Recipe) -> None:
    model, given = recipe.model, recipe.raw.get("model") or {}
    for key, allowed in MODEL_RANGES.items():
        _check_range(recipe, f"model.{key}", getattr(model, key), allowed)
    rm_adapter = recipe.rm_data is not None and recipe.rm_data.use_peft  # rm may train LoRA on its own
    # A recipe whose LoRA run is switched to full training on the command line (`--model.use_peft false`)
    # keeps its LoRA keys for the LoRA run: they are not a mistake in it.
    peft_switched_off = any(item.split("=")[0] == "--model.use_peft" for item in recipe.overrides)
    if not model.use_peft and not rm_adapter and not peft_switched_off:
        ignored = [key for key in LORA_KEYS if key in given]
        if ignored:
            raise RecipeError(
                recipe.path,
                f"model.{ignored[0]}",
                "LoRA keys are set but model.use_peft is false, so full training would ignore them: "
                "set use_peft: true, or remove " + ", ".join(ignored),
            )
        if LORA_PRESET in given:
            print(
                f"westwind: model.{LORA_PRESET} is unused (model.use_peft is false: full training)",
                file=sys.stderr,
            )
    if not model.load_in_4bit:
        ignored = [key for key in BNB_4BIT_KEYS if key in given]
        if ignored:
            raise RecipeError(
                recipe.path, f"model.{ignored[0]}", "4-bit keys are set but model.load_in_4bit is false"
            )
    check_attention(recipe, model.attn_implementation)


def check_attention(recipe: Recipe, name: str | None) -> None:
    if name is None or "/" in name:  # None: transformers picks; "org/repo": a kernel from the hub
        return
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # lazy: transformers is heavy

    known = [*ATTENTION_EXTRA, *ALL_ATTENTION_FUNCTIONS.valid_keys()]
    if name not in known and name.removeprefix("paged|") not in known:
        raise RecipeError(
            recipe.path,
            "model.attn_implementation",
            f"unknown attention implementation {name!r}; one of: {', '.join(known)}, or a hub kernel org/repo",
        )


def check_model_source(ctx: Context, path: str, key: str) -> None:
    """A local model folder must exist and hold tokenizer files (or be an adapter); a hub id is the hub's."""
    if not looks_local(path):
        return
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ctx.fail(key, f"local model folder does not exist: {path}{_init_model_hint(ctx, folder)}")
    has_tokenizer = any((folder / name).exists() for name in TOKENIZER_FILES)
    if folder.is_dir() and not has_tokenizer and not (folder / "adapter_config.json").exists():
        raise ctx.fail(key, f"{path} holds no tokenizer files ({', '.join(TOKENIZER_FILES)})")


def _init_model_hint(ctx: Context, folder: Path) -> str:
    """A model inside the recipe's own output folder is one westwind builds or imports: the CPU demo's tiny student
    (`westwind init-model`), or a packaged GGUF checkpoint (`westwind import-gguf`)."""
    if folder.resolve().is_relative_to(ctx.recipe.output_dir.resolve()):
        return (
            f"; build it first with `westwind init-model --out {folder}` or import it with `westwind import-gguf"
            f" ... --out {folder}`, as the recipe's header says"
        )
    return ""


# ---------------------------------------------------------------- per stage


def check_training(recipe: Recipe, ctx: Context) -> None:
    stage = ctx.stage
    config, data = getattr(recipe, stage), getattr(recipe, f"{stage}_data")
    given = recipe.raw.get(stage) or {}
    for key, allowed in TRAINER_RANGES.items():
        if key in given:
            _check_range(recipe, f"{stage}.{key}", getattr(config, key, None), allowed)
    for key, allowed in STAGE_DATA_RANGES.items():
        _check_range(recipe, f"{stage}.{key}", getattr(data, key), allowed)
    check_padding_free(recipe, ctx, given)
    for index, dataset in enumerate(data.datasets):
        for key, allowed in DATASET_RANGES.items():
            _check_range(recipe, f"{stage}.datasets[{index}].{key}", getattr(dataset, key), allowed)
        allowed = ("@aift", "@distill") if stage == "sft" else ("@aift",)
        ctx.reference(dataset.path, f"{stage}.datasets[{index}].path", allowed)
    if stage in PREFERENCE_STAGES:
        if not data.datasets:
            ctx.reference("@aift", f"{stage}.datasets", ("@aift",))
        start = ctx.reference(data.model_name_or_path, f"{stage}.model_name_or_path", ("@sft", "@base"))
        if not data.model_name_or_path.startswith(("@sft", "@dpo-r")):  # made by a stage: checked above
            check_model_source(ctx, start, f"{stage}.model_name_or_path")
    else:
        check_model_source(ctx, recipe.model.model_name_or_path, "model.model_name_or_path")
    check_writable(ctx, Path(config.output_dir), f"{stage}.output_dir")


def check_padding_free(recipe: Recipe, ctx: Context, given: dict[str, Any]) -> None:
    """Padding-free batches are one row of concatenated sequences: only a variable-length flash-attention
    kernel keeps them apart; sdpa or eager would attend across every sequence in the row."""
    from westwind.training.models import has_varlen_kernel  # lazy: transformers is heavy

    attn = recipe.model.attn_implementation
    if given.get("padding_free") is True and not has_varlen_kernel(attn):
        raise ctx.fail(
            f"{ctx.stage}.padding_free",
            f"true needs a flash-attention kernel (attn_implementation flash_attention_2, flash_attention_3 "
            f"or a hub flash kernel), not {attn or 'the default (sdpa)'}: sequences in a padding-free row "
            f"would attend to each other",
        )


def check_aift(recipe: Recipe, ctx: Context) -> None:
    config = recipe.aift
    for index, dataset in enumerate(config.prompts.datasets):
        ctx.reference(dataset.path, f"aift.prompts.datasets[{index}].path", ())
    endpoints = [(f"aift.generators[{i}]", g) for i, g in enumerate(config.generators)]
    endpoints.append(("aift.judge", config.judge))
    if config.revisions is not None:
        endpoints.append(("aift.revisions.answerer", config.revisions.answerer))
        if config.revisions.teacher is not None:
            endpoints.append(("aift.revisions.teacher", config.revisions.teacher))
    for key, endpoint in endpoints:
        check_endpoint(ctx, endpoint, key)
    if config.judge.function:
        check_callable(ctx, config.judge.function, "aift.judge.function")
    check_writable(ctx, recipe.stage_dir("aift"), "output_dir")


def check_distill(recipe: Recipe, ctx: Context) -> None:
    config = recipe.distill
    check_endpoint(ctx, config.teacher, "distill.teacher")
    if config.dialogues.user is not None:
        check_endpoint(ctx, config.dialogues.user, "distill.dialogues.user")
    if config.quality is not None:
        check_endpoint(ctx, config.quality.judge, "distill.quality.judge")
        if config.quality.judge.function:
            check_callable(ctx, config.quality.judge.function, "distill.quality.judge.function")
    if config.instructions is not None:
        check_seed_tasks(ctx, config.instructions.seed_tasks)
    prompts = config.dialogues.prompts
    for index, dataset in enumerate(prompts.datasets if prompts else []):
        ctx.reference(dataset.path, f"distill.dialogues.prompts.datasets[{index}].path", ())
    check_writable(ctx, recipe.stage_dir("distill"), "output_dir")


def check_seed_tasks(ctx: Context, path: str) -> None:
    from westwind.distill.instructions import load_seed_tasks  # lazy: numpy and rouge-score come with it

    key = "distill.instructions.seed_tasks"
    if not Path(path).expanduser().is_file():
        raise ctx.fail(key, f"file not found: {path}")
    try:
        load_seed_tasks(path)
    except DataError as error:
        raise ctx.fail(key, str(error)) from None


def check_eval(recipe: Recipe, ctx: Context) -> None:
    config = recipe.eval
    compares = config.prompts is not None and config.suite is None  # the suites need no baseline
    references = {"model": config.model}
    if compares:
        references["baseline"] = config.baseline
        references |= {f"extra_baselines[{i}]": value for i, value in enumerate(config.extra_baselines)}
    for key, value in references.items():
        path = ctx.reference(value, f"eval.{key}", MODEL_REFERENCES)
        if not value.startswith("@"):
            check_model_source(ctx, path, f"eval.{key}")
    for index, dataset in enumerate(config.prompts.datasets if config.prompts else []):
        ctx.reference(dataset.path, f"eval.prompts.datasets[{index}].path", ())
    check_suites(ctx, config)
    if config.judge is not None:
        check_endpoint(ctx, config.judge, "eval.judge")
        if config.judge.function:
            check_callable(ctx, config.judge.function, "eval.judge.function")
    if config.verifier:
        check_callable(ctx, config.verifier, "eval.verifier")
    check_writable(ctx, recipe.stage_dir("eval"), "output_dir")


def check_suites(ctx: Context, config: Any) -> None:
    """The suites that will run: their judge endpoint (key rules as aift.judge) and their files."""
    from westwind.evaluation.suites import selected_suites

    names = selected_suites(config.suites, config.suite)
    if not names:
        return
    check_endpoint(ctx, config.suites.judge, "eval.suites.judge")
    for name in names:
        suite = getattr(config.suites, name)
        for field in ("questions", "judge_prompts", "reference_answers", "baseline_answers", "judge_config"):
            path = getattr(suite, field, None)
            if path is not None and not Path(path).expanduser().is_file():
                raise ctx.fail(f"eval.suites.{name}.{field}", f"file not found: {path}")


CHECKS: dict[str, Callable[[Recipe, Context], None]] = {
    "distill": check_distill,
    "sft": check_training,
    "rm": check_training,
    "dpo": check_training,
    "aift": check_aift,
    "eval": check_eval,
}


# ---------------------------------------------------------------- shared checks


def check_endpoint(ctx: Context, endpoint: Any, key: str) -> None:
    model = getattr(endpoint, "model", None)
    # An openai endpoint's model is a served name, except for this recipe's @references (a served @sft).
    if model and (endpoint.backend != "openai" or model.startswith("@")):
        path = ctx.reference(model, f"{key}.model", JUDGE_REFERENCES if "judge" in key else MODEL_REFERENCES)
        if not model.startswith("@"):
            check_model_source(ctx, path, f"{key}.model")
    variable = getattr(endpoint, "api_key_env", None)
    if endpoint.backend == "openai" and variable and not os.environ.get(variable):
        raise ctx.fail(
            f"{key}.api_key_env", f"environment variable {variable} is not set (it holds the API key)"
        )


def check_callable(ctx: Context, spec: str, key: str) -> None:
    try:
        load_callable(spec)
    except CallableImportError as error:
        raise ctx.fail(key, str(error)) from None


def check_writable(ctx: Context, folder: Path, key: str) -> None:
    """The folder, or its nearest existing parent, must be a writable directory: found before any model loads."""
    if folder.exists() and not folder.is_dir():
        raise ctx.fail(key, f"{folder} exists and is not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not _can_create_in(existing):
        raise ctx.fail(key, f"cannot write to {folder} ({existing} is not writable)")


def _can_create_in(folder: Path) -> bool:
    """Create and remove a probe folder: file modes alone do not tell (root, read-only mounts, /proc)."""
    try:
        tempfile.TemporaryDirectory(dir=folder, prefix=".westwind-probe-").cleanup()
    except OSError:
        return False
    return True


def _check_range(recipe: Recipe, key: str, value: Any, allowed: Range) -> None:
    problem = allowed.problem(value)
    if problem:
        raise RecipeError(recipe.path, key, problem)
