"""Chat generation backends shared by AIFT generators and LLM judges: transformers, vLLM, OpenAI-compatible.

Every backend takes a list of `ChatRequest`s and yields each finished `Result` (in completion order for the
async openai backend), so the caller can persist finished work incrementally.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from westwind.aift_config import (
    EndpointConfig,
    OpenAIOptions,
    SamplingConfig,
    TransformersOptions,
    VLLMOptions,
)
from westwind.endpoints import ResolvedModel
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


class Backend(Protocol):
    name: str

    def run(self, requests: list[ChatRequest]) -> Iterator[Result]: ...

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


# ---------------------------------------------------------------- building a backend


def build_backend(endpoint: EndpointConfig, model: ResolvedModel, seed: int = 0) -> Backend:
    """The backend for an endpoint whose model is already resolved (westwind.endpoints.resolve_model)."""
    options = endpoint.options()
    if endpoint.backend == "openai":
        return OpenAIBackend(options, model.path)
    if endpoint.backend == "vllm":
        return VLLMBackend(options, model.path, model.model_args, seed)
    return TransformersBackend(options, model.path, model.model_args)


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the chat-templated prompt; the template adds BOS itself, so the tokenizer must not."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
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

    def __init__(self, options: TransformersOptions, path: str, model_args):
        import torch

        from westwind.models import load_causal_lm, load_tokenizer

        self.device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = options.batch_size
        self.tokenizer = load_tokenizer(path, model_args)
        self.tokenizer.padding_side = "left"
        self.model = load_causal_lm(path, model_args, self.tokenizer, quantize=False).to(self.device).eval()
        eos = {self.tokenizer.eos_token_id, *_as_list(self.model.generation_config.eos_token_id)}
        self.eos_token_ids = sorted(i for i in eos if i is not None)

    def run(self, requests: list[ChatRequest]) -> Iterator[Result]:
        for batch in self.batches(requests):
            for request, completions in zip(batch, self.generate_batch(batch), strict=True):
                yield Result(request, completions)

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
        texts = [
            self.tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
            for r, _ in rows
        ]
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

    def __init__(self, options: VLLMOptions, path: str, model_args, seed: int):
        from westwind.models import load_tokenizer

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


class EndpointRejected(RunError):
    """The endpoint refused the credentials (401/403): retrying cannot help, so the run stops."""


def redact_key(text: str, key: str) -> str:
    """`text` without the key: whole, or partly masked as error bodies echo it (`gsk_ab****yz12`), whatever
    its prefix. A token goes when a piece of it (between masking stars) of 4+ characters is part of the key
    and the token is masked or that piece is 8+ characters long."""
    if key and key != "EMPTY":
        text = text.replace(key, "***")

        def hide(match: re.Match) -> str:
            token = match.group(0)
            pieces = [p for p in re.split(r"[*.]{2,}|\*+", token) if len(p) >= 4]
            masked = "*" in token or "..." in token
            if any(p in key and (masked or len(p) >= 8) for p in pieces):
                return "***"
            return token

        text = re.sub(r"[A-Za-z0-9_\-*.]{4,}", hide, text)
    return re.sub(r"\bsk-[A-Za-z0-9*_\-.]{4,}", "sk-***", text)


class OpenAIBackend:
    """Async OpenAI-compatible client: bounded concurrency, our own retries so every failure is counted."""

    name = "openai"

    def __init__(self, options: OpenAIOptions, model: str):
        self.options = options
        self.model = model
        self.api_key = read_api_key(options.api_key_env)
        self.failures: Counter = Counter()

    def run(self, requests: list[ChatRequest]) -> Iterator[Result]:
        """Results as they finish. A private event loop runs until the next result is ready, so the caller
        may persist each one before the next arrives."""
        from openai import AsyncOpenAI

        loop = asyncio.new_event_loop()
        client = AsyncOpenAI(
            base_url=self.options.base_url,
            api_key=self.api_key,
            max_retries=0,
            timeout=self.options.timeout,
        )
        semaphore = asyncio.Semaphore(self.options.concurrency)
        tasks = [loop.create_task(self.run_one(client, semaphore, r)) for r in requests]
        pending = set(tasks)
        try:
            while pending:
                done, pending = loop.run_until_complete(
                    asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                )
                for task in done:
                    yield task.result()
        finally:
            for task in pending:
                task.cancel()
            # Settles the cancelled tasks and marks every task's exception as seen (one is being raised).
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(client.close())
            loop.close()

    async def run_one(self, client, semaphore: asyncio.Semaphore, request: ChatRequest) -> Result:
        failures: Counter = Counter()
        samples = [self.sample(client, semaphore, request, i, failures) for i in range(request.n)]
        # Every sample runs to its end, so the failures of all of them are in the result.
        outcomes = await asyncio.gather(*samples, return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        for error in errors:
            if not isinstance(error, RequestFailed):
                raise error
        if errors:
            return Result(request, None, str(errors[0]), failures)
        return Result(request, list(outcomes), None, failures)

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
        attempts = self.options.max_retries + 1
        for attempt in range(attempts):
            try:
                async with semaphore:
                    return completion_of(await client.chat.completions.create(**kwargs))
            except Exception as error:  # classified below; anything unexpected fails this item, not the run
                reason = failure_reason(error)
                failures[reason] += 1
                self.failures[reason] += 1
                message = self.redact(f"{reason}: {type(error).__name__}: {str(error)[:300]}")
                if getattr(error, "status_code", None) in (401, 403):
                    raise EndpointRejected(
                        f"{self.options.base_url or 'the openai endpoint'} rejected the API key"
                        f"{f' from {self.options.api_key_env}' if self.options.api_key_env else ''}: "
                        f"{message}; fix the key (rerunning will not help)"
                    ) from None
                if reason not in RETRYABLE or attempt == attempts - 1:
                    raise RequestFailed(
                        f"gave up after {attempt + 1} attempt(s); last error {message}"
                    ) from None
                logger.debug("retrying after %s", message)
                await asyncio.sleep(self.backoff(attempt, error))
        raise AssertionError("unreachable")

    def backoff(self, attempt: int, error: BaseException) -> float:
        """Exponential backoff with jitter, never shorter than the server's Retry-After."""
        ceiling = min(self.options.backoff_max, self.options.backoff_initial * 2**attempt)
        delay = random.uniform(ceiling / 2, ceiling)
        response = getattr(error, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after and re.fullmatch(r"\d+(\.\d+)?", retry_after):
            delay = max(delay, min(float(retry_after), self.options.backoff_max))
        return delay

    def redact(self, text: str) -> str:
        """Error bodies can echo the key (even partially masked); keep all of it out of records and logs."""
        return redact_key(text, self.api_key)

    def close(self) -> None:
        pass
