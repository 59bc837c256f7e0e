"""Dataset mixtures (hub ids, local files, save_to_disk folders) and row validation for each stage."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict
from trl.scripts.utils import DatasetConfig

from westwind.errors import DataError, RecipeError

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
# ShareGPT's `from` values (and the plain role names some exports use) -> westwind's roles.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
USED_COLUMNS = {
    "sft": {"messages", "conversations"},
    "dpo": {"prompt", "chosen", "rejected", "conversations"},
}
EXPECTED_FORMAT = {
    "sft": "SFT expects `messages`: [{role, content}, ...] (or ShareGPT `conversations`: [{from, value}, ...])",
    "dpo": "DPO expects prompt/chosen/rejected (strings or message lists), or ShareGPT `conversations` "
    "with `chosen`/`rejected` as {from, value}",
}
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
            if path.stat().st_size == 0:
                raise DataError(f"dataset {config.path}: the file is empty")
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
        reason = next(iter(str(error).strip().splitlines()), "") or type(error).__name__
        raise DataError(f"dataset {config.path}: could not load: {reason}") from error
    if len(dataset) == 0:
        raise DataError(f"dataset {config.path}: no rows")
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
    test_rows = math.ceil(test_split_size * len(dataset))  # how datasets sizes the test split
    if len(dataset) - test_rows < 1:
        raise DataError(
            f"test_split_size: {test_split_size} of {len(dataset)} row(s) leaves no training row; "
            "use a smaller test_split_size or more data"
        )
    return dataset.train_test_split(test_size=test_split_size, seed=seed)


# ---------------------------------------------------------------- common formats


def as_text(content: Any) -> Any:
    """List-of-parts content (`[{"type": "text", "text": ...}]`) joined into one string (parts by newlines);
    content with non-text parts is left as is (and reported by conversation_problem)."""
    if isinstance(content, list) and content and all(_is_text_part(part) for part in content):
        return "\n".join(part["text"] for part in content)
    return content


def _is_text_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)


def as_turn(turn: Any) -> Any:
    """One message as {role, content}: ShareGPT's {from, value} renamed (human/gpt/system), parts joined."""
    if isinstance(turn, dict) and "from" in turn and "value" in turn and "role" not in turn:
        turn = {"role": SHAREGPT_ROLES.get(turn["from"], turn["from"]), "content": turn["value"]}
    if isinstance(turn, dict) and "content" in turn:
        return {"role": turn.get("role"), "content": as_text(turn["content"])}
    return turn


def as_turns(value: Any) -> Any:
    return [as_turn(turn) for turn in value] if isinstance(value, list) else value


def to_messages(row: dict[str, Any]) -> dict[str, Any]:
    """Normalize one SFT row to `messages`: role/content turns, from ShareGPT `conversations` if need be."""
    messages = row.get("messages")
    if messages is None:
        messages = row.get("conversations")
    return {"messages": as_turns(messages)}


def format_notes(dataset: Dataset) -> list[str]:
    """What westwind converts in this dataset (judged on its first row), to say it once."""
    row, notes = dataset[0], []
    if "messages" not in row and "conversations" in row:
        notes.append(
            "ShareGPT `conversations` ({from, value}; human/gpt/system) converted to role/content turns"
        )
    turns = [
        t
        for key in ("messages", "conversations", "prompt", "chosen", "rejected")
        for t in _turn_list(row.get(key))
    ]
    if any(isinstance(t, dict) and isinstance(t.get("content", t.get("value")), list) for t in turns):
        notes.append('list-of-parts content ([{"type": "text", "text": ...}]) joined into text')
    return notes


def _turn_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


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
        if isinstance(content, list):
            return f"message {index} ({role}) has non-text content parts; westwind trains on text"
        if not isinstance(content, str) or not content.strip():
            return f"message {index} ({role}) is empty"
        if role == "system":
            if index != 0:
                return f"message {index}: a system turn may only come first"
            continue
        if role != expected:
            article = "an" if expected == "assistant" else "a"
            return f"message {index}: expected {article} {expected} turn (roles must alternate), got {role}"
        expected = "assistant" if role == "user" else "user"
    if last_role and messages[-1]["role"] != last_role:
        return f"the last turn must be the {last_role}'s, got {messages[-1]['role']}"
    return None


def sft_row_problem(row: dict[str, Any]) -> str | None:
    if row.get("messages") is None:
        return "no `messages` column (SFT takes conversational data)"
    return conversation_problem(row["messages"], last_role="assistant")


