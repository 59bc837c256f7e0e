"""`westwind init-model`: a tokenizer trained on local data plus a random-weight model, built from scratch.

    westwind init-model --out outputs/demo-cpu/base --data data/demo/sft.jsonl

The defaults build the CPU demo's student: a character-level tokenizer (plus the zephyr role markers) and a
2-layer, 256-wide Llama (2.1M parameters). The out dir records what it was built from (`init_model.json`:
the arguments and the data files' digests); running again with the same ones skips the build, so a
pipeline can call it on every run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from westwind import io
from westwind.demo.tiny import ARCHITECTURES, build_model, build_tokenizer
from westwind.training.chat_templates import apply_chat_template_choice

MANIFEST = "init_model.json"
# How text splits before BPE: "bpe" (plain byte-level BPE), "digits" (each digit its own token),
# "chars" (each character its own token: a character-level vocabulary; best for the CPU demo's tasks).
TOKENIZATIONS = ("bpe", "digits", "chars")
# Role markers a template writes as plain text; each becomes a single token.
ROLE_MARKERS = {"zephyr": ["<|system|>", "<|user|>", "<|assistant|>"]}


def init_model(
    out_dir: str | Path,
    architecture: str = "llama",
    texts_from: Sequence[str | Path] = (),
    vocab_size: int = 384,
    hidden_size: int = 256,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 256,
    tokenization: str = "chars",
    chat_template: str | None = "zephyr",
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Train a BPE tokenizer on the jsonl files' text, build a random `architecture` model, save both.

    Skips when `out_dir` already holds a model built from the same arguments and data. Raises
    FileExistsError for a non-empty `out_dir` that init-model did not make (unless `force`).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    if tokenization not in TOKENIZATIONS:
        raise ValueError(f"unknown tokenization {tokenization!r}; choose from {', '.join(TOKENIZATIONS)}")
    if not texts_from:
        raise ValueError("init-model needs at least one jsonl file to train the tokenizer on")
    out = Path(out_dir)
    manifest = {
        "architecture": architecture,
        "data_sha256": [file_digest(path) for path in texts_from],  # content, not path: moves don't rebuild
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": max_position_embeddings,
        "tokenization": tokenization,
        "chat_template": chat_template,
        "seed": seed,
    }
    previous = io.read_json(out / MANIFEST)
    if previous == manifest and (out / "config.json").is_file():
        print(f"init-model: {out} already holds this model (same arguments and data); skipping")
        return out
    if previous is None and any(out.glob("*")) and not force:
        raise FileExistsError(f"{out} is not empty and was not made by init-model; pass --force to overwrite")

    texts = list(corpus_texts(texts_from, chat_template))
    tokenizer = build_tokenizer(
        texts,
        vocab_size=vocab_size,
        individual_digits=tokenization == "digits",
        individual_chars=tokenization == "chars",
        extra_tokens=ROLE_MARKERS.get(chat_template or "", []),
    )
    if chat_template is not None:
        apply_chat_template_choice(tokenizer, chat_template)
    model = build_model(
        architecture,
        tokenizer,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        seed=seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"init-model: wrote {out} ({architecture}, {parameters / 1e6:.2f}M parameters, vocab {len(tokenizer)})"
    )
    return out


def corpus_texts(paths: Sequence[str | Path], chat_template: str | None) -> Iterator[str]:
    """Every string in the jsonl rows; conversations also rendered with the chat template, so its
    role markers become tokens."""
    renderer = None
    if chat_template is not None:
        renderer = build_tokenizer(["x"], vocab_size=300)
        apply_chat_template_choice(renderer, chat_template)
    for path in paths:
        with open(path) as handle:
            for line in handle:
                if not line.strip():
                    continue
                row = json.loads(line)
                yield from strings_in(row)
                messages = row.get("messages") if isinstance(row, dict) else None
                if renderer is not None and isinstance(messages, list):
                    # BOS and EOS are special (never merged), so leave them out of the BPE corpus.
                    rendered = renderer.apply_chat_template(messages, tokenize=False)
                    yield rendered.replace(renderer.eos_token, "").replace(renderer.bos_token, "")


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="westwind init-model",
        description="Train a tokenizer on local jsonl data and save a random-weight model around it.",
    )
    parser.add_argument("--out", required=True, help="folder to save the model and tokenizer in")
    parser.add_argument(
        "--data", required=True, nargs="+", help="jsonl files whose text trains the tokenizer"
    )
    parser.add_argument("--architecture", default="llama", choices=sorted(ARCHITECTURES))
    parser.add_argument("--vocab-size", type=int, default=384)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--intermediate-size", type=int, default=None, help="default: 4 x hidden size")
    parser.add_argument("--max-position-embeddings", type=int, default=256)
    parser.add_argument(
        "--tokenization",
        default="chars",
        choices=TOKENIZATIONS,
        help="chars: one token per character (default); digits: BPE but one token per digit; bpe: plain BPE",
    )
    parser.add_argument("--chat-template", default="zephyr", help="shipped template name, or 'none'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty out dir")
    args = parser.parse_args(argv)
    missing = [path for path in args.data if not Path(path).is_file()]
    if missing:
        parser.error(f"data file not found: {', '.join(missing)}")
    try:
        init_model(
            args.out,
            architecture=args.architecture,
            texts_from=args.data,
            vocab_size=args.vocab_size,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            intermediate_size=args.intermediate_size,
            max_position_embeddings=args.max_position_embeddings,
            tokenization=args.tokenization,
            chat_template=None if args.chat_template.lower() == "none" else args.chat_template,
            seed=args.seed,
            force=args.force,
        )
    except (FileExistsError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
