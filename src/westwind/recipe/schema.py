"""Validate plain YAML data against dataclasses, with errors that name the key path.

Used for every recipe section: TRL's own config classes (SFTConfig, DPOConfig, ModelConfig, DatasetConfig)
and westwind's (AIFT, eval). Nothing here imports a model.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import sys
import types
import typing
from typing import Any, Literal, Union

# Keys that older TRL releases or the anchor projects used, mapped to what to write now.
RENAMED_KEYS: dict[str, str] = {
    "max_seq_length": "max_length",
    "evaluation_strategy": "eval_strategy",
    "warmup_ratio": "warmup_steps (TRL 1.16 takes a fraction below 1 there)",
    "max_prompt_length": "max_length (TRL 1.16 removed max_prompt_length)",
    "tokenizer": "model.model_name_or_path / model.chat_template",
    "weight": "fraction (TRL's name for a dataset's share of the mixture)",
    "torch_dtype": "dtype",
    "model_adapter_name": "nothing: TRL 1.16 removed it; westwind builds the reference itself",
    "ref_adapter_name": "nothing: TRL 1.16 removed it; westwind builds the reference itself",
}


# Keys a library renamed but still reads: a recipe may use them, and is told the new name once per load.
# transformers 5 renamed gradient_checkpointing; TRL 1.16's configs still default the old name to true.
DEPRECATED_KEYS: dict[str, str] = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


class SchemaError(ValueError):
    """A problem at one key path; the recipe layer adds the file name."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def rename_deprecated_keys(section: dict[str, Any], stage: str, source: object) -> None:
    """A deprecated key still works, read as its new name in place (so the stage hash, and the recipe a stage
    saves, are the same under either spelling), with one line naming the new one."""
    for old, new in DEPRECATED_KEYS.items():
        if old not in section:
            continue
        if new in section:
            raise SchemaError(f"{stage}.{old}", f"deprecated name of {new}, which is also set: keep {new}")
        section[new] = section.pop(old)
        print(f"westwind: {source}: {stage}.{old} is deprecated, read as {new}: write {new}", file=sys.stderr)


def suggest(name: str, known: typing.Iterable[str]) -> str:
    if name in RENAMED_KEYS:
        return f" (did you mean {RENAMED_KEYS[name]}?)"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.7)
    return f" (did you mean {close[0]}?)" if close else ""


def check_keys(data: dict, allowed: typing.Iterable[str], key_path: str) -> None:
    allowed = set(allowed)
    for name in data:
        if not isinstance(name, str):
            raise SchemaError(join(key_path, str(name)), "keys must be strings")
        if name not in allowed:
            raise SchemaError(join(key_path, name), f"unknown key{suggest(name, allowed)}")


def join(prefix: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{prefix}[{name}]"
    return f"{prefix}.{name}" if prefix else name


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true/false"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str, choices: typing.Sequence[Any] | None = None) -> Any:
    """Check `value` against the type `tp` and return it, converted where YAML is loose (1e-5 as a string)."""
    if choices is not None and value is not None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item not in choices:
                raise SchemaError(key, f"{describe(item)} is not one of: {', '.join(map(str, choices))}")
    if tp is Any or tp is typing.Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise SchemaError(key, f"{describe(value)} is not one of: {', '.join(map(str, allowed))}")
        return value
    if origin in (list, typing.List, tuple, typing.Sequence):  # noqa: UP006
        if not isinstance(value, list):
            raise SchemaError(key, f"expected a list, got {describe(value)}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [coerce(item, item_tp, join(key, i)) for i, item in enumerate(value)]
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            raise SchemaError(key, f"expected a mapping, got {describe(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        valid = [member.value for member in tp]
        if value not in valid:
            raise SchemaError(key, f"{describe(value)} is not one of: {', '.join(map(str, valid))}")
        return value
    return _coerce_scalar(value, tp, key)


def _coerce_union(value: Any, options: tuple, key: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise SchemaError(key, "must not be empty")
    enums = [o for o in options if isinstance(o, type) and issubclass(o, enum.Enum)]
    if enums and isinstance(value, str):
        # TrainingArguments types these as `SchedulerType | str`; only the enum's values are valid.
        return coerce(value, enums[0], key)
    sections = [o for o in options if dataclasses.is_dataclass(o)]
    if isinstance(value, dict) and len(sections) == 1:
        return build(sections[0], value, key)  # an optional section: its own error, at its own key
    errors = []
    for option in sorted((o for o in options if o is not type(None)), key=_union_order):
        try:
            return coerce(value, option, key)
        except SchemaError:
            errors.append(_type_name(option))
    raise SchemaError(key, f"expected {' or '.join(errors)}, got {describe(value)}")


def _union_order(tp: Any) -> int:
    # Try strict scalar types before str, so "5" stays a string only where nothing stricter fits.
    return {bool: 0, int: 1, float: 2}.get(tp, 3 if tp is not str else 4)


def _coerce_scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value)  # YAML 1.1 reads `2e-5` as a string
            except ValueError:
                pass
            else:
                if not math.isnan(number):
                    return number
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type):
        if isinstance(value, tp):
            return value
    else:
        return value
    raise SchemaError(key, f"expected {_type_name(tp)}, got {describe(value)}")


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def required_fields(cls: type) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def check_fields(
    cls: type, data: Any, key_path: str, choices: dict[str, typing.Sequence[Any]] | None = None
) -> dict[str, Any]:
    """Validate a mapping against `cls`'s fields and return the converted values, without building `cls`."""
    if not isinstance(data, dict):
        raise SchemaError(key_path or "(top level)", f"expected a mapping, got {describe(data)}")
    types_by_name = field_types(cls)
    check_keys(data, types_by_name, key_path)
    for name in required_fields(cls):
        if name not in data:
            raise SchemaError(join(key_path, name), "required key is missing")
    choices = choices or {}
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}
    values = {}
    for name, value in data.items():
        allowed = choices.get(name) or metadata[name].get("choices")
        values[name] = coerce(value, types_by_name[name], join(key_path, name), allowed and list(allowed))
    return values


def build(cls: type, data: Any, key_path: str) -> Any:
    """Validate `data` and construct `cls`; a ValueError from its __post_init__ is reported at `key_path`."""
    values = check_fields(cls, data, key_path)
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise SchemaError(key_path or "(top level)", str(error).splitlines()[0]) from None
