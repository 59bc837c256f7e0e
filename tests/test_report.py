"""The run report: markdown + PNG plots from the stage outputs, with numbers computed from those outputs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from westwind.evaluation.significance import wilson_interval
from westwind.report import summary_lines, write_report
from westwind.report.outputs import trainer_state_path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def sft_history(rng: random.Random, steps: int = 12) -> list[dict]:
    history = [
        {"loss": 3.0 / (1 + step) + rng.random() * 0.1, "mean_token_accuracy": rng.random(), "step": step}
        for step in range(5, 5 * steps + 1, 5)
    ]
    return [*history, {"train_runtime": 12.5 + rng.random(), "train_loss": 1.0, "step": 5 * steps}]


def dpo_history(rng: random.Random, steps: int = 8) -> list[dict]:
    """Entries with the keys TRL 1.16's DPOTrainer logs."""
    history = []
    for step in range(1, steps + 1):
        chosen, rejected = rng.uniform(-0.1, 0.3), rng.uniform(-0.3, 0.1)
        history.append(
            {
                "loss": 0.69 - 0.02 * step,
                "rewards/chosen": chosen,
                "rewards/rejected": rejected,
                "rewards/margins": chosen - rejected,
                "rewards/accuracies": rng.random(),
                "logps/chosen": -30.0,
                "logps/rejected": -32.0,
                "step": step,
            }
        )
    return [*history, {"train_runtime": 3.25, "train_loss": 0.6, "step": steps}]


def accuracy_entry(correct: int, total: int) -> dict:
    low, high = wilson_interval(correct, total)
    return {"correct": correct, "total": total, "rate": correct / total, "ci95": [low, high]}


@pytest.fixture
def run_dir(tmp_path) -> dict:
    """A finished run's output dir (the layout westwind's stages write), with randomized numbers."""
    rng = random.Random(1234)
    root = tmp_path / "run"
    sft, dpo = sft_history(rng), dpo_history(rng)
    write_json(root / "sft" / "trainer_state.json", {"log_history": sft})
    # DPO kept only checkpoints: the report must pick the newest by step (10 > 9), not by name.
    write_json(root / "dpo" / "checkpoint-9" / "trainer_state.json", {"log_history": dpo[:3]})
    write_json(root / "dpo" / "checkpoint-10" / "trainer_state.json", {"log_history": dpo})
    for stage, seconds in (("sft", 150.0), ("dpo", 48.0)):
        write_json(root / stage / ".westwind-stage.json", {"config_hash": "x", "seconds": seconds})

    chosen = [rng.choice([1.0, 1.0, 0.0]) for _ in range(40)]
    rejected = [rng.choice([0.0, 0.0, 1.0]) for _ in range(40)]
    pairs = Dataset.from_dict(
        {"score_chosen": chosen, "score_rejected": rejected, "prompt_id": list(range(40))}
    )
    DatasetDict({"train": pairs.select(range(32)), "test": pairs.select(range(32, 40))}).save_to_disk(
        str(root / "aift" / "dataset")
    )
    write_json(
        root / "aift" / "stats.json",
        {
            "judged": 55,
            "pairs": {"train": 32, "test": 8},
            "dropped": {"tie": 15},
            "order_flips": {"checked": 40, "flipped": 6, "rate": 0.15, "what": "pairs asked in both orders"},
        },
    )

    sft_correct, dpo_correct, total = rng.randint(40, 90), rng.randint(91, 140), 200
    wins, ties = rng.randint(30, 60), rng.randint(100, 130)
    losses = total - wins - ties
    win_low, win_high = wilson_interval(round(wins + ties / 2), total)
    results = {
        "prompts": total,
        "overlap": {"ngram": 8, "training_prompts": 3500, "overlapping": 0, "examples": []},
        "models": {
            "dpo": {
                "path": "run/dpo",
                "answers": "answers-dpo.jsonl",
                "accuracy": accuracy_entry(dpo_correct, total),
            },
            "sft": {
                "path": "run/sft",
                "answers": "answers-sft.jsonl",
                "accuracy": accuracy_entry(sft_correct, total),
            },
        },
        "win_rate": {
            "model": "dpo",
            "baseline": "sft",
            "judge": "verifier",
            "wins": wins,
            "ties": ties,
            "losses": losses,
            "failed": 0,
            "rate": (wins + ties / 2) / total,
            "ci95": [win_low, win_high],
        },
    }
    write_json(root / "eval" / "results.json", results)
    return {"root": root, "sft": sft, "dpo": dpo, "chosen": chosen, "rejected": rejected, "results": results}


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def test_report_holds_the_measured_numbers(run_dir):
    report = write_report(run_dir["root"])
    text = report.read_text()
    assert report == run_dir["root"] / "report.md"

    results = run_dir["results"]
    for name in ("sft", "dpo"):
        accuracy = results["models"][name]["accuracy"]
        expected = f"{pct(accuracy['rate'])} ({accuracy['correct']}/{accuracy['total']}, 95% CI "
        assert f"{name} accuracy: {expected}{pct(accuracy['ci95'][0])} – {pct(accuracy['ci95'][1])})" in text
    win = results["win_rate"]
    assert f"{pct(win['rate'])} (95% CI" in text
    assert f"wins {win['wins']}, ties {win['ties']}, losses {win['losses']}" in text

    sft_losses = [entry["loss"] for entry in run_dir["sft"] if "loss" in entry]
    assert f"{sft_losses[0]:.4g} at step 5 → {sft_losses[-1]:.4g} at step 60" in text
    dpo_train = [entry for entry in run_dir["dpo"] if "loss" in entry]
    assert f"last logged rewards/accuracies: {pct(dpo_train[-1]['rewards/accuracies'])}" in text
    assert f"last logged rewards/margins: {dpo_train[-1]['rewards/margins']:.4g}" in text

    chosen, rejected = run_dir["chosen"], run_dir["rejected"]
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    assert f"mean margin (chosen − rejected): {sum(margins) / len(margins):.4g}" in text
    assert f"pairs with a positive margin: {sum(m > 0 for m in margins)}/{len(margins)}" in text
    assert "2.5 min" in text and "0.8 min" in text  # stage wall times from the pipeline markers
    assert "judge order-flip rate: 15.0% (6 of 40 pairs asked in both orders)" in text


