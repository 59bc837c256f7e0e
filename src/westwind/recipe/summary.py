"""A recipe's resolved config, stage by stage, as `westwind check` prints it (only what differs from TRL's
defaults: TRL configs have hundreds of fields)."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml
from trl import DPOConfig, RewardConfig, SFTConfig

from westwind.recipe import schema
from westwind.recipe.core import CHECKPOINTING, ModelArgs, Recipe
from westwind.stages import STAGES


def summarize(recipe: Recipe) -> str:
    """Each stage's resolved config, for `westwind check`."""
    lines = [f"recipe: {recipe.path}", f"output_dir: {recipe.output_dir}", "model:"]
    lines += _indent(non_default(recipe.model, ModelArgs()))
    for stage in STAGES:
        config = getattr(recipe, stage)
        if config is None:
            continue
        lines.append(f"{stage}:  # -> {recipe.stage_dir(stage)}")
        extras = getattr(recipe, f"{stage}_data", None)
        if extras is not None:
            lines += _indent(dataclasses.asdict(extras))
        lines += _indent(non_default(config, _default_like(config)))
    return "\n".join(lines)


def _default_like(config: Any) -> Any:
    """A default-built TRL config to diff against; westwind's own sections (aift, eval) print every field."""
    if not isinstance(config, (SFTConfig, DPOConfig, RewardConfig)):
        return None
    unset = dict.fromkeys(schema.DEPRECATED_KEYS)
    return type(config)(output_dir=config.output_dir, use_cpu=config.use_cpu, **CHECKPOINTING, **unset)


def non_default(config: Any, reference: Any) -> dict[str, Any]:
    """The fields of a config that differ from a default-built one (TRL configs have hundreds)."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        default = getattr(reference, field.name) if reference is not None else object()
        if (
            field.init
            and value != default
            and not callable(value)
            and field.name not in schema.DEPRECATED_KEYS
        ):
            out[field.name] = value.value if hasattr(value, "value") else value
    if "output_dir" in {f.name for f in dataclasses.fields(config)}:
        out["output_dir"] = config.output_dir
    return out


def _indent(values: dict[str, Any]) -> list[str]:
    text = yaml.safe_dump(_plain(values), sort_keys=True, default_flow_style=False).rstrip()
    return ["  " + line for line in text.splitlines()] if values else []


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
