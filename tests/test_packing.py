"""Packed and padding-free dSFT batches carry position ids that restart at every sequence (what FA2 relies on)."""

from __future__ import annotations

import pytest
from conftest import tiny_recipe, write_recipe

from westwind.recipe.core import load_recipe
from westwind.training import data
from westwind.training import trainer as training


@pytest.mark.parametrize("mode", ["packing", "padding_free"])
def test_packed_batches_restart_positions_per_sequence(mode, tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    recipe_file = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl))
    # TRL enforces max_length on padding-free rows only when packing; without it, the length must be unset.
    max_length = "256" if mode == "packing" else "null"
    recipe = load_recipe(recipe_file, [f"--{mode}", "true", "--max_length", max_length], stage="sft")
    dataset = data.sft_dataset(recipe.sft_data.datasets, None, 0, False)
    trainer = training.sft_trainer(recipe, dataset)
    batch = next(iter(trainer.get_train_dataloader()))

    assert batch["input_ids"].shape[0] == 1, (
        "a packed/padding-free batch is one row of concatenated sequences"
    )
    positions = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(positions) if p == 0]
    assert len(starts) > 1, "several sequences share the row"
    for start, end in zip(starts, [*starts[1:], len(positions)], strict=True):
        assert positions[start:end] == list(range(end - start))
