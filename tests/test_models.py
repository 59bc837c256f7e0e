"""Model loading: stop tokens follow the chat template; dtype policy for full training."""

from __future__ import annotations

from westwind.recipe.core import ModelArgs
from westwind.training import models


def test_chatml_models_stop_at_im_end(tiny_models):
    path = str(tiny_models["qwen2"])
    args = ModelArgs(model_name_or_path=path, chat_template="chatml", dtype="float32")
    tokenizer = models.load_tokenizer(path, args)
    model = models.load_causal_lm(path, args, tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token_id == im_end
    assert im_end in model.generation_config.eos_token_id
    assert tokenizer.convert_tokens_to_ids("</s>") in model.generation_config.eos_token_id


def fraction_of_weights_changed(tmp_path, tiny_model, sft_jsonl, dpo_jsonl) -> tuple[float, set]:
    """Full dSFT of a bf16 recipe at a small learning rate (4 steps, bf16 autocast on the CPU)."""
    import torch
    from conftest import tiny_recipe, write_recipe

    from westwind.recipe.core import load_recipe
    from westwind.training import data
    from westwind.training import trainer as training

    tweaks = {"bf16": True, "use_cpu": True, "learning_rate": 5e-7, "max_steps": 4, "warmup_steps": 0}
    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, sft=tweaks)
    raw["model"]["dtype"] = "bfloat16"
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", raw), stage="sft")
    trainer = training.sft_trainer(recipe, data.sft_dataset(recipe.sft_data.datasets, None, 0, False))
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    changed = sum((p.detach() != before[n]).sum().item() for n, p in trainer.model.named_parameters())
    total = sum(p.numel() for p in before.values())
    return changed / total, {p.dtype for p in trainer.model.parameters()} - {torch.float32}


def test_full_training_outside_zero_keeps_small_updates(
    tmp_path, tiny_model, sft_jsonl, dpo_jsonl, monkeypatch
):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    changed, low_precision = fraction_of_weights_changed(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    assert changed > 0.5, f"only {changed:.1%} of weights moved: bf16 weights without a master copy"
    assert low_precision == set(), "weights are trained in fp32 (bf16 is the autocast compute dtype)"


def test_deepspeed_and_fsdp_keep_the_recipes_dtype(monkeypatch):
    args = ModelArgs(model_name_or_path="m", dtype="bfloat16")
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert models.full_training_dtype(args) == "float32"
    for flag in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"):
        monkeypatch.setenv(flag, "true")
        assert models.full_training_dtype(args) == "bfloat16"
        monkeypatch.delenv(flag)
    assert models.full_training_dtype(ModelArgs(model_name_or_path="m", dtype="float32")) == "float32"


def test_packing_follows_the_attention_that_runs(monkeypatch, capsys):
    monkeypatch.setattr(models, "is_flash_attn_2_available", lambda: True)
    assert models.sft_packing(True, "flash_attention_2") is True
    assert "packs sequences (attn_implementation=flash_attention_2" in capsys.readouterr().out
    monkeypatch.setattr(models, "is_flash_attn_2_available", lambda: False)
    assert models.sft_packing(True, "flash_attention_2") is False
    assert "pads instead of packing" in capsys.readouterr().out
    assert models.sft_packing(True, "sdpa") is True
    assert "ONE dense row" in capsys.readouterr().out
    assert models.sft_packing(False, "flash_attention_2") is False


def test_a_packing_recipe_pads_when_flash_attention_is_missing(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    from conftest import tiny_recipe, write_recipe

    from westwind.recipe.core import load_recipe
    from westwind.training import data
    from westwind.training import trainer as training

    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, sft={"packing": True, "max_length": 256})
    raw["model"]["attn_implementation"] = "flash_attention_2"  # not installed here: sdpa runs
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", raw), stage="sft")
    trainer = training.sft_trainer(recipe, data.sft_dataset(recipe.sft_data.datasets, None, 0, False))
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == recipe.sft.per_device_train_batch_size, (
        "padded rows, not one packed row"
    )
