"""`westwind check`'s rendered example: one row as the trainer receives it, token by token.

Tokens that carry loss are green on a terminal and [bracketed] otherwise; special tokens appear by name
(`<|im_end|>`), other tokens as their text with newlines as `\\n`, separated by `·`. Below each, the prompt that
AIFT, eval and chat send for the same conversation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from westwind.training.chat_templates import fold_system_into_user
from westwind.training.template_lint import (
    inference_tokens,
    special_ids,
    training_template,
    training_tokens,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

GREEN, CYAN, RESET = "\033[32m", "\033[36m", "\033[0m"


def sft_tokens(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], assistant_only_loss: bool
) -> tuple[list[int], list[int]]:
    """Token ids and loss mask of a dSFT row, as TRL's SFTTrainer builds them (system turn folded as westwind
    folds dSFT rows)."""
    template = training_template(tokenizer, assistant_only_loss)
    return training_tokens(tokenizer, messages, assistant_only_loss, template)


def dpo_tokens(tokenizer: PreTrainedTokenizerBase, row: dict[str, Any]) -> dict[str, list[int]]:
    """prompt_ids, chosen_ids, rejected_ids of a preference row, as TRL's DPOTrainer tokenizes it."""
    from trl.data_utils import _tokenize, common_prefix_length  # lazy: TRL is heavy

    prompt = fold_system_into_user(row["prompt"], tokenizer, say=False)
    prompt_ids = _tokenize(tokenizer, prompt, add_generation_prompt=True)["input_ids"]
    chosen = _tokenize(tokenizer, prompt + row["chosen"])["input_ids"]
    rejected = _tokenize(tokenizer, prompt + row["rejected"])["input_ids"]
    length = min(common_prefix_length(prompt_ids, chosen), common_prefix_length(prompt_ids, rejected))
    return {
        "prompt_ids": prompt_ids[:length],
        "chosen_ids": chosen[length:],
        "rejected_ids": rejected[length:],
    }


def show_sft(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    assistant_only_loss: bool,
    source: str,
    color: bool,
) -> str:
    ids, mask = sft_tokens(tokenizer, messages, assistant_only_loss)
    loss = "assistant turns only" if assistant_only_loss else "every token"
    return "\n".join(
        [
            f"\nsft example ({source}): {len(ids)} tokens, {sum(mask)} carry loss ({loss})",
            render(tokenizer, ids, mask, color),
            *prompt_lines(tokenizer, messages[:-1], color),
            legend(tokenizer, ids),
        ]
    )


def show_dpo(tokenizer: PreTrainedTokenizerBase, row: dict[str, Any], source: str, color: bool) -> str:
    tokens = dpo_tokens(tokenizer, row)
    prompt, chosen, rejected = tokens["prompt_ids"], tokens["chosen_ids"], tokens["rejected_ids"]
    return "\n".join(
        [
            f"\ndpo example ({source}): prompt {len(prompt)} tokens; loss on the completions",
            "chosen:   " + render(tokenizer, prompt + chosen, [0] * len(prompt) + [1] * len(chosen), color),
            "rejected: "
            + render(tokenizer, rejected, [1] * len(rejected), color)
            + "  (after the same prompt)",
            *prompt_lines(tokenizer, row["prompt"], color),
            legend(tokenizer, prompt + chosen + rejected),
        ]
    )


def prompt_lines(tokenizer: PreTrainedTokenizerBase, prompt: list[dict[str, Any]], color: bool) -> list[str]:
    ids = inference_tokens(tokenizer, prompt)
    return [f"inference prompt (AIFT, eval, chat): {render(tokenizer, ids, [0] * len(ids), color)}"]


def render(tokenizer: PreTrainedTokenizerBase, ids: list[int], mask: list[int], color: bool) -> str:
    """Tokens joined by `·`; runs of loss-carrying tokens bracketed (or green), special tokens by name."""
    special = special_ids(tokenizer)
    parts, in_loss = [], False
    for token, trained in zip(ids, mask, strict=True):
        text = token_text(tokenizer, token, token in special)
        if color:
            shade = GREEN if trained else CYAN if token in special else ""
            parts.append(f"{shade}{text}{RESET}" if shade else text)
            continue
        if trained and not in_loss:
            text = "[" + text
        if in_loss and not trained:
            parts[-1] += "]"
        in_loss = bool(trained)
        parts.append(text)
    if in_loss and not color and parts:
        parts[-1] += "]"
    return "·".join(parts)


def token_text(tokenizer: PreTrainedTokenizerBase, token: int, special: bool) -> str:
    if special:
        return tokenizer.convert_ids_to_tokens(token)
    return tokenizer.decode([token]).replace("\n", "\\n")


def legend(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """The special tokens that appear, by name, with their roles (BOS, EOS, pad, unk)."""
    roles: dict[int, list[str]] = {}
    for role in ("bos", "eos", "pad", "unk"):
        token = getattr(tokenizer, f"{role}_token_id")
        if token is not None:
            roles.setdefault(token, []).append(role.upper())
    special = special_ids(tokenizer)
    seen = [token for token in dict.fromkeys(ids) if token in special]
    described = [
        f"{tokenizer.convert_ids_to_tokens(t)} (id {t}{', ' + '/'.join(roles[t]) if t in roles else ''})"
        for t in seen
    ]
    return "special tokens: " + (", ".join(described) if described else "none")
