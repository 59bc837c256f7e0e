"""AIFT generation: how close westwind's backends run to the engine behind them.

    python benchmarks/bench_aift.py [--prompts 32] [--concurrency 4] [--max-new-tokens 16]

1. `openai` backend vs raw server: a real `transformers serve` on 127.0.0.1 (the tiny model). The same
   requests go (a) through a minimal direct client loop (plain `openai.AsyncOpenAI`, a semaphore of the same
   concurrency) and (b) through westwind's OpenAIBackend; interleaved, `--rounds` times. Client overhead % =
   westwind time / raw time - 1.
2. `transformers` backend: length-bucketed batches (batch_size 8) vs one prompt at a time (batch_size 1),
   same prompts, greedy; generated tokens/s ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import ENV, REPO, build_tiny_model, print_table, save_result, seed_pairs
from westwind.aift.config import EndpointConfig, SamplingConfig
from westwind.generation import ChatRequest, Result, build_backend


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: Path, work: Path) -> tuple[subprocess.Popen, str]:
    """`transformers serve` offline on loopback; returns the process and its /v1 base URL once healthy."""
    port = free_port()
    home = work / "hf-home"
    (home / "hub").mkdir(parents=True, exist_ok=True)
    env = {**ENV, "HF_HOME": str(home)}
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    log = (work / "serve.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited: {(work / 'serve.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.25)
    process.terminate()
    raise RuntimeError("transformers serve did not become healthy within 180 s")


def requests_for(count: int, max_new_tokens: int) -> list[ChatRequest]:
    pairs = seed_pairs()
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    return [
        ChatRequest(
            key=i, messages=[{"role": "user", "content": pairs[i % len(pairs)][0]}], sampling=sampling
        )
        for i in range(count)
    ]


async def raw_client_loop(
    base_url: str, model: str, requests: list[ChatRequest], concurrency: int
) -> list[str]:
    """The server's throughput as a minimal client sees it: plain openai client, bounded concurrency."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=120)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(request: ChatRequest) -> str:
        async with semaphore:
            response = await client.chat.completions.create(
                model=model,
                messages=request.messages,
                max_tokens=request.sampling.max_new_tokens,
                temperature=request.sampling.temperature,
                top_p=request.sampling.top_p,
                seed=request.seed,  # the same payload westwind's backend sends
            )
        return response.choices[0].message.content or ""

    try:
        return await asyncio.gather(*(one(r) for r in requests))
    finally:
        await client.close()


def run_backend(backend, requests: list[ChatRequest]) -> list[Result]:
    results: list[Result] = []
    backend.run(requests, results.append)
    failed = [r for r in results if r.completions is None]
    if failed:
        raise RuntimeError(f"{len(failed)} request(s) failed: {failed[0].error}")
    return results


def timed(function, *args) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - start, value


