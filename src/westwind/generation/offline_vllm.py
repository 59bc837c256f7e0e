"""The vllm backend: offline vLLM in this process (vLLM is installed separately). vllm and westwind.training.models
are imported when the backend is built: heavy, and vllm may be absent."""

from __future__ import annotations

from collections.abc import Iterator

from westwind.aift.config import VLLMOptions
from westwind.generation.base import (
    BackendUnavailable,
    ChatRequest,
    Completion,
    Result,
    chat_prompt_ids,
    free_accelerator_memory,
)


def import_vllm():
    try:
        import vllm
    except ImportError:
        raise BackendUnavailable(
            "backend vllm needs the vllm package, which is not installed here; install it in its own "
            "environment (pip install 'westwind[vllm]', see docs/multi-gpu.md) or use backend: transformers / openai"
        ) from None
    return vllm


class VLLMBackend:
    """Offline vLLM: the whole request list in one `LLM.generate` call, one SamplingParams (n, seed) each."""

    name = "vllm"

    def __init__(self, options: VLLMOptions, path: str, model_args, seed: int):
        from westwind.training.models import load_tokenizer

        self.vllm = import_vllm()
        # Our tokenizer renders the prompt, so the recipe's chat template applies exactly as in training.
        self.tokenizer = load_tokenizer(path, model_args)
        self.llm = self.vllm.LLM(
            model=path,
            tensor_parallel_size=options.tensor_parallel_size,
            seed=seed,
            dtype=model_args.dtype or "auto",
            gpu_memory_utilization=options.gpu_memory_utilization,
            trust_remote_code=model_args.trust_remote_code,
        )

    def run(self, requests: list[ChatRequest]) -> Iterator[Result]:
        prompts = [{"prompt_token_ids": chat_prompt_ids(self.tokenizer, r.messages)} for r in requests]
        params = [self.sampling_params(r) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        for request, output in zip(requests, outputs, strict=True):
            yield Result(request, [Completion(o.text.strip(), o.finish_reason) for o in output.outputs])

    def sampling_params(self, request: ChatRequest):
        sampling = request.sampling
        return self.vllm.SamplingParams(
            n=request.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop=sampling.stop or None,
            seed=request.seed,
        )

    def close(self) -> None:
        self.llm = None
        # vLLM keeps its distributed state (and GPU memory) alive past `del`; a judge loading next needs it back.
        cleanup = getattr(getattr(self.vllm, "distributed", None), "cleanup_dist_env_and_memory", None)
        if callable(cleanup):
            cleanup()
        free_accelerator_memory()
