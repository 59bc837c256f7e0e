"""The report's section for the published suites (MT-Bench, Arena-Hard): their scores, the judge, the counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # the object API renders PNGs through Agg; no pyplot state

from westwind.io import read_json
from westwind.report.plots import PLOTS_DIR

COMPARABILITY = (
    "Comparable with published numbers only under the same judge model and the same prompts: MT-Bench's "
    "published scores use GPT-4 (`gpt-4`) as judge (Zephyr-7B-β: 7.34), Arena-Hard v0.1's gpt-4-1106-preview "
    "against gpt-4-0314's answers. Under another judge these are this judge's scores."
)


def suites_section(eval_dir: Path, plots: Path) -> list[str]:
    mt_bench = read_json(Path(eval_dir) / "mt_bench" / "scores.json")
    arena_hard = read_json(Path(eval_dir) / "arena_hard" / "scores.json")
    if not isinstance(mt_bench, dict) and not isinstance(arena_hard, dict):
        return []
    lines = ["## Published suites", "", COMPARABILITY, ""]
    if isinstance(mt_bench, dict):
        lines += mt_bench_lines(mt_bench, plots)
    if isinstance(arena_hard, dict):
        lines += arena_hard_lines(arena_hard)
    return lines


def judge_name(scores: dict[str, Any]) -> str:
    judge = scores.get("judge") or {}
    return f"`{judge.get('model')}` ({judge.get('backend')})"


def fmt(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def mt_bench_lines(scores: dict[str, Any], plots: Path) -> list[str]:
    turns = scores.get("turns") or {}
    lines = [
        "### MT-Bench",
        "",
        f"- model: `{scores.get('model')}`; judge: {judge_name(scores)}",
        f"- score (1-10): **{fmt(scores.get('score'))}** (turn 1: {fmt(turns.get('1'))}, turn 2: "
        f"{fmt(turns.get('2'))}) over {scores.get('questions')} questions",
        f"- judgments: {scores.get('judged')} of {scores.get('judgments')} rated; {scores.get('failed')} "
        f"without a readable rating after re-asks, {scores.get('errors')} endpoint failures; "
        f"{scores.get('reasked')} re-asked ({scores.get('parse_failures')} unreadable replies)",
        f"- answer temperatures per category: {scores.get('temperature_source')}",
        "",
        "| category | score |",
        "| --- | --- |",
    ]
    categories = scores.get("categories") or {}
    lines += [f"| {name} | {fmt(value)} |" for name, value in categories.items()]
    if any(value is not None for value in categories.values()):
        category_plot(plots / "mt_bench.png", categories)
        lines += ["", f"![MT-Bench per category]({PLOTS_DIR}/mt_bench.png)"]
    return [*lines, ""]


def arena_hard_lines(scores: dict[str, Any]) -> list[str]:
    low, high = scores.get("ci90") or [None, None]
    lengths = scores.get("mean_answer_chars") or {}
    score = scores.get("score")
    return [
        "### Arena-Hard v0.1",
        "",
        f"- model: `{scores.get('model')}` vs baseline `{scores.get('baseline')}`; judge: {judge_name(scores)} "
        f"(published: `{scores.get('published_judge')}`)",
        f"- score (win rate vs the baseline, `>>` verdicts weighted 3): **{fmt(None if score is None else 100 * score, 1)}%** "
        f"(90% bootstrap interval {fmt(None if low is None else 100 * low, 1)}% to "
        f"{fmt(None if high is None else 100 * high, 1)}%, {scores.get('bootstrap_rounds')} rounds)",
        f"- questions judged in both orders: {scores.get('questions_judged')} of {scores.get('questions')}; "
        f"left out: {scores.get('questions_left_out')} ({scores.get('games_failed')} games without a verdict "
        f"after re-asks, {scores.get('games_errors')} endpoint failures); {scores.get('parse_failures')} "
        "unreadable replies re-asked",
        f"- mean answer length (characters): model {fmt(lengths.get('model'), 0)}, baseline "
        f"{fmt(lengths.get('baseline'), 0)}",
        "",
    ]


def category_plot(path: Path, categories: dict[str, float | None]) -> Path:
    names = [name for name, value in categories.items() if value is not None]
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axes = figure.subplots()
    axes.bar(names, [categories[name] for name in names])
    axes.set(title="MT-Bench score per category", ylabel="score (1-10)", ylim=(0, 10))
    axes.tick_params(axis="x", labelrotation=30)
    axes.grid(axis="y", alpha=0.3)
    figure.savefig(path, dpi=100)
    return path
