"""Demo tasks: deterministic generators, a verifier that checks final answers, and the shipped data files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from westwind.demo.tasks import (
    DEMO_MIX,
    GENERATORS,
    demo_splits,
    generate,
    main,
    problem_from_prompt,
    verify,
    write_demo_data,
)

EVERY_TASK = dict.fromkeys(GENERATORS, 1)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data" / "demo"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def solve(prompt: str) -> str:
    """An independent oracle: parse the prompt and compute the answer with Python built-ins."""
    if match := re.fullmatch(r"What is (\d+) \+ (\d+)\?", prompt):
        return str(int(match[1]) + int(match[2]))
    if match := re.fullmatch(r"Sort ([\d ]+)\.", prompt):
        return " ".join(sorted(match[1].split(), key=int))
    if match := re.fullmatch(r"Remove the vowels from (\w+)\.", prompt):
        return re.sub("[aeiou]", "", match[1])
    if match := re.fullmatch(r"Reverse the word (\w+)\.", prompt):
        return match[1][::-1]
    if match := re.fullmatch(r"What is (\d) \+ (\d) \+ (\d) \+ (\d)\?", prompt):
        return str(sum(int(digit) for digit in match.groups()))
    raise AssertionError(f"unknown prompt shape: {prompt!r}")


def test_generation_is_deterministic_per_seed():
    assert generate(40, seed=3) == generate(40, seed=3)
    assert generate(40, seed=3) != generate(40, seed=4)


def test_every_task_appears_and_prompts_are_distinct():
    examples = generate(200, seed=0, mix=EVERY_TASK)
    assert {e.task for e in examples} == set(GENERATORS)
    assert len({e.prompt for e in examples}) == len(examples)


def test_the_demo_mix_weights_tasks():
    tasks = [e.task for e in generate(400, seed=0)]
    total = sum(DEMO_MIX.values())
    assert {task: tasks.count(task) for task in set(tasks)} == {
        t: 400 * w // total for t, w in DEMO_MIX.items()
    }


def test_worked_answers_end_with_the_reference_computed_independently():
    examples = generate(400, seed=1, quick_share=0.5, mix=EVERY_TASK)
    for example in examples:
        assert example.reference == solve(example.prompt)
        *working, last = example.answer.splitlines()
        assert last == f"Answer: {example.reference}"
        assert len(working) >= (2 if example.style == "steps" else 1), example.answer
        assert verify(example.prompt, example.answer, example.reference) == 1.0


def test_problem_from_prompt_reads_back_every_generated_problem():
    for example in generate(300, seed=2, quick_share=0.5, mix=EVERY_TASK):
        problem = problem_from_prompt(f" {example.prompt}\n")
        assert (problem.task, problem.reference) == (example.task, example.reference)
        assert problem.answer(example.style) == example.answer


@pytest.mark.parametrize(
    "prompt",
    ["Write a poem.", "What is 5 + 123?", "What is 05 + 12?", "Reverse the word Kabot.", "Sort 12 3.", ""],
)
def test_problem_from_prompt_refuses_other_shapes(prompt):
    assert problem_from_prompt(prompt) is None


def test_quick_share_sets_the_share_of_one_go_answers():
    assert {e.style for e in generate(100, seed=1, mix=EVERY_TASK)} == {"steps"}
    quick = [e for e in generate(500, seed=1, quick_share=0.5, mix=EVERY_TASK) if e.style == "quick"]
    assert 150 <= len(quick) <= 250, "half of the four tasks (of five) with a one-go form"
    assert {e.task for e in quick} == set(GENERATORS) - {"sort"}
    for example in quick:
        working = example.answer.splitlines()[0]
        assert example.reference in working, "the one-go line states the result"


def test_running_total_steps_add_up():
    for example in generate(200, seed=3, mix=EVERY_TASK):
        if example.task != "sum":
            continue
        steps = example.answer.splitlines()[:-1]
        assert len(steps) == 3
        for step in steps:
            terms, total = step.split("=")
            assert sum(int(t) for t in terms.split("+")) == int(total)
        assert int(steps[-1].split("=")[1]) == int(example.reference)


def test_addition_steps_add_up():
    for example in generate(200, seed=2):
        if example.task != "add":
            continue
        digits_from_steps = ""
        for step in example.answer.splitlines()[:-1]:
            terms, total = step.split("=")
            assert sum(int(t) for t in terms.split("+")) == int(total)
            digits_from_steps = total[-1] + digits_from_steps
        final_carry = example.answer.splitlines()[-2].split("=")[1][0]
        assert str(int(final_carry + digits_from_steps)) == example.reference


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("7+2=9\nAnswer: 839", "839", 1.0),
        ("answer:839.", "839", 1.0),
        ("some thinking\nAnswer:   1 3  7 9  \nthanks", "1 3 7 9", 1.0),
        ("Answer: 1, 3, 7, 9", "1 3 7 9", 1.0),
        ("Answer: 838", "839", 0.0),
        ("Answer: 8390", "839", 0.0),
        ("839", "839", 0.0),  # no final answer line
        ("Answer: 839 or 840", "839", 0.0),
        ("Answer: ENOTS", "enots", 0.0),  # case is part of the answer
        ("Answer: 12\nAnswer: 839", "839", 0.0),  # the first committed answer counts
        ("", "839", 0.0),
        ("Answer:", "839", 0.0),
        ("\x00\ufffd garbage Answer", "839", 0.0),
    ],
)
def test_verify(completion, reference, expected):
    assert verify("What is 457 + 382?", completion, reference) == expected


@pytest.mark.parametrize("garbage", [None, 42, ["not", "messages"], {"role": "assistant"}, b"Answer: 1"])
def test_verify_never_crashes_on_garbage(garbage):
    assert verify(garbage, garbage, "1") == 0.0
    assert verify("p", "Answer: 1", garbage) in (0.0, 1.0)


def test_verify_accepts_a_conversational_completion():
    completion = [{"role": "assistant", "content": "1-2\nAnswer: 3"}]
    assert verify("p", completion, "3") == 1.0
    assert verify("p", completion, "4") == 0.0


def test_splits_are_disjoint_and_sized():
    splits = demo_splits(seed=5, sizes={"eval": 30, "prompts": 60, "sft": 120})
    prompts = {name: {e.prompt for e in examples} for name, examples in splits.items()}
    assert {name: len(p) for name, p in prompts.items()} == {"eval": 30, "prompts": 60, "sft": 120}
    assert not prompts["eval"] & prompts["prompts"]
    assert not prompts["eval"] & prompts["sft"]
    assert not prompts["prompts"] & prompts["sft"]


def test_write_demo_data_is_deterministic(tmp_path):
    sizes = {"eval": 20, "prompts": 40, "sft": 80}
    first = write_demo_data(tmp_path / "a", seed=7, sizes=sizes)
    second = write_demo_data(tmp_path / "b", seed=7, sizes=sizes)
    for name in ("sft", "prompts", "eval"):
        assert first[name].read_bytes() == second[name].read_bytes()
    row = read_jsonl(first["sft"])[0]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert set(read_jsonl(first["eval"])[0]) == {"prompt", "reference", "task"}


# ---------------------------------------------------------------- the files that ship in data/demo


@pytest.fixture(scope="module")
def shipped() -> dict[str, list[dict]]:
    return {name: read_jsonl(SHIPPED / f"{name}.jsonl") for name in ("sft", "prompts", "eval")}


def test_shipped_files_are_what_the_generator_writes(tmp_path, shipped):
    main(["--out", str(tmp_path), "--seed", "0"])
    for name in shipped:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (SHIPPED / f"{name}.jsonl").read_bytes(), name


def test_shipped_files_are_disjoint_sized_and_small(shipped):
    prompts = {
        "sft": [row["messages"][0]["content"] for row in shipped["sft"]],
        "prompts": [row["prompt"] for row in shipped["prompts"]],
        "eval": [row["prompt"] for row in shipped["eval"]],
    }
    assert 2000 <= len(prompts["sft"]) <= 4000
    assert 1000 <= len(prompts["prompts"]) <= 2000
    assert len(prompts["eval"]) >= 500  # enough held-out prompts for a significant paired comparison
    for name, texts in prompts.items():
        assert len(set(texts)) == len(texts), f"duplicate prompts in {name}"
    assert not set(prompts["eval"]) & set(prompts["prompts"])
    assert not set(prompts["eval"]) & set(prompts["sft"])
    assert not set(prompts["prompts"]) & set(prompts["sft"])
    assert sum((SHIPPED / f"{name}.jsonl").stat().st_size for name in prompts) < 2_000_000


def test_every_shipped_worked_answer_verifies(shipped):
    for row in shipped["sft"]:
        user, assistant = row["messages"]
        assert verify(user["content"], assistant["content"], solve(user["content"])) == 1.0, row


def test_shipped_sft_mixes_both_answer_styles(shipped):
    one_line = sum(len(row["messages"][1]["content"].splitlines()) == 2 for row in shipped["sft"])
    assert 0.3 < one_line / len(shipped["sft"]) < 0.45  # half of the three quarters with a one-go form


def test_every_shipped_reference_is_right(shipped):
    for row in shipped["prompts"] + shipped["eval"]:
        assert row["reference"] == solve(row["prompt"]), row
        assert row["task"] in GENERATORS
