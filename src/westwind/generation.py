"""Chat generation backends shared by AIFT generators and LLM judges: transformers, vLLM, OpenAI-compatible.

Every backend takes a list of `ChatRequest`s and reports each `Result` through a callback as soon as it is
done, so the caller can persist finished work incrementally.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from westwind.aift_config import EndpointConfig, SamplingConfig
from westwind.chat_templates import render_prompt
from westwind.errors import RunError
from westwind.seeding import stable_seed

logger = logging.getLogger(__name__)


@dataclass
class ChatRequest:
    key: Any  # the caller's id for this request
    messages: list[dict[str, str]]
    sampling: SamplingConfig  # temperature resolved (never None)
    n: int = 1
    seed: int = 0


@dataclass
class Completion:
    text: str
    finish_reason: str | None = None


@dataclass
class Result:
    request: ChatRequest
    completions: list[Completion] | None = None
    error: str | None = None  # set when the request failed for good
    failures: Counter = field(default_factory=Counter)  # transient failures retried on the way


OnResult = Callable[[Result], None]


class Backend(Protocol):
    name: str

    def run(self, requests: list[ChatRequest], on_result: OnResult) -> None: ...

    def close(self) -> None: ...


class BackendUnavailable(RunError):
    """A backend's package or environment is missing: one line for the user, no traceback."""


def resolved_sampling(sampling: SamplingConfig, default_temperature: float) -> SamplingConfig:
    temperature = default_temperature if sampling.temperature is None else sampling.temperature
    return dataclasses.replace(sampling, temperature=temperature, stop=list(sampling.stop))


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """The text before the first stop string, and whether one was found."""
    positions = [text.find(s) for s in stop if s and s in text]
    return (text[: min(positions)], True) if positions else (text, False)


# ---------------------------------------------------------------- UltraFeedback-style principles

# Our own wording of the UltraFeedback principles; one is drawn per completion to diversify the pool.
PRINCIPLES: dict[str, list[str]] = {
    "helpfulness": [
        "You are a helpful assistant. Give an accurate, complete and engaging answer that serves the user's need.",
        "Aim to be genuinely useful: answer the question asked, add the context that helps, and keep it clear.",
    ],
    "harmlessness": [
        "You are a careful assistant. Help the user while avoiding anything harmful, unsafe or disrespectful.",
        "Be helpful, but never produce content that could hurt people, property or the environment.",
    ],
    "honesty": [
        "You are an honest assistant. If you are unsure or do not know, say so plainly instead of guessing.",
        "Be truthful about the limits of your knowledge; admit uncertainty rather than inventing an answer.",
    ],
    "verbalized_calibration": [
        "Answer the question, then state how confident you are in your answer as a percentage.",
        "After answering, add a short confidence estimate (for example 'Confidence: 80%').",
    ],
    "truthfulness": [
        "You are a factual assistant. Stick to verified facts and do not invent names, numbers or events.",
        "Only state what is accurate and grounded; if a premise of the question is false, point that out.",
    ],
}


def draw_principle(seed: int) -> tuple[str, str]:
    """A (principle, system prompt) pair, chosen uniformly and reproducibly from `seed`."""
    rng = random.Random(seed)
    name = rng.choice(sorted(PRINCIPLES))
    return name, rng.choice(PRINCIPLES[name])


def with_system_prompt(messages: list[dict[str, str]], system: str) -> list[dict[str, str]]:
    """Prepend `system` (merged into an existing system turn: many templates allow only one)."""
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{system}\n\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": system}, *messages]


# ---------------------------------------------------------------- building a backend


def model_args_for(endpoint: EndpointConfig, path: str, recipe: Any | None):
    """@sft/@base inherit the recipe's model options; other models get only the endpoint's own."""
    from westwind.recipe import ModelArgs

    if recipe is not None and endpoint.model in ("@sft", "@base"):
        return dataclasses.replace(
            recipe.model,
            model_name_or_path=path,
            chat_template=endpoint.chat_template or recipe.model.chat_template,
            dtype=endpoint.dtype or recipe.model.dtype,
        )
    return ModelArgs(
        model_name_or_path=path, chat_template=endpoint.chat_template, dtype=endpoint.dtype or "auto"
    )


def build_backend(endpoint: EndpointConfig, recipe: Any | None = None, seed: int = 0) -> Backend:
    """The backend for an endpoint; `recipe` resolves @sft/@base and supplies their model options."""
    path = recipe.resolve_reference(endpoint.model) if recipe is not None else endpoint.model
    if endpoint.backend == "openai":
        return OpenAIBackend(endpoint, path)
    model_args = model_args_for(endpoint, path, recipe)
    if endpoint.backend == "vllm":
        return VLLMBackend(endpoint, path, model_args, seed)
    return TransformersBackend(endpoint, path, model_args)


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the chat-templated prompt; the template adds BOS itself, so the tokenizer must not."""
    text = render_prompt(tokenizer, messages)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------- transformers


class SeededSampler:
    """Sampling with one random stream per sequence (Gumbel-max: argmax of logits/T + Gumbel noise is a draw
    from softmax(logits/T)), so a completion depends on its own seed only, not on the batch it lands in:
    resumed, sharded and differently batched runs produce the same samples."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        import torch

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids, scores):
        import torch
        from transformers import TopPLogitsWarper

        scores = scores.float() / self.temperature
        if self.top_p < 1:
            scores = TopPLogitsWarper(self.top_p)(input_ids, scores)
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
        return scores + gumbel.to(scores.device)


