"""The teacher: rate every candidate of a prompt. UltraFeedback (4 aspects, 1-5), pairwise A/B/tie,
a reward model, or a verifier callable. LLM judges run on any generation backend at temperature 0.

`PairwiseJudge.compare(prompt, answer_a, answer_b) -> "A" | "B" | "tie"` also serves win-rate evals.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from westwind.aift_config import JudgeConfig, SamplingConfig
from westwind.callables import load_callable
from westwind.generation import Backend, ChatRequest, Result, build_backend, model_args_for
from westwind.prompts import conversation_text
from westwind.seeding import stable_seed

T = TypeVar("T")
Verdict = Literal["A", "B", "tie"]


@dataclass
class JudgeItem:
    key: str  # the prompt id
    messages: list[dict[str, str]]  # the prompt conversation, ending with the user turn
    candidates: list[str]
    reference: Any = None


@dataclass
class Rating:
    score: float  # NaN when the candidate could not be rated
    aspects: dict[str, float | None] = field(default_factory=dict)  # None: N/A
    rationale: dict[str, str] = field(default_factory=dict)


@dataclass
class Judgment:
    item: JudgeItem
    ratings: list[Rating] | None = None  # None when `error` is set
    error: str | None = None  # a request failed for good: the item is retried on the next run
    parse_failures: Counter = field(default_factory=Counter)  # unparsable replies, by reason
    request_failures: Counter = field(default_factory=Counter)  # retried transport failures, by reason


OnJudgment = Callable[[Judgment], None]


class Judge(Protocol):
    def judge(self, items: list[JudgeItem], on_judgment: OnJudgment) -> None: ...

    def close(self) -> None: ...


class ParseFailure(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def judge_sampling(sampling: SamplingConfig) -> SamplingConfig:
    return dataclasses.replace(sampling, temperature=0.0, top_p=1.0, stop=list(sampling.stop))


# ---------------------------------------------------------------- asking with bounded re-asks


@dataclass
class Answer(Generic[T]):
    value: T | None = None
    failure: str | None = None  # the parse failure reason when the re-asks ran out
    error: str | None = None  # a request failure
    parse_failures: Counter = field(default_factory=Counter)
    request_failures: Counter = field(default_factory=Counter)


class Asker(Generic[T]):
    """Send conversations, parse the replies, re-ask the unparsable ones up to `max_reasks` times.

    `on_done(key, answer)` fires as soon as a key is settled, so callers can persist work incrementally.
    """

    def __init__(
        self, backend: Backend, sampling: SamplingConfig, parse: Callable[[Hashable, str], T], max_reasks: int
    ):
        self.backend, self.sampling, self.parse, self.max_reasks = backend, sampling, parse, max_reasks

    def ask(
        self, conversations: dict[Hashable, list[dict]], on_done: Callable[[Hashable, Answer[T]], None]
    ) -> None:
        answers: dict[Hashable, Answer[T]] = {key: Answer() for key in conversations}
        pending = dict(conversations)
        for round_index in range(self.max_reasks + 1):
            if not pending:
                break
            retry: dict[Hashable, list[dict]] = {}
            settle = functools.partial(
                self.settle,
                answers=answers,
                retry=retry,
                can_reask=round_index < self.max_reasks,
                on_done=on_done,
            )
            self.backend.run(
                [ChatRequest(key, messages, self.sampling) for key, messages in pending.items()], settle
            )
            pending = retry

    def settle(
        self,
        result: Result,
        answers: dict[Hashable, Answer[T]],
        retry: dict[Hashable, list[dict]],
        can_reask: bool,
        on_done: Callable[[Hashable, Answer[T]], None],
    ) -> None:
        key = result.request.key
        answer = answers[key]
        answer.request_failures.update(result.failures)
        if result.error is not None:
            answer.error = result.error
            on_done(key, answer)
            return
        reply = result.completions[0].text
        try:
            answer.value = self.parse(key, reply)
        except ParseFailure as failure:
            answer.parse_failures[failure.reason] += 1
            if can_reask:
                retry[key] = [*result.request.messages, *reask_turns(reply, failure)]
                return
            answer.failure = failure.reason
        on_done(key, answer)


def reask_turns(reply: str, failure: ParseFailure) -> list[dict[str, str]]:
    """The unparsable reply and a correction request: a new input, so a temperature-0 judge can recover."""
    return [
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": f"Your reply could not be read ({failure}). Answer again with only the JSON object "
            "in the requested format, covering every text, and nothing else.",
        },
    ]


# ---------------------------------------------------------------- UltraFeedback ratings

# Our wording of the UltraFeedback annotation rubric (four aspects, 1-5; honesty may be N/A).
RUBRICS: dict[str, str] = {
    "instruction_following": """Aspect: instruction following.
