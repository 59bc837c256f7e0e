"""UltraFeedback's principles: a system prompt drawn per completion to diversify the candidate pool.

Source: OpenBMB/UltraFeedback, src/comparison_data_generation/main_vllm.py (`principles`, `sample_principle`).
There the principle is drawn per prompt subset (source): ShareGPT and UltraChat draw helpfulness 3 :
truthfulness 1 : honesty 1; FLAN helpfulness 4 : verbalized calibration 1; TruthfulQA and FalseQA honesty 1 :
truthfulness 1; Evol-Instruct and any other source helpfulness only; and every honesty draw becomes verbalized
calibration 10% of the time. Harmlessness is never drawn. `principles: true` applies the general-chat mix to
every prompt; `principles: ultrafeedback` (the preset `ULTRAFEEDBACK_BY_SOURCE`) draws per source, read from
the prompts' `source` column (openbmb/UltraFeedback has one: sharegpt, ultrachat, flan_v2_*, evol_instruct,
truthful_qa, false_qa). The system prompts are our own wording of UltraFeedback's (it has about ten per
principle); the calibration prompt keeps its `Confidence: NN%` output format, which the honesty rubric reads.

The setting (`GeneratorConfig.principles`) takes these forms:

    principles: false                              # none
    principles: true                               # UltraFeedback's general-chat mix for every prompt
    principles: {helpfulness: 3, honesty: 1}       # one mix for every prompt
    principles: ultrafeedback                      # UltraFeedback's mixes by the `source` column
    principles:
      source: "@dataset"                           # a prompt column, or @dataset: the mixture entry's path
      by_source:                                   # a preset name, or source -> mix
        data/chat.jsonl: {helpfulness: 3, truthfulness: 1, honesty: 1}
        default: {helpfulness: 1}                  # sources not listed (without it: an error)

A source picks the mix named exactly like it (case-insensitive), else the longest name it starts with (`flan`
covers `flan_v2_cot`), else `default`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

PRINCIPLES: dict[str, list[str]] = {
    "helpfulness": [
        "You are a helpful assistant. Give accurate, relevant and current information, and make the answer "
        "engaging and educational.",
        "Your job is to be a dependable source of help: check your facts, answer what was asked, and add the "
        "detail that makes the answer useful.",
        "Be an assistant people enjoy learning from: accurate, positive and engaging, so each answer teaches "
        "something.",
        "Give answers that are both correct and interesting, with enough background and steps that the user "
        "can act on them.",
        "Make every reply informative and clear: relevant facts, sound reasoning, and no filler.",
    ],
    "harmlessness": [
        "You are a careful assistant. Never give advice that could cause physical, psychological or social "
        "harm, damage property or the environment; decline such requests.",
        "Help the user, but put safety first: do not suggest anything that could hurt people, their "
        "belongings or the institutions they rely on.",
        "Follow the rule 'first, do no harm': stay respectful, and refuse anything that could lead to injury "
        "or loss.",
    ],
    "honesty": [
        "Be honest about what you know. Answer confidently when you are sure, say so plainly when you are "
        "not ('I think', 'probably'), and answer 'I don't know' when you don't.",
        "Honesty builds trust: if you are unsure of an answer, say that you are unsure instead of guessing.",
        "It is fine not to know something. When a question is outside what you know, admit it rather than "
        "inventing an answer.",
        "Give reliable information, and whenever you are not certain about part of it, say which part.",
        "Prefer acknowledging uncertainty over giving possibly wrong information; flag doubt with phrases "
        "such as 'I'm not sure'.",
    ],
    "verbalized_calibration": [
        "At the end of your response, state how confident you are that your answer is correct, as a "
        "percentage. Use exactly this format on the last line:\nConfidence: [a number only, e.g. 80%]",
    ],
    "truthfulness": [
        "Answer truthfully and stay faithful to established facts and to the context you were given; never "
        "invent facts that are untrue or cannot be grounded in the instruction.",
        "Stick to verified, accurate information and the task's own context; do not make up new facts.",
        "Be precise and factual in every answer and avoid speculation; if a question rests on a false "
        "premise, say so.",
        "Keep your answers grounded in truth: objective, credible, and free of fabricated details.",
        "Make sure nothing you say is misleading: give only information you can stand behind.",
    ],
}

# UltraFeedback's draw for its general-chat pools: 3/5 helpfulness, 1/5 truthfulness, 1/5 honesty of which
# a tenth becomes verbalized calibration.
ULTRAFEEDBACK_WEIGHTS: dict[str, float] = {
    "helpfulness": 0.6,
    "truthfulness": 0.2,
    "honesty": 0.18,
    "verbalized_calibration": 0.02,
}


_HONESTY_SPLIT = {"honesty": 0.9, "verbalized_calibration": 0.1}  # the honesty draw, as main_vllm.py
TRUTHFULQA_WEIGHTS: dict[str, float] = {
    "honesty": 0.5 * _HONESTY_SPLIT["honesty"],
    "verbalized_calibration": 0.5 * _HONESTY_SPLIT["verbalized_calibration"],
    "truthfulness": 0.5,
}
# main_vllm.py's `sample_principle`, by UltraFeedback's prompt subsets.
ULTRAFEEDBACK_BY_SOURCE: dict[str, dict[str, float]] = {
    "sharegpt": ULTRAFEEDBACK_WEIGHTS,
    "ultrachat": ULTRAFEEDBACK_WEIGHTS,
    "flan": {"helpfulness": 0.8, "verbalized_calibration": 0.2},
    "truthful_qa": TRUTHFULQA_WEIGHTS,
    "false_qa": TRUTHFULQA_WEIGHTS,
    "evol_instruct": {"helpfulness": 1.0},
    "default": {"helpfulness": 1.0},
}
PRESETS: dict[str, dict[str, dict[str, float]]] = {"ultrafeedback": ULTRAFEEDBACK_BY_SOURCE}
DATASET_SOURCE = "@dataset"  # `source: @dataset`: a prompt's source is its mixture entry's path


@dataclass(frozen=True)
class PrincipleMix:
    """A resolved `principles` setting: one mix for every prompt, or mixes by the prompts' source."""

    weights: dict[str, float] | None = None
    by_source: dict[str, dict[str, float]] | None = None
    source: str | None = None  # the prompts' column holding the source, or DATASET_SOURCE

    def weights_for(self, source: Any) -> dict[str, float]:
        """The mix for a prompt from `source` (ValueError when no mix matches and there is no default)."""
        if self.by_source is None:
            return dict(self.weights)
        name = "" if source is None else str(source).casefold()
        mixes = {k.casefold(): v for k, v in self.by_source.items()}
        if name in mixes:
            return dict(mixes[name])
        prefixes = [k for k in mixes if k != "default" and name.startswith(k)]
        if prefixes:
            return dict(mixes[max(prefixes, key=len)])
        if "default" in mixes:
            return dict(mixes["default"])
        raise ValueError(f"principles: no mix for source {source!r} and no `default` mix")


