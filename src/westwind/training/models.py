"""Load tokenizers and models the way every stage needs them, and build the DPO policy from the dSFT output."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import is_flash_attn_2_available
from trl import get_peft_config, get_quantization_config

from westwind.training.chat_templates import apply_chat_template_choice

logger = logging.getLogger(__name__)


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str | Path) -> str:
    return json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]


def _hub_kwargs(name_or_path: str, model_args) -> dict[str, Any]:
    """Revision applies to the recipe's base model only; local outputs (sft, merged) have none."""
    revision = model_args.model_revision if name_or_path == model_args.model_name_or_path else None
    return {"revision": revision or "main", "trust_remote_code": model_args.trust_remote_code}


def load_tokenizer(name_or_path: str, model_args, **hub) -> PreTrainedTokenizerBase:
    """The tokenizer with the recipe's chat template (or its own), and a pad token. `hub`: more from_pretrained
    options (the template lint passes local_files_only)."""
    return prepare_tokenizer(load_raw_tokenizer(name_or_path, model_args, **hub), model_args)


def load_raw_tokenizer(name_or_path: str, model_args, **hub) -> PreTrainedTokenizerBase:
    """The tokenizer as saved (its own chat template, if any); an adapter folder without one: its base's."""
    if is_adapter_dir(name_or_path) and not (Path(name_or_path) / "tokenizer_config.json").exists():
        name_or_path = adapter_base(name_or_path)
    return AutoTokenizer.from_pretrained(name_or_path, **_hub_kwargs(name_or_path, model_args), **hub)


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, model_args) -> PreTrainedTokenizerBase:
    """The recipe's chat template and pad token on a loaded tokenizer."""
    apply_chat_template_choice(tokenizer, model_args.chat_template)
    if model_args.pad_token is not None:
        tokenizer.pad_token = model_args.pad_token
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def attn_implementation(requested: str | None) -> str | None:
    """flash_attention_2 when it can run; otherwise sdpa, said out loud."""
    effective = usable_attn(requested)
    if effective != requested:
        say(f"flash-attn is not installed (or no CUDA); falling back to attn_implementation={effective}")
    return effective


def usable_attn(requested: str | None) -> str | None:
    return "sdpa" if requested == "flash_attention_2" and not is_flash_attn_2_available() else requested


def has_varlen_kernel(attn: str | None) -> bool:
    """flash-attention kernels (flash_attention_2/3, hub flash-attn kernels) attend within each packed sequence."""
    return attn is not None and "flash" in attn


def sft_packing(packing: bool, requested_attn: str | None) -> bool:
    """Whether dSFT packs rows, following the attention that will run; the choice is printed.

    Packed rows are cheap only with a variable-length flash-attention kernel. With sdpa or eager, a packed batch
    becomes one dense row (16 x 2048 tokens attend as one 32k-token row: 16x the attention compute and a
    32k x 32k mask). A recipe that packs for flash_attention_2 pads instead when flash-attn is missing; a recipe
    that asks for packing with sdpa/eager itself gets it, with a warning.
    """
    if not packing:
        return False
    attn = usable_attn(requested_attn)
    if has_varlen_kernel(attn):
        say(f"dSFT packs sequences (attn_implementation={attn} has a variable-length kernel)")
        return True
    if has_varlen_kernel(requested_attn):
        say(f"dSFT pads instead of packing: packing was set for {requested_attn}, which cannot run here")
        return False
    say(
        f"WARNING: dSFT packs sequences with attn_implementation={attn or 'default (sdpa)'}: each batch "
        f"attends as ONE dense row of batch x max_length tokens; use flash_attention_2, or packing: false"
    )
    return True


def say(message: str) -> None:
    logger.warning(message)
    print(f"westwind: {message}")


def model_init_kwargs(name_or_path: str, model_args, quantize: bool = True) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        **_hub_kwargs(name_or_path, model_args),
        "dtype": model_args.dtype,
        "attn_implementation": attn_implementation(model_args.attn_implementation),
    }
    quantization_config = get_quantization_config(model_args) if quantize else None
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = kbit_device_map()
    return kwargs


def kbit_device_map() -> dict[str, Any] | None:
    """Quantized weights go to this process's accelerator as a whole (one copy per rank under DDP)."""
    from accelerate import PartialState

    state = PartialState()
    if state.device.type == "cpu" or _launch_flag("ACCELERATE_USE_FSDP"):
        return None  # FSDP-QLoRA shards the quantized weights itself
    return {"": state.local_process_index}


def load_causal_lm(
    name_or_path: str,
    model_args,
    tokenizer: PreTrainedTokenizerBase | None = None,
    quantize: bool = True,
    **kwargs,
) -> PreTrainedModel:
    """A causal LM with the recipe's dtype, attention and quantization; embeddings grown to the tokenizer."""
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, **{**model_init_kwargs(name_or_path, model_args, quantize), **kwargs}
    )
    if tokenizer is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        stop_at_turn_end(model, tokenizer)
    return model


