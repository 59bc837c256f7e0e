"""The openai backend: any OpenAI-compatible endpoint, async with bounded concurrency and counted retries.
The openai client is imported when used, so other backends do not load it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from westwind.aift.config import OpenAIOptions
from westwind.errors import RunError
from westwind.generation.base import BackendUnavailable, ChatRequest, Completion, Result
from westwind.generation.redaction import redact_key

logger = logging.getLogger(__name__)
MESSAGE_CHARS = 360  # an error text's length in records and logs


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
                # Redacted whole, then cut: a key cut short by the cut would escape redaction.
                message = self.redact(f"{reason}: {type(error).__name__}: {error}")[:MESSAGE_CHARS]
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
