"""benchmarks/mfu.py: the MFU formula against hand-computed values, and 4-bit weights counted by their values."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import REPO

if str(REPO) not in sys.path:  # `benchmarks` lives beside `src`, outside the installed package
    sys.path.insert(0, str(REPO))
from benchmarks import mfu  # noqa: E402

# Mistral-7B: 32 layers, hidden 4096, 32 query heads of 128, 8 KV heads, MLP 14336, vocab 32000.
LAYER = 4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336 + 2 * 4096  # q,o + k,v + MLP + 2 norms
MISTRAL_WEIGHTS = 32 * LAYER + 4096 + 32000 * 4096  # + final norm + lm_head (embeddings left out)
# LoRA r=16 on all seven projections: r x (in + out) each.
LORA = 32 * 16 * (2 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 14336))


def test_qlora_mfu_by_hand():
    assert MISTRAL_WEIGHTS == 7_110_660_096 and LORA == 41_943_040
    params = mfu.ParameterCount(trainable=LORA, frozen=MISTRAL_WEIGHTS)
    shape = mfu.Shape(layers=32, attention_width=4096)
    # 6 x 41,943,040 + 4 x 7,110,660,096 + 12 x 32 x 4096 x 1024 (context 1024)
    expected = 251_658_240 + 28_442_640_384 + 1_610_612_736
    assert mfu.flops_per_token(params, shape, 1024.0, reference_forward=False) == expected == 30_304_911_360
    # 3,000 tokens/s on an H100 (989 TFLOP/s): 9.0915e13 / 9.89e14
    assert mfu.mfu(expected, 3000.0, mfu.bf16_peak("NVIDIA H100 80GB HBM3")) == pytest.approx(
        0.091925, abs=1e-6
    )
    # DPO without precomputed reference log-probs: + 2 x all weights + 4 x 32 x 4096 x 1024
    with_reference = expected + 2 * (LORA + MISTRAL_WEIGHTS) + 536_870_912
    assert mfu.flops_per_token(params, shape, 1024.0, reference_forward=True) == with_reference


def test_full_model_mfu_by_hand():
    weights = 1_100_000_000
    params = mfu.ParameterCount(trainable=weights, frozen=0)
    shape = mfu.Shape(layers=22, attention_width=2048)
    # 6 x 1.1e9 + 12 x 22 x 2048 x 512 = 6.6e9 + 276,824,064
    assert mfu.flops_per_token(params, shape, 512.0, reference_forward=False) == 6_876_824_064
    assert mfu.mfu(6_876_824_064, 20_000.0, 989.0) == pytest.approx(0.139066, abs=1e-6)
    assert mfu.mfu(6_876_824_064, 20_000.0, None) is None


def test_token_weighted_context():
    assert mfu.token_weighted_context([100, 300]) == (100**2 + 300**2) / 400 == 250.0
    assert mfu.token_weighted_context([]) == 0.0


def test_four_bit_weights_count_their_values_not_their_storage(tiny_models):
    """bitsandbytes packs two 4-bit values per byte (four per bf16 storage element): the count must not."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    path = tiny_models["mistral"]
    plain = mfu.count_parameters(AutoModelForCausalLM.from_pretrained(path).named_parameters())
    for storage in (torch.uint8, torch.bfloat16):
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_storage=storage, bnb_4bit_compute_dtype=torch.bfloat16
        )
        quantized = AutoModelForCausalLM.from_pretrained(
            path, quantization_config=config, dtype=torch.bfloat16
        )
        storage_elements = sum(p.numel() for n, p in quantized.named_parameters() if "embed" not in n)
        assert storage_elements < plain.total  # what the old count started from
        assert mfu.count_parameters(quantized.named_parameters()).total == plain.total


def test_other_adapters_are_not_counted():
    weight = torch.nn.Parameter(torch.zeros(4, 8), requires_grad=False)
    lora = torch.nn.Parameter(torch.zeros(2, 8))
    named = [("layer.base_layer.weight", weight), ("layer.lora_A.default.weight", lora),
             ("layer.lora_A.ref.weight", torch.nn.Parameter(torch.zeros(2, 8), requires_grad=False)),
             ("model.embed_tokens.weight", torch.nn.Parameter(torch.zeros(100, 8)))]  # fmt: skip
    assert mfu.count_parameters(named) == mfu.ParameterCount(trainable=16, frozen=32)