def stop_at_turn_end(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Add the tokenizer's EOS (e.g. ChatML's <|im_end|>, set by the chat template) to the generation config's
    stop tokens, so the saved model stops at the end of its turn (Qwen base models stop at <|endoftext|> only)."""
    eos_id = tokenizer.eos_token_id
    stops = model.generation_config.eos_token_id
    stops = [] if stops is None else [stops] if isinstance(stops, int) else list(stops)
    if eos_id is not None and eos_id not in stops:
        model.generation_config.eos_token_id = [eos_id, *stops]


LOW_PRECISION = ("bfloat16", "float16")


def full_training_dtype(model_args, mixed_precision: bool) -> str | None:
    """The dtype to load weights in for full fine-tuning.

    Outside DeepSpeed/FSDP the optimizer updates the loaded weights themselves: AdamW on bf16 weights has no
    fp32 master copy, so updates below bf16's resolution (~0.4% of a weight) vanish. Such runs load fp32
    weights and compute in bf16 under the trainer's autocast (`bf16: true`). DeepSpeed keeps fp32 master
    weights of its own, and accelerate upcasts FSDP's parameters to fp32 when mixed precision is on (`bf16` or
    `fp16` in the stage), so those keep the recipe's dtype.
    """
    if model_args.dtype not in LOW_PRECISION or optimizer_keeps_master_weights(mixed_precision):
        return model_args.dtype
    say(
        f"full fine-tuning without fp32 master weights (no DeepSpeed; no FSDP with bf16/fp16): loading fp32 "
        f"weights (not {model_args.dtype}) so "
        f"AdamW keeps small updates; bf16/fp16 compute comes from the trainer's autocast"
    )
    return "float32"


def optimizer_keeps_master_weights(mixed_precision: bool) -> bool:
    """True under DeepSpeed, or FSDP with mixed precision (as `accelerate launch` announces them): both keep
    fp32 master weights. accelerate upcasts FSDP's parameters only when mixed precision is on; without it
    FSDP trains the loaded (bf16) weights themselves."""
    if _launch_flag("ACCELERATE_USE_DEEPSPEED"):
        return True
    return _launch_flag("ACCELERATE_USE_FSDP") and mixed_precision


def _launch_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def training_dtype(model_args, peft_config, mixed_precision: bool) -> str | None:
    """The recipe's dtype for adapter training (PEFT keeps its adapters in fp32); see full_training_dtype."""
    return model_args.dtype if peft_config is not None else full_training_dtype(model_args, mixed_precision)


def uniform_dtype_for_fsdp_qlora(model, model_args) -> int:
    """Under FSDP-QLoRA, cast every floating parameter to `bnb_4bit_quant_storage`; returns how many were cast.

    FSDP flattens each wrapped unit into one tensor of one dtype, and the packed 4-bit weights are stored in
    `bnb_4bit_quant_storage`. Continuing a QLoRA adapter leaves fp32 tensors beside them:
    `prepare_model_for_kbit_training` upcasts norms and embeddings, and TRL's frozen "ref" adapter is created
    in fp32. Without the cast FSDP stops with "Must flatten tensors with uniform dtype".
    """
    if not (model_args.load_in_4bit and _launch_flag("ACCELERATE_USE_FSDP")):
        return 0
    import torch  # lazy: models.py is imported by light commands too

    storage = getattr(torch, model_args.bnb_4bit_quant_storage)
    mixed = [p for p in model.parameters() if p.is_floating_point() and p.dtype != storage]
    for param in mixed:
        param.data = param.data.to(storage)
    return len(mixed)


def save_adapter(peft_model, state_dict: dict[str, Any], output_dir: Path) -> None:
    """Save the trained ("default") adapter, alone, from a full state dict gathered under FSDP.

    PEFT 0.21 picks adapter tensors by the model's module names, which FSDP1's nested wrappers change
    (`layers.0._fsdp_wrapped_module.self_attn...`), so saving the wrapped model writes an empty adapter. A
    meta-device copy of the architecture with the same LoRA config has the plain names and costs no memory.
    The copy is of the trained model's own class: a reward model's `score` head (trained in full, one of
    PEFT's modules to save) exists only in the sequence-classification class, and a causal-LM copy would
    leave it out of the adapter.
    """
    import copy

    import torch  # lazy: models.py is imported by light commands too
    from peft import get_peft_model

    base = peft_model.get_base_model()
    with torch.device("meta"):
        skeleton = type(base)._from_config(base.config)
    configs = {name: copy.deepcopy(config) for name, config in peft_model.peft_config.items()}
    skeleton = get_peft_model(skeleton, configs.pop("default"), low_cpu_mem_usage=True)
    for name, config in configs.items():  # e.g. TRL's frozen "ref" copy: known, so PEFT leaves it out
        skeleton.add_adapter(name, config, low_cpu_mem_usage=True)
    skeleton.save_pretrained(output_dir, state_dict=state_dict, selected_adapters=["default"])


