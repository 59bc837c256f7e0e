"""The teacher: rate every candidate of a prompt. One module per kind: UltraFeedback (aspects rated 1-5),
pairwise A/B/tie, a reward model, a verifier callable; LLM judges run on any generation backend at
temperature 0. `make_judge` builds one from a judge config and an already resolved model."""

from __future__ import annotations

from westwind.aift.config import JudgeConfig
from westwind.endpoints import ResolvedModel
from westwind.generation import build_backend
from westwind.judges.asking import Answer, Asker
from westwind.judges.base import Judge, JudgeItem, Judgment, ParseFailure, Rating, judge_sampling
from westwind.judges.pairwise import PairwiseJudge
from westwind.judges.reward_model import RewardModelJudge
from westwind.judges.ultrafeedback import UltraFeedbackJudge
from westwind.judges.verifier import VerifierJudge

__all__ = [
    "Answer",
    "Asker",
    "Judge",
    "JudgeItem",
    "Judgment",
    "PairwiseJudge",
    "ParseFailure",
    "Rating",
    "RewardModelJudge",
    "UltraFeedbackJudge",
    "VerifierJudge",
    "judge_sampling",
    "make_judge",
]


def make_judge(config: JudgeConfig, model: ResolvedModel | None = None, seed: int = 0) -> Judge:
    """The judge for `config`; `model` is its resolved model (westwind.endpoints.resolve_model), unused by
    verifiers."""
    if config.kind == "verifier":
        return VerifierJudge(config.function)
    if config.kind == "reward_model":
        options = config.options()
        return RewardModelJudge(model.path, model.model_args, options.device, options.batch_size)
    backend = build_backend(config, model, seed)
    if config.kind == "pairwise":
        return PairwiseJudge(backend, config.sampling, config.max_reasks)
    return UltraFeedbackJudge(
        backend,
        config.sampling,
        config.aspects,
        config.max_reasks,
        seed,
        config.texts_per_request,
        config.order_check_share,
    )
