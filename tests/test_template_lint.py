"""The template lint: one broken template or tokenizer per rule, each caught with its rule's message; correct
templates pass with no warning; SmolLM2-135M-Instruct's real tokenizer; TRL's gemma.jinja (refuses system)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, make_conversations, write_jsonl, write_recipe
from transformers import AutoTokenizer

from westwind.errors import RecipeError
from westwind.recipe import preflight
from westwind.recipe.core import load_recipe
from westwind.training.chat_templates import CHATML, ZEPHYR, apply_chat_template_choice
from westwind.training.template_lint import ERROR, NOTE, WARNING, Subject, lint

DEMO_TEMPLATE = yaml.safe_load((REPO / "recipes" / "demo-cpu.yaml").read_text())["model"]["chat_template"]
CHATML_INLINE = (
    "{%- for m in messages -%}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)
GEMMA_TOKENS = ["<start_of_turn>", "<end_of_turn>"]


# SmolLM2-135M-Instruct's own template with {% generation %} around the assistant's content (and its end).
@pytest.fixture
def bare(tiny_model):
    """The tiny tokenizer with no chat template of its own."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = None
    return tokenizer


def findings(tokenizer, template, loss=False, own=None, stops=(), name=None):
    apply_chat_template_choice(tokenizer, template)
    return lint(Subject(tokenizer, own, name or template, loss, frozenset(stops)))


def rules(found, level=ERROR):
    return {f.rule for f in found if f.level == level}


def the(found, rule):
    return next(f for f in found if f.rule == rule)


# ---------------------------------------------------------------- the corpus: one broken template per rule


def test_turns_that_end_without_a_special_token(bare):
    template = (
        "{%- for m in messages -%}{{ '<|' + m['role'] + '|>\n' + m['content'] + '\n' }}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
    )
    found = findings(bare, template)
    assert rules(found) == {"turn-end"}
    assert "not a special token" in the(found, "turn-end").problem


def test_end_of_turn_outside_the_loss_mask(bare):
    template = ZEPHYR.replace(
        "{%- generation -%}{{ message['content'] + eos_token }}{%- endgeneration -%}",
        "{%- generation -%}{{ message['content'] }}{%- endgeneration -%}{{ eos_token }}",
    )
    found = findings(bare, template, loss=True)
    assert rules(found) == {"turn-end-loss"}
    assert the(found, "turn-end-loss").key == "sft.assistant_only_loss"
    assert "</s> is outside the loss mask" in the(found, "turn-end-loss").problem
    assert findings(bare, template, loss=False) == []  # the whole sequence is trained: the end token too


def test_chatml_on_a_tokenizer_whose_eos_is_not_im_end(bare):
    """A base model's EOS that is not the template's end-of-turn token (a Qwen base with ChatML)."""
    bare.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    found = findings(bare, CHATML_INLINE)
    assert rules(found) == {"turn-end-stop"}
    assert "<|im_end|>" in the(found, "turn-end-stop").problem
    im_end = bare.convert_tokens_to_ids("<|im_end|>")
    assert findings(bare, CHATML_INLINE, stops=[im_end]) == []  # its generation_config stops there
    assert findings(bare, "chatml") == []  # the shipped chatml makes <|im_end|> the EOS


def test_doubled_bos(bare):
    found = findings(bare, "{{ bos_token }}" + ZEPHYR)
    assert rules(found) == {"bos"}
    assert "added twice" in the(found, "bos").problem


def test_missing_bos_that_the_tokenizers_own_template_emits(bare):
    found = findings(bare, DEMO_TEMPLATE, own=ZEPHYR)
    assert "bos" in rules(found)
    assert "begin the template with {{ bos_token }}" in the(found, "bos").problem


def test_assistant_only_loss_without_markers_nor_a_training_variant(bare):
    template = ZEPHYR.replace("{%- generation -%}", "").replace("{%- endgeneration -%}", "")
    found = findings(bare, template, loss=True)
    assert rules(found) == {"generation-markers"}
    assert "neither TRL nor westwind has a training variant" in the(found, "generation-markers").problem
    assert findings(bare, template, loss=False) == []


def test_inference_prompt_that_is_not_a_prefix_of_training(bare):
    template = ZEPHYR.replace(
        "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}",
        "{%- if add_generation_prompt -%}{{ '<|bot|>\n' }}",
    )
    found = findings(bare, template)
    assert rules(found) == {"prompt-prefix"}
    assert "not a prefix of the training rendering" in the(found, "prompt-prefix").problem


