"""Intervals and tests for the numbers westwind reports (accuracy, win rate, paired comparisons)."""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0.0, 1.0) when there are no trials."""
    if total <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test: P(X >= wins) for X ~ Binomial(wins + losses, 1/2); ties are left out."""
    trials = wins + losses
    if trials == 0:
        return 1.0
    return sum(math.comb(trials, k) for k in range(wins, trials + 1)) / 2**trials


def paired_difference_interval(
    wins: int, losses: int, total: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval for the accuracy difference of two models on the same `total` items, from the discordant
    counts (`wins`: only the first is right; `losses`: only the second is). Agresti-Min: Wald with half a
    count added to each cell, which keeps its coverage close to nominal for small counts."""
    if total <= 0:
        return -1.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    b, c, n = wins + 0.5, losses + 0.5, total + 2
    difference = (b - c) / n
    half_width = z * math.sqrt(max(0.0, (b + c) - (b - c) ** 2 / n)) / n
    return max(-1.0, difference - half_width), min(1.0, difference + half_width)
