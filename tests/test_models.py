"""Model loading: stop tokens follow the chat template; dtype policy for full training."""

from __future__ import annotations

from westwind import models
from westwind.recipe import ModelArgs


def test_chatml_models_stop_at_im_end(tiny_models):
    path = str(tiny_models["qwen2"])
    args = ModelArgs(model_name_or_path=path, chat_template="chatml", dtype="float32")
    tokenizer = models.load_tokenizer(path, args)
    model = models.load_causal_lm(path, args, tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token_id == im_end
    assert im_end in model.generation_config.eos_token_id
    assert tokenizer.convert_tokens_to_ids("</s>") in model.generation_config.eos_token_id
