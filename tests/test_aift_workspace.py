"""What a rerun may reuse: work is keyed on everything that produced it (the resolved model's content, the
prompt's judge inputs), the outputs and stats are exactly the last run's, and a run through earlier
settings ends byte for byte where a clean run with the final settings does."""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import shutil
import sys

import pytest
from aift_helpers import REPO, ScriptedBackend, tiny_generator, write_recipe
from conftest import make_conversations, write_jsonl
from datasets import load_from_disk

from westwind.aift import rate, workspace
from westwind.aift import run as aift
from westwind.aift.config import JudgeConfig, SamplingConfig
from westwind.aift.stats import summary as aift_summary
from westwind.aift.workspace import judge_identity
from westwind.errors import DataError
from westwind.io import read_jsonl
from westwind.judges import PairwiseJudge
from westwind.judges.parsers import PARSER_VERSION
from westwind.recipe.core import load_recipe

PROMPTS = 6
SAMPLING = SamplingConfig(max_new_tokens=8)


def prompt_rows(reference_offset: int = 0) -> list[dict]:
    rows = make_conversations(PROMPTS, seed=31)
    for index, row in enumerate(rows):
        row["messages"][-2]["content"] += f" #{index}"
        row["reference"] = str(index + reference_offset)
    return rows


def section(prompts_path, generator_model, **extra) -> dict:
    return {
        "prompts": {"datasets": [{"path": str(prompts_path)}], "column": "messages"},
        "generators": [tiny_generator(generator_model, n=2)],
        "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
        "chunk_size": 4,
        **extra,
    }


def run_all(recipe_path, overrides=None, allow_partial=False) -> dict:
    recipe = load_recipe(recipe_path, overrides, stage="aift")
    aift.run_shard(recipe, progress=False)
    return aift.merge(recipe, allow_partial=allow_partial, push=False)


def journal(recipe_path, name: str) -> list[dict]:
    return read_jsonl(load_recipe(recipe_path).stage_dir("aift") / "shards" / "00000-of-00001" / name)


def test_retraining_sft_regenerates_its_candidates(tmp_path, tiny_model):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows())
    recipe_path = write_recipe(tmp_path, tiny_model, section(prompts, "@sft"))
    sft = load_recipe(recipe_path).stage_dir("sft")
    shutil.copytree(tiny_model, sft)
    run_all(recipe_path)
    assert len(journal(recipe_path, "generated.jsonl")) == PROMPTS
    run_all(recipe_path)
    assert len(journal(recipe_path, "generated.jsonl")) == PROMPTS  # same weights: all reused

    weights = next(sft.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-2] ^= 0x40  # sft ran again: other weights in the same folder
    weights.write_bytes(bytes(data))
    run_all(recipe_path)
    assert len(journal(recipe_path, "generated.jsonl")) == 2 * PROMPTS  # regenerated
    assert len(journal(recipe_path, "judged.jsonl")) == 2 * PROMPTS  # and judged again


def test_a_changed_reference_is_judged_again(tmp_path, tiny_model):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows())
    recipe_path = write_recipe(tmp_path, tiny_model, section(prompts, tiny_model))
    run_all(recipe_path)
    rows = prompt_rows()
    rows[0]["reference"] = "a corrected answer key"
    write_jsonl(prompts, rows)
    run_all(recipe_path)
    judged = journal(recipe_path, "judged.jsonl")
    assert len(judged) == PROMPTS + 1  # exactly the prompt whose reference changed
    assert judged[-1]["reference"] == "a corrected answer key"
    assert len(journal(recipe_path, "generated.jsonl")) == PROMPTS  # candidates reused


def test_outputs_are_exactly_the_last_runs(tmp_path, tiny_model):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows())
    recipe_path = write_recipe(tmp_path, tiny_model, section(prompts, tiny_model, test_split_size=0.3))
    root = load_recipe(recipe_path).stage_dir("aift")
    run_all(recipe_path)
    assert (root / "test.jsonl").exists()

    recipe = load_recipe(recipe_path, ["--aift.test_split_size", "null"], stage="aift")
    stats = aift.rebinarize(recipe, push=False)
    assert set(stats["pairs"]) == {"train"} and not (root / "test.jsonl").exists()
    assert set(load_from_disk(str(root / "dataset"))) == {"train"}

    recipe = load_recipe(recipe_path, ["--aift.binarize.min_chosen_score", "2"], stage="aift")
    with pytest.raises(aift.AIFTError, match="no preference pairs"):
        aift.rebinarize(recipe, push=False)
    assert not (root / "dataset").exists() and not (root / "train.jsonl").exists()
    stats = json.loads((root / "stats.json").read_text())
    assert "pairs" not in stats and stats["dropped"] == {"low_chosen_score": PROMPTS}


