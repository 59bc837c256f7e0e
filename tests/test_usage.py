"""`--help` lists a stage's keys with their one-line help, taken from the config classes' metadata."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from westwind.recipe.usage import keys_help


def test_sft_keys_come_from_trl_metadata():
    text = keys_help("sft")
    line = next(line for line in text.splitlines() if line.strip().startswith("learning_rate "))
    assert "learning rate" in line.lower()  # TRL's own help text, not a copy
    assert any(line.strip().startswith("test_split_size ") and "(0, 1)" in line for line in text.splitlines())
    assert "\nmodel: keys" in text and any(line.strip().startswith("lora_r ") for line in text.splitlines())


def test_deprecated_keys_name_their_new_spelling():
    lines = [line.split(None, 1) for line in keys_help("rm").splitlines() if line.startswith("  ")]
    assert ["gradient_checkpointing", "deprecated: write activation_checkpointing"] in lines
    assert any(name == "activation_checkpointing" and "deprecated" not in text for name, text in lines)


def test_dpo_lists_beta_and_nested_dataset_keys():
    lines = [line.strip() for line in keys_help("dpo").splitlines()]
    assert any(line.startswith("beta ") for line in lines)
    assert any(line.startswith("datasets.split ") for line in lines)
    assert any(line.startswith("model_name_or_path ") and "@sft" in line for line in lines)


def test_aift_lists_nested_keys():
    lines = [line.strip() for line in keys_help("aift").splitlines()]
    assert any(line.startswith("judge.kind ") for line in lines)


@pytest.mark.parametrize(
    "command",
    [["scripts/run_sft.py", "--help"], ["-m", "westwind.cli", "dpo", "--help"]],
    ids=["script", "cli"],
)
def test_help_from_the_command_line(command):
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "--KEY VALUE" in result.stdout and "learning_rate" in result.stdout
