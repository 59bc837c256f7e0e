"""MT-Bench as FastChat's llm_judge runs it (gen_model_answer.py, gen_judgment.py --mode single, common.py,
show_result.py), with westwind's backends, journals and any judge endpoint.

Answers: every turn in order, turn k conditioned on the model's own answers to turns 1..k-1, with the model's
chat template and the category's temperature (`MT_BENCH_TEMPERATURES`; 0 = greedy).
Judgments: turn 1 with `single-v1` (`single-math-v1` and the reference answer for math, reasoning, coding),
turn 2 of two-turn questions with the `-multi-turn` forms; the judge prompt's `system_prompt` as the system
message, temperature 0. The rating is read as common.py reads it: the first `[[x]]`, else the first `[x]`;
a reply with neither is re-asked up to max_reasks (FastChat scores it -1), then counted as failed.
Scores (show_result.py): the mean over judged turns, per turn, per category (both turns).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from westwind.errors import DataError
from westwind.evaluation.suite_runner import (
    Answerer,
    AnswerRequest,
    JudgeRequest,
    KeyedJournal,
    judge_all,
    judge_identity,
    judge_sampling,
    judge_summary,
)
from westwind.evaluation.suites import MT_BENCH_DEFAULT_TEMPERATURE, MT_BENCH_SOURCE, SuitesConfig
from westwind.io import atomic_write_json, digest, read_jsonl
from westwind.judges import ParseFailure
from westwind.seeding import stable_seed

NEED_REF_CATS = ("math", "reasoning", "coding")  # common.py NEED_REF_CATS
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")  # common.py one_score_pattern
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")  # common.py one_score_pattern_backup
JUDGE_PROMPTS = ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn")


def load_questions(path: str, limit: int | None = None) -> list[dict]:
    questions = read_jsonl(Path(path))
    for index, question in enumerate(questions):
        turns = question.get("turns")
        if "question_id" not in question or not isinstance(turns, list) or not turns:
            raise DataError(f"{path}: line {index + 1}: a question needs question_id and a list of turns")
    return questions[:limit] if limit else questions


def load_judge_prompts(path: str) -> dict[str, dict]:
    prompts = {row.get("name"): row for row in read_jsonl(Path(path))}
    missing = [name for name in JUDGE_PROMPTS if name not in prompts]
    if missing:
        raise DataError(f"{path}: no judge prompt named {', '.join(missing)}")
    return prompts


def load_references(path: str | None, questions: list[dict]) -> dict[Any, list[str]]:
    """Reference turns per question id: the reference answer file's first choice, else a question's own
    `reference` field; every question of a reference category must have one."""
    references = {q["question_id"]: q["reference"] for q in questions if isinstance(q.get("reference"), list)}
    for row in read_jsonl(Path(path)) if path else []:
        references[row["question_id"]] = row["choices"][0]["turns"]
    lacking = [
        q["question_id"]
        for q in questions
        if q.get("category") in NEED_REF_CATS and q["question_id"] not in references
    ]
    if lacking:
        raise DataError(
            f"no reference answer for {NEED_REF_CATS} question(s) {lacking[:5]} (reference_answers)"
        )
    return references


def parse_rating(reply: str) -> float:
    """common.py run_judge_single: re.search for [[x]], then [x]; ast.literal_eval of the match."""
    match = ONE_SCORE.search(reply) or ONE_SCORE_BACKUP.search(reply)
    if match is None:
        raise ParseFailure("no [[rating]]")
    return float(ast.literal_eval(match.group(1)))


def temperature_of(config, category: str | None) -> float:
    return config.temperatures.get(category or "", MT_BENCH_DEFAULT_TEMPERATURE)


def run(recipe, suites: SuitesConfig, model: str, out_dir: Path) -> dict[str, Any]:
    config = suites.mt_bench
    out_dir.mkdir(parents=True, exist_ok=True)
    questions = load_questions(config.questions, config.max_questions)
    prompts = load_judge_prompts(config.judge_prompts)
    references = load_references(config.reference_answers, questions)
    answers = answer_all(recipe, suites, model, questions, out_dir / "answers.jsonl")
    judgments = judge_answers(recipe, suites, questions, answers, prompts, references, out_dir)
    scores = {
        "suite": "mt_bench",
        "model": model,
        "judge": judge_summary(suites.judge),
        "questions": len(questions),
        "temperatures": {"table": config.temperatures, "default": MT_BENCH_DEFAULT_TEMPERATURE},
        "temperature_source": MT_BENCH_SOURCE,
        **summarize(judgments),
    }
    atomic_write_json(out_dir / "scores.json", scores)
    return scores


def answer_all(recipe, suites: SuitesConfig, model: str, questions: list[dict], path: Path) -> dict:
    """(question_id, turn) -> answer, turn by turn: turn k's messages hold the model's answers before it."""
    answerer = Answerer(recipe, model, suites, suites.mt_bench.max_new_tokens)
    journal = KeyedJournal(path)
    history: dict[Any, list[dict]] = {q["question_id"]: [] for q in questions}
    answers: dict[tuple, str] = {}
    keys: list[str] = []
    try:
        for turn in range(max(len(q["turns"]) for q in questions)):
            requests = turn_requests(suites.mt_bench, answerer, questions, history, turn)
            texts = answerer.generate(journal, requests)
            for request in requests:
                qid, text = request.fields["question_id"], texts[request.key]
                history[qid] = [*request.messages, {"role": "assistant", "content": text}]
                answers[(qid, turn + 1)] = text
                keys.append(request.key)
    finally:
        answerer.close()
    journal.finish(keys)
    return answers


def turn_requests(config, answerer: Answerer, questions: list[dict], history: dict, turn: int) -> list:
    """The requests for turn `turn` (0-based) of every question that has it, after the model's own answers."""
    requests = []
    for question in (q for q in questions if turn < len(q["turns"])):
        qid, category = question["question_id"], question.get("category")
        temperature = temperature_of(config, category)
        request = AnswerRequest(
            "",
            [*history[qid], {"role": "user", "content": question["turns"][turn]}],
            temperature,
            seed=stable_seed("mt_bench", qid, turn),
            fields={"question_id": qid, "turn": turn + 1, "category": category, "temperature": temperature},
        )
        request.key = answerer.key(request)
        requests.append(request)
    return requests


