"""Shipped chat templates: turns, assistant masks, exactly one BOS as TRL tokenizes, system-refusing templates."""

from __future__ import annotations

import pytest
from conftest import make_conversations, make_preferences
from transformers import AutoTokenizer

from westwind.training.chat_templates import (
    OWN_TEMPLATES,
    TEMPLATES,
    apply_chat_template_choice,
    fold_system_into_user,
    refuses_system_role,
    resolve_template,
)

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "reverse: red cat"},
    {"role": "assistant", "content": "cat red"},
]


@pytest.fixture
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def without_bos(tokenizer):
    tokenizer.bos_token = None
    assert tokenizer.bos_token_id is None
    return tokenizer


def test_zephyr_renders_bos_then_role_headers_closed_by_eos(tokenizer):
    apply_chat_template_choice(tokenizer, "zephyr")
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=False)
    eos = tokenizer.eos_token
    assert (
        text
        == f"<s><|system|>\nBe brief.{eos}\n<|user|>\nreverse: red cat{eos}\n<|assistant|>\ncat red{eos}\n"
    )
    prompt = tokenizer.apply_chat_template(MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n")
    assert without_bos(tokenizer).apply_chat_template(MESSAGES, tokenize=False).startswith("<|system|>\n")


def test_chatml_adds_its_tokens_and_ends_turns_with_im_end(tokenizer):
    apply_chat_template_choice(tokenizer, "chatml")
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert tokenizer.eos_token == "<|im_end|>"
    assert len(tokenizer.tokenize("<|im_start|>")) == 1


def test_smollm2_adds_its_default_system_turn_only_when_none_is_given_and_no_bos_in_front(tokenizer):
    apply_chat_template_choice(tokenizer, "smollm2")
    default = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    )
    without_system = tokenizer.apply_chat_template(MESSAGES[1:], tokenize=False)
    assert without_system == default + "<|im_start|>user\nreverse: red cat<|im_end|>\n" + (
        "<|im_start|>assistant\ncat red<|im_end|>\n"
    )
    with_system = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert with_system.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and "SmolLM" not in with_system
    assert tokenizer.eos_token == "<|im_end|>"


@pytest.mark.parametrize("name", sorted(OWN_TEMPLATES))
def test_assistant_mask_covers_exactly_the_answer_and_its_end(tokenizer, name):
    apply_chat_template_choice(tokenizer, name)
    out = tokenizer.apply_chat_template(MESSAGES, return_dict=True, return_assistant_tokens_mask=True)
    masked = [token for token, keep in zip(out["input_ids"], out["assistant_masks"], strict=True) if keep]
    assert tokenizer.decode(masked) == "cat red" + tokenizer.eos_token


@pytest.mark.parametrize(
    ("name", "attribute"),
    [("llama3", "llama3_training"), ("qwen2.5", "qwen2_5_training"), ("gemma", "gemma_training")],
)
def test_trl_training_templates_are_trls_own(name, attribute):
    import trl.chat_template_utils

    assert name in TEMPLATES
    source = resolve_template(name)
    assert source == getattr(trl.chat_template_utils, f"{attribute}_chat_template")
    assert "{% generation %}" in source.replace("{%- generation %}", "{% generation %}").replace(
        "{%- generation -%}", "{% generation %}"
    )


def test_no_choice_keeps_the_tokenizers_own(tokenizer):
    own = tokenizer.chat_template
    assert apply_chat_template_choice(tokenizer, None) == 0
    assert tokenizer.chat_template == own


def test_inline_jinja_is_used_verbatim():
    source = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert resolve_template(source) == source
    with pytest.raises(KeyError, match="unknown chat template 'vicuna'"):
        resolve_template("vicuna")


# ---------------------------------------------------------------- BOS as TRL tokenizes training rows


def sft_rows(tokenizer, tiny_model, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=str(tmp_path), max_length=128, report_to=[], bf16=False, assistant_only_loss=True
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=config,
        train_dataset=Dataset.from_list(make_conversations(6)),
        processing_class=tokenizer,
    )
    return [row["input_ids"] for row in trainer.train_dataset]


def dpo_rows(tokenizer, tiny_model, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(output_dir=str(tmp_path), max_length=128, report_to=[], bf16=False)
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=config,
        train_dataset=Dataset.from_list(make_preferences(6)),
        processing_class=tokenizer,
    )
    rows = trainer.train_dataset
    return [row["prompt_ids"] + row[side] for row in rows for side in ("chosen_ids", "rejected_ids")]


@pytest.mark.parametrize("rows", [sft_rows, dpo_rows], ids=["sft", "dpo"])
def test_zephyr_rows_start_with_exactly_one_bos(rows, tokenizer, tiny_model, tmp_path):
    apply_chat_template_choice(tokenizer, "zephyr")
    bos = tokenizer.bos_token_id
    for ids in rows(tokenizer, tiny_model, tmp_path):
        assert ids[0] == bos and ids.count(bos) == 1


@pytest.mark.parametrize("rows", [sft_rows, dpo_rows], ids=["sft", "dpo"])
def test_zephyr_rows_without_a_bos_token_start_with_the_first_turn(rows, tokenizer, tiny_model, tmp_path):
    apply_chat_template_choice(tokenizer, "zephyr")
    bos_id = tokenizer.convert_tokens_to_ids("<s>")
    without_bos(tokenizer)
    for ids in rows(tokenizer, tiny_model, tmp_path):
        assert bos_id not in ids
        assert tokenizer.decode(ids[:3]).startswith("<|")


# ---------------------------------------------------------------- templates that refuse a system turn

REFUSES_SYSTEM = (
    "{%- for m in messages -%}{%- if m['role'] == 'system' -%}{{ raise_exception('no system role') }}"
    "{%- endif -%}[{{ m['role'] }}]{{ m['content'] }}{%- endfor -%}"
)


def test_a_template_that_raises_on_system_gets_the_principle_in_the_first_user_turn(tokenizer):
    tokenizer.chat_template = REFUSES_SYSTEM
    assert refuses_system_role(tokenizer)
    folded = fold_system_into_user(MESSAGES, tokenizer)
    assert folded == [
        {"role": "user", "content": "Be brief.\n\nreverse: red cat"},
        {"role": "assistant", "content": "cat red"},
    ]
    assert (
        tokenizer.apply_chat_template(folded, tokenize=False)
        == "[user]Be brief.\n\nreverse: red cat[assistant]cat red"
    )


def test_templates_that_accept_system_keep_it(tokenizer):
    apply_chat_template_choice(tokenizer, "zephyr")
    assert not refuses_system_role(tokenizer)
    assert fold_system_into_user(MESSAGES, tokenizer) is MESSAGES


def test_aift_prompts_fold_the_principle_for_gemma(tokenizer):
    from westwind.generation import chat_prompt_ids

    apply_chat_template_choice(tokenizer, "gemma")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    text = tokenizer.decode(chat_prompt_ids(tokenizer, MESSAGES[:2]))
    assert (
        text == "<s><start_of_turn>user\nBe brief.\n\nreverse: red cat<end_of_turn>\n<start_of_turn>model\n"
    )
