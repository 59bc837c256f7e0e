"""The recipe's `eval:` section: compare a model with a baseline on held-out prompts."""

from __future__ import annotations

from dataclasses import dataclass

from trl.scripts.utils import DatasetConfig

from westwind.aift.config import JudgeConfig, PromptsConfig, SamplingConfig, key


@dataclass
class EvalConfig:
    """
    eval:
      prompts: {datasets: [{path: data/demo/eval.jsonl}], column: prompt, max_prompts: 200}
      model: "@dpo"          # the candidate (any path, hub id, @sft/@dpo/@base)
      baseline: "@sft"
      extra_baselines: ["@base"]   # each also compared with the model (paired test; verifier only)
      sampling: {max_new_tokens: 64}   # greedy unless temperature is set
      judge: ...             # default: the aift judge; win rate (a), 1-10 scores (b) for LLM judges
      verifier: pkg.mod:fn   # accuracy (c); default: the judge's function when the judge is a verifier
    """

    prompts: PromptsConfig = key(help="held-out prompts (same keys as aift.prompts)")
    sampling: SamplingConfig = key(help="answer sampling; greedy unless temperature is set")
    model: str = key("@dpo", help="the candidate: a path, hub id, or @sft/@dpo/@base")
    baseline: str = key("@sft", help="what the candidate is compared with")
    extra_baselines: list[str] = key(
        factory=list, help="more models the candidate is compared with (answers, accuracy, paired test)"
    )
    judge: JudgeConfig | None = key(
        None, help="default: the aift judge; win rate, and 1-10 scores for LLM judges"
    )
    verifier: str | None = key(
        None, help="module:function for accuracy; default: a verifier judge's function"
    )
    reference_column: str = key("reference", help="the prompts' column holding the verifier's reference")
    single_answer_scores: bool = key(True, help="MT-Bench-style 1-10 per answer, when the judge is an LLM")
    batch_size: int = key(16, help="sequences per generation batch")
    overlap_datasets: list[DatasetConfig] = key(
        factory=list,
        help="training prompts to check the eval prompts against (default: sft and aift prompts)",
    )
    overlap_ngram: int = key(13, help="shared word n-gram length that counts as overlap")

    def __post_init__(self) -> None:
        if self.verifier is not None and self.verifier.count(":") != 1:
            raise ValueError("verifier must look like `package.module:function`")
        if self.batch_size < 1 or self.overlap_ngram < 1:
            raise ValueError("batch_size and overlap_ngram must be at least 1")
        compared = [self.model, self.baseline, *self.extra_baselines]
        if len(set(compared)) != len(compared):
            raise ValueError(f"model, baseline and extra_baselines must all differ; got {compared}")
