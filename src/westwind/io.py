"""Files every stage writes: atomic writes, JSONL journals, datasets swapped in whole, stage markers,
and the newest complete training checkpoint. Owned here so that no stage borrows another's helpers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STAGE_MARKER = ".westwind-stage.json"
CHECKPOINT_PREFIX = "checkpoint"  # transformers' PREFIX_CHECKPOINT_DIR
TRAINER_STATE = "trainer_state.json"  # transformers' TRAINER_STATE_NAME, written last in a checkpoint


def digest(value: Any, length: int = 64) -> str:
    """A stable sha256 of any JSON-able value (keys sorted; other objects by their str())."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a staging file and a rename: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    with staging.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: Path, records: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_json(path: Path) -> Any:
    """A JSON file's value, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict]:
    """Records of a journal; a line cut short by a crash (or otherwise unreadable) is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s: skipping an unreadable line (an interrupted write)", path)
    return records


class Journal:
    """An append-only JSONL file, durable per record."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.drop_partial_tail()
        self.handle = path.open("a")

    def drop_partial_tail(self) -> None:
        """A kill mid-write leaves a line without its newline; the next append must not extend it."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def append(self, record: dict) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


class ShardedJournals:
    """A stage's journals, one folder per shard: `<root>/shards/<i>-of-<N>/<name>`. Every run reads the records
    of all shards, so work done under any shard count is reused by any other."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.shards = self.root / "shards"

    def shard_dir(self, index: int, count: int) -> Path:
        return self.shards / f"{index:05d}-of-{count:05d}"

    def all_records(self, name: str) -> list[dict]:
        return [record for path in sorted(self.shards.glob(f"*/{name}")) for record in read_jsonl(path)]

    def finished(self, name: str, *fields: str) -> dict[tuple, dict]:
        """The last successful (`status: ok`) record per value of `fields`, over every shard's journal."""
        return {tuple(r.get(f) for f in fields): r for r in self.all_records(name) if r.get("status") == "ok"}


def save_dataset_atomic(dataset, path: Path) -> None:
    """save_to_disk into a staging folder, then swap it in, so a reader never sees a half-written dataset."""
    staging, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    dataset.save_to_disk(str(staging))
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def save_splits(dataset, root: Path) -> dict[str, int]:
    """A DatasetDict as `<root>/dataset` (atomic) plus `<root>/<split>.jsonl` each; returns rows per split."""
    save_dataset_atomic(dataset, Path(root) / "dataset")
    for name, part in dataset.items():
        atomic_write_jsonl(Path(root) / f"{name}.jsonl", part.to_list())
    return {name: len(part) for name, part in dataset.items()}


# ---------------------------------------------------------------- stage markers


def read_stage_marker(stage_dir: Path) -> dict[str, Any] | None:
    marker = read_json(Path(stage_dir) / STAGE_MARKER)
    return marker if isinstance(marker, dict) else None


def write_stage_marker(stage_dir: Path, config_hash: str, seconds: float) -> None:
    atomic_write_text(
        Path(stage_dir) / STAGE_MARKER,
        json.dumps({"config_hash": config_hash, "seconds": round(seconds, 1)}) + "\n",
    )


# ---------------------------------------------------------------- checkpoints


def checkpoints(output_dir: Path) -> list[Path]:
    """`checkpoint-<step>` folders, newest (highest step) first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [
        p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]), reverse=True)


def is_complete_checkpoint(checkpoint: Path) -> bool:
    """transformers writes trainer_state.json last: a checkpoint without a readable one was cut short."""
    return isinstance(read_json(Path(checkpoint) / TRAINER_STATE), dict)


def newest_complete_checkpoint(output_dir: Path) -> Path | None:
    return next((c for c in checkpoints(output_dir) if is_complete_checkpoint(c)), None)
