"""Chat-template and special-token lint: the mistakes that let a fine-tune run to the end and ruin the model.

Every rule renders probe conversations through the path TRL's trainers use (`trl.data_utils._tokenize`:
`apply_chat_template(tokenize=True)`, no special tokens added) and the path westwind's generation uses
(`render_prompt`, then the tokenizer with `add_special_tokens=False`), and compares token ids. Nothing here
assumes one BOS at the start or a pad token distinct from EOS (SmolLM2's BOS begins every turn; its pad is its
EOS). docs/templates.md says what each rule catches and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError

from westwind.training.chat_templates import fold_system_into_user, refuses_system_role

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ERROR, WARNING, NOTE = "error", "warning", "note"
TEMPLATE_KEY, LOSS_KEY = "model.chat_template", "sft.assistant_only_loss"
SYSTEM = {"role": "system", "content": "be brief"}
FIRST = [{"role": "user", "content": "reverse: cat dog"}, {"role": "assistant", "content": "dog cat"}]
SECOND = [{"role": "user", "content": "reverse: sun moon"}, {"role": "assistant", "content": "moon sun"}]
SHIPPED = "chatml, zephyr, llama3, qwen2.5, gemma"


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str  # ERROR, WARNING or NOTE
    key: str  # the recipe key to change
    problem: str  # what is wrong and how to fix it, one line

    def line(self) -> str:
        return f"{self.rule}: {self.problem}"


@dataclass
class Subject:
    """What the lint looks at: the tokenizer with the recipe's template and pad, and what surrounds it."""

    tokenizer: PreTrainedTokenizerBase
    own_template: str | None  # the tokenizer's template before the recipe's choice (None: it had none)
    choice: str | None  # model.chat_template: a shipped name, inline Jinja, or None (the tokenizer's own)
    assistant_only_loss: bool
    stop_ids: frozenset[
        int
    ]  # generation stop tokens besides the tokenizer's EOS (the model's generation_config)


# ---------------------------------------------------------------- the two tokenization paths


def training_template(tokenizer: PreTrainedTokenizerBase, assistant_only_loss: bool) -> str | None:
    """The template TRL's SFTTrainer tokenizes with: None keeps the tokenizer's; with assistant-only loss and no
    generation markers, TRL's patched training variant (ValueError when TRL has none)."""
    from trl.chat_template_utils import (  # lazy: TRL is heavy
        get_training_chat_template,
        has_generation_markers,
    )

    if assistant_only_loss and not has_generation_markers(tokenizer.chat_template):
        return get_training_chat_template(tokenizer)
    return None


def training_tokens(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    assistant_only_loss: bool,
    template: str | None = None,
) -> tuple[list[int], list[int]]:
    """Token ids of a conversation as TRL's SFTTrainer builds them, and the loss mask (1: the token is trained).
    Without assistant-only loss every token is trained (TRL masks only padding)."""
    from trl.data_utils import _tokenize  # lazy: TRL is heavy; the trainers' own tokenization, not a copy

    messages = fold_system_into_user(messages, tokenizer, say=False)
    output = _tokenize(
        tokenizer, messages, return_assistant_tokens_mask=assistant_only_loss, chat_template=template
    )
    ids = list(output["input_ids"])
    mask = list(output["assistant_masks"]) if assistant_only_loss else [1] * len(ids)
    return ids, mask


