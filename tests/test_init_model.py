"""`westwind init-model`: a tokenizer trained on local jsonl text plus a random-weight model, saved and reloadable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from westwind.demo.init_model import MANIFEST, init_model, main
from westwind.demo.tasks import write_demo_data
from westwind.demo.tiny import build_tokenizer

SIZES = {"eval": 8, "prompts": 8, "sft": 200}
SMALL = {"vocab_size": 320, "hidden_size": 32, "num_layers": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> dict[str, Path]:
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=0, sizes=SIZES)


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_data) -> Path:
    return init_model(tmp_path_factory.mktemp("init") / "base", texts_from=[demo_data["sft"]], **SMALL)


def demo_texts(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [message["content"] for row in rows for message in row["messages"]]


def test_builds_a_loadable_llama_of_the_asked_size(built):
    config = AutoConfig.from_pretrained(built)
    assert config.model_type == "llama"
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 2)
    tokenizer = AutoTokenizer.from_pretrained(built)
    model = AutoModelForCausalLM.from_pretrained(built)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) <= SMALL["vocab_size"]
    ids = tokenizer("What is 12 + 34?", return_tensors="pt").input_ids
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_tokenizer_round_trips_the_demo_text_and_splits_digits(built, demo_data):
    tokenizer = AutoTokenizer.from_pretrained(built)
    for text in demo_texts(demo_data["sft"])[:100] + ["Answer: 1881", "naïve ünïcode ✓"]:
        assert tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True) == text
    digit_tokens = tokenizer.convert_ids_to_tokens(tokenizer("7301985").input_ids)
    assert digit_tokens == list("7301985")


def test_saved_tokenizer_carries_the_zephyr_template_with_marker_tokens(built):
    tokenizer = AutoTokenizer.from_pretrained(built)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Sort 3 1 2."}], tokenize=False)
    assert rendered == f"{tokenizer.bos_token}<|user|>\nSort 3 1 2.{tokenizer.eos_token}\n"
    tokens = tokenizer.tokenize("<|user|>\nSort 3.<|assistant|>\n")
    assert tokens[0] == "<|user|>" and "<|assistant|>" in tokens
    # Character-level by default: one token per character outside the markers.
    assert len(tokenizer.tokenize("Sort 3.")) == len("Sort 3.")


@pytest.mark.parametrize("tokenization", ["bpe", "digits"])
def test_bpe_tokenizations_merge_words(tmp_path, demo_data, tokenization):
    out = init_model(tmp_path / "base", texts_from=[demo_data["sft"]], tokenization=tokenization, **SMALL)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer.tokenize("Answer")) < len("Answer")
    if tokenization == "digits":
        assert tokenizer.tokenize("1952") == list("1952")
    text = demo_texts(demo_data["sft"])[0]
    assert tokenizer.decode(tokenizer(text).input_ids) == text


def test_same_arguments_skip_the_build(built, demo_data, capsys):
    weights = built / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert init_model(built, texts_from=[demo_data["sft"]], **SMALL) == built
    assert "skipping" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == before


def test_the_same_data_under_another_path_skips(built, demo_data, tmp_path, capsys):
    moved = tmp_path / "elsewhere.jsonl"
    moved.write_bytes(demo_data["sft"].read_bytes())
    init_model(built, texts_from=[moved], **SMALL)
    assert "skipping" in capsys.readouterr().out


def test_changed_data_rebuilds(tmp_path, demo_data, capsys):
    out = init_model(tmp_path / "base", texts_from=[demo_data["sft"]], **SMALL)
    changed = tmp_path / "changed.jsonl"
    changed.write_text(demo_data["sft"].read_text() + demo_data["eval"].read_text())
    init_model(out, texts_from=[changed], **SMALL)
    assert "skipping" not in capsys.readouterr().out
    expected = hashlib.sha256(changed.read_bytes()).hexdigest()
    assert json.loads((out / MANIFEST).read_text())["data_sha256"] == [expected]


def test_changed_arguments_rebuild(tmp_path, demo_data):
    out = init_model(tmp_path / "base", texts_from=[demo_data["sft"]], **SMALL)
    init_model(out, texts_from=[demo_data["sft"]], **{**SMALL, "hidden_size": 48})
    assert AutoConfig.from_pretrained(out).hidden_size == 48
    assert json.loads((out / MANIFEST).read_text())["hidden_size"] == 48


def test_refuses_a_folder_it_did_not_make(tmp_path, demo_data):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        init_model(tmp_path, texts_from=[demo_data["sft"]], **SMALL)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_cli(tmp_path, demo_data, capsys):
    out = tmp_path / "cli-base"
    main(["--out", str(out), "--data", str(demo_data["sft"]), "--vocab-size", "300", "--hidden-size", "16"])
    assert AutoConfig.from_pretrained(out).hidden_size == 16
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x"), "--data", str(tmp_path / "missing.jsonl")])
    assert exit_info.value.code == 2


def test_build_tokenizer_default_still_merges_digits():
    """The default (used by the other tests' fixtures) is unchanged: BPE may merge digits."""
    tokenizer = build_tokenizer(["1881 1881 1881 1881"] * 50, vocab_size=300)
    assert len(tokenizer.tokenize("1881")) < 4
    split = build_tokenizer(["1881 1881 1881 1881"] * 50, vocab_size=300, individual_digits=True)
    assert split.tokenize("1881") == list("1881")
