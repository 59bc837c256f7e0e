"""report.md's rounds section: each round paired per prompt with the previous round and with dSFT."""

from __future__ import annotations

import json
from pathlib import Path

from westwind.evaluation.run import accuracy, paired
from westwind.report.rounds import append_rounds_section


class RoundFolders:
    """What the section reads of a round's recipe: its stage folders."""

    def __init__(self, root: Path, index: int):
        self.root, self.index = root, index

    def stage_dir(self, stage: str) -> Path:
        return self.root / (stage if self.index == 1 else f"{stage}-r{self.index}")


def write_eval(folder: Path, model: str, model_correct: list[bool], sft_correct: list[bool]) -> None:
    folder.mkdir(parents=True)
    rows = [
        {"prompt_id": str(i), "correct": {model: m, "sft": s}}
        for i, (m, s) in enumerate(zip(model_correct, sft_correct, strict=True))
    ]
    (folder / "per_prompt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"answers-{model}.jsonl").write_text('{"answer": "abcd"}\n{"answer": "ab"}\n')
    results = {
        "models": {
            model: {"accuracy": accuracy(model_correct), "answers": f"answers-{model}.jsonl"},
            "sft": {"accuracy": accuracy(sft_correct)},
        },
        "paired": {"model": model, "baseline": "sft", **paired(model_correct, sft_correct)},
    }
    (folder / "results.json").write_text(json.dumps(results))


def test_each_round_is_paired_with_the_previous_round_and_with_dsft(tmp_path):
    sft = [False] * 6 + [True] * 4
    round_one = [True] * 5 + [False] + [True] * 4
    round_two = [True] * 6 + [True, True, False, False]  # +1 and -2 prompts against round 1
    write_eval(tmp_path / "eval", "dpo-r1", round_one, sft)
    write_eval(tmp_path / "eval-r2", "dpo-r2", round_two, sft)
    (tmp_path / "aift-r2").mkdir()
    (tmp_path / "aift-r2" / "stats.json").write_text(
        json.dumps({"pairs": {"train": 7}, "prompts": {"prompts": 9}})
    )
    report = tmp_path / "report.md"
    report.write_text("# report\n")

    rows = append_rounds_section(report, {1: RoundFolders(tmp_path, 1), 2: RoundFolders(tmp_path, 2)})

    assert "vs_previous" not in rows[0]
    versus = rows[1]["vs_previous"]
    assert (versus["wins"], versus["losses"], versus["ties"]) == (1, 2, 7)
    assert rows[1]["vs_baseline"]["wins"] == 6 and rows[1]["vs_baseline"]["losses"] == 2
    text = report.read_text()
    assert "## Rounds (iterative dDPO)" in text
    assert "| 2 | dpo-r2 | 80.0% | -10.0 pts" in text and "1/2 W/L" in text
    assert "| 3.0 | 9 | 7 train |" in text  # mean answer length, AIFT prompts and pairs of round 2
    assert (tmp_path / "plots" / "rounds_accuracy.png").exists()
    assert [r["round"] for r in json.loads((tmp_path / "rounds.json").read_text())] == [1, 2]