class TransformersBackend:
    """Local batched generation: left padding, length-bucketed batches, the chat template, eos/stop strings."""

    name = "transformers"

    def __init__(self, endpoint: EndpointConfig, path: str, model_args):
        import torch

        from westwind.models import load_causal_lm, load_tokenizer

        self.device = endpoint.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = endpoint.batch_size
        self.tokenizer = load_tokenizer(path, model_args)
        self.tokenizer.padding_side = "left"
        self.model = load_causal_lm(path, model_args, self.tokenizer, quantize=False).to(self.device).eval()
        eos = {self.tokenizer.eos_token_id, *_as_list(self.model.generation_config.eos_token_id)}
        self.eos_token_ids = sorted(i for i in eos if i is not None)

    def run(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        for batch in self.batches(requests):
            for request, completions in zip(batch, self.generate_batch(batch), strict=True):
                on_result(Result(request, completions))

    def batches(self, requests: list[ChatRequest]) -> list[list[ChatRequest]]:
        """Requests with equal sampling settings, sorted by prompt length, cut to `batch_size` sequences each."""
        groups: dict[str, list[tuple[int, ChatRequest]]] = {}
        for request in requests:
            key = json.dumps([dataclasses.asdict(request.sampling), request.n])
            groups.setdefault(key, []).append(
                (len(chat_prompt_ids(self.tokenizer, request.messages)), request)
            )
        batches = []
        for members in groups.values():
            members.sort(key=lambda item: item[0])
            per_batch = max(1, self.batch_size // members[0][1].n)
            batches += [[r for _, r in members[i : i + per_batch]] for i in range(0, len(members), per_batch)]
        return batches

    def generate_batch(self, batch: list[ChatRequest]) -> list[list[Completion]]:
        import torch
        from transformers import LogitsProcessorList

        sampling, n = batch[0].sampling, batch[0].n
        rows = [(request, sample) for request in batch for sample in range(n)]
        texts = [render_prompt(self.tokenizer, r.messages) for r, _ in rows]
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "eos_token_id": self.eos_token_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
            # Sampling happens in SeededSampler; generate() itself only takes the argmax.
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
        if sampling.temperature > 0:
            seeds = [stable_seed(request.seed, sample) for request, sample in rows]
            sampler = SeededSampler(seeds, sampling.temperature, sampling.top_p)
            kwargs["logits_processor"] = LogitsProcessorList([sampler])
        if sampling.stop:
            kwargs.update(stop_strings=sampling.stop, tokenizer=self.tokenizer)
        with torch.no_grad():
            output = self.model.generate(**inputs, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        completions = [self.to_completion(tokens, sampling.stop) for tokens in new_tokens]
        return [completions[i * n : (i + 1) * n] for i in range(len(batch))]

    def to_completion(self, tokens, stop: list[str]) -> Completion:
        ids = tokens.tolist()
        ended = any(i in self.eos_token_ids for i in ids)
        text, stopped = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), stop)
        return Completion(text.strip(), "stop" if ended or stopped else "length")

    def close(self) -> None:
        self.model = None
        _free_accelerator_memory()


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- vLLM


def import_vllm():
    try:
        import vllm
    except ImportError:
        raise BackendUnavailable(
            "backend vllm needs the vllm package, which is not installed here; install it in its own "
            "environment (pip install 'westwind[vllm]', see README) or use backend: transformers / openai"
        ) from None
    return vllm


class VLLMBackend:
    """Offline vLLM: the whole request list in one `LLM.generate` call, one SamplingParams (n, seed) each."""

    name = "vllm"

    def __init__(self, endpoint: EndpointConfig, path: str, model_args, seed: int):
        from westwind.models import load_tokenizer

        self.vllm = import_vllm()
        # Our tokenizer renders the prompt, so the recipe's chat template applies exactly as in training.
        self.tokenizer = load_tokenizer(path, model_args)
        self.llm = self.vllm.LLM(
            model=path,
            tensor_parallel_size=endpoint.tensor_parallel_size,
            seed=seed,
            dtype=model_args.dtype or "auto",
            gpu_memory_utilization=endpoint.gpu_memory_utilization,
            trust_remote_code=model_args.trust_remote_code,
        )

    def run(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        prompts = [{"prompt_token_ids": chat_prompt_ids(self.tokenizer, r.messages)} for r in requests]
        params = [self.sampling_params(r) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        for request, output in zip(requests, outputs, strict=True):
            on_result(Result(request, [Completion(o.text.strip(), o.finish_reason) for o in output.outputs]))

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
        _free_accelerator_memory()


# ---------------------------------------------------------------- OpenAI-compatible endpoints


class MalformedResponse(ValueError):
    """A 200 answer whose body is not a usable chat completion."""


class RequestFailed(RuntimeError):
    pass


def read_api_key(env_var: str | None) -> str:
    if env_var is None:
        return "EMPTY"  # local servers (vLLM, TGI, transformers serve) accept any key
    key = os.environ.get(env_var)
    if not key:
        raise BackendUnavailable(f"api_key_env: environment variable {env_var} is not set")
    return key


def failure_reason(error: BaseException) -> str:
    """The retry bucket of an error; `client_error` and `other` are not retried."""
    import openai

    if isinstance(error, openai.APITimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    if isinstance(error, openai.APIStatusError):
        if error.status_code == 429:
            return "rate_limit"
        return "server_error" if error.status_code >= 500 else "client_error"
    if isinstance(error, MalformedResponse | json.JSONDecodeError | openai.APIResponseValidationError):
        return "malformed"
    return "other"


RETRYABLE = {"timeout", "connection", "rate_limit", "server_error", "malformed"}


def completion_of(response: Any) -> Completion:
    """Validate a chat completion ourselves: the client does not check the body's shape."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse("the response has no choices")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        raise MalformedResponse("the response's first choice has no text content")
    return Completion(content.strip(), getattr(choices[0], "finish_reason", None))


class OpenAIBackend:
    """Async OpenAI-compatible client: bounded concurrency, our own retries so every failure is counted."""

    name = "openai"

    def __init__(self, endpoint: EndpointConfig, model: str):
        self.endpoint = endpoint
        self.model = model
        self.api_key = read_api_key(endpoint.api_key_env)
        self.failures: Counter = Counter()

    def run(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        asyncio.run(self.run_async(requests, on_result))

    async def run_async(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            base_url=self.endpoint.base_url,
            api_key=self.api_key,
            max_retries=0,
            timeout=self.endpoint.timeout,
        )
        semaphore = asyncio.Semaphore(self.endpoint.concurrency)
        try:
            await asyncio.gather(*(self.run_one(client, semaphore, r, on_result) for r in requests))
        finally:
            await client.close()

    async def run_one(
        self, client, semaphore: asyncio.Semaphore, request: ChatRequest, on_result: OnResult
    ) -> None:
        failures: Counter = Counter()
        samples = [self.sample(client, semaphore, request, i, failures) for i in range(request.n)]
        # Every sample runs to its end, so the failures of all of them are in the result.
        outcomes = await asyncio.gather(*samples, return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        for error in errors:
            if not isinstance(error, RequestFailed):
                raise error
        if errors:
            on_result(Result(request, None, str(errors[0]), failures))
        else:
            on_result(Result(request, list(outcomes), None, failures))

    async def sample(
        self, client, semaphore: asyncio.Semaphore, request: ChatRequest, index: int, failures: Counter
    ) -> Completion:
        """One completion; n > 1 is n seeded requests, since many servers ignore `n`."""
        sampling = request.sampling
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": request.seed + index,
        }
        if sampling.stop:
            kwargs["stop"] = sampling.stop
        attempts = self.endpoint.max_retries + 1
        for attempt in range(attempts):
            try:
                async with semaphore:
                    return completion_of(await client.chat.completions.create(**kwargs))
            except Exception as error:  # classified below; anything unexpected fails this item, not the run
                reason = failure_reason(error)
                failures[reason] += 1
                self.failures[reason] += 1
                message = self.redact(f"{reason}: {type(error).__name__}: {str(error)[:300]}")
                if reason not in RETRYABLE or attempt == attempts - 1:
                    raise RequestFailed(
                        f"gave up after {attempt + 1} attempt(s); last error {message}"
                    ) from None
                logger.debug("retrying after %s", message)
                await asyncio.sleep(self.backoff(attempt, error))
        raise AssertionError("unreachable")

    def backoff(self, attempt: int, error: BaseException) -> float:
        """Exponential backoff with jitter, never shorter than the server's Retry-After."""
        ceiling = min(self.endpoint.backoff_max, self.endpoint.backoff_initial * 2**attempt)
        delay = random.uniform(ceiling / 2, ceiling)
        response = getattr(error, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after and re.fullmatch(r"\d+(\.\d+)?", retry_after):
            delay = max(delay, min(float(retry_after), self.endpoint.backoff_max))
        return delay

    def redact(self, text: str) -> str:
        """Error bodies can echo the key (even partially masked); keep all of it out of records and logs."""
        if self.api_key != "EMPTY":
            text = text.replace(self.api_key, "***")
        return re.sub(r"\bsk-[A-Za-z0-9*_\-.]{4,}", "sk-***", text)

    def close(self) -> None:
        pass
