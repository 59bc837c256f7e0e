"""The openai backend against a real OpenAI-compatible server (`transformers serve` on the tiny model),
behind a loopback proxy that breaks ~30% of calls: 500s, 429s, hangs past the client timeout, malformed
bodies. The run must finish with no prompt lost and count exactly the failures the proxy injected."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter

import pytest
from aift_helpers import write_recipe
from conftest import make_conversations, write_jsonl
from stub_server import Reply, Request, StubServer

from westwind.aift.config import JudgeConfig, SamplingConfig
from westwind.endpoints import resolve_model
from westwind.io import read_jsonl
from westwind.judges import make_judge
from westwind.recipe.core import load_recipe
from westwind.stages import aift as aift_stage

API_KEY = "sk-westwind-test-SECRET-4242"
CLIENT_TIMEOUT = 3.0
PROMPTS = 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """`transformers serve` on 127.0.0.1, ready when /health answers (bounded wait)."""
    port = free_port()
    home = tmp_path_factory.mktemp("hf-home")
    (home / "hub").mkdir()  # /v1/models scans the cache; we only use /health and chat completions
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(tiny_model)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    log = (home / "serve.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"transformers serve exited: {(home / 'serve.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("transformers serve did not become healthy within 120 s")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


class FaultProxy:
    """Forwards to `upstream`; calls 1, 4, 7 of every 10 get a fault, cycling through the four kinds."""

    KINDS = ("server_error", "rate_limit", "timeout", "malformed")

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.lock = threading.Lock()
        self.calls = 0
        self.injected: Counter = Counter()
        self.passed: Counter = Counter()
        self.authorizations: set[str] = set()
        self.stop = threading.Event()
        self.server = StubServer(self.answer)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def fault_for_next_call(self) -> str | None:
        with self.lock:
            index = self.calls
            self.calls += 1
            if index % 10 not in (1, 4, 7):
                return None
            kind = self.KINDS[sum(self.injected.values()) % len(self.KINDS)]
            self.injected[kind] += 1
            return kind

    def forward(self, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def answer(self, request: Request) -> Reply:
        self.authorizations.add(request.headers.get("authorization", ""))
        kind = self.fault_for_next_call()
        if kind == "timeout":
            self.stop.wait(CLIENT_TIMEOUT + 1.5)  # the client gives up first
            return None
        if kind == "server_error":
            return 500, b'{"error": {"message": "upstream exploded"}}'
        if kind == "rate_limit":
            return 429, b'{"error": {"message": "slow down"}}', {"retry-after": "0"}
        status, payload = self.forward(request.path, request.body, {"content-type": "application/json"})
        if kind == "malformed":
            return 200, payload[: len(payload) // 2] if self.injected["malformed"] % 2 else b'{"object": "x"}'
        self.passed[status] += 1
        return status, payload

    def __enter__(self) -> FaultProxy:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.server.close()


def endpoint(base_url: str) -> dict:
    return {
        "backend": "openai",
        "base_url": base_url,
        "api_key_env": "AIFT_TEST_API_KEY",
        "concurrency": 4,
        "timeout": CLIENT_TIMEOUT,
        "max_retries": 8,
        "backoff_initial": 0.05,
        "backoff_max": 0.4,
    }


@pytest.mark.slow
def test_openai_backend_survives_a_faulty_endpoint(server, tiny_model, tmp_path, monkeypatch, capfd, caplog):
    monkeypatch.setenv("AIFT_TEST_API_KEY", API_KEY)
    caplog.set_level("DEBUG", logger="westwind")
    rows = [{**row, "reference": "x"} for row in make_conversations(PROMPTS, seed=21)]
    for index, row in enumerate(rows):
        row["messages"][-2]["content"] += f" #{index}"
    prompts_path = write_jsonl(tmp_path / "prompts.jsonl", rows)

    with FaultProxy(server) as proxy:
        # transformers serve ignores temperature (greedy), so the pool varies max_new_tokens instead.
        generators = [
            {
                "model": str(tiny_model),
                "name": f"served-tiny-{tokens}",
                "n": n,
                "sampling": {"max_new_tokens": tokens, "temperature": 0.8},
                **endpoint(proxy.base_url),
            }
            for n, tokens in ((2, 8), (1, 3))
        ]
        section = {
            "prompts": {"datasets": [{"path": str(prompts_path)}], "column": "messages"},
            "generators": generators,
            "judge": {"kind": "verifier", "function": "aift_helpers:hash_score"},
        }
        recipe_path = write_recipe(tmp_path, tiny_model, section)
        assert aift_stage.cli([str(recipe_path), "--no-progress"]) == 0

        # The same backend serves LLM judges: a pairwise verdict through the faulty endpoint.
        judge_config = JudgeConfig(
            kind="pairwise",
            model=str(tiny_model),
            sampling=SamplingConfig(max_new_tokens=8),
            max_reasks=1,
            **endpoint(proxy.base_url),
        )
        judge = make_judge(judge_config, resolve_model(judge_config, None))
        (verdict,) = judge.verdicts([("reverse: cat dog", "dog cat", "cat dog")])
        assert verdict.error is None  # every injected fault was retried away

    stats = json.loads((load_recipe(recipe_path).stage_dir("aift") / "stats.json").read_text())
    assert stats["prompts"]["missing"] == 0 and stats["judged"] == PROMPTS
    assert stats["candidates"] == 3 * PROMPTS
    assert stats["duplicate_candidates"] >= PROMPTS  # greedy server: the two 8-token samples match
    generation_failures = Counter(stats["generation_failures"])
    assert generation_failures.pop("failed_items") == 0
    counted = generation_failures + verdict.request_failures
    assert sum(proxy.injected.values()) >= 6 and set(proxy.injected) == set(FaultProxy.KINDS)
    assert counted == proxy.injected
    assert dict(proxy.passed) == {200: proxy.calls - sum(proxy.injected.values())}
    assert verdict.parse_failures["no_verdict"] >= 1  # the tiny model cannot answer as a judge
    assert verdict.value is None and verdict.failure == "no_verdict"  # no verdict, not a tie

    records = read_jsonl(load_recipe(recipe_path).stage_dir("aift") / "ratings.jsonl")
    for candidate in (c for r in records for c in r["candidates"]):
        assert candidate["model"] in ("served-tiny-8", "served-tiny-3") and candidate["backend"] == "openai"
        assert candidate["params"]["sampling"]["temperature"] == 0.8

    assert proxy.authorizations == {f"Bearer {API_KEY}"}
    captured = capfd.readouterr()
    outputs = [
        p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".arrow"
    ]
    for text in [captured.out, captured.err, caplog.text, *outputs]:
        assert "SECRET-4242" not in text