def inference_tokens(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]]) -> list[int]:
    """The prompt AIFT, eval and chat send for `messages` (generation.base.chat_prompt_ids' path)."""
    from westwind.training.chat_templates import render_prompt

    return tokenizer(render_prompt(tokenizer, messages, say=False), add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------- rules


def lint(subject: Subject) -> list[Finding]:
    """Every rule's findings; an empty list when the template is sound."""
    tokenizer = subject.tokenizer
    found = rule_turn_text(tokenizer)
    if found:
        return found  # the template cannot render a conversation: the other rules would only repeat it
    try:
        template = training_template(tokenizer, subject.assistant_only_loss)
    except ValueError:
        return [no_training_variant()]
    found += rule_system_turn(tokenizer)
    found += rule_turn_end(subject, template)
    found += rule_bos(subject, template)
    found += rule_prompt_prefix(tokenizer, subject.assistant_only_loss, template)
    found += rule_template_mismatch(subject)
    return found


def rule_turn_text(tokenizer: PreTrainedTokenizerBase) -> list[Finding]:
    conversation = FIRST + SECOND
    try:
        text = tokenizer.apply_chat_template(
            fold_system_into_user(conversation, tokenizer, say=False), tokenize=False
        )
    except TemplateError as error:
        return [
            Finding(
                "turn-text", ERROR, TEMPLATE_KEY, f"the template fails on a 2-turn conversation ({error})"
            )
        ]
    missing = [m["content"] for m in conversation if m["content"] not in text]
    if not missing:
        return []
    return [
        Finding(
            "turn-text",
            ERROR,
            TEMPLATE_KEY,
            f"the template's rendering of a 2-turn conversation lacks {missing[0]!r}: it drops a turn's text "
            "(a loop over `messages` that skips turns, or content never written); render every message's content",
        )
    ]


def no_training_variant() -> Finding:
    return Finding(
        "generation-markers",
        ERROR,
        LOSS_KEY,
        "assistant_only_loss needs {% generation %} markers around the assistant's content; this template has "
        "none and neither TRL nor westwind has a training variant of it (TRL would refuse it after the model "
        f"loads): set model.chat_template to a shipped template ({SHIPPED}) or one with the markers, "
        "or set assistant_only_loss: false",
    )


def rule_system_turn(tokenizer: PreTrainedTokenizerBase) -> list[Finding]:
    if not refuses_system_role(tokenizer):
        return []
    try:
        tokenizer.apply_chat_template(
            fold_system_into_user([SYSTEM, *FIRST], tokenizer, say=False), tokenize=False
        )
    except TemplateError as error:
        return [
            Finding(
                "system-turn",
                ERROR,
                TEMPLATE_KEY,
                f"the template fails even with the system turn folded ({error})",
            )
        ]
    return [
        Finding(
            "system-turn",
            NOTE,
            TEMPLATE_KEY,
            "the template refuses a system turn: westwind puts a system prompt before the first user turn's text, "
            "the same way in dSFT rows, AIFT, eval and chat",
        )
    ]


def turn_end_position(tokenizer: PreTrainedTokenizerBase, ids: list[int], content: str) -> int | None:
    """Index of the first non-blank token after the assistant's `content`: the token that ends its turn."""
    decoded = ""
    for index, token in enumerate(ids):
        decoded += tokenizer.decode([token])
        if content in decoded:
            for after in range(index + 1, len(ids)):
                if tokenizer.decode([ids[after]]).strip():
                    return after
            return None
    return None


def special_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    return set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())


def rule_turn_end(subject: Subject, template: str | None) -> list[Finding]:
    tokenizer = subject.tokenizer
    # An assistant turn followed by a user turn: some templates give the end token to the message that follows.
    ids, mask = training_tokens(tokenizer, [*FIRST, SECOND[0]], subject.assistant_only_loss, template)
    position = turn_end_position(tokenizer, ids, FIRST[1]["content"])
    if position is None or ids[position] not in special_ids(tokenizer):
        after = "nothing" if position is None else repr(tokenizer.decode(ids[position:]).split("\n")[0])
        return [
            Finding(
                "turn-end",
                ERROR,
                TEMPLATE_KEY,
                f"an assistant turn ends with {after}, not a special token, so the model has nothing to learn to "
                "stop on: end each assistant turn with the EOS (or the template's end-of-turn token)",
            )
        ]
    token, name = ids[position], tokenizer.convert_ids_to_tokens(ids[position])
    found = []
    if not mask[position]:
        found.append(
            Finding(
                "turn-end-loss",
                ERROR,
                LOSS_KEY,
                f"the assistant turn's end token {name} is outside the loss mask, so the model never learns to "
                "stop (TRL only warns): put it inside {% generation %}...{% endgeneration %}, or set "
                "assistant_only_loss: false",
            )
        )
    stops = {*subject.stop_ids, tokenizer.eos_token_id}
    if token not in stops:
        found.append(
            Finding(
                "turn-end-stop",
                ERROR,
                TEMPLATE_KEY,
                f"the assistant turn ends with {name} (id {token}), which is not a generation stop token "
                f"(EOS {tokenizer.eos_token}, generation_config {sorted(subject.stop_ids)}), so AIFT, eval and chat "
                "would generate past the turn's end: use a template that ends turns with the EOS, or a shipped one "
                "that sets its end-of-turn token as EOS (chatml, qwen2.5), or set sft.eos_token to it",
            )
        )
    return found


