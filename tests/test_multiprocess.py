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


# accelerate's environment for recipes/accelerate/zero3.yaml on CPU ranks: DeepSpeed's CPU accelerator (gloo).
ZERO3_CPU_ENV = {
    "DS_ACCELERATOR": "cpu",
    "ACCELERATE_USE_DEEPSPEED": "true",
    "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
    "ACCELERATE_DEEPSPEED_ZERO3_INIT": "true",
    "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL": "true",
    "ACCELERATE_MIXED_PRECISION": "no",
}


@pytest.mark.slow
def test_zero3_reward_model_from_a_lora_sft_merges_without_hanging(tmp_path, tiny_model, sft_jsonl):
    """rm from a LoRA dSFT under ZeRO-3 on 2 CPU ranks: rank 0 merges the adapter while rank 1 waits, trains,
    and rank 0 alone scores the held-out pairs. Before the merge hid ZeRO-3, rank 0 built the base under
    zero.Init and waited in a gather the other rank never joined. DeepSpeed compiles its CPU shared-memory op on
    first use (minutes on 2 cores; cached in TORCH_EXTENSIONS_DIR after)."""
    pytest.importorskip("deepspeed")
    from peft import LoraConfig, get_peft_model
    from test_rm import rm_recipe
    from transformers import AutoModelForCausalLM

    sft = tmp_path / "out" / "sft"
    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=4, target_modules=["q_proj"])
    )
    lora.peft_config["default"].base_model_name_or_path = str(tiny_model)
    lora.save_pretrained(sft)
    path = rm_recipe(tmp_path, tiny_model, sft_jsonl, model_name_or_path="@sft", use_peft=False, max_steps=2)
    raw = __import__("yaml").safe_load(path.read_text())
    raw["model"]["use_peft"] = True  # the dSFT was LoRA; the reward model trains in full
    write_recipe(path, raw)

    stdout = torchrun("westwind.stages.rm", path, via=REPO / "tests" / "fsdp_on_cpu.py", env=ZERO3_CPU_ENV)

    assert "trained on 2 process(es)" in stdout and "rm held-out accuracy" in stdout
    assert (tmp_path / "out" / "rm" / "sft-merged" / "config.json").is_file()


@pytest.mark.slow
def test_zero3_lora_sft_saves_a_trained_adapter(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    """LoRA (not 4-bit) dSFT under ZeRO-3 on 2 CPU ranks: the saved adapter is gathered whole and trained."""
    pytest.importorskip("deepspeed")
    from safetensors.torch import load_file

    stage = {"max_steps": 2, "per_device_train_batch_size": 4, "save_strategy": "no"}
    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, sft=stage)
    raw["model"].update(use_peft=True, lora_r=4, lora_target_modules=["q_proj", "v_proj"])
    recipe = write_recipe(tmp_path / "recipe.yaml", raw)

    stdout = torchrun("westwind.stages.sft", recipe, via=REPO / "tests" / "fsdp_on_cpu.py", env=ZERO3_CPU_ENV)

    assert "trained on 2 process(es)" in stdout
    adapter = load_file(tmp_path / "out" / "sft" / "adapter_model.safetensors")
    assert len(adapter) == 8  # 2 layers x (q, v) x (A, B)
    assert all(
        tensor.shape[-1] == 4 or tensor.shape[0] == 4 for tensor in adapter.values()
    )  # whole, not shards
    assert all(tensor.abs().sum() > 0 for name, tensor in adapter.items() if "lora_B" in name)  # trained
