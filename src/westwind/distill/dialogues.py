"""UltraChat-style dialogues: the teacher answers, a user simulator writes the next user turn, for a drawn
number of assistant turns. A turn that comes back empty or cut at max_new_tokens is dropped (and counted): the
dialogue ends at its last good assistant turn, or is dropped when its first answer is bad. A request that
fails after retries fails the dialogue, which the next run retries.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any

from westwind.aift.prompts import Prompt, with_system_prompt
from westwind.aift.teacher import LazyTeacher, reply
from westwind.distill.config import DialoguesConfig
from westwind.generation import ChatRequest, resolved_sampling
from westwind.seeding import stable_seed

USER_SIMULATOR = (
    "You play the user in a conversation with an AI assistant. Read the conversation so far and write the "
    "user's next message: a natural follow-up that goes deeper, asks for a change, or moves to a related "
    "question. Write only that message, in the user's voice, with no preamble."
)


def draw_turns(weights: list[float], seed: int, prompt_id: str) -> int:
    """The number of assistant turns for one dialogue, 1..len(weights), drawn reproducibly."""
    rng = random.Random(stable_seed(seed, "turns", prompt_id))
    return rng.choices(range(1, len(weights) + 1), weights=weights)[0]


def transcript(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(f"[{m['role'].capitalize()}]: {m['content']}" for m in messages)


@dataclasses.dataclass
class Dialogue:
    prompt: Prompt
    turns: int  # assistant turns wanted
    messages: list[dict[str, str]]
    dropped_turns: Counter = dataclasses.field(default_factory=Counter)
    failures: Counter = dataclasses.field(default_factory=Counter)
    error: str | None = None
    ended: bool = False

    @property
    def answered(self) -> int:
        return sum(m["role"] == "assistant" for m in self.messages)

    def wants_answer(self) -> bool:
        return not self.ended and self.messages[-1]["role"] == "user"

    def wants_question(self) -> bool:
        return not self.ended and self.messages[-1]["role"] == "assistant" and self.answered < self.turns

    def take(self, result, role: str) -> None:
        self.failures.update(result.failures)
        answer = reply(result)
        if answer is None:
            self.error, self.ended = result.error, True
            return
        text, finish_reason = answer
        problem = "empty" if not text.strip() else "truncated" if finish_reason == "length" else None
        if problem is None:
            self.messages.append({"role": role, "content": text})
            return
        self.dropped_turns[f"{problem}_{role}"] += 1
        if role == "assistant":  # the unanswered user turn goes too
            self.messages.pop()
        self.ended = True

    def record(self, fingerprint: str) -> dict[str, Any]:
        record = {
            "prompt_id": self.prompt.prompt_id,
            "fingerprint": fingerprint,
            "turns_wanted": self.turns,
            "dropped_turns": dict(self.dropped_turns),
            "failures": dict(self.failures),
        }
        if self.error is not None:
            return {**record, "status": "failed", "error": self.error}
        complete = self.answered > 0
        return {**record, "status": "ok", "messages": self.messages if complete else None}


class DialogueWriter:
    """Writes dialogues for a batch of opening prompts, turn by turn across the whole batch."""

    def __init__(self, config: DialoguesConfig, seed: int, teacher: LazyTeacher, user: LazyTeacher):
        self.config, self.seed, self.teacher, self.user = config, seed, teacher, user
        self.sampling = resolved_sampling(config.sampling, default_temperature=1.0)
        self.user_sampling = resolved_sampling(
            config.user_sampling or config.sampling, default_temperature=1.0
        )

    def write(self, prompts: list[Prompt]) -> list[Dialogue]:
        dialogues = [
            Dialogue(p, draw_turns(self.config.turn_weights, self.seed, p.prompt_id), list(p.messages))
            for p in prompts
        ]
        while True:
            answering = [d for d in dialogues if d.wants_answer()]
            for dialogue, result in zip(
                answering, self.teacher.complete(self.answer_requests(answering)), strict=True
            ):
                dialogue.take(result, "assistant")
            asking = [d for d in dialogues if d.wants_question()]
            for dialogue, result in zip(
                asking, self.user.complete(self.question_requests(asking)), strict=True
            ):
                dialogue.take(result, "user")
            if not answering and not asking:
                return dialogues

    def answer_requests(self, dialogues: list[Dialogue]) -> list[ChatRequest]:
        requests = []
        for d in dialogues:
            messages = d.messages
            if self.config.system_prompt:
                messages = with_system_prompt(messages, self.config.system_prompt)
            seed = stable_seed(self.seed, d.prompt.prompt_id, "assistant", d.answered)
            requests.append(ChatRequest(d.prompt.prompt_id, messages, self.sampling, 1, seed))
        return requests

    def question_requests(self, dialogues: list[Dialogue]) -> list[ChatRequest]:
        requests = []
        for d in dialogues:
            messages = [
                {"role": "system", "content": USER_SIMULATOR},
                {"role": "user", "content": f"{transcript(d.messages)}\n\n[User]:"},
            ]
            seed = stable_seed(self.seed, d.prompt.prompt_id, "user", d.answered)
            requests.append(ChatRequest(d.prompt.prompt_id, messages, self.user_sampling, 1, seed))
        return requests
