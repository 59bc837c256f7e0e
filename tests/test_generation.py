"""Generation backends: transformers (tiny model), vLLM (contract, against a stand-in module), OpenAI helpers."""

from __future__ import annotations

import asyncio
import sys
import types
from collections import Counter
from types import SimpleNamespace

import openai
import pytest
import torch
from conftest import make_conversations

from westwind.aift.config import EndpointConfig, GeneratorConfig, SamplingConfig
from westwind.endpoints import resolve_model
from westwind.generation import (
    BackendUnavailable,
    ChatRequest,
    MalformedResponse,
    OpenAIBackend,
    TransformersBackend,
    VLLMBackend,
    build_backend,
    completion_of,
    failure_reason,
    read_api_key,
    redact_key,
    resolved_sampling,
)
from westwind.generation.openai_compatible import MESSAGE_CHARS


def prompts(count: int) -> list[list[dict]]:
    return [row["messages"][:-1] for row in make_conversations(count, seed=5)]


def sampling(
    max_new_tokens: int = 10, temperature: float = 0.0, stop: list[str] | None = None
) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, stop=stop or [])


def run(backend, requests) -> dict:
    return {result.request.key: result for result in backend.run(requests)}


@pytest.fixture(scope="module")
def backend(tiny_model) -> TransformersBackend:
    config = GeneratorConfig(model=str(tiny_model), batch_size=4, device="cpu", sampling=sampling())
    return build_backend(config, resolve_model(config, None))


def test_left_padded_batches_match_one_by_one_generation(backend):
    requests = [ChatRequest(i, messages, sampling()) for i, messages in enumerate(prompts(10))]
    batched = run(backend, requests)
    backend.batch_size = 1
    try:
        single = run(backend, requests)
    finally:
        backend.batch_size = 4
    assert backend.tokenizer.padding_side == "left"
    assert {k: r.completions[0].text for k, r in batched.items()} == {
        k: r.completions[0].text for k, r in single.items()
    }
    assert len(set(r.completions[0].text for r in batched.values())) > 1


def test_length_bucketed_batches_respect_batch_size_and_sampling_groups(backend):
    two = resolved_sampling(sampling(temperature=1.0), 1.0)
    requests = [ChatRequest(i, m, sampling(), 1) for i, m in enumerate(prompts(9))]
    requests += [ChatRequest(100 + i, m, two, 2) for i, m in enumerate(prompts(5))]
    batches, all_lengths = backend.batches(requests), []
    assert sorted(r.key for batch in batches for r in batch) == sorted(r.key for r in requests)
    for batch in batches:
        assert len({(r.n, r.sampling.temperature) for r in batch}) == 1
        assert len(batch) * batch[0].n <= backend.batch_size
        lengths = [len(backend.tokenizer.apply_chat_template(r.messages)["input_ids"]) for r in batch]
        assert lengths == sorted(lengths)
        all_lengths.append(lengths)
    assert len({n for lengths in all_lengths for n in lengths}) > 1  # the prompts do differ in length


def test_n_samples_are_seeded(backend):
    messages = prompts(3)
    hot = sampling(max_new_tokens=12, temperature=1.0)

    def sample(seed: int) -> list[list[str]]:
        results = run(backend, [ChatRequest(i, m, hot, n=3, seed=seed + i) for i, m in enumerate(messages)])
        return [[c.text for c in results[i].completions] for i in range(len(messages))]

    first = sample(0)
    assert all(len(texts) == 3 for texts in first)
    assert sample(0) == first
    assert sample(50) != first
    assert any(len(set(texts)) > 1 for texts in first)


def test_samples_do_not_depend_on_batch_composition(backend):
    hot = resolved_sampling(sampling(max_new_tokens=10, temperature=0.9), 1.0)
    requests = [ChatRequest(i, m, hot, n=2, seed=10 + i) for i, m in enumerate(prompts(6))]
    together = run(backend, requests)
    alone = run(backend, requests[3:4])
    assert [c.text for c in alone[3].completions] == [c.text for c in together[3].completions]
    assert len({c.text for r in together.values() for c in r.completions}) > 6


