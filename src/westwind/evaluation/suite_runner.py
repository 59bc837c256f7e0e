"""What the suites share: journals keyed on what produced each record, answering with the evaluated model,
asking the judge with bounded re-asks. Both journals are rewritten in question order at the end, so a resumed
run leaves the same files as a clean one."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from westwind.aift.config import GeneratorConfig, SamplingConfig
from westwind.evaluation.suites import SuiteJudgeConfig, SuitesConfig
from westwind.io import Journal, atomic_write_jsonl, digest, read_jsonl

# ---------------------------------------------------------------- keyed journals


class KeyedJournal:
    """A suite's answers or judgments: each record carries the `key` of what produced it (model or judge
    identity, sampling, the exact input); a record is reused only under the same key. `finish` rewrites the
    file with the records asked for, in their order, so a resumed run leaves the same file as a clean one."""

    def __init__(self, path: Path):
        self.path = path
        self.records = {r["key"]: r for r in read_jsonl(path) if isinstance(r, dict) and "key" in r}
        self.journal: Journal | None = None

    def get(self, record_key: str) -> dict | None:
        return self.records.get(record_key)

    def add(self, record: dict) -> None:
        if self.journal is None:
            self.journal = Journal(self.path)
        self.journal.append(record)
        self.records[record["key"]] = record

    def finish(self, keys: list[str]) -> list[dict]:
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        ordered = [self.records[k] for k in keys if k in self.records]
        atomic_write_jsonl(self.path, ordered)
        return ordered


@dataclass
class AnswerRequest:
    key: str
    messages: list[dict[str, str]]
    temperature: float
    seed: int
    fields: dict[str, Any]  # stored with the answer (question id, turn, ...)


class Answerer:
    """The model under evaluation as a generator endpoint (its chat template, the recipe's model options for an
    @reference). Its fingerprint keys its answers; the model loads on the first missing answer, once."""

    def __init__(self, recipe, model: str, suites: SuitesConfig, max_new_tokens: int):
        from westwind.endpoints import resolve_model

        self.max_new_tokens = max_new_tokens
        self.generator = GeneratorConfig(
            model=model, sampling=SamplingConfig(max_new_tokens=max_new_tokens), batch_size=suites.batch_size
        )
        self.resolved = resolve_model(self.generator, recipe)
        self.backend = None

    def key(self, request: AnswerRequest) -> str:
        """What an answer depends on: the model's content and load options, sampling, the conversation."""
        fields = [self.resolved.fingerprint, self.max_new_tokens, request.temperature, request.seed]
        return digest([*fields, request.fields, request.messages], 24)  # fields: two equal questions stay two

    def generate(self, journal: KeyedJournal, requests: list[AnswerRequest]) -> dict[str, str]:
        """Answers for `requests` (key -> text): journaled ones reused, the rest generated and journaled as
        they finish."""
        from westwind.generation import ChatRequest, build_backend

        missing = {r.key: r for r in requests if journal.get(r.key) is None}
        if missing and self.backend is None:
            self.backend = build_backend(self.generator, self.resolved)
        chat_requests = [
            ChatRequest(
                key,
                r.messages,
                SamplingConfig(max_new_tokens=self.max_new_tokens, temperature=r.temperature),
                seed=r.seed,
            )
            for key, r in missing.items()
        ]
        for result in self.backend.run(chat_requests) if missing else []:
            if result.error:
                raise RuntimeError(f"generation failed: {result.error}")
            request = missing[result.request.key]
            journal.add({"key": request.key, **request.fields, "answer": result.completions[0].text.strip()})
        return {r.key: journal.get(r.key)["answer"] for r in requests}

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None


# ---------------------------------------------------------------- judging


@dataclass
class JudgeRequest:
    key: str
    messages: list[dict[str, str]]
    fields: dict[str, Any]


def judge_identity(recipe, judge: SuiteJudgeConfig, max_new_tokens: int, temperature: float) -> str:
    from westwind.endpoints import resolve_model

    return digest([resolve_model(judge, recipe).identity, max_new_tokens, temperature, judge.max_reasks], 24)


def judge_all(
    recipe,
    judge: SuiteJudgeConfig,
    sampling: SamplingConfig,
    journal: KeyedJournal,
    requests: list[JudgeRequest],
    parse: Callable[[str], Any],
) -> dict[str, int]:
    """Ask the judge about every request not journaled yet; unreadable replies are re-asked (judges.Asker) up
    to max_reasks, then journaled with value None. A request that failed for good (endpoint errors past the
    retries) is not journaled: it is counted here and retried by the next run."""
    from westwind.endpoints import resolve_model
    from westwind.generation import build_backend
    from westwind.judges import Asker

    missing = {r.key: r for r in requests if journal.get(r.key) is None}
    counts = {"asked": len(missing), "errors": 0}
    if not missing:
        return counts
    replies: dict[Hashable, str] = {}

    def read(request_key: Hashable, reply: str) -> Any:
        replies[request_key] = reply
        return parse(reply)

    backend = build_backend(judge, resolve_model(judge, recipe))
    try:
        asker = Asker(backend, sampling, read, judge.max_reasks)
        for request_key, answer in asker.ask({k: r.messages for k, r in missing.items()}):
            if answer.error is not None:
                counts["errors"] += 1
                continue
            journal.add(
                {
                    "key": request_key,
                    **missing[request_key].fields,
                    "value": answer.value,
                    "parse_failures": sum(answer.parse_failures.values()),
                    "judgment": replies.get(request_key, ""),
                    "messages": missing[request_key].messages,
                }
            )
    finally:
        backend.close()
    return counts


def judge_sampling(max_new_tokens: int, temperature: float = 0.0) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature)


def judge_summary(judge: SuiteJudgeConfig) -> dict[str, Any]:
    return {name: getattr(judge, name) for name in ("backend", "model", "base_url", "max_reasks")}