def sft_model(model_args, tokenizer, mixed_precision: bool):
    """The dSFT policy and the PEFT config (None for full training) for TRL's SFTTrainer."""
    peft_config = get_peft_config(model_args)
    dtype = training_dtype(model_args, peft_config, mixed_precision)
    return load_causal_lm(model_args.model_name_or_path, model_args, tokenizer, dtype=dtype), peft_config


def dpo_policy(sft_path: str, model_args, tokenizer, merged_dir: Path, mixed_precision: bool):
    """The DPO policy and PEFT config. The reference is the dSFT model in every mode:

    - dSFT full, DPO full: the policy is loaded from the dSFT dir; TRL's reference (or precomputed
      log-probs) comes from that same dir.
    - dSFT full, DPO LoRA: a new adapter on the dSFT model; "adapter disabled" is the dSFT model.
    - dSFT LoRA/QLoRA, DPO LoRA/QLoRA: base + the dSFT adapter, trainable; TRL copies it into a frozen
      "ref" adapter. Disabling adapters would give the *base* model: the anchor project's bug.
    - dSFT LoRA, DPO full: the adapter is merged into the base and saved to `merged_dir`, so TRL's
      reference (loaded from the policy's own path) is the merged dSFT model, not the base.
    """
    if not is_adapter_dir(sft_path):
        peft_config = get_peft_config(model_args)
        dtype = training_dtype(model_args, peft_config, mixed_precision)
        return load_causal_lm(sft_path, model_args, tokenizer, dtype=dtype), peft_config
    from peft import PeftModel

    base = adapter_base(sft_path)
    if model_args.use_peft:
        model = load_causal_lm(base, model_args, tokenizer)
        if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model)
        logger.info("DPO continues the dSFT adapter; the recipe's LoRA options apply to dSFT only")
        return PeftModel.from_pretrained(model, sft_path, is_trainable=True), None
    merged = merge_adapter(sft_path, model_args, tokenizer, merged_dir)
    return load_causal_lm(
        merged, model_args, tokenizer, dtype=full_training_dtype(model_args, mixed_precision)
    ), None


def reference_model(sft_path: str, model_args, tokenizer, merged_dir: Path, mixed_precision: bool):
    """The dSFT model as a separate, frozen DPO reference (iterative dDPO's `rounds.reference: sft`): the
    policy then starts from an earlier round's model, so neither TRL's copy of the policy's adapter nor the
    policy's own start is the dSFT model. A dSFT adapter is merged into its base first (into `merged_dir`);
    under QLoRA the reference is quantized like the policy's base."""
    path = (
        merge_adapter(sft_path, model_args, tokenizer, merged_dir) if is_adapter_dir(sft_path) else sft_path
    )
    quantized = model_args.load_in_4bit or model_args.load_in_8bit
    dtype = None if quantized else full_training_dtype(model_args, mixed_precision)
    reference = load_causal_lm(path, model_args, tokenizer, dtype=dtype)
    reference.eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


def merge_adapter(adapter_path: str, model_args, tokenizer, merged_dir: Path) -> str:
    """Merge a LoRA adapter into its (unquantized) base once; later calls and other ranks reuse it.

    Rank 0 merges while the others wait, so the merge must make no collective call: under ZeRO-3 the stage's
    config has already announced DeepSpeed to transformers, whose from_pretrained would then build the model
    under `zero.Init` and gather its shards from every rank (rank 0 would wait in a gather, the others at the
    barrier, for ever). The merge loads a plain model in CPU memory instead (the whole base in the recipe's
    dtype, on rank 0 only).
    """
    from accelerate import PartialState
    from peft import PeftModel

    with PartialState().main_process_first(), without_zero3_init():
        if not (merged_dir / "config.json").exists():
            base = load_causal_lm(adapter_base(adapter_path), model_args, tokenizer, quantize=False)
            merged = PeftModel.from_pretrained(base, adapter_path).merge_and_unload()
            staging = merged_dir.with_name(merged_dir.name + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            merged.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            staging.rename(merged_dir)
    return str(merged_dir)


@contextlib.contextmanager
def without_zero3_init() -> Iterator[None]:
    """transformers and PEFT load and merge plain (unpartitioned) models inside this block, even under ZeRO-3.

    Both ask transformers' global DeepSpeed config (set when a TrainingArguments with DeepSpeed is created)
    whether ZeRO-3 is on; it is hidden here and restored after.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved
