"""The alignment-handbook's zephyr-7b-beta settings, as its recipe files publish them, in TRL 1.16's field names.

Read from github.com/huggingface/alignment-handbook (the versions stored in this workplace's code index):
- recipes/zephyr-7b-beta/sft/config_qlora.yaml  @ 0213b5be27f9f60c2f64438244ff8e2fefcba9d0
- recipes/zephyr-7b-beta/dpo/config_qlora.yaml  @ 4231254d7e36eae7038a7df05be5571b5da8d573
- recipes/zephyr-7b-beta/sft/config_full.yaml   @ 19f03455e1b7c0450db769f841ced8e650610c06
- recipes/zephyr-7b-beta/dpo/config_full.yaml   @ 19f03455e1b7c0450db769f841ced8e650610c06

Only the keys that change speed, memory or the computed loss are taken; the handbook leaves the rest at its
TRL version's defaults, so westwind's own defaults that differ are set back here explicitly: no precomputed
reference log-probs, loss on the whole conversation (no assistant-only loss), no packing, weights loaded in
the recipe's dtype. Renamed keys: torch_dtype -> dtype, gradient_checkpointing -> activation_checkpointing,
max_seq_length -> max_length. `max_prompt_length: 512` (DPO) has no TRL 1.16 field and is left out (TRL
truncates the prompt with the completion to max_length). Quantization keys the handbook leaves unset stay at
TRL's defaults (nf4, no nested quantization, bitsandbytes' uint8 storage). Attention: the SFT configs ask for
flash_attention_2 and the DPO configs name none; the benchmark asks for flash_attention_2 in every run (sdpa
where flash-attn is missing), so attention is not what the two variants differ in.
"""

from __future__ import annotations

from typing import Any

LORA = {
    "use_peft": True,
    "load_in_4bit": True,
    "lora_r": 16,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
CHECKPOINTING = {
    "activation_checkpointing": True,
    "activation_checkpointing_kwargs": {"use_reentrant": False},
}
NOT_WESTWIND_DEFAULTS_SFT = {"packing": False, "assistant_only_loss": False}
NOT_WESTWIND_DEFAULTS_DPO = {"precompute_ref_log_probs": False}

# stage -> (model section, stage section, whether full training loads the recipe's dtype as the handbook does)
HANDBOOK: dict[str, dict[str, Any]] = {
    "qlora_sft": {
        "model": {"dtype": "bfloat16", **LORA},
        "stage": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "max_length": 2048,
                  "learning_rate": 2.0e-4, "bf16": True, **CHECKPOINTING, **NOT_WESTWIND_DEFAULTS_SFT},
    },
    "qlora_dpo": {
        "model": {"dtype": "float16", **LORA},
        "stage": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "max_length": 1024,
                  "learning_rate": 5.0e-6, "beta": 0.01, "optim": "paged_adamw_32bit", "bf16": True,
                  **CHECKPOINTING, **NOT_WESTWIND_DEFAULTS_DPO},
    },
    "full_sft": {
        "model": {"dtype": "bfloat16"},
        "stage": {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 1, "max_length": 2048,
                  "learning_rate": 2.0e-5, "bf16": True, **CHECKPOINTING, **NOT_WESTWIND_DEFAULTS_SFT},
    },
    "full_dpo": {
        # torch_dtype: null: the handbook's transformers 4 loaded such a model in float32
        "model": {"dtype": "float32"},
        "stage": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, "max_length": 1024,
                  "learning_rate": 5.0e-7, "beta": 0.01, "optim": "adamw_torch", "bf16": True,
                  **CHECKPOINTING, **NOT_WESTWIND_DEFAULTS_DPO},
    },
}  # fmt: skip
