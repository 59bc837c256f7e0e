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


@pytest.mark.parametrize(
    ("lora", "reference"),
    [(True, "sft"), (False, "sft"), (True, "previous")],
    ids=["lora-sft", "full-sft", "lora-previous"],
)
def test_round_two_reference_is_the_dsft_model_or_round_ones(
    tmp_path, tiny_model, sft_jsonl, dpo_jsonl, lora, reference
):
    """Iterative dDPO (westwind.rounds): round 2's policy starts from round 1's model; its reference is that
    model (`previous`) or the dSFT model (`sft`: under LoRA neither TRL's copy of the policy's adapter nor the
    policy's start, so a separate reference model)."""
    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, sft={"max_steps": 3, "learning_rate": 1e-2})
    raw["dpo"].update({"max_steps": 3, "learning_rate": 1e-2})
    raw["rounds"] = {"count": 2, "reference": reference}
    path = write_recipe(tmp_path / "r.yaml", raw)
    overrides = ["--model.use_peft", str(lora).lower(), "--model.lora_r", "4"]
    recipe = load_recipe(path, overrides, stage="sft")
    sft = training.sft_trainer(recipe, data.sft_dataset(recipe.sft_data.datasets, None, 0, False))
    sft.train()
    training.finish(sft, recipe, "sft")
    first = load_recipe(path, [*overrides, "--round", "1"], stage="dpo")
    policy_path, datasets = data.dpo_inputs(first)
    round_one = training.dpo_trainer(first, data.dpo_dataset(datasets, None, 0, False), policy_path)
    round_one.train()
    training.finish(round_one, first, "dpo")

    second = load_recipe(path, [*overrides, "--round", "2"], stage="dpo")
    policy_path, datasets = data.dpo_inputs(second)
    assert policy_path == str(first.stage_dir("dpo").resolve())
    trainer = training.dpo_trainer(second, data.dpo_dataset(datasets, None, 0, False), policy_path)
    batch = next(iter(trainer.get_train_dataloader()))
    logps = torch.cat(trainer.compute_ref_log_probs(trainer.ref_model or trainer.model, batch))
    dsft = sequence_logps(load_as_trained(recipe.stage_dir("sft")), batch)
    round_one_model = sequence_logps(load_as_trained(first.stage_dir("dpo")), batch)
    assert not torch.allclose(dsft, round_one_model, atol=1e-2), "round 1 left the model unchanged: vacuous"
    expected = dsft if reference == "sft" else round_one_model
    torch.testing.assert_close(logps, expected, atol=1e-4, rtol=1e-5)
    policy = sequence_logps(trainer.model.eval(), batch)  # the policy itself starts as round 1's model
    torch.testing.assert_close(policy, round_one_model, atol=1e-4, rtol=1e-5)
