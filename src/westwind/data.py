"""Dataset mixtures (hub ids, local files, save_to_disk folders) and row validation for each stage."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict
from trl.scripts.utils import DatasetConfig

from westwind.errors import DataError

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


# ---------------------------------------------------------------- loading


def load_dataset_config(config: DatasetConfig) -> Dataset:
    """Load one mixture entry: a save_to_disk folder, a local data file, or anything load_dataset takes."""
    path = Path(config.path).expanduser()
    try:
        if path.is_dir() and _is_saved_dataset(path):
            dataset = datasets.load_from_disk(str(path))
            if isinstance(dataset, DatasetDict):
                if config.split not in dataset:
                    raise DataError(
                        f"dataset {config.path}: no split {config.split!r} (has {', '.join(dataset)})"
                    )
                dataset = dataset[config.split]
        elif path.is_file():
            builder = FILE_BUILDERS.get(path.suffix)
            if builder is None:
                raise DataError(f"dataset {config.path}: unsupported file type {path.suffix!r}")
            dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
        else:
            dataset = datasets.load_dataset(
                config.path,
                name=config.name,
                data_dir=config.data_dir,
                data_files=config.data_files,
                split=config.split,
            )
    except DataError:
        raise
    except Exception as error:  # datasets raises many types; the user needs the dataset name and the reason
        raise DataError(f"dataset {config.path}: could not load: {str(error).splitlines()[0]}") from error
    if config.columns is not None:
        missing = [c for c in config.columns if c not in dataset.column_names]
        if missing:
            raise DataError(f"dataset {config.path}: no column(s) {missing} (has {dataset.column_names})")
        dataset = dataset.select_columns(config.columns)
    return dataset


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()


def load_mixture(configs: list[DatasetConfig], seed: int, prepare: Callable | None = None) -> Dataset:
    """Load, optionally `prepare` (normalize + validate) each dataset, then mix by `fraction` like TRL's get_dataset.

    Unlike TRL, rows kept for a fraction are a seeded shuffle, not the first rows of each file.
    """
    if not configs:
        raise DataError("the dataset mixture is empty")
    parts = []
    for config in configs:
        dataset = load_dataset_config(config)
        parts.append(prepare(dataset, config.path) if prepare else dataset)
    fractions = [config.fraction for config in configs]
    if any(f is not None for f in fractions):
        if any(f is None for f in fractions):
            raise DataError("`fraction` must be set for either all datasets in the mixture or none of them")
        weights = [f / sum(fractions) for f in fractions]
        total = min(len(part) / w for part, w in zip(parts, weights, strict=True) if w > 0)
        parts = [
            part.shuffle(seed=seed).select(range(round(w * total)))
            for part, w in zip(parts, weights, strict=True)
        ]
    return datasets.concatenate_datasets(parts)


def split(dataset: Dataset, test_split_size: float | None, seed: int) -> DatasetDict:
    """A seeded train/test split (TRL's is unseeded, so DDP ranks would disagree)."""
    if not test_split_size:
        return DatasetDict({"train": dataset})
    return dataset.train_test_split(test_size=test_split_size, seed=seed)


# ---------------------------------------------------------------- row checks


def conversation_problem(messages: Any, last_role: str | None) -> str | None:
    """Why a message list is not a valid conversation, or None. `last_role` is the role the last turn needs."""
    if not isinstance(messages, list) or not messages:
        return "expected a non-empty list of messages"
    expected = "user"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            return f"message {index} needs role and content"
        role, content = message["role"], message["content"]
        if role not in ROLES:
            return f"message {index} has role {role!r}; roles are system/user/assistant"
        if not isinstance(content, str) or not content.strip():
            return f"message {index} ({role}) is empty"
        if role == "system":
            if index != 0:
                return f"message {index}: a system turn may only come first"
            continue
        if role != expected:
            return f"message {index}: expected a {expected} turn (roles must alternate), got {role}"
        expected = "assistant" if role == "user" else "user"
    if last_role and messages[-1]["role"] != last_role:
        return f"the last turn must be the {last_role}'s, got {messages[-1]['role']}"
    return None


def sft_row_problem(row: dict[str, Any]) -> str | None:
    if "messages" not in row:
        return "no `messages` column (SFT takes conversational data)"
    return conversation_problem(row["messages"], last_role="assistant")


def to_preference(row: dict[str, Any]) -> dict[str, Any]:
    """Normalize one preference row to TRL's conversational shape: prompt messages + one assistant turn each.

    Accepts plain strings, explicit prompts, and the UltraFeedback-binarized shape where chosen and rejected
    repeat the whole conversation (with or without a separate `prompt` string).
    """
    chosen, rejected = _as_turns(row.get("chosen"), "assistant"), _as_turns(row.get("rejected"), "assistant")
    prompt = row.get("prompt")
    if isinstance(chosen, list) and len(chosen) > 1:
        prompt, chosen = chosen[:-1], chosen[-1:]
        rejected = rejected[-1:] if isinstance(rejected, list) else rejected
    else:
        prompt = _as_turns(prompt, "user")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _as_turns(value: Any, role: str) -> Any:
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def preference_problem(row: dict[str, Any]) -> str | None:
    for key in ("chosen", "rejected"):
        if row.get(key) is None:
            return f"no `{key}` column"
    problem = conversation_problem(row["prompt"], last_role="user")
    if problem:
        return f"prompt: {problem}"
    for key in ("chosen", "rejected"):
        turns = row[key]
        if not isinstance(turns, list) or len(turns) != 1:
            return f"{key} must be one assistant turn"
        problem = conversation_problem(row["prompt"] + turns, last_role="assistant")
        if problem:
            return f"{key}: {problem}"
    if row["chosen"][0]["content"].strip() == row["rejected"][0]["content"].strip():
        return "chosen and rejected are identical"
    return None


def _checked(
    dataset: Dataset,
    name: str,
    problem_of: Callable[[dict], str | None],
    drop_invalid: bool,
    transform: Callable | None = None,
) -> Dataset:
    """Apply `transform`, then check every row; raise on the first bad one or drop them all and log how many."""
    if transform is not None:
        dataset = dataset.map(transform, remove_columns=dataset.column_names, desc=f"normalizing {name}")
    problems = [problem_of(row) for row in dataset]
    bad = [index for index, problem in enumerate(problems) if problem]
    if bad and not drop_invalid:
        raise DataError(
            f"dataset {name}, row {bad[0]}: {problems[bad[0]]} "
            f"({len(bad)} bad row(s); set drop_invalid_rows: true to drop them)"
        )
    if bad:
        logger.warning("dataset %s: dropped %d invalid row(s) of %d", name, len(bad), len(dataset))
        print(f"westwind: dataset {name}: dropped {len(bad)} invalid row(s) of {len(dataset)}")
        keep = set(range(len(dataset))) - set(bad)
        dataset = dataset.select(sorted(keep))
    if len(dataset) == 0:
        raise DataError(f"dataset {name}: no rows left")
    return dataset


def sft_dataset(configs: list[DatasetConfig], test_split_size, seed: int, drop_invalid: bool) -> DatasetDict:
    def prepare(dataset: Dataset, name: str) -> Dataset:
        dataset = _checked(dataset, name, sft_row_problem, drop_invalid)
        return dataset.select_columns(["messages"])

    return split(load_mixture(configs, seed, prepare), test_split_size, seed)


def dpo_dataset(configs: list[DatasetConfig], test_split_size, seed: int, drop_invalid: bool) -> DatasetDict:
    def prepare(dataset: Dataset, name: str) -> Dataset:
        missing = {"chosen", "rejected"} - set(dataset.column_names)
        if missing:
            raise DataError(
                f"dataset {name}: no column(s) {sorted(missing)} (DPO takes prompt/chosen/rejected)"
            )
        return _checked(dataset, name, preference_problem, drop_invalid, transform=to_preference)

    return split(load_mixture(configs, seed, prepare), test_split_size, seed)


def dpo_inputs(recipe, stage: str = "dpo") -> tuple[str, list[DatasetConfig]]:
    """A preference stage's (dpo, rm) starting model and datasets with @references resolved (the preflight
    checked that they exist)."""
    extras = getattr(recipe, f"{stage}_data")
    policy = recipe.resolve_reference(extras.model_name_or_path)
    return policy, resolved_datasets(recipe, extras.datasets or [DatasetConfig(path="@aift")])


def resolved_datasets(recipe, configs: list[DatasetConfig]) -> list[DatasetConfig]:
    """Dataset entries with @references (@aift, @distill, @revisions) turned into paths (the preflight checked
    them)."""
    return [dataclasses.replace(c, path=recipe.resolve_reference(c.path)) for c in configs]
