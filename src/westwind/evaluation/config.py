"""The recipe's `eval:` section: compare a model with a baseline on held-out prompts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trl.scripts.utils import DatasetConfig

from westwind.aift.config import JudgeConfig, PromptsConfig, SamplingConfig, key
from westwind.evaluation.suites import SuitesConfig


@dataclass
class EvalConfig:
    """
    eval:
      prompts: {datasets: [{path: data/demo/eval.jsonl}], column: prompt, max_prompts: 200}
      model: "@dpo"          # the candidate (any path, hub id, @sft/@dpo/@base)
      baseline: "@sft"
      sampling: {max_new_tokens: 64}   # greedy unless temperature is set
      judge: ...             # default: the aift judge; win rate (a), 1-10 scores (b) for LLM judges
      verifier: pkg.mod:fn   # accuracy (c); default: the judge's function when the judge is a verifier
      suites: ...            # MT-Bench, Arena-Hard (westwind.evaluation.suites); `--suite NAME` runs one alone
    """

    prompts: PromptsConfig | None = key(
        None, help="held-out prompts (same keys as aift.prompts); unset: only the suites run"
    )
    sampling: SamplingConfig | None = key(
        None,
        help="answer sampling for the comparison (required with prompts); greedy unless temperature is set",
    )
    model: str = key("@dpo", help="the candidate: a path, hub id, or @sft/@dpo/@base")
    baseline: str = key("@sft", help="what the candidate is compared with")
    judge: JudgeConfig | None = key(
        None, help="default: the aift judge; win rate, and 1-10 scores for LLM judges"
    )
    verifier: str | None = key(
        None, help="module:function for accuracy; default: a verifier judge's function"
    )
    reference_column: str = key("reference", help="the prompts' column holding the verifier's reference")
    single_answer_scores: bool = key(
        True, help="1-10 per answer under westwind's own prompt (not MT-Bench: see suites), LLM judges"
    )
    batch_size: int = key(16, help="sequences per generation batch")
    overlap_datasets: list[DatasetConfig] = key(
        factory=list,
        help="training prompts to check the eval prompts against (default: sft and aift prompts)",
    )
    overlap_ngram: int = key(13, help="shared word n-gram length that counts as overlap")
    suites: SuitesConfig | None = key(None, help="published suites: mt_bench, arena_hard, and their judge")
    suite: Literal["mt_bench", "arena_hard"] | None = key(
        None, help="run only this suite (mt_bench | arena_hard), not the comparison"
    )

    def __post_init__(self) -> None:
        if self.verifier is not None and self.verifier.count(":") != 1:
            raise ValueError("verifier must look like `package.module:function`")
        if self.batch_size < 1 or self.overlap_ngram < 1:
            raise ValueError("batch_size and overlap_ngram must be at least 1")
        if self.suite is not None and (self.suites is None or getattr(self.suites, self.suite) is None):
            raise ValueError(f"suite {self.suite} is not configured under eval.suites")
        if self.prompts is not None and self.sampling is None:
            raise ValueError("prompts need sampling (at least max_new_tokens)")
        if self.suite is None and self.prompts is None and self.suites is None:
            raise ValueError("eval needs prompts (the comparison) and/or suites")
