"""What the stages leave behind, read for the report (each stage's files: see westwind.report)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from westwind import io
from westwind.io import TRAINER_STATE, newest_complete_checkpoint
from westwind.stages import STAGES


@dataclass
class RunOutputs:
    """Everything the report reads, loaded once; a missing stage leaves its fields empty."""

    output_dir: Path
    stage_dirs: dict[str, Path]
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    aift_stats: dict[str, Any] | None = None
    aift_scores: dict[str, list[float]] | None = None
    rm_metrics: dict[str, Any] | None = None
    eval_results: dict[str, Any] | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)


def read_outputs(output_dir: str | Path, stage_dirs: Mapping[str, str | Path] | None = None) -> RunOutputs:
    """`stage_dirs` overrides where a stage wrote (default `<output_dir>/<stage>`), e.g. from the recipe."""
    root = Path(output_dir)
    dirs = {stage: Path((stage_dirs or {}).get(stage, root / stage)) for stage in STAGES}
    outputs = RunOutputs(root, dirs)
    for stage in ("sft", "dpo"):
        state = trainer_state_path(dirs[stage])
        if state is not None:
            outputs.histories[stage] = json.loads(state.read_text()).get("log_history", [])
    outputs.aift_stats = read_json(dirs["aift"] / "stats.json")
    outputs.aift_scores = read_pair_scores(dirs["aift"] / "dataset")
    outputs.rm_metrics = read_json(dirs["rm"] / "metrics.json")
    outputs.eval_results = read_json(dirs["eval"] / "results.json")
    for stage, directory in dirs.items():
        marker = io.read_stage_marker(directory)
        if marker and isinstance(marker.get("seconds"), (int, float)):
            outputs.stage_seconds[stage] = float(marker["seconds"])
    return outputs


def trainer_state_path(stage_dir: Path) -> Path | None:
    """`trainer_state.json` in the stage dir, else in its newest complete `checkpoint-<step>`."""
    if (stage_dir / TRAINER_STATE).is_file():
        return stage_dir / TRAINER_STATE
    checkpoint = newest_complete_checkpoint(stage_dir)
    return checkpoint / TRAINER_STATE if checkpoint else None


def read_json(path: Path) -> dict[str, Any] | None:
    data = io.read_json(path)
    return data if isinstance(data, dict) else None


def read_pair_scores(dataset_dir: Path) -> dict[str, list[float]] | None:
    """`score_chosen` and `score_rejected` over every split of the saved AIFT dataset."""
    if not dataset_dir.is_dir():
        return None
    from datasets import DatasetDict, load_from_disk

    dataset = load_from_disk(str(dataset_dir))
    parts = list(dataset.values()) if isinstance(dataset, DatasetDict) else [dataset]
    scores: dict[str, list[float]] = {"chosen": [], "rejected": []}
    for part in parts:
        if not {"score_chosen", "score_rejected"} <= set(part.column_names):
            return None
        for chosen, rejected in zip(part["score_chosen"], part["score_rejected"], strict=True):
            if chosen is not None and rejected is not None:  # revision pairs have no scores
                scores["chosen"].append(float(chosen))
                scores["rejected"].append(float(rejected))
    return scores


def series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the log entries that hold `key` (the closing summary entry has none)."""
    entries = [e for e in history if isinstance(e.get(key), (int, float)) and "step" in e]
    return [int(e["step"]) for e in entries], [float(e[key]) for e in entries]


def last_value(history: list[dict[str, Any]], key: str) -> float | None:
    values = series(history, key)[1]
    return values[-1] if values else None


def run_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The closing entry the Trainer logs (train_runtime, train_loss), or an empty dict."""
    for entry in reversed(history):
        if "train_runtime" in entry:
            return entry
    return {}
