"""aift.revisions: Constitutional-AI revision pairs beside the rated pairs, against a scripted OpenAI-compatible
teacher (distill_helpers.ScriptedTeacher: critiques, and revisions of which about one in four is identical and
one in four empty). Every drop counted, keys that redo exactly the changed work, shards, retries."""

from __future__ import annotations

import json

import pytest
from aift_helpers import write_recipe
from conftest import write_jsonl
from distill_helpers import ScriptedTeacher

from westwind.aift import run as aift
from westwind.aift.config import revision_teacher
from westwind.aift.constitution import DEFAULT_CONSTITUTION
from westwind.aift.stats import summary
from westwind.demo.tasks import generate, prompt_row
from westwind.errors import RecipeError
from westwind.io import read_jsonl
from westwind.recipe.core import load_recipe
from westwind.training.data import preference_problem

PROMPTS = 24


@pytest.fixture(scope="module")
def teacher():
    with ScriptedTeacher(fault_every=5) as scripted:
        yield scripted


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    rows = [prompt_row(example) for example in generate(PROMPTS, seed=11)]
    return write_jsonl(tmp_path_factory.mktemp("prompts") / "prompts.jsonl", rows)


def aift_section(teacher: ScriptedTeacher, prompts, **revisions) -> dict:
    return {
        "prompts": {"datasets": [{"path": str(prompts)}]},
        # One scripted generator: each sample under its own principle system prompt, so the texts differ.
        "generators": [
            {**teacher.endpoint(), "n": 2, "principles": True, "sampling": {"max_new_tokens": 32}}
        ],
        "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
        "revisions": {
            "answerer": {**teacher.endpoint(), "model": "scripted-answerer"},
            "teacher": teacher.endpoint(),
            "sampling": {"max_new_tokens": 64},
            "teacher_sampling": {"max_new_tokens": 128},
            **revisions,
        },
        "test_split_size": 0.25,
        "chunk_size": 5,
    }


def run_all(recipe_path, overrides: list[str] | None = None, shards: int = 1) -> dict:
    recipe = load_recipe(recipe_path, overrides, stage="aift")
    for index in range(shards):
        aift.run_shard(recipe, index, shards, progress=False)
    return aift.merge(recipe, push=False)


def pairs(recipe_path) -> dict[str, list[dict]]:
    root = load_recipe(recipe_path).stage_dir("aift")
    return {name: read_jsonl(root / f"{name}.jsonl") for name in ("train", "test")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, teacher, prompts_file):
    directory = tmp_path_factory.mktemp("revisions-reference")
    recipe_path = write_recipe(directory, "unused", aift_section(teacher, prompts_file))
    return recipe_path, run_all(recipe_path)


def test_every_prompt_makes_a_revision_pair_or_a_counted_drop(reference):
    recipe_path, stats = reference
    revisions = stats["revisions"]
    assert revisions["prompts"] == PROMPTS == revisions["pairs"] + sum(revisions["dropped"].values())
    for reason in ("identical_revision", "empty_revision", "truncated_answer"):
        assert revisions["dropped"][reason] > 0, reason
    assert sum(revisions["pairs_by_principle"].values()) == revisions["pairs"]
    assert stats["prompts"]["unrevised"] == 0
    assert stats["pairs_by_source"]["revisions"] == revisions["pairs"]
    assert sum(stats["pairs"].values()) == revisions["pairs"] + stats["pairs_by_source"]["ratings"]
    assert stats["revision_failures"]  # the teacher's injected 500/429/garbage replies were retried, counted
    text = summary(stats)
    assert "revisions: prompts 24" in text and "identical_revision" in text


def test_revision_pairs_join_the_rated_pairs_in_the_dpo_dataset(reference):
    from datasets import load_from_disk

    recipe_path, stats = reference
    recipe = load_recipe(recipe_path)
    dataset = load_from_disk(recipe.resolve_reference("@aift"))
    rows = [row for part in dataset.values() for row in part.to_list()]
    by_source = {source: [r for r in rows if r["source"] == source] for source in ("ratings", "revision")}
    assert len(by_source["revision"]) == stats["revisions"]["pairs"] and by_source["ratings"]
    names = {p.name for p in DEFAULT_CONSTITUTION}
    for row in rows:
        assert preference_problem(row) is None and row["chosen"] != row["rejected"]
    for row in by_source["revision"]:
        assert row["chosen"][0]["content"] == "Step by step: " + row["rejected"][0]["content"]
        assert row["principle"] in names and row["rationale_chosen"] == "The answer is vague; name the steps."
        assert (row["model_rejected"], row["model_chosen"]) == ("scripted-answerer", "scripted-teacher")
        assert row["score_chosen"] is None
    for row in by_source["ratings"]:
        assert row["principle"] is None and row["score_chosen"] > row["score_rejected"]
    # A prompt with a rated and a revision pair is never split across train and test.
    splits = {name: {r["prompt_id"] for r in part.to_list()} for name, part in dataset.items()}
    assert splits["train"] and splits["test"] and not splits["train"] & splits["test"]
    records = read_jsonl(recipe.stage_dir("aift") / "revisions.jsonl")
    assert len(records) == PROMPTS and all(isinstance(r["answer"], str) for r in records)
    assert all(r["critique"] and r["revision"] for r in records if r["dropped"] is None)


