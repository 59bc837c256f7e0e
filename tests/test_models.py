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
    assert models.full_training_dtype(args, mixed_precision=True) == "float32"
    for flag in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"):
        monkeypatch.setenv(flag, "true")
        assert models.full_training_dtype(args, mixed_precision=True) == "bfloat16"
        monkeypatch.delenv(flag)
    fp32 = ModelArgs(model_name_or_path="m", dtype="float32")
    assert models.full_training_dtype(fp32, mixed_precision=True) == "float32"


def test_fsdp_without_mixed_precision_loads_fp32_weights(monkeypatch):
    """accelerate upcasts FSDP's parameters only under mixed precision: with `bf16: false` the optimizer would
    update bf16 weights with no fp32 copy, so they load in fp32."""
    args = ModelArgs(model_name_or_path="m", dtype="bfloat16")
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert models.full_training_dtype(args, mixed_precision=False) == "float32"
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert models.full_training_dtype(args, mixed_precision=False) == "bfloat16"


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


def test_fsdp_adapter_save_keeps_a_reward_models_trained_score_head(tmp_path, tiny_model):
    """models.save_adapter (the FSDP save) writes PEFT's modules to save: a reward model's `score` head."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    config = LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, config)
    trained_head = torch.full_like(peft_model.base_model.model.score.modules_to_save["default"].weight, 0.25)
    peft_model.base_model.model.score.modules_to_save["default"].weight.data.copy_(trained_head)

    models.save_adapter(peft_model, peft_model.state_dict(), tmp_path)

    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert torch.equal(saved["base_model.model.score.weight"], trained_head)
    assert sum("lora_A" in key for key in saved) == 2 * model.config.num_hidden_layers


class Zero3Config:
    """What transformers reads from the DeepSpeed config a ZeRO-3 TrainingArguments registers."""

    config = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1}

    def is_zero3(self) -> bool:
        return True


def test_adapter_merge_under_zero3_makes_no_collective_call(tmp_path, tiny_model, monkeypatch):
    """merge_adapter runs on rank 0 alone (main_process_first): under ZeRO-3, a from_pretrained under zero.Init
    there would gather across ranks and hang. The merge loads a plain model; ZeRO-3 stays on around it."""
    import torch.distributed
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from transformers.integrations import deepspeed as hf_deepspeed

    adapter_dir = tmp_path / "adapter"
    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=4, target_modules=["q_proj"])
    )
    lora.save_pretrained(adapter_dir)
    args = ModelArgs(model_name_or_path=str(tiny_model), dtype="float32")
    tokenizer = models.load_tokenizer(str(tiny_model), args)

    def collective(*args, **kwargs):
        raise AssertionError("a collective call inside the rank-0-only merge")

    for name in (
        "all_gather",
        "all_gather_into_tensor",
        "all_reduce",
        "broadcast",
        "barrier",
        "reduce_scatter",
    ):
        monkeypatch.setattr(torch.distributed, name, collective)
    zero3 = Zero3Config()
    hf_deepspeed.set_hf_deepspeed_config(zero3)
    try:
        merged = models.merge_adapter(str(adapter_dir), args, tokenizer, tmp_path / "merged")
        assert hf_deepspeed.is_deepspeed_zero3_enabled(), "ZeRO-3 is announced again after the merge"
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()
    assert (tmp_path / "merged" / "config.json").is_file() and merged == str(tmp_path / "merged")
