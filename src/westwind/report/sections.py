"""One section builder per stage: markdown lines from that stage's outputs."""

from __future__ import annotations

import html
from pathlib import Path
from statistics import fmean
from typing import Any

from westwind import io
from westwind.identity import DATA_STATS
from westwind.report.formatting import interval, number, order_flip_text, percent, win_rate_text
from westwind.report.outputs import RunOutputs, last_value, read_json, run_summary, series
from westwind.report.plots import (
    DPO_REWARD_KEYS,
    PLOTS_DIR,
    aift_plots,
    dpo_rewards_plot,
    eval_plot,
    line_plot,
)
from westwind.stages import STAGES, TITLES

OPTIONAL_STAGES = ("distill", "rm")  # listed only in runs that have them


def distill_section(stage_dir: Path) -> list[str]:
    """The distill stage's counts: what the teacher proposed and wrote, and every drop by reason."""
    stats = read_json(stage_dir / "stats.json")
    if not stats:
        return []
    lines = ["## Distill", ""]
    for part in ("instructions", "prompts", "dialogues", "quality"):
        if part in stats:
            counts = ", ".join(f"{k} {v}" for k, v in stats[part].items() if v not in ({}, 0))
            lines.append(f"- {part}: {counts}")
    lines += [f"- teacher failures (retried): {stats.get('teacher_failures') or 'none'}"]
    return [*lines, f"- dSFT rows: {stats.get('rows')}", ""]


def stage_table(outputs: RunOutputs) -> list[str]:
    present = {
        "distill": (outputs.stage_dirs["distill"] / "stats.json").exists(),
        "sft": "sft" in outputs.histories,
        "aift": outputs.aift_stats is not None or outputs.aift_scores is not None,
        "rm": outputs.rm_metrics is not None,
        "dpo": "dpo" in outputs.histories,
        "eval": outputs.eval_results is not None,
    }
    lines = ["## Stages", "", "| stage | output | status | wall time |", "| --- | --- | --- | --- |"]
    for stage in STAGES:
        if stage in OPTIONAL_STAGES and not present[stage] and stage not in outputs.stage_seconds:
            continue  # an optional stage: listed only in runs that have it
        seconds = outputs.stage_seconds.get(stage)
        took = f"{seconds / 60:.1f} min" if seconds is not None else "n/a"
        status = "done" if present[stage] else "no outputs"
        lines.append(f"| {TITLES[stage]} | `{outputs.stage_dirs[stage]}` | {status} | {took} |")
    return [*lines, ""]


def sft_section(outputs: RunOutputs, plots: Path) -> list[str]:
    history = outputs.histories.get("sft")
    if not history:
        return []
    steps, losses = series(history, "loss")
    lines = ["## dSFT", ""]
    lines += training_facts(history, steps, losses)
    lines += dropped_rows_lines(outputs.stage_dirs["sft"])
    if steps:
        curves = {"train loss": (steps, losses)}
        if series(history, "eval_loss")[0]:
            curves["eval loss"] = series(history, "eval_loss")
        line_plot(plots / "sft_loss.png", "dSFT loss", curves, "loss")
        lines += ["", f"![dSFT loss]({PLOTS_DIR}/sft_loss.png)"]
    return [*lines, ""]


def training_facts(history: list[dict[str, Any]], steps: list[int], losses: list[float]) -> list[str]:
    closing = run_summary(history)
    facts = []
    if steps:
        facts.append(
            f"- loss: {number(losses[0])} at step {steps[0]} → {number(losses[-1])} at step {steps[-1]}"
        )
    if "train_runtime" in closing:
        facts.append(f"- train runtime: {closing['train_runtime']:.1f} s ({closing.get('step', '?')} steps)")
    accuracy = last_value(history, "mean_token_accuracy")
    if accuracy is not None:
        facts.append(f"- last logged mean token accuracy: {percent(accuracy)}")
    return facts


def dropped_rows_lines(stage_dir: Path) -> list[str]:
    """Rows TRL's preparation dropped (the stage's data_stats.json), per split, with their share."""
    stats = read_json(stage_dir / DATA_STATS) or {}
    lines = []
    for split in ("train", "eval"):
        counts = stats.get(split)
        if isinstance(counts, dict) and counts.get("rows"):
            lines.append(
                f"- {split} rows dropped by TRL (max_length {stats.get('max_length')}): "
                f"{counts['dropped']} of {counts['rows']} ({percent(counts['dropped'] / counts['rows'])})"
            )
    return lines


