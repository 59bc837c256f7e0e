"""The reward-model stage: TRL's RewardTrainer on preference pairs; its output judges as `@rm`."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_preferences, tiny_recipe, write_jsonl, write_recipe
from peft import PeftModel
from test_pipeline import (
    full_recipe,  # noqa: F401 (a fixture: a tiny sft + aift + dpo + eval recipe)
    westwind_run,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from westwind.aift.config import JudgeConfig
from westwind.endpoints import resolve_model
from westwind.errors import RecipeError
from westwind.judges import JudgeItem, make_judge
from westwind.recipe.core import load_recipe
from westwind.report import write_report
from westwind.stages import rm

RM_SECTION = {
    "model_name_or_path": "@base",
    "test_split_size": 0.25,
    "max_steps": 40,
    "per_device_train_batch_size": 16,
    "learning_rate": 3e-3,
    "bf16": False,
    "activation_checkpointing": False,
    "logging_steps": 10,
    "save_strategy": "no",
    "max_length": 64,
    "seed": 0,
}


def rm_recipe(tmp_path, tiny_model, sft_jsonl, **section):
    """Pairs with a learnable signal: chosen reverses the user's words, rejected keeps them and adds `the`."""
    pairs = write_jsonl(tmp_path / "data" / "pairs.jsonl", make_preferences(320, seed=3))
    recipe = tiny_recipe(tmp_path, tiny_model, sft_jsonl, pairs)
    del recipe["dpo"]
    recipe["rm"] = {**RM_SECTION, "datasets": [{"path": str(pairs)}], **section}
    return write_recipe(tmp_path / "recipe.yaml", recipe)


@pytest.mark.slow
def test_reward_model_beats_chance_on_held_out_pairs_and_judges_as_at_rm(tmp_path, tiny_model, sft_jsonl):
    path = rm_recipe(tmp_path, tiny_model, sft_jsonl)

    rm.cli([str(path)])

    out = tmp_path / "out" / "rm"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out_pairs"] == 80 and metrics["train_pairs"] == 240
    assert metrics["ci95"][0] > 0.5, f"held-out accuracy not above chance: {metrics}"
    assert json.loads((out / "config.json").read_text())["architectures"] == [
        "LlamaForSequenceClassification"
    ]
    recipe = load_recipe(path)
    assert recipe.resolve_reference("@rm") == str(out)
    config = JudgeConfig(kind="reward_model", model="@rm")
    judge = make_judge(config, resolve_model(config, recipe))
    prompt = [{"role": "user", "content": "reverse: red tree moon"}]
    (judgment,) = judge.judge([JudgeItem("0", prompt, ["moon tree red", "red tree moon the"])])
    chosen, rejected = (rating.score for rating in judgment.ratings)
    assert chosen > rejected
    report = write_report(tmp_path / "out", {"rm": out}).read_text()
    assert f"held-out pairwise accuracy: {100 * metrics['accuracy']:.1f}% of 80 pairs" in report


@pytest.mark.slow
def test_lora_reward_model_is_saved_merged_with_its_adapter_beside(tmp_path, tiny_model, sft_jsonl):
    path = rm_recipe(tmp_path, tiny_model, sft_jsonl, use_peft=True, max_steps=2, test_split_size=0.1)

    rm.cli([str(path), "--model.lora_r", "4"])

    out = tmp_path / "out" / "rm"
    assert not (out / "adapter_config.json").exists()
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and "score" in adapter["modules_to_save"]
    assert (out / "model.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out_pairs"] == 32 and 0 <= metrics["correct"] <= 32
    # The merged model scores exactly what the base classifier + adapter scores.
    tokenizer = AutoTokenizer.from_pretrained(out)
    inputs = tokenizer(["<|user|>\nreverse: a cat</s>\n<|assistant|>\ncat a</s>\n"], return_tensors="pt")
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1, pad_token_id=0)
    with torch.no_grad():
        adapter_score = PeftModel.from_pretrained(base, out / "adapter")(**inputs).logits
        merged_score = AutoModelForSequenceClassification.from_pretrained(out)(**inputs).logits
    torch.testing.assert_close(merged_score, adapter_score, atol=1e-5, rtol=1e-5)


def test_rm_section_is_validated_like_the_trainer_stages(tmp_path, tiny_model, sft_jsonl):
    path = rm_recipe(tmp_path, tiny_model, sft_jsonl)
    recipe = load_recipe(path)
    assert recipe.rm.learning_rate == 3e-3 and recipe.rm_data.model_name_or_path == "@base"
    assert recipe.stage_dir("rm") == tmp_path / "out" / "rm"
    with pytest.raises(
        RecipeError, match=r"rm.center_rewards: unknown key \(did you mean center_rewards_coeff"
    ):
        load_recipe(path, ["--rm.center_rewards", "0.1"])
    with pytest.raises(RecipeError, match=r"rm.datasets\[0\].path: local dataset path does not exist"):
        load_recipe(path, ["--rm.datasets.0.path", str(tmp_path / "missing.jsonl")])


