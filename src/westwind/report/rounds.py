"""report.md's rounds section for iterative dDPO (westwind.rounds): one row per round, and a plot across rounds.

Each round's eval compares dDPO_k with the recipe's baseline (dSFT) on the same held-out prompts. The
comparison with the previous round is paired per prompt from the two rounds' verifier outcomes
(`per_prompt.jsonl`); with an LLM judge only the win rate against the baseline is shown.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from westwind.evaluation.run import PER_PROMPT, paired
from westwind.io import read_jsonl
from westwind.report.formatting import percent
from westwind.report.outputs import last_value, read_json, trainer_state_path
from westwind.report.plots import PLOTS_DIR


def round_rows(recipes: dict[int, Any]) -> list[dict[str, Any]]:
    """What each round measured, read from its aift/dpo/eval folders; a round not run yet has no eval."""
    rows = []
    for index in sorted(recipes):
        recipe = recipes[index]
        eval_dir = recipe.stage_dir("eval")
        results = read_json(eval_dir / "results.json") or {}
        model = f"dpo-r{index}"
        outcomes = correctness(eval_dir / PER_PROMPT)
        row: dict[str, Any] = {"round": index, "model": model, "eval_dir": str(eval_dir)}
        entry = results.get("models", {}).get(model, {})
        row["accuracy"] = entry.get("accuracy")
        row["baseline"] = results.get("paired", {}).get("baseline") or results.get("win_rate", {}).get(
            "baseline"
        )
        row["baseline_accuracy"] = results.get("models", {}).get(row["baseline"] or "", {}).get("accuracy")
        row["vs_baseline"] = results.get("paired")
        row["win_rate"] = results.get("win_rate")
        previous = rows[-1]["outcomes"] if rows else None
        if previous is not None and outcomes is not None and len(previous) == len(outcomes):
            row["vs_previous"] = paired(outcomes, previous)
        row["outcomes"] = outcomes
        row["mean_answer_chars"] = mean_length(eval_dir / entry["answers"]) if entry.get("answers") else None
        row["aift"] = read_json(recipe.stage_dir("aift") / "stats.json") or {}
        row["dpo_reward_accuracy"] = dpo_last(recipe.stage_dir("dpo"), "rewards/accuracies")
        row["dpo_reward_margin"] = dpo_last(recipe.stage_dir("dpo"), "rewards/margins")
        rows.append(row)
    return rows


def correctness(path: Path) -> list[bool] | None:
    """The evaluated model's per-prompt verifier outcome, in prompt order (its eval's first `correct` entry)."""
    rows = read_jsonl(path) if path.exists() else []
    if not rows:
        return None
    name = next(iter(rows[0]["correct"]))
    return [bool(r["correct"][name]) for r in rows]


def mean_length(path: Path) -> float | None:
    answers = [row.get("answer", "") for row in read_jsonl(path)] if path.exists() else []
    return statistics.fmean(len(a) for a in answers) if answers else None


def dpo_last(stage_dir: Path, key: str) -> float | None:
    state = trainer_state_path(stage_dir)
    return last_value(json.loads(state.read_text()).get("log_history", []), key) if state else None


def comparison_text(pair: dict[str, Any] | None) -> str:
    if not pair:
        return "—"
    gain, (low, high) = pair.get("gain", float("nan")), pair.get("ci95", [float("nan")] * 2)
    return (
        f"{100 * gain:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}], "
        f"{pair.get('wins')}/{pair.get('losses')} W/L, p = {pair.get('sign_test_p', float('nan')):.2g}"
    )


def rounds_section(rows: list[dict[str, Any]], plot: Path | None) -> list[str]:
    lines = [
        "## Rounds (iterative dDPO)",
        "",
        "Every round's model on the same held-out prompts. Comparisons are paired per prompt: gain in "
        "accuracy points with its 95% interval, wins/losses (prompts only one of the two got right), and the "
        "one-sided sign test.",
        "",
        "| round | model | accuracy | vs previous round | vs dSFT | win rate | mean answer chars | AIFT prompts "
        "| AIFT pairs | dDPO reward acc. / margin |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        accuracy = row["accuracy"] or {}
        win = row["win_rate"]
        prompts = row["aift"].get("prompts", {}).get("prompts")
        lines.append(
            f"| {row['round']} | {row['model']} | {percent(accuracy.get('rate'))} "
            f"| {comparison_text(row.get('vs_previous')) if row['round'] > 1 else '(= vs dSFT)'} "
            f"| {comparison_text(row['vs_baseline'])} | {percent(win.get('rate')) if win else '—'} "
            f"| {fmt(row['mean_answer_chars'], '.1f')} | {prompts if prompts is not None else '—'} "
            f"| {pair_count(row['aift'].get('pairs'))} "
            f"| {percent(row['dpo_reward_accuracy'])} / {fmt(row['dpo_reward_margin'], '.2f')} |"
        )
    if rows and rows[0]["baseline_accuracy"]:
        lines += [
            "",
            f"dSFT ({rows[0]['baseline']}) accuracy: {percent(rows[0]['baseline_accuracy'].get('rate'))}",
        ]
    if plot is not None:
        lines += ["", f"![accuracy across rounds]({PLOTS_DIR}/{plot.name})"]
    return [*lines, ""]


def pair_count(pairs: Any) -> str:
    """AIFT's `pairs` is a count per split ({"train": n, "test": m})."""
    if isinstance(pairs, dict):
        return " + ".join(f"{n} {split}" for split, n in pairs.items())
    return "—" if pairs is None else str(pairs)


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def rounds_plot(path: Path, rows: list[dict[str, Any]]) -> Path | None:
    """Accuracy (with its 95% interval) of dSFT (round 0) and every round's model."""
    points = []
    if rows and rows[0]["baseline_accuracy"]:
        points.append((0, rows[0]["baseline_accuracy"]))
    points += [(row["round"], row["accuracy"]) for row in rows if row["accuracy"]]
    if len(points) < 2:
        return None
    figure = Figure(figsize=(5, 3.5), layout="constrained")
    axes = figure.subplots()
    xs = [x for x, _ in points]
    rates = [100 * a["rate"] for _, a in points]
    low = [rate - 100 * a["ci95"][0] for rate, (_, a) in zip(rates, points, strict=True)]
    high = [100 * a["ci95"][1] - rate for rate, (_, a) in zip(rates, points, strict=True)]
    axes.errorbar(xs, rates, yerr=[low, high], marker="o", capsize=4)
    axes.set(title="held-out accuracy across rounds", xlabel="round (0 = dSFT)", ylabel="accuracy (%)")
    axes.set_xticks(xs)
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def append_rounds_section(report: Path, recipes: dict[int, Any]) -> list[dict[str, Any]]:
    """Add the rounds section to a written report.md and save rounds.json beside it; returns the rows."""
    rows = round_rows(recipes)
    (report.parent / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    plot = rounds_plot(report.parent / PLOTS_DIR / "rounds_accuracy.png", rows)
    text = report.read_text().rstrip() + "\n\n" + "\n".join(rounds_section(rows, plot))
    report.write_text(text)
    summary = [{k: v for k, v in row.items() if k not in ("outcomes", "aift")} for row in rows]
    (report.parent / "rounds.json").write_text(json.dumps(summary, indent=2) + "\n")
    return rows
