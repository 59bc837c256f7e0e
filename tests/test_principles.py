"""UltraFeedback principles: the default distribution is UltraFeedback's; the draw is seeded and recorded;
by-source mixes (the `ultrafeedback` preset) draw each prompt's principle from its source's mix."""

from __future__ import annotations

from collections import Counter

import pytest
from trl.scripts.utils import DatasetConfig

from westwind.aift.config import GeneratorConfig, PromptsConfig, SamplingConfig
from westwind.aift.generate import generation_requests
from westwind.aift.principles import (
    PRINCIPLES,
    ULTRAFEEDBACK_WEIGHTS,
    draw_principle,
    principle_mix,
    principle_weights,
)
from westwind.aift.prompts import Prompt, load_prompts, prompt_id
from westwind.aift.stats import principles_by_source


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


def test_principles_are_drawn_reproducibly_and_prepended_as_system_turns():
    prompt = Prompt(prompt_id([{"role": "user", "content": "hi"}]), [{"role": "user", "content": "hi"}])
    generator = GeneratorConfig(model="m", n=4, principles=True, sampling=SamplingConfig(max_new_tokens=8))
    requests = generation_requests(prompt, 0, generator, seed=1)
    assert len(requests) == 4 and all(r.n == 1 for r in requests)
    assert all(r.messages[0]["role"] == "system" and r.messages[1:] == prompt.messages for r in requests)
    assert len({r.seed for r in requests}) == 4
    assert [r.key for r in requests] == [r.key for r in generation_requests(prompt, 0, generator, seed=1)]
    assert requests[0].sampling.temperature == 1.0  # the generator default when unset


# ---------------------------------------------------------------- mixes by prompt source


def sourced_prompts(counts: dict[str, int]) -> list[Prompt]:
    prompts = []
    for source, count in counts.items():
        for index in range(count):
            messages = [{"role": "user", "content": f"{source} question {index}"}]
            prompts.append(Prompt(prompt_id(messages), messages, None, source))
    return prompts


def test_ultrafeedback_preset_mixes_follow_main_vllm():
    mix = principle_mix("ultrafeedback")
    assert mix.source == "source"
    assert mix.weights_for("sharegpt") == mix.weights_for("ultrachat") == ULTRAFEEDBACK_WEIGHTS
    assert mix.weights_for("flan_v2_cot") == {"helpfulness": 0.8, "verbalized_calibration": 0.2}
    qa = {"honesty": 0.45, "verbalized_calibration": 0.05, "truthfulness": 0.5}
    assert mix.weights_for("truthful_qa") == pytest.approx(qa) and mix.weights_for(
        "FALSE_QA"
    ) == pytest.approx(qa)
    assert mix.weights_for("evol_instruct") == mix.weights_for("some_new_set") == {"helpfulness": 1.0}


def test_a_mixed_source_prompt_set_draws_each_sources_mix():
    """Drawn counts per source match the preset within sampling error (4 binomial standard deviations)."""
    generator = GeneratorConfig(
        model="m", n=4, principles="ultrafeedback", sampling=SamplingConfig(max_new_tokens=8)
    )
    prompts = sourced_prompts({"sharegpt": 500, "flan_v2_niv2": 400, "false_qa": 400, "evol_instruct": 100})
    drawn: dict[str, Counter] = {}
    for prompt in prompts:
        requests = generation_requests(prompt, 0, generator, seed=7)
        drawn.setdefault(prompt.source, Counter()).update(r.key[1] for r in requests)
    preset = principle_mix("ultrafeedback")
    for source, counts in drawn.items():
        total = sum(counts.values())
        for name, weight in preset.weights_for(source).items():
            share = weight / sum(preset.weights_for(source).values())
            sigma = (share * (1 - share) / total) ** 0.5
            assert abs(counts[name] / total - share) <= 4 * sigma + 1e-9, (source, name, counts)
        assert set(counts) <= set(preset.weights_for(source)), (source, counts)
    assert set(drawn["evol_instruct"]) == {"helpfulness"}
    assert drawn["flan_v2_niv2"]["verbalized_calibration"] > 0 and "honesty" not in drawn["flan_v2_niv2"]


def test_a_custom_by_source_mix_with_a_default():
    setting = {
        "source": "@dataset",
        "by_source": {"data/chat.jsonl": {"helpfulness": 1}, "default": {"honesty": 1}},
    }
    mix = principle_mix(setting)
    assert mix.source == "@dataset"
    assert mix.weights_for("data/chat.jsonl") == {"helpfulness": 1}
    assert mix.weights_for("data/other.jsonl") == {"honesty": 1}
    without_default = principle_mix({"by_source": {"chat": {"helpfulness": 1}}})
    with pytest.raises(ValueError, match="no mix for source 'math'"):
        without_default.weights_for("math")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("ultrafeedbak", "unknown preset 'ultrafeedbak'"),
        (
            {"by_source": {"chat": {"kindness": 1}}},
            r"principles.by_source.chat: unknown principle 'kindness'",
        ),
        ({"by_source": {"chat": 3}}, "expected {principle: weight}"),
        ({"by_source": "ultrafeedback", "colum": "src"}, "unknown key"),
        ({"by_source": {}}, "a preset name or a mapping"),
    ],
)
def test_malformed_by_source_settings_are_rejected(setting, message):
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(model="m", principles=setting, sampling=SamplingConfig(max_new_tokens=8))


def test_principle_counts_by_source_in_stats():
    records = [
        {"source": "flan", "candidates": [{"principle": "helpfulness"}, {"principle": "helpfulness"}]},
        {"source": "sharegpt", "candidates": [{"principle": "honesty"}]},
        {"candidates": [{"principle": None}]},
    ]
    assert principles_by_source(records) == {"flan": {"helpfulness": 2}, "sharegpt": {"honesty": 1}}


def test_dataset_entry_as_the_source(tmp_path):
    """`source: @dataset`: a prompt's source is the path of the mixture entry it came from."""
    chat, maths = tmp_path / "chat.jsonl", tmp_path / "maths.jsonl"
    chat.write_text('{"prompt": "Say hi."}\n{"prompt": "Say bye."}\n')
    maths.write_text('{"prompt": "Add 2 and 3."}\n{"prompt": "Say hi."}\n')  # a duplicate keeps chat's source
    config = PromptsConfig(datasets=[DatasetConfig(path=str(chat)), DatasetConfig(path=str(maths))])
    prompts, counts = load_prompts(config, seed=0, source="@dataset")
    assert {p.text: p.source for p in prompts} == {
        "Say hi.": str(chat),
        "Say bye.": str(chat),
        "Add 2 and 3.": str(maths),
    }
    assert counts["duplicates"] == 1
