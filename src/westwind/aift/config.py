"""The recipe's `aift:` section: prompts -> candidates from a pool of generators -> teacher ratings -> pairs.

Validated by `westwind.recipe.schema.build(AIFTConfig, raw, "aift")`: unknown keys, bad enums and missing required
keys (e.g. `sampling.max_new_tokens`) are reported with their key path. See docs/aift.md for an example.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from trl.scripts.utils import DatasetConfig

from westwind.aift.principles import principle_mix
from westwind.training.chat_templates import TEMPLATES, is_jinja

Backend = Literal["transformers", "vllm", "openai"]
JudgeKind = Literal["ultrafeedback", "pairwise", "reward_model", "verifier"]
Aspect = Literal["instruction_following", "honesty", "truthfulness", "helpfulness"]
ASPECTS: tuple[str, ...] = ("instruction_following", "honesty", "truthfulness", "helpfulness")


def key(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, help: str) -> Any:  # noqa: A002
    """A dataclass field with its one-line `help` (shown by `--help`), as TRL's configs carry theirs."""
    return field(default=default, default_factory=factory, metadata={"help": help})


@dataclass
class SamplingConfig:
    """Sampling for one generator or an LLM judge. `max_new_tokens` has no default on purpose."""

    max_new_tokens: int = key(help="tokens per completion (required: no default on purpose)")
    temperature: float | None = key(
        None, help="sampling temperature; unset: 1.0 for generators, judges always use 0"
    )
    top_p: float = key(1.0, help="nucleus sampling mass")
    stop: list[str] = key(factory=list, help="strings that end a completion")

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

    batch_size: int = key(8, help="transformers: sequences per batch (prompts x n)")
    device: str | None = key(None, help="transformers: cuda when available, else cpu")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


@dataclass
class VLLMOptions:
    """backend: vllm (offline vLLM in this process)."""

    tensor_parallel_size: int = key(1, help="vllm: GPUs per model")
    gpu_memory_utilization: float = key(0.9, help="vllm: fraction of GPU memory it may take")

    def __post_init__(self) -> None:
        if self.tensor_parallel_size < 1:
            raise ValueError("tensor_parallel_size must be at least 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")


