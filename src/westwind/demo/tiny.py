"""Build tiny tokenizers and random-weight models locally (tests, the CPU demo, `westwind init-model`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from westwind.training.chat_templates import CHATML

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]
ARCHITECTURES: dict[str, type[PretrainedConfig]] = {
    "llama": LlamaConfig,
    "mistral": MistralConfig,
    "qwen2": Qwen2Config,
}


def build_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 512,
    individual_digits: bool = False,
    individual_chars: bool = False,
    extra_tokens: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts`; any string round-trips. Ships a ChatML template of its own.

    `individual_digits` gives every digit its own token, which makes column arithmetic learnable for a
    tiny model; `individual_chars` gives every character its own (a character-level vocabulary: no merges).
    `extra_tokens` (e.g. a chat template's role markers) become single, non-special tokens.
    """
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizer(individual_digits, individual_chars)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHATML
    if extra_tokens:
        fast.add_tokens(list(extra_tokens))
    return fast


def pre_tokenizer(individual_digits: bool, individual_chars: bool) -> pre_tokenizers.PreTokenizer:
    if individual_chars:
        every_char = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        return pre_tokenizers.Sequence(
            [every_char, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if individual_digits:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    return byte_level


def build_model(
    architecture: str,
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 1024,
    seed: int = 0,
):
    """A random-weight causal LM of a real architecture, sized by the arguments."""
    import torch

    config_class = ARCHITECTURES[architecture]
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def save_tiny_model(
    out_dir: str | Path,
    texts: Iterable[str],
    architecture: str = "llama",
    vocab_size: int = 512,
    individual_digits: bool = False,
    individual_chars: bool = False,
    **model_kwargs,
) -> Path:
    """Train a tokenizer on `texts`, build a random model around it, and save both to `out_dir`."""
    out = Path(out_dir)
    tokenizer = build_tokenizer(
        texts, vocab_size=vocab_size, individual_digits=individual_digits, individual_chars=individual_chars
    )
    model = build_model(architecture, tokenizer, **model_kwargs)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out
