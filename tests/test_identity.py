"""Stage hashes see the data (local content, hub revisions, upstream stages); folders made under other inputs
are recognised and cleared without touching what a stage does not own."""

from __future__ import annotations

import pytest
from conftest import make_conversations, make_preferences, tiny_recipe, write_jsonl, write_recipe

from westwind import identity
from westwind.pipeline import stage_hashes
from westwind.recipe.core import load_recipe


@pytest.fixture
def recipe_with_aift(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    prompts = write_jsonl(tmp_path / "data" / "prompts.jsonl", [{"prompt": "reverse: a b"}])
    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    raw["dpo"].pop("datasets")  # default: @aift
    raw["aift"] = {
        "prompts": {"datasets": [{"path": str(prompts)}]},
        "generators": [{"model": "@sft", "n": 2, "sampling": {"max_new_tokens": 8}}],
        "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
    }
    return write_recipe(tmp_path / "recipe.yaml", raw), prompts


def test_changing_a_local_data_file_changes_its_stage_and_every_later_one(recipe_with_aift, sft_jsonl):
    recipe_path, _ = recipe_with_aift
    before = stage_hashes(load_recipe(recipe_path))
    write_jsonl(sft_jsonl, make_conversations(16))  # the same file, half the rows
    after = stage_hashes(load_recipe(recipe_path))
    assert set(before) == {"sft", "aift", "dpo"}
    assert all(before[stage] != after[stage] for stage in before)


def test_aift_prompts_reach_dpo_through_the_chain(recipe_with_aift):
    recipe_path, prompts = recipe_with_aift
    before = stage_hashes(load_recipe(recipe_path))
    write_jsonl(prompts, [{"prompt": "reverse: c d"}])
    after = stage_hashes(load_recipe(recipe_path))
    assert before["sft"] == after["sft"]
    assert before["aift"] != after["aift"] and before["dpo"] != after["dpo"]


def test_hub_dataset_revision_is_part_of_the_hash(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ref = tmp_path / "hub" / "datasets--someone--prefs" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("a" * 40)
    raw = tiny_recipe(
        tmp_path, tiny_model, sft_jsonl, dpo_jsonl, dpo={"datasets": [{"path": "someone/prefs"}]}
    )
    recipe = load_recipe(write_recipe(tmp_path / "recipe.yaml", raw))
    before = stage_hashes(recipe)
    ref.write_text("b" * 40)  # the hub dataset moved on
    after = stage_hashes(recipe)
    assert before["sft"] == after["sft"] and before["dpo"] != after["dpo"]


def test_a_big_file_is_known_by_size_mtime_and_its_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(identity, "FULL_DIGEST_BYTES", 64)
    monkeypatch.setattr(identity, "BLOCK_BYTES", 16)
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"x" * 200)
    first = identity.file_identity(path)
    assert first.startswith("size=200 ")
    path.write_bytes(b"x" * 199 + b"y")
    assert identity.file_identity(path) != first


def test_keys_that_only_steer_the_folder_do_not_change_the_hash(tmp_path, recipe_file):
    plain = stage_hashes(load_recipe(recipe_file))
    overwriting = stage_hashes(load_recipe(recipe_file, ["--sft.overwrite_output_dir", "true"]))
    assert plain == overwriting


def test_clearing_a_training_folder_keeps_what_the_stage_does_not_own(tmp_path):
    folder = tmp_path / "sft"
    (folder / "checkpoint-4").mkdir(parents=True)
    for name in ("adapter_config.json", "config.json", "model.safetensors", "tokenizer.json"):
        (folder / name).write_text("{}")
    (folder / "my_notes.txt").write_text("mine")
    identity.record_hash(folder, "sft", "old")
    assert identity.foreign_outputs(folder, "new")
    assert identity.foreign_outputs(folder, "old") is None
    identity.clear(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["my_notes.txt"]
    assert identity.foreign_outputs(folder, "new") is None


def test_a_folder_without_a_record_is_foreign(tmp_path):
    folder = tmp_path / "sft"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")  # left by an older run
    assert "no record" in identity.foreign_outputs(folder, "h")


def test_preference_rows_are_hashed_too(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    recipe_path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl))
    before = stage_hashes(load_recipe(recipe_path))
    write_jsonl(dpo_jsonl, make_preferences(8))
    after = stage_hashes(load_recipe(recipe_path))
    assert before["sft"] == after["sft"] and before["dpo"] != after["dpo"]


def test_a_saved_dataset_folder_keeps_its_identity_when_datasets_caches_into_it(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_list(make_conversations(4)).save_to_disk(folder)
    before = identity.path_identity(folder)
    datasets.load_from_disk(str(folder)).map(lambda row: row)  # writes cache-*.arrow into the folder
    assert identity.path_identity(folder) == before
    (folder / "data-00000-of-00001.arrow").write_bytes(b"other rows")
    assert identity.path_identity(folder) != before


def test_local_data_files_of_a_builder_are_hashed_by_content(tmp_path):
    write_jsonl(tmp_path / "part-1.jsonl", make_conversations(2))
    entry = {"path": "json", "data_files": str(tmp_path / "part-*.jsonl")}
    before = identity.dataset_identity(entry)
    write_jsonl(tmp_path / "part-2.jsonl", make_conversations(2))  # the glob now names another file
    assert identity.dataset_identity(entry) != before and "hub" not in identity.dataset_identity(entry)