@dataclass
class OpenAIOptions:
    """backend: openai (any OpenAI-compatible endpoint)."""

    base_url: str | None = key(None, help="openai: the endpoint, e.g. http://gpu-node:8000/v1")
    api_key_env: str | None = key(
        None, help="openai: the env var holding the key (the key never enters a recipe)"
    )
    concurrency: int = key(8, help="openai: requests in flight")
    timeout: float = key(120.0, help="openai: seconds per request")
    max_retries: int = key(
        8, help="openai: retries on 429, 5xx, timeouts, connection errors, malformed bodies"
    )
    backoff_initial: float = key(1.0, help="openai: first backoff in seconds (exponential, with jitter)")
    backoff_max: float = key(
        60.0, help="openai: longest backoff in seconds (Retry-After is honoured up to it)"
    )

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

    model: str = key(help="a local path, a hub id, @sft/@dpo/@rm/@base; for openai the served model name")
    backend: Backend = key("transformers", help="transformers | vllm | openai; each takes only its own keys")
    chat_template: str | None = key(
        None, help="a shipped template name or Jinja; @references default to model.chat_template"
    )
    dtype: str | None = key(None, help="@references default to model.dtype, other models to auto")
    revision: str | None = key(
        None, help="a hub model's revision (default main; @base: model.model_revision)"
    )
    # transformers
    batch_size: int | None = key(None, help="transformers: sequences per batch (prompts x n)")
    device: str | None = key(None, help="transformers: cuda when available, else cpu")
    # vllm
    tensor_parallel_size: int | None = key(None, help="vllm: GPUs per model")
    gpu_memory_utilization: float | None = key(None, help="vllm: fraction of GPU memory it may take")
    # openai
    base_url: str | None = key(None, help="openai: the endpoint, e.g. http://gpu-node:8000/v1")
    api_key_env: str | None = key(
        None, help="openai: the env var holding the key (the key never enters a recipe)"
    )
    concurrency: int | None = key(None, help="openai: requests in flight")
    timeout: float | None = key(None, help="openai: seconds per request")
    max_retries: int | None = key(
        None, help="openai: retries on 429, 5xx, timeouts, connection errors, malformed bodies"
    )
    backoff_initial: float | None = key(
        None, help="openai: first backoff in seconds (exponential, with jitter)"
    )
    backoff_max: float | None = key(
        None, help="openai: longest backoff in seconds (Retry-After is honoured up to it)"
    )

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

    sampling: SamplingConfig = key(help="sampling settings (max_new_tokens required)")
    n: int = key(1, help="completions per prompt")
    # UltraFeedback-style: a sampled principle system prompt per completion. true: UltraFeedback's general
    # mix; a mapping principle -> weight, e.g. {helpfulness: 3, honesty: 1}; `ultrafeedback` (its mixes by
    # the prompts' `source` column); or {source: COLUMN | "@dataset", by_source: PRESET | {SOURCE: mix}}.
    # See westwind.aift.principles.
    principles: bool | str | dict[str, Any] = key(
        False,
        help="UltraFeedback principle system prompts: true, {principle: weight}, ultrafeedback (by source), "
        "or {source: COLUMN|@dataset, by_source: PRESET|{SOURCE: {principle: weight}}}",
    )
    name: str | None = key(None, help="the label stored with each completion (default: the model)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 1:
            raise ValueError("n must be at least 1")
        principle_mix(self.principles)  # validates every form
        if self.n > 1 and self.sampling.temperature == 0:
            raise ValueError("n > 1 at temperature 0 gives n identical completions; raise the temperature")


@dataclass(kw_only=True)
class JudgeConfig(EndpointConfig):
    """The teacher. LLM judges (ultrafeedback, pairwise) run at temperature 0 on any backend."""

    kind: JudgeKind = key(help="ultrafeedback | pairwise | reward_model | verifier")
    model: str | None = key(None, help="the judge model (not for verifier)")
    sampling: SamplingConfig | None = key(
        None, help="LLM judges: max_new_tokens for the reply (always temperature 0)"
    )
    aspects: list[Aspect] = key(
        factory=lambda: list(ASPECTS), help="ultrafeedback: the aspects rated, each at most once"
    )
    max_reasks: int = key(2, help="re-asks after an unparsable reply")
    function: str | None = key(None, help="verifier: module:function(prompt, completion, reference) -> float")
    # The prompt dataset's column holding a per-prompt reference: the verifier's answer key, and the
    # ultrafeedback judge's world knowledge for truthfulness (used when the column exists).
    reference_column: str = key(
        "reference",
        help="prompts' column with a per-prompt reference (verifier key; truthfulness world knowledge)",
    )
    texts_per_request: int = key(
        4, help="ultrafeedback: candidates rated per request (larger pools are chunked)"
    )
    order_check_share: float = key(
        0.0,
        help="ultrafeedback: share of rating requests asked again with the texts reversed (order-flip rate)",
    )
    version: str | int | None = key(
        None, help="verifier: bump when its verdicts change through code outside the function's module"
    )

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
        if not 0 <= self.order_check_share <= 1:
            raise ValueError("order_check_share must be a fraction in [0, 1]")
        if self.order_check_share and self.kind != "ultrafeedback":
            raise ValueError(
                "order_check_share is for the ultrafeedback judge (pairwise always asks both orders)"
            )
        if self.version is not None and self.kind != "verifier":
            raise ValueError("version is for verifier judges (model judges are identified by content)")


@dataclass
class DecontaminationConfig:
    """Drop prompts sharing a word n-gram with an eval set (whole-prompt match when shorter than n)."""

    datasets: list[DatasetConfig] = key(help="eval datasets to check the prompts against")
    column: str = key("prompt", help="their prompt column")
    ngram: int = key(13, help="shared word n-gram length that marks a prompt contaminated")

    def __post_init__(self) -> None:
        if self.ngram < 1 or not self.datasets:
            raise ValueError("decontaminate needs datasets and ngram >= 1")


@dataclass
class PromptsConfig:
    datasets: list[DatasetConfig] = key(help="TRL dataset entries holding the prompts")
    column: str = key("prompt", help="a string, or a messages list (cut after its last user turn)")
    max_prompts: int | None = key(None, help="a seeded sample of this many after dedupe (default: all)")
    decontaminate: DecontaminationConfig | None = key(
        None, help="drop prompts sharing a word n-gram with eval prompts"
    )

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("datasets must not be empty")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError("max_prompts must be at least 1")


@dataclass
class BinarizeConfig:
    policy: Literal["best_vs_random", "best_vs_worst"] = key(
        "best_vs_random", help="best_vs_random (Zephyr) or best_vs_worst"
    )
    drop_ties: bool = key(True, help="false: keep a zero-margin pair when no candidate scores lower")
    min_margin: float = key(0.0, help="draw the rejected side only among candidates at least this far below")
    min_chosen_score: float | None = key(None, help="drop prompts whose best candidate scores below this")


@dataclass
class Principle:
    """One constitution entry: what the critique looks for and how the revision fixes it."""

    name: str = key(help="the principle's label, stored with each pair")
    critique: str = key(help="the critique request: what to look for in the answer")
    revision: str = key(help="the revision request: how to rewrite the answer")


@dataclass(kw_only=True)
class RevisionsConfig:
    """Constitutional-AI revision pairs (Bai et al., 2022): `answerer` answers each prompt, the teacher
    critiques the answer against a principle drawn from the constitution and revises it; chosen = revision,
    rejected = answer. The pairs join the rated pairs in the AIFT dataset."""

    answerer: EndpointConfig = key(help="the model whose answers are revised, e.g. @sft (the dSFT model)")
    sampling: SamplingConfig = key(help="the answerer's sampling (max_new_tokens required)")
    teacher: EndpointConfig | None = key(
        None, help="the model that critiques and revises (unset: the judge's model, for an LLM judge)"
    )
    teacher_sampling: SamplingConfig = key(help="the teacher's sampling for critique and revision")
    constitution: list[Principle] | None = key(
        None, help="name/critique/revision entries (unset: westwind's default constitution)"
    )

    def __post_init__(self) -> None:
        if self.constitution is not None:
            if not self.constitution:
                raise ValueError(
                    "constitution must list at least one principle (or be unset for the default)"
                )
            names = [p.name for p in self.constitution]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"constitution lists {', '.join(duplicates)} more than once")


