"""`westwind new-recipe`: per-family fields, comments kept, validated atomic writes, one-line errors, offline."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from westwind.recipe.core import load_recipe
from westwind.recipe.new_recipe import (
    FAMILY_BY_NAME,
    LLAMA3_TEMPLATE,
    YamlLines,
    detect_family,
    main,
    render_value,
)

REPO = Path(__file__).resolve().parents[1]
ZEPHYR = REPO / "recipes" / "zephyr-7b.yaml"
LLAMA = REPO / "recipes" / "llama-3.1-8b.yaml"
QLORA = REPO / "recipes" / "zephyr-7b-qlora.yaml"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("new-recipe tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def fork(*args: str) -> None:
    main(["--from", *args])


def bad_input(capsys, *args: str) -> str:
    """Run main expecting exit 2; return the single stderr line."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def model_dir(root: Path, name: str, **config) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


# ---------------------------------------------------------------- families


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("meta-llama/Llama-3.1-8B", "llama3"),
        ("meta-llama/Llama-2-7b-hf", "llama2"),
        ("TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T", "llama2"),
        ("mistralai/Mistral-7B-v0.1", "mistral"),
        ("Qwen/Qwen2.5-0.5B", "qwen2"),
        ("google/gemma-2-9b", "gemma"),
        ("microsoft/Phi-3-mini-4k-instruct", "phi3"),
        ("microsoft/phi-4", "phi4"),
        ("microsoft/phi-2", "phi"),
        ("HuggingFaceTB/SmolLM2-1.7B", "smollm"),
    ],
)
def test_family_from_the_hub_id(model, family):
    assert detect_family(model).name == family


@pytest.mark.parametrize(
    ("config", "family"),
    [
        ({"model_type": "qwen2"}, "qwen2"),
        ({"model_type": "mistral"}, "mistral"),
        ({"model_type": "llama", "vocab_size": 128256}, "llama3"),
        ({"model_type": "llama", "vocab_size": 49152}, "smollm"),
        ({"model_type": "llama", "vocab_size": 32000}, "llama2"),
        ({"model_type": "gemma2"}, "gemma"),
    ],
)
def test_family_from_a_local_config_json(tmp_path, config, family):
    assert detect_family(str(model_dir(tmp_path, "checkpoint-1200", **config))).name == family


def test_config_json_beats_a_misleading_directory_name(tmp_path):
    assert detect_family(str(model_dir(tmp_path, "llama-finetune", model_type="qwen2"))).name == "qwen2"


# ---------------------------------------------------------------- forking


def test_fork_zephyr_to_llama(tmp_path):
    out = tmp_path / "llama.yaml"
    fork(str(ZEPHYR), "--model", "meta-llama/Llama-3.1-8B", "--out", str(out))
    recipe = load_recipe(out)
    assert recipe.model.model_name_or_path == "meta-llama/Llama-3.1-8B"
    assert recipe.model.chat_template == LLAMA3_TEMPLATE
    assert recipe.model.lora_target_modules == list(FAMILY_BY_NAME["llama3"].lora_target_modules)
    assert (recipe.model.pad_token, recipe.sft.eos_token) == ("<|finetune_right_pad_id|>", "<|eot_id|>")
    assert recipe.output_dir == Path("outputs/llama")
    # untouched settings carry over
    zephyr = load_recipe(ZEPHYR)
    assert (recipe.dpo.beta, recipe.sft.learning_rate) == (zephyr.dpo.beta, zephyr.sft.learning_rate)
    assert recipe.raw["aift"] == zephyr.raw["aift"]


def test_fork_keeps_comments_and_order(tmp_path):
    out = tmp_path / "qwen.yaml"
    fork(str(ZEPHYR), "--model", "Qwen/Qwen2.5-7B", "--out", str(out))
    source = ZEPHYR.read_text().splitlines()
    written = out.read_text().splitlines()
    edited = ("output_dir:", "  model_name_or_path:", "  chat_template:")
    kept = [line for line in source if not line.startswith(edited)]
    position = 0
    for line in kept:  # every other source line appears, in the same order
        position = written.index(line, position) + 1
    assert "  chat_template: chatml" in written


def test_fork_llama_to_qwen_drops_llama_tokens(tmp_path):
    out = tmp_path / "qwen.yaml"
    fork(str(LLAMA), "--model", "Qwen/Qwen2.5-1.5B", "--out", str(out))
    recipe = load_recipe(out)
    assert recipe.model.chat_template == "chatml"
    assert recipe.model.pad_token is None and recipe.sft.eos_token is None
    settings = [line for line in out.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in settings if "<|eot_id|>" in line or "finetune_right_pad" in line]


def test_fork_qlora_to_phi3_sets_fused_projection_targets(tmp_path):
    out = tmp_path / "phi.yaml"
    fork(str(QLORA), "--model", "microsoft/Phi-3-mini-4k-instruct", "--out", str(out))
    model = load_recipe(out).model
    assert model.lora_target_modules == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert model.load_in_4bit and model.lora_r == 16  # the QLoRA settings stay
    assert load_recipe(out).sft.eos_token == "<|end|>"


def test_fork_a_local_model_dir(tmp_path):
    local = model_dir(tmp_path, "my-ckpt", model_type="qwen2")
    out = tmp_path / "mine.yaml"
    fork(str(ZEPHYR), "--model", str(local), "--out", str(out))
    recipe = load_recipe(out)
    assert recipe.model.model_name_or_path == str(local) and recipe.model.chat_template == "chatml"


