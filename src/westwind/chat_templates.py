"""Shipped chat templates. Each marks assistant content with {% generation %} so assistant-only loss works."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

# Zephyr: <|role|>\n{content}{eos}\n per turn, as the Zephyr models use.
ZEPHYR = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\n' }}{%- generation -%}{{ message['content'] + eos_token }}{%- endgeneration -%}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)

CHATML = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{ message['content'] + '<|im_end|>' }}{%- endgeneration -%}"
    "{%- else -%}"
    "{{ message['content'] + '<|im_end|>' }}"
    "{%- endif -%}"
    "{{ '\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

TEMPLATES: dict[str, str] = {"zephyr": ZEPHYR, "chatml": CHATML}
# Tokens a template needs as single special tokens (added to the vocabulary when missing).
SPECIAL_TOKENS: dict[str, list[str]] = {"zephyr": [], "chatml": ["<|im_start|>", "<|im_end|>"]}


def is_jinja(value: str) -> bool:
    return "{%" in value or "{{" in value


def resolve_template(name_or_jinja: str) -> str:
    """Return Jinja source for a shipped template name or an inline Jinja string."""
    if is_jinja(name_or_jinja):
        return name_or_jinja
    if name_or_jinja not in TEMPLATES:
        raise KeyError(f"unknown chat template {name_or_jinja!r}; shipped: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[name_or_jinja]


def apply_chat_template_choice(tokenizer: PreTrainedTokenizerBase, choice: str | None) -> int:
    """Set the tokenizer's chat template (None keeps its own). Returns how many tokens were added."""
    if choice is None:
        if tokenizer.chat_template is None:
            raise ValueError("the tokenizer has no chat template of its own; set model.chat_template")
        return 0
    tokenizer.chat_template = resolve_template(choice)
    added = tokenizer.add_special_tokens(
        {"additional_special_tokens": SPECIAL_TOKENS.get(choice, [])}, replace_extra_special_tokens=False
    )
    if choice == "chatml":
        tokenizer.eos_token = "<|im_end|>"
    return added