@dataclass
class AIFTConfig:
    prompts: PromptsConfig = key(help="where the prompts come from")
    generators: list[GeneratorConfig] = key(help="the candidate pool")
    judge: JudgeConfig = key(help="the teacher")
    binarize: BinarizeConfig = key(factory=BinarizeConfig, help="how ratings become pairs")
    seed: int = key(42, help="candidate order, sampling seeds, pair choice, train/test split")
    test_split_size: float | None = key(None, help="a test fraction; unset for a train split only")
    chunk_size: int = key(64, help="prompts per unit of work")
    revisions: RevisionsConfig | None = key(
        None, help="also make Constitutional-AI revision pairs (chosen = revision, rejected = answer)"
    )
    push_to_hub: str | None = key(None, help="a dataset repo id to push the result to")

    def __post_init__(self) -> None:
        revisions, llm_judge = self.revisions, self.judge.kind in ("ultrafeedback", "pairwise")
        if revisions is not None and revisions.teacher is None and not llm_judge:
            raise ValueError(
                f"revisions.teacher is unset and the {self.judge.kind} judge is no language model: "
                "set revisions.teacher"
            )
        if not self.generators:
            raise ValueError("generators must list at least one model")
        if self.test_split_size is not None and not 0 < self.test_split_size < 1:
            raise ValueError("test_split_size must be a fraction in (0, 1)")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.principle_source()  # one source per prompt: by-source generators must agree on where it is

    def principle_source(self) -> str | None:
        """The prompts' column (or @dataset) naming each prompt's source for by-source principle mixes."""
        mixes = [principle_mix(g.principles) for g in self.generators]
        sources = sorted({m.source for m in mixes if m is not None and m.by_source is not None})
        if len(sources) > 1:
            raise ValueError(f"generators' principles read the source from different places: {sources}")
        return sources[0] if sources else None


def revision_teacher(config: AIFTConfig) -> EndpointConfig:
    """The endpoint that critiques and revises: `revisions.teacher`, else the (LLM) judge's own endpoint."""
    if config.revisions.teacher is not None:
        return config.revisions.teacher
    names = [f.name for f in dataclasses.fields(EndpointConfig)]
    return EndpointConfig(**{name: getattr(config.judge, name) for name in names})


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
