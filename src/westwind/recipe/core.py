"""The recipe: one YAML file per model holding every stage, validated before anything loads.

    output_dir: outputs/zephyr-7b        # root; stages write to <output_dir>/<stage>
    model:    {TRL ModelConfig fields} + chat_template
    sft:      {TRL SFTConfig fields} + datasets / test_split_size / drop_invalid_rows
    distill:  westwind.distill.config.DistillConfig (teacher-written dSFT data, before sft)
    aift:     westwind.aift.config.AIFTConfig
    rm:       {TRL RewardConfig fields} + the same data keys (default @aift) + model_name_or_path (default @sft)
              + use_peft (default: model.use_peft)
    dpo:      {TRL DPOConfig fields} + the same data keys + model_name_or_path (default @sft)
    eval:     westwind.evaluation.config.EvalConfig

References: `@base` is model.model_name_or_path, `@sft`/`@rm`/`@dpo` those stages' outputs, `@aift` the AIFT
dataset (rated pairs, plus Constitutional-AI revision pairs with aift.revisions), `@distill` the distilled dSFT
dataset.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml
from trl import DPOConfig, ModelConfig, RewardConfig, SFTConfig
from trl.scripts.utils import DatasetConfig

from westwind.aift.config import AIFTConfig
from westwind.distill.config import DistillConfig
from westwind.errors import RecipeError
from westwind.evaluation.config import EvalConfig
from westwind.recipe import schema
from westwind.recipe.launch_check import check_launch_compatibility
from westwind.rounds import RoundsConfig, parse_config, round_dir, round_raw, split_reference
from westwind.stages import STAGES
from westwind.training.chat_templates import TEMPLATES, is_jinja

# `rounds`: iterative dDPO (westwind.rounds); `round`: which round a stage process runs (`--round k`).
TOP_LEVEL_KEYS = ("output_dir", "model", *STAGES, "rounds", "round")
DATA_FILE_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".arrow")


def documented_choices(config_cls: type, name: str) -> list[str]:
    """The values a TRL config field's help lists after "Possible values are:" (up to the sentence's end).
    TRL checks such fields only when the trainer starts; westwind checks them up front, against TRL's own list."""
    (field,) = [f for f in dataclasses.fields(config_cls) if f.name == name]
    listed = field.metadata["help"].split("Possible values are:", 1)[1].split(". ", 1)[0]
    return re.findall(r"`'?([a-z0-9_]+)'?`", listed)


DPO_CHOICES = {name: documented_choices(DPOConfig, name) for name in ("loss_type", "f_divergence_type")}
# TRL's own default (checkpointing on) under transformers 5's name: TRL 1.16 still sets the deprecated
# `gradient_checkpointing`, and transformers warns about it on every config built from the default.
CHECKPOINTING = {"activation_checkpointing": True}
# westwind's opinions on top of TRL's defaults; a recipe overrides any of them.
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sft": {**CHECKPOINTING, "assistant_only_loss": True, "report_to": "none", "save_total_limit": 2},
    # No reference model in memory while training (measured in docs/benchmarks.md).
    "dpo": {**CHECKPOINTING, "report_to": "none", "save_total_limit": 2, "precompute_ref_log_probs": True},
    "rm": {**CHECKPOINTING, "report_to": "none", "save_total_limit": 2},
}


@dataclasses.dataclass
class ModelArgs(ModelConfig):
    """TRL's ModelConfig plus the chat template (a shipped name or a Jinja string) and trust_remote_code,
    which TRL 1.16 keeps on the trainer configs; westwind sets it there from here."""

    chat_template: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "A shipped template name (zephyr, chatml), an inline Jinja string, or unset: the tokenizer's own."
        },
    )
    trust_remote_code: bool = dataclasses.field(
        default=False, metadata={"help": "Allow model code from the hub (copied onto the trainer configs)."}
    )
    pad_token: str | None = dataclasses.field(
        default=None,
        metadata={"help": "The tokenizer's pad token for every stage (unset: its own, else unk, else eos)."},
    )


