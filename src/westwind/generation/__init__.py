"""Chat generation backends shared by AIFT generators, LLM judges and eval: transformers (`local`), vLLM
(`offline_vllm`), OpenAI-compatible (`openai_compatible`).

Every backend takes a list of `ChatRequest`s and yields each finished `Result` (in completion order for the
async openai backend), so the caller can persist finished work incrementally.
"""

from __future__ import annotations

from westwind.aift.config import EndpointConfig
from westwind.endpoints import ResolvedModel
from westwind.generation.base import (
    Backend,
    BackendUnavailable,
    ChatRequest,
    Completion,
    Result,
    chat_prompt_ids,
    cut_at_stop,
    resolved_sampling,
)
from westwind.generation.local import SeededSampler, TransformersBackend
from westwind.generation.offline_vllm import VLLMBackend, import_vllm
from westwind.generation.openai_compatible import (
    EndpointRejected,
    MalformedResponse,
    OpenAIBackend,
    RequestFailed,
    completion_of,
    failure_reason,
    read_api_key,
    redact_key,
)

__all__ = [
    "Backend",
    "BackendUnavailable",
    "ChatRequest",
    "Completion",
    "EndpointRejected",
    "MalformedResponse",
    "OpenAIBackend",
    "RequestFailed",
    "Result",
    "SeededSampler",
    "TransformersBackend",
    "VLLMBackend",
    "build_backend",
    "chat_prompt_ids",
    "completion_of",
    "cut_at_stop",
    "failure_reason",
    "import_vllm",
    "read_api_key",
    "redact_key",
    "resolved_sampling",
]


def build_backend(endpoint: EndpointConfig, model: ResolvedModel, seed: int = 0) -> Backend:
    """The backend for an endpoint whose model is already resolved (westwind.endpoints.resolve_model)."""
    options = endpoint.options()
    if endpoint.backend == "openai":
        return OpenAIBackend(options, model.path)
    if endpoint.backend == "vllm":
        return VLLMBackend(options, model.path, model.model_args, seed)
    return TransformersBackend(options, model.path, model.model_args)
