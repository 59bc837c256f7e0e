"""UltraFeedback's principles: a system prompt drawn per completion to diversify the candidate pool.

Source: OpenBMB/UltraFeedback, src/comparison_data_generation/main_vllm.py (`principles`, `sample_principle`).
There the principle is drawn per prompt subset; for its general-chat pools (ShareGPT, UltraChat) the draw is
helpfulness 3 : truthfulness 1 : honesty 1, and an honesty draw becomes verbalized calibration 10% of the time.
Harmlessness is never drawn for the main pools. Those weights are the default here. The system prompts are
our own wording of UltraFeedback's (it has about ten per principle); the calibration prompt keeps its
`Confidence: NN%` output format, which the honesty rubric reads.
"""

from __future__ import annotations

import random

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


def check_weights(weights: dict[str, float]) -> None:
    """Raise ValueError unless `weights` maps known principles to non-negative numbers, some positive."""
    for name, weight in weights.items():
        if name not in PRINCIPLES:
            raise ValueError(
                f"principles: unknown principle {name!r}; known: {', '.join(sorted(PRINCIPLES))}"
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ValueError(f"principles.{name}: the weight must be a number >= 0, got {weight!r}")
    if not any(weights.values()):
        raise ValueError("principles: at least one weight must be positive")


def principle_weights(setting: bool | dict[str, float]) -> dict[str, float]:
    """The configured distribution: `true` means UltraFeedback's; `false` means none."""
    if setting is True:
        return dict(ULTRAFEEDBACK_WEIGHTS)
    return dict(setting) if setting else {}


def draw_principle(seed: int, weights: dict[str, float]) -> tuple[str, str]:
    """A (principle, system prompt) pair drawn from `weights`, reproducibly from `seed`."""
    rng = random.Random(seed)
    names = sorted(n for n, w in weights.items() if w > 0)
    name = rng.choices(names, weights=[weights[n] for n in names])[0]
    return name, rng.choice(PRINCIPLES[name])


def with_system_prompt(messages: list[dict[str, str]], system: str) -> list[dict[str, str]]:
    """Prepend `system` (merged into an existing system turn: many templates allow only one)."""
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{system}\n\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": system}, *messages]
