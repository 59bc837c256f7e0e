"""Feasibility probe for the CPU demo: init a tiny student, dSFT it, sample + verify, dDPO it, compare.

Plain TRL (no westwind pipeline) so the numbers say what the recipe can reach on a 2-core CPU:

    python benchmarks/demo_probe.py --out outputs/demo-probe
    python benchmarks/demo_probe.py --sft-epochs 3 --dpo-lr 2e-5 --k 4

Writes <out>/probe.json with the settings, per-phase wall times and accuracies (overall and per task).

Its sampling loop (`generate(do_sample=True)`) and westwind's transformers backend (Gumbel-max, one seed per
sequence) draw from the same distribution, and its DPO and westwind's dpo stage train the identical model on
the same pairs (measured for issue #11): its results differ from the pipeline's only by the random draw of
AIFT samples. `--reuse` with `<out>/sft` pointing at a pipeline's dSFT model compares the two on one model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import Dataset, load_dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer  # noqa: E402

from westwind.demo.init_model import init_model  # noqa: E402
from westwind.demo.tasks import verify, write_demo_data  # noqa: E402
from westwind.evaluation.significance import wilson_interval  # noqa: E402
from westwind.training.chat_templates import apply_chat_template_choice  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/demo-probe")
    parser.add_argument("--data", default=None, help="demo data folder (default: generate into <out>/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=384)
    parser.add_argument("--sft-rows", type=int, default=None, help="use only the first N SFT rows")
    parser.add_argument("--sft-epochs", type=float, default=8.0)
    parser.add_argument("--sft-lr", type=float, default=2e-3)
    parser.add_argument("--sft-batch", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--sample-seed", type=int, default=0, help="torch seed for AIFT sampling")
    parser.add_argument("--pairs-per-prompt", type=int, default=1)
    parser.add_argument("--dpo-epochs", type=float, default=2.0)
    parser.add_argument("--dpo-lr", type=float, default=5e-5)
    parser.add_argument("--dpo-batch", type=int, default=16)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--loss-type", nargs="+", default=["sigmoid"])
    parser.add_argument("--loss-weights", nargs="+", type=float, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--reuse", action="store_true", help="reuse <out>/sft and sampled pairs from an earlier run"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    timings: dict[str, float] = {}
    data = Path(args.data) if args.data else out / "data"
    if not args.data:
        write_demo_data(data, seed=args.seed)

    clock = time.perf_counter()
    base = init_model(
        out / "base",
        texts_from=[data / "sft.jsonl"],
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        seed=args.seed,
    )
    timings["init"] = time.perf_counter() - clock

    eval_rows = read_jsonl(data / "eval.jsonl")
    prompt_rows = read_jsonl(data / "prompts.jsonl")

    clock = time.perf_counter()
    sft_dir = out / "sft"
    if not (args.reuse and (sft_dir / "config.json").is_file()):
        run_sft(args, base, data / "sft.jsonl", sft_dir)
    timings["sft"] = time.perf_counter() - clock

    model, tokenizer = load(sft_dir)
    clock = time.perf_counter()
    sft_eval = evaluate(model, tokenizer, eval_rows, args.max_new_tokens)
    timings["eval_sft"] = time.perf_counter() - clock
    print("dSFT accuracy:", summarize(sft_eval))

    clock = time.perf_counter()
    pairs_file = out / f"pairs-k{args.k}-t{args.temperature}-s{args.sample_seed}.jsonl"
    if args.reuse and pairs_file.is_file():
        pairs, sample_stats = (
            Dataset.from_json(str(pairs_file)),
            json.loads(pairs_file.with_suffix(".json").read_text()),
        )
    else:
        torch.manual_seed(args.sample_seed)
        pairs, sample_stats = sample_pairs(args, model, tokenizer, prompt_rows)
        pairs.to_json(str(pairs_file))
        pairs_file.with_suffix(".json").write_text(json.dumps(sample_stats))
    timings["sample"] = time.perf_counter() - clock
    print("samples:", sample_stats)

    clock = time.perf_counter()
    name = f"dpo-lr{args.dpo_lr}-b{args.beta}-e{args.dpo_epochs}-k{args.k}-s{args.sample_seed}"
    dpo_dir = run_dpo(args, sft_dir, pairs, out / name)
    timings["dpo"] = time.perf_counter() - clock

    model, tokenizer = load(dpo_dir)
    clock = time.perf_counter()
    dpo_eval = evaluate(model, tokenizer, eval_rows, args.max_new_tokens)
    timings["eval_dpo"] = time.perf_counter() - clock
    timings["total"] = sum(timings.values())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    timings["cpu_total"] = usage.ru_utime + usage.ru_stime  # ~2x wall on an idle 2-core machine
    print("dSFT accuracy:", summarize(sft_eval))
    print("dDPO accuracy:", summarize(dpo_eval))
    print("dDPO vs dSFT:", paired_outcomes(dpo_eval, sft_eval))
    print("timings (s):", {name: round(value, 1) for name, value in timings.items()})
    result = {
        "settings": vars(args),
        "timings_s": timings,
        "samples": sample_stats,
        "sft": summarize(sft_eval),
        "dpo": summarize(dpo_eval),
        "dpo_vs_sft": paired_outcomes(dpo_eval, sft_eval),
    }
    (dpo_dir / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {dpo_dir / 'probe.json'}")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load(path: Path) -> tuple[Any, Any]:
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    return model.eval(), tokenizer


def run_sft(args: argparse.Namespace, base: Path, sft_file: Path, out: Path) -> Path:
    model, tokenizer = load(base)
    apply_chat_template_choice(tokenizer, "zephyr")
    dataset = load_dataset("json", data_files=str(sft_file), split="train")
    if args.sft_rows:
        dataset = dataset.select(range(args.sft_rows))
    config = SFTConfig(
        output_dir=str(out),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        assistant_only_loss=True,
        max_length=128,
        num_train_epochs=args.sft_epochs,
        per_device_train_batch_size=args.sft_batch,
        learning_rate=args.sft_lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.0,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(out))
    trainer.state.save_to_json(str(out / "trainer_state.json"))
    return out


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    num_return_sequences: int = 1,
    temperature: float | None = None,
    batch_size: int = 100,
) -> list[str]:
    """Batched, left-padded generation; greedy unless a temperature is given."""
    tokenizer.padding_side = "left"
    completions: list[str] = []
    for start in range(0, len(prompts), batch_size):
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            for prompt in prompts[start : start + batch_size]
        ]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        sampling = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature else {}
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            num_return_sequences=num_return_sequences,
            pad_token_id=tokenizer.pad_token_id,
            do_sample=bool(temperature),
            **sampling,
        )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return completions


def evaluate(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_new_tokens: int
) -> list[dict[str, Any]]:
    completions = generate(model, tokenizer, [row["prompt"] for row in rows], max_new_tokens)
    return [
        {**row, "completion": completion, "score": verify(row["prompt"], completion, row["reference"])}
        for row, completion in zip(rows, completions, strict=True)
    ]


def summarize(scored: list[dict[str, Any]]) -> dict[str, Any]:
    correct = int(sum(row["score"] for row in scored))
    low, high = wilson_interval(correct, len(scored))
    per_task: dict[str, list[int]] = {}
    for row in scored:
        per_task.setdefault(row.get("task", "all"), []).append(int(row["score"]))
    one_go = sum(1 for row in scored if len(row["completion"].split("Answer:")[0].strip().splitlines()) == 1)
    return {
        "one_go_share": round(one_go / len(scored), 3),  # answers worked in a single line (the quick style)
        "accuracy": correct / len(scored),
        "correct": correct,
        "total": len(scored),
        "ci95": [round(low, 3), round(high, 3)],
        "per_task": {task: f"{sum(scores)}/{len(scores)}" for task, scores in sorted(per_task.items())},
    }


def paired_outcomes(model: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, int]:
    """Per-prompt verifier outcomes of `model` against `baseline` (same prompts, same order)."""
    outcomes = Counter(
        "wins" if m["score"] > b["score"] else "losses" if m["score"] < b["score"] else "ties"
        for m, b in zip(model, baseline, strict=True)
    )
    return {key: outcomes[key] for key in ("wins", "ties", "losses")}


def sample_pairs(
    args: argparse.Namespace, model: Any, tokenizer: Any, rows: list[dict[str, Any]]
) -> tuple[Dataset, dict[str, Any]]:
    """K samples per prompt; chosen = a correct one, rejected = a wrong one (prompts with both only)."""
    completions = generate(
        model, tokenizer, [row["prompt"] for row in rows], args.max_new_tokens, args.k, args.temperature
    )
    rng = random.Random(args.seed)
    pairs, outcome = [], Counter()
    for index, row in enumerate(rows):
        samples = completions[index * args.k : (index + 1) * args.k]
        scores = [verify(row["prompt"], sample, row["reference"]) for sample in samples]
        right = [s for s, score in zip(samples, scores, strict=True) if score == 1.0]
        wrong = [s for s, score in zip(samples, scores, strict=True) if score < 1.0]
        outcome["samples_correct"] += len(right)
        outcome["all_right" if not wrong else "all_wrong" if not right else "mixed"] += 1
        for _ in range(args.pairs_per_prompt if right and wrong else 0):
            pairs.append(
                {
                    "prompt": [{"role": "user", "content": row["prompt"]}],
                    "chosen": [{"role": "assistant", "content": rng.choice(right)}],
                    "rejected": [{"role": "assistant", "content": rng.choice(wrong)}],
                }
            )
    outcome["pairs"] = len(pairs)
    outcome["sample_accuracy"] = round(outcome["samples_correct"] / (len(rows) * args.k), 3)
    return Dataset.from_list(pairs), dict(outcome)


def run_dpo(args: argparse.Namespace, sft_dir: Path, pairs: Dataset, out: Path) -> Path:
    model, tokenizer = load(sft_dir)
    apply_chat_template_choice(tokenizer, "zephyr")
    config = DPOConfig(
        output_dir=str(out),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        precompute_ref_log_probs=True,
        beta=args.beta,
        loss_type=args.loss_type,
        loss_weights=args.loss_weights,
        max_length=128,
        num_train_epochs=args.dpo_epochs,
        per_device_train_batch_size=args.dpo_batch,
        learning_rate=args.dpo_lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
    )
    trainer = DPOTrainer(model=model, args=config, train_dataset=pairs, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(out))
    trainer.state.save_to_json(str(out / "trainer_state.json"))
    return out


if __name__ == "__main__":
    main()
