"""Constitutional-AI revision pairs (Bai et al., 2022), an AIFT option (`aift.revisions`): a model (e.g. the
dSFT model) answers, the teacher critiques the answer against one principle drawn from a constitution, then
rewrites it. chosen = the revision, rejected = the original; a pair whose answer or revision is empty or cut at
max_new_tokens, or whose revision is identical to the original, is dropped and counted. The default
constitution below is westwind's own wording.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any

from westwind.aift.config import Principle, RevisionsConfig
from westwind.aift.prompts import Prompt, normalize_text
from westwind.aift.teacher import LazyTeacher, reply
from westwind.generation import ChatRequest, Result, resolved_sampling
from westwind.seeding import stable_seed

DEFAULT_CONSTITUTION: tuple[Principle, ...] = (
    Principle(
        "helpful",
        "Point out where the answer fails to address what the user actually asked, or leaves out something they need.",
        "Rewrite the answer so it addresses exactly what the user asked and includes what they need.",
    ),
    Principle(
        "honest",
        "Identify any claim in the answer that is false, unsupported or stated with more certainty than is warranted.",
        "Rewrite the answer so every claim is accurate and any uncertainty is stated plainly.",
    ),
    Principle(
        "harmless",
        "Identify anything in the answer that could lead to harm to people, property or the environment, or that is disrespectful.",
        "Rewrite the answer to remove anything harmful or disrespectful while still helping with legitimate needs.",
    ),
    Principle(
        "clear",
        "Point out where the answer is confusing, padded, badly ordered or harder to follow than it needs to be.",
        "Rewrite the answer to be clear, well ordered and no longer than it needs to be.",
    ),
    Principle(
        "fair",
        "Identify any stereotype, one-sided framing or unfair assumption about people or groups in the answer.",
        "Rewrite the answer so it is even-handed and free of stereotypes and unfair assumptions.",
    ),
)
CRITIQUE = "Critique request: {critique}\nWrite only the critique."
REVISION = "Revision request: {revision}\nWrite only the revised answer, with no preamble."


def revision_settings(config: RevisionsConfig) -> dict[str, Any]:
    """What decides a revision besides the two models: sampling, the constitution and the request texts."""
    principles = config.constitution or DEFAULT_CONSTITUTION
    return {
        "sampling": dataclasses.asdict(config.sampling),
        "teacher_sampling": dataclasses.asdict(config.teacher_sampling),
        "constitution": [dataclasses.asdict(p) for p in principles],
        "requests": [CRITIQUE, REVISION],
    }


def draw_principle(
    constitution: tuple[Principle, ...] | list[Principle], seed: int, prompt_id: str
) -> Principle:
    return random.Random(stable_seed(seed, "principle", prompt_id)).choice(list(constitution))


@dataclasses.dataclass
class Revision:
    prompt: Prompt
    principle: Principle
    texts: dict[str, str] = dataclasses.field(default_factory=dict)  # answer, critique, revision
    dropped: str | None = None
    error: str | None = None
    failures: Counter = dataclasses.field(default_factory=Counter)

    @property
    def active(self) -> bool:
        return self.dropped is None and self.error is None

    def take(self, result: Result, step: str) -> None:
        self.failures.update(result.failures)
        answer = reply(result)
        if answer is None:
            self.error = result.error
            return
        self.texts[step] = answer[0]  # kept in the record, dropped or not
        if not answer[0].strip():
            self.dropped = f"empty_{step}"
        elif answer[1] == "length" and step != "critique":  # a cut critique still guides the revision
            self.dropped = f"truncated_{step}"
        if (
            step == "revision"
            and self.active
            and normalize_text(answer[0]) == normalize_text(self.texts["answer"])
        ):
            self.dropped = "identical_revision"

    def conversation(self, step: str) -> list[dict[str, str]]:
        messages = [*self.prompt.messages, {"role": "assistant", "content": self.texts["answer"]}]
        messages.append({"role": "user", "content": CRITIQUE.format(critique=self.principle.critique)})
        if step == "revision":
            messages.append({"role": "assistant", "content": self.texts["critique"]})
            messages.append({"role": "user", "content": REVISION.format(revision=self.principle.revision)})
        return messages

    def record(self, fingerprint: str) -> dict[str, Any]:
        record = {
            "prompt_id": self.prompt.prompt_id,
            "fingerprint": fingerprint,
            "failures": dict(self.failures),
        }
        if self.error is not None:
            return {**record, "status": "failed", "error": self.error}
        return {
            **record,
            "status": "ok",
            "prompt": self.prompt.messages,
            "principle": self.principle.name,
            "dropped": self.dropped,
            **{key: self.texts.get(key) for key in ("answer", "critique", "revision")},
        }


def write_revisions(
    prompts: list[Prompt], config: RevisionsConfig, seed: int, answerer: LazyTeacher, teacher: LazyTeacher
) -> list[Revision]:
    """Answer, critique and revise each prompt (each step batched across `prompts`)."""
    constitution = config.constitution or DEFAULT_CONSTITUTION
    items = [Revision(p, draw_principle(constitution, seed, p.prompt_id)) for p in prompts]
    answer_sampling = resolved_sampling(config.sampling, default_temperature=1.0)
    requests = [
        ChatRequest(
            r.prompt.prompt_id,
            r.prompt.messages,
            answer_sampling,
            1,
            stable_seed(seed, r.prompt.prompt_id, "answer"),
        )
        for r in items
    ]
    for item, result in zip(items, answerer.complete(requests), strict=True):
        item.take(result, "answer")
    teacher_sampling = resolved_sampling(config.teacher_sampling, default_temperature=0.0)
    for step in ("critique", "revision"):
        active = [r for r in items if r.active]
        requests = [
            ChatRequest(
                r.prompt.prompt_id,
                r.conversation(step),
                teacher_sampling,
                1,
                stable_seed(seed, r.prompt.prompt_id, step),
            )
            for r in active
        ]
        for item, result in zip(active, teacher.complete(requests), strict=True):
            item.take(result, step)
    return items


def pair_rows(records: list[dict], answerer: str, teacher: str) -> tuple[list[dict], dict[str, Any]]:
    """DPO rows from revision records, with the AIFT dataset's columns (chosen = revision by `teacher`,
    rejected = answer by `answerer`; no scores; the critique as the chosen side's rationale), and the counts."""
    rows, dropped = [], Counter()
    for record in records:
        if record["dropped"] is not None:
            dropped[record["dropped"]] += 1
            continue
        rows.append(
            {
                "prompt": record["prompt"],
                "prompt_id": record["prompt_id"],
                "chosen": [{"role": "assistant", "content": record["revision"]}],
                "rejected": [{"role": "assistant", "content": record["answer"]}],
                "score_chosen": None,
                "score_rejected": None,
                "model_chosen": teacher,
                "model_rejected": answerer,
                "rationale_chosen": record["critique"],
                "rationale_rejected": "",
                "source": "revision",
                "principle": record["principle"],
            }
        )
    by_principle = Counter(row["principle"] for row in rows)
    counts = {
        "prompts": len(records),
        "pairs": len(rows),
        "dropped": dict(dropped),
        "pairs_by_principle": dict(sorted(by_principle.items())),
    }
    return rows, counts
