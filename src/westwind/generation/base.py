"""What every backend takes and yields, and helpers they share."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from westwind.aift.config import SamplingConfig
from westwind.errors import RunError
from westwind.training.chat_templates import render_prompt


@dataclass
class ChatRequest:
    key: Any  # the caller's id for this request
    messages: list[dict[str, str]]
    sampling: SamplingConfig  # temperature resolved (never None)
    n: int = 1
    seed: int = 0


@dataclass
class Completion:
    text: str
    finish_reason: str | None = None


@dataclass
class Result:
    request: ChatRequest
    completions: list[Completion] | None = None
    error: str | None = None  # set when the request failed for good
    failures: Counter = field(default_factory=Counter)  # transient failures retried on the way


class Backend(Protocol):
    name: str

    def run(self, requests: list[ChatRequest]) -> Iterator[Result]: ...

    def close(self) -> None: ...


class BackendUnavailable(RunError):
    """A backend's package or environment is missing: one line for the user, no traceback."""


def resolved_sampling(sampling: SamplingConfig, default_temperature: float) -> SamplingConfig:
    temperature = default_temperature if sampling.temperature is None else sampling.temperature
    return dataclasses.replace(sampling, temperature=temperature, stop=list(sampling.stop))


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """The text before the first stop string, and whether one was found."""
    positions = [text.find(s) for s in stop if s and s in text]
    return (text[: min(positions)], True) if positions else (text, False)


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the chat-templated prompt; the template adds BOS itself, so the tokenizer must not."""
    text = render_prompt(tokenizer, messages)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def free_accelerator_memory() -> None:
    import gc

    import torch  # heavy: only backends that loaded a model call this

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
