"""The distill stage's ROUGE-L novelty filter: time to filter 20,000 instructions.

    python benchmarks/bench_novelty.py [--count 20000] [--brute-force 500] [--threshold 0.7]

Instructions are drawn from the words of the Self-Instruct seed tasks (word frequencies as there, 4-30
words each), a third of them one- to three-word edits of an earlier one, so both outcomes occur. The filter
starts from the 175 seed instructions, as the stage does. For a reference, the first `--brute-force`
instructions are also filtered by scoring every kept pair with rouge-score's RougeScorer (what Self-Instruct
does), and the two kept lists are checked to be identical.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time

from rouge_score import rouge_scorer

from benchmarks.common import SHARED_DATA, print_table, save_result
from westwind.distill.novelty import NoveltyFilter


def seed_instructions() -> list[str]:
    return [json.loads(line)["instruction"] for line in SHARED_DATA.read_text().splitlines() if line.strip()]


def synthetic_instructions(count: int, words: list[str], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(count):
        if texts and rng.random() < 0.33:
            edited = rng.choice(texts).split()
            for _ in range(rng.randint(1, 3)):
                edited[rng.randrange(len(edited))] = rng.choice(words)
            texts.append(" ".join(edited))
        else:
            texts.append(" ".join(rng.choices(words, k=rng.randint(4, 30))).capitalize() + ".")
    return texts


def pruned(seeds: list[str], texts: list[str], threshold: float) -> tuple[list[str], float, int]:
    start = time.perf_counter()
    novelty = NoveltyFilter(threshold)
    for seed in seeds:
        novelty.add(seed)
    kept = [t for t in texts if novelty.admit(t).novel]
    return kept, time.perf_counter() - start, novelty.lcs_computed


def brute_force(seeds: list[str], texts: list[str], threshold: float) -> tuple[list[str], float]:
    start = time.perf_counter()
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool, kept = list(seeds), []
    for text in texts:
        if all(scorer.score(k, text)["rougeL"].fmeasure < threshold for k in pool):
            pool.append(text)
            kept.append(text)
    return kept, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--brute-force", type=int, default=500)
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args()
    seeds = seed_instructions()
    words = [w for s in seeds for w in s.split()]
    texts = synthetic_instructions(args.count, words)

    kept, seconds, lcs = pruned(seeds, texts, args.threshold)
    subset = texts[: args.brute_force]
    small_kept, small_seconds, _ = pruned(seeds, subset, args.threshold)
    reference_kept, reference_seconds = brute_force(seeds, subset, args.threshold)
    assert small_kept == reference_kept, "the pruned filter disagrees with brute force"
    rows = [
        ["pruned (westwind)", args.count, len(kept), seconds, lcs],
        ["pruned (westwind)", len(subset), len(small_kept), small_seconds, ""],
        ["brute force RougeScorer", len(subset), len(reference_kept), reference_seconds, ""],
    ]
    print_table("ROUGE-L novelty filter", ["method", "instructions", "kept", "seconds", "exact LCS"], rows)
    save_result(
        "novelty",
        {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "threshold": args.threshold,
            "count": args.count,
            "kept": len(kept),
            "seconds": round(seconds, 2),
            "exact_lcs_computations": lcs,
            "brute_force": {
                "count": len(subset),
                "seconds": round(reference_seconds, 2),
                "pruned_seconds": round(small_seconds, 3),
                "identical": True,
            },
        },
    )


if __name__ == "__main__":
    main()
