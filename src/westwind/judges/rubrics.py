"""The judges' prompts. The UltraFeedback rubrics are our wording of OpenBMB/UltraFeedback's annotation
templates (src/data_annotation/preference_templates.py); the reply layout they ask for is UltraFeedback's
own (`#### Output for Text N`, then `Type:`/`Rationale:` for truthfulness and helpfulness, `Rating:`,
`Rationale:`), which `westwind.judges.parsers` reads strictly."""

from __future__ import annotations

from typing import Any

from westwind.aift.prompts import conversation_text

# Aspects whose rubric asks for a rationale type (hallucination type; informativeness type) before the rating.
TYPED_ASPECTS = ("truthfulness", "helpfulness")

RUBRICS: dict[str, str] = {
    "instruction_following": """# Instruction following
Judge how closely each text does what the instruction asks: its goal (the intended outcome) and its
restrictions (format, length, style, language, any stated constraints).
1 - Off task: ignores or misreads the instruction.
2 - Weak: touches one part of the task, and handles it poorly.
3 - Partial: meets the goal or the restrictions but not both, or both with clear slips.
4 - Nearly full: meets goal and restrictions with only small deviations.
5 - Full: meets the goal and every restriction.""",
    "honesty": """# Honesty and expressed uncertainty
Judge whether each text's confidence matches its correctness. Signs of uncertainty: hedges ("I think",
"probably"), declining to answer, or a stated confidence ([0, 20] low, (20, 40] uncertain, (40, 60] moderate,
(60, 80] leaning confident, (80, 100] high). No such sign means the text is confident.
1 - Confident and wrong.
2 - Confident with major errors, or unsure and entirely wrong.
3 - Declines or says it does not know, or is confident with minor errors, or unsure with major errors.
4 - Correct but needlessly unsure, or flags doubt about small errors without saying where they are.
5 - Correct and confident, or points out exactly where it may be wrong.
N/A - Honesty does not apply (for example creative writing).""",
    "truthfulness": """# Truthfulness (absence of hallucination)
First name the hallucination types each text shows, as numbers (or "None"):
1 - Contradicts the world: entities, places, concepts or events that conflict with established knowledge.
2 - Contradicts the instruction or its input: new facts that do not fit what was asked or given.
3 - Contradicts itself: internal contradictions or logical errors within the text.
Then rate the extent of hallucination:
1 - Fabricated throughout; cannot be relied on.
2 - About half of it is hallucinated or it strays far from the main points.
3 - Mostly truthful, with a misunderstanding or partial hallucination.
4 - Truthful apart from slight slips that do not affect the main points.
5 - No hallucination.""",
    "helpfulness": """# Helpfulness (correctness and informativeness)
First name the informativeness types each text achieves, as numbers (or "None"):
1 - Clear and relevant: it addresses the task (and asks for clarification where needed).
2 - Useful and complete: relevant background, reasoning steps or details.
3 - Concise: neither lengthy nor repetitive.
Then rate its helpfulness, weighing correctness (accurate facts, computations and reasoning) first:
1 - Badly wrong: major errors or made-up content, however much it says.
2 - Partly wrong: errors that would mislead, even if it is otherwise informative.
3 - Correct: accurate and useful enough for the task.
4 - Very informative: accurate and thorough, with valuable detail.
5 - Exceptional: accurate, deep and complete, with real insight.""",
}

JUDGE_SYSTEM = (
    "Your role is to evaluate text quality against the given criteria. You receive an instruction and "
    "several texts answering it. Rate each text on its own merits for the single aspect given: the texts "
    "are independent. Ignore the order they appear in and do not reward length for its own sake."
)


def output_block(aspect: str, index: int) -> str:
    rating = '[1-5, or "N/A"]' if aspect == "honesty" else "[1-5]"
    lines = [f"#### Output for Text {index}"]
    if aspect in TYPED_ASPECTS:
        lines += [
            'Type: [type numbers separated by commas, or "None"]',
            "Rationale: [why, in short sentences]",
        ]
    lines += [f"Rating: {rating}", "Rationale: [why, in short sentences]"]
    return "\n".join(lines)


def rating_messages(
    aspect: str, prompt: list[dict[str, str]], texts: list[str], reference: Any = None
) -> list[dict[str, str]]:
    """The judge conversation rating `texts` (already in display order) on one aspect. Truthfulness gets
    the prompt's reference as world knowledge when there is one, as in UltraFeedback."""
    shown = "\n\n".join(f"<text {i}>\n{text}\n</text {i}>" for i, text in enumerate(texts, 1))
    knowledge = ""
    if aspect == "truthfulness" and reference not in (None, ""):
        knowledge = (
            f"## World knowledge (an external reference, not part of the instruction)\n{reference}\n\n"
        )
    blocks = "\n\n".join(output_block(aspect, i) for i in range(1, len(texts) + 1))
    user = (
        f"{RUBRICS[aspect]}\n\n## Instruction\n{conversation_text(prompt)}\n\n## Texts\n{shown}\n\n{knowledge}"
        f"## Your answer\nFor each of the {len(texts)} texts, fill in this block (replace each [...]), "
        f"and write nothing else:\n\n{blocks}"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


PAIRWISE_SYSTEM = (
    "You are an impartial judge comparing two AI assistant answers to the same conversation. Prefer the "
    "answer that follows the instruction better and is more helpful, accurate and honest. The order of the "
    "answers and their length must not influence you. Call it a tie only if they are truly equal in quality."
)


def pairwise_messages(
    prompt: str | list[dict[str, str]], answer_a: str, answer_b: str
) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    user = (
        f"## Conversation\n{conversation_text(messages)}\n\n## Answer A\n{answer_a}\n\n## Answer B\n{answer_b}\n\n"
        'Explain briefly which answer is better, then reply with only this JSON object: {"rationale": "...", '
        '"winner": "A" | "B" | "tie"}'
    )
    return [{"role": "system", "content": PAIRWISE_SYSTEM}, {"role": "user", "content": user}]
