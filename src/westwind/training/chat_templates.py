"""Training chat templates: TRL's own where TRL 1.16 ships one, westwind's for the formats it lacks.

Every template marks assistant content with {% generation %} so assistant-only loss works, and starts with
the tokenizer's BOS when it has one: TRL tokenizes chats with `add_special_tokens=False`, so a BOS the
template does not write is never there (Mistral/Zephyr were trained with `<s>` first). The exception is
`smollm2`, whose BOS *is* `<|im_start|>`: its template writes it at every turn, never once more in front.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# `bos_token` is absent from the render context when the tokenizer has none, hence the `is defined` guard.
BOS = "{%- if bos_token is defined and bos_token -%}{{ bos_token }}{%- endif -%}"

# Zephyr: <|role|>\n{content}{eos}\n per turn, as the Zephyr models use; TRL has no Zephyr template.
ZEPHYR = (
    BOS + "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\n' }}{%- generation -%}{{ message['content'] + eos_token }}{%- endgeneration -%}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)

# ChatML turns with generation markers around the assistant's content and its <|im_end|>; ChatML has no BOS.
_CHATML_TURNS = (
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

# Plain ChatML without Qwen's default system prompt (TRL's qwen2.5 template adds one).
CHATML = "{%- for message in messages -%}" + _CHATML_TURNS

# SmolLM2-Instruct's own template (as shipped in its tokenizer and GGUF file) with generation markers: ChatML
# plus its default system turn when the conversation has none, so training sees what users of the model send.
# No BOS in front: SmolLM2's bos_token is `<|im_start|>` itself. Pad = EOS = end of turn = `<|im_end|>`.
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SMOLLM2 = (
    "{%- for message in messages -%}"
    "{%- if loop.first and messages[0]['role'] != 'system' -%}"
    "{{ '<|im_start|>system\n" + SMOLLM2_SYSTEM + "<|im_end|>\n' }}"
    "{%- endif -%}" + _CHATML_TURNS
)

OWN_TEMPLATES: dict[str, str] = {"zephyr": ZEPHYR, "chatml": CHATML, "smollm2": SMOLLM2}
# Shipped name -> attribute of trl.chat_template_utils holding TRL's training variant (BOS included).
TRL_TEMPLATES: dict[str, str] = {
    "llama3": "llama3_training_chat_template",
    "qwen2.5": "qwen2_5_training_chat_template",
    "gemma": "gemma_training_chat_template",
}
# Every shipped name -> where its Jinja comes from.
TEMPLATES: dict[str, str] = {
    **dict.fromkeys(OWN_TEMPLATES, "westwind"),
    **{name: f"trl.chat_template_utils.{attr}" for name, attr in TRL_TEMPLATES.items()},
}
# Tokens a template needs as single special tokens (added to the vocabulary when missing), and the token that
# ends an assistant turn when it is not the tokenizer's own EOS (set as EOS so generation stops there).
SPECIAL_TOKENS: dict[str, list[str]] = {
    "chatml": ["<|im_start|>", "<|im_end|>"],
    "qwen2.5": ["<|im_start|>", "<|im_end|>"],
    "smollm2": ["<|im_start|>", "<|im_end|>"],
}
TURN_END: dict[str, str] = {"chatml": "<|im_end|>", "qwen2.5": "<|im_end|>", "smollm2": "<|im_end|>"}


def is_jinja(value: str) -> bool:
    return "{%" in value or "{{" in value


def resolve_template(name_or_jinja: str) -> str:
    """Return Jinja source for a shipped template name or an inline Jinja string."""
    if is_jinja(name_or_jinja):
        return name_or_jinja
    if name_or_jinja in OWN_TEMPLATES:
        return OWN_TEMPLATES[name_or_jinja]
    if name_or_jinja in TRL_TEMPLATES:
        import trl.chat_template_utils  # lazy: importing TRL costs seconds, and `westwind check` needs none

        return getattr(trl.chat_template_utils, TRL_TEMPLATES[name_or_jinja])
    raise KeyError(f"unknown chat template {name_or_jinja!r}; shipped: {', '.join(sorted(TEMPLATES))}")


def apply_chat_template_choice(tokenizer: PreTrainedTokenizerBase, choice: str | None) -> int:
    """Set the tokenizer's chat template (None keeps its own). Returns how many tokens were added.

    With None, TRL's SFTTrainer swaps in its own training variant when assistant-only loss needs one
    (`get_training_chat_template`).
    """
    if choice is None:
        if tokenizer.chat_template is None:
            raise ValueError("the tokenizer has no chat template of its own; set model.chat_template")
        return 0
    tokenizer.chat_template = resolve_template(choice)
    added = tokenizer.add_special_tokens(
        {"additional_special_tokens": SPECIAL_TOKENS.get(choice, [])}, replace_extra_special_tokens=False
    )
    if choice in TURN_END:
        tokenizer.eos_token = TURN_END[choice]
    return added


def refuses_system_role(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when the tokenizer's chat template raises on a system turn (Gemma's does)."""
    probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    return _renders(tokenizer, probe) is not None and _renders(tokenizer, probe[1:]) is None


def fold_system_into_user(
    messages: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, say: bool = True
) -> list[dict[str, Any]]:
    """Messages the template accepts: a leading system turn is prepended to the first user turn when the
    template refuses system turns (said once per process and template); otherwise the messages unchanged.
    dSFT and dDPO rows, AIFT, eval and chat all fold through here, so they fold the same way."""
    if not messages or messages[0]["role"] != "system" or not refuses_system_role(tokenizer):
        return messages
    if say:
        say_folding(tokenizer)
    system, rest = messages[0], list(messages[1:])
    for index, message in enumerate(rest):
        if message["role"] == "user":
            rest[index] = {**message, "content": f"{system['content']}\n\n{message['content']}"}
            return rest
    return [{"role": "user", "content": system["content"]}, *rest]


FOLD_MESSAGE = (
    "the chat template refuses a system turn: the system prompt is put before the first user turn's text "
    "(the same in dSFT, dDPO, AIFT, eval and chat)"
)
_said_folding: set[int] = set()


def say_folding(tokenizer: PreTrainedTokenizerBase) -> None:
    key = hash(str(tokenizer.chat_template))
    if key not in _said_folding:
        _said_folding.add(key)
        print(f"westwind: {FOLD_MESSAGE}", file=sys.stderr)


def fold_system_turns(dataset, tokenizer: PreTrainedTokenizerBase, column: str):
    """A training split with each row's leading system turn folded into its first user turn, when the template
    refuses system turns; the dataset unchanged otherwise."""
    if not refuses_system_role(tokenizer):
        return dataset
    if not any(row[column] and row[column][0]["role"] == "system" for row in dataset):
        return dataset
    say_folding(tokenizer)
    return dataset.map(
        lambda row: {column: fold_system_into_user(row[column], tokenizer, say=False)},
        desc="folding system turns into user turns",
    )


def render_prompt(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], say: bool = True
) -> str:
    """The chat-templated prompt text for generation, any system turn folded in where the template refuses it."""
    return tokenizer.apply_chat_template(
        fold_system_into_user(messages, tokenizer, say), add_generation_prompt=True, tokenize=False
    )


def _renders(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]]) -> TemplateError | None:
    """The error the template raises (its `raise_exception(...)`) on `messages`, or None when it renders."""
    try:
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError as error:
        return error
    return None
