"""QLoRA + ZeRO-3 is refused; the working multi-GPU combinations pass; the shipped accelerate configs parse."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from westwind.errors import RecipeError
from westwind.recipe.core import load_recipe
from westwind.recipe.launch_check import (
    accelerate_config_from_env,
    check_launch_compatibility,
    load_accelerate_config,
    zero_stage,
)
from westwind.recipe.launch_command import main

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = REPO / "recipes" / "accelerate"
QLORA = REPO / "recipes" / "zephyr-7b-qlora.yaml"
FULL = REPO / "recipes" / "zephyr-7b.yaml"
EXPECTED = {
    "ddp": ("MULTI_GPU", None),
    "zero2": ("DEEPSPEED", 2),
    "zero3": ("DEEPSPEED", 3),
    "fsdp": ("FSDP", None),
    "fsdp_qlora": ("FSDP", None),
}


@pytest.fixture(autouse=True)
def clean_launch_env(monkeypatch):
    """Tests describe the launch explicitly; whatever launched pytest must not leak in."""
    for name in list(os.environ):
        if name.startswith(("ACCELERATE_", "FSDP_")) or name == "WORLD_SIZE":
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def qlora():
    return load_recipe(QLORA)


@pytest.fixture(scope="module")
def full():
    return load_recipe(FULL)


def config(name: str) -> dict:
    return load_accelerate_config(ACCELERATE / f"{name}.yaml")


def launch_env(name: str) -> dict[str, str]:
    """The environment `accelerate launch --config_file <name>.yaml` hands its processes, from accelerate itself."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(ACCELERATE / f"{name}.yaml"), "train.py"])
    args, _, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ""  # set by launch_command before it builds the env
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


# ---------------------------------------------------------------- the shipped configs


