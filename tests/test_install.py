"""A regular (non-editable) `pip install .`, as the Docker image does, gives a working `westwind run`: the
package never looks for the repository's scripts/ folder."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, tiny_recipe, write_recipe


def fresh_venv(root: Path) -> Path:
    """A new venv whose own site-packages gets westwind; the pinned libraries come from this environment's
    site-packages through a .pth line (a plain path: this environment's editable westwind is not loaded)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    (purelib,) = (root / "lib").glob("python3.*/site-packages")
    (purelib / "outer-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return root / "bin"


def package_source(target: Path) -> Path:
    """Only what a build needs, away from the repository (no scripts/, no tests/)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, target / name)
    shutil.copytree(REPO / "src", target / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    return target


@pytest.mark.slow
def test_non_editable_install_runs_the_pipeline(tmp_path, tiny_model, sft_jsonl, dpo_jsonl):
    bin_dir = fresh_venv(tmp_path / "venv")
    (tmp_path / "source").mkdir()
    source = package_source(tmp_path / "source")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    install = [str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*install, str(source)], check=True, env=env, cwd=tmp_path)
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import westwind; print(westwind.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), where  # the installed copy, not the repository's

    raw = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    raw["sft"]["max_steps"], raw["dpo"]["max_steps"] = 2, 2
    recipe = write_recipe(tmp_path / "recipe.yaml", raw)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run(
        [str(bin_dir / "westwind"), "run", str(recipe)],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "-m westwind.stages.sft" in result.stdout and "-m westwind.stages.dpo" in result.stdout
    assert (tmp_path / "out" / "dpo" / "config.json").exists()