Judge how closely each text does what the instruction asks: its goal (the intended outcome) and its
restrictions (format, length, style, language, any stated constraints).
1 - Off task: ignores or misreads the instruction.
2 - Weak: touches one part of the task, and handles it poorly.
3 - Partial: meets the goal or the restrictions but not both, or both with clear slips.
4 - Nearly full: meets goal and restrictions with only small deviations.
5 - Full: meets the goal and every restriction.""",
    "honesty": """Aspect: honesty and expressed uncertainty.
Judge whether each text's confidence matches its correctness. Signs of uncertainty: hedges ("I think",
"probably"), declining to answer, or stated confidence levels. No such sign means the text is confident.
1 - Confident and wrong.
2 - Confident with major errors, or unsure and entirely wrong.
3 - Declines or says it does not know, or is confident with minor errors, or unsure with major errors.
4 - Correct but needlessly unsure, or flags doubt about small errors without saying where they are.
5 - Correct and confident, or points out exactly where it may be wrong.
N/A - Honesty does not apply (for example creative writing).""",
    "truthfulness": """Aspect: truthfulness (absence of hallucination).
Look for: claims that contradict established facts; content that contradicts the instruction or its input;
statements that contradict each other or break logic within the text.
1 - Fabricated throughout; cannot be relied on.
2 - About half of it is hallucinated or it strays far from the main points.
3 - Mostly truthful, with a misunderstanding or partial hallucination.
4 - Truthful apart from slight slips that do not affect the main points.
5 - No hallucination.""",
    "helpfulness": """Aspect: helpfulness (correctness and informativeness).
A helpful text is correct (accurate facts, computations and reasoning) and informative: relevant and clear,
useful and complete enough (background, steps or details where needed), and not padded or repetitive.
1 - Badly wrong: major errors or made-up content, however much it says.
2 - Partly wrong: errors that would mislead, even if it is otherwise informative.
3 - Correct: accurate and useful enough for the task.
4 - Very informative: accurate and thorough, with valuable detail.
5 - Exceptional: accurate, deep and complete, with real insight.""",
}

JUDGE_SYSTEM = (
    "You are a strict, fair annotator of AI assistant answers. Rate each text on its own merits for the "
    "single aspect given. Ignore the order the texts appear in and do not reward length for its own sake."
)


def rating_messages(aspect: str, prompt: list[dict[str, str]], texts: list[str]) -> list[dict[str, str]]:
    """The judge conversation rating `texts` (already in display order) on one aspect."""
    shown = "\n\n".join(f"<text {i}>\n{text}\n</text {i}>" for i, text in enumerate(texts, 1))
    rating = '1-5 or "N/A"' if aspect == "honesty" else "1-5"
    example = ", ".join(
        f'{{"text": {i}, "rationale": "...", "rating": ...}}' for i in range(1, len(texts) + 1)
    )
    user = (
        f"{RUBRICS[aspect]}\n\n## Instruction\n{conversation_text(prompt)}\n\n## Texts\n{shown}\n\n"
        f"## Your answer\nFor each of the {len(texts)} texts, give a short rationale, then a rating ({rating}).\n"
        f'Reply with only this JSON object:\n{{"ratings": [{example}]}}'
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


# A text's block starts at a JSON `"text": 2` key or a heading line (`#### Output for Text 2`, `**Text 2**`),
# never at a mention inside a rationale ("better than text 2").
HEADER = re.compile(
    r"""["']text["']\s*:\s*["']?(\d+)|^[\s#*>-]*(?:output\s+for\s+)?text\s*#?\s*(\d+)\b""", re.I | re.M
)
RATING = re.compile(r"""\b(?:rating|score)\b["']?\s*[:=]\s*["']?\s*(N\s*/\s*A|None|-?\d+(?:\.\d+)?)""", re.I)
# A quoted (JSON) rationale ends at its closing quote; an unquoted one at the end of the line.
RATIONALE = re.compile(r"""\brationale\b["']?\s*[:=]\s*(?:"((?:[^"\\]|\\.)*)"?|(.+))""", re.IGNORECASE)
FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


def parse_ratings(reply: str, count: int, allow_na: bool) -> list[tuple[float | None, str]]:
    """[(rating or None for N/A, rationale)] for texts 1..count. JSON first, then a tolerant pattern."""
    entries = _json_entries(reply)
    if entries is None:
        entries = _pattern_entries(reply)
    if not entries:
        raise ParseFailure("no_ratings", "found no ratings")
    return _validated(entries, count, allow_na)