def test_an_unchanged_rerun_asks_nothing_and_keeps_the_pairs(reference, teacher):
    recipe_path, _ = reference
    before, served = pairs(recipe_path), dict(teacher.served)
    run_all(recipe_path)
    assert dict(teacher.served) == served and pairs(recipe_path) == before


def test_a_changed_constitution_redoes_only_the_revisions_and_equals_a_clean_run(
    tmp_path, teacher, prompts_file
):
    constitution = [{"name": "brief", "critique": "Is it too long?", "revision": "Make it shorter."}]
    changed = aift_section(teacher, prompts_file, constitution=constitution)
    (tmp_path / "a").mkdir()
    first = write_recipe(tmp_path / "a", "unused", aift_section(teacher, prompts_file))
    run_all(first)
    shard = load_recipe(first).stage_dir("aift") / "shards" / "00000-of-00001"
    journal_lines = {name: len(read_jsonl(shard / f"{name}.jsonl")) for name in ("generated", "judged")}
    served = dict(teacher.served)
    rerun = write_recipe(tmp_path / "a", "unused", changed)
    stats = run_all(rerun)
    assert {name: len(read_jsonl(shard / f"{name}.jsonl")) for name in journal_lines} == journal_lines
    assert teacher.served["revisions"] > served["revisions"]
    assert stats["revisions"]["pairs_by_principle"].keys() == {"brief"}
    (tmp_path / "clean").mkdir()
    clean = write_recipe(tmp_path / "clean", "unused", changed)
    run_all(clean)
    assert pairs(rerun) == pairs(clean)


def test_turning_revisions_off_leaves_nothing_of_them_and_equals_a_clean_run(tmp_path, teacher, prompts_file):
    from datasets import load_from_disk

    with_revisions = aift_section(teacher, prompts_file)
    without = {k: v for k, v in with_revisions.items() if k != "revisions"}
    (tmp_path / "a").mkdir()
    run_all(write_recipe(tmp_path / "a", "unused", with_revisions))
    recipe_path = write_recipe(tmp_path / "a", "unused", without)
    stats = run_all(recipe_path)
    assert not {"revisions", "pairs_by_source", "revision_failures"} & stats.keys()
    assert "unrevised" not in stats["prompts"]
    root = load_recipe(recipe_path).stage_dir("aift")
    assert not (root / "revisions.jsonl").exists()
    columns = load_from_disk(str(root / "dataset"))["train"].column_names
    assert "principle" not in columns and "source" in columns
    (tmp_path / "clean").mkdir()
    clean = write_recipe(tmp_path / "clean", "unused", without)
    assert run_all(clean)["pairs"] == stats["pairs"] and pairs(clean) == pairs(recipe_path)


def test_splits_share_one_schema_and_rebinarize_keeps_the_revision_pairs(reference):
    from datasets import load_from_disk

    recipe_path, stats = reference
    recipe = load_recipe(recipe_path, stage="aift")
    dataset = load_from_disk(recipe.resolve_reference("@aift"))
    assert dataset["train"].features == dataset["test"].features  # push_to_hub checks this
    rebinarized = aift.rebinarize(recipe, push=False)
    assert rebinarized["revisions"] == stats["revisions"]
    assert rebinarized["revision_failures"] == stats["revision_failures"]
    revision_rows = [r for part in pairs(recipe_path).values() for r in part if r["source"] == "revision"]
    assert len(revision_rows) == stats["revisions"]["pairs"]


def test_rebinarize_refuses_files_merged_under_other_settings(tmp_path, teacher, prompts_file):
    recipe_path = write_recipe(tmp_path, "unused", aift_section(teacher, prompts_file))
    run_all(recipe_path)
    assert aift.rebinarize(load_recipe(recipe_path, stage="aift"), push=False)["revisions"]["pairs"] > 0
    constitution = '[{"name": "brief", "critique": "Too long?", "revision": "Shorter."}]'
    for override in (
        ["--aift.revisions.constitution", constitution],
        ["--aift.judge.function", "aift_helpers:length_score"],
    ):
        changed = load_recipe(recipe_path, override, stage="aift")
        with pytest.raises(aift.AIFTError, match="other generator, judge or revision settings"):
            aift.rebinarize(changed, push=False)


