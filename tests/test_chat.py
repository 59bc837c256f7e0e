"""`westwind chat`: driven through a pseudo-terminal, as a person would, and with --once as a script would."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import REPO, tiny_recipe, write_recipe
from transformers import AutoModelForCausalLM, AutoTokenizer

from westwind.training.chat_templates import ZEPHYR


def expected_reply(model_dir, messages, max_new_tokens, template=None, model=None) -> str:
    """Greedy decoding with the chat template, done directly with transformers."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = template or tokenizer.chat_template
    model = model or AutoModelForCausalLM.from_pretrained(model_dir)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, top_k=None)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "TERM": "dumb"}


class Terminal:
    """A child process on a pseudo-terminal; `expect` reads until a marker shows up."""

    def __init__(self, argv: list[str]):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes the chat
            os.execvpe(argv[0], argv, environment())
        self.seen = ""

    def expect(self, marker: str, timeout: float = 120) -> str:
        deadline, start = time.monotonic() + timeout, len(self.seen)
        while marker not in self.seen[start:]:
            assert time.monotonic() < deadline, f"no {marker!r} in {self.seen[start:]!r}"
            ready, _, _ = select.select([self.fd], [], [], 1)
            if ready:
                try:
                    self.seen += os.read(self.fd, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    break
        end = self.seen.index(marker, start)
        return self.seen[start:end]

    def send(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


@pytest.mark.slow
def test_interactive_chat_streams_with_template_history_system_and_reset(tiny_model):
    terminal = Terminal(
        [sys.executable, "-m", "westwind.cli", "chat", str(tiny_model), "--max-new-tokens", "6"]
    )
    terminal.expect("you> ")
    terminal.send("/system You are terse.")
    assert "system prompt set" in terminal.expect("you> ")
    terminal.send("reverse: the cat")
    first = terminal.expect("you> ")
    terminal.send("reverse: a dog")
    second = terminal.expect("you> ")
    terminal.send("/reset")
    assert "conversation cleared" in terminal.expect("you> ")
    terminal.send("reverse: a dog")
    after_reset = terminal.expect("you> ")
    terminal.send("/exit")
    assert terminal.wait() == 0

    system = [{"role": "system", "content": "You are terse."}]
    turn1 = [*system, {"role": "user", "content": "reverse: the cat"}]
    reply1 = expected_reply(tiny_model, turn1, 6)
    turn2 = [*turn1, {"role": "assistant", "content": reply1}, {"role": "user", "content": "reverse: a dog"}]
    fresh = [*system, {"role": "user", "content": "reverse: a dog"}]  # /reset keeps the system prompt
    assert reply1, "the tiny model must say something for this test to mean anything"
    assert first.split("assistant> ", 1)[1].strip() == reply1
    assert second.split("assistant> ", 1)[1].strip() == expected_reply(tiny_model, turn2, 6)
    assert after_reset.split("assistant> ", 1)[1].strip() == expected_reply(tiny_model, fresh, 6)


def test_chat_keeps_the_history_and_streams_each_reply(tiny_model, capsys):
    from westwind.chat import Chat, resolve_target

    chat = Chat(
        resolve_target(str(tiny_model), None, None), {"max_new_tokens": 5, "do_sample": False}, "Be terse."
    )
    first = chat.reply("reverse: the cat")
    assert capsys.readouterr().out.strip() == first.strip() != ""  # streamed to the terminal as generated
    chat.reply("reverse: a dog")
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert chat.messages[2]["content"] == first.strip()
    chat.reset()
    assert chat.messages == [{"role": "system", "content": "Be terse."}]


def test_chat_with_an_adapter_folder_answers_as_base_plus_adapter(tmp_path, tiny_model, capsys):
    from peft import LoraConfig, PeftModel, get_peft_model

    from westwind.chat import Chat, resolve_target

    torch.manual_seed(1)
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), config).save_pretrained(
        tmp_path / "adapter"
    )
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path / "adapter")
    messages = [{"role": "user", "content": "reverse: the cat"}]

    answer = Chat(
        resolve_target(str(tmp_path / "adapter"), None, None), {"max_new_tokens": 6, "do_sample": False}
    )
    reply = answer.reply(messages[0]["content"]).strip()

    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "adapter"
    )
    assert reply == expected_reply(tiny_model, messages, 6, model=adapted)
    assert reply != expected_reply(tiny_model, messages, 6), "the adapter must change the answer"


@pytest.mark.slow
def test_once_with_a_recipe_stage_uses_its_template_and_eval_sampling(
    tmp_path, tiny_model, sft_jsonl, dpo_jsonl
):
    recipe = tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl)
    del recipe["dpo"]
    recipe["eval"] = {"prompts": {"datasets": [{"path": str(sft_jsonl)}]}, "sampling": {"max_new_tokens": 4}}
    path = write_recipe(tmp_path / "recipe.yaml", recipe)
    shutil.copytree(tiny_model, tmp_path / "out" / "sft")
    assert yaml.safe_load(path.read_text())["model"]["chat_template"] == "zephyr"

    command = [sys.executable, "-m", "westwind.cli", "chat", f"{path}@sft", "--once", "reverse: the sun"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    messages = [{"role": "user", "content": "reverse: the sun"}]
    assert result.stdout.strip() == expected_reply(tiny_model, messages, 4, template=ZEPHYR)


def test_chat_with_an_unrun_stage_is_one_line_error(tmp_path, tiny_model, sft_jsonl, dpo_jsonl, capsys):
    from westwind import chat

    path = write_recipe(tmp_path / "recipe.yaml", tiny_recipe(tmp_path, tiny_model, sft_jsonl, dpo_jsonl))
    with pytest.raises(SystemExit) as exit_info:
        chat.main([f"{path}@dpo", "--once", "hi"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {path}: dpo: ") and "run the dpo stage first" in error
