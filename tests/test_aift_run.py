"""The AIFT pipeline end to end on a tiny model: output format, reuse of finished work, retries, shards."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from aift_helpers import tiny_generator, write_recipe
from conftest import make_conversations, write_jsonl
from datasets import load_from_disk
from stub_server import Reply, Request, StubServer

from westwind.aift import run as aift
from westwind.errors import RunError
from westwind.io import Journal, ShardedJournals, read_jsonl
from westwind.recipe.core import load_recipe
from westwind.training.data import preference_problem, to_preference

PROMPTS = 10


def aift_section(prompts_path, model, **extra) -> dict:
    return {
        "prompts": {"datasets": [{"path": str(prompts_path)}], "column": "messages"},
        "generators": [
            tiny_generator(model, n=2),
            tiny_generator(model, n=2, principles=True, name="tiny-principled", max_new_tokens=4),
        ],
        "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
        "test_split_size": 0.2,
        "chunk_size": 3,
        **extra,
    }


@pytest.fixture(scope="module")
def prompts_path(tmp_path_factory):
    rows = make_conversations(PROMPTS, seed=11)
    for index, row in enumerate(rows):
        row["messages"][-2]["content"] += f" #{index}"  # distinct prompts
        row["reference"] = str(index)
    return write_jsonl(tmp_path_factory.mktemp("prompts") / "prompts.jsonl", rows + rows[:2])


def run_all(recipe_path, overrides=None):
    recipe = load_recipe(recipe_path, overrides, stage="aift")
    counts = aift.run_shard(recipe, progress=False)
    return counts, aift.merge(recipe, push=False)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_model, prompts_path):
    directory = tmp_path_factory.mktemp("aift-reference")
    recipe_path = write_recipe(directory, tiny_model, aift_section(prompts_path, tiny_model))
    counts, stats = run_all(recipe_path)
    return recipe_path, counts, stats


def dataset_rows(recipe_path) -> dict[str, list[dict]]:
    recipe = load_recipe(recipe_path, stage="aift")
    dataset = load_from_disk(recipe.resolve_reference("@aift"))
    return {split: dataset[split].to_list() for split in dataset}


def test_output_is_a_dpo_ready_dataset_with_provenance(reference_run):
    recipe_path, counts, stats = reference_run
    assert counts["prompts"] == PROMPTS and counts["duplicates"] == 2 and counts["unfinished"] == 0
    rows = dataset_rows(recipe_path)
    assert set(rows) == {"train", "test"}
    pairs = stats["judged"] - sum(stats["dropped"].values())
    assert sum(len(part) for part in rows.values()) == pairs
    assert len(rows["test"]) == math.ceil(0.2 * pairs)
    for row in rows["train"] + rows["test"]:
        assert preference_problem(row) is None  # what the dpo stage checks
        assert to_preference(row) == {k: row[k] for k in ("prompt", "chosen", "rejected")}
        assert row["score_chosen"] > row["score_rejected"]
        assert row["model_chosen"] in (
            "tiny-principled",
            str(load_recipe(recipe_path).model.model_name_or_path),
        )
    root = load_recipe(recipe_path).stage_dir("aift")
    jsonl = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    assert jsonl == rows["train"]


def test_side_file_keeps_every_candidate_with_its_origin(reference_run):
    recipe_path, _, stats = reference_run
    records = read_jsonl(load_recipe(recipe_path).stage_dir("aift") / "ratings.jsonl")
    assert len(records) == PROMPTS == stats["judged"]
    assert stats["candidates"] == PROMPTS * 4 == sum(len(r["candidates"]) for r in records)
    assert stats["candidates_by_model"] == {
        str(load_recipe(recipe_path).model.model_name_or_path): 20,
        "tiny-principled": 20,
    }
    for record in records:
        assert record["reference"] is not None
        for candidate in record["candidates"]:
            assert candidate["backend"] == "transformers"
            assert candidate["params"]["sampling"]["max_new_tokens"] in (4, 6)
            assert isinstance(candidate["params"]["seed"], int)
            assert (candidate["principle"] is not None) == (candidate["model"] == "tiny-principled")
            assert 0 <= candidate["score"] < 1


def test_rerun_reuses_all_finished_work(reference_run):
    recipe_path, _, stats = reference_run
    shard = load_recipe(recipe_path).stage_dir("aift") / "shards" / "00000-of-00001"
    sizes = {name: (shard / name).stat().st_size for name in ("generated.jsonl", "judged.jsonl")}
    before = dataset_rows(recipe_path)
    _, again = run_all(recipe_path)
    assert {name: (shard / name).stat().st_size for name in sizes} == sizes
    assert dataset_rows(recipe_path) == before
    assert again["pairs"] == stats["pairs"]


def test_shards_merge_into_the_unsharded_result(reference_run, tmp_path, tiny_model, prompts_path):
    recipe_path = write_recipe(tmp_path, tiny_model, aift_section(prompts_path, tiny_model))
    recipe = load_recipe(recipe_path, stage="aift")
    shard_counts = [aift.run_shard(recipe, index, 2, progress=False) for index in range(2)]
    assert sum(c["in_shard"] for c in shard_counts) == PROMPTS and all(c["in_shard"] for c in shard_counts)
    with pytest.raises(aift.AIFTError, match="not judged"):
        shutil.rmtree(recipe.stage_dir("aift") / "shards" / "00001-of-00002")
        aift.merge(recipe, push=False)
    aift.run_shard(recipe, 1, 2, progress=False)
    aift.merge(recipe, push=False)
    assert dataset_rows(recipe_path) == dataset_rows(reference_run[0])


def test_failed_items_are_recorded_and_retried(tmp_path, tiny_model, prompts_path, monkeypatch):
    section = aift_section(prompts_path, tiny_model)
    section["judge"]["function"] = "aift_helpers:flaky_score"  # fails prompts mentioning "moon"
    recipe_path = write_recipe(tmp_path, tiny_model, section)
    recipe = load_recipe(recipe_path, stage="aift")
    monkeypatch.delenv("AIFT_TEST_FIXED", raising=False)
    counts = aift.run_shard(recipe, progress=False)
    journal = recipe.stage_dir("aift") / "shards" / "00000-of-00001" / "judged.jsonl"
    failed = [r for r in read_jsonl(journal) if r["status"] == "failed"]
    assert counts["unfinished"] == len(failed) > 0
    assert all("verifier backend unavailable" in r["error"] for r in failed)
    with pytest.raises(aift.AIFTError, match=f"{len(failed)} of {PROMPTS} prompts"):
        aift.merge(recipe, push=False)

    monkeypatch.setenv("AIFT_TEST_FIXED", "1")
    assert aift.run_shard(recipe, progress=False)["unfinished"] == 0
    records = read_jsonl(journal)
    assert len(records) == PROMPTS + len(failed)  # only the failed prompts were judged again
    stats = aift.merge(recipe, push=False)
    assert stats["judge_failures"]["failed_items"] == len(failed)


def test_changing_the_judge_rejudges_without_regenerating(reference_run, tmp_path, tiny_model, prompts_path):
    recipe_path = write_recipe(tmp_path, tiny_model, aift_section(prompts_path, tiny_model))
    run_all(recipe_path)
    shard = load_recipe(recipe_path).stage_dir("aift") / "shards" / "00000-of-00001"
    generated = (shard / "generated.jsonl").read_text()
    _, stats = run_all(recipe_path, ["--aift.judge.function", "aift_helpers:length_score"])
    assert (shard / "generated.jsonl").read_text() == generated
    assert len(read_jsonl(shard / "judged.jsonl")) == 2 * PROMPTS
    for row in dataset_rows(recipe_path)["train"]:
        assert len(row["chosen"][0]["content"]) > len(row["rejected"][0]["content"])


def test_journal_ignores_and_repairs_a_truncated_last_line(tmp_path):
    path = tmp_path / "shards" / "00000-of-00001" / "judged.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"prompt_id": "a", "status": "ok"}\n{"prompt_id": "b", "sta')
    assert [r["prompt_id"] for r in read_jsonl(path)] == ["a"]
    journal = Journal(path)
    journal.append({"prompt_id": "c", "status": "ok"})
    journal.close()
    assert [r["prompt_id"] for r in read_jsonl(path)] == ["a", "c"]
    assert ShardedJournals(tmp_path).finished("judged.jsonl", "prompt_id").keys() == {("a",), ("c",)}


def test_local_llm_judge_parse_failures_are_counted(tmp_path, tiny_model, prompts_path):
    """An UltraFeedback judge on the transformers backend; the tiny model never answers in the format."""
    section = aift_section(prompts_path, tiny_model)
    section["judge"] = {
        "kind": "ultrafeedback",
        "model": str(tiny_model),
        "device": "cpu",
        "aspects": ["helpfulness", "honesty"],
        "max_reasks": 1,
        "sampling": {"max_new_tokens": 6},
    }
    recipe = load_recipe(write_recipe(tmp_path, tiny_model, section), stage="aift")
    # A judge that gave up gives no verdict: the prompts stay unfinished (retried next run), not unrated.
    assert aift.run_shard(recipe, progress=False)["unfinished"] == PROMPTS
    with pytest.raises(aift.AIFTError, match=f"{PROMPTS} of {PROMPTS} prompts are not judged"):
        aift.merge(recipe, push=False)
    with pytest.raises(aift.AIFTError, match="no preference pairs"):
        aift.merge(recipe, allow_partial=True, push=False)
    stats = json.loads((recipe.stage_dir("aift") / "stats.json").read_text())
    requests = PROMPTS * 2  # aspects per prompt
    assert sum(v for k, v in stats["parse_failures"].items() if k != "gave_up") == 2 * requests
    assert stats["parse_failures"]["gave_up"] == requests
    assert stats["judge_failures"]["failed_items"] == PROMPTS and stats["prompts"]["missing"] == PROMPTS


API_KEY = "gsk_live_Zq81RealSecretXy12"  # not sk-: any prefix must be redacted
PARTIAL_KEY = "gsk_live_Zq81**********Xy12"


class CannedEndpoint:
    """A stdlib OpenAI-compatible stand-in on 127.0.0.1: answers `refuse` (an HTTP status, with a body that
    echoes part of the key as real APIs do) while it is set, else echoes the prompt."""

    def __init__(self, refuse: int | None = 400):
        self.refuse = refuse
        self.bodies: list[dict] = []
        self.server = StubServer(self.answer).start()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def answer(self, request: Request) -> Reply:
        body = request.json()
        self.bodies.append(body)
        if self.refuse:
            message = f"Incorrect API key provided: {PARTIAL_KEY}. Request {self.refuse}."
            return self.refuse, {"error": {"message": message}}
        message = {
            "role": "assistant",
            "content": f"seed {body['seed']}: {body['messages'][-1]['content'][::-1]}",
        }
        return 200, {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def test_generation_failures_are_recorded_and_retried(tmp_path, tiny_model, prompts_path, monkeypatch):
    endpoint = CannedEndpoint()
    section = aift_section(prompts_path, tiny_model)
    section["generators"] = [
        {
            "model": "served-model",
            "backend": "openai",
            "base_url": endpoint.base_url,
            "n": 2,
            "principles": True,
            "max_retries": 3,
            "api_key_env": "AIFT_TEST_KEY",
            "sampling": {"max_new_tokens": 12, "temperature": 0.6, "top_p": 0.9, "stop": ["\n\n"]},
        }
    ]
    monkeypatch.setenv("AIFT_TEST_KEY", API_KEY)
    recipe = load_recipe(write_recipe(tmp_path, tiny_model, section), stage="aift")
    try:
        assert aift.run_shard(recipe, progress=False)["unfinished"] == PROMPTS
        journal = recipe.stage_dir("aift") / "shards" / "00000-of-00001" / "generated.jsonl"
        failed = read_jsonl(journal)
        assert [r["status"] for r in failed] == ["failed"] * PROMPTS
        assert all("client_error" in r["error"] for r in failed)
        assert "Zq81" not in journal.read_text() and "Xy12" not in journal.read_text()
        assert len(endpoint.bodies) == 2 * PROMPTS  # a 400 is not retried

        endpoint.refuse = False
        assert aift.run_shard(recipe, progress=False)["unfinished"] == 0
        stats = aift.merge(recipe, push=False)
    finally:
        endpoint.server.close()
    assert stats["generation_failures"] == {"client_error": 2 * PROMPTS, "failed_items": PROMPTS}
    body = endpoint.bodies[-1]
    assert body["model"] == "served-model" and body["max_tokens"] == 12 and body["stop"] == ["\n\n"]
    assert (body["temperature"], body["top_p"]) == (0.6, 0.9)
    assert body["messages"][0]["role"] == "system"  # the drawn principle
    records = read_jsonl(recipe.stage_dir("aift") / "ratings.jsonl")
    for record in records:
        seeds = [c["params"]["seed"] for c in record["candidates"]]
        assert [c["text"].split(":")[0] for c in record["candidates"]] == [f"seed {s}" for s in seeds]
        assert seeds == sorted(seeds) and len(set(seeds)) == 2


def test_a_rejected_key_stops_the_run_with_the_reason_and_writes_nothing(
    tmp_path, tiny_model, prompts_path, monkeypatch
):
    endpoint = CannedEndpoint(refuse=401)
    section = aift_section(prompts_path, tiny_model)
    section["generators"] = [
        {
            "model": "served-model",
            "backend": "openai",
            "base_url": endpoint.base_url,
            "api_key_env": "AIFT_TEST_KEY",
            "sampling": {"max_new_tokens": 12},
        }
    ]
    monkeypatch.setenv("AIFT_TEST_KEY", API_KEY)
    recipe = load_recipe(write_recipe(tmp_path, tiny_model, section), stage="aift")
    try:
        with pytest.raises(RunError) as error:
            aift.run_shard(recipe, progress=False)
    finally:
        endpoint.server.close()
    message = str(error.value)
    assert "rejected the API key from AIFT_TEST_KEY" in message and "Incorrect API key provided" in message
    assert "Zq81" not in message and "Xy12" not in message and "rerun" not in message.split(";")[0]
    journal = recipe.stage_dir("aift") / "shards" / "00000-of-00001" / "generated.jsonl"
    assert read_jsonl(journal) == []