def test_every_expected_config_is_shipped():
    assert {path.stem for path in ACCELERATE.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_config_parses_with_expected_type(name):
    from accelerate.commands.config.config_args import load_config_from_file

    distributed_type, stage = EXPECTED[name]
    raw = config(name)
    assert raw["distributed_type"] == distributed_type
    assert zero_stage(raw) == stage
    # accelerate's own loader rejects unknown keys: this catches renamed fields
    assert load_config_from_file(str(ACCELERATE / f"{name}.yaml")).distributed_type.value == distributed_type


def test_fsdp_qlora_config_is_the_fsdp1_qlora_layout():
    fsdp = config("fsdp_qlora")["fsdp_config"]
    assert fsdp["fsdp_version"] == 1 and fsdp["fsdp_use_orig_params"] is False
    assert fsdp["fsdp_cpu_ram_efficient_loading"] and fsdp["fsdp_sync_module_states"]


# ---------------------------------------------------------------- the compatibility rule


def test_qlora_under_zero3_config_is_refused(qlora):
    with pytest.raises(RecipeError) as error:
        check_launch_compatibility(qlora, config("zero3"))
    message = str(error.value)
    assert message.startswith(f"{QLORA}: model.load_in_4bit: ")
    assert "ZeRO-3" in message and "fsdp_qlora.yaml" in message


@pytest.mark.parametrize("name", ["ddp", "zero2", "fsdp_qlora", "fsdp"])
def test_qlora_under_other_configs_is_allowed(qlora, name):
    check_launch_compatibility(qlora, config(name))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_full_fine_tuning_is_allowed_everywhere(full, name):
    check_launch_compatibility(full, config(name))
    check_launch_compatibility(full, accelerate_config_from_env(launch_env(name)))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_environment_from_accelerate_launch(qlora, name, monkeypatch):
    """Only the ZeRO-3 launch is refused when the check reads what accelerate launch really exports."""
    for key, value in launch_env(name).items():
        monkeypatch.setenv(key, value)
    if name == "zero3":
        with pytest.raises(RecipeError, match="ZeRO-3"):
            check_launch_compatibility(qlora, None)
    else:
        check_launch_compatibility(qlora, None)


def test_env_zero_stage_overrides_a_harmless_config(qlora, monkeypatch):
    """`accelerate launch --config_file zero2.yaml --zero_stage 3` exports stage 3: the env wins."""
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(RecipeError, match="environment"):
        check_launch_compatibility(qlora, config("zero2"))


def test_zero_stage_from_a_deepspeed_json(qlora, tmp_path):
    ds_json = tmp_path / "ds.json"
    ds_json.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    launcher = {"distributed_type": "DEEPSPEED", "deepspeed_config": {"deepspeed_config_file": str(ds_json)}}
    with pytest.raises(RecipeError, match="ZeRO-3"):
        check_launch_compatibility(qlora, launcher)
    ds_json.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    check_launch_compatibility(qlora, launcher)


def test_8bit_is_refused_under_zero3_and_fsdp():
    eight_bit = load_recipe(QLORA, ["--model.load_in_4bit", "false", "--model.load_in_8bit", "true"])
    with pytest.raises(RecipeError, match=r"model\.load_in_8bit: 8-bit"):
        check_launch_compatibility(eight_bit, config("zero3"))
    with pytest.raises(RecipeError, match="8-bit"):
        check_launch_compatibility(eight_bit, config("fsdp_qlora"))
    check_launch_compatibility(eight_bit, config("ddp"))


@pytest.mark.parametrize("storage", ["null", "float16", "uint8"])
def test_fsdp_qlora_needs_quant_storage_equal_to_dtype(storage):
    recipe = load_recipe(QLORA, ["--model.bnb_4bit_quant_storage", storage])
    with pytest.raises(RecipeError) as error:
        check_launch_compatibility(recipe, config("fsdp_qlora"))
    assert ": model.bnb_4bit_quant_storage: " in str(error.value)
    check_launch_compatibility(recipe, config("ddp"))  # only FSDP shards the stored weights


def test_env_reader_outside_a_launch_and_under_torchrun():
    assert accelerate_config_from_env({}) == {}
    assert accelerate_config_from_env({"WORLD_SIZE": "4"})["distributed_type"] == "MULTI_GPU"


def test_env_reader_rebuilds_fsdp_config():
    rebuilt = accelerate_config_from_env(launch_env("fsdp_qlora"))
    assert rebuilt["distributed_type"] == "FSDP"
    assert rebuilt["fsdp_config"]["fsdp_version"] == 1
    assert rebuilt["fsdp_config"]["fsdp_offload_params"] is True
    assert rebuilt["mixed_precision"] == "no"


def test_missing_accelerate_config_is_bad_input(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_accelerate_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(RecipeError, match="mapping"):
        load_accelerate_config(tmp_path / "list.yaml")


def test_cli_exit_codes(capsys):
    main([str(QLORA), str(ACCELERATE / "fsdp_qlora.yaml")])
    assert "ok" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([str(QLORA), str(ACCELERATE / "zero3.yaml")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "ZeRO-3" in err


# ---------------------------------------------------------------- the Slurm launcher


def fake_tool(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def fake_slurm(tmp_path: Path, logged: tuple[str, ...]) -> tuple[Path, Path]:
    """A bin folder: `logged` tools append their command line to the log; scontrol names one node; srun runs
    the command as node 0."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in logged:
        fake_tool(bin_dir, tool, f'echo "{tool} $*" >> "$LOG"')
    fake_tool(bin_dir, "scontrol", "echo node-1")
    fake_tool(bin_dir, "srun", 'while [[ "$1" == --* ]]; do shift; done; SLURM_PROCID=0 "$@"')
    return bin_dir, log


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_launcher_builds_one_launch_per_node(tmp_path):
    """Run launch.slurm with fake Slurm tools: node rank from SLURM_PROCID, master from the first host."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    fake_tool(bin_dir, "scontrol", 'echo "$*" >> "$LOG"; printf "gpu-node-07\\ngpu-node-08\\n"')
    fake_tool(bin_dir, "westwind", 'echo "westwind $*" >> "$LOG"')
    fake_tool(bin_dir, "python", 'echo "python $*" >> "$LOG"')
    fake_tool(bin_dir, "accelerate", 'echo "accelerate $*" >> "$LOG"')
    # srun starts the command once per node; node 1 here, so the rank must come out as 1
    fake_tool(bin_dir, "srun", 'while [[ "$1" == --* ]]; do shift; done; SLURM_PROCID=1 "$@"')
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LOG": str(log),
        "SLURM_NNODES": "2",
        "SLURM_GPUS_ON_NODE": "4",
        "SLURM_JOB_NODELIST": "gpu-node-[07-08]",
        "SLURM_JOB_ID": "1234",
        "WESTWIND_ROOT": str(REPO),
    }
    script = REPO / "scripts" / "slurm" / "launch.slurm"
    args = ["bash", str(script), "sft", "recipes/zephyr-7b.yaml", "zero3", "--sft.learning_rate", "1e-5"]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert "westwind check recipes/zephyr-7b.yaml --stage sft --sft.learning_rate 1e-5" in calls
    assert (
        "westwind launch-check recipes/zephyr-7b.yaml recipes/accelerate/zero3.yaml "
        "--stage sft --sft.learning_rate 1e-5"
    ) in calls
    launch = next(call for call in calls if call.startswith("accelerate "))
    expected = (
        "--config_file recipes/accelerate/zero3.yaml --num_machines 2 --num_processes 8 --machine_rank 1 "
        "--main_process_ip gpu-node-07 --main_process_port 29734"
    )
    assert expected in launch
    assert launch.endswith("scripts/run_sft.py recipes/zephyr-7b.yaml --sft.learning_rate 1e-5")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_launcher_array_mode_picks_the_indexed_recipe(tmp_path):
    bin_dir, log = fake_slurm(tmp_path, ("westwind", "python", "accelerate"))
    sweep = tmp_path / "sweep.txt"
    sweep.write_text("# sweep\nrecipes/zephyr-7b.yaml\n\nrecipes/qwen2.5-7b.yaml\n")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LOG": str(log),
        "SLURM_ARRAY_TASK_ID": "1",
        "SLURM_JOB_NODELIST": "node-1",
        "WESTWIND_ROOT": str(REPO),
    }
    script = str(REPO / "scripts" / "slurm" / "launch.slurm")
    result = subprocess.run(
        ["bash", script, "dpo", str(sweep), "ddp"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    launch = next(call for call in log.read_text().splitlines() if call.startswith("accelerate "))
    assert launch.endswith("scripts/run_dpo.py recipes/qwen2.5-7b.yaml")
    assert "--config_file recipes/accelerate/ddp.yaml" in launch
    bad = subprocess.run(
        ["bash", script, "eval", "recipes/zephyr-7b.yaml"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "STAGE must be sft or dpo" in bad.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_precheck_accepts_the_overrides_the_stage_scripts_accept(tmp_path):
    """`--beta 0.02` is dpo.beta to run_dpo.py; the real pre-checks (not fakes) must read it the same way."""
    bin_dir, log = fake_slurm(tmp_path, ("accelerate",))
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{venv_bin}:{os.environ['PATH']}",
        "LOG": str(log),
        "SLURM_JOB_NODELIST": "node-1",
        "WESTWIND_ROOT": str(REPO),
    }
    script = str(REPO / "scripts" / "slurm" / "launch.slurm")

    def dpo_with_beta(recipe: str) -> subprocess.CompletedProcess:
        command = ["bash", script, "dpo", recipe, "zero3", "--beta", "0.02"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    ok = dpo_with_beta("recipes/zephyr-7b.yaml")
    assert ok.returncode == 0, ok.stderr
    assert log.read_text().rstrip().endswith("scripts/run_dpo.py recipes/zephyr-7b.yaml --beta 0.02")
    refused = dpo_with_beta("recipes/zephyr-7b-qlora.yaml")
    assert refused.returncode == 2 and "ZeRO-3" in refused.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_precheck_runs_the_stage_preflight_on_the_overrides(tmp_path):
    """`westwind check` in launch.slurm sees the job's overrides: a preflight-only problem (a negative
    learning rate passes the launch check) stops the job before the allocation is used."""
    bin_dir, log = fake_slurm(tmp_path, ("accelerate",))
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{venv_bin}:{os.environ['PATH']}", "LOG": str(log),
           "SLURM_JOB_NODELIST": "node-1", "WESTWIND_ROOT": str(REPO)}  # fmt: skip
    script = str(REPO / "scripts" / "slurm" / "launch.slurm")
    command = ["bash", script, "dpo", "recipes/zephyr-7b.yaml", "zero3", "--learning_rate", "-1"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "dpo.learning_rate" in result.stderr, result.stderr
    assert not log.exists(), "nothing launched"


def test_launch_check_reads_stage_overrides(capsys):
    assert (
        main(
            [
                str(REPO / "recipes/zephyr-7b.yaml"),
                str(REPO / "recipes/accelerate/zero3.yaml"),
                "--stage",
                "dpo",
                "--beta",
                "0.02",
            ]
        )
        is None
    )
    with pytest.raises(SystemExit) as exit_info:
        main(
            [str(REPO / "recipes/zephyr-7b.yaml"), "--beta", "0.02"]
        )  # overrides need the stage that reads them
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main([str(REPO / "recipes/zephyr-7b.yaml"), "--stage", "dpo", "--dpo.beta", "-x"])
    assert capsys.readouterr().err.startswith("error: ")