def test_stage_output_dirs_follow_the_new_root(tmp_path):
    source = tmp_path / "src.yaml"
    source.write_text(
        ZEPHYR.read_text().replace("\nsft:\n", "\nsft:\n  output_dir: outputs/zephyr-7b/sft\n", 1)
    )
    out = tmp_path / "gemma.yaml"
    fork(str(source), "--model", "google/gemma-2-9b", "--out", str(out))
    recipe = load_recipe(out)
    assert recipe.sft.output_dir == "outputs/gemma/sft"
    assert recipe.sft.eos_token == "<end_of_turn>"


def test_default_out_is_beside_the_source(tmp_path):
    source = tmp_path / "zephyr.yaml"
    source.write_text(ZEPHYR.read_text())
    fork(str(source), "--model", "HuggingFaceTB/SmolLM2-1.7B")
    assert load_recipe(tmp_path / "smollm2-1.7b.yaml").model.chat_template == "chatml"


def test_family_override(tmp_path):
    out = tmp_path / "custom.yaml"
    fork(str(ZEPHYR), "--model", "acme/foundation-7b", "--family", "mistral", "--out", str(out))
    assert load_recipe(out).model.chat_template == "zephyr"


# ---------------------------------------------------------------- refusals


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "taken.yaml"
    out.write_text("keep me\n")
    err = bad_input(capsys, "--from", str(ZEPHYR), "--model", "Qwen/Qwen2.5-7B", "--out", str(out))
    assert "--force" in err and out.read_text() == "keep me\n"
    main(["--from", str(ZEPHYR), "--model", "Qwen/Qwen2.5-7B", "--out", str(out), "--force"])
    assert load_recipe(out).model.model_name_or_path == "Qwen/Qwen2.5-7B"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "acme/foundation-7b"], "cannot tell the model family"),
        (["--model", "./no/such/model"], "local model path does not exist"),
        (["--model", "Qwen/Qwen2.5-7B", "--family", "gpt2"], "invalid choice"),
        (["--model"], "expected one argument"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, expected):
    err = bad_input(capsys, "--from", str(ZEPHYR), *args, "--out", str(tmp_path / "x.yaml"))
    assert expected in err
    assert not list(tmp_path.iterdir())


def test_missing_source_recipe(tmp_path, capsys):
    err = bad_input(capsys, "--from", str(tmp_path / "nope.yaml"), "--model", "Qwen/Qwen2.5-7B")
    assert "recipe file not found" in err


def test_invalid_result_is_not_written(tmp_path, capsys):
    source = tmp_path / "broken.yaml"
    source.write_text(ZEPHYR.read_text().replace("  beta: 0.01\n", "  beta: 0.01\n  betta: 2\n"))
    out = tmp_path / "out.yaml"
    err = bad_input(capsys, "--from", str(source), "--model", "Qwen/Qwen2.5-7B", "--out", str(out))
    assert f"{out}: dpo.betta: unknown key" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.yaml"]  # no output, no temp file


@pytest.mark.slow  # a fresh interpreter importing TRL: ~10 s
def test_module_entry_point(tmp_path):
    out = tmp_path / "q.yaml"
    args = ["--from", str(ZEPHYR), "--model", "Qwen/Qwen2.5-0.5B", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "westwind.recipe.new_recipe", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert yaml.safe_load(out.read_text())["model"]["model_name_or_path"] == "Qwen/Qwen2.5-0.5B"


# ---------------------------------------------------------------- the line editor


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "<|eot_id|>",
        "yes",
        "1e-5",
        "a: b",
        "# not a comment",
        "line one\n  indented\n\nlast",
        ["x", "y z"],
    ],
)
def test_rendered_values_round_trip(value):
    text = "\n".join(render_value("key", value, "  "))
    assert yaml.safe_load("section:\n" + text + "\n")["section"]["key"] == value


def test_replacing_a_block_list_and_appending_a_key():
    text = "model:\n  lora_target_modules:\n  - a\n  - b\n  dtype: bfloat16  # kept\nsft:\n  seed: 1\n"
    doc = YamlLines(text, Path("r.yaml"))
    doc.set("model", "lora_target_modules", ["q_proj"])
    doc.set("sft", "pad_token", "<pad>")
    doc.delete("model", "dtype")
    assert doc.text() == 'model:\n  lora_target_modules: [q_proj]\nsft:\n  seed: 1\n  pad_token: "<pad>"\n'


def test_fork_says_what_the_template_lint_found(tmp_path, tiny_model, capsys):
    out = tmp_path / "tiny.yaml"
    fork(str(ZEPHYR), "--model", str(tiny_model), "--family", "llama3", "--out", str(out))
    said = capsys.readouterr().out
    assert out.is_file()  # written, and what the lint found is said
    # The tiny tokenizer has no <|eot_id|> token: llama3's turns would end in plain text.
    assert f"westwind: {out}: error: model.chat_template: turn-end: " in said
    assert f"fix the error(s) above before running {out}" in said
    # It carries a ChatML template of its own; the fork trains it with the llama3 family's: the warning names both.
    assert f"westwind: {out}: warning: model.chat_template: template-mismatch: " in said
    assert "(westwind's chatml)" in said and "another (inline Jinja '{{- bos_token }}')" in said
    fork(str(ZEPHYR), "--model", "Qwen/Qwen2.5-7B", "--out", str(tmp_path / "hub.yaml"))
    assert "template lint skipped (see above)" in capsys.readouterr().out  # hub-only, offline
