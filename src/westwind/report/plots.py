"""The report's PNG plots (matplotlib's object API through Agg; no pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # the object API renders PNGs through Agg; no pyplot state

from westwind.report.formatting import percent
from westwind.report.outputs import series

PLOTS_DIR = "plots"  # beside report.md
DPO_REWARD_KEYS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")


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
