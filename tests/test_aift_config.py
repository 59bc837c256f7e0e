"""Bad `aift:` sections and command lines: exit code 2 and one line naming the file and the key path."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
from aift_helpers import REPO, write_recipe
from conftest import write_jsonl

from westwind.stages import aift as aift_stage


@pytest.fixture
def section(tmp_path, tiny_model) -> dict:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "hi", "reference": "1"}])
    return {
        "prompts": {"datasets": [{"path": str(prompts)}]},
        "generators": [{"model": str(tiny_model), "n": 1, "sampling": {"max_new_tokens": 4}}],
        "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
    }


def error_line(capsys, argv: list[str], code: int = 2) -> str:
    with pytest.raises(SystemExit) as exit_info:
        result = aift_stage.cli(argv)
        raise SystemExit(result)
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]  # progress bars aside
    assert "Traceback" not in err
    return line


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (lambda s: s["generators"][0].update(temprature=0.7), "aift.generators[0].temprature", "unknown key"),
        (lambda s: s.update(judges={}), "aift.judges", "unknown key (did you mean judge?)"),
        (lambda s: s["judge"].update(kind="llm"), "aift.judge.kind", "is not one of"),
        (lambda s: s["generators"][0].update(backend="vlm"), "aift.generators[0].backend", "is not one of"),
        (lambda s: s.update(binarize={"policy": "best"}), "aift.binarize.policy", "is not one of"),
        (
            lambda s: s["generators"][0]["sampling"].pop("max_new_tokens"),
            "aift.generators[0].sampling.max_new_tokens",
            "required key is missing",
        ),
        (
            lambda s: s["generators"][0].pop("sampling"),
            "aift.generators[0].sampling",
            "required key is missing",
        ),
        (lambda s: s["judge"].update(kind="ultrafeedback"), "aift.judge", "needs `model`"),
        (
            lambda s: s["generators"][0].update(model="@sft"),
            "aift.generators[0].model",
            "names the sft stage, which this recipe does not have",
        ),
        (
            lambda s: s["judge"].update(function="aift_helpers:nope"),
            "aift.judge.function",
            "cannot be imported",
        ),
        # Each backend takes only its own keys: one meant for another backend is an error, not ignored.
        (
            lambda s: s["generators"][0].update(concurrency=64),
            "aift.generators[0]",
            "`concurrency` is a key of backend openai; backend transformers does not take it",
        ),
        (
            lambda s: s["generators"][0].update(backend="openai", batch_size=64),
            "aift.generators[0]",
            "`batch_size` is a key of backend transformers; backend openai does not take it",
        ),
        (lambda s: s["generators"][0].update(concurency=4), "aift.generators[0].concurency", "did you mean"),
        (
            lambda s: s["generators"][0].update(principles={"kindness": 1}),
            "aift.generators[0]",
            "unknown principle 'kindness'",
        ),
        (
            lambda s: s["judge"].update(
                kind="ultrafeedback",
                model="m",
                sampling={"max_new_tokens": 8},
                aspects=["honesty", "honesty"],
            ),
            "aift.judge",
            "aspects lists honesty more than once",
        ),
    ],
)
def test_bad_sections_exit_2_with_one_line(tmp_path, tiny_model, section, capsys, change, key, problem):
    bad = copy.deepcopy(section)
    change(bad)
    path = write_recipe(tmp_path, tiny_model, bad)
    line = error_line(capsys, [str(path)])
    assert line.startswith(f"error: {path}: {key}: ")
    assert problem in line


def test_bad_command_lines(tmp_path, tiny_model, section, capsys):
    path = write_recipe(tmp_path, tiny_model, section)
    assert "--shard" in error_line(capsys, [str(path), "--shard", "4/4"])
    assert "aift.seed" in error_line(capsys, [str(path), "--seed", "many"])
    no_aift = write_recipe(tmp_path, tiny_model, None, name="no-aift.yaml")
    assert error_line(capsys, [str(no_aift)]).endswith("aift: the recipe has no aift section")


def test_missing_vllm_is_one_line_exit_1(tmp_path, tiny_model, section, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    section["generators"][0]["backend"] = "vllm"
    path = write_recipe(tmp_path, tiny_model, section)
    assert "vllm package" in error_line(capsys, [str(path), "--no-progress"], code=1)


def test_the_script_itself_exits_2(tmp_path, tiny_model, section):
    section["judge"]["kind"] = "teacher"
    path = write_recipe(tmp_path, tiny_model, section)
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_aift.py"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {path}: aift.judge.kind: ")
    assert "Traceback" not in result.stderr
