"""`westwind new-recipe --from RECIPE --model NAME [--out PATH] [--family F] [--force]`.

Forks a recipe for another base model and fills in what differs per model family: model_name_or_path,
chat template, LoRA target modules, pad/eos tokens and output_dir. Everything else (hyperparameters,
datasets, comments, key order) is kept: known keys are edited line by line, not re-serialized.

The family comes from the model name (`meta-llama/Llama-3.1-8B` -> llama3) and, for a local model
directory, from config.json's model_type. Nothing is fetched from the hub.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from westwind.recipe.core import RecipeError, load_recipe, looks_local

# Llama 3's header format; {% generation %} marks what the assistant-only loss trains on.
LLAMA3_TEMPLATE = """\
{{- bos_token }}
{%- for message in messages %}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
{%- if message['role'] == 'assistant' %}
{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}
{%- else %}
{{- message['content'] | trim + '<|eot_id|>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}"""

# Gemma's turn format; Gemma has no system role, so a system message becomes a user turn.
GEMMA_TEMPLATE = """\
{{- bos_token }}
{%- for message in messages %}
{%- if message['role'] == 'assistant' %}
{{- '<start_of_turn>model\\n' }}
{%- generation %}{{- message['content'] | trim + '<end_of_turn>' }}{%- endgeneration %}
{{- '\\n' }}
{%- else %}
{{- '<start_of_turn>user\\n' + message['content'] | trim + '<end_of_turn>\\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<start_of_turn>model\\n' }}
{%- endif %}"""

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PHI3_PROJECTIONS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


@dataclass(frozen=True)
class Family:
    name: str
    match: tuple[str, ...]  # substrings of the lowercased model name
    model_types: tuple[str, ...]  # config.json model_type values
    chat_template: str  # a shipped template name or Jinja
    lora_target_modules: tuple[str, ...]
    pad_token: str | None = None  # None: the tokenizer's own pad token (or its eos)
    eos_token: str | None = (
        None  # sft.eos_token, where turns end with something other than the tokenizer's eos
    )


# Order matters: the first family whose substring is in the name wins (smollm before llama, phi3 before phi).
FAMILIES: tuple[Family, ...] = (
    Family("smollm", ("smollm",), ("llama",), "chatml", PROJECTIONS),
    Family("llama2", ("llama-2", "llama2", "tinyllama"), ("llama",), "zephyr", PROJECTIONS),
    Family(
        "llama3",
        ("llama",),
        ("llama",),
        LLAMA3_TEMPLATE,
        PROJECTIONS,
        pad_token="<|finetune_right_pad_id|>",
        eos_token="<|eot_id|>",
    ),
    Family("mistral", ("mistral",), ("mistral",), "zephyr", PROJECTIONS),
    Family("qwen2", ("qwen",), ("qwen2", "qwen3"), "chatml", PROJECTIONS),
    Family(
        "gemma",
        ("gemma",),
        ("gemma", "gemma2", "gemma3_text"),
        GEMMA_TEMPLATE,
        PROJECTIONS,
        eos_token="<end_of_turn>",
    ),
    # Phi-3's own format is the zephyr layout with <|end|> closing each turn.
    Family("phi3", ("phi-3", "phi3"), ("phi3",), "zephyr", PHI3_PROJECTIONS, eos_token="<|end|>"),
    Family("phi4", ("phi-4", "phi4"), ("phi3",), "chatml", PHI3_PROJECTIONS),
    Family("phi", ("phi",), ("phi",), "zephyr", ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2")),
)
FAMILY_BY_NAME = {family.name: family for family in FAMILIES}
LLAMA3_VOCAB_SIZE = 128_000
SMOLLM_VOCAB_SIZE = 49_152


class NewRecipeError(Exception):
    """Bad input to new-recipe: one line, exit code 2."""


# ---------------------------------------------------------------- model family


def detect_family(model: str, family: str | None = None) -> Family:
    """The family named by --family, else matched from the model name and (local dirs) config.json."""
    if family is not None:
        if family not in FAMILY_BY_NAME:
            raise NewRecipeError(f"unknown --family {family!r}; known: {', '.join(FAMILY_BY_NAME)}")
        return FAMILY_BY_NAME[family]
    config = read_model_config(model)
    model_type = config.get("model_type")
    by_name = [f for f in FAMILIES if any(s in model_name(model).lower() for s in f.match)]
    if model_type is None:
        if by_name:
            return by_name[0]
        raise NewRecipeError(
            f"cannot tell the model family of {model!r}; pass --family ({', '.join(FAMILY_BY_NAME)})"
        )
    for candidate in by_name:
        if model_type in candidate.model_types:
            return candidate
    if model_type == "llama":
        return FAMILY_BY_NAME[llama_variant(config)]
    for candidate in FAMILIES:
        if model_type in candidate.model_types:
            return candidate
    raise NewRecipeError(
        f"{model}: config.json model_type {model_type!r} is not a known family; "
        f"pass --family ({', '.join(FAMILY_BY_NAME)})"
    )


def llama_variant(config: dict[str, Any]) -> str:
    """Llama-architecture models differ in tokenizer, which the vocabulary size tells apart."""
    vocab_size = int(config.get("vocab_size") or 0)
    if vocab_size >= LLAMA3_VOCAB_SIZE:
        return "llama3"
    return "smollm" if vocab_size == SMOLLM_VOCAB_SIZE else "llama2"


def read_model_config(model: str) -> dict[str, Any]:
    """config.json of a local model directory; {} for a hub id (never fetched)."""
    path = Path(model).expanduser()
    if not path.exists():
        if looks_local(model):
            raise NewRecipeError(f"local model path does not exist: {model}")
        return {}
    config_file = path / "config.json"
    if not config_file.is_file():
        return {}
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise NewRecipeError(f"{config_file}: invalid JSON: {error}") from None
    return config if isinstance(config, dict) else {}


def model_name(model: str) -> str:
    return Path(model.rstrip("/")).name or model


def slug(model: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", model_name(model).lower()).strip("-.") or "model"


# ---------------------------------------------------------------- line-based YAML edits


def render_value(key: str, value: Any, indent: str) -> list[str]:
    """`key: value` line(s) at `indent`; multi-line strings become a literal block."""
    if isinstance(value, str) and "\n" in value:
        return [f"{indent}{key}: |-"] + [f"{indent}  {line}" if line else "" for line in value.split("\n")]
    if isinstance(value, (list, tuple)):
        return [f"{indent}{key}: [{', '.join(render_scalar(item) for item in value)}]"]
    return [f"{indent}{key}: {render_scalar(value)}"]


def render_scalar(value: Any) -> str:
    if isinstance(value, str):
        plain = re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*", value)
        if plain and yaml.safe_load(value) == value:
            return value
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    return json.dumps(value)


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def is_blank_or_comment(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


class YamlLines:
    """A recipe's text as lines, with in-place edits of `key` at the top level or one section deep."""

    def __init__(self, text: str, source: Path):
        self.lines = text.splitlines()
        self.source = source

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def section_span(self, section: str | None) -> tuple[int, int, str] | None:
        """(first body line, end, child indent) of a top-level block mapping; None if the section is absent."""
        if section is None:
            return 0, len(self.lines), ""
        start = next(
            (i for i, line in enumerate(self.lines) if re.match(rf"{re.escape(section)}:(\s|$)", line)), None
        )
        if start is None:
            return None
        if not is_blank_or_comment(self.lines[start].split(":", 1)[1]):
            raise NewRecipeError(f"{self.source}: {section}: new-recipe edits block-style sections only")
        end = start + 1
        while end < len(self.lines) and (not self.lines[end] or self.lines[end][0] in " #"):
            end += 1
        while end > start + 1 and (not self.lines[end - 1].strip() or self.lines[end - 1].startswith("#")):
            end -= 1  # blank lines and top-level comments before the next section stay outside
        children = [line for line in self.lines[start + 1 : end] if not is_blank_or_comment(line)]
        return start + 1, end, " " * (indent_of(children[0]) if children else 2)

    def find_key(self, start: int, end: int, indent: str, key: str) -> tuple[int, int] | None:
        """(first, end) lines of `key`'s entry, its continuation lines included."""
        pattern = re.compile(rf"{indent}{re.escape(key)}:(\s|$)")
        first = next((i for i in range(start, end) if pattern.match(self.lines[i])), None)
        if first is None:
            return None
        last = first + 1
        while last < end and self._continues(self.lines[last], len(indent)):
            last += 1
        while last > first + 1 and not self.lines[last - 1].strip():
            last -= 1
        return first, last

    @staticmethod
    def _continues(line: str, indent: int) -> bool:
        if not line.strip():
            return True
        return indent_of(line) > indent or (indent_of(line) == indent and line.lstrip().startswith("- "))

    def set(self, section: str | None, key: str, value: Any) -> bool:
        """Set `key` (replacing or appending); False if the section is absent."""
        span = self.section_span(section)
        if span is None:
            return False
        start, end, indent = span
        new = render_value(key, value, indent)
        found = self.find_key(start, end, indent, key)
        if found is None:
            at = end if section is not None else self._top_insert_point()
            self.lines[at:at] = new
        else:
            self.lines[found[0] : found[1]] = new
        return True

    def delete(self, section: str | None, key: str) -> None:
        span = self.section_span(section)
        if span is None:
            return
        found = self.find_key(*span, key)
        if found is not None:
            del self.lines[found[0] : found[1]]

    def _top_insert_point(self) -> int:
        """After the leading comment block of the file."""
        index = 0
        while index < len(self.lines) and is_blank_or_comment(self.lines[index]):
            index += 1
        return index


# ---------------------------------------------------------------- the fork


def fork_text(text: str, source: Path, model: str, family: Family, out_name: str) -> str:
    """The source recipe's text with the per-model keys replaced."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise NewRecipeError(f"{source}: a recipe must be a mapping of sections")
    output_dir = f"outputs/{out_name}"
    doc = YamlLines(text, source)
    doc.set(None, "output_dir", output_dir)
    if not doc.set("model", "model_name_or_path", model):
        raise NewRecipeError(f"{source}: model: required section is missing")
    doc.set("model", "chat_template", family.chat_template)
    doc.set("model", "lora_target_modules", list(family.lora_target_modules))
    set_or_delete(doc, "model", "pad_token", family.pad_token)
    for stage in ("sft", "dpo"):
        if not isinstance(data.get(stage), dict):
            continue
        if stage == "sft":
            set_or_delete(doc, stage, "eos_token", family.eos_token)
        if "output_dir" in data[stage]:
            doc.set(stage, "output_dir", f"{output_dir}/{stage}")
    header = f"# Forked from {source} by `westwind new-recipe --model {model}` (family: {family.name})."
    return header + "\n" + doc.text()


def set_or_delete(doc: YamlLines, section: str, key: str, value: Any) -> None:
    if value is None:
        doc.delete(section, key)
    else:
        doc.set(section, key, value)


def check_edits(text: str, model: str, family: Family) -> None:
    """Guard the line editor: the written YAML must hold exactly the intended values."""
    data = yaml.safe_load(text)
    expected = {
        "model_name_or_path": model,
        "chat_template": family.chat_template,
        "lora_target_modules": list(family.lora_target_modules),
        "pad_token": family.pad_token,
    }
    for key, value in expected.items():
        if data["model"].get(key) != value:
            raise RuntimeError(f"new-recipe wrote model.{key}={data['model'].get(key)!r}, expected {value!r}")


def write_validated(text: str, out: Path) -> None:
    """Validate through a temporary file beside `out`, then move it into place (atomic on one filesystem)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        try:
            load_recipe(tmp)
        except RecipeError as error:
            raise NewRecipeError(str(error).replace(str(tmp), str(out), 1)) from None
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def new_recipe(
    source: Path, model: str, out: Path | None, family: str | None, force: bool
) -> tuple[Path, Family]:
    if not source.is_file():
        raise NewRecipeError(f"{source}: recipe file not found")
    chosen = detect_family(model, family)
    out = out or source.parent / f"{slug(model)}.yaml"
    if out.exists() and not force:
        raise NewRecipeError(f"{out} exists; pass --force to overwrite it")
    if out.resolve() == source.resolve():
        raise NewRecipeError(f"{out} is the source recipe; choose another --out")
    try:
        text = fork_text(source.read_text(), source, model, chosen, out.stem)
    except yaml.YAMLError as error:
        raise NewRecipeError(f"{source}: invalid YAML: {error}") from None
    check_edits(text, model, chosen)
    write_validated(text, out)
    return out, chosen


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every westwind input error
        print(f"error: new-recipe: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="westwind new-recipe", description="Fork a recipe for another base model.")
    parser.add_argument("--from", dest="source", required=True, type=Path, help="recipe to fork")
    parser.add_argument("--model", required=True, help="hub id or local model directory (with config.json)")
    parser.add_argument(
        "--out", type=Path, help="output recipe (default: beside --from, named after the model)"
    )
    parser.add_argument("--family", choices=list(FAMILY_BY_NAME), help="override the detected model family")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        out, family = new_recipe(args.source, args.model, args.out, args.family, args.force)
    except NewRecipeError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {out} (family {family.name}); check it with: westwind check {out}")
    report_template_lint(out)


def report_template_lint(out: Path) -> None:
    """Say what the chat-template lint finds in the forked recipe (its tokenizer loads; no model does)."""
    from westwind.recipe.template_check import lint_summary

    lines = lint_summary(load_recipe(out))
    print("\n".join(f"westwind: {out}: {line}" for line in lines))
    if any(line.startswith("error") for line in lines):
        print(f"westwind: fix the error(s) above before running {out} (docs/templates.md)")


if __name__ == "__main__":
    main()