def test_stats_count_only_the_current_settings_work(tmp_path, tiny_model, monkeypatch):
    rows = prompt_rows()
    rows[0]["messages"][-2]["content"] += " moon"  # flaky_score fails it until AIFT_TEST_FIXED is set
    prompts = write_jsonl(tmp_path / "prompts.jsonl", rows)
    flaky = section(prompts, tiny_model)
    flaky["judge"]["function"] = "aift_helpers:flaky_score"
    recipe_path = write_recipe(tmp_path, tiny_model, flaky)
    monkeypatch.delenv("AIFT_TEST_FIXED", raising=False)
    with pytest.raises(aift.AIFTError, match="1 of"):
        run_all(recipe_path)
    stats = run_all(recipe_path, ["--aift.judge.function", "aift_helpers:length_score"])
    assert stats["judge_failures"] == {"failed_items": 0}  # the flaky judge's failure is history


def test_reruns_through_earlier_settings_equal_a_clean_run(tmp_path, tiny_model, monkeypatch):
    """Run A, then B (other judge, generator and split; a judge failure; a partial merge), then C; a clean
    run of C must write the same bytes: every reused record is one C would have produced, and nothing of A
    or B shows."""
    monkeypatch.delenv("AIFT_TEST_FIXED", raising=False)
    rows = prompt_rows()
    rows[1]["messages"][-2]["content"] += " moon"  # B's flaky judge fails this prompt
    prompts = write_jsonl(tmp_path / "prompts.jsonl", rows)
    final = section(prompts, tiny_model, test_split_size=0.3, binarize={"policy": "best_vs_worst"})
    first = {**final, "judge": {"kind": "verifier", "function": "aift_helpers:length_score"}}
    second = {
        **final,
        "generators": [tiny_generator(tiny_model, n=3, max_new_tokens=4)],
        "judge": {"kind": "verifier", "function": "aift_helpers:flaky_score"},
        "test_split_size": None,
        "binarize": {"policy": "best_vs_random", "min_margin": 0.2},
    }
    history, clean = tmp_path / "history", tmp_path / "clean"
    history.mkdir(), clean.mkdir()
    for settings in (first, second, final):
        run_all(write_recipe(history, tiny_model, settings), allow_partial=True)
    run_all(write_recipe(clean, tiny_model, final))

    outputs = {}
    for directory in (history, clean):
        root = load_recipe(directory / "recipe.yaml").stage_dir("aift")
        files = {
            p.name: p.read_bytes() for p in root.iterdir() if p.is_file() and p.name != "model-digests.json"
        }
        dataset = load_from_disk(str(root / "dataset"))
        outputs[directory] = (files, {split: dataset[split].to_list() for split in dataset})
    assert set(outputs[history][0]) == {
        "ratings.jsonl",
        "merged-keys.json",
        "stats.json",
        "train.jsonl",
        "test.jsonl",
    }
    assert outputs[history] == outputs[clean]


def test_changing_a_verifiers_code_rejudges_exactly_its_verdicts(tmp_path, tiny_model, monkeypatch):
    """A verifier is keyed on its module's source (and `version`), not on its name; keys that do not change
    a verifier's verdict (aspects, max_reasks, texts_per_request) re-judge nothing."""
    code = tmp_path / "verifiers" / "my_verifier.py"
    code.parent.mkdir()
    code.write_text("def score(prompt, completion, reference):\n    return float(len(completion))\n")
    monkeypatch.syspath_prepend(str(code.parent))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows())
    settings = {
        **section(prompts, tiny_model),
        "judge": {"kind": "verifier", "function": "my_verifier:score"},
    }
    recipe_path = write_recipe(tmp_path, tiny_model, settings)
    try:
        run_all(recipe_path)
        unrelated = ["--aift.judge.max_reasks", "5", "--aift.judge.texts_per_request", "3"]
        run_all(recipe_path, unrelated)
        assert len(journal(recipe_path, "judged.jsonl")) == PROMPTS  # nothing re-judged

        code.write_text("def score(prompt, completion, reference):\n    return -float(len(completion))\n")
        sys.modules.pop("my_verifier", None)
        importlib.invalidate_caches()
        run_all(recipe_path)
        judged = journal(recipe_path, "judged.jsonl")
        assert len(judged) == 2 * PROMPTS  # every verdict again, under the new code
        assert all(c["score"] == -len(c["text"]) for r in judged[PROMPTS:] for c in r["candidates"])
        assert len(journal(recipe_path, "generated.jsonl")) == PROMPTS  # candidates reused

        run_all(recipe_path, ["--aift.judge.version", "2"])  # code outside the module changed
        assert len(journal(recipe_path, "judged.jsonl")) == 3 * PROMPTS
    finally:
        sys.modules.pop("my_verifier", None)


