"""Arena-Hard-Auto v0.1 as lmarena/arena-hard-auto runs it (gen_answer.py, gen_judgment.py, show_result.py;
commit 196f6b8), with westwind's backends, journals and any judge endpoint.

The judge settings are read from the suite's files, never retyped: temperature, max_tokens, regex_patterns and
prompt_template from arena-hard-v0.1.yaml; the system prompt from judge_utils.py (`JUDGE_SETTINGS[category]`,
`OG_ARENA_HARD_PROMPT` for v0.1), read as Python literals (the file is never executed).
Two games per question: game 1 with the baseline as assistant A, game 2 with the model as A. A verdict is
read as gen_judgment.py's get_score reads it (the reply upper-cased, each pattern in turn, its last match);
a reply without one is re-asked up to max_reasks, then the question is left out (show_result.py drops it).
Score (show_result.py): each game gives the model 1 / 0.5 / 0 points, a significant (`>>`) verdict counting
3 times; the score is the mean over 100 bootstrap resamples of these battles and the interval their 5% and
95% quantiles (a 90% interval, as arena-hard-auto prints it). This is arena-hard's win-rate formula, not the
Bradley-Terry fit of its first release; against one baseline they agree.
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
from westwind.evaluation.suites import SuitesConfig
from westwind.io import atomic_write_json, digest, read_jsonl
from westwind.judges import ParseFailure

WEIGHT = 3  # show_result.py load_judgments(weight=3)
LABEL_TO_SCORE = {  # show_result.py, model as assistant A
    "A>B": [1],
    "A>>B": [1] * WEIGHT,
    "A=B": [0.5],
    "A<<B": [0] * WEIGHT,
    "A<B": [0],
    "B>A": [0],
    "B>>A": [0] * WEIGHT,
    "B=A": [0.5],
    "B<<A": [1] * WEIGHT,
    "B<A": [1],
}
DEFAULT_SYSTEM_PROMPT = "OG_ARENA_HARD_PROMPT"


def load_questions(path: str, limit: int | None = None) -> list[dict]:
    questions = [modern_question(q) for q in read_jsonl(Path(path))]
    for index, question in enumerate(questions):
        if "uid" not in question or not isinstance(question.get("prompt"), str):
            raise DataError(f"{path}: line {index + 1}: a question needs uid and a prompt string")
    return questions[:limit] if limit else questions


def modern_question(row: dict) -> dict:
    """The first release's rows (question_id, turns: [{content}]) in the current form (uid, prompt)."""
    if "uid" in row or "question_id" not in row:
        return row
    return {**row, "uid": row["question_id"], "prompt": row["turns"][0]["content"]}


def load_baseline(path: str) -> tuple[str, dict[str, str]]:
    """The baseline's name and its answer per uid: the last message's content (or its `answer`); in the first
    release's rows (question_id, choices), the first choice's first turn."""
    answers, name = {}, Path(path).stem
    for row in read_jsonl(Path(path)):
        if "messages" in row:
            content = row["messages"][-1]["content"]
            answers[row["uid"]] = content["answer"] if isinstance(content, dict) else content
        else:
            answers[row["question_id"]] = row["choices"][0]["turns"][0]["content"]
        name = row.get("model", row.get("model_id", name))
    return name, answers


def load_settings(path: str) -> dict[str, Any]:
    import yaml

    settings = yaml.safe_load(Path(path).read_text())
    patterns = settings.get("regex_patterns") or [settings.get("regex_pattern")]
    if not isinstance(settings.get("prompt_template"), str) or not all(patterns):
        raise DataError(f"{path}: needs prompt_template and regex_patterns")
    return {
        "judge_model": settings.get("judge_model"),
        "temperature": float(settings.get("temperature", 0.0)),
        "max_tokens": int(settings.get("max_tokens", 4096)),
        "regex_patterns": patterns,
        "prompt_template": settings["prompt_template"],
    }


def load_system_prompts(path: str) -> dict[str, Any]:
    """The module-level constants of judge_utils.py, evaluated as literals (names refer to earlier constants)."""
    tree = ast.parse(Path(path).read_text())
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = literal(node.value, values)
            except ValueError:
                continue
    if DEFAULT_SYSTEM_PROMPT not in values:
        raise DataError(f"{path}: no {DEFAULT_SYSTEM_PROMPT}")
    return values