def test_max_new_tokens_stop_strings_and_eos(backend, monkeypatch):
    tokenizer = backend.tokenizer
    messages = prompts(1)[0]
    generate, shapes = backend.model.generate, []

    def spy(**kwargs):
        output = generate(**kwargs)
        shapes.append(output.shape[1] - kwargs["input_ids"].shape[1])
        return output

    monkeypatch.setattr(backend.model, "generate", spy)
    plain = run(backend, [ChatRequest(0, messages, sampling(max_new_tokens=5))])[0].completions[0]
    assert shapes == [5] and plain.finish_reason == "length"

    long = run(backend, [ChatRequest(0, messages, sampling(max_new_tokens=16))])[0].completions[0].text
    stop = long[4:7]
    stopped = run(backend, [ChatRequest(0, messages, sampling(max_new_tokens=16, stop=[stop]))])[
        0
    ].completions[0]
    assert stopped.text == long[: long.index(stop)].strip()
    assert stopped.finish_reason == "stop"

    word = tokenizer("cat", add_special_tokens=False)["input_ids"]
    ended = backend.to_completion(torch.tensor([*word, tokenizer.eos_token_id, tokenizer.pad_token_id]), [])
    assert (ended.text, ended.finish_reason) == ("cat", "stop")


# ---------------------------------------------------------------- vLLM


def test_vllm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    config = GeneratorConfig(model="m", backend="vllm", sampling=SamplingConfig(max_new_tokens=8))
    with pytest.raises(BackendUnavailable, match="vllm package"):
        build_backend(config, resolve_model(config, None))


def test_vllm_backend_follows_the_documented_api(monkeypatch, tiny_model):
    calls = {}

    class LLM:
        def __init__(self, model, tensor_parallel_size, seed, **kwargs):
            calls["llm"] = {"model": model, "tensor_parallel_size": tensor_parallel_size, "seed": seed}

        def generate(self, prompts, sampling_params, use_tqdm=False):
            calls["prompts"], calls["params"] = prompts, sampling_params
            return [
                types.SimpleNamespace(
                    outputs=[
                        types.SimpleNamespace(text=f" out {i}.{k}", finish_reason="stop") for k in range(p.n)
                    ]
                )
                for i, p in enumerate(sampling_params)
            ]

    class SamplingParams:
        def __init__(self, n, temperature, top_p, max_tokens, stop, seed):
            self.n, self.temperature, self.top_p, self.max_tokens, self.stop, self.seed = (
                n,
                temperature,
                top_p,
                max_tokens,
                stop,
                seed,
            )

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    config = GeneratorConfig(
        model=str(tiny_model),
        backend="vllm",
        tensor_parallel_size=4,
        sampling=SamplingConfig(max_new_tokens=32),
    )
    backend = build_backend(config, resolve_model(config, None), seed=11)
    assert isinstance(backend, VLLMBackend)
    hot = resolved_sampling(SamplingConfig(max_new_tokens=32, top_p=0.9, stop=["###"]), 0.8)
    results = run(backend, [ChatRequest(i, m, hot, n=2, seed=100 + i) for i, m in enumerate(prompts(3))])
    assert calls["llm"] == {"model": str(tiny_model), "tensor_parallel_size": 4, "seed": 11}
    params = calls["params"]
    assert [(p.n, p.temperature, p.top_p, p.max_tokens, p.stop, p.seed) for p in params] == [
        (2, 0.8, 0.9, 32, ["###"], 100 + i) for i in range(3)
    ]
    expected = backend.tokenizer.apply_chat_template(prompts(3)[0], add_generation_prompt=True)["input_ids"]
    assert calls["prompts"][0]["prompt_token_ids"] == list(expected)
    assert [c.text for c in results[2].completions] == ["out 2.0", "out 2.1"]


# ---------------------------------------------------------------- OpenAI-compatible helpers


REQUEST = types.SimpleNamespace(method="POST", url="http://127.0.0.1/v1/chat/completions")


def status_error(status: int, headers: dict | None = None) -> openai.APIStatusError:
    response = types.SimpleNamespace(status_code=status, headers=headers or {}, request=REQUEST)
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError, 401: openai.AuthenticationError}[
        status
    ]
    return cls("error", response=response, body=None)


def test_failures_are_classified_for_retry():
    assert failure_reason(status_error(429)) == "rate_limit"
    assert failure_reason(status_error(500)) == "server_error"
    assert failure_reason(status_error(401)) == "client_error"
    assert failure_reason(openai.APITimeoutError(request=REQUEST)) == "timeout"
    assert failure_reason(openai.APIConnectionError(request=REQUEST)) == "connection"
    assert failure_reason(MalformedResponse("x")) == "malformed"
    with pytest.raises(MalformedResponse):
        completion_of(types.SimpleNamespace(choices=[]))
    with pytest.raises(MalformedResponse):
        completion_of("<html>gateway</html>")


