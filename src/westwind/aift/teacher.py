"""Models asked request by request (the distill stage's teacher, user simulator and quality judge; AIFT's
Constitutional-AI answerer and reviser): requests in, each request's result out, in request order. Backends
(westwind.generation) and judges (westwind.judges) are built on first use, so a fully journaled rerun loads no
model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from westwind.aift.config import EndpointConfig, JudgeConfig
from westwind.endpoints import ResolvedModel, resolve_model
from westwind.generation import Backend, ChatRequest, Result, build_backend
from westwind.judges import Judge, JudgeItem, Judgment, make_judge

T = TypeVar("T")


def complete(backend: Backend, requests: list[ChatRequest]) -> list[Result]:
    """Every request's Result (completions, or `error` once retries are spent), in the order given."""
    results = {id(result.request): result for result in backend.run(requests)}
    return [results[id(request)] for request in requests]


def reply(result: Result) -> tuple[str, str | None] | None:
    """The first completion's (text, finish_reason), or None when the request failed."""
    if result.error is not None or not result.completions:
        return None
    completion = result.completions[0]
    return completion.text, completion.finish_reason


class Lazy(Generic[T]):
    """A model built on first use and closed by `close` (if it was ever built)."""

    def __init__(self, build: Callable[[], T]):
        self.build, self.model = build, None

    def get(self) -> T:
        if self.model is None:
            self.model = self.build()
        return self.model

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None


class LazyTeacher(Lazy[Backend]):
    def __init__(self, endpoint: EndpointConfig, recipe: Any, seed: int, model: ResolvedModel | None = None):
        """`model`: the endpoint's model, when already resolved (else it is resolved on first use)."""
        super().__init__(lambda: build_backend(endpoint, model or resolve_model(endpoint, recipe), seed))

    def complete(self, requests: list[ChatRequest]) -> list[Result]:
        return complete(self.get(), requests) if requests else []


class LazyJudge(Lazy[Judge]):
    def __init__(self, config: JudgeConfig, recipe: Any, seed: int):
        super().__init__(lambda: make_judge(config, _judge_model(config, recipe), seed))

    def rate(self, items: list[JudgeItem]) -> list[Judgment]:
        """Each item's Judgment, in the order given."""
        if not items:
            return []
        judgments = {id(judgment.item): judgment for judgment in self.get().judge(items)}
        return [judgments[id(item)] for item in items]


def _judge_model(config: JudgeConfig, recipe: Any) -> ResolvedModel | None:
    return None if config.kind == "verifier" else resolve_model(config, recipe)
