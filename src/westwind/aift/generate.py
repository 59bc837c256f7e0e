"""Candidates: each generator's completions for each prompt, journaled per prompt as they finish."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

from westwind.aift.config import GeneratorConfig
from westwind.aift.principles import draw_principle, principle_mix
from westwind.aift.prompts import Prompt, with_system_prompt
from westwind.aift.workspace import GENERATED_KEY, ShardRun
from westwind.generation import ChatRequest, Result, build_backend, resolved_sampling
from westwind.io import Journal
from westwind.seeding import stable_seed


def generator_label(generator: GeneratorConfig) -> str:
    return generator.name or generator.model


def generation_requests(
    prompt: Prompt, index: int, generator: GeneratorConfig, seed: int
) -> list[ChatRequest]:
    """One request with n samples, or n one-sample requests each under its own drawn principle."""
    sampling = resolved_sampling(generator.sampling, default_temperature=1.0)
    base_seed = stable_seed(seed, prompt.prompt_id, index)
    mix = principle_mix(generator.principles)
    if mix is None:
        return [ChatRequest((prompt.prompt_id, None, 0), prompt.messages, sampling, generator.n, base_seed)]
    weights, requests = mix.weights_for(prompt.source), []
    for sample in range(generator.n):
        principle, system = draw_principle(stable_seed(base_seed, sample, "principle"), weights)
        messages = with_system_prompt(prompt.messages, system)
        key = (prompt.prompt_id, principle, sample)
        requests.append(ChatRequest(key, messages, sampling, 1, base_seed + sample))
    return requests


def per_prompt(results: Iterable[Result], expected: int) -> Iterator[tuple[str, list[Result]]]:
    """(prompt id, its results in request order) as soon as all `expected` results of a prompt are in."""
    waiting: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        prompt_id = result.request.key[0]
        waiting[prompt_id].append(result)
        if len(waiting[prompt_id]) == expected:
            # Async backends finish in any order; candidates are stored in request order.
            yield prompt_id, sorted(waiting.pop(prompt_id), key=lambda r: r.request.key[2])


def generated_record(
    prompt_id: str, results: list[Result], index: int, generator: GeneratorConfig, key: str
) -> dict:
    failures = sum((r.failures for r in results), Counter())
    errors = [r.error for r in results if r.error]
    record = {"prompt_id": prompt_id, "generator": index, "fingerprint": key}
    if errors:
        return {**record, "status": "failed", "error": errors[0], "failures": dict(failures)}
    candidates = [
        candidate(generator, result, sample, completion)
        for result in results
        for sample, completion in enumerate(result.completions)
    ]
    return {**record, "status": "ok", "candidates": candidates, "failures": dict(failures)}


def candidate(generator: GeneratorConfig, result: Result, sample: int, completion) -> dict:
    request = result.request
    return {
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "model": generator_label(generator),
        "backend": generator.backend,
        "principle": request.key[1],
        "params": {
            "model": generator.model,
            "sampling": dataclasses.asdict(request.sampling),
            "seed": request.seed,
            "sample": sample,
        },
    }


def generate(run: ShardRun, journal: Journal) -> None:
    config, prompts, models, keys = run.config, run.prompts, run.models, run.keys
    done = run.workspace.finished("generated.jsonl", *GENERATED_KEY)
    for index, generator in enumerate(config.generators):
        todo = [p for p in prompts if keys.generated(p, index) not in done]
        if not todo:
            continue
        backend = build_backend(generator, models.generators[index], config.seed)
        expected = generator.n if principle_mix(generator.principles) is not None else 1
        label = generator_label(generator)
        by_id = {p.prompt_id: p for p in todo}
        try:
            for chunk, bar in run.in_chunks(todo, f"generate {label}"):
                requests = [r for p in chunk for r in generation_requests(p, index, generator, config.seed)]
                for prompt_id, results in per_prompt(backend.run(requests), expected):
                    key = keys.generated(by_id[prompt_id], index)[2]
                    journal.append(generated_record(prompt_id, results, index, generator, key))
                    bar.update(1)
        finally:
            backend.close()