def test_backoff_grows_is_capped_and_honours_retry_after(monkeypatch):
    monkeypatch.setenv("AIFT_TEST_KEY", "sk-test-abcdefgh1234")
    endpoint = EndpointConfig(
        model="m", backend="openai", api_key_env="AIFT_TEST_KEY", backoff_initial=0.5, backoff_max=4.0
    )
    backend = OpenAIBackend(endpoint.options(), "m")
    plain = ValueError()
    assert 0.25 <= backend.backoff(0, plain) <= 0.5
    assert 2.0 <= backend.backoff(3, plain) <= 4.0
    assert backend.backoff(10, plain) <= 4.0
    assert backend.backoff(0, status_error(429, {"retry-after": "3"})) >= 3.0
    text = backend.redact("401: Incorrect API key provided: sk-test-abcdefgh1234 (sk-tes***1234)")
    assert "abcdefgh" not in text and "1234" not in text


@pytest.mark.parametrize(
    "echo",
    [
        "Incorrect API key provided: gsk_live_Zq81****************Xy12. See the docs.",
        "Invalid credentials gsk_live_Zq81RealSecretXy12",
        "token hf_live_Zq81...Xy12 rejected",
    ],
)
def test_partially_masked_keys_of_any_prefix_are_redacted(echo):
    key = "gsk_live_Zq81RealSecretXy12"
    text = redact_key(echo.replace("hf_", "gsk_"), key)
    assert "Zq81" not in text and "Xy12" not in text and "RealSecret" not in text
    assert redact_key("the request timed out after 120 s", key) == "the request timed out after 120 s"


def test_api_key_env_must_be_set(monkeypatch):
    monkeypatch.delenv("AIFT_TEST_MISSING_KEY", raising=False)
    with pytest.raises(BackendUnavailable, match="AIFT_TEST_MISSING_KEY"):
        read_api_key("AIFT_TEST_MISSING_KEY")
    assert read_api_key(None) == "EMPTY"


REDACTED_KEY = "gsk_abQ7vLm2Np9Rt4Wxyz12"


@pytest.mark.parametrize(
    "echo",
    [
        "gsk_ab•••••yz12",
        "gsk_ab…yz12",
        "gsk_abXXXXyz12",
        "gsk_ab****************yz12",
        "gsk_ab...yz12",
        "gsk_ab-----yz12",
        "****************yz12",
        "gsk_abQ7vLm2Np9",  # the key cut short
        "Q7vLm2",  # any 6 consecutive characters of the secret part
        "xxLm2Np9Rtxx",  # ... inside another word
        "key=gsk_abQ7vLm2Np9Rt4Wxyz12",
    ],
)
def test_every_echoed_form_of_a_key_is_redacted(echo):
    text = redact_key(f"Invalid API key: {echo}. Check your settings.", REDACTED_KEY)
    assert text.endswith("***. Check your settings.")
    for piece in ("yz12", "Q7vLm2", "Lm2Np9", "abQ7"):
        assert piece not in text


@pytest.mark.parametrize(
    "text",
    [
        "the request timed out after 120 s",
        "rate limited: retry after 12 seconds...",
        "gsk_ (the prefix alone is public)",
        "model gsk_other****1234 is unrelated",  # another key's masked form
        "Loading........ done",
    ],
)
def test_text_without_the_key_is_left_alone(text):
    assert redact_key(text, REDACTED_KEY) == text


def test_an_error_text_is_redacted_before_it_is_cut(monkeypatch):
    """The key straddles the cut: cutting first would leave its first part in the message."""
    monkeypatch.setenv("AIFT_TEST_KEY", REDACTED_KEY)
    backend = OpenAIBackend(
        EndpointConfig(model="m", backend="openai", api_key_env="AIFT_TEST_KEY").options(), "m"
    )
    body = "x" * (MESSAGE_CHARS - 40) + f" Incorrect API key provided: {REDACTED_KEY} (see docs)"

    class Refused(Exception):
        status_code = 400

    async def refuse(**kwargs):
        raise Refused(body)

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=refuse)))
    request = ChatRequest("k", [{"role": "user", "content": "hi"}], SamplingConfig(max_new_tokens=4), 1, 0)
    with pytest.raises(Exception) as failure:
        asyncio.run(backend.sample(client, asyncio.Semaphore(1), request, 0, Counter()))
    assert "gsk_abQ7" not in str(failure.value) and "Q7vLm2" not in str(failure.value)
