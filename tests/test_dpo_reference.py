"""At step 0 the DPO reference is the dSFT model in every mode, never the base model (the anchor's PEFT bug)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_recipe, write_recipe
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM

from westwind.recipe.core import load_recipe
from westwind.training import data
from westwind.training import trainer as training


def sequence_logps(model, batch) -> torch.Tensor:
    """Summed completion log-probs, computed directly (not through TRL)."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    token_logps = logits.log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (token_logps * batch["completion_mask"][:, 1:]).sum(-1)


def load_as_trained(path):
    try:
        return AutoPeftModelForCausalLM.from_pretrained(path).merge_and_unload().eval()
    except ValueError:
        return AutoModelForCausalLM.from_pretrained(path).eval()


@pytest.mark.parametrize(
    ("sft_lora", "dpo_lora", "precompute"),
    [
        (False, False, False),
        (False, True, False),
        (True, True, False),
        (True, False, False),
        (True, True, True),
    ],
    ids=["full-full", "full-lora", "lora-lora", "lora-full(merged)", "lora-lora-precomputed"],
)
def test_reference_logps_equal_the_dsft_model(
    tmp_path, tiny_model, sft_jsonl, dpo_jsonl, sft_lora, dpo_lora, precompute
):
    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, sft={"max_steps": 3, "learning_rate": 1e-2})
    path = write_recipe(tmp_path / "r.yaml", raw)
    overrides = ["--model.use_peft", str(sft_lora).lower(), "--model.lora_r", "4"]
    recipe = load_recipe(path, overrides, stage="sft")
    sft = training.sft_trainer(recipe, data.sft_dataset(recipe.sft_data.datasets, None, 0, False))
    sft.train()
    training.finish(sft, recipe, "sft")

    dpo_overrides = ["--model.use_peft", str(dpo_lora).lower(), "--model.lora_r", "4"]
    dpo_overrides += ["--precompute_ref_log_probs", str(precompute).lower()]
    recipe = load_recipe(path, dpo_overrides, stage="dpo")
    policy_path, datasets = data.dpo_inputs(recipe)
    trainer = training.dpo_trainer(recipe, data.dpo_dataset(datasets, None, 0, False), policy_path)
    batch = next(iter(trainer.get_train_dataloader()))
    if precompute:
        reference = torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]])
    else:
        reference = torch.cat(trainer.compute_ref_log_probs(trainer.ref_model or trainer.model, batch))

    dsft = sequence_logps(load_as_trained(recipe.stage_dir("sft")), batch)
    base = sequence_logps(AutoModelForCausalLM.from_pretrained(tiny_model).eval(), batch)
    torch.testing.assert_close(reference, dsft, atol=1e-4, rtol=1e-5)
    assert not torch.allclose(dsft, base, atol=1e-2), (
        "dSFT training left the model unchanged: test is vacuous"
    )