def test_report_writes_every_plot_as_png(run_dir):
    text = write_report(run_dir["root"]).read_text()
    for name in ("sft_loss", "dpo_loss", "dpo_rewards", "aift_scores", "eval"):
        png = run_dir["root"] / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC, name
        assert f"(plots/{name}.png)" in text


def test_summary_lines_give_the_result(run_dir):
    lines = summary_lines(run_dir["root"])
    dpo = run_dir["results"]["models"]["dpo"]["accuracy"]
    assert any(
        line.startswith(f"dpo accuracy: {pct(dpo['rate'])} ({dpo['correct']}/{dpo['total']}")
        for line in lines
    )
    assert any(
        line.startswith(f"dpo vs sft win rate: {pct(run_dir['results']['win_rate']['rate'])}")
        for line in lines
    )
    assert "AIFT pairs: {'train': 32, 'test': 8}" in lines
    sft = run_dir["results"]["models"]["sft"]["accuracy"]
    assert f"dpo − sft accuracy: {100 * (dpo['rate'] - sft['rate']):+.1f} points" in lines


def test_report_includes_only_the_stages_that_ran(tmp_path, run_dir):
    root = tmp_path / "partial"
    (root / "sft").mkdir(parents=True)
    (root / "sft" / "trainer_state.json").write_text(json.dumps({"log_history": run_dir["sft"]}))
    text = write_report(root).read_text()
    assert "## dSFT" in text
    for absent in ("## AIFT", "## dDPO", "## Evaluation", "## Result"):
        assert absent not in text
    assert (root / "plots" / "sft_loss.png").is_file()
    assert not (root / "plots" / "eval.png").exists()
    assert summary_lines(root) == []


def test_empty_output_dir_still_reports(tmp_path):
    text = write_report(tmp_path).read_text()
    assert text.count("no outputs") == 4


