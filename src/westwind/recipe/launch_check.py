"""Refuse recipe/launcher combinations that cannot work, before any model is loaded.

The known one: QLoRA (bitsandbytes 4-bit/8-bit weights) under DeepSpeed ZeRO-3. ZeRO-3 partitions every
parameter across ranks; westwind does not support partitioning quantized weights that way. Multi-GPU QLoRA
runs with FSDP (recipes/accelerate/fsdp_qlora.yaml, 4-bit storage in the compute dtype), DDP or ZeRO-2.

The launcher is described by an accelerate config dict (the YAML given to `accelerate launch --config_file`),
by the environment `accelerate launch` hands its processes, or both:

    check_launch_compatibility(recipe, None)                       # in a launched script: read the env
    check_launch_compatibility(recipe, load_accelerate_config(p))  # ahead of launch: read the file too
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from westwind.errors import RecipeError

if TYPE_CHECKING:  # the recipe module runs this check while it validates: no runtime import back
    from westwind.recipe.core import Recipe

MULTI_GPU_QLORA_CONFIGS = "recipes/accelerate/fsdp_qlora.yaml, ddp.yaml or zero2.yaml"


def check_launch_compatibility(recipe: Recipe, accelerate_config: Mapping[str, Any] | None) -> None:
    """Raise RecipeError when the recipe's quantization cannot run under the launcher.

    `accelerate_config` is a parsed accelerate config file, or None when unknown; the environment that
    `accelerate launch` sets is always checked too, since launch flags can override the file.
    """
    sources: list[tuple[str, Mapping[str, Any]]] = [("the environment", accelerate_config_from_env())]
    if accelerate_config:
        sources.insert(0, ("the accelerate config", accelerate_config))
    for where, config in sources:
        _check_one(recipe, config, where)


def _check_one(recipe: Recipe, config: Mapping[str, Any], where: str) -> None:
    bits = quantization_bits(recipe)
    if bits is None:
        return
    key = f"model.load_in_{bits}bit"
    distributed = str(config.get("distributed_type", "")).upper()
    if distributed == "DEEPSPEED" and zero_stage(config) == 3:
        raise RecipeError(
            recipe.path,
            key,
            f"{bits}-bit quantization (QLoRA) does not combine with DeepSpeed ZeRO-3 ({where} selects it): "
            f"ZeRO-3 partitions the weights, which bitsandbytes-quantized layers do not support here. "
            f"Use {MULTI_GPU_QLORA_CONFIGS}",
        )
    if distributed == "FSDP":
        _check_fsdp_qlora(recipe, bits, key, where)


def _check_fsdp_qlora(recipe: Recipe, bits: int, key: str, where: str) -> None:
    if bits == 8:
        raise RecipeError(
            recipe.path,
            key,
            f"FSDP ({where}) cannot shard 8-bit weights; use load_in_4bit with fsdp_qlora.yaml, or ddp.yaml",
        )
    storage, dtype = recipe.model.bnb_4bit_quant_storage, recipe.model.dtype
    if dtype in (None, "auto") or storage != dtype:
        raise RecipeError(
            recipe.path,
            "model.bnb_4bit_quant_storage",
            f"FSDP-QLoRA ({where} selects FSDP) needs bnb_4bit_quant_storage equal to model.dtype so FSDP can "
            f"shard the 4-bit weights with the rest; got bnb_4bit_quant_storage={storage!r}, dtype={dtype!r} "
            f"(set both to bfloat16)",
        )


def quantization_bits(recipe: Recipe) -> int | None:
    if recipe.model.load_in_4bit:
        return 4
    if recipe.model.load_in_8bit:
        return 8
    return None


def zero_stage(config: Mapping[str, Any]) -> int | None:
    """The ZeRO stage from an accelerate config's deepspeed_config, or from the DeepSpeed JSON it names."""
    deepspeed = config.get("deepspeed_config") or {}
    if deepspeed.get("zero_stage") is not None:
        return int(deepspeed["zero_stage"])
    config_file = deepspeed.get("deepspeed_config_file")
    if config_file and Path(config_file).is_file():
        stage = json.loads(Path(config_file).read_text()).get("zero_optimization", {}).get("stage")
        return int(stage) if stage is not None else None
    return None


def load_accelerate_config(path: str | Path) -> dict[str, Any]:
    """Read an accelerate config file (YAML or JSON)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, "(file)", "accelerate config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(path, "(file)", f"invalid YAML: {error}") from None
    if not isinstance(data, dict):
        raise RecipeError(path, "(top level)", "an accelerate config must be a mapping")
    return data


def accelerate_config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Rebuild the active accelerate config (file layout) from what `accelerate launch` exports.

    Returns {} outside a launch. DDP sets no marker of its own, so a WORLD_SIZE above 1 stands for it.
    """
    env = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    if env.get("ACCELERATE_MIXED_PRECISION"):
        config["mixed_precision"] = env["ACCELERATE_MIXED_PRECISION"]
    if _is_true(env.get("ACCELERATE_USE_DEEPSPEED")):
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = _deepspeed_from_env(env)
    elif _is_true(env.get("ACCELERATE_USE_FSDP")):
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_" + name[len("FSDP_") :].lower(): _parse_scalar(value)
            for name, value in env.items()
            if name.startswith("FSDP_")
        }
    elif int(env.get("WORLD_SIZE", "1") or 1) > 1:
        config["distributed_type"] = "MULTI_GPU"
    return config


def _deepspeed_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    fields = {
        "ACCELERATE_DEEPSPEED_ZERO_STAGE": "zero_stage",
        "ACCELERATE_DEEPSPEED_CONFIG_FILE": "deepspeed_config_file",
        "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "offload_optimizer_device",
        "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "offload_param_device",
        "ACCELERATE_DEEPSPEED_ZERO3_INIT": "zero3_init_flag",
    }
    return {key: _parse_scalar(env[name]) for name, key in fields.items() if env.get(name)}


def _is_true(value: str | None) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


def _parse_scalar(value: str) -> Any:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return int(value) if value.strip().isdigit() else value
