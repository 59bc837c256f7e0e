"""Run report: `<output_dir>/report.md` plus PNG plots of every stage that has run.

Reads what the stages leave behind, and skips a stage that left nothing:

    <stage>/trainer_state.json (or the newest <stage>/checkpoint-*/)   sft and dpo `log_history`
    aift/stats.json, aift/dataset (`score_chosen` / `score_rejected`)  AIFT pair statistics
    rm/metrics.json                                                     reward model held-out pairwise accuracy
    eval/results.json                                                   see westwind.evaluation
    <stage>/.westwind-stage.json                                        stage wall time (pipeline marker)
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from matplotlib.figure import Figure  # the object API renders PNGs through Agg; no pyplot state

from westwind import io
from westwind.identity import DATA_STATS
from westwind.io import TRAINER_STATE, newest_complete_checkpoint
from westwind.stages import STAGES, TITLES

OPTIONAL_STAGES = ("distill", "rm")  # listed only in runs that have them

PLOTS_DIR = "plots"
DPO_REWARD_KEYS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")


# ---------------------------------------------------------------- reading stage outputs


@dataclass
class RunOutputs:
    """Everything the report reads, loaded once; a missing stage leaves its fields empty."""

    output_dir: Path
    stage_dirs: dict[str, Path]
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    aift_stats: dict[str, Any] | None = None
    aift_scores: dict[str, list[float]] | None = None
    rm_metrics: dict[str, Any] | None = None
    eval_results: dict[str, Any] | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)


def read_outputs(output_dir: str | Path, stage_dirs: Mapping[str, str | Path] | None = None) -> RunOutputs:
    """`stage_dirs` overrides where a stage wrote (default `<output_dir>/<stage>`), e.g. from the recipe."""
    root = Path(output_dir)
    dirs = {stage: Path((stage_dirs or {}).get(stage, root / stage)) for stage in STAGES}
    outputs = RunOutputs(root, dirs)
    for stage in ("sft", "dpo"):
        state = trainer_state_path(dirs[stage])
        if state is not None:
            outputs.histories[stage] = json.loads(state.read_text()).get("log_history", [])
    outputs.aift_stats = read_json(dirs["aift"] / "stats.json")
    outputs.aift_scores = read_pair_scores(dirs["aift"] / "dataset")
    outputs.rm_metrics = read_json(dirs["rm"] / "metrics.json")
    outputs.eval_results = read_json(dirs["eval"] / "results.json")
    for stage, directory in dirs.items():
        marker = io.read_stage_marker(directory)
        if marker and isinstance(marker.get("seconds"), (int, float)):
            outputs.stage_seconds[stage] = float(marker["seconds"])
    return outputs


def trainer_state_path(stage_dir: Path) -> Path | None:
    """`trainer_state.json` in the stage dir, else in its newest complete `checkpoint-<step>`."""
    if (stage_dir / TRAINER_STATE).is_file():
        return stage_dir / TRAINER_STATE
    checkpoint = newest_complete_checkpoint(stage_dir)
    return checkpoint / TRAINER_STATE if checkpoint else None


def read_json(path: Path) -> dict[str, Any] | None:
    data = io.read_json(path)
    return data if isinstance(data, dict) else None


def read_pair_scores(dataset_dir: Path) -> dict[str, list[float]] | None:
    """`score_chosen` and `score_rejected` over every split of the saved AIFT dataset."""
    if not dataset_dir.is_dir():
        return None
    from datasets import DatasetDict, load_from_disk

    dataset = load_from_disk(str(dataset_dir))
    parts = list(dataset.values()) if isinstance(dataset, DatasetDict) else [dataset]
    scores: dict[str, list[float]] = {"chosen": [], "rejected": []}
    for part in parts:
        if not {"score_chosen", "score_rejected"} <= set(part.column_names):
            return None
        for chosen, rejected in zip(part["score_chosen"], part["score_rejected"], strict=True):
            if chosen is not None and rejected is not None:  # revision pairs have no scores
                scores["chosen"].append(float(chosen))
                scores["rejected"].append(float(rejected))
    return scores


def series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the log entries that hold `key` (the closing summary entry has none)."""
    entries = [e for e in history if isinstance(e.get(key), (int, float)) and "step" in e]
    return [int(e["step"]) for e in entries], [float(e[key]) for e in entries]


def last_value(history: list[dict[str, Any]], key: str) -> float | None:
    values = series(history, key)[1]
    return values[-1] if values else None


