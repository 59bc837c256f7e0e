"""UltraFeedback principles: the default distribution is UltraFeedback's; the draw is seeded and recorded."""

from __future__ import annotations

from collections import Counter

import pytest

from westwind.aift.config import GeneratorConfig, SamplingConfig
from westwind.aift.generate import generation_requests
from westwind.aift.principles import (
    PRINCIPLES,
    ULTRAFEEDBACK_WEIGHTS,
    draw_principle,
    principle_weights,
    with_system_prompt,
)
from westwind.aift.prompts import Prompt, prompt_id


def test_default_draw_follows_ultrafeedback_weights():
    weights = principle_weights(True)
    assert weights == ULTRAFEEDBACK_WEIGHTS and "harmlessness" not in weights
    draws = Counter(draw_principle(seed, weights)[0] for seed in range(4000))
    assert "harmlessness" not in draws
    assert draws["helpfulness"] / 4000 == pytest.approx(0.6, abs=0.03)
    # Verbalized calibration ("Confidence: NN%") is a tenth of the honesty draws, about 2% overall.
    assert draws["verbalized_calibration"] / 4000 == pytest.approx(0.02, abs=0.01)
    assert all(len(PRINCIPLES[name]) >= 3 for name in weights if name != "verbalized_calibration")


def test_principles_are_configurable_and_recorded_per_request():
    prompt = Prompt(prompt_id([{"role": "user", "content": "hi"}]), [{"role": "user", "content": "hi"}])
    only_honesty = GeneratorConfig(
        model="m", n=6, principles={"honesty": 1.0}, sampling=SamplingConfig(max_new_tokens=8)
    )
    requests = generation_requests(prompt, 0, only_honesty, seed=1)
    assert {r.key[1] for r in requests} == {"honesty"}
    assert all(r.messages[0]["content"] in PRINCIPLES["honesty"] for r in requests)
    with pytest.raises(ValueError, match="unknown principle 'kindness'"):
        GeneratorConfig(model="m", principles={"kindness": 1}, sampling=SamplingConfig(max_new_tokens=8))
    with pytest.raises(ValueError, match="at least one weight"):
        GeneratorConfig(model="m", principles={"honesty": 0}, sampling=SamplingConfig(max_new_tokens=8))


def test_principles_are_drawn_reproducibly_and_merged_into_system_turns():
    merged = with_system_prompt(
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}], "P"
    )
    assert merged == [{"role": "system", "content": "P\n\nBe terse."}, {"role": "user", "content": "hi"}]
    prompt = Prompt(prompt_id([{"role": "user", "content": "hi"}]), [{"role": "user", "content": "hi"}])
    generator = GeneratorConfig(model="m", n=4, principles=True, sampling=SamplingConfig(max_new_tokens=8))
    requests = generation_requests(prompt, 0, generator, seed=1)
    assert len(requests) == 4 and all(r.n == 1 for r in requests)
    assert all(r.messages[0]["role"] == "system" and r.messages[1:] == prompt.messages for r in requests)
    assert len({r.seed for r in requests}) == 4
    assert [r.key for r in requests] == [r.key for r in generation_requests(prompt, 0, generator, seed=1)]
    assert requests[0].sampling.temperature == 1.0  # the generator default when unset