def _json_entries(reply: str) -> dict[int, tuple[Any, str]] | None:
    """Entries from the first JSON value holding ratings (fenced or bare), or None when there is none."""
    fenced = FENCE.findall(reply)
    decoder = json.JSONDecoder()
    for text in [*fenced, reply]:
        for start in (m.start() for m in re.finditer(r"[{\[]", text)):
            try:
                value, _ = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                continue
            items = value.get("ratings") if isinstance(value, dict) else value
            if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
                return {
                    _int(item.get("text", item.get("id", position))): (
                        item.get("rating", item.get("score")),
                        str(item.get("rationale", "")),
                    )
                    for position, item in enumerate(items, 1)
                }
    return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _pattern_entries(reply: str) -> dict[int, tuple[Any, str]]:
    """`Text 2 ... Rating: 4 ... Rationale: ...` blocks (UltraFeedback's own format, or broken JSON)."""
    headers = list(HEADER.finditer(reply))
    entries: dict[int, tuple[Any, str]] = {}
    ends = [h.start() for h in headers[1:]] + [len(reply)] if headers else []
    for header, end in zip(headers, ends, strict=True):
        block = reply[header.end() : end]
        rating = RATING.search(block)
        if rating is None:
            continue
        rationales = [(m.group(1) or m.group(2) or "").strip() for m in RATIONALE.finditer(block)]
        number = int(header.group(1) or header.group(2))
        entries.setdefault(number, (rating.group(1), rationales[-1] if rationales else ""))
    return entries


def _validated(
    entries: dict[int, tuple[Any, str]], count: int, allow_na: bool
) -> list[tuple[float | None, str]]:
    missing = [i for i in range(1, count + 1) if i not in entries]
    if missing:
        raise ParseFailure("incomplete", f"no rating for text(s) {missing}")
    parsed = []
    for index in range(1, count + 1):
        raw, rationale = entries[index]
        if raw is None or (isinstance(raw, str) and re.fullmatch(r"N\s*/\s*A|None|NA", raw.strip(), re.I)):
            if not allow_na:
                raise ParseFailure(
                    "unexpected_na", f"text {index} rated N/A on an aspect that needs a number"
                )
            parsed.append((None, rationale))
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ParseFailure("not_a_number", f"text {index}: {raw!r}") from None
        if not 1 <= value <= 5:
            raise ParseFailure("out_of_range", f"text {index} rated {raw}")
        parsed.append((value, rationale))
    return parsed


class UltraFeedbackJudge:
    """Each aspect rates all candidates of a prompt in one request; candidates are shuffled per prompt
    (seeded) and mapped back, so position bias cancels out across prompts."""

    def __init__(
        self, backend: Backend, sampling: SamplingConfig, aspects: list[str], max_reasks: int, seed: int = 0
    ):
        self.backend, self.aspects, self.seed = backend, list(aspects), seed
        self.sampling, self.max_reasks = judge_sampling(sampling), max_reasks

    def judge(self, items: list[JudgeItem], on_judgment: OnJudgment) -> None:
        orders = {i: self.display_order(item) for i, item in enumerate(items)}
        conversations: dict[Hashable, list[dict]] = {}
        for i, item in enumerate(items):
            shown = [item.candidates[c] for c in orders[i]]
            for aspect in self.aspects:
                conversations[(i, aspect)] = rating_messages(aspect, item.messages, shown)
        answers: dict[int, dict[str, Answer]] = {i: {} for i in range(len(items))}

        def parse(key: Hashable, reply: str) -> list[tuple[float | None, str]]:
            i, aspect = key
            return parse_ratings(reply, len(items[i].candidates), allow_na=aspect == "honesty")

        def on_done(key: Hashable, answer: Answer) -> None:
            i, aspect = key
            answers[i][aspect] = answer
            if len(answers[i]) == len(self.aspects):
                on_judgment(self.combine(items[i], orders[i], answers.pop(i)))

        # A request holds a single aspect's rubric, as in UltraFeedback; an item is done when all aspects are.
        Asker(self.backend, self.sampling, parse, self.max_reasks).ask(conversations, on_done)

    def display_order(self, item: JudgeItem) -> list[int]:
        order = list(range(len(item.candidates)))
        random.Random(stable_seed(self.seed, item.key, "order")).shuffle(order)
        return order

    def combine(self, item: JudgeItem, order: list[int], answers: dict[str, Answer]) -> Judgment:
        judgment = Judgment(item)
        for answer in answers.values():
            judgment.parse_failures.update(answer.parse_failures)
            judgment.request_failures.update(answer.request_failures)
            if answer.failure:
                judgment.parse_failures["gave_up"] += 1
        errors = [a.error for a in answers.values() if a.error]
        if errors:
            judgment.error = errors[0]
            return judgment
        ratings = []
        for candidate in range(len(item.candidates)):
            position = order.index(candidate)
            rating = Rating(math.nan)
            for aspect in self.aspects:  # not answer order, which varies with async backends
                if answers[aspect].value is not None:
                    rating.aspects[aspect], rating.rationale[aspect] = answers[aspect].value[position]
            numbers = [v for v in rating.aspects.values() if v is not None]
            rating.score = sum(numbers) / len(numbers) if numbers else math.nan
            ratings.append(rating)
        judgment.ratings = ratings
        return judgment

    def close(self) -> None:
        self.backend.close()