def judge_answers(
    recipe,
    suites: SuitesConfig,
    questions: list[dict],
    answers: dict,
    prompts: dict[str, dict],
    references: dict,
    out_dir: Path,
) -> list[dict]:
    config = suites.mt_bench
    identity = judge_identity(recipe, suites.judge, config.judge_max_new_tokens, 0.0)
    requests = []
    for question in questions:
        for turn in (1, 2) if len(question["turns"]) == 2 else (1,):
            name, messages = judge_messages(question, answers, prompts, references, turn)
            fields = {
                "question_id": question["question_id"],
                "turn": turn,
                "category": question.get("category"),
            }
            fields["judge_prompt"] = name
            requests.append(JudgeRequest(digest([identity, fields, messages], 24), messages, fields))
    journal = KeyedJournal(out_dir / "judgments.jsonl")
    judge_all(
        recipe, suites.judge, judge_sampling(config.judge_max_new_tokens), journal, requests, parse_rating
    )
    return journal.finish([r.key for r in requests]) + [
        {**r.fields, "value": None, "error": True} for r in requests if journal.get(r.key) is None
    ]


def judge_messages(
    question: dict, answers: dict, prompts: dict[str, dict], references: dict, turn: int
) -> tuple[str, list[dict[str, str]]]:
    """The judge prompt's name and messages for one turn, filled as common.py run_judge_single fills them."""
    qid, turns = question["question_id"], question["turns"]
    reference_based = question.get("category") in NEED_REF_CATS
    name = ("single-math-v1" if reference_based else "single-v1") + ("-multi-turn" if turn == 2 else "")
    template = prompts[name]
    fill: dict[str, Any] = {}
    if reference_based:
        reference = references[qid]
        fill["ref_answer_1"] = reference[0]
        fill["ref_answer_2"] = reference[1] if len(reference) > 1 else ""
    if turn == 2:
        fill |= {
            "question_1": turns[0],
            "question_2": turns[1],
            "answer_1": answers[(qid, 1)],
            "answer_2": answers[(qid, 2)],
        }
    else:
        fill |= {"question": turns[0], "answer": answers[(qid, 1)]}
    user = template["prompt_template"].format(**fill)
    return name, [
        {"role": "system", "content": template["system_prompt"]},
        {"role": "user", "content": user},
    ]


def summarize(judgments: list[dict]) -> dict[str, Any]:
    """show_result.py's numbers: the mean score over judged turns, per turn, per category; and the counts."""
    scored = [j for j in judgments if j.get("value") is not None]

    def mean(rows: list[dict]) -> float | None:
        return sum(r["value"] for r in rows) / len(rows) if rows else None

    categories = sorted({str(j.get("category")) for j in judgments})
    return {
        "score": mean(scored),
        "turns": {str(t): mean([j for j in scored if j["turn"] == t]) for t in (1, 2)},
        "categories": {c: mean([j for j in scored if str(j.get("category")) == c]) for c in categories},
        "judgments": len(judgments),
        "judged": len(scored),
        "failed": sum(1 for j in judgments if j.get("value") is None and not j.get("error")),
        "errors": sum(1 for j in judgments if j.get("error")),
        "reasked": sum(1 for j in judgments if j.get("parse_failures")),
        "parse_failures": sum(j.get("parse_failures", 0) for j in judgments),
    }
