"""The recipe's `aift:` section: prompts -> candidates from a pool of generators -> teacher ratings -> pairs.

Validated by `westwind.schema.build(AIFTConfig, raw, "aift")`: unknown keys, bad enums and missing required
keys (e.g. `sampling.max_new_tokens`) are reported with their key path. See docs/aift.md for an example.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from trl.scripts.utils import DatasetConfig

from westwind.chat_templates import TEMPLATES, is_jinja
from westwind.principles import check_weights

Backend = Literal["transformers", "vllm", "openai"]
JudgeKind = Literal["ultrafeedback", "pairwise", "reward_model", "verifier"]
Aspect = Literal["instruction_following", "honesty", "truthfulness", "helpfulness"]
ASPECTS: tuple[str, ...] = ("instruction_following", "honesty", "truthfulness", "helpfulness")


@dataclass
class SamplingConfig:
    """Sampling for one generator or an LLM judge. `max_new_tokens` has no default on purpose."""

    max_new_tokens: int
    temperature: float | None = None  # None: 1.0 for generators; judges always use 0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")


@dataclass
class TransformersOptions:
    """backend: transformers (local batched generation)."""

    batch_size: int = 8
    device: str | None = None  # default: cuda when available, else cpu

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


@dataclass
class VLLMOptions:
    """backend: vllm (offline vLLM in this process)."""

    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9

    def __post_init__(self) -> None:
        if self.tensor_parallel_size < 1:
            raise ValueError("tensor_parallel_size must be at least 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")


@dataclass
class OpenAIOptions:
    """backend: openai (any OpenAI-compatible endpoint)."""

    base_url: str | None = None
    api_key_env: str | None = None  # the env var holding the key; the key itself never enters a recipe
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 8
    backoff_initial: float = 1.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_retries < 0 or self.timeout <= 0:
            raise ValueError("max_retries must be >= 0 and timeout > 0")


BACKEND_OPTIONS: dict[str, type] = {
    "transformers": TransformersOptions,
    "vllm": VLLMOptions,
    "openai": OpenAIOptions,
}
BackendOptions = TransformersOptions | VLLMOptions | OpenAIOptions


def backend_of_key(name: str) -> str | None:
    return next(
        (b for b, cls in BACKEND_OPTIONS.items() if name in {f.name for f in dataclasses.fields(cls)}), None
    )


@dataclass(kw_only=True)
class EndpointConfig:
    """Where a model runs. The backend-specific keys (None: not given) belong to exactly one backend each;
    a key of another backend is an error, like any unknown key."""

    model: str  # a local path, a hub id, @sft or @base; for openai: the served model name
    backend: Backend = "transformers"
    chat_template: str | None = None  # @sft/@base default to the recipe's model.chat_template
    dtype: str | None = None  # default: the recipe's model.dtype for @sft/@base, else "auto"
    revision: str | None = None  # a hub model's revision (default: main; @base: model.model_revision)
    # transformers
    batch_size: int | None = None
    device: str | None = None
    # vllm
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    # openai
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    backoff_initial: float | None = None
    backoff_max: float | None = None

    def __post_init__(self) -> None:
        template = self.chat_template
        if template is not None and not is_jinja(template) and template not in TEMPLATES:
            raise ValueError(f"unknown chat_template {template!r}; shipped: {', '.join(sorted(TEMPLATES))}")
        self.options()  # validates the backend's own keys and rejects the other backends' keys

    def options(self) -> BackendOptions:
        """This backend's settings: the keys given, defaults for the rest."""
        cls = BACKEND_OPTIONS[self.backend]
        own = {f.name for f in dataclasses.fields(cls)}
        for name in sorted(
            n for o in BACKEND_OPTIONS.values() for n in (f.name for f in dataclasses.fields(o))
        ):
            if name not in own and getattr(self, name) is not None:
                raise ValueError(
                    f"`{name}` is a key of backend {backend_of_key(name)}; backend {self.backend} does not take it"
                )
        return cls(**{name: getattr(self, name) for name in own if getattr(self, name) is not None})


@dataclass(kw_only=True)
class GeneratorConfig(EndpointConfig):
    """One entry of the candidate pool: `n` samples per prompt from `model`."""

    sampling: SamplingConfig
    n: int = 1
    # UltraFeedback-style: a sampled principle system prompt per completion. true: UltraFeedback's weights
    # (see westwind.principles); or a mapping principle -> weight, e.g. {helpfulness: 3, honesty: 1}.
    principles: bool | dict[str, float] = False
    name: str | None = None  # the label recorded with each completion (default: the model)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if isinstance(self.principles, dict):
            check_weights(self.principles)
        if self.n > 1 and self.sampling.temperature == 0:
            raise ValueError("n > 1 at temperature 0 gives n identical completions; raise the temperature")