def bench_openai(
    model: Path, work: Path, prompts: int, concurrency: int, max_new_tokens: int, rounds: int
) -> dict:
    server, base_url = start_server(model, work)
    try:
        endpoint = EndpointConfig(
            model=str(model),
            backend="openai",
            base_url=base_url,
            concurrency=concurrency,
            timeout=120,
            max_retries=2,
        )
        backend = build_backend(endpoint)
        requests = requests_for(prompts, max_new_tokens)
        asyncio.run(raw_client_loop(base_url, str(model), requests[:concurrency], concurrency))  # warm-up
        raw_times, westwind_times = [], []
        for round_index in range(rounds):
            raw_s, _ = timed(
                lambda: asyncio.run(raw_client_loop(base_url, str(model), requests, concurrency))
            )
            westwind_s, _ = timed(run_backend, backend, requests)
            raw_times.append(raw_s)
            westwind_times.append(westwind_s)
            print(
                f"  round {round_index + 1}: raw {raw_s:.2f} s, westwind openai backend {westwind_s:.2f} s",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    raw_s, westwind_s = statistics.median(raw_times), statistics.median(westwind_times)
    return {
        "prompts": prompts,
        "concurrency": concurrency,
        "max_new_tokens": max_new_tokens,
        "raw_candidates_per_s": prompts / raw_s,
        "westwind_candidates_per_s": prompts / westwind_s,
        "throughput_ratio": raw_s / westwind_s,
        "client_overhead_pct": 100 * (westwind_s / raw_s - 1),
        # the least-disturbed round of each side: the shared VM's load adds noise to medians
        "client_overhead_pct_best_rounds": 100 * (min(westwind_times) / min(raw_times) - 1),
        "raw_times_s": raw_times,
        "westwind_times_s": westwind_times,
    }


def bench_transformers(model: Path, prompts: int, max_new_tokens: int, rounds: int) -> dict:
    import torch

    torch.set_num_threads(1)  # the VM is shared; both sides get the same single thread
    requests = requests_for(prompts, max_new_tokens)
    batched = build_backend(EndpointConfig(model=str(model), batch_size=8, device="cpu"))
    single = build_backend(EndpointConfig(model=str(model), batch_size=1, device="cpu"))
    tokenizer = batched.tokenizer

    def generated_tokens(results: list[Result]) -> int:
        return sum(
            len(tokenizer(c.text, add_special_tokens=False)["input_ids"])
            for r in results
            for c in r.completions
        )

    samples: dict[str, list[tuple[float, int]]] = {
        "batched (batch_size 8, length-bucketed)": [],
        "one at a time": [],
    }
    run_backend(batched, requests[:8])  # warm-up
    for round_index in range(rounds):
        for name, backend in zip(samples, (batched, single), strict=True):
            seconds, results = timed(run_backend, backend, requests)
            samples[name].append((seconds, generated_tokens(results)))
            print(f"  round {round_index + 1}: {name}: {seconds:.2f} s", flush=True)
    summary = {}
    for name, runs in samples.items():
        seconds = statistics.median(s for s, _ in runs)
        tokens = statistics.median(t for _, t in runs)
        summary[name] = {
            "seconds": seconds,
            "tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "prompts_per_s": prompts / seconds,
        }
    batched_stats, single_stats = summary.values()
    return {
        "prompts": prompts,
        "max_new_tokens": max_new_tokens,
        "summary": summary,
        "tokens_per_s_ratio": batched_stats["tokens_per_s"] / single_stats["tokens_per_s"],
        "prompts_per_s_ratio": batched_stats["prompts_per_s"] / single_stats["prompts_per_s"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench" / "aift")
    parser.add_argument("--skip-openai", action="store_true")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(args.work.parent / "tiny-llama")

    result: dict[str, Any] = {"benchmark": "aift"}
    if not args.skip_openai:
        openai = bench_openai(
            model, args.work, args.prompts, args.concurrency, args.max_new_tokens, args.rounds
        )
        result["openai"] = openai
        print_table(
            f"AIFT openai backend vs raw client: {args.prompts} prompts, concurrency {args.concurrency}, "
            f"{args.max_new_tokens} new tokens",
            ["side", "candidates/s", "× raw"],
            [
                ["raw openai client loop", openai["raw_candidates_per_s"], 1.0],
                ["westwind openai backend", openai["westwind_candidates_per_s"], openai["throughput_ratio"]],
            ],
        )
        print(
            f"client overhead: {openai['client_overhead_pct']:+.1f}% median, "
            f"{openai['client_overhead_pct_best_rounds']:+.1f}% best rounds (target < 10%)"
        )
    local = bench_transformers(model, args.prompts, args.max_new_tokens, args.rounds)
    result["transformers"] = local
    rows = [[name, s["tokens_per_s"], s["prompts_per_s"]] for name, s in local["summary"].items()]
    print_table(
        "AIFT transformers backend: batched vs one at a time", ["side", "tokens/s", "prompts/s"], rows
    )
    print(f"batched / one-at-a-time tokens/s: {local['tokens_per_s_ratio']:.2f}x")
    print(f"wrote {save_result('aift', result)}")
    return result


if __name__ == "__main__":
    main()