def run_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The closing entry the Trainer logs (train_runtime, train_loss), or an empty dict."""
    for entry in reversed(history):
        if "train_runtime" in entry:
            return entry
    return {}


# ---------------------------------------------------------------- numbers as text


def percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def interval(ci: Any) -> str:
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or any(v is None for v in ci):
        return "n/a"
    return f"{percent(ci[0])} – {percent(ci[1])}"


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def accuracy_text(accuracy: dict[str, Any]) -> str:
    """e.g. `41.5% (83/200, 95% CI 34.9% – 48.4%)`."""
    return (
        f"{percent(accuracy.get('rate'))} ({accuracy.get('correct')}/{accuracy.get('total')}, "
        f"95% CI {interval(accuracy.get('ci95'))})"
    )


def win_rate_text(win: dict[str, Any]) -> str:
    failed = f", {win['failed']} failed" if win.get("failed") else ""
    p_value = f"; sign test p = {win['sign_test_p']:.2g}" if "sign_test_p" in win else ""
    return (
        f"{percent(win.get('rate'))} (95% CI {interval(win.get('ci95'))}; wins {win.get('wins')}, "
        f"ties {win.get('ties')}, losses {win.get('losses')}{failed}; ties count half{p_value})"
    )


# ---------------------------------------------------------------- plots


def line_plot(path: Path, title: str, lines: dict[str, tuple[list[int], list[float]]], ylabel: str) -> Path:
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axes = figure.subplots()
    for name, (steps, values) in lines.items():
        axes.plot(steps, values, marker="." if len(steps) < 30 else None, label=name)
    axes.set(title=title, xlabel="step", ylabel=ylabel)
    values = [value for _, series_values in lines.values() for value in series_values]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        axes.set_yscale("log")  # a from-scratch loss falls by orders of magnitude
    axes.grid(alpha=0.3)
    if len(lines) > 1:
        axes.legend()
    figure.savefig(path, dpi=100)
    return path


def dpo_rewards_plot(path: Path, history: list[dict[str, Any]]) -> Path:
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    margins_axes, accuracy_axes = figure.subplots(1, 2)
    for key in ("rewards/margins", "rewards/chosen", "rewards/rejected"):
        steps, values = series(history, key)
        if steps:
            margins_axes.plot(steps, values, label=key.split("/")[1])
    margins_axes.axhline(0, color="grey", linewidth=0.8)
    margins_axes.set(title="dDPO implicit rewards", xlabel="step", ylabel="reward")
    margins_axes.legend()
    accuracy_axes.plot(*series(history, "rewards/accuracies"), color="tab:green")
    accuracy_axes.set(title="dDPO reward accuracy", xlabel="step", ylabel="chosen > rejected", ylim=(0, 1.05))
    for axes in (margins_axes, accuracy_axes):
        axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def aift_plots(plots: Path, scores: dict[str, list[float]]) -> list[Path]:
    """Score histograms of chosen and rejected answers, and of the per-pair margin."""
    margins = [c - r for c, r in zip(scores["chosen"], scores["rejected"], strict=True)]
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    score_axes, margin_axes = figure.subplots(1, 2)
    values = scores["chosen"] + scores["rejected"]
    bins = histogram_bins(values)
    score_axes.hist([scores["chosen"], scores["rejected"]], bins=bins, label=["chosen", "rejected"])
    score_axes.set(title="AIFT judge scores", xlabel="score", ylabel="pairs")
    score_axes.legend()
    margin_axes.hist(margins, bins=histogram_bins(margins), color="tab:purple")
    margin_axes.set(title="chosen − rejected margin", xlabel="margin", ylabel="pairs")
    path = plots / "aift_scores.png"
    figure.savefig(path, dpi=100)
    return [path]


def histogram_bins(values: list[float]) -> int | list[float]:
    """One bin per value for few distinct values (e.g. a 0/1 verifier), else 20 equal bins."""
    distinct = sorted(set(values))
    if 0 < len(distinct) <= 12:
        gaps = [b - a for a, b in zip(distinct, distinct[1:], strict=False)] or [1.0]
        half = min(gaps) / 2
        return [distinct[0] - half] + [value + half for value in distinct]
    return 20


def eval_plot(path: Path, results: dict[str, Any]) -> Path:
    """Verifier accuracy per model with its 95% interval; the win rate beside it when present."""
    models = {
        name: entry["accuracy"] for name, entry in results.get("models", {}).items() if "accuracy" in entry
    }
    win = results.get("win_rate")
    figure = Figure(figsize=(8 if win else 5, 3.5), layout="constrained")
    axes = figure.subplots(1, 2 if win else 1, squeeze=False)[0]
    names = list(models)
    rates = [models[name]["rate"] for name in names]
    errors = [
        [rate - models[name]["ci95"][0] for name, rate in zip(names, rates, strict=True)],
        [models[name]["ci95"][1] - rate for name, rate in zip(names, rates, strict=True)],
    ]
    axes[0].bar(
        names, rates, yerr=errors, capsize=6, color=["tab:blue", "tab:orange", "tab:green"][: len(names)]
    )
    axes[0].set(title="verifier accuracy (95% CI)", ylabel="accuracy", ylim=(0, 1))
    if win:
        counts = [win.get("wins", 0), win.get("ties", 0), win.get("losses", 0)]
        axes[1].bar(["wins", "ties", "losses"], counts, color=["tab:green", "tab:gray", "tab:red"])
        axes[1].set(title=f"{win.get('model')} vs {win.get('baseline')}: win rate {percent(win.get('rate'))}")
    figure.savefig(path, dpi=100)
    return path


# ---------------------------------------------------------------- markdown


def write_report(output_dir: str | Path, stage_dirs: Mapping[str, str | Path] | None = None) -> Path:
    """Write `<output_dir>/report.md` and `<output_dir>/plots/*.png` for whichever stages have outputs."""
    outputs = read_outputs(output_dir, stage_dirs)
    plots = outputs.output_dir / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    lines = [f"# westwind run report: `{outputs.output_dir}`", ""]
    headline = headline_lines(outputs)
    if headline:
        lines += ["## Result", "", *[f"- {line}" for line in headline], ""]
    lines += stage_table(outputs)
    lines += distill_section(outputs.stage_dirs["distill"])
    lines += sft_section(outputs, plots)
    lines += aift_section(outputs, plots)
    lines += rm_section(outputs)
    lines += dpo_section(outputs, plots)
    lines += eval_section(outputs, plots)
    report = outputs.output_dir / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report


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
            "score_histogram",
            "score_by_position",
        ):
            if key in stats:
                lines.append(f"- {key.replace('_', ' ')}: {stats[key]}")
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


def headline_lines(outputs: RunOutputs) -> list[str]:
    """The measured result in a few lines: accuracy per model, the paired comparison, the win rate."""
    results = outputs.eval_results or {}
    lines = [
        f"{name} accuracy: {accuracy_text(entry['accuracy'])}"
        for name, entry in results.get("models", {}).items()
        if isinstance(entry.get("accuracy"), dict)
    ]
    win, pair = results.get("win_rate"), results.get("paired")
    if win:
        lines.append(f"{win.get('model')} vs {win.get('baseline')} win rate: {win_rate_text(win)}")
    if isinstance(pair, dict):
        lines += paired_lines(pair)
    elif win:
        rates = [accuracy_rate(results, win.get(side)) for side in ("model", "baseline")]
        if None not in rates:
            points = 100 * (rates[0] - rates[1])
            lines.append(f"{win.get('model')} − {win.get('baseline')} accuracy: {points:+.1f} points")
    return lines


def paired_lines(pair: dict[str, Any]) -> list[str]:
    """The per-prompt comparison in words: gain with its interval, wins/ties/losses, the sign test."""
    model, baseline = pair.get("model"), pair.get("baseline")
    wins, ties, losses = pair.get("wins", 0), pair.get("ties", 0), pair.get("losses", 0)
    low, high = pair.get("ci95", [float("nan")] * 2)
    return [
        f"{model} − {baseline} accuracy: {100 * pair.get('gain', float('nan')):+.1f} points "
        f"(95% CI {100 * low:+.1f} to {100 * high:+.1f} points)",
        f"per prompt: {model} right where {baseline} was wrong on {wins} prompts (wins), the reverse on "
        f"{losses} (losses), the same outcome on {ties} (ties: both right or both wrong)",
        f"sign test: p = {pair.get('sign_test_p', float('nan')):.2g} (one-sided, ties left out: the chance "
        f"of at least {wins} wins in {wins + losses} differing prompts if {model} were no better than {baseline})",
    ]


def accuracy_rate(results: dict[str, Any], name: Any) -> float | None:
    accuracy = results.get("models", {}).get(name, {}).get("accuracy")
    return accuracy.get("rate") if isinstance(accuracy, dict) else None


def summary_lines(output_dir: str | Path, stage_dirs: Mapping[str, str | Path] | None = None) -> list[str]:
    """Console lines: stage times, AIFT pairs, DPO reward accuracy, then the evaluation result."""
    outputs = read_outputs(output_dir, stage_dirs)
    lines = []
    if outputs.stage_seconds:
        times = ", ".join(
            f"{TITLES[s]} {outputs.stage_seconds[s] / 60:.1f} min"
            for s in STAGES
            if s in outputs.stage_seconds
        )
        lines.append(f"stage times: {times}")
    if outputs.aift_stats and "pairs" in outputs.aift_stats:
        lines.append(f"AIFT pairs: {outputs.aift_stats['pairs']}")
    if rm_accuracy_text(outputs.rm_metrics):
        lines.append(f"reward model held-out accuracy: {rm_accuracy_text(outputs.rm_metrics)}")
    reward_accuracy = last_value(outputs.histories.get("dpo", []), "rewards/accuracies")
    if reward_accuracy is not None:
        lines.append(f"dDPO last reward accuracy: {percent(reward_accuracy)}")
    return lines + headline_lines(outputs)
