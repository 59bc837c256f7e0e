"""The recipe's `eval:` section: compare a model with a baseline on held-out prompts."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl.scripts.utils import DatasetConfig

from westwind.aift_config import JudgeConfig, PromptsConfig, SamplingConfig


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
    """

    prompts: PromptsConfig
    sampling: SamplingConfig
    model: str = "@dpo"
    baseline: str = "@sft"
    judge: JudgeConfig | None = None
    verifier: str | None = None
    reference_column: str = "reference"
    single_answer_scores: bool = True  # MT-Bench-style 1-10 per answer, when the judge is an LLM
    batch_size: int = 16
    # Training prompts to check the eval prompts against (default: the recipe's sft and aift prompts).
    overlap_datasets: list[DatasetConfig] = field(default_factory=list)
    overlap_ngram: int = 13

    def __post_init__(self) -> None:
        if self.verifier is not None and self.verifier.count(":") != 1:
            raise ValueError("verifier must look like `package.module:function`")
        if self.batch_size < 1 or self.overlap_ngram < 1:
            raise ValueError("batch_size and overlap_ngram must be at least 1")