def test_template_that_drops_a_turn(bare):
    template = (
        "{{ bos_token }}{%- for m in messages -%}{%- if loop.last -%}{{ '<|' + m['role'] + '|>\n' + m['content'] "
        "+ eos_token }}{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
    )
    found = findings(bare, template)
    assert rules(found) == {"turn-text"}
    assert "lacks 'reverse: cat dog'" in the(found, "turn-text").problem


def test_chat_tuned_base_trained_with_another_template_is_a_warning_naming_both(bare):
    found = findings(bare, "zephyr", own=CHATML)
    assert rules(found) == set() and rules(found, WARNING) == {"template-mismatch"}
    assert "westwind's chatml" in the(found, "template-mismatch").problem
    assert "(zephyr)" in the(found, "template-mismatch").problem


@pytest.mark.parametrize("template", ["zephyr", "chatml", DEMO_TEMPLATE], ids=["zephyr", "chatml", "demo"])
@pytest.mark.parametrize("loss", [False, True])
def test_correct_templates_pass_with_no_warning(bare, template, loss):
    assert findings(bare, template, loss=loss) == []


# ---------------------------------------------------------------- Gemma: TRL's gemma.jinja refuses a system turn


def gemma_tokenizer(tokenizer):
    tokenizer.add_special_tokens({"additional_special_tokens": GEMMA_TOKENS})
    return tokenizer, [
        tokenizer.convert_tokens_to_ids("<end_of_turn>")
    ]  # Gemma's generation_config stops there


@pytest.mark.parametrize("loss", [False, True])
def test_trls_gemma_template_folds_the_system_turn_and_passes(bare, loss):
    from trl.chat_template_utils import gemma_chat_template

    tokenizer, stops = gemma_tokenizer(bare)
    found = findings(tokenizer, gemma_chat_template, loss=loss, stops=stops)  # loss: TRL's gemma_training
    assert rules(found) == set() and rules(found, WARNING) == set()
    assert "westwind puts a system prompt before the first user turn" in the(found, "system-turn").problem
    assert the(found, "system-turn").level == NOTE
    without_stop = findings(gemma_tokenizer(AutoTokenizer.from_pretrained(bare.name_or_path))[0], "gemma")
    assert "turn-end-stop" in rules(without_stop)  # <end_of_turn> must be a stop token


# ---------------------------------------------------------------- SmolLM2-135M-Instruct's real tokenizer


@pytest.fixture(scope="session")
def smollm2_dir(smollm2) -> Path:
    """SmolLM2-135M-Instruct as `westwind import-gguf` writes it (conftest): its real tokenizer and stop tokens."""
    return smollm2


def test_smollm2_tokenizer_is_what_the_rules_must_not_assume(smollm2_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<|im_start|>", 1)  # begins every turn
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == 2  # pad = EOS = end of turn


def test_smollm2_recipe_passes_every_rule(smollm2_dir, capsys):
    """The shipped recipe, on the imported model: no error, no warning, the lint not skipped."""
    recipe = load_recipe(
        REPO / "recipes" / "smollm2-135m.yaml", ["--model.model_name_or_path", str(smollm2_dir)]
    )
    preflight.check(recipe, ["sft", "aift", "dpo"], produced_earlier={"sft", "aift"})
    err = capsys.readouterr().err
    assert "template lint skipped" not in err and "warning" not in err
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    own = tokenizer.chat_template
    found = findings(tokenizer, "smollm2", loss=True, own=own, stops=[2])
    assert found == []


def test_smollm2_own_template_with_assistant_only_loss_is_refused_before_any_model(smollm2_dir, tmp_path):
    """TRL has no training variant of SmolLM2's ChatML: it would refuse it only at trainer construction."""
    sft = write_jsonl(tmp_path / "sft.jsonl", make_conversations(4))
    raw = {
        "output_dir": str(tmp_path / "out"),
        "model": {"model_name_or_path": str(smollm2_dir)},
        "sft": {"datasets": [{"path": str(sft)}], "assistant_only_loss": True},
    }
    recipe = load_recipe(write_recipe(tmp_path / "own.yaml", raw))
    with pytest.raises(RecipeError) as caught:
        preflight.check(recipe, ["sft"])
    assert caught.value.key == "sft.assistant_only_loss"
    assert caught.value.problem.startswith("generation-markers: ")
    raw["sft"]["assistant_only_loss"] = False  # its own template, full-sequence loss: sound
    preflight.check(load_recipe(write_recipe(tmp_path / "own.yaml", raw)), ["sft"])
