"""The demo teacher: a real OpenAI-compatible server (started as `python -m westwind.demo.teacher`) whose
replies are correct worked answers in both styles, and the demo-distill recipe's distill stage against it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import REPO

from westwind.demo.tasks import GENERATORS, QUICK_SHARE, generate, problem_from_prompt, verify
from westwind.demo.teacher import MODEL, style_for

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def teacher_url():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "westwind.demo.teacher", "--port", str(port)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo teacher did not start"
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/chat/completions", body, {"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ask(url: str, prompt: str, **params) -> tuple[int, dict]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], **params}
    return post(url, json.dumps(body).encode())


def test_the_openai_client_gets_correct_answers_in_both_styles(teacher_url):
    from openai import OpenAI

    client = OpenAI(base_url=teacher_url, api_key="EMPTY", max_retries=0)
    styles = {task: set() for task in GENERATORS}
    for seed, example in enumerate(generate(60, seed=7, mix=dict.fromkeys(GENERATORS, 1))):
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": example.prompt}]
        response = client.chat.completions.create(model=MODEL, messages=messages, seed=seed, max_tokens=64)
        choice = response.choices[0]
        assert choice.finish_reason == "stop"
        assert verify(example.prompt, choice.message.content, example.reference) == 1.0, choice
        problem = problem_from_prompt(example.prompt)
        style = next(s for s in ("steps", "quick") if choice.message.content == problem.answer(s))
        styles[example.task].add(style)
    assert styles == {**dict.fromkeys(GENERATORS, {"steps", "quick"}), "sort": {"steps"}}
    assert client.models.list().data[0].id == MODEL


def test_the_style_is_reproducible_from_seed_and_prompt_with_the_shipped_share(teacher_url):
    status, first = ask(teacher_url, "What is 31 + 95?", seed=11, n=3)
    assert status == 200 and len(first["choices"]) == 3
    assert first["choices"] == ask(teacher_url, "What is 31 + 95?", seed=11, n=3)[1]["choices"]
    prompts = [example.prompt for example in generate(2000, seed=3)]
    quick = sum(style_for(prompt, seed=0) == "quick" for prompt in prompts)
    assert abs(quick / len(prompts) - QUICK_SHARE) < 0.04
    assert {style_for("What is 31 + 95?", seed) for seed in range(20)} == {"steps", "quick"}


def test_max_tokens_cuts_the_reply_with_finish_reason_length(teacher_url):
    status, body = ask(teacher_url, "Reverse the word kabot.", seed=1, max_tokens=5)
    assert status == 200
    assert body["choices"][0]["finish_reason"] == "length"
    assert len(body["choices"][0]["message"]["content"]) == 5


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Write a poem."}]}).encode(),
        json.dumps({"model": MODEL, "messages": []}).encode(),
        json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Sort 3 1."}], "n": 0}).encode(),
        json.dumps(
            {"model": MODEL, "messages": [{"role": "user", "content": "Sort 3 1."}], "stop": [1]}
        ).encode(),
        b"{not json",
    ],
)
def test_a_request_it_cannot_answer_gets_a_400_with_an_error_body(teacher_url, body):
    status, reply = post(teacher_url, body)
    assert status == 400
    assert reply["error"]["type"] == "invalid_request_error" and reply["error"]["message"]


def test_the_demo_distill_recipe_distils_correct_answers_from_the_teacher(teacher_url, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "westwind.stages.distill", "recipes/demo-cpu-distill.yaml",
        "--output_dir", str(out),
        "--distill.teacher.base_url", teacher_url,
        "--distill.dialogues.prompts.max_prompts", "100",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    shipped = {}
    for line in (REPO / "data" / "demo" / "sft.jsonl").read_text().splitlines():
        user, _ = json.loads(line)["messages"]
        shipped[user["content"]] = user
    rows = [json.loads(line) for line in (out / "distill" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 100
    styles = set()
    for row in rows:
        user, assistant = row["messages"]
        assert user == shipped[user["content"]] and assistant["role"] == "assistant"
        problem = problem_from_prompt(user["content"])
        assert verify(user["content"], assistant["content"], problem.reference) == 1.0, row
        styles.add("quick" if assistant["content"] == problem.answer("quick") else "steps")
    assert styles == {"steps", "quick"}
    stats = json.loads((out / "distill" / "stats.json").read_text())
    assert stats["dialogues"]["kept"] == 100 and stats["teacher_failures"] == {"failed_items": 0}


def test_a_port_in_use_is_one_error_line_and_exit_2(teacher_url):
    port = teacher_url.split(":")[-1].split("/")[0]
    command = [sys.executable, "-m", "westwind.demo.teacher", "--port", port]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: 127.0.0.1:{port}: cannot listen")
    assert result.stderr.count("\n") == 1, result.stderr
