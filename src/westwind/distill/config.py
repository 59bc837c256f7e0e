"""The recipe's `distill:` section: seed tasks -> bootstrapped instructions -> teacher dialogues -> dSFT rows.

Validated by `westwind.recipe.schema.build(DistillConfig, raw, "distill")` like `aift:`. See docs/distill.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from westwind.aift.config import (
    DecontaminationConfig,
    EndpointConfig,
    JudgeConfig,
    PromptsConfig,
    SamplingConfig,
    key,
)

# Self-Instruct's filter (Wang et al. 2023): instructions about things a text model cannot see or do.
UNSUITABLE_KEYWORDS = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
)


@dataclass
class InstructionsConfig:
    """Self-Instruct bootstrapping: few-shot prompts of seed + generated instructions, kept when novel."""

    seed_tasks: str = key(help="JSONL in the Self-Instruct seed format (instruction, instances).")
    sampling: SamplingConfig = key(help="The teacher's sampling for an instruction list.")
    target: int = key(100, help="Stop once this many instructions are kept.")
    seeds_per_prompt: int = key(6, help="Human seed instructions shown per prompt.")
    generated_per_prompt: int = key(2, help="Already kept instructions shown per prompt.")
    new_per_prompt: int = key(8, help="How many new instructions a prompt asks for.")
    requests_per_round: int = key(8, help="Prompts sent at once; kept instructions update between rounds.")
    max_rounds: int = key(100, help="Give up (with a count) after this many rounds.")
    rouge_threshold: float = key(
        0.7, help="Drop an instruction whose ROUGE-L F1 with a kept one reaches this."
    )
    min_words: int = key(3, help="Drop instructions shorter than this (words).")
    max_words: int = key(150, help="Drop instructions longer than this (words).")
    unsuitable_keywords: list[str] = key(
        factory=lambda: list(UNSUITABLE_KEYWORDS),
        help="Drop instructions containing any of these words (Self-Instruct's list by default).",
    )

    def __post_init__(self) -> None:
        for name in ("target", "seeds_per_prompt", "new_per_prompt", "requests_per_round", "max_rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.generated_per_prompt < 0 or not 0 < self.rouge_threshold <= 1:
            raise ValueError("generated_per_prompt must be >= 0 and rouge_threshold in (0, 1]")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError("need 1 <= min_words <= max_words")


@dataclass
class DialoguesConfig:
    """UltraChat-style dialogues: the teacher answers, a user simulator writes the next user turn."""

    sampling: SamplingConfig = key(help="The teacher's sampling for an assistant turn.")
    prompts: PromptsConfig | None = key(
        None, help="Opening prompts from datasets (unset: the bootstrapped instructions)."
    )
    user: EndpointConfig | None = key(None, help="The user simulator's endpoint (unset: the teacher).")
    user_sampling: SamplingConfig | None = key(
        None, help="The simulator's sampling (unset: the assistant's)."
    )
    system_prompt: str | None = key(
        None, help="The teacher's system prompt while answering (not stored in rows)."
    )
    turn_weights: list[float] = key(
        factory=lambda: [1.0], help="Weight of 1, 2, 3... assistant turns per dialogue, e.g. [0.5, 0.3, 0.2]."
    )

    def __post_init__(self) -> None:
        if not self.turn_weights or any(w < 0 for w in self.turn_weights) or sum(self.turn_weights) <= 0:
            raise ValueError("turn_weights must be non-negative with a positive sum")


@dataclass
class QualityConfig:
    """LIMA-style "less but better": a judge scores each dialogue's last answer in context; the best are kept."""

    judge: JudgeConfig = key(help="An AIFT judge: ultrafeedback, reward_model or verifier.")
    keep: int | None = key(None, help="Keep the best this many dialogues (unset: all).")
    min_score: float | None = key(None, help="Drop dialogues scored below this.")

    def __post_init__(self) -> None:
        if self.judge.kind == "pairwise":
            raise ValueError(
                "a pairwise judge compares two answers; use ultrafeedback, reward_model or verifier"
            )
        if self.keep is not None and self.keep < 1:
            raise ValueError("keep must be at least 1")


@dataclass
class DistillConfig:
    teacher: EndpointConfig = key(help="The teacher model (any AIFT backend).")
    dialogues: DialoguesConfig = key(help="How dialogues are written.")
    instructions: InstructionsConfig | None = key(
        None, help="Self-Instruct bootstrapping (unset: dialogues.prompts)."
    )
    decontaminate: DecontaminationConfig | None = key(
        None, help="Drop instructions sharing a word n-gram with an eval set."
    )
    quality: QualityConfig | None = key(
        None, help="Score dialogues with a judge and keep the best (LIMA-style)."
    )
    seed: int = key(42, help="Seeds every sample and draw.")
    test_split_size: float | None = key(None, help="Fraction held out as `test`.")
    chunk_size: int = key(32, help="Dialogues written (and persisted) per unit of work.")

    def __post_init__(self) -> None:
        if (self.instructions is None) == (self.dialogues.prompts is None):
            raise ValueError("set exactly one of distill.instructions and distill.dialogues.prompts")
        if self.test_split_size is not None and not 0 < self.test_split_size < 1:
            raise ValueError("test_split_size must be a fraction in (0, 1)")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
