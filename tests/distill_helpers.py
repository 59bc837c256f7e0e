"""Test-only helpers for the distill stage: a scripted OpenAI-compatible teacher (deterministic content from
each request alone, optional injected faults and delay) and a recipe writer."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from stub_server import Reply, Request, StubServer

SYLLABLES = ["ba", "ko", "ti", "rel", "mu", "san", "dor", "vi", "lek", "pa", "zu", "nor", "fi", "gal", "te"]
VOCAB = sorted({a + b for a in SYLLABLES for b in SYLLABLES})  # 225 made-up words
VERBS = ["Explain", "Describe", "Summarize", "Compare", "Classify", "Rewrite", "List", "Suggest"]


def hashed(*parts: Any) -> int:
    return int(hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12], 16)


def instruction_reply(seed: int) -> tuple[str, str]:
    """A numbered list with novel items plus one ROUGE-L near-copy, one unsuitable-keyword item and one too
    short item; every fourth seed's reply is cut at max_new_tokens (its last item is cut off)."""
    rng = random.Random(seed)
    novel = [f"{rng.choice(VERBS)} the {' '.join(rng.sample(VOCAB, 8))}." for _ in range(4)]
    words = novel[0].split()
    near_copy = " ".join([*words[:-2], "zuzu", words[-1]])  # one word changed: ROUGE-L 0.9
    items = [novel[0], novel[1], near_copy, f"Draw a picture of the {rng.choice(VOCAB)}.", "Hi.", *novel[2:]]
    text = "Here are the new tasks:\n" + "\n".join(f"{i}. {item}" for i, item in enumerate(items, start=9))
    return (text[:-12], "length") if seed % 4 == 3 else (text, "stop")


def answer_reply(messages: list[dict]) -> tuple[str, str]:
    """An answer from the conversation; about one in seven is cut at max_new_tokens."""
    h = hashed(messages)
    words = " ".join(VOCAB[(h >> (4 * i)) % len(VOCAB)] for i in range(6))
    return f"Here is my answer: {words}.", "length" if h % 7 == 0 else "stop"


def user_reply(messages: list[dict]) -> tuple[str, str]:
    """A follow-up question; about one in nine is empty."""
    h = hashed(messages)
    return ("" if h % 9 == 0 else f"Tell me more about {VOCAB[h % len(VOCAB)]}?"), "stop"


def revision_step_reply(messages: list[dict]) -> tuple[str, str]:
    """Critiques, and revisions of the first answer: about one in four is identical, one in four empty."""
    if messages[-1]["content"].startswith("Critique request:"):
        return "The answer is vague; name the steps.", "stop"
    original = next(m["content"] for m in messages if m["role"] == "assistant")
    h = hashed(messages) % 4
    return {0: original, 1: ""}.get(h, f"Step by step: {original}"), "stop"


class ScriptedTeacher:
    """An OpenAI-compatible chat endpoint on 127.0.0.1. `fault_every`: calls 1, 1+k, 1+2k... get a 500, a
    429 or a garbage 200 body in turn (the content of the retried call is unchanged). `delay`: seconds per call."""

    KINDS = ("server_error", "rate_limit", "malformed")

    def __init__(self, fault_every: int = 0, delay: float = 0.0):
        self.fault_every, self.delay = fault_every, delay
        self.lock = threading.Lock()
        self.calls = 0
        self.injected: Counter = Counter()
        self.served: Counter = Counter()
        self.server = StubServer(self.reply)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def endpoint(self) -> dict[str, Any]:
        return {
            "model": "scripted-teacher",
            "backend": "openai",
            "base_url": self.base_url,
            "concurrency": 4,
            "max_retries": 6,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
        }

    def fault(self) -> str | None:
        with self.lock:
            index, self.calls = self.calls, self.calls + 1
            if not self.fault_every or index % self.fault_every != 1:
                return None
            kind = self.KINDS[sum(self.injected.values()) % len(self.KINDS)]
            self.injected[kind] += 1
            return kind

    def answer(self, body: dict) -> tuple[str, str]:
        messages = body["messages"]
        if messages[0]["role"] == "system" and messages[0]["content"].startswith("You play the user"):
            kind, reply = "user", user_reply(messages)
        elif messages[-1]["content"].startswith(("Critique request:", "Revision request:")):
            kind, reply = "revisions", revision_step_reply(messages)
        elif "Continue the list with" in messages[-1]["content"]:
            kind, reply = "instructions", instruction_reply(body["seed"])
        else:
            kind, reply = "assistant", answer_reply(messages)
        with self.lock:
            self.served[kind] += 1
        return reply

    def reply(self, request: Request) -> Reply:
        body = request.json()
        time.sleep(self.delay)
        kind = self.fault()
        if kind == "server_error":
            return 500, {"error": {"message": "teacher exploded"}}
        if kind == "rate_limit":
            return 429, {"error": {"message": "slow down"}}
        if kind == "malformed":
            return 200, {"object": "garbage"}
        text, finish_reason = self.answer(body)
        message = {"role": "assistant", "content": text}
        return 200, {"choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]}

    def __enter__(self) -> ScriptedTeacher:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.close()


def distill_section(endpoint: dict[str, Any], seed_tasks: Path, **extra: Any) -> dict[str, Any]:
    section = {
        "teacher": endpoint,
        "instructions": {
            "seed_tasks": str(seed_tasks),
            "target": 12,
            "requests_per_round": 3,
            "sampling": {"max_new_tokens": 200, "temperature": 0.7},
        },
        "dialogues": {
            "sampling": {"max_new_tokens": 64},
            "system_prompt": "You are a helpful assistant.",
            "turn_weights": [0.3, 0.3, 0.4],
        },
        "test_split_size": 0.25,
        "chunk_size": 4,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            section[key] = {**section[key], **value}
        else:
            section[key] = value
    return section


def write_distill_recipe(
    directory: Path, model: Path | str, distill: dict[str, Any], **sections: Any
) -> Path:
    recipe = {
        "output_dir": str(directory / "out"),
        "model": {"model_name_or_path": str(model)},
        "distill": distill,
        **sections,
    }
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