@dataclasses.dataclass
class StageData:
    """The dataset keys a training stage adds to TRL's config: TRL's mixture fields plus row policy."""

    datasets: list[DatasetConfig] = dataclasses.field(
        default_factory=list,
        metadata={
            "help": "TRL DatasetConfig entries (path, name, data_dir, data_files, split, columns, fraction); path may be @aift."
        },
    )
    test_split_size: float | None = dataclasses.field(
        default=None, metadata={"help": "Fraction in (0, 1) held out as the test split, seeded by `seed`."}
    )
    drop_invalid_rows: bool = dataclasses.field(
        default=False,
        metadata={"help": "Drop bad rows and report the counts by reason, instead of stopping at the first."},
    )
    overwrite_output_dir: bool = dataclasses.field(
        default=False,
        metadata={"help": "Clear this stage's outputs made under other inputs instead of refusing to start."},
    )


@dataclasses.dataclass
class DPOStageExtras(StageData):
    model_name_or_path: str = dataclasses.field(
        default="@sft",
        metadata={"help": "The policy's start (and the reference): @sft, @base, a path or a hub id."},
    )


@dataclasses.dataclass
class RMStageExtras(StageData):
    """The reward model trains on preference pairs (default: the AIFT pairs), from the dSFT model by default;
    `test_split_size` pairs are held out for its pairwise accuracy."""

    model_name_or_path: str = "@sft"
    test_split_size: float | None = 0.1
    use_peft: bool | None = None  # None: model.use_peft


# Every @reference: the stage whose output it names (None: @base, the recipe's own model) and the folder in
# that stage's directory holding it ("": the stage directory itself, a model).
REFERENCES: dict[str, tuple[str | None, str]] = {
    "@base": (None, ""),
    "@distill": ("distill", "dataset"),
    "@sft": ("sft", ""),
    "@aift": ("aift", "dataset"),
    "@rm": ("rm", ""),
    "@dpo": ("dpo", ""),
}
MODEL_REFERENCES = tuple(name for name, (_, folder) in REFERENCES.items() if not folder)

# The config classes behind each section, for --help (westwind.recipe.usage).
SECTION_CLASSES: dict[str, tuple[type, ...]] = {
    "model": (ModelArgs,),
    "sft": (StageData, SFTConfig),
    "rm": (RMStageExtras, RewardConfig),
    "dpo": (DPOStageExtras, DPOConfig),
    "aift": (AIFTConfig,),
    "distill": (DistillConfig,),
    "eval": (EvalConfig,),
}


@dataclasses.dataclass
class Recipe:
    path: Path
    output_dir: Path
    model: ModelArgs
    raw: dict[str, Any]
    sft: SFTConfig | None = None
    sft_data: StageData | None = None
    dpo: DPOConfig | None = None
    dpo_data: DPOStageExtras | None = None
    distill: Any = None
    aift: Any = None
    rm: RewardConfig | None = None
    rm_data: RMStageExtras | None = None
    eval: Any = None
    overrides: list[str] = dataclasses.field(default_factory=list)  # as given on the command line
    rounds: RoundsConfig = dataclasses.field(default_factory=RoundsConfig)
    round: int = 1  # the round this recipe is rewritten for (westwind.rounds.round_raw)
    source_raw: dict[str, Any] = dataclasses.field(default_factory=dict)  # before that rewrite

    def stage_dir(self, stage: str) -> Path:
        config = getattr(self, stage, None)
        if stage in ("sft", "rm", "dpo") and config is not None:
            return Path(config.output_dir)  # round k's dpo.output_dir is already round k's
        return round_dir(self.output_dir / stage, self.round if stage in ("aift", "eval") else 1)

    def round_stage_dir(self, stage: str, round_index: int) -> Path:
        """A round's folder for aift/dpo/eval, from any round's recipe."""
        if stage == "dpo":
            first = (self.source_raw.get("dpo") or {}).get("output_dir") or self.output_dir / "dpo"
            return round_dir(Path(first), round_index)
        return round_dir(self.output_dir / stage, round_index)

    def resolve_reference(self, value: str) -> str:
        """Turn a @reference (REFERENCES; `@dpo-r2`, `@aift-r2`: a round's) into a concrete model or dataset
        path; other values are returned. With rounds, `@dpo` is the last round's model."""
        by_round = split_reference(value)
        if by_round is not None:
            name, index = by_round
            path = self.round_stage_dir(name[1:], index)
            return str(path / REFERENCES[name][1]) if REFERENCES[name][1] else str(path)
        if value == "@dpo" and self.rounds.count > 1:
            return str(self.round_stage_dir("dpo", self.rounds.count))
        if value not in REFERENCES:
            return value
        stage, folder = REFERENCES[value]
        if stage is None:
            return self.model.model_name_or_path
        return str(self.stage_dir(stage) / folder) if folder else str(self.stage_dir(stage))


