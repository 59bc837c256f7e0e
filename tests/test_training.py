"""Resuming picks the newest complete checkpoint; one killed mid-save is skipped, not resumed from."""

from __future__ import annotations

import json
from types import SimpleNamespace

from westwind.training import checkpoint_to_resume


def config(output_dir, resume=None):
    return SimpleNamespace(output_dir=str(output_dir), resume_from_checkpoint=resume)


def checkpoint(root, step: int, state: str | None):
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_newest_complete_checkpoint_wins(tmp_path, capsys):
    checkpoint(tmp_path, 4, json.dumps({"global_step": 4}))
    complete = checkpoint(tmp_path, 8, json.dumps({"global_step": 8}))
    checkpoint(tmp_path, 12, None)  # killed before its state was written
    checkpoint(tmp_path, 16, '{"global_st')  # killed while writing it
    assert checkpoint_to_resume(config(tmp_path)) == str(complete)
    printed = capsys.readouterr().out
    assert "ignoring incomplete" in printed and "checkpoint-16" in printed and "checkpoint-12" in printed


def test_no_checkpoint_or_explicit_choice(tmp_path):
    assert checkpoint_to_resume(config(tmp_path / "missing")) is None
    checkpoint(tmp_path, 2, None)
    assert checkpoint_to_resume(config(tmp_path)) is None
    assert checkpoint_to_resume(config(tmp_path, resume="somewhere/checkpoint-9")) == "somewhere/checkpoint-9"
