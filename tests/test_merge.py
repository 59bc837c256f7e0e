"""`westwind merge`: an adapter merged into its unquantized base computes what the adapter model computes."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_recipe, write_recipe
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from westwind import merge
from westwind.demo.tiny import build_model

TEXT = "<|user|>\nreverse: the quick dog</s>\n<|assistant|>\ndog quick the"


def logits(model, tokenizer) -> torch.Tensor:
    inputs = tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits.float()


def save_random_adapter(base, adapter_dir, tokenizer) -> None:
    """An adapter with non-zero B matrices (a fresh LoRA is the identity), as training would leave it."""
    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)


def merge_recipe(tmp_path, model_dir, sft_jsonl, dpo_jsonl, **model):
    recipe = tiny_recipe(tmp_path, model_dir, sft_jsonl, dpo_jsonl, model=model)
    del recipe["dpo"]
    return write_recipe(tmp_path / "recipe.yaml", recipe)


def test_lora_merge_matches_the_adapter_model(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, capsys):
    recipe = merge_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, use_peft=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    save_random_adapter(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "out" / "sft", tokenizer)

    merge.main([str(recipe)])

    out = tmp_path / "out" / "sft-merged"
    assert "westwind: sft merged into" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    assert not list(out.glob("*.bin")) and not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    base_logits = logits(base, tokenizer)
    adapter_logits = logits(PeftModel.from_pretrained(base, tmp_path / "out" / "sft"), tokenizer)
    merged_logits = logits(merged, tokenizer)
    assert (adapter_logits - base_logits).abs().max() > 1e-2, "the adapter must change the model"
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-4, rtol=1e-4)
    saved = AutoTokenizer.from_pretrained(out)
    assert saved.chat_template and "<|assistant|>" in saved.chat_template  # the recipe's zephyr template
    card = (out / "README.md").read_text()
    assert "recipe.yaml" in card and "merged into the base model loaded unquantized in `float32`" in card


def test_qlora_merge_is_into_unquantized_weights(tmp_path, tiny_corpus, sft_jsonl, dpo_jsonl):
    # bitsandbytes' CPU 4-bit kernels need layers at least one quant block (64) wide.
    from westwind.demo.tiny import build_tokenizer

    model_dir = tmp_path / "wide"
    tokenizer = build_tokenizer(tiny_corpus, vocab_size=400)
    tokenizer.save_pretrained(model_dir)
    build_model("llama", tokenizer, hidden_size=64, num_layers=2, num_heads=4).save_pretrained(model_dir)
    quantization = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    recipe = merge_recipe(tmp_path, model_dir, sft_jsonl, dpo_jsonl, use_peft=True, **quantization)
    four_bit = BitsAndBytesConfig(**quantization, bnb_4bit_compute_dtype=torch.float32)
    quantized_base = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=four_bit)
    adapter_dir = tmp_path / "out" / "sft"
    save_random_adapter(quantized_base, adapter_dir, tokenizer)

    merge.main([str(recipe), "--dtype", "float32", "--out", str(tmp_path / "merged")])

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert merged.dtype == torch.float32
    assert not any("4bit" in type(module).__name__ for module in merged.modules())
    assert "quantization_config" not in json.loads((tmp_path / "merged" / "config.json").read_text())
    unquantized_base = AutoModelForCausalLM.from_pretrained(model_dir)
    adapter_logits = logits(PeftModel.from_pretrained(unquantized_base, adapter_dir), tokenizer)
    torch.testing.assert_close(logits(merged, tokenizer), adapter_logits, atol=1e-4, rtol=1e-4)
    # The model as trained (4-bit base + adapter) agrees up to the base's 4-bit rounding error.
    quantized_base = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=four_bit)
    qlora_logits = logits(PeftModel.from_pretrained(quantized_base, adapter_dir), tokenizer)
    gap = (qlora_logits - adapter_logits).abs().max().item()
    assert 0 < gap < 0.5 * adapter_logits.abs().max().item()


def test_full_model_stage_is_copied_not_merged(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, capsys):
    recipe = merge_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    stage_dir = tmp_path / "out" / "sft"
    AutoModelForCausalLM.from_pretrained(tiny_model).save_pretrained(stage_dir)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(stage_dir)
    (stage_dir / "checkpoint-4").mkdir()
    (stage_dir / "training_args.bin").write_bytes(b"pickle")

    merge.main([str(recipe), "--stage", "sft"])

    out = tmp_path / "out" / "sft-merged"
    assert "westwind: sft copied into" in capsys.readouterr().out
    assert (out / "model.safetensors").read_bytes() == (stage_dir / "model.safetensors").read_bytes()
    assert not (out / "checkpoint-4").exists() and not (out / "training_args.bin").exists()
    assert "copied it without re-merging" in (out / "README.md").read_text()


def test_merge_before_the_stage_ran_is_one_line_error(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, capsys):
    recipe = merge_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, use_peft=True)
    with pytest.raises(SystemExit) as exit_info:
        merge.main([str(recipe)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {recipe}: sft: ") and "run the sft stage first" in error
    assert not (tmp_path / "out" / "sft-merged").exists()


def test_push_to_hub_only_when_asked(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, monkeypatch):
    import huggingface_hub

    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, exist_ok=False):
            calls.append(("create_repo", repo_id, exist_ok))

        def upload_folder(self, repo_id, folder_path):
            calls.append(("upload_folder", repo_id, folder_path))

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    recipe = merge_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    AutoModelForCausalLM.from_pretrained(tiny_model).save_pretrained(tmp_path / "out" / "sft")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path / "out" / "sft")

    merge.main([str(recipe)])
    assert calls == []
    merge.main([str(recipe), "--push-to-hub", "me/tiny-sft"])
    out = str(tmp_path / "out" / "sft-merged")
    assert calls == [("create_repo", "me/tiny-sft", True), ("upload_folder", "me/tiny-sft", out)]
