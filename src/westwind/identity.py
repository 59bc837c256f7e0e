"""What produced a stage's outputs, and whether a folder holds only this run's work.

Each stage has one hash, computed once by `stage_hashes` for the pipeline and the stages alike, over:
its resolved section (overrides applied), the model section, the output root, the identity of every
dataset it reads, and the hash of the stage before it (so `@sft`/`@aift` references, and any upstream
change, are covered through the chain).

Data identity, documented in docs/recipes.md ("Data identity"):
- a local file up to FULL_DIGEST_BYTES is its sha256; a bigger one is its size, mtime and the sha256 of its
  first and last BLOCK_BYTES (a same-size rewrite of only the middle that also keeps the mtime goes unseen);
- a local folder (save_to_disk) is the identity of every file in it;
- a hub dataset is the commit sha of its revision: asked of the Hub, or read from the local hub cache when
  offline; when neither knows it, "unknown" (said once), so hub changes are then not detected.

A stage folder records the hash its contents were made under in IDENTITY_FILE. `westwind run` clears a
folder made under another hash before rerunning the stage; a training stage run on its own refuses it.
Kept free of heavy imports: the pipeline uses it before any stage starts.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from westwind import io, rounds
from westwind.stages import STAGES

IDENTITY_FILE = "westwind_identity.json"
DATA_STATS = "data_stats.json"  # a training stage's row counts (rows TRL dropped), read by the report
FULL_DIGEST_BYTES = 256 * 2**20
BLOCK_BYTES = 2**20
# Stage keys that decide how a run treats its folder, not what it produces.
NOT_IDENTITY = ("overwrite_output_dir", "resume_from_checkpoint")
# What a training stage writes into its output_dir (which may be a user's folder: only these are cleared).
TRAINING_OUTPUTS = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "training_args.bin",
    "trainer_state.json",
    "*_results.json",
    "README.md",
    "westwind_recipe.yaml",
    DATA_STATS,
    "metrics.json",  # rm: written last
    "adapter",  # rm: the trained adapter beside its merged standalone model
    "checkpoint-*",
    "sft-merged",
    "sft-merged.tmp",
    "runs",
    io.STAGE_MARKER,
)
_unknown_said: set[str] = set()


# ---------------------------------------------------------------- data identity


def file_identity(path: Path) -> str:
    size = path.stat().st_size
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= FULL_DIGEST_BYTES:
            for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
                hasher.update(block)
            return hasher.hexdigest()
        hasher.update(handle.read(BLOCK_BYTES))
        handle.seek(size - BLOCK_BYTES)
        hasher.update(handle.read(BLOCK_BYTES))
    return f"size={size} mtime_ns={path.stat().st_mtime_ns} ends={hasher.hexdigest()}"


def path_identity(path: Path) -> Any:
    """A local file's or folder's identity (see the module doc). The cache files `datasets` writes into a
    save_to_disk folder when a stage maps it (`cache-*.arrow`) and lock files are not part of it."""
    if path.is_file():
        return file_identity(path)
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and not p.name.startswith("cache-") and p.suffix != ".lock"
    )
    return {str(p.relative_to(path)): file_identity(p) for p in files}


def hub_revision(repo_id: str) -> str:
    """The commit sha a hub dataset resolves to now: the Hub's answer, else the local cache's, else unknown."""
    from huggingface_hub import HfApi, constants  # lazy: only hub datasets need it

    if not constants.is_offline_mode():
        try:
            return HfApi().dataset_info(repo_id, timeout=10).sha or "unknown"
        except Exception:  # unreachable hub, private or missing repo: fall back to the cache
            pass
    ref = Path(constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}" / "refs" / "main"
    if ref.is_file():
        return ref.read_text().strip()
    if repo_id not in _unknown_said:
        _unknown_said.add(repo_id)
        print(
            f"westwind: hub dataset {repo_id}: revision unknown (offline, not cached); its changes go unseen"
        )
    return "unknown"


def dataset_identity(entry: Any) -> Any:
    """The identity of one recipe `datasets` entry: local files by content, hub datasets by revision."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return None
    path = entry["path"]
    if path.startswith("@"):
        return None  # an upstream stage's output: covered by the chained upstream hash
    local = Path(path).expanduser()
    if local.exists():
        return path_identity(local)
    files = local_data_files(entry.get("data_files"))
    if files:  # e.g. path: json with local data_files
        return {str(f): path_identity(f) for f in files}
    return {"hub": path, "revision": hub_revision(path)}