def literal(node: ast.AST, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise ValueError(node.id)
        return names[node.id]
    if isinstance(node, ast.Dict):
        return {literal(k, names): literal(v, names) for k, v in zip(node.keys, node.values, strict=True)}
    return ast.literal_eval(node)


def system_prompt(values: dict[str, Any], category: str | None) -> str:
    settings = values.get("JUDGE_SETTINGS", {})
    if isinstance(settings, dict) and category in settings:
        return settings[category]["system_prompt"]
    return values[DEFAULT_SYSTEM_PROMPT]


def verdict_parser(patterns: list[str]):
    compiled = [re.compile(p) for p in patterns]

    def parse(reply: str) -> str:
        """gen_judgment.py get_score: per pattern, the last non-empty match of the upper-cased reply."""
        for pattern in compiled:
            matches = [m for m in pattern.findall(reply.upper()) if m != ""]
            if matches:
                label = matches[-1].strip("\n")
                if label not in LABEL_TO_SCORE:
                    raise ParseFailure("unknown verdict", label)
                return label
        raise ParseFailure("no [[verdict]]")

    return parse


def run(recipe, suites: SuitesConfig, model: str, out_dir: Path) -> dict[str, Any]:
    config = suites.arena_hard
    out_dir.mkdir(parents=True, exist_ok=True)
    questions = load_questions(config.questions, config.max_questions)
    baseline_name, baseline = load_baseline(config.baseline_answers)
    missing = [q["uid"] for q in questions if q["uid"] not in baseline]
    if missing:
        raise DataError(f"{config.baseline_answers}: no baseline answer for {len(missing)} question(s)")
    settings = load_settings(config.judge_config)
    answers = answer_all(recipe, suites, model, questions, out_dir / "answers.jsonl")
    games = judge_games(recipe, suites, questions, answers, baseline, settings, out_dir)
    scores = {
        "suite": "arena_hard",
        "model": model,
        "baseline": baseline_name,
        "judge": judge_summary(suites.judge),
        "published_judge": settings["judge_model"],
        "questions": len(questions),
        **score(games, config.bootstrap_rounds),
        "mean_answer_chars": {
            "model": mean_length(answers[q["uid"]] for q in questions),
            "baseline": mean_length(baseline[q["uid"]] for q in questions),
        },
    }
    atomic_write_json(out_dir / "scores.json", scores)
    return scores


def mean_length(texts) -> float:
    lengths = [len(t) for t in texts]
    return sum(lengths) / len(lengths) if lengths else 0.0


def answer_all(recipe, suites: SuitesConfig, model: str, questions: list[dict], path: Path) -> dict[str, str]:
    """Greedy single-turn answers (gen_answer_config.yaml: temperature 0), uid -> text."""
    config = suites.arena_hard
    answerer = Answerer(recipe, model, suites, config.max_new_tokens)
    requests = []
    for question in questions:
        request = AnswerRequest(
            "",
            [{"role": "user", "content": question["prompt"]}],
            0.0,
            seed=0,
            fields={"uid": question["uid"], "category": question.get("category")},
        )
        request.key = answerer.key(request)
        requests.append(request)
    journal = KeyedJournal(path)
    try:
        texts = answerer.generate(journal, requests)
    finally:
        answerer.close()
    journal.finish([r.key for r in requests])
    return {r.fields["uid"]: texts[r.key] for r in requests}


def judge_games(recipe, suites, questions, answers, baseline, settings, out_dir: Path) -> list[dict]:
    """Both games of every question (game 1: baseline is A; game 2: the model is A)."""
    identity = judge_identity(recipe, suites.judge, settings["max_tokens"], settings["temperature"])
    prompts = load_system_prompts(suites.arena_hard.judge_prompts)
    patterns = settings["regex_patterns"]  # how a verdict is read: a judgment read otherwise is stale
    requests = []
    for question in questions:
        uid = question["uid"]
        pairs = ((baseline[uid], answers[uid]), (answers[uid], baseline[uid]))
        for game, (answer_a, answer_b) in enumerate(pairs, start=1):
            user = settings["prompt_template"].format(
                QUESTION=question["prompt"], ANSWER_A=answer_a, ANSWER_B=answer_b
            )
            messages = [
                {"role": "system", "content": system_prompt(prompts, question.get("category"))},
                {"role": "user", "content": user},
            ]
            fields = {"uid": uid, "game": game}
            requests.append(
                JudgeRequest(digest([identity, patterns, fields, messages], 24), messages, fields)
            )
    journal = KeyedJournal(out_dir / "judgments.jsonl")
    sampling = judge_sampling(settings["max_tokens"], settings["temperature"])
    judge_all(recipe, suites.judge, sampling, journal, requests, verdict_parser(settings["regex_patterns"]))
    return journal.finish([r.key for r in requests]) + [
        {**r.fields, "value": None, "error": True} for r in requests if journal.get(r.key) is None
    ]


def battles(games: list[dict]) -> tuple[list[float], dict[str, Any]]:
    """The model's points per battle (show_result.py load_judgments) and what was left out."""
    by_uid: dict[str, dict[int, Any]] = {}
    for game in games:
        by_uid.setdefault(game["uid"], {})[game["game"]] = game.get("value")
    points: list[float] = []
    complete = 0
    for verdicts in by_uid.values():
        first, second = verdicts.get(1), verdicts.get(2)
        if first is None or second is None:
            continue
        complete += 1
        points += LABEL_TO_SCORE[second] + [1 - s for s in LABEL_TO_SCORE[first]]
    counts = {
        "questions_judged": complete,
        "questions_left_out": len(by_uid) - complete,
        "games_failed": sum(1 for g in games if g.get("value") is None and not g.get("error")),
        "games_errors": sum(1 for g in games if g.get("error")),
        "parse_failures": sum(g.get("parse_failures", 0) for g in games),
        "verdicts": {
            f"game{n}": count_labels(g.get("value") for g in games if g["game"] == n) for n in (1, 2)
        },
    }
    return points, counts


def count_labels(labels) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label in labels:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def score(games: list[dict], rounds: int, seed: int = 0) -> dict[str, Any]:
    """show_result.py print_leaderboard: the mean of `rounds` bootstrap means, with their 5%/95% quantiles."""
    import numpy as np

    points, counts = battles(games)
    if not points:
        return {"score": None, "ci90": [None, None], "battles": 0, **counts}
    values = np.asarray(points, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.array([rng.choice(values, size=len(values), replace=True).mean() for _ in range(rounds)])
    return {
        "score": float(means.mean()),
        "ci90": [float(np.quantile(means, 0.05)), float(np.quantile(means, 0.95))],
        "win_rate_raw": float(values.mean()),
        "battles": len(points),
        "bootstrap_rounds": rounds,
        **counts,
    }
