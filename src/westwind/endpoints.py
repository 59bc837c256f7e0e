"""Resolve an endpoint's model (`@sft`, `@dpo`, `@rm`, `@base`, a local path, a hub id, a served name) into what a
backend loads, the model options it loads with, and a content identity that keys cached work on it.

The identity changes whenever the model's outputs may: a local folder is identified by the names, sizes and
sha256 of its weight, adapter, config and tokenizer files (digests are cached per path, size and mtime, so
a 15 GB checkpoint is hashed once); a hub id by its revision; a served (openai) model by its name, the
most an endpoint tells, plus the folder's content when the name is this recipe's @reference (`model: "@sft"`
with `vllm serve outputs/.../sft`, which serves the folder under its path). AIFT and eval key their reuse on
it, so retraining dSFT regenerates its candidates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from westwind.aift.config import EndpointConfig
from westwind.io import STAGE_MARKER, atomic_write_json, digest, read_json
from westwind.recipe.core import MODEL_REFERENCES, ModelArgs
from westwind.rounds import split_reference

# Files that describe a training run, not the model: they may change without the weights changing.
NOT_MODEL_FILES = {
    STAGE_MARKER,
    "trainer_state.json",
    "training_args.bin",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "README.md",
}
MODEL_SUFFIXES = (".safetensors", ".bin", ".pt", ".json", ".model", ".txt", ".jinja", ".tiktoken")


@dataclass(frozen=True)
class ResolvedModel:
    path: str  # a local folder or hub id to load; for openai, the served model name
    model_args: ModelArgs | None  # None for openai (the server holds the model)
    identity: str  # a content identity (see the module doc)

    @property
    def fingerprint(self) -> str:
        """The identity plus the load options that change what the model writes (chat template, dtype): what
        cached outputs are keyed on. `@sft` inherits them from the recipe's model section."""
        if self.model_args is None:
            return self.identity
        options = [self.model_args.chat_template, self.model_args.dtype]
        return self.identity + "|" + digest(options, 16)


def model_args_for(endpoint: EndpointConfig, path: str, recipe: Any | None) -> ModelArgs:
    """@sft/@dpo/@rm/@base inherit the recipe's model options; other models get only the endpoint's own."""
    if recipe is not None and is_recipe_model(endpoint.model):  # this recipe's models: its model options
        return dataclasses.replace(
            recipe.model,
            model_name_or_path=path,
            model_revision=endpoint.revision or recipe.model.model_revision,
            chat_template=endpoint.chat_template or recipe.model.chat_template,
            dtype=endpoint.dtype or recipe.model.dtype,
        )
    return ModelArgs(
        model_name_or_path=path,
        model_revision=endpoint.revision or "main",
        chat_template=endpoint.chat_template,
        dtype=endpoint.dtype or "auto",
    )


def is_recipe_model(model: str) -> bool:
    """@sft/@dpo/@rm/@base, or a round's dDPO model (`@dpo-r2`, westwind.rounds)."""
    return model in MODEL_REFERENCES or (split_reference(model) or ("",))[0] == "@dpo"


def resolve_model(
    endpoint: EndpointConfig, recipe: Any | None, digest_cache: Path | None = None
) -> ResolvedModel:
    """Where `endpoint.model` points, with what options, and its content identity."""
    path = recipe.resolve_reference(endpoint.model) if recipe is not None else endpoint.model
    if endpoint.backend == "openai":
        served = f"served:{path}"
        if is_recipe_model(endpoint.model) and Path(path).is_dir():
            served += "|" + model_identity(path, None, digest_cache)
        return ResolvedModel(path, None, served)
    model_args = model_args_for(endpoint, path, recipe)
    return ResolvedModel(path, model_args, model_identity(path, model_args.model_revision, digest_cache))


def model_identity(path: str, revision: str | None = None, digest_cache: Path | None = None) -> str:
    """`local:<digest of the model files>` for a folder, else `hub:<id>@<revision>`."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return f"hub:{path}@{revision or 'main'}"
    cache = DigestCache(digest_cache)
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name not in NOT_MODEL_FILES and p.suffix in MODEL_SUFFIXES
    )
    entries = [(p.name, p.stat().st_size, cache.sha256(p)) for p in files]
    cache.save()
    return f"local:{digest(entries, 32)}"


class DigestCache:
    """sha256 of files keyed by absolute path, size and mtime, kept in a JSON file when one is given."""

    def __init__(self, path: Path | None):
        self.path = path
        stored = read_json(path) if path is not None else None
        self.entries: dict[str, str] = stored if isinstance(stored, dict) else {}
        self.changed = False

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        key = json.dumps([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
        if key not in self.entries:
            hasher = hashlib.sha256()
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 24), b""):
                    hasher.update(block)
            self.entries[key] = hasher.hexdigest()
            self.changed = True
        return self.entries[key]

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        # Shards racing on the same cache file may fail to write it: it is only a cache; a later run rehashes.
        with contextlib.suppress(OSError):
            atomic_write_json(self.path, self.entries)
