"""Published evaluation suites (`eval.suites`): MT-Bench (FastChat's llm_judge) and Arena-Hard-Auto v0.1, run
as their own code runs them, against any judge endpoint. Each suite writes `<eval>/<suite>/`: answers.jsonl,
judgments.jsonl (both journals keyed on what produced each record, rewritten in order at the end) and
scores.json. See docs/eval.md.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from westwind.aift.config import EndpointConfig, GeneratorConfig, SamplingConfig, key
from westwind.io import Journal, atomic_write_jsonl, digest, read_jsonl

SUITES = ("mt_bench", "arena_hard")

# FastChat fastchat/llm_judge/common.py `temperature_config` (commit 0e6d3e4b), used by gen_model_answer.py per
# question category; a category not in it gets 0.7; 0.0 means greedy decoding.
MT_BENCH_TEMPERATURES: dict[str, float] = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
MT_BENCH_DEFAULT_TEMPERATURE = 0.7
MT_BENCH_SOURCE = "lm-sys/FastChat fastchat/llm_judge/common.py temperature_config"


@dataclass(kw_only=True)
class SuiteJudgeConfig(EndpointConfig):
    """The suites' judge: any endpoint AIFT's judges take (backend, base_url, api_key_env, concurrency,
    retries...). It runs at temperature 0 with the suite's published reply length."""

    model: str = key(help="the judge model; for openai the served name (the report names it)")
    max_reasks: int = key(2, help="re-asks after a reply without a readable rating or verdict")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_reasks < 0:
            raise ValueError("max_reasks must be >= 0")


@dataclass
class MTBenchConfig:
    questions: str = key(help="FastChat question.jsonl (question_id, category, turns)")
    judge_prompts: str = key(
        help="FastChat judge_prompts.jsonl (single-v1, single-math-v1, multi-turn forms)"
    )
    reference_answers: str | None = key(
        None, help="FastChat reference_answer/<judge>.jsonl for math, reasoning and coding"
    )
    max_new_tokens: int = key(1024, help="answer tokens per turn (FastChat's default: 1024)")
    judge_max_new_tokens: int = key(2048, help="judge reply tokens (FastChat: 2048)")
    temperatures: dict[str, float] = key(
        factory=lambda: dict(MT_BENCH_TEMPERATURES),
        help=f"answer temperature per category (default: {MT_BENCH_SOURCE}; others 0.7)",
    )
    max_questions: int | None = key(None, help="the first N questions only (a smoke run)")


@dataclass
class ArenaHardConfig:
    questions: str = key(help="Arena-Hard question.jsonl (uid, category, prompt)")
    baseline_answers: str = key(help="the baseline's model_answer/*.jsonl, e.g. gpt-4-0314.jsonl")
    judge_config: str = key(help="arena-hard-v0.1.yaml: temperature, max_tokens, regex_patterns, prompt")
    judge_prompts: str = key(help="judge_utils.py: OG_ARENA_HARD_PROMPT and JUDGE_SETTINGS")
    max_new_tokens: int = key(4096, help="answer tokens (arena-hard's gen_answer default: 4096)")
    bootstrap_rounds: int = key(100, help="bootstrap resamples of the battles (arena-hard: 100)")
    max_questions: int | None = key(None, help="the first N questions only (a smoke run)")


@dataclass
class SuitesConfig:
    """
    suites:
      enabled: true          # false: only `westwind eval RECIPE --suite NAME` runs them
      judge: {backend: openai, model: gpt-4, api_key_env: OPENAI_API_KEY}
      mt_bench: {questions: ..., judge_prompts: ..., reference_answers: ...}
      arena_hard: {questions: ..., baseline_answers: ..., judge_config: ..., judge_prompts: ...}
    """

    judge: SuiteJudgeConfig = key(help="the judge endpoint (same keys as aift.judge)")
    enabled: bool = key(True, help="run the suites with the eval stage (else only with --suite NAME)")
    mt_bench: MTBenchConfig | None = key(None, help="MT-Bench (FastChat llm_judge, single-answer grading)")
    arena_hard: ArenaHardConfig | None = key(None, help="Arena-Hard-Auto v0.1 (pairwise vs a baseline)")
    batch_size: int = key(8, help="answers generated per batch")

    def __post_init__(self) -> None:
        if self.mt_bench is None and self.arena_hard is None:
            raise ValueError("suites needs mt_bench and/or arena_hard")


def selected_suites(config: SuitesConfig | None, only: str | None) -> list[str]:
    """The suites to run: `only` when named (`--suite`), else every configured one when enabled."""
    if config is None:
        return []
    configured = [name for name in SUITES if getattr(config, name) is not None]
    if only is not None:
        return [only] if only in configured else []
    return configured if config.enabled else []


def run_suites(recipe, config: SuitesConfig, model: str, eval_dir: Path, names: list[str]) -> dict:
    from westwind.evaluation import arena_hard, mt_bench  # each loads a model: only when a suite runs

    runners = {"mt_bench": mt_bench.run, "arena_hard": arena_hard.run}
    return {name: runners[name](recipe, config, model, eval_dir / name) for name in names}


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


def answerer(recipe, model: str, suites: SuitesConfig, max_new_tokens: int):
    """The model under evaluation as a generator endpoint (its chat template, the recipe's model options)
    and its fingerprint, which keys its answers."""
    from westwind.endpoints import resolve_model

    generator = GeneratorConfig(
        model=model, sampling=SamplingConfig(max_new_tokens=max_new_tokens), batch_size=suites.batch_size
    )
    return generator, resolve_model(generator, recipe)


def answer_key(fingerprint: str, max_new_tokens: int, request: AnswerRequest) -> str:
    return digest([fingerprint, max_new_tokens, request.temperature, request.seed, request.messages], 24)


def generate(
    generator: GeneratorConfig, resolved, journal: KeyedJournal, requests: list[AnswerRequest]
) -> dict[str, str]:
    """Answers for `requests` (key -> text): journaled ones reused, the rest generated and journaled as they
    finish. The model loads only when something is missing."""
    from westwind.generation import ChatRequest, build_backend

    missing = [r for r in requests if journal.get(r.key) is None]
    if missing:
        backend = build_backend(generator, resolved)
        max_new_tokens = generator.sampling.max_new_tokens
        by_key = {r.key: r for r in missing}
        chat_requests = [
            ChatRequest(
                r.key,
                r.messages,
                SamplingConfig(max_new_tokens=max_new_tokens, temperature=r.temperature),
                seed=r.seed,
            )
            for r in missing
        ]
        try:
            for result in backend.run(chat_requests):
                if result.error:
                    raise RuntimeError(f"generation failed: {result.error}")
                request = by_key[result.request.key]
                text = result.completions[0].text.strip()
                journal.add({"key": request.key, **request.fields, "answer": text})
        finally:
            backend.close()
    return {r.key: journal.get(r.key)["answer"] for r in requests}


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