# ---------------------------------------------------------------- loading


def load_recipe(path: str | Path, overrides: list[str] | None = None, stage: str | None = None) -> Recipe:
    """Read, override and validate a recipe. Raises RecipeError; loads no model and writes nothing."""
    path = Path(path)
    raw = read_yaml(path)
    for key, value in parse_overrides(overrides or [], stage):
        set_key(raw, key, value, path)
    try:
        recipe = validate(raw, path)
    except schema.SchemaError as error:
        raise RecipeError(path, error.key, error.problem) from None
    recipe.overrides = list(overrides or [])
    return recipe


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(path, "(file)", "recipe file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise RecipeError(path, where, f"invalid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise RecipeError(path, "(top level)", "a recipe must be a mapping of sections")
    return data


def parse_overrides(args: list[str], stage: str | None) -> list[tuple[str, Any]]:
    """`--key value` / `--key=value` pairs. Dotted keys name a section (`--model.lora_r 8`, `--dpo.beta 0.05`);
    plain keys go to the stage being run, except top-level keys (`--output_dir`)."""
    pairs, index = [], 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--") or arg == "--":
            raise RecipeError("(command line)", arg, "expected --key value")
        if "=" in arg:
            key, text = arg[2:].split("=", 1)
            index += 1
        elif index + 1 < len(args):
            key, text = arg[2:], args[index + 1]
            index += 2
        else:
            raise RecipeError("(command line)", arg, "missing a value")
        if "." not in key and key not in TOP_LEVEL_KEYS:
            if stage is None:
                raise RecipeError("(command line)", key, "name the section, e.g. --sft.learning_rate 1e-5")
            key = f"{stage}.{key}"
        pairs.append((key, parse_value(text)))
    return pairs


def parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_key(data: dict[str, Any], dotted: str, value: Any, path: Path) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = data
    for part in parents:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise RecipeError(path, dotted, "cannot override inside a non-mapping value")
        node = node.setdefault(part, {})
        if node is None:
            node = data[part] = {}
    if isinstance(node, list) and leaf.isdigit() and int(leaf) < len(node):
        node[int(leaf)] = value
    elif isinstance(node, dict):
        node[leaf] = value
    else:
        raise RecipeError(path, dotted, "cannot override inside a non-mapping value")


# ---------------------------------------------------------------- validation


def validate(source: dict[str, Any], path: Path) -> Recipe:
    schema.check_keys(source, TOP_LEVEL_KEYS, "")
    for name in ("output_dir", "model"):
        if name not in source:
            raise schema.SchemaError(name, "required key is missing")
    rounds = parse_config(source.get("rounds"))
    round_index = schema.coerce(source.get("round", 1), int, "round")
    raw = round_raw(source, round_index)
    output_dir = Path(schema.coerce(raw["output_dir"], str, "output_dir"))
    model = validate_model(raw["model"])
    recipe = Recipe(path=path, output_dir=output_dir, model=model, raw=raw)
    recipe.rounds, recipe.round, recipe.source_raw = rounds, round_index, source
    # Before any trainer config is built: TRL's configs already set up DeepSpeed/FSDP from the launch env.
    check_launch_compatibility(recipe, None)
    if raw.get("sft") is not None:
        recipe.sft, recipe.sft_data = validate_trainer_stage(raw["sft"], "sft", SFTConfig, StageData, recipe)
    if raw.get("dpo") is not None:
        recipe.dpo, recipe.dpo_data = validate_trainer_stage(
            raw["dpo"], "dpo", DPOConfig, DPOStageExtras, recipe
        )
    if raw.get("distill") is not None:
        recipe.distill = schema.build(DistillConfig, raw["distill"], "distill")
    if raw.get("aift") is not None:
        recipe.aift = schema.build(AIFTConfig, raw["aift"], "aift")
    if raw.get("rm") is not None:
        recipe.rm, recipe.rm_data = validate_trainer_stage(
            raw["rm"], "rm", RewardConfig, RMStageExtras, recipe
        )
        check_rm_is_not_its_own_teacher(recipe)
    if raw.get("eval") is not None:
        recipe.eval = schema.build(EvalConfig, raw["eval"], "eval")
    return recipe


def validate_model(data: Any) -> ModelArgs:
    values = schema.check_fields(ModelArgs, data, "model")
    if not values.get("model_name_or_path"):
        raise schema.SchemaError("model.model_name_or_path", "required key is missing")
    template = values.get("chat_template")
    if template is not None and not is_jinja(template) and template not in TEMPLATES:
        hint = schema.suggest(template, TEMPLATES)
        raise schema.SchemaError(
            "model.chat_template",
            f"unknown chat template {template!r}{hint}; shipped: {', '.join(sorted(TEMPLATES))}, or a Jinja string",
        )
    if values.get("load_in_4bit") and values.get("load_in_8bit"):
        raise schema.SchemaError("model.load_in_4bit", "choose one of load_in_4bit and load_in_8bit")
    if (values.get("load_in_4bit") or values.get("load_in_8bit")) and not values.get("use_peft"):
        raise schema.SchemaError("model.use_peft", "4-bit/8-bit (QLoRA) training needs use_peft: true")
    try:
        return ModelArgs(**values)
    except (TypeError, ValueError) as error:
        raise schema.SchemaError("model", str(error).splitlines()[0]) from None


def validate_trainer_stage(
    data: Any, stage: str, config_cls: type, data_cls: type, recipe: Recipe
) -> tuple[Any, Any]:
    """Split a stage section into TRL trainer args and westwind data keys; validate and build both."""
    if not isinstance(data, dict):
        raise schema.SchemaError(stage, f"expected a mapping, got {schema.describe(data)}")
    schema.rename_deprecated_keys(data, stage, recipe.path)
    data_keys = set(schema.field_types(data_cls))
    trainer_keys = set(schema.field_types(config_cls))
    schema.check_keys(data, data_keys | trainer_keys, stage)
    stage_data = schema.build(data_cls, {k: v for k, v in data.items() if k in data_keys}, stage)
    if stage == "sft" and not stage_data.datasets:
        raise schema.SchemaError("sft.datasets", "required key is missing")
    for index, dataset in enumerate(stage_data.datasets):
        check_dataset_path(dataset, f"{stage}.datasets[{index}]")
    trainer_values = {**STAGE_DEFAULTS.get(stage, {}), **{k: v for k, v in data.items() if k in trainer_keys}}
    trainer_values.setdefault("output_dir", str(recipe.output_dir / stage))
    for key in ("trust_remote_code", "pad_token"):  # TRL keeps them per trainer; westwind once, on the model
        if key in trainer_values:
            raise schema.SchemaError(f"{stage}.{key}", f"set it once, as model.{key}")
    trainer_values["trust_remote_code"] = recipe.model.trust_remote_code
    values = schema.check_fields(config_cls, trainer_values, stage, DPO_CHOICES if stage == "dpo" else None)
    values.setdefault("use_cpu", not accelerator_available())
    values.update(dict.fromkeys(schema.DEPRECATED_KEYS))  # unset: transformers then mirrors the new names
    try:
        return config_cls(**values), stage_data
    except Exception as error:  # TrainingArguments raises ValueError, ImportError, PackageNotFoundError, ...
        raise schema.SchemaError(stage, str(error).strip().splitlines()[0]) from None


def accelerator_available() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def looks_local(path: str) -> bool:
    """A hub id is `name` or `owner/name`; anything else (./x, /x, a/b/c, x.jsonl) is a local path."""
    return (
        Path(path).exists()
        or path.startswith((".", "/", "~"))
        or path.endswith(DATA_FILE_SUFFIXES)
        or path.count("/") > 1
    )


def check_rm_is_not_its_own_teacher(recipe: Recipe) -> None:
    """AIFT runs before rm: an AIFT judge of @rm cannot be trained on that same AIFT's pairs."""
    trains_on_aift = any(d.path == "@aift" for d in recipe.rm_data.datasets) or not recipe.rm_data.datasets
    judge = recipe.aift.judge if recipe.aift is not None else None
    if trains_on_aift and judge is not None and judge.model == "@rm":
        raise schema.SchemaError(
            "aift.judge.model", "@rm is trained on this recipe's AIFT pairs, so it cannot judge them"
        )


def check_dataset_path(dataset: DatasetConfig, key: str) -> None:
    if dataset.path.startswith("@"):
        return  # references are the preflight's
    if looks_local(dataset.path) and not Path(dataset.path).expanduser().exists():
        raise schema.SchemaError(f"{key}.path", f"local dataset path does not exist: {dataset.path}")