def test_verdicts_read_under_older_parser_rules_are_not_reused(tmp_path, tiny_model, monkeypatch):
    """The parser's version is part of an LLM judge's key: after the rules change, every prompt is judged
    again and the merge reads only verdicts parsed under the current rules."""

    def longer_wins(messages):
        a, b = re.search(
            r"## Answer A\n(.*?)\n\n## Answer B\n(.*?)\n\n", messages[-1]["content"], re.S
        ).groups()
        return '{"rationale": "longer", "winner": "%s"}' % ("A" if len(a) >= len(b) else "B")

    monkeypatch.setattr(rate, "make_judge", lambda *a: PairwiseJudge(ScriptedBackend(longer_wins), SAMPLING))
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows())
    judge = {"kind": "pairwise", "model": str(tiny_model), "sampling": {"max_new_tokens": 8}}
    settings = {**section(prompts, tiny_model), "judge": judge}
    recipe_path = write_recipe(tmp_path, tiny_model, settings)
    run_all(recipe_path, allow_partial=True)
    run_all(recipe_path, allow_partial=True)
    assert len(journal(recipe_path, "judged.jsonl")) == PROMPTS  # same rules: reused

    monkeypatch.setattr(workspace, "PARSER_VERSION", PARSER_VERSION + 1)
    stats = run_all(recipe_path, allow_partial=True)
    judged = journal(recipe_path, "judged.jsonl")
    assert len(judged) == 2 * PROMPTS and stats["judged"] == PROMPTS
    merged = read_jsonl(load_recipe(recipe_path).stage_dir("aift") / "ratings.jsonl")
    assert {r["fingerprint"] for r in merged} == {r["fingerprint"] for r in judged[PROMPTS:]}
    assert stats["order_flips"]["checked"] == PROMPTS  # one pair per prompt (n=2), asked both ways


def test_a_verifier_key_holds_only_what_changes_its_verdict():
    verifier = JudgeConfig(kind="verifier", function="aift_helpers:hash_score")
    identity = judge_identity(verifier, None)
    assert set(identity) == {"kind", "function", "source", "version", "reference_column"}
    assert identity["source"] == hashlib.sha256((REPO / "tests" / "aift_helpers.py").read_bytes()).hexdigest()
    llm = JudgeConfig(kind="ultrafeedback", model="m", sampling=SamplingConfig(max_new_tokens=8))
    assert judge_identity(llm, None)["parser"] == PARSER_VERSION


def test_principles_by_source_are_drawn_keyed_and_counted_per_source(tmp_path, tiny_model):
    rows = prompt_rows()
    for index, row in enumerate(rows):
        row["source"] = "evol_instruct" if index % 2 else "flan_v2_cot"
    prompts = write_jsonl(tmp_path / "prompts.jsonl", rows)
    settings = section(prompts, tiny_model)
    settings["generators"] = [tiny_generator(tiny_model, n=2, principles="ultrafeedback")]
    recipe_path = write_recipe(tmp_path, tiny_model, settings)
    stats = run_all(recipe_path)
    by_source = stats["principles_by_source"]
    assert set(by_source) == {"evol_instruct", "flan_v2_cot"}
    assert by_source["evol_instruct"] == {"helpfulness": PROMPTS}  # 3 prompts x 2 samples
    assert set(by_source["flan_v2_cot"]) <= {"helpfulness", "verbalized_calibration"}
    assert "principles by source" in aift_summary(stats)

    rows[0]["source"] = "truthful_qa"  # its mix changes: exactly that prompt is regenerated and re-judged
    write_jsonl(prompts, rows)
    run_all(recipe_path)
    assert len(journal(recipe_path, "generated.jsonl")) == PROMPTS + 1
    assert len(journal(recipe_path, "judged.jsonl")) == PROMPTS + 1
    assert journal(recipe_path, "judged.jsonl")[-1]["source"] == "truthful_qa"


def test_a_source_without_a_mix_or_column_is_one_line_data_error(tmp_path, tiny_model):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{**row, "source": "math"} for row in prompt_rows()])
    settings = section(prompts, tiny_model)
    mix = {"by_source": {"chat": {"helpfulness": 1}}}
    settings["generators"] = [tiny_generator(tiny_model, n=2, principles=mix)]
    with pytest.raises(DataError, match="no mix for source 'math'"):
        run_all(write_recipe(tmp_path, tiny_model, settings))
    settings["generators"] = [tiny_generator(tiny_model, n=2, principles={**mix, "source": "origin"})]
    with pytest.raises(DataError, match="no column 'origin'"):
        run_all(write_recipe(tmp_path, tiny_model, settings))
