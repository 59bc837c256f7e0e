"""Model FLOPs utilisation of a training run: the FLOPs the model needs per trained token, times tokens/s, over
the card's dense bf16 peak.

Per trained token, following PaLM's accounting (Chowdhery et al. 2022, appendix B):
- a trained weight costs 6 FLOPs (forward 2, backward 2 for the activation gradient and 2 for its own);
- a frozen weight (a 4-bit QLoRA base, a frozen LoRA base) costs 4: the backward still carries the activation
  gradient through it to the adapters below, but computes no weight gradient;
- attention costs 12 x layers x attention width x context (QK^T and AV, forward and backward, counted over the
  whole context as PaLM does, causal or not), where context is the token-weighted mean sequence length;
- a reference forward (DPO without precomputed reference log-probs) adds 2 per weight and 4 x layers x
  attention width x context.
Embedding lookups cost nothing and are left out; the output projection (lm_head) is a matmul and counts.
Activation checkpointing's recomputed forward is hardware work, not model work: not counted.

Parameters are counted by their logical number: bitsandbytes packs two 4-bit values in each byte of its storage
tensor (four per bf16 element), so a 4-bit weight's storage holds far fewer elements than the weight.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Dense bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s (no sparsity).
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
}
# LoRA tensors of an adapter other than the trained one (TRL's frozen "ref" copy): not in the policy's forward.
OTHER_ADAPTER = re.compile(r"\.lora_(?:A|B|embedding_A|embedding_B|magnitude_vector)\.(?!default\.)")


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    frozen: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


@dataclass(frozen=True)
class Shape:
    layers: int
    attention_width: int  # heads x head dim (the query width)


def logical_numel(param) -> int:
    """A tensor's number of values; for a bitsandbytes 4-bit weight, the unquantized weight's."""
    quant_state = getattr(param, "quant_state", None)
    if quant_state is not None and getattr(quant_state, "shape", None) is not None:
        shape = quant_state.shape
        numel = 1
        for size in shape:
            numel *= int(size)
        return numel
    if "Params4bit" in type(param).__name__:  # not quantized yet: storage bytes hold two values each
        return param.numel() * param.element_size() * 2
    return param.numel()


def count_parameters(named_parameters: Iterable[tuple[str, object]]) -> ParameterCount:
    """Trainable and frozen weights that the policy's forward uses (embedding tables and other adapters out)."""
    trainable = frozen = 0
    for name, param in named_parameters:
        if "embed" in name or OTHER_ADAPTER.search(name):
            continue
        if param.requires_grad:
            trainable += logical_numel(param)
        else:
            frozen += logical_numel(param)
    return ParameterCount(trainable, frozen)


def model_shape(config) -> Shape:
    config = getattr(config, "text_config", None) or config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return Shape(config.num_hidden_layers, config.num_attention_heads * head_dim)


def token_weighted_context(lengths: Iterable[int]) -> float:
    """The mean sequence length a trained token sits in: sum(L^2) / sum(L)."""
    lengths = [int(n) for n in lengths if n]
    return sum(n * n for n in lengths) / sum(lengths) if lengths else 0.0


def flops_per_token(params: ParameterCount, shape: Shape, context: float, reference_forward: bool) -> float:
    attention = shape.layers * shape.attention_width * context
    flops = 6 * params.trainable + 4 * params.frozen + 12 * attention
    if reference_forward:
        flops += 2 * params.total + 4 * attention
    return float(flops)


def mfu(flops_per_trained_token: float, tokens_per_s: float, peak_tflops: float | None) -> float | None:
    return flops_per_trained_token * tokens_per_s / (peak_tflops * 1e12) if peak_tflops else None


def bf16_peak(device_name: str) -> float | None:
    for name, peak in BF16_PEAK_TFLOPS.items():  # most specific names first
        if all(part in device_name for part in name.split()):
            return peak
    return None
