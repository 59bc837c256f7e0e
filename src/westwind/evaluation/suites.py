"""The recipe's `eval.suites`: published evaluation suites, MT-Bench (FastChat's llm_judge) and Arena-Hard-Auto
v0.1, run as their own code runs them (evaluation.mt_bench, evaluation.arena_hard) against any judge endpoint.
Each suite writes `<eval>/<suite>/`: answers.jsonl, judgments.jsonl and scores.json. See docs/eval.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from westwind.aift.config import EndpointConfig, key

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