def test_an_aift_judge_cannot_be_the_rm_trained_on_its_own_pairs(tmp_path, tiny_model, sft_jsonl):
    path = rm_recipe(tmp_path, tiny_model, sft_jsonl, datasets=[{"path": "@aift"}])
    raw = json.loads(json.dumps(load_recipe(path).raw))
    raw["aift"] = {
        "prompts": {"datasets": [{"path": str(sft_jsonl)}]},
        "generators": [{"model": "@base", "sampling": {"max_new_tokens": 4}}],
        "judge": {"kind": "reward_model", "model": "@rm"},
    }
    with pytest.raises(RecipeError, match=r"aift.judge.model: @rm is trained on this recipe's AIFT pairs"):
        load_recipe(write_recipe(path, raw))


def test_rm_before_its_starting_model_exists_is_one_line_error(tmp_path, tiny_model, sft_jsonl, capsys):
    path = rm_recipe(tmp_path, tiny_model, sft_jsonl, model_name_or_path="@sft")
    with pytest.raises(SystemExit) as exit_info:
        rm.cli([str(path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert (
        error
        == f"error: {path}: rm.model_name_or_path: @sft -> {tmp_path}/out/sft not found: run the sft stage first"
    )


@pytest.mark.slow
def test_pipeline_runs_rm_after_aift_and_eval_judges_with_at_rm(full_recipe, tmp_path):  # noqa: F811
    """sft -> aift -> rm (on the AIFT pairs, from @sft) -> eval with `judge: {kind: reward_model, model: "@rm"}`."""
    raw = load_recipe(full_recipe).raw
    del raw["dpo"]
    raw["rm"] = {**RM_SECTION, "model_name_or_path": "@sft", "max_steps": 2}
    raw["eval"].update(model="@sft", baseline="@base", judge={"kind": "reward_model", "model": "@rm"})
    recipe = write_recipe(full_recipe, raw)

    stdout = westwind_run(recipe)

    order = [stdout.index(f"westwind: [{stage}] ") for stage in ("sft", "aift", "rm", "eval")]
    assert order == sorted(order)
    out = tmp_path / "out"
    assert json.loads((out / "rm" / "metrics.json").read_text())["held_out_pairs"] >= 1
    win = json.loads((out / "eval" / "results.json").read_text())["win_rate"]
    assert win["judge"] == "reward_model" and win["failed"] == 0
    assert win["wins"] + win["ties"] + win["losses"] == 16
    assert "## Reward model" in (out / "report.md").read_text()


def test_aift_judged_by_an_unrun_rm_is_refused_before_loading(tmp_path, tiny_model, sft_jsonl):
    from westwind.recipe import preflight

    path = rm_recipe(tmp_path, tiny_model, sft_jsonl)  # the rm trains on its own pairs file, not @aift
    raw = load_recipe(path).raw
    raw["aift"] = {
        "prompts": {"datasets": [{"path": str(sft_jsonl)}]},
        "generators": [{"model": "@base", "sampling": {"max_new_tokens": 4}}],
        "judge": {"kind": "reward_model", "model": "@rm"},
    }
    recipe = load_recipe(write_recipe(path, raw))
    with pytest.raises(
        RecipeError, match=r"aift.judge.model: @rm -> .*/out/rm not found: run the rm stage first"
    ):
        preflight.check(recipe, ["aift"], produced_earlier=set())


def test_rank_zero_merge_and_scoring_under_zero3_make_no_collective_call(
    tmp_path, tiny_model, sft_jsonl, monkeypatch
):
    """Rank 0 alone merges a LoRA reward model and scores held-out pairs after training; under ZeRO-3 neither
    may load a partitioned model (zero.Init gathers from ranks that are not loading: a hang)."""
    import torch.distributed
    from peft import LoraConfig, get_peft_model
    from test_models import Zero3Config
    from transformers.integrations import deepspeed as hf_deepspeed

    recipe = load_recipe(rm_recipe(tmp_path, tiny_model, sft_jsonl, use_peft=True))
    out = tmp_path / "out" / "rm"
    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1, pad_token_id=0)
    get_peft_model(
        classifier, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj"])
    ).save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompt = [{"role": "user", "content": "reverse: red tree"}]
    pair = {"prompt": prompt, "chosen": [{"role": "assistant", "content": "tree red"}],
            "rejected": [{"role": "assistant", "content": "red tree the"}]}  # fmt: skip

    def collective(*args, **kwargs):
        raise AssertionError("a collective call on rank 0 alone")

    for name in ("all_gather", "all_gather_into_tensor", "all_reduce", "broadcast", "barrier"):
        monkeypatch.setattr(torch.distributed, name, collective)
    zero3 = Zero3Config()
    hf_deepspeed.set_hf_deepspeed_config(zero3)
    try:
        metrics = rm.finish_on_main_process(recipe, tokenizer, {"train": [pair] * 3, "test": [pair] * 2})
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()
    assert metrics["held_out_pairs"] == 2
    assert (out / "model.safetensors").is_file() and (out / "adapter" / "adapter_config.json").is_file()