def to_preference(row: dict[str, Any]) -> dict[str, Any]:
    """Normalize one preference row to TRL's conversational shape: prompt messages + one assistant turn each.

    Accepts plain strings, explicit prompts, ShareGPT rows (`conversations` as the prompt, chosen/rejected as
    {from, value}), and the UltraFeedback-binarized shape where chosen and rejected repeat the whole
    conversation (with or without a separate `prompt` string).
    """
    chosen, rejected = _as_turns(row.get("chosen"), "assistant"), _as_turns(row.get("rejected"), "assistant")
    prompt = row.get("prompt") if row.get("prompt") is not None else row.get("conversations")
    if isinstance(chosen, list) and len(chosen) > 1:
        prompt, chosen = chosen[:-1], chosen[-1:]
        rejected = rejected[-1:] if isinstance(rejected, list) else rejected
    else:
        prompt = _as_turns(prompt, "user")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _as_turns(value: Any, role: str) -> Any:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return as_turns([value] if isinstance(value, dict) else value)


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
    stage: str,
    normalize: Callable[[dict], dict],
    problem_of: Callable[[dict], str | None],
    drop_invalid: bool,
) -> Dataset:
    """Check every normalized row: raise on the first bad one, or drop them all and count them by reason;
    then keep the good rows, normalized. Conversions and unused columns are said once per dataset."""
    problems = [problem_of(normalize(row)) for row in dataset]
    bad = [index for index, problem in enumerate(problems) if problem]
    if len(bad) == len(dataset):
        raise DataError(
            f"dataset {name}: every row is invalid (row 0: {problems[0]}); the format looks wrong: "
            f"{EXPECTED_FORMAT[stage]}"
        )
    if bad and not drop_invalid:
        raise DataError(
            f"dataset {name}, row {bad[0]}: {problems[bad[0]]} "
            f"({len(bad)} bad row(s); set drop_invalid_rows: true to drop them)"
        )
    for note in format_notes(dataset):
        print(f"westwind: dataset {name}: {note}")
    unused = sorted(set(dataset.column_names) - USED_COLUMNS[stage])
    if unused:
        print(f"westwind: dataset {name}: column(s) not used by {stage}: {', '.join(unused)}")
    if bad:
        reasons = Counter(re.sub(r"\d+", "N", problems[index]) for index in bad)
        by_reason = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common())
        logger.warning(
            "dataset %s: dropped %d invalid row(s) of %d: %s", name, len(bad), len(dataset), by_reason
        )
        print(f"westwind: dataset {name}: dropped {len(bad)} invalid row(s) of {len(dataset)}: {by_reason}")
        dataset = dataset.select(sorted(set(range(len(dataset))) - set(bad)))
    return dataset.map(normalize, remove_columns=dataset.column_names, desc=f"normalizing {name}")


def sft_dataset(configs: list[DatasetConfig], test_split_size, seed: int, drop_invalid: bool) -> DatasetDict:
    def prepare(dataset: Dataset, name: str) -> Dataset:
        return _checked(dataset, name, "sft", to_messages, sft_row_problem, drop_invalid)

    return split(load_mixture(configs, seed, prepare), test_split_size, seed)


def dpo_dataset(configs: list[DatasetConfig], test_split_size, seed: int, drop_invalid: bool) -> DatasetDict:
    def prepare(dataset: Dataset, name: str) -> Dataset:
        missing = {"chosen", "rejected"} - set(dataset.column_names)
        if missing:
            raise DataError(
                f"dataset {name}: no column(s) {sorted(missing)} (the format looks wrong: {EXPECTED_FORMAT['dpo']})"
            )
        return _checked(dataset, name, "dpo", to_preference, preference_problem, drop_invalid)

    return split(load_mixture(configs, seed, prepare), test_split_size, seed)


def dpo_inputs(recipe, stage: str = "dpo") -> tuple[str, list[DatasetConfig]]:
    """A preference stage's (dpo, rm) starting model and datasets with @references resolved (the preflight
    checked that they exist); the model path absolute, so that an adapter trained on top of it names a base
    that is found from anywhere."""
    extras = getattr(recipe, f"{stage}_data")
    policy = recipe.resolve_reference(extras.model_name_or_path)
    if extras.model_name_or_path.startswith("@"):
        check_stage_model(recipe, f"{stage}.model_name_or_path", Path(policy))
    if Path(policy).exists():
        policy = str(Path(policy).resolve())
    return policy, resolved_datasets(recipe, extras.datasets or [DatasetConfig(path="@aift")])


def resolved_datasets(recipe, configs: list[DatasetConfig]) -> list[DatasetConfig]:
    """Dataset entries with @references (@aift, @distill) turned into paths (the preflight checked
    them)."""
    return [dataclasses.replace(c, path=recipe.resolve_reference(c.path)) for c in configs]


def check_stage_model(recipe, key: str, path: Path) -> None:
    """An upstream stage's model folder holds one kind of model: a full model (config.json) and a LoRA
    adapter (adapter_config.json) side by side mean one is a leftover of another run."""
    if (path / "config.json").is_file() and (path / "adapter_config.json").is_file():
        raise RecipeError(
            recipe.path,
            key,
            f"{path} holds both a full model and a LoRA adapter (one is left from another run); "
            "rerun that stage with `westwind run` or --overwrite_output_dir true",
        )