def principle_mix(setting: bool | str | dict[str, Any]) -> PrincipleMix | None:
    """The setting resolved (None: no principles); ValueError when it is malformed."""
    if setting is False or setting is None:
        return None
    if setting is True:
        return PrincipleMix(weights=dict(ULTRAFEEDBACK_WEIGHTS))
    if isinstance(setting, str):
        return PrincipleMix(by_source=preset(setting), source="source")
    if not isinstance(setting, dict):
        raise ValueError(f"principles: expected true/false, a preset name or a mapping, got {setting!r}")
    if "by_source" not in setting:
        check_weights(setting)
        return PrincipleMix(weights=dict(setting))
    unknown = sorted(set(setting) - {"by_source", "source"})
    if unknown:
        raise ValueError(
            f"principles: unknown key(s) {', '.join(unknown)} beside by_source (allowed: source)"
        )
    source = setting.get("source", "source")
    if not isinstance(source, str) or not source:
        raise ValueError("principles.source: a prompt column name, or @dataset")
    mixes = setting["by_source"]
    if isinstance(mixes, str):
        mixes = preset(mixes)
    if not isinstance(mixes, dict) or not mixes:
        raise ValueError("principles.by_source: a preset name or a mapping source -> {principle: weight}")
    for name, weights in mixes.items():
        if not isinstance(weights, dict):
            raise ValueError(f"principles.by_source.{name}: expected {{principle: weight}}, got {weights!r}")
        check_weights(weights, f"principles.by_source.{name}")
    return PrincipleMix(by_source={str(k): dict(v) for k, v in mixes.items()}, source=source)


def preset(name: str) -> dict[str, dict[str, float]]:
    if name not in PRESETS:
        raise ValueError(f"principles: unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    return {k: dict(v) for k, v in PRESETS[name].items()}


def check_weights(weights: dict[str, float], where: str = "principles") -> None:
    """Raise ValueError unless `weights` maps known principles to non-negative numbers, some positive."""
    for name, weight in weights.items():
        if name not in PRINCIPLES:
            raise ValueError(f"{where}: unknown principle {name!r}; known: {', '.join(sorted(PRINCIPLES))}")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ValueError(f"{where}.{name}: the weight must be a number >= 0, got {weight!r}")
    if not any(weights.values()):
        raise ValueError(f"{where}: at least one weight must be positive")


def principle_weights(setting: bool | dict[str, float]) -> dict[str, float]:
    """The one mix of a setting that has one: `true` means UltraFeedback's general mix; `false` means none."""
    mix = principle_mix(setting)
    if mix is not None and mix.by_source is not None:
        raise ValueError("principles: this setting has a mix per source; use principle_mix(...).weights_for")
    return mix.weights if mix is not None else {}


def draw_principle(seed: int, weights: dict[str, float]) -> tuple[str, str]:
    """A (principle, system prompt) pair drawn from `weights`, reproducibly from `seed`."""
    rng = random.Random(seed)
    names = sorted(n for n, w in weights.items() if w > 0)
    name = rng.choices(names, weights=[weights[n] for n in names])[0]
    return name, rng.choice(PRINCIPLES[name])