@dataclass(kw_only=True)
class JudgeConfig(EndpointConfig):
    """The teacher. LLM judges (ultrafeedback, pairwise) run at temperature 0 on any backend."""

    kind: JudgeKind
    model: str | None = None
    sampling: SamplingConfig | None = None  # LLM judges: max_new_tokens for the rating reply
    aspects: list[Aspect] = field(default_factory=lambda: list(ASPECTS))
    max_reasks: int = 2  # re-asks after an unparsable reply
    function: str | None = None  # verifier: "module:function(prompt, completion, reference) -> float"
    # The prompt dataset's column holding a per-prompt reference: the verifier's answer key, and the
    # ultrafeedback judge's world knowledge for truthfulness (used when the column exists).
    reference_column: str = "reference"
    texts_per_request: int = 4  # ultrafeedback: candidates rated per request (larger pools are chunked)

    def __post_init__(self) -> None:
        super().__post_init__()
        needs = {
            "ultrafeedback": "model",
            "pairwise": "model",
            "reward_model": "model",
            "verifier": "function",
        }
        if getattr(self, needs[self.kind]) is None:
            raise ValueError(f"kind {self.kind} needs `{needs[self.kind]}`")
        if self.kind in ("ultrafeedback", "pairwise"):
            if self.sampling is None:
                raise ValueError(f"kind {self.kind} needs `sampling` with max_new_tokens")
            if self.sampling.temperature not in (None, 0, 0.0):
                raise ValueError("LLM judges run at temperature 0; remove sampling.temperature")
        if self.kind == "reward_model" and self.backend != "transformers":
            raise ValueError("a reward_model judge runs locally: backend must be transformers")
        if self.function is not None and self.function.count(":") != 1:
            raise ValueError("function must look like `package.module:function`")
        if not self.aspects or self.max_reasks < 0:
            raise ValueError("aspects must not be empty and max_reasks must be >= 0")
        duplicates = sorted({a for a in self.aspects if self.aspects.count(a) > 1})
        if duplicates:
            raise ValueError(f"aspects lists {', '.join(duplicates)} more than once")
        if self.texts_per_request < 2:
            raise ValueError("texts_per_request must be at least 2")


@dataclass
class DecontaminationConfig:
    """Drop prompts sharing a word n-gram with an eval set (whole-prompt match when shorter than n)."""

    datasets: list[DatasetConfig]
    column: str = "prompt"
    ngram: int = 13

    def __post_init__(self) -> None:
        if self.ngram < 1 or not self.datasets:
            raise ValueError("decontaminate needs datasets and ngram >= 1")


@dataclass
class PromptsConfig:
    datasets: list[DatasetConfig]
    column: str = "prompt"  # a string, or a messages list (turns after the last user turn are dropped)
    max_prompts: int | None = None
    decontaminate: DecontaminationConfig | None = None

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("datasets must not be empty")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError("max_prompts must be at least 1")


@dataclass
class BinarizeConfig:
    policy: Literal["best_vs_random", "best_vs_worst"] = "best_vs_random"
    drop_ties: bool = True  # False: keep a pair even when no candidate scores strictly lower
    min_margin: float = 0.0
    min_chosen_score: float | None = None


@dataclass
class AIFTConfig:
    prompts: PromptsConfig
    generators: list[GeneratorConfig]
    judge: JudgeConfig
    binarize: BinarizeConfig = field(default_factory=BinarizeConfig)
    seed: int = 42
    test_split_size: float | None = None
    chunk_size: int = 64  # prompts judged (and persisted) per unit of work
    push_to_hub: str | None = None  # a dataset repo id

    def __post_init__(self) -> None:
        if not self.generators:
            raise ValueError("generators must list at least one model")
        if self.test_split_size is not None and not 0 < self.test_split_size < 1:
            raise ValueError("test_split_size must be a fraction in (0, 1)")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")


def fingerprint_fields(config: object, skip: tuple[str, ...] = ()) -> dict:
    """The fields that change what a generator/judge produces (not how fast or where it runs)."""
    ignored = {
        "batch_size",
        "device",
        "concurrency",
        "timeout",
        "max_retries",
        "backoff_initial",
        "backoff_max",
    }
    ignored |= {"gpu_memory_utilization", "tensor_parallel_size", "base_url", "api_key_env", *skip}
    ignored |= {"model"}  # the model enters fingerprints as its content identity (westwind.endpoints)
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in ignored}
