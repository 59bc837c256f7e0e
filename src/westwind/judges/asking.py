"""Ask an LLM judge: send conversations, parse the replies, re-ask the unparsable ones a bounded number of
times, and yield each key's answer as soon as it is settled."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from westwind.aift.config import SamplingConfig
from westwind.generation import Backend, ChatRequest, Result
from westwind.judges.base import ParseFailure

T = TypeVar("T")


@dataclass
class Answer(Generic[T]):
    value: T | None = None
    failure: str | None = None  # the parse failure reason when the re-asks ran out
    error: str | None = None  # a request failure
    parse_failures: Counter = field(default_factory=Counter)
    request_failures: Counter = field(default_factory=Counter)


class Asker(Generic[T]):
    def __init__(
        self, backend: Backend, sampling: SamplingConfig, parse: Callable[[Hashable, str], T], max_reasks: int
    ):
        self.backend, self.sampling, self.parse, self.max_reasks = backend, sampling, parse, max_reasks

    def ask(self, conversations: dict[Hashable, list[dict]]) -> Iterator[tuple[Hashable, Answer[T]]]:
        answers: dict[Hashable, Answer[T]] = {key: Answer() for key in conversations}
        pending = dict(conversations)
        for round_index in range(self.max_reasks + 1):
            retry: dict[Hashable, list[dict]] = {}
            requests = [ChatRequest(key, messages, self.sampling) for key, messages in pending.items()]
            for result in self.backend.run(requests):
                key = result.request.key
                reask = self.settle(result, answers[key], can_reask=round_index < self.max_reasks)
                if reask is None:
                    yield key, answers[key]
                else:
                    retry[key] = reask
            pending = retry
            if not pending:
                break

    def settle(self, result: Result, answer: Answer[T], can_reask: bool) -> list[dict] | None:
        """Record a reply in `answer`; the conversation to re-ask, or None when the key is settled."""
        answer.request_failures.update(result.failures)
        if result.error is not None:
            answer.error = result.error
            return None
        reply = result.completions[0].text
        try:
            answer.value = self.parse(result.request.key, reply)
        except ParseFailure as failure:
            answer.parse_failures[failure.reason] += 1
            if can_reask:
                return [*result.request.messages, *reask_turns(reply, failure)]
            answer.failure = failure.reason
        return None


def reask_turns(reply: str, failure: ParseFailure) -> list[dict[str, str]]:
    """The unparsable reply and a correction request: a new input, so a temperature-0 judge can recover."""
    return [
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": f"Your reply could not be read ({failure}). Answer again in exactly the requested "
            "format, covering every text, and nothing else.",
        },
    ]