def local_data_files(data_files: Any) -> list[Path]:
    """The local files a `data_files` value (a path, a glob, a list, or a split -> files mapping) names."""
    if isinstance(data_files, dict):
        return [f for value in data_files.values() for f in local_data_files(value)]
    patterns = [data_files] if isinstance(data_files, str) else data_files
    if not isinstance(patterns, list):
        return []
    found = [Path(m) for pattern in patterns for m in sorted(glob.glob(os.path.expanduser(str(pattern))))]
    return [f for f in found if f.is_file()]


def dataset_entries(section: Any) -> Iterator[Any]:
    """Every entry of every `*datasets` list in a recipe section (prompts, decontamination, overlap, ...)."""
    if isinstance(section, dict):
        for key, value in section.items():
            if key.endswith("datasets") and isinstance(value, list):
                yield from value
            else:
                yield from dataset_entries(value)
    elif isinstance(section, list):
        for value in section:
            yield from dataset_entries(value)


# ---------------------------------------------------------------- stage hashes


def stage_hashes(recipe) -> dict[str, str]:
    """A hash per present stage of the recipe's round, chained so that a changed upstream stage (an earlier
    round's included) invalidates everything after it."""
    chain = round_hashes(recipe)
    return {
        stage: chain[rounds.step_name(stage, recipe.round)]
        for stage in STAGES
        if stage_present(recipe, stage)
    }


def stage_present(recipe, stage: str) -> bool:
    return recipe.raw.get(stage) is not None


def round_hashes(recipe) -> dict[str, str]:
    """Every step's hash over all rounds (`aift`, `dpo`, ..., `aift-r2`, `dpo-r2`, `eval-r2`, ...): round 1 is
    chained as a one-round run; round k's AIFT continues from round k-1's dDPO hash (eval is a leaf)."""
    source = recipe.source_raw or recipe.raw
    hashes: dict[str, str] = {}
    upstream = ""
    for round_index in range(1, rounds.count_of(source) + 1):
        raw = rounds.round_raw(source, round_index)
        stages = STAGES if round_index == 1 else rounds.ROUND_STAGES
        for stage in stages:
            if raw.get(stage) is None:
                continue
            digest = stage_hash(raw, stage, recipe.output_dir, upstream, round_index)
            hashes[rounds.step_name(stage, round_index)] = digest
            if stage != "eval":
                upstream = digest
    return hashes


def stage_hash(raw: dict[str, Any], stage: str, output_dir: Path, upstream: str, round_index: int) -> str:
    section = raw[stage]
    if isinstance(section, dict):
        section = {k: v for k, v in section.items() if k not in NOT_IDENTITY}
    payload = {
        "stage": section,
        "model": raw["model"],
        "output_dir": str(output_dir),
        "data": [dataset_identity(entry) for entry in dataset_entries(section)],
        "upstream": upstream,
    }
    extra = rounds.hash_settings(raw, stage, round_index)
    if extra is not None:  # absent for one round: its hashes are those of a recipe without rounds
        payload["rounds"] = extra
    return io.digest(payload)


# ---------------------------------------------------------------- folders


def recorded_hash(folder: Path) -> str | None:
    record = io.read_json(Path(folder) / IDENTITY_FILE)
    return record.get("config_hash") if isinstance(record, dict) else None


def record_hash(folder: Path, stage: str, config_hash: str) -> None:
    io.atomic_write_json(Path(folder) / IDENTITY_FILE, {"stage": stage, "config_hash": config_hash})


def owned_paths(folder: Path) -> list[Path]:
    """What a training stage wrote in `folder` (its identity record aside); the folder may be a user's, so
    only the names in TRAINING_OUTPUTS count."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = {p for pattern in TRAINING_OUTPUTS for p in folder.glob(pattern)}
    return sorted(p for p in found if p.name != IDENTITY_FILE)


def clear(folder: Path) -> list[Path]:
    """Remove what a training stage owns in `folder` (and its identity record); returns what was removed."""
    removed = owned_paths(folder)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    (Path(folder) / IDENTITY_FILE).unlink(missing_ok=True)
    return removed


def foreign_outputs(folder: Path, config_hash: str) -> str | None:
    """Why `folder` holds work from another run (other inputs), or None when all of it is this run's."""
    if not owned_paths(folder):
        return None
    recorded = recorded_hash(folder)
    if recorded is None:
        return f"{folder} holds outputs with no record of what made them ({IDENTITY_FILE} is missing)"
    if recorded != config_hash:
        return f"{folder} holds outputs made under other inputs (config hash {recorded[:12]}, now {config_hash[:12]})"
    return None
