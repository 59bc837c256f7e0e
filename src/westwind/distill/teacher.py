"""The one place the distill stage calls a generation backend (westwind.generation) or an AIFT judge
(westwind.judges): requests in, each request's result out, in request order. Backends are built on first use,
so a fully journaled rerun loads no model."""

from __future__ import annotations

from typing import Any

from westwind.aift_config import EndpointConfig
from westwind.generation import Backend, ChatRequest, Result, build_backend
from westwind.judges import Judge, JudgeItem, Judgment, make_judge


def complete(backend: Backend, requests: list[ChatRequest]) -> list[Result]:
    """Every request's Result (completions, or `error` once retries are spent), in the order given."""
    results: dict[int, Result] = {}
    backend.run(requests, lambda result: results.__setitem__(id(result.request), result))
    return [results[id(request)] for request in requests]


def reply(result: Result) -> tuple[str, str | None] | None:
    """The first completion's (text, finish_reason), or None when the request failed."""
    if result.error is not None or not result.completions:
        return None
    completion = result.completions[0]
    return completion.text, completion.finish_reason


class LazyTeacher:
    """A backend built on the first request and closed by `close` (if it was ever built)."""

    def __init__(self, endpoint: EndpointConfig, recipe: Any, seed: int):
        self.endpoint, self.recipe, self.seed = endpoint, recipe, seed
        self.backend: Backend | None = None

    def complete(self, requests: list[ChatRequest]) -> list[Result]:
        if not requests:
            return []
        if self.backend is None:
            self.backend = build_backend(self.endpoint, self.recipe, self.seed)
        return complete(self.backend, requests)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None


class LazyJudge:
    """An AIFT judge built on the first item and closed by `close` (if it was ever built)."""

    def __init__(self, config: Any, recipe: Any, seed: int):
        self.config, self.recipe, self.seed = config, recipe, seed
        self.judge: Judge | None = None

    def rate(self, items: list[JudgeItem]) -> list[Judgment]:
        """Each item's Judgment, in the order given."""
        if not items:
            return []
        if self.judge is None:
            self.judge = make_judge(self.config, self.recipe, self.seed)
        judgments: dict[int, Judgment] = {}
        self.judge.judge(items, lambda judgment: judgments.__setitem__(id(judgment.item), judgment))
        return [judgments[id(item)] for item in items]

    def close(self) -> None:
        if self.judge is not None:
            self.judge.close()
            self.judge = None
