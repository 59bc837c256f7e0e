"""Endpoint resolution: @references inherit the recipe's model options; content identities key reuse."""

from __future__ import annotations

import shutil
import types

from westwind.aift.config import EndpointConfig
from westwind.endpoints import model_args_for, model_identity, resolve_model
from westwind.io import write_stage_marker
from westwind.recipe.core import ModelArgs


def test_at_sft_and_base_inherit_the_recipe_model_options():
    recipe_model = ModelArgs(
        model_name_or_path="base", chat_template="zephyr", dtype="bfloat16", trust_remote_code=True
    )
    recipe = types.SimpleNamespace(model=recipe_model)
    sft = model_args_for(EndpointConfig(model="@sft"), "out/sft", recipe)
    assert (sft.model_name_or_path, sft.chat_template, sft.dtype, sft.trust_remote_code) == (
        "out/sft",
        "zephyr",
        "bfloat16",
        True,
    )
    other = model_args_for(EndpointConfig(model="org/teacher", chat_template="chatml"), "org/teacher", recipe)
    assert (other.chat_template, other.dtype, other.trust_remote_code) == ("chatml", "auto", False)


def test_identity_follows_the_weights_not_the_path_or_run_metadata(tiny_model, tmp_path):
    model = tmp_path / "sft"
    shutil.copytree(tiny_model, model)
    cache = tmp_path / "digests.json"
    first = model_identity(str(model), digest_cache=cache)
    assert first.startswith("local:") and cache.exists()
    write_stage_marker(model, "some-config-hash", 1.0)  # run metadata: not the model
    (model / "trainer_state.json").write_text("{}")
    assert model_identity(str(model), digest_cache=cache) == first
    copy = tmp_path / "elsewhere"
    shutil.copytree(model, copy)
    assert model_identity(str(copy)) == first  # same content, other place
    weights = next(model.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # retrained: one byte of the weights differs, the size does not
    weights.write_bytes(bytes(data))
    assert model_identity(str(model), digest_cache=cache) != first


def test_hub_ids_are_identified_by_revision_and_served_models_by_name():
    hub = EndpointConfig(model="org/teacher", revision="abc123")
    assert resolve_model(hub, None).identity == "hub:org/teacher@abc123"
    assert resolve_model(EndpointConfig(model="org/teacher"), None).identity == "hub:org/teacher@main"
    served = resolve_model(EndpointConfig(model="gpt-x", backend="openai"), None)
    assert (served.identity, served.model_args) == ("served:gpt-x", None)


def test_a_served_reference_is_identified_by_the_folder_it_names(tmp_path, tiny_model):
    """`model: "@sft"` on an OpenAI-compatible server (vllm serve <the sft folder>): retraining dSFT changes the
    identity, so AIFT does not reuse answers of the old weights."""
    from westwind.recipe.core import load_recipe

    sft = tmp_path / "out" / "sft"
    shutil.copytree(tiny_model, sft)
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(f"output_dir: {tmp_path / 'out'}\nmodel: {{model_name_or_path: {tiny_model}}}\n")
    recipe = load_recipe(recipe_path)
    endpoint = EndpointConfig(model="@sft", backend="openai", base_url="http://127.0.0.1:1/v1")
    first = resolve_model(endpoint, recipe)
    assert first.path == str(sft) and first.identity.startswith(f"served:{sft}|local:")
    weights = next(sft.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"retrained")
    assert resolve_model(endpoint, recipe).identity != first.identity


def test_cached_outputs_are_keyed_on_the_inherited_chat_template_and_dtype(tmp_path, tiny_model):
    """`@sft` takes chat_template and dtype from the recipe's model section: changing either must not reuse
    AIFT candidates or eval answers made under the old ones (the folder's identity is unchanged)."""
    from westwind.recipe.core import load_recipe

    recipe_path = tmp_path / "recipe.yaml"
    seen = set()
    for template, dtype in (("zephyr", "float32"), ("chatml", "float32"), ("zephyr", "bfloat16")):
        recipe_path.write_text(
            f"output_dir: {tmp_path / 'out'}\n"
            f"model: {{model_name_or_path: {tiny_model}, chat_template: {template}, dtype: {dtype}}}\n"
        )
        resolved = resolve_model(EndpointConfig(model="@base"), load_recipe(recipe_path))
        assert resolved.fingerprint.startswith(resolved.identity)
        seen.add(resolved.fingerprint)
    assert len(seen) == 3
