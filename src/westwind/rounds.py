"""Iterative dDPO: `rounds: N` runs dSFT -> (AIFT_k -> dDPO_k -> eval_k) for k = 1..N in one recipe.

Round k >= 2 samples its AIFT candidates from dDPO_{k-1} (generators and revision answerers that name `@sft`
name `@dpo-r{k-1}` instead; the judge stays), trains dDPO_k from dDPO_{k-1} on its own pairs, and evaluates
dDPO_k on the same held-out prompts. Round 1 writes where a one-round run does (`aift/`, `dpo/`, `eval/`),
round k the same names with `-r{k}` (`aift-r2/`, `dpo-r2/`, `eval-r2/`). `@dpo` names the last round's model,
`@dpo-r{k}` / `@aift-r{k}` a given round's. distill, dSFT and rm run once (rm on round 1's pairs).

A stage process learns its round from `--round k` (a top-level override the pipeline passes when N > 1);
`round_raw` rewrites the recipe for that round before it is validated, so every stage, preflight and hash sees
an ordinary recipe. `rounds: 1` (the default) leaves the recipe untouched: exactly the one-round run.
Kept free of heavy imports: the recipe loader and the pipeline use it before anything loads.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ROUND_STAGES = ("aift", "dpo", "eval")  # the stages each round runs again
ROUND_REFERENCE = re.compile(r"^(@aift|@dpo)-r([1-9][0-9]*)$")


def _key(default: Any, help: str) -> Any:  # noqa: A002
    return field(default=default, metadata={"help": help})


@dataclass
class RoundsConfig:
    """The recipe's `rounds:` section (or `rounds: N`, shorthand for `rounds: {count: N}`)."""

    count: int = _key(1, "AIFT -> dDPO rounds; 1 is the one-round (Zephyr) run")
    reference: Literal["previous", "sft"] = _key(
        "previous", "round k's DPO reference: its starting model (dDPO_{k-1}), or the dSFT model throughout"
    )
    prompts: Literal["disjoint", "same"] = _key(
        "disjoint", "with count > 1: each round its own seeded slice of the AIFT prompt pool, or all of it"
    )
    samples_per_prompt: int | None = _key(
        None, "candidates per prompt from rounds 2.. (unset: generators' n)"
    )
    mix_previous_pairs: bool = _key(False, "round k trains on rounds 1..k's pairs, not only its own")


def parse_config(value: Any) -> RoundsConfig:
    """`rounds:` as read from YAML; raises westwind.recipe.schema.SchemaError."""
    from westwind.recipe import schema

    if value is None:
        return RoundsConfig()
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"count": value}
    config = schema.build(RoundsConfig, value, "rounds")
    for name, low in (("count", 1), ("samples_per_prompt", 2)):
        number = getattr(config, name)
        if number is not None and number < low:
            raise schema.SchemaError(f"rounds.{name}", f"{number} is out of range: must be >= {low}")
    return config