def aift_section(outputs: RunOutputs, plots: Path) -> list[str]:
    stats, scores = outputs.aift_stats, outputs.aift_scores
    if stats is None and scores is None:
        return []
    lines = ["## AIFT", ""]
    if stats:
        for key in (
            "prompts",
            "judged",
            "candidates",
            "candidates_by_model",
            "pairs",
            "dropped",
            "pairs_by_source",
            "revisions",
            "revision_failures",
            "principles_by_source",
            "score_histogram",
            "score_by_position",
        ):
            if key in stats:
                lines.append(f"- {key.replace('_', ' ')}: {stats[key]}")
        if stats.get("order_flips"):
            lines.append(f"- judge order-flip rate: {order_flip_text(stats['order_flips'])}")
    if scores and scores["chosen"]:
        margins = [c - r for c, r in zip(scores["chosen"], scores["rejected"], strict=True)]
        positive = sum(1 for margin in margins if margin > 0)
        lines += [
            f"- mean score: chosen {number(fmean(scores['chosen']))}, rejected {number(fmean(scores['rejected']))}",
            f"- mean margin (chosen − rejected): {number(fmean(margins))}; "
            f"pairs with a positive margin: {positive}/{len(margins)}",
        ]
        aift_plots(plots, scores)
        lines += ["", f"![AIFT scores]({PLOTS_DIR}/aift_scores.png)"]
    return [*lines, ""]


def rm_section(outputs: RunOutputs) -> list[str]:
    accuracy = rm_accuracy_text(outputs.rm_metrics)
    return ["## Reward model", "", f"- held-out pairwise accuracy: {accuracy}", ""] if accuracy else []


def rm_accuracy_text(metrics: dict[str, Any] | None) -> str | None:
    if not metrics or metrics.get("accuracy") is None:
        return None
    low, high = metrics["ci95"]
    return (
        f"{percent(metrics['accuracy'])} of {metrics['held_out_pairs']} pairs "
        f"(95% CI {percent(low)}–{percent(high)}; ties count as wrong: {metrics['ties']})"
    )


def dpo_section(outputs: RunOutputs, plots: Path) -> list[str]:
    history = outputs.histories.get("dpo")
    if not history:
        return []
    steps, losses = series(history, "loss")
    lines = ["## dDPO", ""]
    lines += training_facts(history, steps, losses)
    lines += dropped_rows_lines(outputs.stage_dirs["dpo"])
    for key in ("rewards/accuracies", "rewards/margins"):
        value = last_value(history, key)
        if value is not None:
            shown = percent(value) if key.endswith("accuracies") else number(value)
            lines.append(f"- last logged {key}: {shown}")
    if steps:
        line_plot(plots / "dpo_loss.png", "dDPO loss", {"train loss": (steps, losses)}, "loss")
        lines += ["", f"![dDPO loss]({PLOTS_DIR}/dpo_loss.png)"]
    if any(series(history, key)[0] for key in DPO_REWARD_KEYS):
        dpo_rewards_plot(plots / "dpo_rewards.png", history)
        lines += ["", f"![dDPO rewards]({PLOTS_DIR}/dpo_rewards.png)"]
    return [*lines, ""]


def eval_section(outputs: RunOutputs, plots: Path) -> list[str]:
    results = outputs.eval_results
    if results is None:
        return []
    lines = ["## Evaluation", "", f"- held-out prompts: {results.get('prompts', 'n/a')}"]
    overlap = results.get("overlap")
    if isinstance(overlap, dict):
        lines.append(
            f"- prompts sharing a {overlap.get('ngram')}-gram with a training prompt: {overlap.get('overlapping')}"
        )
    models = results.get("models", {})
    if models:
        lines += ["", "| model | verifier accuracy | correct / total | 95% CI | judge score (1-10) |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for name, entry in models.items():
            accuracy = entry.get("accuracy") or {}
            single = entry.get("single_answer") or {}
            lines.append(
                f"| {name} | {percent(accuracy.get('rate'))} | {accuracy.get('correct', 'n/a')} / "
                f"{accuracy.get('total', 'n/a')} | {interval(accuracy.get('ci95'))} | "
                f"{number(single.get('mean'), 3) if single else 'n/a'} |"
            )
    win = results.get("win_rate")
    if win:
        lines += [
            "",
            f"- win rate of {win.get('model')} vs {win.get('baseline')} ({win.get('judge')} judge): ",
        ]
        lines[-1] += win_rate_text(win)
    if any("accuracy" in entry for entry in models.values()) or win:
        eval_plot(plots / "eval.png", results)
        lines += ["", f"![evaluation]({PLOTS_DIR}/eval.png)"]
    return [*lines, "", *example_section(outputs.stage_dirs["eval"], results.get("paired"))]


def example_section(eval_dir: Path, pair: Any) -> list[str]:
    """The first held-out prompt the model gets right and the baseline wrong, both answers side by side."""
    if not isinstance(pair, dict) or not (eval_dir / str(pair.get("per_prompt"))).is_file():
        return []
    path = eval_dir / pair["per_prompt"]
    model, baseline = pair.get("model"), pair.get("baseline")
    example = next(
        (
            row
            for row in io.read_jsonl(path)
            if row["correct"].get(model) and not row["correct"].get(baseline)
        ),
        None,
    )
    if example is None:
        return []
    cells = "".join(
        f"<td><pre>{html.escape(example['answers'][name])}</pre></td>" for name in (baseline, model)
    )
    return [
        f"### Example: {model} right, {baseline} wrong",
        "",
        f"Prompt: `{example['prompt']}` (expected answer: `{example['reference']}`)",
        "",
        f"<table><tr><th>{baseline} (wrong)</th><th>{model} (right)</th></tr><tr>{cells}</tr></table>",
        "",
    ]