def test_a_split_without_revision_pairs_has_the_same_schema():
    from westwind.aift.run import split_by_prompt

    def row(prompt_id: str, source: str) -> dict:
        revision = source == "revision"
        return {
            "prompt": [{"role": "user", "content": prompt_id}],
            "prompt_id": prompt_id,
            "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}],
            "score_chosen": None if revision else 2.0,
            "score_rejected": None if revision else 1.0,
            "source": source,
            "principle": "honest" if revision else None,
        }

    rated = [row(f"p{i}", "ratings") for i in range(10)]
    train = split_by_prompt(rated, 0.2, seed=0)["train"]["prompt_id"]
    rows = [*rated, row(train[0], "revision")]  # the revision pair follows its prompt into train
    dataset = split_by_prompt(rows, 0.2, seed=0)
    assert dataset["test"]["source"] == ["ratings", "ratings"] and "revision" in dataset["train"]["source"]
    assert dataset["train"].features == dataset["test"].features
    assert dataset["test"].features["principle"].dtype == "string"


def test_shards_and_merge_equal_a_single_run(tmp_path, reference, teacher, prompts_file):
    recipe_path, _ = reference
    sharded = write_recipe(tmp_path, "unused", aift_section(teacher, prompts_file))
    run_all(sharded, shards=3)
    assert pairs(sharded) == pairs(recipe_path)


def test_failed_revisions_are_retried_by_the_next_run(tmp_path, teacher, prompts_file):
    with ScriptedTeacher(fault_every=3) as flaky:
        section = aift_section(teacher, prompts_file)
        section["revisions"]["teacher"] = {**flaky.endpoint(), "model": "scripted-teacher", "max_retries": 0}
        recipe_path = write_recipe(tmp_path, "unused", section)
        recipe = load_recipe(recipe_path, stage="aift")
        counts = aift.run_shard(recipe, progress=False)
        assert counts["unfinished"] > 0 and counts["revised"] < PROMPTS
        with pytest.raises(aift.AIFTError, match="not revised"):
            aift.merge(recipe, push=False)
        # max_retries decides how hard to try, not what is produced: the finished records are reused.
        stats = run_all(recipe_path, ["--aift.revisions.teacher.max_retries", "6"])
    assert stats["revision_failures"]["failed_items"] > 0
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    clean = write_recipe(reference_dir, "unused", aift_section(teacher, prompts_file))
    run_all(clean)
    assert pairs(recipe_path) == pairs(clean)


# ---------------------------------------------------------------- configuration


def test_the_teacher_defaults_to_an_llm_judge_and_is_required_otherwise(tmp_path, teacher, prompts_file):
    section = aift_section(teacher, prompts_file)
    section["revisions"].pop("teacher")
    path = write_recipe(tmp_path, "unused", section)
    with pytest.raises(RecipeError, match="revisions.teacher is unset and the verifier judge"):
        load_recipe(path)
    section["judge"] = {
        "kind": "ultrafeedback",
        **teacher.endpoint(),
        "model": "judge-model",
        "sampling": {"max_new_tokens": 64},
    }
    recipe = load_recipe(write_recipe(tmp_path, "unused", section))
    endpoint = revision_teacher(recipe.aift)
    assert (endpoint.model, endpoint.base_url, endpoint.backend) == (
        "judge-model",
        teacher.base_url,
        "openai",
    )


def test_constitution_entries_are_checked(tmp_path, teacher, prompts_file):
    twice = [{"name": "a", "critique": "c", "revision": "r"}] * 2
    for constitution, problem in (([], "at least one principle"), (twice, "lists a more than once")):
        path = write_recipe(
            tmp_path, "unused", aift_section(teacher, prompts_file, constitution=constitution)
        )
        with pytest.raises(RecipeError, match=problem):
            load_recipe(path)


def test_revisions_of_the_sft_model_need_the_sft_stage(tmp_path, teacher, prompts_file):
    from westwind.recipe import preflight

    section = aift_section(teacher, prompts_file)
    for answerer in ({"model": "@sft"}, {**teacher.endpoint(), "model": "@sft"}):  # local, or served
        section["revisions"]["answerer"] = answerer
        recipe = load_recipe(write_recipe(tmp_path, "unused", section))
        with pytest.raises(RecipeError, match="aift.revisions.answerer.model: @sft names the sft stage"):
            preflight.check(recipe, ["aift"])


def test_distill_no_longer_takes_revisions(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        json.dumps(
            {"output_dir": str(tmp_path), "model": {"model_name_or_path": "m"}, "distill": {"revisions": {}}}
        )
    )
    with pytest.raises(RecipeError, match="distill.revisions: unknown key"):
        load_recipe(path)
