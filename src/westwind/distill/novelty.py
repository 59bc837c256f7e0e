"""Self-Instruct's novelty filter: keep an instruction only if its ROUGE-L F1 against every kept one is below
a threshold. Scores come from `rouge-score` (its tokenizer and LCS); the all-pairs check stays fast by
tokenising each text once and computing the LCS only where an upper bound says the threshold is reachable.

ROUGE-L F1 = 2 * LCS / (len_a + len_b), and the LCS is at most the multiset token overlap (the sum over
shared tokens of the smaller count). That overlap is computed for all kept texts at once (numpy, one posting
array per token), so an instruction is compared exactly only with the kept texts that share most of its words.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from rouge_score import rouge_scorer, tokenizers


@dataclass
class Verdict:
    novel: bool
    score: float  # the highest ROUGE-L F1 found (0.0 when no kept text can reach the threshold)
    nearest: int | None  # index of that kept text


class _Postings:
    """For one token: which kept texts contain it and how often, in growable numpy arrays."""

    def __init__(self) -> None:
        self.ids = np.empty(8, dtype=np.int64)
        self.counts = np.empty(8, dtype=np.int64)
        self.size = 0

    def add(self, index: int, count: int) -> None:
        if self.size == len(self.ids):
            self.ids = np.resize(self.ids, 2 * self.size)
            self.counts = np.resize(self.counts, 2 * self.size)
        self.ids[self.size], self.counts[self.size] = index, count
        self.size += 1


class NoveltyFilter:
    """Kept texts and their tokens; `check` scores a candidate against all of them, `add` keeps one."""

    def __init__(self, threshold: float = 0.7):
        self.threshold = threshold
        self.tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
        self.tokens: list[list[str]] = []
        self.lengths = np.empty(64, dtype=np.int64)
        self.postings: dict[str, _Postings] = {}
        self.lcs_computed = 0  # exact LCS computations, for the benchmark

    def __len__(self) -> int:
        return len(self.tokens)

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.tokenize(text)

    def add(self, text: str, tokens: list[str] | None = None) -> None:
        tokens = self.tokenize(text) if tokens is None else tokens
        index = len(self.tokens)
        if index == len(self.lengths):
            self.lengths = np.resize(self.lengths, 2 * index)
        self.lengths[index] = len(tokens)
        self.tokens.append(tokens)
        for token, count in Counter(tokens).items():
            self.postings.setdefault(token, _Postings()).add(index, count)

    def check(self, text: str, tokens: list[str] | None = None) -> Verdict:
        tokens = self.tokenize(text) if tokens is None else tokens
        if not tokens or not self.tokens:
            return Verdict(True, 0.0, None)
        overlap = np.zeros(len(self.tokens), dtype=np.int64)
        for token, count in Counter(tokens).items():
            postings = self.postings.get(token)
            if postings is not None:
                overlap[postings.ids[: postings.size]] += np.minimum(postings.counts[: postings.size], count)
        lengths = self.lengths[: len(self.tokens)]
        bound = 2 * overlap / (lengths + len(tokens))
        best, nearest = 0.0, None
        for index in np.flatnonzero(bound >= self.threshold):
            self.lcs_computed += 1
            score = rouge_scorer._score_lcs(self.tokens[index], tokens).fmeasure  # the scorer's own LCS
            if score > best:
                best, nearest = score, int(index)
            if best >= self.threshold:
                break
        return Verdict(best < self.threshold, best, nearest)

    def admit(self, text: str) -> Verdict:
        """Check `text` and keep it when it is novel."""
        tokens = self.tokenize(text)
        verdict = self.check(text, tokens)
        if verdict.novel:
            self.add(text, tokens)
        return verdict
