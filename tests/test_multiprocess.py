"""Two real processes (gloo DDP on CPU) run run_sft and run_dpo end to end.

`accelerate launch --num_processes 2 --cpu` silently starts one process; torchrun starts two.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, tiny_recipe, write_recipe

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(script: str, recipe, *overrides: str, via: Path | None = None, env: dict | None = None) -> str:
    """Two processes of scripts/SCRIPT on the recipe; with `via`, SCRIPT is a module that launcher script runs."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launcher += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    target = [str(via), script] if via else [str(REPO / "scripts" / script)]
    command = [*launcher, *target, str(recipe), *overrides]
    result = subprocess.run(command, capture_output=True, text=True, env={**ENV, **(env or {})}, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def global_step(output_dir) -> int:
    states = sorted(output_dir.glob("checkpoint-*/trainer_state.json"))
    return json.loads(states[-1].read_text())["global_step"]


@pytest.mark.slow
def test_ddp_two_processes_sft_then_dpo(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    # One epoch over 32 rows at 4 per device: 4 steps on 2 processes (8 on one).
    per_stage = {
        "max_steps": -1,
        "num_train_epochs": 1,
        "per_device_train_batch_size": 4,
        "save_strategy": "epoch",
    }
    raw = tiny_recipe(
        tmp_path,
        tiny_model,
        sft_jsonl,
        dpo_jsonl,
        sft=per_stage,
        dpo={**per_stage, "precompute_ref_log_probs": True},
    )
    recipe = write_recipe(tmp_path / "recipe.yaml", raw)

    assert "trained on 2 process(es)" in torchrun("run_sft.py", recipe)
    assert global_step(tmp_path / "out" / "sft") == 4
    assert "trained on 2 process(es)" in torchrun("run_dpo.py", recipe)
    assert global_step(tmp_path / "out" / "dpo") == 4


# accelerate's environment for recipes/accelerate/fsdp_qlora.yaml, minus what needs a GPU to initialise
# (cpu_ram_efficient_loading and sync_module_states build meta tensors on the current accelerator).
FSDP_QLORA_ENV = {
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "1",
    "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    "FSDP_TRANSFORMER_CLS_TO_WRAP": "MistralDecoderLayer",
    "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT",
    "FSDP_SHARDING_STRATEGY": "FULL_SHARD",
    "FSDP_USE_ORIG_PARAMS": "false",
    "FSDP_CPU_RAM_EFFICIENT_LOADING": "false",
    "FSDP_SYNC_MODULE_STATES": "false",
}


@pytest.mark.slow
def test_fsdp_qlora_sft_saves_the_adapter_and_dpo_continues_it(tmp_path, tiny_corpus, sft_jsonl, dpo_jsonl):
    """FSDP-QLoRA on 2 CPU ranks: dSFT's final save holds the adapter (SHARDED_STATE_DICT saved nothing), and
    dDPO from that adapter can be FSDP-wrapped (fp32 norms and TRL's fp32 "ref" adapter were refused)."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from westwind.demo.tiny import build_model, build_tokenizer

    model_dir = tmp_path / "mistral"
    tokenizer = build_tokenizer(tiny_corpus, vocab_size=400)
    tokenizer.save_pretrained(model_dir)  # bitsandbytes' CPU 4-bit kernels need layers at least 64 wide
    build_model("mistral", tokenizer, hidden_size=64, num_layers=2, num_heads=4).save_pretrained(model_dir)
    stage = {"bf16": True, "use_cpu": True, "max_steps": 2, "per_device_train_batch_size": 4}
    raw = tiny_recipe(tmp_path, model_dir, sft_jsonl, dpo_jsonl, sft=stage, dpo=stage)
    raw["model"].update(
        dtype="bfloat16",
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_quant_storage="bfloat16",
        use_peft=True,
        lora_r=8,
        lora_alpha=16,
        lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
    )
    recipe = write_recipe(tmp_path / "recipe.yaml", raw)
    fsdp = {"via": REPO / "tests" / "fsdp_on_cpu.py", "env": FSDP_QLORA_ENV}

    assert "trained on 2 process(es)" in torchrun("westwind.stages.sft", recipe, **fsdp)
    adapter = tmp_path / "out" / "sft"
    assert (adapter / "adapter_model.safetensors").is_file()
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    loaded = PeftModel.from_pretrained(base, adapter)
    assert any("lora_B" in name and param.abs().sum() > 0 for name, param in loaded.named_parameters())

    assert "trained on 2 process(es)" in torchrun("westwind.stages.dpo", recipe, **fsdp)
    dpo_adapter = load_file(tmp_path / "out" / "dpo" / "adapter_model.safetensors")
    assert (
        len(dpo_adapter) == len(load_file(adapter / "adapter_model.safetensors")) == 16
    )  # 4 projections x 2 layers x A, B


@pytest.mark.slow
def test_fsdp_lora_reward_model_keeps_its_trained_score_head(tmp_path, tiny_model, sft_jsonl):
    """A LoRA reward model trained under FSDP on 2 CPU ranks: the saved adapter holds the trained `score` head,
    and the standalone model is merged onto that head, not onto a freshly initialised one."""
    from safetensors.torch import load_file
    from test_rm import rm_recipe
    from transformers import AutoModelForSequenceClassification

    path = rm_recipe(
        tmp_path, tiny_model, sft_jsonl, use_peft=True, max_steps=2, test_split_size=0.1, use_cpu=True
    )
    fsdp_env = {**FSDP_QLORA_ENV, "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer"}
    fsdp = {"via": REPO / "tests" / "fsdp_on_cpu.py", "env": fsdp_env}

    assert "trained on 2 process(es)" in torchrun("westwind.stages.rm", path, "--model.lora_r", "4", **fsdp)

    out = tmp_path / "out" / "rm"
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    head = adapter["base_model.model.score.weight"]
    standalone = AutoModelForSequenceClassification.from_pretrained(out)
    assert standalone.score.weight.shape == head.shape
    assert standalone.score.weight.detach().equal(head.to(standalone.score.weight.dtype))