def rule_bos(subject: Subject, template: str | None) -> list[Finding]:
    tokenizer, bos = subject.tokenizer, subject.tokenizer.bos_token_id
    ids, _ = training_tokens(tokenizer, FIRST, subject.assistant_only_loss, template)
    text = tokenizer.apply_chat_template(FIRST, tokenize=False, chat_template=template)
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    if (bos is not None and ids[:2] == [bos, bos]) or plain != ids:
        return [
            Finding(
                "bos",
                ERROR,
                TEMPLATE_KEY,
                f"training tokens start {tokenizer.convert_ids_to_tokens(ids[:3])}: a token is added twice (the "
                "template writes the BOS and something adds it again); write the BOS once, as {{ bos_token }}",
            )
        ]
    if bos is None or not subject.own_template or ids[:1] == [bos]:
        return []
    own = tokenizer.apply_chat_template(FIRST, tokenize=False, chat_template=subject.own_template)
    if tokenizer(own, add_special_tokens=False)["input_ids"][:1] != [bos]:
        return []
    return [
        Finding(
            "bos",
            ERROR,
            TEMPLATE_KEY,
            f"the tokenizer's own template starts with the BOS {tokenizer.bos_token} and this one does not (TRL "
            "adds no special tokens, so the model would train without the BOS it was pretrained with): begin the "
            "template with {{ bos_token }}",
        )
    ]


def rule_prompt_prefix(
    tokenizer: PreTrainedTokenizerBase, assistant_only_loss: bool, template: str | None
) -> list[Finding]:
    for conversation in (FIRST, FIRST + SECOND):
        prompt = inference_tokens(tokenizer, conversation[:-1])
        trained, _ = training_tokens(tokenizer, conversation, assistant_only_loss, template)
        if trained[: len(prompt)] != prompt:
            at = next(
                (i for i, (a, b) in enumerate(zip(prompt, trained, strict=False)) if a != b), len(trained)
            )
            return [
                Finding(
                    "prompt-prefix",
                    ERROR,
                    TEMPLATE_KEY,
                    f"the inference prompt is not a prefix of the training rendering (token {at}: the prompt has "
                    f"{tokenizer.decode(prompt[at : at + 3])!r}, training {tokenizer.decode(trained[at : at + 3])!r}): "
                    "the model is served a context it never trained on; make `add_generation_prompt` write exactly "
                    "what begins an assistant turn in training",
                )
            ]
    return []


def rule_template_mismatch(subject: Subject) -> list[Finding]:
    tokenizer = subject.tokenizer
    if subject.own_template is None or subject.choice is None:
        return []
    probes = [FIRST + SECOND, [SYSTEM, *FIRST]]
    own = [_rendering(tokenizer, p, subject.own_template) for p in probes]
    ours = [_rendering(tokenizer, p, None) for p in probes]
    if own == ours:
        return []
    return [
        Finding(
            "template-mismatch",
            WARNING,
            TEMPLATE_KEY,
            f"the base model is chat-tuned with its own template ({template_name(subject.own_template)}) and the "
            f"recipe trains it with another ({template_name(subject.choice)}): it must unlearn its format; remove "
            "model.chat_template to keep its own, unless that is what you want",
        )
    ]


def _rendering(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], template: str | None
) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, chat_template=template)
    except TemplateError:
        return "(refused)"


def template_name(template: str) -> str:
    """A shipped or TRL template's name, else a short description."""
    from westwind.training.chat_templates import TEMPLATES, is_jinja, resolve_template

    if not is_jinja(template):
        return template
    for name in TEMPLATES:
        if resolve_template(name) == template:
            return f"westwind's {name}"
    import trl.chat_template_utils as trl_templates  # lazy: TRL is heavy

    for attribute, value in vars(trl_templates).items():
        if attribute.endswith("chat_template") and value == template:
            return f"TRL's {attribute.removesuffix('_chat_template')}"
    first = template.strip().splitlines()[0]
    return f"inline Jinja {first[:40]!r}{'...' if len(first) > 40 else ''}"