def count_of(raw: dict[str, Any]) -> int:
    """The number of rounds a raw recipe asks for, without validating the rest of the section."""
    value = raw.get("rounds")
    if isinstance(value, dict):
        value = value.get("count", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def step_name(stage: str, round_index: int) -> str:
    """`aift` / `aift-r2`: a stage of a round, as `--from`/`--to`, hashes and the report name it."""
    return stage if round_index == 1 or stage not in ROUND_STAGES else f"{stage}-r{round_index}"


def parse_step(name: str) -> tuple[str, int]:
    """`dpo-r2` -> ("dpo", 2); `dpo` -> ("dpo", 1)."""
    match = re.fullmatch(r"([a-z]+)-r([1-9][0-9]*)", name)
    return (match.group(1), int(match.group(2))) if match else (name, 1)


def round_dir(round_one_dir: Path, round_index: int) -> Path:
    """Round k's folder beside round 1's: `dpo` -> `dpo-r2`."""
    return (
        round_one_dir if round_index == 1 else round_one_dir.with_name(f"{round_one_dir.name}-r{round_index}")
    )


def split_reference(value: str) -> tuple[str, int] | None:
    """`@dpo-r2` -> ("@dpo", 2); None for anything else."""
    match = ROUND_REFERENCE.match(value)
    return (match.group(1), int(match.group(2))) if match else None


# ---------------------------------------------------------------- the recipe of round k


def round_raw(raw: dict[str, Any], round_index: int) -> dict[str, Any]:
    """The raw recipe as round `round_index` runs it (see the module doc); the input is left as is."""
    count = count_of(raw)
    if not 1 <= round_index <= count:
        from westwind.recipe.schema import SchemaError

        raise SchemaError("round", f"{round_index} is out of range: this recipe has rounds 1..{count}")
    if count == 1:
        return raw
    config = raw.get("rounds") if isinstance(raw.get("rounds"), dict) else {}
    out = copy.deepcopy(raw)
    if isinstance(out.get("aift"), dict) and round_index > 1:
        rewrite_aift(out["aift"], round_index, config.get("samples_per_prompt"))
    if isinstance(out.get("dpo"), dict) and round_index > 1:
        rewrite_dpo(out, round_index, bool(config.get("mix_previous_pairs")))
    if isinstance(out.get("eval"), dict):
        for key in ("model", "baseline"):
            if out["eval"].get(key, "@dpo" if key == "model" else None) == "@dpo":
                out["eval"][key] = f"@dpo-r{round_index}"
    return out


def rewrite_aift(aift: dict[str, Any], round_index: int, samples: int | None) -> None:
    """Generators (and the revision answerer) that sample the dSFT model sample dDPO_{k-1} instead."""
    policy = f"@dpo-r{round_index - 1}"
    for generator in aift.get("generators") or []:
        if isinstance(generator, dict) and generator.get("model") == "@sft":
            generator["model"] = policy
            if samples is not None:
                generator["n"] = samples
    answerer = (aift.get("revisions") or {}).get("answerer")
    if isinstance(answerer, dict) and answerer.get("model", "@sft") == "@sft":
        answerer["model"] = policy


def rewrite_dpo(raw: dict[str, Any], round_index: int, mix: bool) -> None:
    dpo = raw["dpo"]
    if dpo.get("model_name_or_path", "@sft") == "@sft":
        dpo["model_name_or_path"] = f"@dpo-r{round_index - 1}"
    first = Path(dpo.get("output_dir") or Path(str(raw.get("output_dir"))) / "dpo")
    dpo["output_dir"] = str(round_dir(first, round_index))
    datasets = dpo.get("datasets") or [{"path": "@aift"}]
    rounds = range(1, round_index + 1) if mix else [round_index]
    mixed = []
    for entry in datasets:
        if isinstance(entry, dict) and entry.get("path") == "@aift":
            mixed += [{**entry, "path": f"@aift-r{k}"} for k in rounds]
        else:
            mixed.append(entry)
    dpo["datasets"] = mixed


def hash_settings(raw: dict[str, Any], stage: str, round_index: int) -> dict[str, Any] | None:
    """What the rounds section changes in a round's stage beyond its rewritten section (the prompt slice,
    the DPO reference), for its hash; None for a one-round recipe (its hashes stay today's)."""
    count = count_of(raw)
    if count == 1:
        return None
    config = asdict(parse_config(raw.get("rounds")))
    if stage == "aift":
        sliced = config["prompts"] == "disjoint"
        return {"round": round_index, "prompts": config["prompts"], "slices": count if sliced else 1}
    if stage == "dpo" and round_index > 1:
        return {"round": round_index, "reference": config["reference"]}
    return None


# ---------------------------------------------------------------- prompts


def round_prompts(prompts: list[Any], config: RoundsConfig, round_index: int, seed: int) -> list[Any]:
    """Round k's prompts: with `prompts: disjoint`, the k-th of `count` seeded slices of the pool (kept in pool
    order, sizes differing by at most one); else the whole pool."""
    if config.count == 1 or config.prompts == "same":
        return prompts
    order = list(range(len(prompts)))
    random.Random(f"westwind-rounds-{seed}").shuffle(order)
    mine = set(order[round_index - 1 :: config.count])
    return [p for i, p in enumerate(prompts) if i in mine]