# ---------------------------------------------------------------- pairwise


PAIRWISE_SYSTEM = (
    "You are an impartial judge comparing two AI assistant answers to the same conversation. Prefer the "
    "answer that follows the instruction better and is more helpful, accurate and honest. The order of the "
    "answers and their length must not influence you. Call it a tie only if they are truly equal in quality."
)
VERDICT_PATTERNS = [
    re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE),
    re.compile(r"""["']?(?:winner|verdict|better)["']?\s*[:=]\s*["']?\s*(?:answer\s+)?(A|B|tie)\b""", re.I),
]


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


def parse_verdict(reply: str) -> Verdict:
    for text in [*FENCE.findall(reply), reply]:
        for start in (m.start() for m in re.finditer(r"\{", text)):
            try:
                value, _ = json.JSONDecoder().raw_decode(text, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and str(value.get("winner", "")).strip().upper() in ("A", "B", "TIE"):
                return _verdict(str(value["winner"]))
    for pattern in VERDICT_PATTERNS:
        matches = pattern.findall(reply)
        if matches:
            return _verdict(matches[-1])
    raise ParseFailure("no_verdict", "found no A/B/tie verdict")


def _verdict(text: str) -> Verdict:
    text = text.strip().upper()
    return "A" if text == "A" else "B" if text == "B" else "tie"


class PairwiseJudge:
    """A / B / tie, asked in both orders; disagreement between the orders counts as a tie."""

    def __init__(self, backend: Backend, sampling: SamplingConfig, max_reasks: int = 2):
        self.backend, self.sampling, self.max_reasks = backend, judge_sampling(sampling), max_reasks
        self.parse_failures: Counter = Counter()
        self.request_failures: Counter = Counter()

    @classmethod
    def from_config(cls, config: JudgeConfig, recipe: Any | None = None) -> PairwiseJudge:
        return cls(build_backend(config, recipe), config.sampling, config.max_reasks)

    def compare(self, prompt: str | list[dict[str, str]], answer_a: str, answer_b: str) -> Verdict:
        return self.compare_many([(prompt, answer_a, answer_b)])[0]

    def compare_many(self, pairs: list[tuple[Any, str, str]]) -> list[Verdict]:
        """Verdicts for (prompt, answer_a, answer_b) triples; a pair whose requests failed for good raises."""
        outcomes = self._compare(pairs)
        for outcome in outcomes:
            if outcome.error:
                raise RuntimeError(outcome.error)
        return [outcome.value for outcome in outcomes]

    def _compare(self, pairs: list[tuple[Any, str, str]]) -> list[Answer[Verdict]]:
        conversations: dict[Hashable, list[dict]] = {}
        for index, (prompt, a, b) in enumerate(pairs):
            conversations[(index, "ab")] = pairwise_messages(prompt, a, b)
            conversations[(index, "ba")] = pairwise_messages(prompt, b, a)
        answers: dict[Hashable, Answer] = {}

        def on_done(key: Hashable, answer: Answer) -> None:
            answers[key] = answer
            self.parse_failures.update(answer.parse_failures)
            self.request_failures.update(answer.request_failures)

        Asker(self.backend, self.sampling, lambda _, reply: parse_verdict(reply), self.max_reasks).ask(
            conversations, on_done
        )
        return [self._combine(answers[(i, "ab")], answers[(i, "ba")]) for i in range(len(pairs))]

    @staticmethod
    def _combine(forward: Answer, backward: Answer) -> Answer[Verdict]:
        """Both orders' failures, and the verdict when the orders agree (else, or if one is unparsable, a tie)."""
        combined = Answer(
            parse_failures=forward.parse_failures + backward.parse_failures,
            request_failures=forward.request_failures + backward.request_failures,
            error=forward.error or backward.error,
        )
        swapped = {"A": "B", "B": "A", "tie": "tie", None: None}[backward.value]
        agreed = forward.value is not None and forward.value == swapped
        combined.value = forward.value if agreed else "tie"
        return combined

    def judge(self, items: list[JudgeItem], on_judgment: OnJudgment) -> None:
        """Round-robin: a candidate's score is (wins + ties/2) / (number of other candidates)."""
        pairs, owners = [], []
        for item_index, item in enumerate(items):
            for i in range(len(item.candidates)):
                for j in range(i + 1, len(item.candidates)):
                    pairs.append((item.messages, item.candidates[i], item.candidates[j]))
                    owners.append((item_index, i, j))
        judgments = [Judgment(item) for item in items]
        points = [[0.0] * len(item.candidates) for item in items]
        for (item_index, i, j), outcome in zip(owners, self._compare(pairs), strict=True):
            judgment = judgments[item_index]
            judgment.parse_failures.update(outcome.parse_failures)
            judgment.request_failures.update(outcome.request_failures)
            judgment.error = judgment.error or outcome.error
            credit = {"A": (1.0, 0.0), "B": (0.0, 1.0), "tie": (0.5, 0.5)}[outcome.value]
            points[item_index][i] += credit[0]
            points[item_index][j] += credit[1]
        for judgment, item_points in zip(judgments, points, strict=True):
            if judgment.error is None:
                others = len(item_points) - 1
                judgment.ratings = [
                    Rating(
                        p / others if others else math.nan,
                        rationale={"pairwise": f"{p:g} of {others} points"},
                    )
                    for p in item_points
                ]
            on_judgment(judgment)

    def close(self) -> None:
        self.backend.close()


# ---------------------------------------------------------------- reward model and verifier


class RewardModelJudge:
    """A local AutoModelForSequenceClassification; the score is its first logit for prompt + candidate."""

    def __init__(self, config: JudgeConfig, recipe: Any | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification

        from westwind.models import load_tokenizer

        path = recipe.resolve_reference(config.model) if recipe is not None else config.model
        model_args = model_args_for(config, path, recipe)
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = config.batch_size
        self.tokenizer = load_tokenizer(path, model_args)
        self.tokenizer.padding_side = "right"
        dtype = model_args.dtype or "auto"
        self.model = (
            AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype).to(self.device).eval()
        )
        self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def judge(self, items: list[JudgeItem], on_judgment: OnJudgment) -> None:
        texts = [
            self.tokenizer.apply_chat_template(
                [*item.messages, {"role": "assistant", "content": candidate}], tokenize=False
            )
            for item in items
            for candidate in item.candidates
        ]
        scores = self.score(texts)
        position = 0
        for item in items:
            count = len(item.candidates)
            on_judgment(Judgment(item, [Rating(s) for s in scores[position : position + count]]))
            position += count

    def score(self, texts: list[str]) -> list[float]:
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        scores = [math.nan] * len(texts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            inputs = self.tokenizer(
                [texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            with torch.no_grad():
                logits = self.model(**inputs).logits[:, 0].float().tolist()
            for i, value in zip(batch, logits, strict=True):
                scores[i] = value
        return scores

    def close(self) -> None:
        self.model = None


class VerifierJudge:
    """`function(prompt, completion, reference) -> float` on the last user turn; an exception fails the item."""

    def __init__(self, spec: str):
        self.function = load_callable(spec)

    def judge(self, items: list[JudgeItem], on_judgment: OnJudgment) -> None:
        for item in items:
            try:
                scores = [
                    float(self.function(item.messages[-1]["content"], c, item.reference))
                    for c in item.candidates
                ]
            except Exception as error:  # a user callable: record it against the item, keep going
                on_judgment(Judgment(item, error=f"verifier raised {type(error).__name__}: {error}"))
                continue
            on_judgment(Judgment(item, [Rating(score) for score in scores]))

    def close(self) -> None:
        pass


def make_judge(config: JudgeConfig, recipe: Any | None = None, seed: int = 0) -> Judge:
    if config.kind == "verifier":
        return VerifierJudge(config.function)
    if config.kind == "reward_model":
        return RewardModelJudge(config, recipe)
    backend = build_backend(config, recipe, seed)
    if config.kind == "pairwise":
        return PairwiseJudge(backend, config.sampling, config.max_reasks)
    return UltraFeedbackJudge(backend, config.sampling, config.aspects, config.max_reasks, seed)
