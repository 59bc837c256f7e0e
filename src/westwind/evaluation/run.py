"""Compare a model with a baseline on held-out prompts: (a) pairwise win rate under the recipe's judge,
(b) single-answer 1-10 scores when the judge is an LLM, (c) verifier accuracy. Writes <eval>/results.json.

results.json:
    prompts, prompt_counts, overlap {ngram, training_prompts, overlapping, examples},
    models {LABEL: {path, answers, accuracy {correct, total, rate, ci95}, single_answer {mean, scored, failed}}},
    paired {model, baseline, wins, ties, losses, gain, ci95, sign_test_p, per_prompt}   # with a verifier
    extra_paired [{model, baseline, wins, ...}]   # one per eval.extra_baselines, with a verifier
    win_rate {model, baseline, judge, wins, ties, losses, failed, rate, ci95, sign_test_p[, order_flips, parse_failures, request_failures]}

With a verifier, per_prompt.jsonl (`paired.per_prompt`) holds every prompt's reference and both models' answers and correctness.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from westwind.aift.config import GeneratorConfig, JudgeConfig
from westwind.aift.prompts import Decontaminator, Prompt, extract, load_prompts, normalize_text
from westwind.endpoints import resolve_model
from westwind.evaluation.config import EvalConfig
from westwind.evaluation.significance import paired_difference_interval, sign_test_p, wilson_interval
from westwind.generation import ChatRequest, build_backend, resolved_sampling
from westwind.io import atomic_write_jsonl, atomic_write_text, digest, read_jsonl
from westwind.judges import Asker, JudgeItem, PairwiseJudge, ParseFailure, judge_sampling, make_judge

LLM_JUDGES = ("pairwise", "ultrafeedback")


def label(reference: str) -> str:
    return reference[1:] if reference.startswith("@") else Path(reference).name


def evaluate(recipe, config: EvalConfig, out_dir: Path, seed: int = 0) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts, counts = load_prompts(config.prompts, seed, reference_column=config.reference_column)
    judge = config.judge or (recipe.aift.judge if recipe.aift is not None else None)
    verifier = config.verifier or (judge.function if judge is not None and judge.kind == "verifier" else None)
    results: dict[str, Any] = {
        "prompts": len(prompts),
        "prompt_counts": counts,
        "overlap": training_overlap(recipe, config, prompts, seed),
        "models": {},
    }
    answers, correct = {}, {}
    for reference in (config.model, config.baseline, *config.extra_baselines):
        name = label(reference)
        answers[name] = generate_answers(
            recipe, reference, prompts, config, out_dir / f"answers-{name}.jsonl", seed
        )
        entry: dict[str, Any] = {
            "path": recipe.resolve_reference(reference),
            "answers": f"answers-{name}.jsonl",
        }
        if verifier:
            correct[name] = verifier_correct(verifier, prompts, answers[name])
            entry["accuracy"] = accuracy(correct[name])
        results["models"][name] = entry
    model, baseline = label(config.model), label(config.baseline)
    if verifier:
        write_per_prompt(out_dir / PER_PROMPT, prompts, answers, correct)
        results["paired"] = {
            "model": model,
            "baseline": baseline,
            **paired(correct[model], correct[baseline]),
            "per_prompt": PER_PROMPT,
        }
        results["extra_paired"] = [
            {"model": model, "baseline": label(extra), **paired(correct[model], correct[label(extra)])}
            for extra in config.extra_baselines
        ]
    if judge is not None:
        results["win_rate"] = {
            "model": model,
            "baseline": baseline,
            "judge": judge.kind,
            **win_rate(judge, recipe, prompts, answers[model], answers[baseline]),
        }
        if judge.kind in LLM_JUDGES and config.single_answer_scores:
            backend = build_backend(judge, resolve_model(judge, recipe))
            for name in (model, baseline):
                results["models"][name]["single_answer"] = single_answer_scores(
                    backend, judge, prompts, answers[name]
                )
            backend.close()
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def generate_answers(
    recipe, reference: str, prompts: list[Prompt], config, path: Path, seed: int
) -> list[str]:
    """Greedy (unless sampling says otherwise) answers, one per prompt; reused when `path` already has them all
    from the same model (its content identity) and sampling."""
    generator = GeneratorConfig(model=reference, sampling=config.sampling, batch_size=config.batch_size)
    model = resolve_model(generator, recipe)
    key = digest([model.fingerprint, dataclasses.asdict(config.sampling), seed], 16)
    cached = {row["prompt_id"]: row["answer"] for row in read_jsonl(path) if row.get("key") == key}
    if all(p.prompt_id in cached for p in prompts):
        return [cached[p.prompt_id] for p in prompts]
    backend = build_backend(generator, model, seed)
    sampling = resolved_sampling(config.sampling, default_temperature=0.0)
    requests = [ChatRequest(p.prompt_id, p.messages, sampling, seed=seed) for p in prompts]
    texts: dict[str, str] = {}
    description = f"eval: generating ({label(reference)})"
    try:
        for result in tqdm(backend.run(requests), total=len(requests), desc=description, unit="prompt"):
            if result.error:
                raise RuntimeError(f"generation failed for prompt {result.request.key}: {result.error}")
            texts[result.request.key] = result.completions[0].text
    finally:
        backend.close()
    atomic_write_jsonl(
        path, ({"prompt_id": p.prompt_id, "answer": texts[p.prompt_id], "key": key} for p in prompts)
    )
    return [texts[p.prompt_id] for p in prompts]


def verifier_correct(verifier: str, prompts: list[Prompt], answers: list[str]) -> list[bool]:
    scores = score_with(
        JudgeConfig(kind="verifier", function=verifier), None, prompts, [[a] for a in answers]
    )
    return [s[0] is not None and s[0] >= 1.0 for s in scores]


def accuracy(correct: list[bool]) -> dict[str, Any]:
    count = sum(correct)
    low, high = wilson_interval(count, len(correct))
    return {"correct": count, "total": len(correct), "rate": count / len(correct), "ci95": [low, high]}


def paired(model: list[bool], baseline: list[bool]) -> dict[str, Any]:
    """Per-prompt comparison of two models' correctness: wins (only the model right), ties, losses, the
    accuracy gain with its 95% interval, and the one-sided sign test that the model is better."""
    wins = sum(m and not b for m, b in zip(model, baseline, strict=True))
    losses = sum(b and not m for m, b in zip(model, baseline, strict=True))
    total = len(model)
    return {
        "wins": wins,
        "ties": total - wins - losses,
        "losses": losses,
        "gain": (wins - losses) / total if total else float("nan"),
        "ci95": list(paired_difference_interval(wins, losses, total)),
        "sign_test_p": sign_test_p(wins, losses),
    }


PER_PROMPT = "per_prompt.jsonl"


def write_per_prompt(
    path: Path, prompts: list[Prompt], answers: dict[str, list[str]], correct: dict[str, list[bool]]
) -> None:
    rows = (
        {
            "prompt_id": p.prompt_id,
            "prompt": p.text,
            "reference": p.reference,
            "answers": {name: answers[name][i] for name in correct},
            "correct": {name: correct[name][i] for name in correct},
        }
        for i, p in enumerate(prompts)
    )
    atomic_write_jsonl(path, rows)


def score_with(judge: JudgeConfig, recipe, prompts: list[Prompt], candidates: list[list[str]]) -> list[list]:
    """Per-candidate scores from a scoring judge (verifier, reward model); None where it failed."""
    scorer = make_judge(judge, None if judge.kind == "verifier" else resolve_model(judge, recipe))
    items = [
        JudgeItem(p.prompt_id, p.messages, c, p.reference) for p, c in zip(prompts, candidates, strict=True)
    ]
    scores: dict[str, list] = {}
    try:
        for judgment in scorer.judge(items):
            ratings = judgment.ratings or [None] * len(judgment.item.candidates)
            scores[judgment.item.key] = [
                None if r is None or math.isnan(r.score) else r.score for r in ratings
            ]
    finally:
        scorer.close()
    return [scores.get(p.prompt_id, [None] * len(c)) for p, c in zip(prompts, candidates, strict=True)]


def win_rate(
    judge: JudgeConfig, recipe, prompts: list[Prompt], model: list[str], baseline: list[str]
) -> dict:
    """AlpacaEval-style: wins + ties/2 over judged prompts. LLM judges see both orders (disagreement = tie)."""
    outcomes: list[str | None]
    flips = failures = None
    if judge.kind in LLM_JUDGES:
        pairwise = PairwiseJudge(
            build_backend(judge, resolve_model(judge, recipe)), judge.sampling, judge.max_reasks
        )
        try:
            verdicts = pairwise.verdicts(
                [(p.messages, a, b) for p, a, b in zip(prompts, model, baseline, strict=True)]
            )
        finally:
            pairwise.close()
        # No verdict (a failed request, or a reply the judge never made readable) is `failed`, not a tie.
        outcomes = [
            None if v.value is None else {"A": "win", "B": "loss", "tie": "tie"}[v.value] for v in verdicts
        ]
        both = [v for v in verdicts if v.orders_agree is not None]
        flipped = sum(not v.orders_agree for v in both)
        # Every unreadable reply, by reason, including those a re-ask then fixed; and the failed requests.
        failures = {
            "parse_failures": dict(sum((v.parse_failures for v in verdicts), Counter())),
            "request_failures": dict(sum((v.request_failures for v in verdicts), Counter())),
        }
        flips = {
            "checked": len(both),
            "flipped": flipped,
            "rate": flipped / len(both) if both else None,
            "what": "pairs asked in both orders",
        }
    else:
        scores = score_with(judge, recipe, prompts, [[a, b] for a, b in zip(model, baseline, strict=True)])
        outcomes = [_compare_scores(a, b) for a, b in scores]
    wins, ties, losses = (outcomes.count(o) for o in ("win", "tie", "loss"))
    judged = wins + ties + losses
    rate = (wins + ties / 2) / judged if judged else float("nan")
    low, high = wilson_interval(round(wins + ties / 2), judged) if judged else (float("nan"), float("nan"))
    result = {
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "failed": len(outcomes) - judged,
        "rate": rate,
        "ci95": [low, high],
        "sign_test_p": sign_test_p(wins, losses),
    }
    if flips is not None:  # ties include the pairs whose orders disagreed
        result["order_flips"] = flips
    if failures is not None:
        result.update(failures)
    return result


def _compare_scores(a: float | None, b: float | None) -> str | None:
    if a is None or b is None:
        return None
    return "win" if a > b else "loss" if a < b else "tie"


SINGLE_ANSWER_PROMPT = (
    "Act as an impartial judge and rate the assistant's answer to the user's request below for helpfulness, "
    "relevance, accuracy, depth and level of detail. Explain briefly, then give the rating as an integer from "
    "1 to 10 in exactly this form: [[rating]], for example [[6]].\n\n[Request]\n{prompt}\n\n[Answer]\n{answer}"
)
RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


def parse_single_rating(_key: Any, reply: str) -> float:
    found = RATING.findall(reply)
    if not found:
        raise ParseFailure("no [[rating]]")
    value = float(found[-1])
    if not 1 <= value <= 10:
        raise ParseFailure("rating out of range", str(value))
    return value


def single_answer_scores(backend, judge: JudgeConfig, prompts: list[Prompt], answers: list[str]) -> dict:
    """1-10 scores under westwind's own prompt (not MT-Bench: evaluation.mt_bench runs that); unparsable
    replies are re-asked, then counted as failed."""
    conversations = {
        p.prompt_id: [{"role": "user", "content": SINGLE_ANSWER_PROMPT.format(prompt=p.text, answer=a)}]
        for p, a in zip(prompts, answers, strict=True)
    }
    asker = Asker(backend, judge_sampling(judge.sampling), parse_single_rating, judge.max_reasks)
    values = {key: answer.value for key, answer in asker.ask(conversations) if answer.value is not None}
    mean = sum(values.values()) / len(values) if values else float("nan")
    return {"mean": mean, "scored": len(values), "failed": len(prompts) - len(values)}


def training_overlap(recipe, config: EvalConfig, prompts: list[Prompt], seed: int) -> dict[str, Any]:
    """How many eval prompts share a word n-gram (or equal, normalized) with a training prompt."""
    from westwind.training.data import load_mixture

    sources = list(config.overlap_datasets)
    if recipe.sft_data is not None:
        sources += [d for d in recipe.sft_data.datasets if not d.path.startswith("@")]
    texts: list[str] = []
    for dataset_config in sources:
        dataset = load_mixture([dataset_config], seed)
        column = "messages" if "messages" in dataset.column_names else "prompt"
        texts += [p.text for p in extract(dataset, column, None)[0]]
    if recipe.aift is not None:
        texts += [p.text for p in load_prompts(recipe.aift.prompts, seed)[0]]
    check = Decontaminator(texts, config.overlap_ngram)
    overlapping = [p.text for p in prompts if check(p.text)]
    return {
        "ngram": config.overlap_ngram,
        "training_prompts": len({normalize_text(t) for t in texts}),
        "overlapping": len(overlapping),
        "examples": overlapping[:3],
    }
