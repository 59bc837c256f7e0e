"""`westwind chat MODEL_OR_RECIPE[@stage]`: talk to a model (or adapter) in the terminal, streaming its tokens.

    westwind chat outputs/zephyr-7b/dpo                      # a model or adapter folder, or a hub id
    westwind chat recipes/zephyr-7b.yaml@sft                 # a recipe's stage (default: dpo, else sft)
    westwind chat recipes/demo-cpu.yaml --once "2+2="        # one reply, for scripts

In the chat: `/system TEXT` sets the system prompt (and starts over), `/reset` forgets the conversation,
`/exit` (or Ctrl-D) leaves. Sampling comes from the recipe's `eval.sampling` when there is one, else greedy with
256 new tokens; `--max-new-tokens`, `--temperature` and `--top-p` override either.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from westwind.errors import RecipeError, exit_on_user_error

RECIPE_SUFFIXES = (".yaml", ".yml")
DEFAULT_MAX_NEW_TOKENS = 256
PROMPT = "you> "
REPLY = "assistant> "


@dataclasses.dataclass
class Target:
    """What to load: the model path, the recipe's model options for it, and the sampling defaults."""

    path: str
    model_args: Any
    sampling: dict[str, Any]


def resolve_target(spec: str, chat_template: str | None, dtype: str | None) -> Target:
    """`recipe.yaml[@stage]` -> that stage's output with the recipe's model options; anything else is a model."""
    from westwind.recipe.core import ModelArgs, load_recipe

    name, _, stage = spec.partition("@") if not Path(spec).exists() else (spec, "", "")
    if not name.endswith(RECIPE_SUFFIXES):
        args = ModelArgs(model_name_or_path=spec, chat_template=chat_template, dtype=dtype or "auto")
        return Target(spec, args, {})
    recipe = load_recipe(name)
    stage = stage or ("dpo" if recipe.dpo is not None else "sft")
    path = recipe.resolve_reference(f"@{stage}")
    if not Path(path).exists():
        raise RecipeError(recipe.path, stage, f"{path} not found: run the {stage} stage first")
    model_args = dataclasses.replace(
        recipe.model,
        model_name_or_path=path,
        chat_template=chat_template or recipe.model.chat_template,
        dtype=dtype or recipe.model.dtype,
    )
    sampling = dataclasses.asdict(recipe.eval.sampling) if recipe.eval is not None else {}
    return Target(path, model_args, sampling)


def generation_kwargs(sampling: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """transformers generate() settings: the flags win over the recipe's eval sampling; greedy by default."""
    max_new_tokens = args.max_new_tokens or sampling.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS
    temperature = args.temperature if args.temperature is not None else sampling.get("temperature") or 0.0
    top_p = args.top_p if args.top_p is not None else sampling.get("top_p", 1.0)
    if temperature > 0:
        return {
            "max_new_tokens": max_new_tokens,
            "do_sample": True,
            "temperature": temperature,
            "top_p": top_p,
        }
    return {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }


class Chat:
    """A conversation with one model: the chat template, the history and a streamed reply per turn."""

    def __init__(self, target: Target, generation: dict[str, Any], system: str | None = None):
        import torch
        from transformers.utils import logging as transformers_logging

        from westwind.training.models import (  # heavy: loaded once the input is checked
            load_causal_lm,
            load_tokenizer,
        )

        transformers_logging.disable_progress_bar()  # no "Loading weights" bars between the user and the chat
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = load_tokenizer(target.path, target.model_args)
        self.model = load_causal_lm(target.path, target.model_args, self.tokenizer, quantize=False)
        self.model = self.model.to(self.device).eval()
        self.generation = {**generation, "pad_token_id": self.tokenizer.pad_token_id}
        self.system = system
        self.messages: list[dict[str, str]] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def set_system(self, text: str) -> None:
        self.system = text or None
        self.reset()

    def reply(self, text: str) -> str:
        """Stream the model's answer to `text` to stdout and add both turns to the history."""
        import torch
        from transformers import TextStreamer

        from westwind.training.chat_templates import (
            render_prompt,  # folds --system where the template refuses it
        )

        self.messages.append({"role": "user", "content": text})
        prompt = render_prompt(self.tokenizer, self.messages)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)
        streamer = TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        with torch.no_grad():
            output = self.model.generate(**inputs, **self.generation, streamer=streamer)
        answer = self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        self.messages.append({"role": "assistant", "content": answer.strip()})
        return answer


def repl(chat: Chat) -> None:
    print("westwind chat: /system TEXT sets the system prompt, /reset starts over, /exit leaves", flush=True)
    while True:
        try:
            line = input(PROMPT).strip()
        except EOFError:
            print()
            return
        command, _, rest = line.partition(" ")
        if command == "/exit":
            return
        if command == "/reset":
            chat.reset()
            print("(conversation cleared)", flush=True)
        elif command == "/system":
            chat.set_system(rest.strip())
            print(f"(system prompt {'set' if chat.system else 'removed'}; conversation cleared)", flush=True)
        elif line:
            print(REPLY, end="", flush=True)
            chat.reply(line)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="westwind chat", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", metavar="MODEL_OR_RECIPE[@stage]")
    parser.add_argument("--once", metavar="PROMPT", help="answer one prompt and exit")
    parser.add_argument("--system", help="a system prompt")
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--temperature", type=float, help="0: greedy")
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--chat-template", help="a shipped template name or Jinja (default: the model's own)")
    parser.add_argument("--dtype", help="default: the recipe's model.dtype, else auto")
    return parser


def main(argv: list[str]) -> None:
    args = make_parser().parse_args(argv)
    with exit_on_user_error():
        target = resolve_target(args.target, args.chat_template, args.dtype)
    chat = Chat(target, generation_kwargs(target.sampling, args), args.system)
    if args.once is not None:
        chat.reply(args.once)
        return
    repl(chat)


if __name__ == "__main__":
    main(sys.argv[1:])
