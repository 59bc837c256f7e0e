"""report.md from the stage sections, and the short summary `westwind run` prints at the end."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from westwind.report.formatting import accuracy_text, percent, win_rate_text
from westwind.report.outputs import RunOutputs, last_value, read_outputs
from westwind.report.plots import PLOTS_DIR
from westwind.report.sections import (
    aift_section,
    distill_section,
    dpo_section,
    eval_section,
    rm_accuracy_text,
    rm_section,
    sft_section,
    stage_table,
)
from westwind.report.suites import suites_section
from westwind.stages import STAGES, TITLES


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
    lines += suites_section(outputs.stage_dirs["eval"], plots)
    report = outputs.output_dir / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report


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
