"""Constitutional-AI revision pairs (`aift.revisions`): each prompt's answer, critique and revision
(westwind.aift.constitution), journaled as each chunk of prompts finishes; failed prompts are retried next run."""

from __future__ import annotations

from westwind.aift.config import revision_teacher
from westwind.aift.constitution import write_revisions
from westwind.aift.teacher import LazyTeacher
from westwind.aift.workspace import REVISED_KEY, ShardRun
from westwind.io import Journal


def revise(run: ShardRun, journal: Journal) -> None:
    config, keys, seed = run.config.revisions, run.keys, run.config.seed
    if config is None:
        return
    done = run.workspace.finished("revised.jsonl", *REVISED_KEY)
    todo = [p for p in run.prompts if keys.revised(p) not in done]
    if not todo:
        return
    answerer = LazyTeacher(config.answerer, None, seed, run.models.answerer)
    teacher = LazyTeacher(revision_teacher(run.config), None, seed, run.models.reviser)
    try:
        for chunk, bar in run.in_chunks(todo, "revise"):
            for item in write_revisions(chunk, config, seed, answerer, teacher):
                journal.append(item.record(keys.revised(item.prompt)[1]))
                bar.update(1)
    finally:
        answerer.close()
        teacher.close()
