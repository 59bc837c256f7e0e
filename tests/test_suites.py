"""The published suites end to end (MT-Bench, Arena-Hard v0.1 from ../shared/data/eval) on a tiny model with a
scripted judge endpoint; their config, preflight and report section; kill -9 then resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO, shared_file, wait_for_records, write_jsonl, write_recipe
from suite_judge import ScriptedJudge, judge_endpoint

from westwind.evaluation.suites import MT_BENCH_TEMPERATURES
from westwind.io import read_json, read_jsonl
from westwind.recipe.core import load_recipe
from westwind.report.suites import suites_section
from westwind.stages import eval as eval_stage

EVAL = "data/eval"


def mt_bench_files() -> dict:
    return {
        "questions": str(shared_file(f"{EVAL}/mt_bench/question.jsonl")),
        "judge_prompts": str(shared_file(f"{EVAL}/mt_bench/judge_prompts.jsonl")),
        "reference_answers": str(shared_file(f"{EVAL}/mt_bench/reference_answer/gpt-4.jsonl")),
        "max_new_tokens": 4,
    }


def arena_hard_files() -> dict:
    folder = f"{EVAL}/arena_hard_v0.1"
    return {
        "questions": str(shared_file(f"{folder}/question.jsonl")),
        "baseline_answers": str(shared_file(f"{folder}/model_answer/gpt-4-0314.jsonl")),
        "judge_config": str(shared_file(f"{folder}/arena-hard-v0.1.yaml")),
        "judge_prompts": str(shared_file(f"{folder}/judge_utils.py")),
        "max_new_tokens": 3,
    }


def suites_recipe(tmp_path, model, base_url: str, batch_size: int = 16, **suites) -> object:
    recipe = {
        "output_dir": str(tmp_path / "out"),
        "model": {"model_name_or_path": str(model), "dtype": "float32", "chat_template": "zephyr"},
        "eval": {
            "model": str(model),
            "suites": {"judge": judge_endpoint(base_url), "batch_size": batch_size, **suites},
        },
    }
    return write_recipe(tmp_path / "recipe.yaml", recipe)


def run_eval(recipe_path, *overrides: str):
    eval_stage.cli([str(recipe_path), *overrides])
    return load_recipe(recipe_path).stage_dir("eval")


def test_mt_bench_all_80_questions_two_turns_with_the_published_prompts(tmp_path, tiny_model):
    with ScriptedJudge() as judge:
        recipe = suites_recipe(tmp_path, tiny_model, judge.base_url, mt_bench=mt_bench_files())
        out = run_eval(recipe) / "mt_bench"
        assert judge.requests["429"] > 0 and judge.requests["503"] > 0  # retried, not counted as failures
    questions = read_jsonl(shared_file(f"{EVAL}/mt_bench/question.jsonl"))
    answers = read_jsonl(out / "answers.jsonl")
    assert [(a["question_id"], a["turn"]) for a in answers] == [
        (q["question_id"], t) for t in (1, 2) for q in questions
    ]
    for answer in answers:
        assert answer["temperature"] == MT_BENCH_TEMPERATURES[answer["category"]]

    judgments = read_jsonl(out / "judgments.jsonl")
    assert len(judgments) == 160
    by_turn = {(j["question_id"], j["turn"]): j for j in judgments}
    math_turn2 = by_turn[(111, 2)]  # a math question: reference answers in the multi-turn math prompt
    assert math_turn2["judge_prompt"] == "single-math-v1-multi-turn"
    reference = next(
        r
        for r in read_jsonl(shared_file(f"{EVAL}/mt_bench/reference_answer/gpt-4.jsonl"))
        if r["question_id"] == 111
    )
    user = math_turn2["messages"][1]["content"]
    assert reference["choices"][0]["turns"][1] in user
    turn1 = next(a["answer"] for a in answers if a["question_id"] == 111 and a["turn"] == 1)
    assert f"### Assistant A:\n{turn1}\n\n### User:" in user  # turn 2 is judged with the model's own turn 1
    writing = by_turn[(81, 1)]
    assert writing["judge_prompt"] == "single-v1"
    assert writing["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}

    scores = read_json(out / "scores.json")
    values = [j["value"] for j in judgments if j["value"] is not None]
    assert scores["judged"] == len(values) and scores["judgments"] == 160
    assert scores["score"] == pytest.approx(sum(values) / len(values))
    assert scores["reasked"] > 0  # the scripted judge's unreadable first replies
    assert scores["failed"] == 0  # all readable once re-asked
    assert set(scores["categories"]) == set(MT_BENCH_TEMPERATURES)
    assert scores["judge"]["model"] == "scripted-judge"

    lines = "\n".join(suites_section(out.parent, tmp_path))
    assert "`scripted-judge` (openai)" in lines and "7.34" in lines and "| math |" in lines
    assert (tmp_path / "mt_bench.png").stat().st_size > 0


def test_mt_bench_reads_the_rating_as_fastchat_does():
    from westwind.evaluation.mt_bench import parse_rating
    from westwind.judges import ParseFailure

    assert parse_rating("Rating: [[7]] and later [[9]]") == 7.0  # re.search: the first
    assert parse_rating("Rating: [6.5]") == 6.5  # the single-bracket backup
    assert parse_rating("[8] then [[3]]") == 3.0  # [[x]] is looked for first
    with pytest.raises(ParseFailure):
        parse_rating("I would say 8 out of 10.")


def test_any_question_file_in_fastchat_format(tmp_path, tiny_model):
    """Own categories (default temperature 0.7), one and three turns: every turn answered, turns 1-2 judged."""
    questions = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {
                "question_id": "a",
                "category": "poetry",
                "turns": ["Write a poem.", "Shorter.", "Shorter still."],
            },
            {"question_id": "b", "category": "writing", "turns": ["Write a note."]},
        ],
    )
    files = {**mt_bench_files(), "questions": str(questions), "reference_answers": None}
    with ScriptedJudge(faults=False) as judge:
        out = run_eval(suites_recipe(tmp_path, tiny_model, judge.base_url, mt_bench=files)) / "mt_bench"
    answers = read_jsonl(out / "answers.jsonl")
    assert [(a["question_id"], a["turn"], a["temperature"]) for a in answers] == [
        ("a", 1, 0.7),
        ("b", 1, 0.7),
        ("a", 2, 0.7),
        ("a", 3, 0.7),
    ]
    assert [(j["question_id"], j["turn"]) for j in read_jsonl(out / "judgments.jsonl")] == [
        ("a", 1),
        ("b", 1),
    ]


@pytest.mark.slow
def test_arena_hard_all_500_questions_both_orders(tmp_path, tiny_model):
    with ScriptedJudge() as judge:
        # batch size 1: no padding, so attention needs no mask (the long prompts are 3x faster on CPU)
        recipe = suites_recipe(tmp_path, tiny_model, judge.base_url, 1, arena_hard=arena_hard_files())
        out = run_eval(recipe, "--suite", "arena_hard") / "arena_hard"
    games = read_jsonl(out / "judgments.jsonl")
    assert len(games) == 1000 and len(read_jsonl(out / "answers.jsonl")) == 500
    first = games[0]
    og_prompt = judge_utils_og_prompt()
    assert first["messages"][0]["content"] == og_prompt
    baseline = read_jsonl(shared_file(f"{EVAL}/arena_hard_v0.1/model_answer/gpt-4-0314.jsonl"))
    baseline_answer = next(r for r in baseline if r["uid"] == first["uid"])["messages"][-1]["content"][
        "answer"
    ]
    assert (
        first["game"] == 1
        and f"<|The Start of Assistant A's Answer|>\n{baseline_answer}\n" in (first["messages"][1]["content"])
    )
    scores = read_json(out / "scores.json")
    assert scores["questions_judged"] == 500 and scores["baseline"] == "gpt-4-0314"
    assert scores["published_judge"] == "gpt-4-1106-preview"
    assert scores["ci90"][0] <= scores["score"] <= scores["ci90"][1]
    assert scores["parse_failures"] > 0 and scores["games_failed"] == 0
    report = (tmp_path / "out" / "report.md").read_text()  # --suite alone writes the report too
    assert "### Arena-Hard v0.1" in report and "90% bootstrap interval" in report


def judge_utils_og_prompt() -> str:
    import ast

    tree = ast.parse(shared_file(f"{EVAL}/arena_hard_v0.1/judge_utils.py").read_text())
    node = next(
        n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "OG_ARENA_HARD_PROMPT"
    )
    return node.value.value


def test_arena_hard_verdicts_and_score_follow_arena_hard_auto():
    from westwind.evaluation.arena_hard import load_settings, score, verdict_parser
    from westwind.judges import ParseFailure

    settings = load_settings(str(shared_file(f"{EVAL}/arena_hard_v0.1/arena-hard-v0.1.yaml")))
    parse = verdict_parser(settings["regex_patterns"])
    assert parse("first [[A>B]] then, on reflection, [[b>>a]]") == "B>>A"  # upper-cased, the last match
    assert parse("My verdict: [A=B]") == "A=B"  # the second pattern
    with pytest.raises(ParseFailure):
        parse("Both are fine.")
    with pytest.raises(ParseFailure):
        parse("[[AB]]")  # matches the regex but is no verdict
    # game 1 has the baseline as A: B>>A there and A>>B in game 2 are 6 battles won by the model
    won = [{"uid": "q", "game": 1, "value": "B>>A"}, {"uid": "q", "game": 2, "value": "A>>B"}]
    tie = [{"uid": "t", "game": 1, "value": "A=B"}, {"uid": "t", "game": 2, "value": "A=B"}]
    lost = [{"uid": "l", "game": 1, "value": "A>B"}, {"uid": "l", "game": 2, "value": None}]
    result = score(won + tie + lost, rounds=50)
    assert result["win_rate_raw"] == pytest.approx((6 + 1) / 8)
    assert result["battles"] == 8 and result["questions_left_out"] == 1 and result["games_failed"] == 1


def test_suite_selection_and_config_errors(tmp_path, tiny_model, capsys):
    recipe = suites_recipe(tmp_path, tiny_model, "http://127.0.0.1:9/v1", mt_bench=mt_bench_files())
    for overrides, message in [
        (["--suite", "alpaca_eval"], "eval.suite:"),
        (["--suite", "arena_hard"], "suite arena_hard is not configured"),
        (
            ["--eval.suites.mt_bench.questions", "missing.jsonl"],
            "eval.suites.mt_bench.questions: file not found",
        ),
        (
            ["--eval.suites.judge.api_key_env", "WESTWIND_NO_SUCH_KEY"],
            "eval.suites.judge.api_key_env: environment",
        ),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            eval_stage.cli([str(recipe), *overrides])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and message in error, error
    assert not (tmp_path / "out").exists()  # nothing written


def test_answers_and_judgments_are_keyed_on_what_produced_them(tmp_path, tiny_model):
    questions = write_jsonl(
        tmp_path / "q.jsonl",
        [{"question_id": i, "category": "stem", "turns": [f"Q{i}?", "And?"]} for i in range(3)],
    )
    files = {**mt_bench_files(), "questions": str(questions), "reference_answers": None}
    with ScriptedJudge(faults=False) as judge:
        recipe = suites_recipe(tmp_path, tiny_model, judge.base_url, mt_bench=files)
        out = run_eval(recipe, "--suite", "mt_bench") / "mt_bench"
        first = {
            name: (out / name).read_text() for name in ("answers.jsonl", "judgments.jsonl", "scores.json")
        }
        asked = judge.requests["ok"]
        run_eval(recipe, "--suite", "mt_bench")  # nothing changed: nothing regenerated, nothing re-asked
        assert judge.requests["ok"] == asked
        assert {name: (out / name).read_text() for name in first} == first
        run_eval(recipe, "--suite", "mt_bench", "--eval.suites.judge.model", "another-judge")
        assert judge.requests["ok"] >= asked + 6  # another judge: every turn judged again
        keys = [a["key"] for a in read_jsonl(out / "answers.jsonl")]
        run_eval(recipe, "--suite", "mt_bench", "--eval.suites.mt_bench.max_new_tokens", "5")
        assert not set(keys) & {a["key"] for a in read_jsonl(out / "answers.jsonl")}  # answered again
    assert len(read_jsonl(out / "judgments.jsonl")) == 6  # the file holds this run's judgments only


def script(recipe_path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    command = [
        sys.executable,
        "-m",
        "westwind.stages.eval",
        str(recipe_path),
        "--suite",
        "mt_bench",
        *overrides,
    ]
    return subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_kill_during_judging_then_resume_leaves_the_files_of_a_clean_run(tmp_path, tiny_model):
    files = {**mt_bench_files(), "max_questions": 8}
    (tmp_path / "clean").mkdir()
    (tmp_path / "killed").mkdir()
    with ScriptedJudge(delay=0.1) as judge:
        clean = suites_recipe(tmp_path / "clean", tiny_model, judge.base_url, mt_bench=files)
        killed = suites_recipe(tmp_path / "killed", tiny_model, judge.base_url, mt_bench=files)
        clean_out = run_eval(clean, "--suite", "mt_bench") / "mt_bench"
        killed_out = load_recipe(killed).stage_dir("eval") / "mt_bench"
        process = script(killed, "--eval.suites.judge.concurrency", "1")  # one judgment at a time
        wait_for_records(killed_out / "judgments.jsonl", 4, process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        done = len(read_jsonl(killed_out / "judgments.jsonl"))
        assert 4 <= done < 16
        with (killed_out / "judgments.jsonl").open("a") as journal:
            journal.write('{"key": "cut-off mid-wri')  # as if killed inside a write
        asked_before = judge.requests["ok"]
        run_eval(killed, "--suite", "mt_bench")  # the resume, in this process
        assert judge.requests["ok"] - asked_before <= 2 * (16 - done)  # finished ones were not asked again
    for name in ("answers.jsonl", "judgments.jsonl", "scores.json"):
        assert (killed_out / name).read_text() == (clean_out / name).read_text(), name
    assert json.loads((killed_out / "scores.json").read_text())["judgments"] == 16


def test_arena_hard_reads_the_first_release_formats_too(tmp_path):
    from westwind.evaluation.arena_hard import load_baseline, load_questions

    old = {"question_id": "q1", "category": "arena-hard-v0.1", "turns": [{"content": "Hi?"}]}
    questions = load_questions(str(write_jsonl(tmp_path / "q.jsonl", [old])))
    assert questions[0]["uid"] == "q1" and questions[0]["prompt"] == "Hi?"
    answer = {"question_id": "q1", "model_id": "gpt-4-0314", "choices": [{"turns": [{"content": "Hello."}]}]}
    assert load_baseline(str(write_jsonl(tmp_path / "a.jsonl", [answer]))) == ("gpt-4-0314", {"q1": "Hello."})