def test_stage_dirs_override(tmp_path, run_dir):
    moved = tmp_path / "elsewhere"
    (run_dir["root"] / "sft").rename(moved)
    text = write_report(run_dir["root"], stage_dirs={"sft": moved}).read_text()
    assert "## dSFT" in text and f"`{moved}`" in text


def test_trainer_state_prefers_the_stage_dir(tmp_path):
    write_json(tmp_path / "checkpoint-3" / "trainer_state.json", {})
    assert trainer_state_path(tmp_path) == tmp_path / "checkpoint-3" / "trainer_state.json"
    write_json(tmp_path / "trainer_state.json", {})
    assert trainer_state_path(tmp_path) == tmp_path / "trainer_state.json"
    assert trainer_state_path(tmp_path / "missing") is None


def test_wilson_interval_known_values():
    # Closed forms: with no successes the upper bound is z²/(n+z²); with all successes the lower is n/(n+z²).
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    low, high = wilson_interval(83, 200)
    assert low < 83 / 200 < high
    assert (low + high) / 2 == pytest.approx((83 + z2 / 2) / (200 + z2))  # centred on the shrunk estimate
    assert wilson_interval(83, 200, confidence=0.99)[0] < low
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert not any(math.isnan(v) for v in wilson_interval(1, 3))


def test_rows_trl_dropped_are_reported_per_split(tmp_path):
    from westwind.report.sections import dropped_rows_lines

    stats = {"max_length": 25, "train": {"rows": 3000, "kept": 2256, "dropped": 744}}
    (tmp_path / "data_stats.json").write_text(json.dumps(stats))
    assert dropped_rows_lines(tmp_path) == [
        "- train rows dropped by TRL (max_length 25): 744 of 3000 (24.8%)"
    ]
    assert dropped_rows_lines(tmp_path / "missing") == []


def with_paired_result(run_dir) -> dict:
    """Add what eval writes with a verifier: the paired comparison and the per-prompt answers."""
    root = run_dir["root"]
    rows = [
        {
            "prompt_id": "a",
            "prompt": "What is 1 + 1?",
            "reference": "2",
            "answers": {"dpo": "Answer: 2", "sft": "Answer: 2"},
            "correct": {"dpo": True, "sft": True},
        },
        {
            "prompt_id": "b",
            "prompt": "What is 17 + 25?",
            "reference": "42",
            "answers": {"dpo": "7+5+0=12\n1+2+1=04\nAnswer: 42", "sft": "17+25=32\nAnswer: 32"},
            "correct": {"dpo": True, "sft": False},
        },
    ]
    (root / "eval" / "per_prompt.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    results = run_dir["results"]
    results["paired"] = {
        "model": "dpo",
        "baseline": "sft",
        "wins": 61,
        "ties": 420,
        "losses": 19,
        "gain": 42 / 500,
        "ci95": [0.05, 0.118],
        "sign_test_p": 1.2e-6,
        "per_prompt": "per_prompt.jsonl",
    }
    write_json(root / "eval" / "results.json", results)
    return results


def test_report_states_the_paired_result_and_an_example(run_dir):
    with_paired_result(run_dir)
    text = write_report(run_dir["root"]).read_text()
    assert "dpo − sft accuracy: +8.4 points (95% CI +5.0 to +11.8 points)" in text
    assert "right where sft was wrong on 61 prompts (wins), the reverse on 19 (losses)" in text
    assert "sign test: p = 1.2e-06" in text and "at least 61 wins in 80 differing prompts" in text
    # The example is the prompt dDPO gets right and dSFT wrong, both answers side by side.
    assert "Prompt: `What is 17 + 25?` (expected answer: `42`)" in text
    assert (
        "<td><pre>17+25=32\nAnswer: 32</pre></td><td><pre>7+5+0=12\n1+2+1=04\nAnswer: 42</pre></td>" in text
    )
    assert "dpo − sft accuracy: +8.4 points (95% CI +5.0 to +11.8 points)" in summary_lines(run_dir["root"])
