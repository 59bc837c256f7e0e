"""The ROUGE-L novelty filter: its pruned search keeps exactly what a brute-force rouge-score check keeps."""

from __future__ import annotations

import random

from distill_helpers import VOCAB
from rouge_score import rouge_scorer

from westwind.distill.novelty import NoveltyFilter


def brute_force_keep(texts: list[str], threshold: float) -> list[str]:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept: list[str] = []
    for text in texts:
        if all(scorer.score(k, text)["rougeL"].fmeasure < threshold for k in kept):
            kept.append(text)
    return kept


def near_duplicate_texts(count: int, seed: int) -> list[str]:
    """Random instructions plus, for half of them, a copy with one word inserted (ROUGE-L 0.8 to 0.95)."""
    rng = random.Random(seed)
    originals = [" ".join(rng.choices(VOCAB[:40], k=rng.randint(3, 12))) for _ in range(count * 2 // 3)]
    copies = []
    for original in rng.sample(originals, count - len(originals)):
        words = original.split()
        words.insert(rng.randrange(len(words) + 1), rng.choice(VOCAB))
        copies.append(" ".join(words))
    texts = originals + copies
    rng.shuffle(texts)
    return texts


def test_pruned_filter_keeps_exactly_what_brute_force_keeps():
    texts = near_duplicate_texts(300, seed=1)
    for threshold in (0.5, 0.7):
        novelty = NoveltyFilter(threshold)
        kept = [t for t in texts if novelty.admit(t).novel]
        assert kept == brute_force_keep(texts, threshold)
        assert 0 < len(kept) < len(texts)
        assert novelty.lcs_computed < len(texts) * len(kept) / 4  # the bound prunes most pairs


def test_verdict_names_the_nearest_kept_text():
    novelty = NoveltyFilter(0.7)
    novelty.add("Write a poem about the sea.")
    novelty.add("Explain how photosynthesis works.")
    verdict = novelty.check("Write a short poem about the sea.")
    assert not verdict.novel and verdict.nearest == 0 and 0.9 < verdict.score < 0.95
    assert novelty.check("Give three tips for learning a language.").novel
    assert novelty.check("").novel  # nothing to compare: ROUGE-L of an empty text is 0
