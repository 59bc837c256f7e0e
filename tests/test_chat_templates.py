"""Shipped chat templates render the expected turns and mark assistant tokens for assistant-only loss."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from westwind.chat_templates import TEMPLATES, apply_chat_template_choice, resolve_template

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "reverse: red cat"},
    {"role": "assistant", "content": "cat red"},
]


@pytest.fixture
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def test_zephyr_renders_role_headers_closed_by_eos(tokenizer):
    apply_chat_template_choice(tokenizer, "zephyr")
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=False)
    eos = tokenizer.eos_token
    assert (
        text == f"<|system|>\nBe brief.{eos}\n<|user|>\nreverse: red cat{eos}\n<|assistant|>\ncat red{eos}\n"
    )
    prompt = tokenizer.apply_chat_template(MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n")


def test_chatml_adds_its_tokens_and_ends_turns_with_im_end(tokenizer):
    apply_chat_template_choice(tokenizer, "chatml")
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert tokenizer.eos_token == "<|im_end|>"
    assert len(tokenizer.tokenize("<|im_start|>")) == 1


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_assistant_mask_covers_exactly_the_answer_and_its_end(tokenizer, name):
    apply_chat_template_choice(tokenizer, name)
    out = tokenizer.apply_chat_template(MESSAGES, return_dict=True, return_assistant_tokens_mask=True)
    masked = [token for token, keep in zip(out["input_ids"], out["assistant_masks"], strict=True) if keep]
    assert tokenizer.decode(masked) == "cat red" + tokenizer.eos_token


def test_no_choice_keeps_the_tokenizers_own(tokenizer):
    own = tokenizer.chat_template
    assert apply_chat_template_choice(tokenizer, None) == 0
    assert tokenizer.chat_template == own


def test_inline_jinja_is_used_verbatim():
    source = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert resolve_template(source) == source
    with pytest.raises(KeyError, match="unknown chat template 'vicuna'"):
        resolve_template("vicuna")
